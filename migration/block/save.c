/* The "block" savevm handler, source side: bulk copy of every drive in
 * 1 MiB chunks (holes never read), then re-sending what the guest dirtied,
 * then the rest while the guest is stopped.  Chunks become jobs of the
 * read pipeline; finished jobs go out on the main stream, or on their
 * multifd channel (send.c).  Guest writes meet the migration through a
 * write notifier (guest-write.c): in write-blocking mode they are mirrored
 * (mirror.c, which also argues the order), with auto-converge throttled
 * (converge.c). */
#include <errno.h>
#include <string.h>

#include "block/block.h"
#include "block/dirty-bitmap.h"
#include "migration/options.h"
#include "block-internal.h"
#include "util/bitmap.h"

#define CHUNK_START(off) ((uint64_t)(off) & ~(uint64_t)(BLK_CHUNK - 1))
/* Write-blocking: the longest data record, so that a mirrored guest write
 * waits behind at most that much (2 ms at 32 MiB/s). */
#define WRITE_BLOCKING_MAX_RECORD (64 * 1024)
/* One save_iterate call returns after this long even if max_bytes was not
 * reached (zero chunks cost little wire), so the migration thread keeps
 * checking cancellation, bandwidth and the downtime estimate. */
#define ITERATE_TIME_BUDGET_US (200 * 1000)
/* Longest wait for the pipeline before re-checking for errors. */
#define PUMP_WAIT_US (20 * 1000)
/* A drive's dirty bitmap holds at most this many bits (32 MiB: a 1 TiB
 * drive at 4 KiB); a larger drive is tracked in coarser blocks. */
#define MAX_BITMAP_BITS (UINT64_C(1) << 28)
/* Bits above the bulk cursor are counted this many bytes of drive at a
 * time. */
#define ABOVE_PIECE (64 * BLK_CHUNK)

typedef struct BlkMigState {
    /* Guards devs (QMP reads pending and stats from its own thread), the
     * cursors and the statistics; multifd threads update the latter. */
    GMutex lock;
    GPtrArray *devs;            /* BlkMigDevice *; NULL when not set up */
    BlkChunkOptions opts;       /* fixed at setup */
    BlkPipeline *pipeline;
    MultifdSend *multifd;       /* NULL without the multifd capability */
    BlkOrder *order;            /* the units of each chunk, in order */
    BlkMirror *mirror;          /* write-blocking */
    BlkConverge *converge;      /* auto-converge */
    BlkGuestWrites *guest;      /* the write notifiers on the drives */
    BlkSender sender;           /* migration thread */
    uint32_t max_record;        /* of new jobs: 0, or short in write-blocking mode */
    bool write_blocking;        /* block-copy-mode, as last seen */
    BlkPasses passes;
    bool bulk_done;             /* every bulk chunk was submitted */
    bool bulk_sent;             /* ...and sent: the dirty phase runs */
    guint dirty_dev;            /* where the dirty phase resumes */
    uint64_t dirty_cursor;
    int progress;               /* last PROGRESS percent sent */
    uint64_t processed;         /* disk bytes of jobs sent, less what they left out */
    uint64_t inflight;          /* disk bytes of jobs submitted, not yet sent */
    uint64_t remaining_at_end;  /* remaining when the migration was cleaned up */
    MigrationDiskStats stats;
} BlkMigState;

static BlkMigState blk;

static void device_free(gpointer p)
{
    BlkMigDevice *dev = p;

    if (dev->bitmap) {
        bdrv_release_dirty_bitmap(dev->bitmap);
    }
    g_free(dev->id);
    g_free(dev);
}

/* ---- accounting (blk.lock held) ---- */

/* Bytes of the dirty chunks below LIMIT (qemu-compat re-sends whole
 * chunks). */
static uint64_t dirty_chunk_bytes_below(BlkMigDevice *dev, uint64_t limit)
{
    uint64_t bytes = 0;
    int64_t off = 0;

    while ((off = dirty_bitmap_next_dirty(dev->bitmap, off)) >= 0 &&
           (uint64_t)off < limit) {
        off = CHUNK_START(off);
        bytes += MIN(BLK_CHUNK, dev->size - off);
        off += BLK_CHUNK;
    }
    return bytes;
}

/* Clears the bits of [off, off + len) and returns their bytes (the last
 * block of the drive counts only its part inside the drive). */
static uint64_t take_dirty_bytes(BlkMigDevice *dev, uint64_t off, uint64_t len,
                                 unsigned long *bits)
{
    uint64_t gran = dirty_bitmap_granularity(dev->bitmap);
    uint64_t nbits = dirty_bitmap_snapshot_and_clear(dev->bitmap, off, len, bits);
    uint64_t bytes = bitmap_count(bits, nbits) * gran;

    if (off + len == dev->size && dev->size % gran && nbits &&
        bitmap_test(bits, nbits - 1)) {
        bytes -= gran - dev->size % gran;
    }
    return bytes;
}

