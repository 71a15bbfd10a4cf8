/* Write-blocking copy mode (block-copy-mode=write-blocking, after QEMU's
 * mirror copy-mode of that name): a guest write to a range the bulk copy
 * has already walked is on its way to the destination before the write
 * returns to the guest, so the dirty set only shrinks and the migration
 * converges whatever the guest does.  The guest's write latency becomes
 * about the link's.
 *
 * How a write is mirrored.  The write notifier (guest-write.c) runs once
 * the data reached the source drive and the dirty bitmap was marked.  For
 * each chunk the write touches below its drive's bulk cursor it takes the
 * order lock, clears the dirty bits under the write (order.c) and queues
 * a unit of that chunk; then, without the lock, it reads those blocks
 * back from the drive into the unit's records, marks the unit ready and
 * waits until the unit's records were written to the socket (and
 * flushed) by the migration thread or by the chunk's multifd channel.
 * QEMU's active mirror sends the guest's own buffer, because it
 * serialises overlapping requests; blkmig does not, so the buffer of one
 * of two overlapping writes may not be what the drive holds last, while a
 * read after the clear always is at least as new.
 *
 * Why the destination ends with the newest version of every block.  A
 * unit is anything that clears dirty bits and sends what it then reads:
 * a bulk job, a dirty-pass job, a mirrored write.
 *  (1) A unit clears its bits before it reads, and the block layer marks
 *      a bit only after a write's data reached the drive.  So a unit's
 *      data is at least as new as every write whose bit it cleared, and a
 *      write it misses sets the bit again after the clear.
 *  (2) Units clear bits under the order lock and take their place in
 *      their chunk's queue at that moment, so the queue order of a
 *      chunk's units is the order of their clears.  The bulk cursor moves
 *      under the same lock.
 *  (3) A unit is handed to its connection only when it is first of its
 *      chunk (order.c), by the migration thread alone: pipeline jobs in
 *      their FIFO order, mirrored units as soon as they are read and
 *      first.  On the main stream the migration thread writes it at once;
 *      with multifd the chunk's channel (chunk index mod N, always the
 *      same one) takes it into a FIFO queue.  Either way the destination
 *      applies a chunk's units in the order of their clears, however the
 *      pipeline's reads (or a mirrored write's read) finished.
 *  (4) At switchover the guest is stopped and every bit still set is sent
 *      by one more unit, queued after every unit before it.
 * Take a block and the last clear of its bit: by (1) that unit read the
 * block after every write to it had reached the drive (a later write
 * would have set the bit again, to be cleared later still, at the latest
 * by (4)); by (2) and (3) no unit that cleared the bit earlier reaches
 * the destination after it.  So the last version the destination applies
 * is the block's final contents.
 *
 * Why it converges.  A mirrored write clears, before it completes, the
 * bits it set itself; when it finds them cleared already, the unit that
 * cleared them reads its data and comes first in the chunk's queue, and
 * the write's unit (then without ranges: it only holds a place) waits for
 * it.  So a guest write to a range the bulk copy passed leaves no dirty
 * bit behind: the dirty set only shrinks.  Mirrored writes go out before
 * the background copy (bulk walk and dirty passes), and a pipeline job one
 * of them waits for goes out before its turn, but the background copy
 * keeps at least a quarter of the link while it has work (send.c), so it
 * ends, and max-bandwidth bounds both together.
 *
 * Switchover.  The migration thread stops the guest, which waits for the
 * guest writes in flight, so those must not wait for the migration thread
 * any more: before it stops the guest, blk_mirror_stop_waiting releases
 * every waiting write and mirrors no new one (its bits stay set for the
 * final pass, (4)); units already queued are sent, in order, with it. */
#include <string.h>

#include "block-internal.h"

#define CHUNK_START(off) ((uint64_t)(off) & ~(uint64_t)(BLK_CHUNK - 1))

/* One guest write waiting for its units. */
typedef struct BlkMirrorWrite {
    unsigned refs;              /* the writer and each unit not done (m->lock) */
    unsigned pending;           /* units not done */
} BlkMirrorWrite;

struct BlkMirror {
    BlkOrder *order;
    BlkChunkOptions opts;
    BlkPipeline *wake;
    gint active;                /* write-blocking: mirror new writes */
    gint max_record;
    /* Under the order lock: units by sequence, read or not (job->done). */
    GQueue units;
    /* Under lock: */
    GMutex lock;
    GCond cond;                 /* a unit is done, or the writers are released */
    bool stopped;               /* no write waits any more */
    uint64_t used, budget;      /* bytes of unit buffers */
    uint64_t pending;           /* disk bytes of the units not done */
};

