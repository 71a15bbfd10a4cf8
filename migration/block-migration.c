/* The "block" savevm handler, source side: bulk copy of every drive in
 * 1 MiB chunks (holes never read), then re-sending chunks the guest
 * dirtied, then the rest while the guest is stopped. */
#include <errno.h>
#include <string.h>

#include "block/block.h"
#include "block/dirty-bitmap.h"
#include "migration/block-migration.h"
#include "migration/options.h"
#include "migration/savevm.h"
#include "migration-internal.h"
#include "util/zero.h"

#define CHUNK BLK_MIG_CHUNK_SIZE
#define CHUNK_START(off) ((uint64_t)(off) & ~(uint64_t)(CHUNK - 1))
/* One save_iterate call returns after this long even if max_bytes was not
 * reached (zero chunks cost little wire), so the migration thread keeps
 * checking cancellation, bandwidth and the downtime estimate. */
#define ITERATE_TIME_BUDGET_US (200 * 1000)

typedef struct BlkMigDevice {
    BlockDriverState *bs;
    char *id;
    uint64_t size;
    DirtyBitmap *bitmap;
    uint64_t bulk_cursor;       /* next chunk the bulk phase walks */
} BlkMigDevice;

typedef struct BlkMigState {
    /* Guards devs (QMP reads pending and stats from its own thread), the
     * cursors and the statistics. */
    GMutex lock;
    GPtrArray *devs;            /* BlkMigDevice *; NULL when not set up */
    uint8_t *buf;               /* one chunk, aligned for every drive */
    bool zero_blocks;           /* capabilities, fixed at setup */
    bool qemu_compat;
    bool bulk_done;
    guint dirty_dev;            /* where the dirty phase resumes */
    uint64_t dirty_cursor;
    int progress;               /* last PROGRESS percent sent */
    uint64_t bulk_walked;
    uint64_t processed;
    uint64_t remaining_at_end;  /* pending when the migration was cleaned up */
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

static uint64_t dirty_chunks_below(BlkMigDevice *dev, uint64_t limit)
{
    uint64_t count = 0;
    int64_t off = 0;

    while ((off = dirty_bitmap_next_dirty(dev->bitmap, off)) >= 0 &&
           (uint64_t)off < limit) {
        count++;
        off = CHUNK_START(off) + CHUNK;
    }
    return count;
}

/* Dirty chunks above the bulk cursor are not counted: the bulk phase will
 * send them anyway. */
static uint64_t pending_locked(void)
{
    uint64_t pending = 0;

    for (guint i = 0; blk.devs && i < blk.devs->len; i++) {
        BlkMigDevice *dev = blk.devs->pdata[i];
        pending += dev->size - dev->bulk_cursor;
        pending += dirty_chunks_below(dev, dev->bulk_cursor) * CHUNK;
    }
    return pending;
}

static uint64_t blk_mig_save_pending(void *opaque)
{
    uint64_t pending;

    g_mutex_lock(&blk.lock);
    pending = pending_locked();
    g_mutex_unlock(&blk.lock);
    return pending;
}

void block_migration_stats(MigrationDiskStats *out)
{
    g_mutex_lock(&blk.lock);
    *out = blk.stats;
    out->remaining = blk.devs ? pending_locked() : blk.remaining_at_end;
    g_mutex_unlock(&blk.lock);
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

/* ---- records ---- */

static void put_record_header(MigStream *f, const BlkMigDevice *dev,
                              uint64_t offset, uint64_t flags)
{
    size_t len = strlen(dev->id);

    mig_put_be64(f, offset | flags);
    mig_put_u8(f, len);
    mig_put_buffer(f, dev->id, len);
}

static void put_progress(MigStream *f, int percent)
{
    mig_put_be64(f, (uint64_t)percent << 9 | BLK_MIG_FLAG_PROGRESS);
}

/* ---- reading a chunk ---- */

typedef struct Extent {
    uint64_t off;
    uint64_t len;
    bool is_data;
} Extent;

/* Allocation map of [off, off+len); a failing block_status is taken as
 * data, which only costs a read. */
static GArray *chunk_extents(BlkMigDevice *dev, uint64_t off, uint64_t len, bool *any_data)
{
    GArray *extents = g_array_new(false, false, sizeof(Extent));
    uint64_t pos = off, end = off + len;

    *any_data = false;
    while (pos < end) {
        Extent e = { .off = pos };
        uint64_t pnum = 0;
        int ret = bdrv_block_status(dev->bs, pos, end - pos, &pnum, &e.is_data);

        if (ret < 0 || pnum == 0) {
            pnum = end - pos;
            e.is_data = true;
        }
        e.len = MIN(pnum, end - pos);
        *any_data |= e.is_data;
        g_array_append_val(extents, e);
        pos += e.len;
    }
    return extents;
}

/* Fill blk.buf with the chunk at OFF: data extents read, holes and the part
 * past the end of the drive zeroed. */
static int read_chunk(BlkMigDevice *dev, uint64_t off, uint64_t len,
                      GArray *extents, GError **errp)
{
    for (guint i = 0; i < extents->len; i++) {
        Extent *e = &g_array_index(extents, Extent, i);
        uint8_t *p = blk.buf + (e->off - off);

        if (!e->is_data) {
            memset(p, 0, e->len);
            continue;
        }
        int ret = bdrv_pread(dev->bs, e->off, p, e->len);
        if (ret < 0) {
            g_set_error(errp, MIG_ERROR, 0,
                        "block migration: reading drive '%s' at offset %" G_GUINT64_FORMAT
                        " failed: %s", dev->id, e->off, g_strerror(-ret));
            return -1;
        }
    }
    memset(blk.buf + len, 0, CHUNK - len);
    return 0;
}

/* Send the chunk at OFF (its dirty bits already cleared by the caller). */
static int send_chunk(MigStream *f, BlkMigDevice *dev, uint64_t off, GError **errp)
{
    uint64_t len = MIN(CHUNK, dev->size - off);
    bool any_data, zero;
    g_autoptr(GArray) extents = chunk_extents(dev, off, len, &any_data);

    if (any_data || !blk.zero_blocks) {
        if (read_chunk(dev, off, len, extents, errp) < 0) {
            return -1;
        }
    }
    zero = !any_data || buffer_is_zero(blk.buf, CHUNK);
    if (zero && blk.zero_blocks) {
        put_record_header(f, dev, off, BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_ZERO_BLOCK);
    } else {
        put_record_header(f, dev, off, BLK_MIG_FLAG_DEVICE_BLOCK);
        mig_put_buffer(f, blk.buf, CHUNK);
    }
    g_mutex_lock(&blk.lock);
    if (zero && blk.zero_blocks) {
        blk.stats.zero_blocks++;
    } else {
        blk.stats.data_blocks++;
    }
    blk.processed += len;
    g_mutex_unlock(&blk.lock);
    return mig_stream_error(f) ? -1 : 0;
}

/* ---- setup and cleanup ---- */

static bool blk_mig_is_active(void *opaque)
{
    return mig_cap_enabled(MIG_CAP_BLOCK);
}

static bool add_devices(GPtrArray *devs, uint32_t granularity, GError **errp)
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
        dev->bitmap = bdrv_create_dirty_bitmap(bs, granularity);
        g_ptr_array_add(devs, dev);
    }
    return true;
}