/* The dirty bytes at or above the bulk cursor, whose bits are cleared:
 * they mean nothing, since the bulk phase reads those chunks later (after
 * clearing their bits again), and only the bits below the cursor are
 * what the dirty phase will send.  A write racing with this is safe: the
 * cursor cannot move meanwhile (blk.lock), so its chunk is read later. */
static uint64_t take_dirty_above_cursor(BlkMigDevice *dev)
{
    uint64_t gran = dirty_bitmap_granularity(dev->bitmap);
    g_autofree unsigned long *bits = g_new(unsigned long, BITMAP_WORDS(ABOVE_PIECE / gran + 1));
    uint64_t bytes = 0;

    for (uint64_t off = dev->bulk_cursor; off < dev->size; off += ABOVE_PIECE) {
        bytes += take_dirty_bytes(dev, off, MIN(ABOVE_PIECE, dev->size - off), bits);
    }
    return bytes;
}

/* Dirty bytes below the bulk cursor, which the dirty phase will send.
 * The whole bitmap counted first, less what lies above the cursor
 * counted after: a write landing in between can only make this less, so
 * it never exceeds the bytes below the cursor. */
static uint64_t dirty_below_cursor(BlkMigDevice *dev)
{
    uint64_t all, above;

    if (blk.opts.whole_chunks) {
        return dirty_chunk_bytes_below(dev, dev->bulk_cursor);
    }
    all = dirty_bitmap_dirty_bytes(dev->bitmap);
    if (dev->bulk_cursor >= dev->size) {
        return all;
    }
    above = take_dirty_above_cursor(dev);
    return all > above ? all - above : 0;
}

/* Bytes of the drives whose current contents the source has still to
 * read and send, each counted once: what the bulk phase has not walked,
 * and what the guest wrote since it was read.  At most the drives'
 * total.  Chunks read and not yet sent are not in it (see pending). */
static uint64_t remaining_locked(void)
{
    uint64_t remaining = 0;

    for (guint i = 0; blk.devs && i < blk.devs->len; i++) {
        BlkMigDevice *dev = blk.devs->pdata[i];
        remaining += dev->size - dev->bulk_cursor + dirty_below_cursor(dev);
    }
    return remaining;
}

/* What the switchover would have to send: the remaining bytes, the jobs
 * read and not yet sent (counted even if the guest wrote them again:
 * better late than too early), mirrored writes not yet sent, and what
 * multifd sockets still hold. */
static uint64_t blk_mig_save_pending(void *opaque)
{
    uint64_t pending;

    g_mutex_lock(&blk.lock);
    pending = remaining_locked() + blk.inflight +
              (blk.mirror ? blk_mirror_pending(blk.mirror) : 0) +
              (blk.multifd ? multifd_send_unsent_bytes(blk.multifd) : 0);
    g_mutex_unlock(&blk.lock);
    return pending;
}

/* blk.lock held: the guest's bytes written so far. */
static uint64_t guest_written_locked(void)
{
    return blk.guest ? blk_guest_writes_bytes(blk.guest) : 0;
}

void block_migration_stats(MigrationDiskStats *out)
{
    g_mutex_lock(&blk.lock);
    *out = blk.stats;
    if (blk.devs) {
        out->remaining = remaining_locked();
        out->dirty_rate = blk_passes_dirty_rate(&blk.passes, guest_written_locked());
        out->pass = blk.passes.pass;
    } else {
        out->remaining = blk.remaining_at_end;
    }
    g_mutex_unlock(&blk.lock);
}

/* The handler's query-migrate part: "disk", with the wire throughput
 * over the migration's time so far, and auto-converge's throttle. */
static void blk_mig_query(void *opaque, MigrationInfo *info)
{
    double seconds = info->total_time / 1000.0;
    uint64_t throttle = 0;

    info->has_disk = true;
    block_migration_stats(&info->disk);
    info->disk.mbps = seconds > 0 ? info->disk.transferred * 8 / 1e6 / seconds : 0;
    g_mutex_lock(&blk.lock);
    if (blk.converge) {
        throttle = blk_converge_percentage(blk.converge);
    }
    g_mutex_unlock(&blk.lock);
    info->has_throttle = throttle > 0;
    info->throttle_percentage = throttle;
}

uint64_t block_migration_processed_bytes(void)
{
    uint64_t processed;

    g_mutex_lock(&blk.lock);
    processed = blk.processed;
    g_mutex_unlock(&blk.lock);
    return processed;
}

