/* The "block" savevm handler, destination side: validate each record,
 * then apply it so the destination stays as thin as the source. */
#include <errno.h>
#include <string.h>

#include "block/block.h"
#include "migration/block-migration.h"
#include "migration-internal.h"
#include "util/zero.h"

#define CHUNK BLK_MIG_CHUNK_SIZE
/* Granule of zero detection when applying a data chunk: the file system
 * block size, the smallest hole the destination can keep. */
#define APPLY_BLOCK 4096

typedef struct BlockRecord {
    uint64_t stream_offset;     /* where the record starts */
    uint64_t offset;            /* byte offset (or percent for PROGRESS) */
    unsigned flags;
    char id[256];
    BlockDriverState *bs;
} BlockRecord;

/* Flushes in the background while this load writes; one load at a time
 * (its thread is the only user). */
static LoadFlusher *flusher;

typedef struct LoadBuffer {
    uint8_t *data;
    size_t align;
} LoadBuffer;

static int G_GNUC_PRINTF(3, 4)
load_fail(GError **errp, MigStream *f, const char *fmt, ...)
{
    va_list ap;
    char *msg;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (f && mig_stream_error(f)) {
        g_set_error(errp, MIG_ERROR, 0, "block migration: %s: %s", msg,
                    mig_stream_error_msg(f));
    } else {
        g_set_error(errp, MIG_ERROR, 0, "block migration: %s", msg);
    }
    g_free(msg);
    return -1;
}

static int check_flags(const BlockRecord *r, GError **errp)
{
    unsigned payload = r->flags & (BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_DEVICE_SIZE |
                                   BLK_MIG_FLAG_PROGRESS);

    if (r->flags & ~BLK_MIG_FLAGS_KNOWN) {
        return load_fail(errp, NULL,
                         "unknown flags 0x%x in record at stream offset %" G_GUINT64_FORMAT,
                         r->flags & ~BLK_MIG_FLAGS_KNOWN, r->stream_offset);
    }
    if (payload & (payload - 1)) {
        return load_fail(errp, NULL,
                         "conflicting flags 0x%x in record at stream offset %" G_GUINT64_FORMAT,
                         r->flags, r->stream_offset);
    }
    if ((r->flags & BLK_MIG_FLAG_ZERO_BLOCK) && !(r->flags & BLK_MIG_FLAG_DEVICE_BLOCK)) {
        return load_fail(errp, NULL,
                         "ZERO_BLOCK flag without DEVICE_BLOCK in record at stream offset %"
                         G_GUINT64_FORMAT, r->stream_offset);
    }
    return 0;
}

/* u8 len + drive id, resolved to a drive of ours. */
static int read_drive(MigStream *f, BlockRecord *r, GError **errp)
{
    uint8_t len = mig_get_u8(f);

    mig_get_buffer(f, r->id, len);
    r->id[len] = '\0';
    if (mig_stream_error(f)) {
        return load_fail(errp, f, "reading record at stream offset %" G_GUINT64_FORMAT,
                         r->stream_offset);
    }
    r->bs = bdrv_find(r->id);
    if (!r->bs) {
        return load_fail(errp, NULL, "unknown drive '%s'", r->id);
    }
    return 0;
}

static int load_device_size(MigStream *f, BlockRecord *r, GError **errp)
{
    uint64_t src_size, dst_size;

    if (read_drive(f, r, errp) < 0) {
        return -1;
    }
    src_size = mig_get_be64(f);
    if (mig_stream_error(f)) {
        return load_fail(errp, f, "reading record at stream offset %" G_GUINT64_FORMAT,
                         r->stream_offset);
    }
    dst_size = bdrv_getlength(r->bs);
    if (dst_size < src_size) {
        return load_fail(errp, NULL,
                         "drive '%s' is %" G_GUINT64_FORMAT " bytes at the source but only %"
                         G_GUINT64_FORMAT " bytes at the destination",
                         r->id, src_size, dst_size);
    }
    return 0;
}

static uint8_t *load_buffer_for(LoadBuffer *lb, BlockDriverState *bs)
{
    if (!lb->data || bdrv_buf_align(bs) > lb->align) {
        g_clear_pointer(&lb->data, bdrv_buf_free);
        lb->data = bdrv_buf_alloc(bs, CHUNK);
        lb->align = bdrv_buf_align(bs);
    }
    return lb->data;
}

static void note_written(uint64_t bytes)
{
    if (!flusher) {
        flusher = load_flusher_start();
    }
    load_flusher_written(flusher, bytes);
}

static int write_failed(const BlockRecord *r, uint64_t off, int ret, GError **errp)
{
    return load_fail(errp, NULL, "drive '%s': writing at offset %" G_GUINT64_FORMAT
                     " failed: %s", r->id, off, g_strerror(-ret));
}