BlkMirror *blk_mirror_new(BlkOrder *order, const BlkChunkOptions *o, uint64_t budget,
                          BlkPipeline *wake)
{
    BlkMirror *m = g_new0(BlkMirror, 1);

    m->order = order;
    m->opts = *o;
    /* The guest thread reads a handful of blocks: not worth compressing. */
    m->opts.compress = false;
    m->wake = wake;
    m->budget = budget;
    g_queue_init(&m->units);
    g_mutex_init(&m->lock);
    g_cond_init(&m->cond);
    return m;
}

static void unit_free(BlkChunkJob *job)
{
    bdrv_buf_free(job->buf);
    blk_chunk_job_free(job);
}

/* m->lock held: drop one reference to W. */
static void write_unref_locked(BlkMirrorWrite *w)
{
    if (--w->refs == 0) {
        g_free(w);
    }
}

void blk_mirror_free(BlkMirror *m)
{
    BlkChunkJob *job;

    if (!m) {
        return;
    }
    /* No guest write is inside any more: their units just go. */
    while ((job = g_queue_pop_head(&m->units))) {
        if (job->waiter) {
            write_unref_locked(job->waiter);
        }
        unit_free(job);
    }
    g_cond_clear(&m->cond);
    g_mutex_clear(&m->lock);
    g_free(m);
}

void blk_mirror_set_active(BlkMirror *m, bool active, uint32_t max_record)
{
    g_mutex_lock(&m->lock);
    g_atomic_int_set(&m->max_record, max_record);
    g_atomic_int_set(&m->active, active && !m->stopped);
    g_mutex_unlock(&m->lock);
}

bool blk_mirror_is_active(BlkMirror *m)
{
    return g_atomic_int_get(&m->active);
}

void blk_mirror_stop_waiting(BlkMirror *m)
{
    g_mutex_lock(&m->lock);
    m->stopped = true;
    g_atomic_int_set(&m->active, 0);
    g_cond_broadcast(&m->cond);
    g_mutex_unlock(&m->lock);
}

/* ---- the guest's side ---- */

/* Buffer bytes a unit for [off, off+len) of DEV's chunk may need: the
 * dirty blocks it may cover, or the whole chunk (qemu-compat). */
static uint64_t bound_cost(BlkMirror *m, BlkMigDevice *dev, uint64_t off, uint64_t len)
{
    uint64_t gran = dirty_bitmap_granularity(dev->bitmap);
    uint64_t chunk = CHUNK_START(off);

    if (m->opts.whole_chunks) {
        return BLK_CHUNK;
    }
    return MIN(ROUND_UP(off + len, gran), chunk + BLK_CHUNK) - (off - off % gran);
}

/* The buffer JOB's ranges need (0 when it has none). */
static uint64_t unit_cost(BlkMirror *m, const BlkChunkJob *job)
{
    const BlkRange *first, *last;

    if (job->ranges->len == 0) {
        return 0;
    }
    if (m->opts.whole_chunks) {
        return BLK_CHUNK;
    }
    first = &g_array_index(job->ranges, BlkRange, 0);
    last = &g_array_index(job->ranges, BlkRange, job->ranges->len - 1);
    return ROUND_UP(last->off + last->len, BLK_SECTOR) - first->off;
}

/* Wait for COST bytes of buffers (one unit always fits); false once the
 * writers were released. */
static bool reserve(BlkMirror *m, uint64_t cost)
{
    bool ok;

    g_mutex_lock(&m->lock);
    while (!m->stopped && m->used > 0 && m->used + cost > m->budget) {
        g_cond_wait(&m->cond, &m->lock);
    }
    ok = !m->stopped;
    if (ok) {
        m->used += cost;
    }
    g_mutex_unlock(&m->lock);
    return ok;
}

/* The unit takes its place: RESERVED bytes were set aside for it, of
 * which it keeps what its ranges need. */
static void account_unit(BlkMirror *m, BlkMirrorWrite *w, BlkChunkJob *job, uint64_t reserved)
{
    g_mutex_lock(&m->lock);
    m->used -= reserved - unit_cost(m, job);
    m->pending += job->walked;
    w->refs++;
    w->pending++;
    g_cond_broadcast(&m->cond);
    g_mutex_unlock(&m->lock);
}

/* Under the order lock: a unit for [off, off+len) of DEV (one chunk),
 * queued but not read; NULL when the bulk copy has not walked the chunk
 * yet (it reads the write later). */
static BlkChunkJob *claim(BlkMirror *m, BlkMigDevice *dev, BlkMirrorWrite *w, uint64_t off,
                          uint64_t len)
{
    uint64_t chunk = CHUNK_START(off);
    BlkChunkJob *job = NULL;

    blk_order_lock(m->order);
    if (chunk < dev->bulk_cursor) {
        job = blk_chunk_job_new(dev->bs, dev->id, chunk, dev->size);
        job->mirrored = true;
        job->resend = true;
        job->waiter = w;
        job->max_record = g_atomic_int_get(&m->max_record);
        blk_order_take_dirty_locked(dev, job, off, len, m->opts.whole_chunks);
        blk_order_enter_locked(m->order, job);
        g_queue_push_tail(&m->units, job);
    }
    blk_order_unlock(m->order);
    return job;
}