static void account_transferred(uint64_t bytes)
{
    g_mutex_lock(&blk.lock);
    blk.stats.transferred += bytes;
    g_mutex_unlock(&blk.lock);
}

/* A job's records are on the wire (WIRE_BYTES of them on a multifd
 * channel; main-stream bytes are counted per section), or it was dropped
 * after a failure.  What the job left out is not processed: the
 * destination reports what it wrote as durable, and the core compares
 * the two.  Any thread. */
static void job_sent(BlkChunkJob *job, bool sent, uint64_t wire_bytes, void *opaque)
{
    blk_resume_note_sent(job, sent);
    g_mutex_lock(&blk.lock);
    if (!job->mirrored) {
        blk.inflight -= job->walked;
    }
    if (sent && job->walked) {
        blk.processed += job->walked - job->left_out;
        blk.stats.transferred += wire_bytes;
        if (job->has_data) {
            blk.stats.data_blocks++;
        } else if (job->records->len) {
            blk.stats.zero_blocks++;
        }
    }
    g_mutex_unlock(&blk.lock);
    if (job->mirrored) {
        blk_mirror_done(blk.mirror, job, sent);
    } else {
        blk_pipeline_release(blk.pipeline, job);
    }
}

/* ---- records on the main stream ---- */

static void put_record_header(MigStream *f, const BlkMigDevice *dev,
                              uint64_t offset, uint64_t flags)
{
    size_t len = strlen(dev->id);

    mig_put_be64(f, offset | flags);
    mig_put_u8(f, len);
    mig_put_buffer(f, dev->id, len);
}

/* An OPTION record without payload. */
static void put_option(MigStream *f, uint32_t code)
{
    mig_put_be64(f, BLK_MIG_FLAG_OPTION);
    mig_put_be32(f, code);
    mig_put_be32(f, 0);
}

/* block-resume: the RESUME option with this migration's id; MODE 0 for
 * a new migration, 1 for a resumed one.  Nothing when it is off. */
static void put_resume_option(MigStream *f, uint8_t mode)
{
    uint8_t id[BLK_MIG_RESUME_ID_LEN];

    if (!blk_resume_save_id(id)) {
        return;
    }
    mig_put_be64(f, BLK_MIG_FLAG_OPTION);
    mig_put_be32(f, BLK_MIG_OPTION_RESUME);
    mig_put_be32(f, sizeof(id) + 1);
    mig_put_buffer(f, id, sizeof(id));
    mig_put_u8(f, mode);
}

static void put_progress(MigStream *f, int percent)
{
    mig_put_be64(f, (uint64_t)percent << 9 | BLK_MIG_FLAG_PROGRESS);
}

/* ---- submitting chunk jobs ---- */

static void submit(BlkChunkJob *job)
{
    job->max_record = blk.max_record;
    blk_chunk_plan(job, &blk.opts);
    if (!job->needs_worker) {
        /* Holes only: the records need neither a read nor a thread. */
        blk_chunk_prepare(job, &blk.opts, NULL);
    }
    g_mutex_lock(&blk.lock);
    blk.inflight += job->walked;
    g_mutex_unlock(&blk.lock);
    blk_pipeline_submit(blk.pipeline, job);
}

/* The next bulk chunk; false (and blk.bulk_done) after the last one. */
static bool bulk_submit_next(MigStream *f)
{
    BlkMigDevice *dev = NULL;
    BlkChunkJob *job;
    uint64_t off, len;
    int percent;

    for (guint i = 0; i < blk.devs->len && !dev; i++) {
        BlkMigDevice *d = blk.devs->pdata[i];
        if (d->bulk_cursor < d->size) {
            dev = d;
        }
    }
    if (!dev) {
        blk.bulk_done = true;
        return false;
    }
    off = dev->bulk_cursor;
    len = MIN(BLK_CHUNK, dev->size - off);
    job = blk_chunk_job_new(dev->bs, dev->id, off, dev->size);
    blk_chunk_add_range(job, off, len);
    /* Clear first, read after: a write racing with the read is marked
     * again and re-sent in the dirty phase (or mirrored, once the cursor
     * has passed: both under the order lock). */
    blk_order_lock(blk.order);
    dirty_bitmap_test_and_clear(dev->bitmap, off, len);
    blk_order_enter_locked(blk.order, job);
    g_mutex_lock(&blk.lock);
    dev->bulk_cursor = off + len;
    blk.stats.bulk_copied += len;
    percent = blk.stats.total ? blk.stats.bulk_copied * 100 / blk.stats.total : 100;
    g_mutex_unlock(&blk.lock);
    blk_order_unlock(blk.order);
    submit(job);
    if (percent != blk.progress) {
        blk.progress = percent;
        put_progress(f, percent);
    }
    return true;
}

