/* The source's read pipeline: a few worker threads read (and compress)
 * chunk jobs while the migration thread sends finished ones, so disk
 * reads, zero detection, compression and sending overlap.  Jobs leave in
 * the order they came in, except that one a mirrored guest write waits
 * for may leave before its turn; a chunk's units go out in the order
 * order.c keeps either way (mirrored writes, mirror.c, take their places
 * among them).  The chunk buffers of the jobs in flight, until they are
 * sent, stay within max-inflight bytes. */
#include "block/block.h"
#include "block-internal.h"

/* Reads in flight at once: enough to keep a disk queue busy and to
 * overlap a read with zero detection and compression of others. */
#define PIPELINE_WORKERS 4
/* Jobs without buffers (holes) are cheap, but not free. */
#define PIPELINE_MAX_JOBS 4096

struct BlkPipeline {
    BlkChunkOptions opts;
    uint64_t budget;            /* bytes of buffers */
    GMutex lock;
    GCond cond;                 /* a job became ready, or one was released */
    GQueue fifo;                /* BlkChunkJob *, oldest first */
    uint64_t used;              /* bytes of buffers held by jobs */
    unsigned jobs;              /* submitted and not yet released */
    unsigned events;            /* counts readiness and releases */
    unsigned seen_events;       /* ...as the submitter last saw them */
    GPtrArray *free_bufs;       /* chunk buffers to reuse */
    GAsyncQueue *work;
    GThread *workers[PIPELINE_WORKERS];
};

/* Tells a worker to exit. */
static BlkChunkJob stop_job;

static gpointer worker_thread(gpointer opaque)
{
    BlkPipeline *p = opaque;
    Compressor *c = NULL;

    if (p->opts.compress) {
        /* Options were checked when they were set. */
        c = compressor_new(p->opts.compress_algo, p->opts.compress_level, NULL);
    }
    for (;;) {
        BlkChunkJob *job = g_async_queue_pop(p->work);

        if (job == &stop_job) {
            break;
        }
        blk_chunk_prepare(job, &p->opts, c);
        g_mutex_lock(&p->lock);
        job->done = true;
        p->events++;
        g_cond_broadcast(&p->cond);
        g_mutex_unlock(&p->lock);
    }
    compressor_free(c);
    return NULL;
}

BlkPipeline *blk_pipeline_new(const BlkChunkOptions *o, uint64_t max_inflight)
{
    BlkPipeline *p = g_new0(BlkPipeline, 1);

    p->opts = *o;
    p->budget = max_inflight;
    g_mutex_init(&p->lock);
    g_cond_init(&p->cond);
    g_queue_init(&p->fifo);
    p->free_bufs = g_ptr_array_new_with_free_func(bdrv_buf_free);
    p->work = g_async_queue_new();
    for (int i = 0; i < PIPELINE_WORKERS; i++) {
        p->workers[i] = g_thread_new("mig-reader", worker_thread, p);
    }
    return p;
}

static uint64_t job_cost(const BlkChunkJob *job)
{
    return (job->buf ? BLK_CHUNK : 0) + (job->cbuf ? BLK_CHUNK : 0);
}

/* p->lock held. */
static void free_job_locked(BlkPipeline *p, BlkChunkJob *job)
{
    p->used -= job_cost(job);
    p->jobs--;
    if (job->buf) {
        g_ptr_array_add(p->free_bufs, job->buf);
    }
    if (job->cbuf) {
        g_ptr_array_add(p->free_bufs, job->cbuf);
    }
    blk_chunk_job_free(job);
}

void blk_pipeline_free(BlkPipeline *p)
{
    BlkChunkJob *job;

    if (!p) {
        return;
    }
    for (int i = 0; i < PIPELINE_WORKERS; i++) {
        g_async_queue_push(p->work, &stop_job);
    }
    for (int i = 0; i < PIPELINE_WORKERS; i++) {
        g_thread_join(p->workers[i]);
    }
    g_mutex_lock(&p->lock);
    while ((job = g_queue_pop_head(&p->fifo))) {
        free_job_locked(p, job);
    }
    g_mutex_unlock(&p->lock);
    g_assert(p->jobs == 0);
    g_async_queue_unref(p->work);
    g_ptr_array_unref(p->free_bufs);
    g_cond_clear(&p->cond);
    g_mutex_clear(&p->lock);
    g_free(p);
}

