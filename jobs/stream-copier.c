/* The stream job's copies in flight: up to a few ranges copied at once by
 * worker threads, so that reading a remote base, writing the image and
 * the image's syncs overlap instead of taking turns.  The job plans the
 * ranges in order and hands them over; finished copies come back in the
 * order they finish.  Each copy has a buffer of its own.  A flusher
 * thread makes the copies durable as they go (the data must be, before
 * the header may drop the backing file): the disk writes overlap the
 * copying, and the syncs the image's metadata needs on the way (a new L2
 * table, with the image's lock held) find little to write. */
#include "job-internal.h"

#include <gio/gio.h>

typedef struct CopyTask {
    StreamCopier *copier;
    uint8_t *buf;
    StreamCopyResult result;
} CopyTask;

struct StreamCopier {
    BlockDriverState *bs;
    GThreadPool *pool;
    GAsyncQueue *done;           /* CopyTask * that finished */
    GPtrArray *free_tasks;       /* CopyTask * ready for the next copy */
    GPtrArray *in_flight;        /* CopyTask * submitted, not collected */
    unsigned depth;
    bool skip_zero;              /* no base below: zero clusters need no copy */
    GThread *flusher;
    GMutex flush_lock;
    GCond flush_cond;
    bool stop;
};

/* How often the flusher flushes. */
#define FLUSH_INTERVAL_US (100 * 1000)

static gpointer flusher(gpointer opaque)
{
    StreamCopier *c = opaque;

    g_mutex_lock(&c->flush_lock);
    while (!c->stop) {
        gint64 until = g_get_monotonic_time() + FLUSH_INTERVAL_US;
        while (!c->stop && g_cond_wait_until(&c->flush_cond, &c->flush_lock, until)) {
        }
        g_mutex_unlock(&c->flush_lock);
        bdrv_flush(c->bs);
        g_mutex_lock(&c->flush_lock);
    }
    g_mutex_unlock(&c->flush_lock);
    return NULL;
}

static void copy_task(gpointer data, gpointer unused)
{
    CopyTask *t = data;
    StreamCopyResult *r = &t->result;
    bool read_failed = false;

    r->ret = bdrv_stream_copy(t->copier->bs, r->start, r->len, t->buf, t->copier->skip_zero,
                              &read_failed);
    r->operation = read_failed ? "read" : "write";
    g_async_queue_push(t->copier->done, t);
}

StreamCopier *stream_copier_new(BlockDriverState *bs, unsigned depth, uint64_t max_copy,
                                bool skip_zero)
{
    StreamCopier *c = g_new0(StreamCopier, 1);

    c->bs = bs;
    c->skip_zero = skip_zero;
    c->depth = depth;
    c->pool = g_thread_pool_new(copy_task, NULL, (gint)depth, FALSE, NULL);
    c->done = g_async_queue_new();
    c->free_tasks = g_ptr_array_new();
    c->in_flight = g_ptr_array_new();
    g_mutex_init(&c->flush_lock);
    g_cond_init(&c->flush_cond);
    c->flusher = g_thread_new("stream-flush", flusher, c);
    for (unsigned i = 0; i < depth; i++) {
        CopyTask *t = g_new0(CopyTask, 1);
        t->copier = c;
        t->buf = bdrv_buf_alloc(bs, max_copy);
        g_ptr_array_add(c->free_tasks, t);
    }
    return c;
}

static void task_free(gpointer p)
{
    CopyTask *t = p;
    bdrv_buf_free(t->buf);
    g_free(t);
}

void stream_copier_free(StreamCopier *c)
{
    StreamCopyResult r;

    if (!c) {
        return;
    }
    while (stream_copier_in_flight(c)) {
        stream_copier_collect(c, &r);
    }
    g_thread_pool_free(c->pool, FALSE, TRUE);
    g_mutex_lock(&c->flush_lock);
    c->stop = true;
    g_cond_broadcast(&c->flush_cond);
    g_mutex_unlock(&c->flush_lock);
    g_thread_join(c->flusher);
    g_mutex_clear(&c->flush_lock);
    g_cond_clear(&c->flush_cond);
    g_async_queue_unref(c->done);
    g_ptr_array_set_free_func(c->free_tasks, task_free);
    g_ptr_array_unref(c->free_tasks);
    g_ptr_array_unref(c->in_flight);
    g_free(c);
}

unsigned stream_copier_in_flight(StreamCopier *c)
{
    return c->in_flight->len;
}

bool stream_copier_full(StreamCopier *c)
{
    return c->in_flight->len >= c->depth;
}

void stream_copier_submit(StreamCopier *c, uint64_t start, uint64_t len)
{
    CopyTask *t = g_ptr_array_steal_index_fast(c->free_tasks, c->free_tasks->len - 1);

    t->result = (StreamCopyResult){ .start = start, .len = len };
    g_ptr_array_add(c->in_flight, t);
    g_thread_pool_push(c->pool, t, NULL);
}

void stream_copier_collect(StreamCopier *c, StreamCopyResult *r)
{
    CopyTask *t = g_async_queue_pop(c->done);

    *r = t->result;
    g_ptr_array_remove_fast(c->in_flight, t);
    g_ptr_array_add(c->free_tasks, t);
}

uint64_t stream_copier_low_mark(StreamCopier *c, uint64_t pos)
{
    for (guint i = 0; i < c->in_flight->len; i++) {
        CopyTask *t = c->in_flight->pdata[i];
        pos = MIN(pos, t->result.start);
    }
    return pos;
}