/* The dirty blocks of the chunk at OFF of DEV as a job, their bits
 * cleared and the job in its chunk's order; NULL when none was left. */
static BlkChunkJob *take_dirty_chunk(BlkMigDevice *dev, uint64_t off)
{
    BlkChunkJob *job = blk_chunk_job_new(dev->bs, dev->id, off, dev->size);

    job->resend = true;
    blk_order_lock(blk.order);
    blk_order_take_dirty_locked(dev, job, off, MIN(BLK_CHUNK, dev->size - off),
                                blk.opts.whole_chunks);
    if (job->ranges->len) {
        blk_order_enter_locked(blk.order, job);
    }
    blk_order_unlock(blk.order);
    if (job->ranges->len == 0) {
        blk_chunk_job_free(job);
        return NULL;
    }
    return job;
}

/* A walk over the dirty bitmaps begins (FORCE: the first, after the bulk
 * copy): maybe the next pass. */
static void dirty_walk_begins(bool force)
{
    bool next;

    g_mutex_lock(&blk.lock);
    next = blk_passes_walk(&blk.passes, guest_written_locked(), force);
    g_mutex_unlock(&blk.lock);
    if (next) {
        migration_notify_pass(blk.passes.pass);
    }
}

/* The chunk holding the next dirty block at or after the dirty cursor;
 * false when the cursor wrapped past the last drive (a pass ended). */
static bool dirty_submit_next(void)
{
    while (blk.dirty_dev < blk.devs->len) {
        BlkMigDevice *dev = blk.devs->pdata[blk.dirty_dev];
        int64_t dirty = dirty_bitmap_next_dirty(dev->bitmap, blk.dirty_cursor);

        if (dirty >= 0 && (uint64_t)dirty < dev->size) {
            uint64_t off = CHUNK_START(dirty);
            BlkChunkJob *job = take_dirty_chunk(dev, off);

            blk.dirty_cursor = off + BLK_CHUNK;
            if (!job) {
                continue;
            }
            submit(job);
            return true;
        }
        blk.dirty_dev++;
        blk.dirty_cursor = 0;
    }
    blk.dirty_dev = 0;
    blk.dirty_cursor = 0;
    g_mutex_lock(&blk.lock);
    blk.stats.dirty_sync_count++;
    g_mutex_unlock(&blk.lock);
    dirty_walk_begins(false);
    return false;
}

/* ---- sending finished jobs ---- */

/* The main stream or a channel failed (a cancel shuts the main stream). */
static bool send_failed(MigStream *f, GError **errp)
{
    if (blk.multifd && multifd_send_failed(blk.multifd, errp)) {
        return true;
    }
    if (mig_stream_error(f)) {
        g_set_error(errp, MIG_ERROR, 0, "writing the migration stream failed: %s",
                    mig_stream_error_msg(f));
        return true;
    }
    return false;
}

/* What a pump submits: the bulk walk, a dirty pass, or nothing (it only
 * sends what is queued, mirrored writes included). */
typedef enum { PUMP_BULK, PUMP_DIRTY_PASS, PUMP_QUEUED } PumpWork;

/* One more job of WORK; false when there is none left. */
static bool submit_next(MigStream *f, PumpWork work)
{
    if (work == PUMP_BULK) {
        return bulk_submit_next(f);
    }
    return dirty_submit_next();
}

/* Whether WORK is all sent: PUMP_QUEUED waits for the mirrored writes
 * too. */
static bool pump_done(PumpWork work)
{
    return blk_pipeline_is_empty(blk.pipeline) &&
           (work != PUMP_QUEUED || blk_mirror_is_empty(blk.mirror));
}

/* Keep the pipeline full with WORK and send what is ready (mirrored
 * writes too), until WORK is all sent (1), MAX_BYTES were sent or
 * DEADLINE (0: none) passed (0), or something failed (-1). */
static int pump(MigStream *f, PumpWork work, uint64_t max_bytes, gint64 deadline,
                GError **errp)
{
    uint64_t sent = 0;
    bool out_of_work = (work == PUMP_BULK && blk.bulk_done) || work == PUMP_QUEUED;

    for (;;) {
        int count;

        if (send_failed(f, errp)) {
            return -1;
        }
        while (!out_of_work && blk_pipeline_has_room(blk.pipeline)) {
            out_of_work = !submit_next(f, work);
        }
        count = blk_send_ready(&blk.sender, f, &sent, max_bytes, errp);
        if (count < 0) {
            return -1;
        }
        if (out_of_work && pump_done(work)) {
            return 1;
        }
        if (sent >= max_bytes || (deadline && g_get_monotonic_time() >= deadline)) {
            return 0;
        }
        if (count == 0) {
            blk_pipeline_wait(blk.pipeline, PUMP_WAIT_US);
        }
    }
}