static uint64_t max_job_cost(const BlkPipeline *p)
{
    return p->opts.compress ? 2 * BLK_CHUNK : BLK_CHUNK;
}

bool blk_pipeline_has_room(BlkPipeline *p)
{
    bool room;

    g_mutex_lock(&p->lock);
    p->seen_events = p->events;
    /* One job always fits, whatever the budget. */
    room = p->jobs < PIPELINE_MAX_JOBS &&
           (p->used == 0 || p->used + max_job_cost(p) <= p->budget);
    g_mutex_unlock(&p->lock);
    return room;
}

/* p->lock held. */
static uint8_t *take_buffer_locked(BlkPipeline *p)
{
    if (p->free_bufs->len) {
        return g_ptr_array_steal_index_fast(p->free_bufs, p->free_bufs->len - 1);
    }
    return bdrv_buf_alloc(NULL, BLK_CHUNK);
}

void blk_pipeline_submit(BlkPipeline *p, BlkChunkJob *job)
{
    g_mutex_lock(&p->lock);
    if (job->needs_worker) {
        job->buf = take_buffer_locked(p);
        job->cbuf = p->opts.compress ? take_buffer_locked(p) : NULL;
    } else {
        job->done = true;
    }
    p->used += job_cost(job);
    p->jobs++;
    g_queue_push_tail(&p->fifo, job);
    g_mutex_unlock(&p->lock);
    if (job->needs_worker) {
        g_async_queue_push(p->work, job);
    }
}

/* p->lock held. */
static BlkChunkJob *peek_ready_locked(BlkPipeline *p)
{
    BlkChunkJob *job = g_queue_peek_head(&p->fifo);

    p->seen_events = p->events;
    return job && job->done ? job : NULL;
}

BlkChunkJob *blk_pipeline_peek_ready(BlkPipeline *p)
{
    BlkChunkJob *job;

    g_mutex_lock(&p->lock);
    job = peek_ready_locked(p);
    g_mutex_unlock(&p->lock);
    return job;
}

BlkChunkJob *blk_pipeline_pop_ready(BlkPipeline *p)
{
    BlkChunkJob *job;

    g_mutex_lock(&p->lock);
    job = peek_ready_locked(p);
    if (job) {
        g_queue_pop_head(&p->fifo);
    }
    g_mutex_unlock(&p->lock);
    return job;
}

bool blk_pipeline_take(BlkPipeline *p, BlkChunkJob *job)
{
    bool taken;

    g_mutex_lock(&p->lock);
    taken = job->done && g_queue_remove(&p->fifo, job);
    g_mutex_unlock(&p->lock);
    return taken;
}

bool blk_pipeline_is_empty(BlkPipeline *p)
{
    bool empty;

    g_mutex_lock(&p->lock);
    empty = g_queue_is_empty(&p->fifo);
    g_mutex_unlock(&p->lock);
    return empty;
}

void blk_pipeline_wait(BlkPipeline *p, gint64 timeout_us)
{
    gint64 deadline = g_get_monotonic_time() + timeout_us;

    g_mutex_lock(&p->lock);
    while (p->events == p->seen_events) {
        if (!g_cond_wait_until(&p->cond, &p->lock, deadline)) {
            break;
        }
    }
    g_mutex_unlock(&p->lock);
}

void blk_pipeline_kick(BlkPipeline *p)
{
    g_mutex_lock(&p->lock);
    p->events++;
    g_cond_broadcast(&p->cond);
    g_mutex_unlock(&p->lock);
}

void blk_pipeline_release(BlkPipeline *p, BlkChunkJob *job)
{
    g_mutex_lock(&p->lock);
    free_job_locked(p, job);
    p->events++;
    g_cond_broadcast(&p->cond);
    g_mutex_unlock(&p->lock);
}
