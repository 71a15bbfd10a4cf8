/* Background flushing of the destination's drives while a migration
 * loads, so that the flush before the guest starts (part of the downtime)
 * finds little left to write back. */
#include <errno.h>

#include "block/block.h"
#include "migration-internal.h"

/* Start a flush once this much was written since the last one started. */
#define FLUSH_THRESHOLD (32u << 20)

struct LoadFlusher {
    GThread *thread;
    GMutex lock;
    GCond cond;
    uint64_t unflushed;         /* bytes written since the last flush began */
    bool stop;
    char *error;                /* first failed flush */
};

/* Flush every drive; the first failure as text (caller frees), or NULL. */
static char *flush_all(void)
{
    g_autoptr(GList) drives = bdrv_list();

    for (GList *l = drives; l; l = l->next) {
        int ret = bdrv_flush(l->data);
        if (ret < 0) {
            return g_strdup_printf("flushing drive '%s' failed: %s",
                                   bdrv_get_id(l->data), g_strerror(-ret));
        }
    }
    return NULL;
}

static gpointer flusher_thread(gpointer opaque)
{
    LoadFlusher *fl = opaque;

    g_mutex_lock(&fl->lock);
    for (;;) {
        char *error;

        while (!fl->stop && fl->unflushed < FLUSH_THRESHOLD) {
            g_cond_wait(&fl->cond, &fl->lock);
        }
        if (fl->stop) {
            break;
        }
        fl->unflushed = 0;
        g_mutex_unlock(&fl->lock);
        error = flush_all();
        g_mutex_lock(&fl->lock);
        if (error && !fl->error) {
            fl->error = error;
        } else {
            g_free(error);
        }
    }
    g_mutex_unlock(&fl->lock);
    return NULL;
}

LoadFlusher *load_flusher_start(void)
{
    LoadFlusher *fl = g_new0(LoadFlusher, 1);

    g_mutex_init(&fl->lock);
    g_cond_init(&fl->cond);
    fl->thread = g_thread_new("mig-flusher", flusher_thread, fl);
    return fl;
}

void load_flusher_written(LoadFlusher *fl, uint64_t bytes)
{
    g_mutex_lock(&fl->lock);
    fl->unflushed += bytes;
    if (fl->unflushed >= FLUSH_THRESHOLD) {
        g_cond_signal(&fl->cond);
    }
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
        g_set_error(errp, MIG_ERROR, 0, "block migration: %s", fl->error);
        ret = -1;
    }
    g_free(fl->error);
    g_cond_clear(&fl->cond);
    g_mutex_clear(&fl->lock);
    g_free(fl);
    return ret;
}