/* Write-blocking with nothing dirty: send mirrored writes as they come
 * until DEADLINE or MAX_BYTES; 0, or -1 when something failed. */
static int serve_mirrored(MigStream *f, uint64_t max_bytes, gint64 deadline, GError **errp)
{
    uint64_t sent = 0;

    while (sent < max_bytes && g_get_monotonic_time() < deadline) {
        int count;

        if (send_failed(f, errp)) {
            return -1;
        }
        count = blk_send_ready(&blk.sender, f, &sent, max_bytes, errp);
        if (count < 0) {
            return -1;
        }
        if (count == 0) {
            blk_pipeline_wait(blk.pipeline, PUMP_WAIT_US);
        }
    }
    return 0;
}

/* ---- setup and cleanup ---- */

static bool blk_mig_is_active(void *opaque)
{
    return mig_cap_enabled(MIG_CAP_BLOCK);
}

/* GRANULARITY, or coarser when a drive of SIZE would need more than
 * MAX_BITMAP_BITS at it (never coarser than a chunk). */
static uint32_t granularity_for(uint64_t size, uint64_t granularity)
{
    while (granularity < BLK_CHUNK && (size + granularity - 1) / granularity > MAX_BITMAP_BITS) {
        granularity *= 2;
    }
    return granularity;
}

static bool add_devices(GPtrArray *devs, uint64_t granularity, GError **errp)
{
    g_autoptr(GList) drives = bdrv_list();

    for (GList *l = drives; l; l = l->next) {
        BlockDriverState *bs = l->data;
        BlkMigDevice *dev;

        if (strlen(bdrv_get_id(bs)) > 255) {
            g_set_error(errp, MIG_ERROR, 0,
                        "block migration: drive id '%s' is longer than 255 bytes",
                        bdrv_get_id(bs));
            return false;
        }
        dev = g_new0(BlkMigDevice, 1);
        dev->bs = bs;
        dev->id = g_strdup(bdrv_get_id(bs));
        dev->size = bdrv_getlength(bs);
        dev->bitmap = bdrv_create_dirty_bitmap(bs, granularity_for(dev->size, granularity));
        g_ptr_array_add(devs, dev);
    }
    return true;
}

/* Guest writes go on without the migration: none waits for it (nor for
 * the throttle) any more, and once this returns none is inside it. */
static void release_guest(void)
{
    BlkGuestWrites *guest;

    if (blk.mirror) {
        blk_mirror_stop_waiting(blk.mirror);
    }
    if (blk.converge) {
        blk_converge_lift(blk.converge);
    }
    g_mutex_lock(&blk.lock);
    guest = g_steal_pointer(&blk.guest);
    g_mutex_unlock(&blk.lock);
    blk_guest_writes_free(guest);
}

/* The mirror, the order and the throttle, once no unit is with a channel
 * or the pipeline any more.  QMP looks at them under the lock. */
static void free_write_blocking(void)
{
    BlkMirror *mirror;
    BlkConverge *converge;

    g_mutex_lock(&blk.lock);
    mirror = g_steal_pointer(&blk.mirror);
    converge = g_steal_pointer(&blk.converge);
    g_mutex_unlock(&blk.lock);
    blk_mirror_free(mirror);
    blk_converge_free(converge);
    g_clear_pointer(&blk.order, blk_order_free);
}

/* Nothing is sent any more: guest writes, channels, the pipeline and
 * write-blocking let go; the drives and their dirty bitmaps stay. */
static void stop_sending(void)
{
    BlkPipeline *pipeline;
    MultifdSend *multifd;

    release_guest();
    /* Channels hand their jobs back to the pipeline (and the mirror):
     * they go first.  QMP looks at them (pending) under the lock. */
    g_mutex_lock(&blk.lock);
    multifd = g_steal_pointer(&blk.multifd);
    g_mutex_unlock(&blk.lock);
    multifd_send_free(multifd);
    pipeline = blk.pipeline;
    blk_pipeline_free(pipeline);
    g_mutex_lock(&blk.lock);
    blk.pipeline = NULL;
    blk.inflight = 0;
    g_mutex_unlock(&blk.lock);
    free_write_blocking();
}

static void blk_mig_cleanup(void *opaque)
{
    block_load_cleanup();
    g_mutex_lock(&blk.lock);
    if (blk.devs) {
        blk.remaining_at_end = remaining_locked();
        blk.stats.dirty_rate = blk_passes_dirty_rate(&blk.passes, guest_written_locked());
        blk.stats.pass = blk.passes.pass;
    }
    g_mutex_unlock(&blk.lock);
    stop_sending();
    blk_resume_save_stop();
    g_mutex_lock(&blk.lock);
    g_clear_pointer(&blk.devs, g_ptr_array_unref);
    g_mutex_unlock(&blk.lock);
}