/* Read what JOB's ranges hold now into its records. */
static void read_unit(BlkMirror *m, BlkChunkJob *job)
{
    if (job->ranges->len == 0) {
        return;
    }
    blk_chunk_plan(job, &m->opts);
    if (job->needs_worker) {
        job->buf_off = m->opts.whole_chunks ? job->chunk
                                            : g_array_index(job->ranges, BlkRange, 0).off;
        job->buf = bdrv_buf_alloc(job->bs, unit_cost(m, job));
    }
    blk_chunk_prepare(job, &m->opts, NULL);
}

static void mark_ready(BlkMirror *m, BlkChunkJob *job)
{
    blk_order_lock(m->order);
    job->done = true;
    blk_order_unlock(m->order);
    blk_pipeline_kick(m->wake);
}

/* Mirror [off, off+len) of DEV, inside one chunk; false once the writers
 * were released (the rest of the write stays dirty, for the final pass). */
static bool mirror_piece(BlkMirror *m, BlkMigDevice *dev, BlkMirrorWrite *w, uint64_t off,
                         uint64_t len)
{
    uint64_t reserved = bound_cost(m, dev, off, len);
    BlkChunkJob *job;

    if (!reserve(m, reserved)) {
        return false;
    }
    job = claim(m, dev, w, off, len);
    if (!job) {
        g_mutex_lock(&m->lock);
        m->used -= reserved;
        g_cond_broadcast(&m->cond);
        g_mutex_unlock(&m->lock);
        return true;
    }
    account_unit(m, w, job, reserved);
    read_unit(m, job);
    mark_ready(m, job);
    return true;
}

void blk_mirror_write(BlkMirror *m, BlkMigDevice *dev, uint64_t off, uint64_t len)
{
    uint64_t end = MIN(off + len, dev->size);
    BlkMirrorWrite *w;

    if (!g_atomic_int_get(&m->active) || off >= end) {
        return;
    }
    w = g_new0(BlkMirrorWrite, 1);
    w->refs = 1;
    for (uint64_t pos = off, next; pos < end; pos = next) {
        next = MIN(CHUNK_START(pos) + BLK_CHUNK, end);
        if (!mirror_piece(m, dev, w, pos, next - pos)) {
            break;
        }
    }
    g_mutex_lock(&m->lock);
    while (w->pending > 0 && !m->stopped) {
        g_cond_wait(&m->cond, &m->lock);
    }
    write_unref_locked(w);
    g_mutex_unlock(&m->lock);
}

/* ---- the sender's side ---- */

BlkChunkJob *blk_mirror_take(BlkMirror *m)
{
    BlkChunkJob *found = NULL;

    blk_order_lock(m->order);
    for (GList *l = m->units.head; l && !found; l = l->next) {
        BlkChunkJob *job = l->data;
        if (job->done && blk_order_is_first_locked(m->order, job)) {
            found = job;
            g_queue_delete_link(&m->units, l);
            blk_order_leave_locked(m->order, found);
        }
    }
    blk_order_unlock(m->order);
    return found;
}

BlkChunkJob *blk_mirror_blocker(BlkMirror *m)
{
    BlkChunkJob *blocker = NULL;

    blk_order_lock(m->order);
    for (GList *l = m->units.head; l && !blocker; l = l->next) {
        BlkChunkJob *job = l->data;
        BlkChunkJob *first = job->done ? blk_order_first_locked(m->order, job) : NULL;

        if (first && first != job && !first->mirrored) {
            blocker = first;
        }
    }
    blk_order_unlock(m->order);
    return blocker;
}

void blk_mirror_done(BlkMirror *m, BlkChunkJob *job, bool sent)
{
    g_mutex_lock(&m->lock);
    m->used -= unit_cost(m, job);
    m->pending -= job->walked;
    if (job->waiter) {
        job->waiter->pending--;
        write_unref_locked(job->waiter);
    }
    g_cond_broadcast(&m->cond);
    g_mutex_unlock(&m->lock);
    unit_free(job);
}

bool blk_mirror_is_empty(BlkMirror *m)
{
    bool empty;

    blk_order_lock(m->order);
    empty = g_queue_is_empty(&m->units);
    blk_order_unlock(m->order);
    return empty;
}

uint64_t blk_mirror_pending(BlkMirror *m)
{
    uint64_t pending;

    g_mutex_lock(&m->lock);
    pending = m->pending;
    g_mutex_unlock(&m->lock);
    return pending;
}