/* A chunk buffer aligned for the most demanding drive. */
static uint8_t *alloc_chunk_buffer(GPtrArray *devs)
{
    BlockDriverState *strictest = NULL;

    for (guint i = 0; i < devs->len; i++) {
        BlkMigDevice *dev = devs->pdata[i];
        if (!strictest || bdrv_buf_align(dev->bs) > bdrv_buf_align(strictest)) {
            strictest = dev->bs;
        }
    }
    return strictest ? bdrv_buf_alloc(strictest, CHUNK) : NULL;
}

static void blk_mig_cleanup(void *opaque)
{
    block_load_cleanup();
    g_mutex_lock(&blk.lock);
    if (blk.devs) {
        blk.remaining_at_end = pending_locked();
        g_clear_pointer(&blk.devs, g_ptr_array_unref);
        g_clear_pointer(&blk.buf, bdrv_buf_free);
    }
    g_mutex_unlock(&blk.lock);
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
    g_mutex_lock(&blk.lock);
    blk.devs = devs;
    blk.buf = alloc_chunk_buffer(devs);
    blk.zero_blocks = mig_cap_enabled(MIG_CAP_ZERO_BLOCKS);
    blk.qemu_compat = mig_cap_enabled(MIG_CAP_QEMU_COMPAT);
    blk.bulk_done = devs->len == 0;
    blk.dirty_dev = 0;
    blk.dirty_cursor = 0;
    blk.progress = -1;
    blk.bulk_walked = 0;
    blk.processed = 0;
    blk.remaining_at_end = 0;
    blk.stats = (MigrationDiskStats){ 0 };
    for (guint i = 0; i < devs->len; i++) {
        blk.stats.total += ((BlkMigDevice *)devs->pdata[i])->size;
    }
    g_mutex_unlock(&blk.lock);

    for (guint i = 0; i < devs->len && !blk.qemu_compat; i++) {
        BlkMigDevice *dev = devs->pdata[i];
        put_record_header(f, dev, 0, BLK_MIG_FLAG_DEVICE_SIZE);
        mig_put_be64(f, dev->size);
    }
    mig_put_be64(f, BLK_MIG_FLAG_EOS);
    account_transferred(mig_stream_bytes(f) - start);
    return mig_stream_error(f) ? -1 : 0;
}

/* ---- bulk phase ---- */