/* What chunks turn into, from the capabilities and parameters. */
static void chunk_options(const MigrationParameters *params, BlkChunkOptions *o)
{
    bool zlib = params->compress_algorithm == MIG_COMPRESS_ZLIB;

    *o = (BlkChunkOptions){
        .whole_chunks = mig_cap_enabled(MIG_CAP_QEMU_COMPAT),
        .zero_blocks = mig_cap_enabled(MIG_CAP_ZERO_BLOCKS),
        .incremental = params->block_incremental,
    };
    o->compress = mig_cap_enabled(MIG_CAP_COMPRESS) && !o->whole_chunks;
    /* qemu-compat ignores it: QEMU 7.2's records have no room for one. */
    o->checksum = mig_cap_enabled(MIG_CAP_BLOCK_CHECKSUM) && !o->whole_chunks;
    o->compress_algo = zlib ? COMPRESS_ZLIB : COMPRESS_ZSTD;
    /* QEMU's compress-level 0 means "fastest" here: level 1. */
    o->compress_level = zlib ? MAX((int)params->compress_level, 1)
                             : (int)params->compress_zstd_level;
}

/* Connects the channels and announces them in the setup part. */
static bool setup_multifd(MigStream *f, const MigrationParameters *params, GError **errp)
{
    uint8_t id[BLK_MIG_MULTIFD_ID_LEN];
    g_autofree char *uri = migration_outgoing_uri();
    MultifdSend *multifd;
    unsigned n = params->multifd_channels;

    if (!mig_cap_enabled(MIG_CAP_MULTIFD) || blk.opts.whole_chunks) {
        return true;
    }
    if (!uri) {
        g_set_error(errp, MIG_ERROR, 0, "multifd needs an outgoing migration URI");
        return false;
    }
    for (size_t i = 0; i < sizeof(id); i++) {
        id[i] = g_random_int_range(0, 256);
    }
    multifd = multifd_send_start(uri, n, id, f, job_sent, NULL, errp);
    if (!multifd) {
        return false;
    }
    g_mutex_lock(&blk.lock);
    blk.multifd = multifd;
    g_mutex_unlock(&blk.lock);
    mig_put_be64(f, BLK_MIG_FLAG_CHANNELS);
    mig_put_be32(f, n);
    mig_put_buffer(f, id, sizeof(id));
    return true;
}

/* blk.lock held: whether the bulk phase has walked every drive. */
static bool bulk_walked_locked(void)
{
    for (guint i = 0; i < blk.devs->len; i++) {
        BlkMigDevice *dev = blk.devs->pdata[i];
        if (dev->bulk_cursor < dev->size) {
            return false;
        }
    }
    return true;
}

/* blk.lock held: the parts that sending needs, new (at setup, and again
 * when a paused migration resumes: the drives and counts stay). */
static void start_sending_locked(const MigrationParameters *params)
{
    chunk_options(params, &blk.opts);
    blk.pipeline = blk_pipeline_new(&blk.opts, params->max_inflight);
    blk.bulk_done = bulk_walked_locked();
    blk.bulk_sent = blk.bulk_done;
    blk.dirty_dev = 0;
    blk.dirty_cursor = 0;
    blk.inflight = 0;
    blk.order = blk_order_new();
    blk.mirror = blk_mirror_new(blk.order, &blk.opts, params->max_inflight, blk.pipeline);
    blk.converge = blk_converge_new();
    blk.max_record = 0;
    blk.write_blocking = false;
}

static void reset_state(GPtrArray *devs, const MigrationParameters *params)
{
    g_mutex_lock(&blk.lock);
    blk.devs = devs;
    blk.progress = -1;
    blk.processed = 0;
    blk.remaining_at_end = 0;
    blk.stats = (MigrationDiskStats){ 0 };
    for (guint i = 0; i < devs->len; i++) {
        blk.stats.total += ((BlkMigDevice *)devs->pdata[i])->size;
    }
    start_sending_locked(params);
    g_mutex_unlock(&blk.lock);
}

/* block-copy-mode may change at any time: the mirror and the records of
 * new jobs follow it. */
static void follow_copy_mode(void)
{
    MigrationParameters p;
    bool wb;

    mig_params_get(&p);
    wb = p.block_copy_mode == MIG_COPY_MODE_WRITE_BLOCKING;
    blk.max_record = wb && !blk.opts.whole_chunks ? WRITE_BLOCKING_MAX_RECORD : 0;
    blk_mirror_set_active(blk.mirror, wb, blk.max_record);
    if (wb != blk.write_blocking) {
        g_message("block migration: copy mode %s", mig_copy_mode_name(p.block_copy_mode));
        blk.write_blocking = wb;
    }
}

