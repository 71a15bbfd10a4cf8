/* Background flushing of the destination's drives while a migration
 * loads, so that the flush before the guest starts (part of the downtime)
 * finds little left to write back.  After each flush a blkmig source is
 * told how long it took and how much is durable: it keeps the guest
 * running until little is left to flush and the final flush fits the
 * downtime, instead of the destination throttling its writes. */

#include "block/block.h"
#include "block-internal.h"

/* Start a flush once this much was written since the last one started... */
#define FLUSH_THRESHOLD (32u << 20)
/* ...or once writing paused this long with anything unflushed, so the
 * source learns that everything it sent is durable. */
#define IDLE_FLUSH_US (50 * 1000)

struct LoadFlusher {
    GThread *thread;
    GMutex lock;
    GCond cond;                 /* work for the thread */
    uint64_t written;           /* bytes written in all */
    uint64_t flush_started;     /* written when the running/last flush began */
    gint64 last_write_us;
    const SaveVMLoadContext *ctx;   /* how to tell the source */
    bool report;                /* tell the source after each flush */
    bool stop;
    GError *error;              /* first failed flush */
};

/* fl->lock held: whether to flush now; waits for a reason otherwise. */
static bool wait_for_work_locked(LoadFlusher *fl)
{
    for (;;) {
        uint64_t unflushed = fl->written - fl->flush_started;
        gint64 idle_at = fl->last_write_us + IDLE_FLUSH_US;

        if (fl->stop) {
            return false;
        }
        if (unflushed >= FLUSH_THRESHOLD ||
            (unflushed > 0 && g_get_monotonic_time() >= idle_at)) {
            return true;
        }
        if (unflushed > 0) {
            g_cond_wait_until(&fl->cond, &fl->lock, idle_at);
        } else {
            g_cond_wait(&fl->cond, &fl->lock);
        }
    }
}

static gpointer flusher_thread(gpointer opaque)
{
    LoadFlusher *fl = opaque;

    g_mutex_lock(&fl->lock);
    while (wait_for_work_locked(fl)) {
        uint64_t covered = fl->written;
        bool report = fl->report;
        GError *error = NULL;

        fl->flush_started = covered;
        g_mutex_unlock(&fl->lock);
        /* block-resume: the journals count what this flush makes durable. */
        GPtrArray *counted = blk_resume_load_snapshot(false);
        gint64 start_us = g_get_monotonic_time();
        if (blk_flush_all_drives("block migration", &error)) {
            blk_resume_load_commit(g_steal_pointer(&counted));
            if (report) {
                fl->ctx->report_flushed(fl->ctx->opaque, g_get_monotonic_time() - start_us);
                fl->ctx->report_durable(fl->ctx->opaque, covered);
            }
        }
        if (counted) {
            g_ptr_array_unref(counted);
        }
        g_mutex_lock(&fl->lock);
        if (error && !fl->error) {
            fl->error = error;
        } else {
            g_clear_error(&error);
        }
    }
    g_mutex_unlock(&fl->lock);
    return NULL;
}

LoadFlusher *load_flusher_start(const SaveVMLoadContext *ctx)
{
    LoadFlusher *fl = g_new0(LoadFlusher, 1);

    fl->ctx = ctx;
    g_mutex_init(&fl->lock);
    g_cond_init(&fl->cond);
    fl->thread = g_thread_new("mig-flusher", flusher_thread, fl);
    return fl;
}

void load_flusher_written(LoadFlusher *fl, uint64_t bytes)
{
    g_mutex_lock(&fl->lock);
    if (fl->written == fl->flush_started) {
        /* The idle timer starts with the first unflushed write. */
        g_cond_signal(&fl->cond);
    }
    fl->written += bytes;
    fl->last_write_us = g_get_monotonic_time();
    if (fl->written - fl->flush_started >= FLUSH_THRESHOLD) {
        g_cond_signal(&fl->cond);
    }
    g_mutex_unlock(&fl->lock);
}

void load_flusher_report_progress(LoadFlusher *fl)
{
    g_mutex_lock(&fl->lock);
    fl->report = true;
    g_mutex_unlock(&fl->lock);
}

int load_flusher_stop(LoadFlusher *fl, GError **errp)
{
    int ret = 0;

    if (!fl) {
        return 0;
    }
    g_mutex_lock(&fl->lock);
    fl->stop = true;
    g_cond_signal(&fl->cond);
    g_mutex_unlock(&fl->lock);
    g_thread_join(fl->thread);
    if (fl->error) {
        g_propagate_error(errp, g_steal_pointer(&fl->error));
        ret = -1;
    }
    g_cond_clear(&fl->cond);
    g_mutex_clear(&fl->lock);
    g_free(fl);
    return ret;
}
