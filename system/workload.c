/* The built-in guest: one thread per --workload writing to a drive the
 * way a guest would, paced to a rate, and only while the guest runs.
 *
 * The thread holds its lock except while an I/O is in flight, so on_stop
 * (called when the guest stops, e.g. for migration switchover) returns as
 * soon as the current write has completed, even in the middle of a pacing
 * sleep. */
#include "system/workload.h"

#include <string.h>

#include "block/block.h"
#include "system/runstate.h"
#include "system-internal.h"
#include "util/size.h"

#define STAMP_EVERY 4096                /* no all-zero 4 KiB of data written */
#define MAX_BURST_US (G_USEC_PER_SEC / 10)
#define ERROR_BACKOFF_US (G_USEC_PER_SEC / 10)

typedef struct Workload {
    WorkloadOptions opts;
    BlockDriverState *bs;
    uint64_t blocks;            /* whole bs-sized blocks on the drive */
    uint64_t seq_next;          /* seqwrite: next block */
    GRand *rand;                /* used by the thread only */
    void *data, *zeroes, *readbuf;
    GThread *thread;
    GuestDeviceOps device;

    GMutex lock;
    GCond cond;
    bool running;               /* the guest runs */
    bool in_flight;             /* an I/O is under way (lock not held) */
    bool quit;
    gint64 next_io_us;          /* pacing: monotonic time of the next write */
    bool error_logged;
} Workload;

static GPtrArray *workloads;
static uint64_t rand64(GRand *r)
{
    return ((uint64_t)g_rand_int(r) << 32) | g_rand_int(r);
}

/* ---- one I/O (runs without the lock) ---- */

static uint64_t next_offset(Workload *w)
{
    uint64_t block;
    if (w->opts.pattern == WL_SEQWRITE) {
        block = w->seq_next;
        w->seq_next = (w->seq_next + 1) % w->blocks;
    } else {
        block = rand64(w->rand) % w->blocks;
    }
    return block * w->opts.bs;
}

/* Fresh contents each time: a random non-zero word at every 4 KiB. */
static const void *fresh_data(Workload *w)
{
    for (uint64_t pos = 0; pos < w->opts.bs; pos += STAMP_EVERY) {
        uint64_t stamp = rand64(w->rand) | 1;
        memcpy((char *)w->data + pos, &stamp, sizeof(stamp));
    }
    return w->data;
}

static void report_error(Workload *w, const char *what, int ret)
{
    if (!w->error_logged) {
        g_warning("workload on drive %s: %s failed: %s", w->opts.drive, what,
                  g_strerror(-ret));
        w->error_logged = true;
    }
}

/* Returns the bytes written (0 for a read), or -1 on error. */
static int64_t do_one_io(Workload *w)
{
    uint64_t off = next_offset(w);
    int ret;

    if (w->opts.pattern == WL_RANDRW && g_rand_boolean(w->rand)) {
        ret = bdrv_pread(w->bs, off, w->readbuf, w->opts.bs);
        if (ret < 0) {
            report_error(w, "read", ret);
        }
        return ret < 0 ? -1 : 0;
    }
    /* A guest writing zeroes, not a write-zeroes request. */
    bool zero = w->opts.zero_frac > 0 && g_rand_double(w->rand) < w->opts.zero_frac;
    ret = bdrv_pwrite(w->bs, off, zero ? w->zeroes : fresh_data(w), w->opts.bs, 0);
    if (ret < 0) {
        report_error(w, "write", ret);
        return -1;
    }
    return (int64_t)w->opts.bs;
}

/* ---- the thread ---- */

/* Lock held.  The next write is due when the bytes written so far at the
 * configured rate have had their time; lagging behind never earns more
 * than a short burst. */
static void pace(Workload *w, int64_t written)
{
    gint64 now = g_get_monotonic_time();
    if (written < 0) {
        w->next_io_us = now + ERROR_BACKOFF_US;
        return;
    }
    if (w->opts.rate_mibs <= 0 || written == 0) {
        return;
    }
    if (w->next_io_us < now - MAX_BURST_US) {
        w->next_io_us = now - MAX_BURST_US;
    }
    w->next_io_us += (gint64)((double)written / (w->opts.rate_mibs * MiB) * G_USEC_PER_SEC);
}