/* Guest writes meet the migration from now on; pass 1 begins. */
static void start_guest_writes(void)
{
    BlkGuestWrites *guest = blk_guest_writes_new(blk.mirror, blk.converge);

    blk.sender = (BlkSender){ .pipeline = blk.pipeline, .mirror = blk.mirror,
                              .order = blk.order, .multifd = blk.multifd,
                              .sent = job_sent };
    follow_copy_mode();
    for (guint i = 0; i < blk.devs->len; i++) {
        blk_guest_writes_attach(guest, blk.devs->pdata[i]);
    }
    g_mutex_lock(&blk.lock);
    blk.guest = guest;
    blk_passes_start(&blk.passes, 0);
    g_mutex_unlock(&blk.lock);
    migration_notify_pass(1);
}

/* The options (RESUME with MODE) and every drive's size. */
static void put_setup_records(MigStream *f, uint8_t mode)
{
    if (blk.opts.incremental && !blk.opts.whole_chunks) {
        put_option(f, BLK_MIG_OPTION_INCREMENTAL);
    }
    if (blk.opts.checksum) {
        put_option(f, BLK_MIG_OPTION_CHECKSUM);
    }
    put_resume_option(f, mode);
    for (guint i = 0; i < blk.devs->len && !blk.opts.whole_chunks; i++) {
        BlkMigDevice *dev = blk.devs->pdata[i];
        put_record_header(f, dev, 0, BLK_MIG_FLAG_DEVICE_SIZE);
        mig_put_be64(f, dev->size);
    }
}

static int blk_mig_save_setup(MigStream *f, void *opaque, GError **errp)
{
    MigrationParameters params;
    GPtrArray *devs = g_ptr_array_new_with_free_func(device_free);
    uint64_t start = mig_stream_bytes(f);

    blk_mig_cleanup(NULL);
    mig_params_get(&params);
    if (!add_devices(devs, params.dirty_granularity, errp)) {
        g_ptr_array_unref(devs);
        return -1;
    }
    reset_state(devs, &params);
    if (mig_cap_enabled(MIG_CAP_BLOCK_RESUME) && !blk.opts.whole_chunks) {
        blk_resume_save_start(devs);
    }
    put_setup_records(f, 0);
    if (!setup_multifd(f, &params, errp)) {
        return -1;
    }
    start_guest_writes();
    mig_put_be64(f, BLK_MIG_FLAG_EOS);
    account_transferred(mig_stream_bytes(f) - start);
    return mig_stream_error(f) ? -1 : 0;
}

/* ---- iterations and completion ---- */

/* A dirty pass, as far as MAX_BYTES and DEADLINE let it go; at its end
 * mirrored writes are served until DEADLINE (write-blocking), or, when
 * nothing was dirty, the channels get a little time to drain rather than
 * the thread spinning through empty passes.  Returns as pump does. */
static int dirty_iteration(MigStream *f, uint64_t max_bytes, gint64 deadline, GError **errp)
{
    uint64_t processed = block_migration_processed_bytes();
    int ret = pump(f, PUMP_DIRTY_PASS, max_bytes, deadline, errp);

    if (ret != 1) {
        return ret;
    }
    if (blk_mirror_is_active(blk.mirror)) {
        return serve_mirrored(f, max_bytes, deadline, errp) < 0 ? -1 : 1;
    }
    if (block_migration_processed_bytes() == processed) {
        blk_pipeline_wait(blk.pipeline, PUMP_WAIT_US);
    }
    return 1;
}

/* Auto-converge looks at what the guest wrote and what went out. */
static void converge_tick(void)
{
    uint64_t written, transferred;

    g_mutex_lock(&blk.lock);
    written = guest_written_locked();
    transferred = blk.stats.transferred;
    g_mutex_unlock(&blk.lock);
    blk_converge_tick(blk.converge, written, transferred);
}

/* The guest is about to stop for the switchover: its writes must not
 * wait for this thread (nor for the throttle) any more. */
static void blk_mig_save_stopping(void *opaque)
{
    if (blk.mirror) {
        blk_mirror_stop_waiting(blk.mirror);
    }
    if (blk.converge) {
        blk_converge_lift(blk.converge);
    }
}