/* Write BUF[0, len) at the record's offset: runs of non-zero blocks as
 * data, runs of zero blocks as write-zeroes that may punch holes. */
static int apply_data(const BlockRecord *r, const uint8_t *buf, uint64_t len, GError **errp)
{
    uint64_t pos = 0;

    while (pos < len) {
        bool zero = buffer_is_zero(buf + pos, MIN(APPLY_BLOCK, len - pos));
        uint64_t end = pos + MIN(APPLY_BLOCK, len - pos);
        int ret;

        while (end < len && buffer_is_zero(buf + end, MIN(APPLY_BLOCK, len - end)) == zero) {
            end += MIN(APPLY_BLOCK, len - end);
        }
        if (zero) {
            ret = bdrv_pwrite_zeroes(r->bs, r->offset + pos, end - pos, BDRV_REQ_MAY_UNMAP);
        } else {
            ret = bdrv_pwrite(r->bs, r->offset + pos, buf + pos, end - pos, 0);
        }
        if (ret < 0) {
            return write_failed(r, r->offset + pos, ret, errp);
        }
        pos = end;
    }
    note_written(len);
    return 0;
}

static int load_device_block(MigStream *f, BlockRecord *r, LoadBuffer *lb, GError **errp)
{
    uint64_t size, len;
    uint8_t *buf;
    int ret;

    if (read_drive(f, r, errp) < 0) {
        return -1;
    }
    size = bdrv_getlength(r->bs);
    if (r->offset >= size) {
        return load_fail(errp, NULL,
                         "drive '%s': chunk at offset %" G_GUINT64_FORMAT
                         " is beyond the destination size %" G_GUINT64_FORMAT,
                         r->id, r->offset, size);
    }
    /* The last chunk of a disk is whole on the wire; only the part inside
     * the disk is applied. */
    len = MIN(CHUNK, size - r->offset);
    if (r->flags & BLK_MIG_FLAG_ZERO_BLOCK) {
        ret = bdrv_pwrite_zeroes(r->bs, r->offset, len, BDRV_REQ_MAY_UNMAP);
        if (ret < 0) {
            return write_failed(r, r->offset, ret, errp);
        }
        note_written(len);
        return 0;
    }
    /* The whole payload arrives before any of it is written, so a
     * truncated record leaves the disk untouched. */
    buf = load_buffer_for(lb, r->bs);
    if (mig_get_buffer(f, buf, CHUNK) != CHUNK) {
        return load_fail(errp, f, "reading the data of the record at stream offset %"
                         G_GUINT64_FORMAT, r->stream_offset);
    }
    return apply_data(r, buf, len, errp);
}

/* One record; *eos when it ends the section part. */
static int load_record(MigStream *f, LoadBuffer *lb, bool *eos, GError **errp)
{
    BlockRecord r = { .stream_offset = mig_stream_bytes(f) };
    uint64_t header = mig_get_be64(f);

    if (mig_stream_error(f)) {
        return load_fail(errp, f, "reading record at stream offset %" G_GUINT64_FORMAT,
                         r.stream_offset);
    }
    r.flags = header & BLK_MIG_FLAGS_MASK;
    r.offset = header & ~(uint64_t)BLK_MIG_FLAGS_MASK;
    if (check_flags(&r, errp) < 0) {
        return -1;
    }
    if (r.flags & BLK_MIG_FLAG_DEVICE_SIZE) {
        if (load_device_size(f, &r, errp) < 0) {
            return -1;
        }
    } else if (r.flags & BLK_MIG_FLAG_DEVICE_BLOCK) {
        if (load_device_block(f, &r, lb, errp) < 0) {
            return -1;
        }
    }
    /* PROGRESS carries nothing the destination needs. */
    *eos = r.flags & BLK_MIG_FLAG_EOS;
    return 0;
}

int block_load_state(MigStream *f, void *opaque, int version_id, GError **errp)
{
    LoadBuffer lb = { 0 };
    bool eos = false;
    int ret = 0;

    while (!eos && ret == 0) {
        ret = load_record(f, &lb, &eos, errp);
    }
    bdrv_buf_free(lb.data);
    return ret;
}

int block_load_finish(void *opaque, GError **errp)
{
    g_autoptr(GList) drives = bdrv_list();
    LoadFlusher *fl = g_steal_pointer(&flusher);

    if (load_flusher_stop(fl, errp) < 0) {
        return -1;
    }
    for (GList *l = drives; l; l = l->next) {
        BlockDriverState *bs = l->data;
        int ret = bdrv_flush(bs);

        if (ret < 0) {
            return load_fail(errp, NULL, "flushing drive '%s' failed: %s",
                             bdrv_get_id(bs), g_strerror(-ret));
        }
    }
    return 0;
}

void block_load_cleanup(void)
{
    load_flusher_stop(g_steal_pointer(&flusher), NULL);
}