/* Walk the next bulk chunk; sets blk.bulk_done after the last one. */
static int bulk_save_next(MigStream *f, GError **errp)
{
    BlkMigDevice *dev = NULL;
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
        return 0;
    }
    off = dev->bulk_cursor;
    len = MIN(CHUNK, dev->size - off);
    /* Clear first, read after: a write racing with the read is marked
     * again and re-sent in the dirty phase. */
    dirty_bitmap_test_and_clear(dev->bitmap, off, len);
    if (send_chunk(f, dev, off, errp) < 0) {
        return -1;
    }
    g_mutex_lock(&blk.lock);
    dev->bulk_cursor = off + len;
    blk.bulk_walked += len;
    percent = blk.stats.total ? blk.bulk_walked * 100 / blk.stats.total : 100;
    g_mutex_unlock(&blk.lock);
    if (percent != blk.progress) {
        blk.progress = percent;
        put_progress(f, percent);
    }
    return 0;
}

/* ---- dirty phase ---- */

/* Send the chunk holding the next dirty granule at or after the dirty
 * cursor; *pass_done when the cursor wrapped past the last drive. */
static int dirty_save_next(MigStream *f, bool *pass_done, GError **errp)
{
    *pass_done = false;
    while (blk.dirty_dev < blk.devs->len) {
        BlkMigDevice *dev = blk.devs->pdata[blk.dirty_dev];
        int64_t dirty = dirty_bitmap_next_dirty(dev->bitmap, blk.dirty_cursor);

        if (dirty >= 0 && (uint64_t)dirty < dev->size) {
            uint64_t off = CHUNK_START(dirty);
            dirty_bitmap_test_and_clear(dev->bitmap, off, MIN(CHUNK, dev->size - off));
            blk.dirty_cursor = off + CHUNK;
            return send_chunk(f, dev, off, errp);
        }
        blk.dirty_dev++;
        blk.dirty_cursor = 0;
    }
    blk.dirty_dev = 0;
    g_mutex_lock(&blk.lock);
    blk.stats.dirty_sync_count++;
    g_mutex_unlock(&blk.lock);
    *pass_done = true;
    return 0;
}

static int blk_mig_save_iterate(MigStream *f, void *opaque, uint64_t max_bytes,
                                GError **errp)
{
    uint64_t start = mig_stream_bytes(f);
    gint64 deadline = g_get_monotonic_time() + ITERATE_TIME_BUDGET_US;
    bool pass_done = false;
    int ret = 0;

    if (!blk.devs) {
        g_set_error(errp, MIG_ERROR, 0, "block migration was not set up");
        return -1;
    }
    while (ret == 0 && !pass_done && mig_stream_error(f) == 0 &&
           mig_stream_bytes(f) - start < max_bytes &&
           g_get_monotonic_time() < deadline) {
        if (!blk.bulk_done) {
            ret = bulk_save_next(f, errp);
            if (blk.bulk_done) {
                break;
            }
        } else {
            ret = dirty_save_next(f, &pass_done, errp);
        }
    }
    mig_put_be64(f, BLK_MIG_FLAG_EOS);
    account_transferred(mig_stream_bytes(f) - start);
    if (ret < 0 || mig_stream_error(f)) {
        return -1;
    }
    return blk.bulk_done ? 1 : 0;
}

/* Guest stopped: whatever the bulk phase has not walked yet, then every
 * chunk still dirty. */
static int blk_mig_save_complete(MigStream *f, void *opaque, GError **errp)
{
    uint64_t start = mig_stream_bytes(f);
    bool pass_done = false;
    int ret = 0;

    if (!blk.devs) {
        g_set_error(errp, MIG_ERROR, 0, "block migration was not set up");
        return -1;
    }
    while (ret == 0 && !blk.bulk_done && mig_stream_error(f) == 0) {
        ret = bulk_save_next(f, errp);
    }
    blk.dirty_dev = 0;
    blk.dirty_cursor = 0;
    while (ret == 0 && !pass_done && mig_stream_error(f) == 0) {
        ret = dirty_save_next(f, &pass_done, errp);
    }
    mig_put_be64(f, BLK_MIG_FLAG_EOS);
    account_transferred(mig_stream_bytes(f) - start);
    return ret < 0 || mig_stream_error(f) ? -1 : 0;
}

static const SaveVMHandlers blk_mig_handlers = {
    .save_setup = blk_mig_save_setup,
    .save_iterate = blk_mig_save_iterate,
    .save_pending = blk_mig_save_pending,
    .save_complete = blk_mig_save_complete,
    .load_state = block_load_state,
    .load_finish = block_load_finish,
    .cleanup = blk_mig_cleanup,
    .is_active = blk_mig_is_active,
};

void block_migration_register(void)
{
    savevm_register("block", 0, 1, &blk_mig_handlers, NULL);
}