static int blk_mig_save_iterate(MigStream *f, void *opaque, uint64_t max_bytes,
                                GError **errp)
{
    uint64_t start = mig_stream_bytes(f);
    gint64 deadline = g_get_monotonic_time() + ITERATE_TIME_BUDGET_US;
    bool dirty_phase = blk.bulk_sent;
    int ret;

    if (!blk.devs) {
        g_set_error(errp, MIG_ERROR, 0, "block migration was not set up");
        return -1;
    }
    follow_copy_mode();
    if (!dirty_phase) {
        ret = pump(f, PUMP_BULK, max_bytes, deadline, errp);
        blk.bulk_sent = ret == 1;
        if (blk.bulk_sent) {
            dirty_walk_begins(true);
        }
    } else {
        ret = dirty_iteration(f, max_bytes, deadline, errp);
    }
    converge_tick();
    mig_put_be64(f, BLK_MIG_FLAG_EOS);
    /* Nothing sent may wait in the buffer: the destination reports what
     * is durable, and the switchover waits for that. */
    mig_stream_flush(f);
    account_transferred(mig_stream_bytes(f) - start);
    if (ret < 0 || mig_stream_error(f)) {
        return -1;
    }
    /* The bulk phase is complete once its last chunk is sent. */
    return dirty_phase || ret == 1 ? 1 : 0;
}

/* Guest stopped: whatever the bulk phase has not walked yet, then every
 * block still dirty, then the channels' end markers. */
static int blk_mig_save_complete(MigStream *f, void *opaque, GError **errp)
{
    uint64_t start = mig_stream_bytes(f);
    int ret;

    if (!blk.devs) {
        g_set_error(errp, MIG_ERROR, 0, "block migration was not set up");
        return -1;
    }
    ret = pump(f, PUMP_BULK, UINT64_MAX, 0, errp);
    blk.bulk_sent = ret == 1;
    blk.dirty_dev = 0;
    blk.dirty_cursor = 0;
    if (ret > 0) {
        ret = pump(f, PUMP_DIRTY_PASS, UINT64_MAX, 0, errp);
    }
    if (ret > 0) {
        /* Mirrored writes still queued (the guest is stopped: all read). */
        ret = pump(f, PUMP_QUEUED, UINT64_MAX, 0, errp);
    }
    if (ret > 0 && blk.multifd && !multifd_send_finish(blk.multifd, f, errp)) {
        ret = -1;
    }
    mig_put_be64(f, BLK_MIG_FLAG_EOS);
    account_transferred(mig_stream_bytes(f) - start);
    return ret < 0 || mig_stream_error(f) ? -1 : 0;
}

/* ---- block-resume ---- */

/* The connection was lost: stop sending; the drives, their dirty bitmaps
 * (still tracking the guest) and the record counts stay. */
static void blk_mig_save_pause(void *opaque)
{
    stop_sending();
}

/* A resumed migration's setup part: new senders, the RESUME option
 * (mode 1) and the sizes again.  The bulk phase goes on from its cursor. */
static int blk_mig_save_resume_setup(MigStream *f, void *opaque, GError **errp)
{
    MigrationParameters params;
    uint64_t start = mig_stream_bytes(f);

    if (!blk.devs) {
        g_set_error(errp, MIG_ERROR, 0, "block migration was not set up");
        return -1;
    }
    mig_params_get(&params);
    g_mutex_lock(&blk.lock);
    start_sending_locked(&params);
    g_mutex_unlock(&blk.lock);
    put_setup_records(f, 1);
    start_guest_writes();
    mig_put_be64(f, BLK_MIG_FLAG_EOS);
    account_transferred(mig_stream_bytes(f) - start);
    return mig_stream_error(f) ? -1 : 0;
}

static int blk_mig_save_resume_map(void *opaque, const uint8_t *map, size_t len, GError **errp)
{
    return blk_resume_apply_map(blk.devs, map, len, errp);
}

static bool blk_mig_load_resumable(void *opaque)
{
    return blk_resume_load_resumable();
}

static uint64_t blk_mig_save_progress(void *opaque)
{
    return block_migration_processed_bytes();
}

static void blk_mig_load_setup(void *opaque, const SaveVMLoadContext *ctx)
{
    block_load_setup(ctx);
}

static const SaveVMHandlers blk_mig_handlers = {
    .save_setup = blk_mig_save_setup,
    .save_iterate = blk_mig_save_iterate,
    .save_pending = blk_mig_save_pending,
    .save_progress = blk_mig_save_progress,
    .save_stopping = blk_mig_save_stopping,
    .save_complete = blk_mig_save_complete,
    .query = blk_mig_query,
    .load_setup = blk_mig_load_setup,
    .load_state = block_load_state,
    .load_finish = block_load_finish,
    .cleanup = blk_mig_cleanup,
    .is_active = blk_mig_is_active,
    .save_pause = blk_mig_save_pause,
    .save_resume_setup = blk_mig_save_resume_setup,
    .save_resume_map = blk_mig_save_resume_map,
    .load_resumable = blk_mig_load_resumable,
};

void block_migration_register(void)
{
    savevm_register("block", 0, 1, &blk_mig_handlers, NULL);
    multifd_recv_register();
}