static gpointer workload_thread(gpointer opaque)
{
    Workload *w = opaque;

    g_mutex_lock(&w->lock);
    while (!w->quit) {
        if (!w->running) {
            g_cond_wait(&w->cond, &w->lock);
        } else if (w->next_io_us > g_get_monotonic_time()) {
            g_cond_wait_until(&w->cond, &w->lock, w->next_io_us);
        } else {
            w->in_flight = true;
            g_mutex_unlock(&w->lock);
            int64_t written = do_one_io(w);
            g_mutex_lock(&w->lock);
            w->in_flight = false;
            pace(w, written);
            g_cond_broadcast(&w->cond);
        }
    }
    g_mutex_unlock(&w->lock);
    return NULL;
}

/* ---- guest device ---- */

static void workload_on_start(void *opaque)
{
    Workload *w = opaque;
    g_mutex_lock(&w->lock);
    w->running = true;
    w->next_io_us = g_get_monotonic_time();
    g_cond_broadcast(&w->cond);
    g_mutex_unlock(&w->lock);
}

static void workload_on_stop(void *opaque)
{
    Workload *w = opaque;
    g_mutex_lock(&w->lock);
    w->running = false;
    g_cond_broadcast(&w->cond);
    while (w->in_flight) {
        g_cond_wait(&w->cond, &w->lock);
    }
    g_mutex_unlock(&w->lock);
}

/* ---- life cycle ---- */

static bool check_drive(const WorkloadOptions *opts, BlockDriverState **out, GError **errp)
{
    BlockDriverState *bs = bdrv_find(opts->drive);
    const char *why = NULL;

    if (!bs) {
        why = "no such drive";
    } else if (bdrv_is_read_only(bs)) {
        why = "the drive is read-only";
    } else if (bdrv_getlength(bs) < (int64_t)opts->bs) {
        why = "the drive is smaller than bs";
    }
    if (why) {
        g_set_error(errp, BLKMIGD_ERROR, 0, "--workload drive=%s: %s", opts->drive, why);
        return false;
    }
    *out = bs;
    return true;
}

/* Seeds above 32 bits keep all their bits. */
static GRand *new_rand(uint64_t seed)
{
    if (seed <= G_MAXUINT32) {
        return g_rand_new_with_seed((guint32)seed);
    }
    const guint32 words[2] = { (guint32)seed, (guint32)(seed >> 32) };
    return g_rand_new_with_seed_array(words, 2);
}

static Workload *workload_new(const WorkloadOptions *opts, BlockDriverState *bs)
{
    Workload *w = g_new0(Workload, 1);
    w->opts = *opts;
    w->opts.drive = g_strdup(opts->drive);
    w->bs = bs;
    w->blocks = (uint64_t)bdrv_getlength(bs) / opts->bs;
    w->rand = new_rand(opts->seed);
    w->data = bdrv_buf_alloc(bs, opts->bs);
    for (uint64_t i = 0; i + 4 <= opts->bs; i += 4) {
        guint32 r = g_rand_int(w->rand);
        memcpy((char *)w->data + i, &r, 4);
    }
    w->zeroes = bdrv_buf_alloc(bs, opts->bs);
    memset(w->zeroes, 0, opts->bs);
    w->readbuf = bdrv_buf_alloc(bs, opts->bs);
    g_mutex_init(&w->lock);
    g_cond_init(&w->cond);
    w->device = (GuestDeviceOps){ workload_on_start, workload_on_stop, w };
    return w;
}

static void workload_free(Workload *w)
{
    g_rand_free(w->rand);
    bdrv_buf_free(w->data);
    bdrv_buf_free(w->zeroes);
    bdrv_buf_free(w->readbuf);
    g_mutex_clear(&w->lock);
    g_cond_clear(&w->cond);
    workload_options_clear(&w->opts);
    g_free(w);
}

bool workload_start(const WorkloadOptions *opts, GError **errp)
{
    BlockDriverState *bs;
    if (!check_drive(opts, &bs, errp)) {
        return false;
    }
    Workload *w = workload_new(opts, bs);
    w->thread = g_thread_try_new("workload", workload_thread, w, errp);
    if (!w->thread) {
        workload_free(w);
        return false;
    }
    if (!workloads) {
        workloads = g_ptr_array_new();
    }
    g_ptr_array_add(workloads, w);
    runstate_add_device(&w->device);     /* starts it if the guest runs */
    return true;
}

void workload_stop_all(void)
{
    for (guint i = 0; workloads && i < workloads->len; i++) {
        Workload *w = workloads->pdata[i];
        runstate_remove_device(&w->device);
        g_mutex_lock(&w->lock);
        w->quit = true;
        g_cond_broadcast(&w->cond);
        g_mutex_unlock(&w->lock);
        g_thread_join(w->thread);
        workload_free(w);
    }
    g_clear_pointer(&workloads, g_ptr_array_unref);
}
