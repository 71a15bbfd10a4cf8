/* The disk verification section (include/migration/disk-verify.h): with
 * block-checksum the source sends a digest of every 1 MiB chunk of every
 * drive at switchover, and the destination, once everything it received
 * is written, compares its own and fails at the first range that
 * differs. */
#include <string.h>

#include "block/block.h"
#include "migration/disk-verify.h"
#include "migration/options.h"
#include "block-internal.h"
#include "util/zero.h"

#define WHAT "disk verification"
/* Digests go out at least this often (in chunks), so the destination
 * hashes its chunks while the source hashes the next ones. */
#define FLUSH_CHUNKS 32

/* Destination: how the load reports to the source (load thread). */
static const SaveVMLoadContext *load_ctx;
static uint64_t compared;       /* bytes compared and equal in this load */

/* ---- hashing a drive chunk by chunk (both sides) ---- */

typedef struct ChunkHasher {
    BlockDriverState *bs;
    uint64_t size;              /* what is hashed: the source's size */
    uint64_t salt;
    uint8_t *buf;               /* the chunk being hashed */
    uint64_t zero_end;          /* block status said: zeroes up to here */
    ChecksumDigest zero;        /* of a chunk of zeroes */
} ChunkHasher;

static void hasher_init(ChunkHasher *h, BlockDriverState *bs, uint64_t size, uint64_t salt)
{
    Checksum *c = checksum_new(salt);

    *h = (ChunkHasher){ .bs = bs, .size = size, .salt = salt };
    h->buf = bdrv_buf_alloc(bs, BLK_CHUNK);
    checksum_digest(c, &h->zero);       /* zero blocks feed nothing */
    checksum_free(c);
}

static void hasher_destroy(ChunkHasher *h)
{
    bdrv_buf_free(h->buf);
}

/* Whether [OFF, OFF + LEN) reads as zeroes, by block status (one call
 * per hole, however many chunks it spans; a failing call means data). */
static bool reads_zero(ChunkHasher *h, uint64_t off, uint64_t len)
{
    uint64_t pnum = 0;
    bool is_data = true;

    if (off + len <= h->zero_end) {
        return true;
    }
    if (bdrv_block_status(h->bs, off, h->size - off, &pnum, &is_data) < 0 || is_data) {
        return false;
    }
    h->zero_end = off + pnum;
    return pnum >= len;
}

/* One run of the chunk at CHUNK into the buffer: read if data, else
 * zeroes. */
static int load_extent(ChunkHasher *h, uint64_t chunk, const BdrvExtent *e, GError **errp)
{
    uint8_t *at = h->buf + (e->off - chunk);
    int ret;

    if (e->status != BDRV_STATUS_DATA) {
        memset(at, 0, e->len);
        return 0;
    }
    ret = bdrv_pread(h->bs, e->off, at, e->len);
    if (ret < 0) {
        g_set_error(errp, MIG_ERROR, 0, WHAT ": reading drive '%s' at offset %" G_GUINT64_FORMAT
                    " failed: %s", bdrv_get_id(h->bs), e->off, g_strerror(-ret));
        return -1;
    }
    return 0;
}

/* The chunk at OFF, LEN bytes, into the buffer, reading only its data. */
static int load_chunk(ChunkHasher *h, uint64_t off, uint64_t len, GError **errp)
{
    BdrvWalk w;
    BdrvExtent e;
    int ret;

    bdrv_walk_init(&w, h->bs, off, len, BDRV_WALK_GUEST, BDRV_WALK_ERROR_AS_DATA);
    while ((ret = bdrv_walk_next(&w, &e)) > 0 && load_extent(h, off, &e, errp) == 0) {
    }
    if (ret < 0) {
        g_set_error(errp, MIG_ERROR, 0, WHAT ": block status of drive '%s' at offset %"
                    G_GUINT64_FORMAT " failed: %s", bdrv_get_id(h->bs), off, g_strerror(-ret));
    }
    return ret == 0 ? 0 : -1;
}

/* The digest of the chunk at OFF: its 4 KiB blocks that are not all
 * zero, each after its offset, so that zeroes hash alike however either
 * side stores them (hole, zero cluster, written zeroes) and cost no
 * hashing; -1 with *errp when a read fails. */
static int hash_chunk(ChunkHasher *h, uint64_t off, ChecksumDigest *out, GError **errp)
{
    uint64_t len = MIN((uint64_t)BLK_CHUNK, h->size - off);
    Checksum *c;

    if (reads_zero(h, off, len)) {
        *out = h->zero;
        return 0;
    }
    if (load_chunk(h, off, len, errp) < 0) {
        return -1;
    }
    c = checksum_new(h->salt);
    for (uint64_t pos = 0; pos < len; pos += BLK_GRAIN) {
        uint64_t n = MIN((uint64_t)BLK_GRAIN, len - pos);
        if (!buffer_is_zero(h->buf + pos, n)) {
            checksum_update_be64(c, off + pos);
            checksum_update(c, h->buf + pos, n);
        }
    }
    checksum_digest(c, out);
    checksum_free(c);
    return 0;
}

/* ---- source ---- */

static bool verify_is_active(void *opaque)
{
    return mig_cap_enabled(MIG_CAP_BLOCK) && mig_cap_enabled(MIG_CAP_BLOCK_CHECKSUM) &&
           !mig_cap_enabled(MIG_CAP_QEMU_COMPAT);
}

/* One drive's entry: its id and size, then a digest per chunk. */
static bool put_drive(MigStream *f, BlockDriverState *bs, uint64_t salt, GError **errp)
{
    uint64_t size = bdrv_getlength(bs);
    ChunkHasher h;
    bool ok = blk_section_put_drive(f, bs, WHAT, errp);

    hasher_init(&h, bs, size, salt);
    for (uint64_t off = 0; ok && off < size && !mig_stream_error(f); off += BLK_CHUNK) {
        ChecksumDigest d;
        ok = hash_chunk(&h, off, &d, errp) == 0;
        if (ok) {
            mig_put_buffer(f, d.bytes, CHECKSUM_LEN);
        }
        if (ok && (off / BLK_CHUNK) % FLUSH_CHUNKS == FLUSH_CHUNKS - 1) {
            mig_stream_flush(f);
        }
    }
    hasher_destroy(&h);
    return ok;
}

/* Guest stopped, every block record sent: every drive's list. */
static int verify_save_complete(MigStream *f, void *opaque, GError **errp)
{
    return blk_section_put_drives(f, put_drive, errp);
}

/* ---- destination ---- */

static int G_GNUC_PRINTF(3, 4)
verify_fail(MigStream *f, GError **errp, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    blk_section_failv(f, errp, WHAT, fmt, ap);
    va_end(ap);
    return -1;
}

/* Our drive of ID, able to hold the source's SIZE bytes; NULL with
 * *errp set otherwise. */
static BlockDriverState *our_drive(const char *id, uint64_t size, GError **errp)
{
    BlockDriverState *bs = bdrv_find(id);

    if (!bs) {
        verify_fail(NULL, errp, "the source has a drive '%s' that this destination lacks", id);
    } else if ((uint64_t)bdrv_getlength(bs) < size) {
        verify_fail(NULL, errp, "drive '%s' is %" G_GUINT64_FORMAT " bytes at the source but "
                    "only %" G_GUINT64_FORMAT " bytes here", id, size, bdrv_getlength(bs));
        bs = NULL;
    }
    return bs;
}

/* LEN more bytes compared equal; the source hears of it when REPORT
 * (disk.verified, and it keeps waiting for the acknowledgement). */
static void note_compared(uint64_t len, bool report)
{
    compared += len;
    if (report && load_ctx && load_ctx->report_verified) {
        load_ctx->report_verified(load_ctx->opaque, compared);
    }
}

/* The chunks of ours against the source's digests, as they come; the
 * first run of chunks that differ goes to *BAD_OFF, *BAD_LEN. */
static int compare_chunks(MigStream *f, ChunkHasher *h, uint64_t *bad_off, uint64_t *bad_len,
                          GError **errp)
{
    for (uint64_t off = 0; off < h->size; off += BLK_CHUNK) {
        ChecksumDigest theirs, ours;
        uint64_t len = MIN((uint64_t)BLK_CHUNK, h->size - off);

        if (mig_get_buffer(f, theirs.bytes, CHECKSUM_LEN) != CHECKSUM_LEN) {
            return verify_fail(f, errp, "reading the digests of drive '%s'",
                               bdrv_get_id(h->bs));
        }
        if (hash_chunk(h, off, &ours, errp) < 0) {
            return -1;
        }
        if (memcmp(ours.bytes, theirs.bytes, CHECKSUM_LEN) == 0) {
            if (*bad_len) {
                break;
            }
            note_compared(len, off / BLK_CHUNK % FLUSH_CHUNKS == FLUSH_CHUNKS - 1);
            continue;
        }
        *bad_off = *bad_len ? *bad_off : off;
        *bad_len += len;
    }
    return 0;
}

static int compare_drive(MigStream *f, uint64_t salt, GError **errp)
{
    char id[256];
    uint64_t size, bad_off = 0, bad_len = 0;
    BlockDriverState *bs;
    ChunkHasher h;
    int ret;

    if (blk_section_read_drive(f, WHAT, id, &size, errp) < 0) {
        return -1;
    }
    bs = our_drive(id, size, errp);
    if (!bs) {
        return -1;
    }
    hasher_init(&h, bs, size, salt);
    ret = compare_chunks(f, &h, &bad_off, &bad_len, errp);
    hasher_destroy(&h);
    if (ret == 0 && bad_len) {
        return verify_fail(NULL, errp, "drive '%s': %" G_GUINT64_FORMAT " bytes at offset %"
                           G_GUINT64_FORMAT " differ from the source's after the copy (a "
                           "change behind the migration's back, or a write lost): the guest "
                           "does not start here", id, bad_len, bad_off);
    }
    return ret;
}

static int verify_load_state(MigStream *f, void *opaque, int version_id, GError **errp)
{
    uint64_t salt = mig_get_be64(f);
    uint32_t count = mig_get_be32(f);
    int ret = 0;

    if (mig_stream_error(f)) {
        return verify_fail(f, errp, "reading the section");
    }
    /* What the channels and the writer threads still hold must be on the
     * disks before they are read. */
    if (!block_load_wait_written(errp)) {
        return -1;
    }
    compared = 0;
    for (uint32_t i = 0; i < count && ret == 0; i++) {
        ret = compare_drive(f, salt, errp);
    }
    if (ret == 0) {
        note_compared(0, true);
    }
    return ret;
}

static void verify_load_setup(void *opaque, const SaveVMLoadContext *ctx)
{
    load_ctx = ctx;
}

static const SaveVMHandlers verify_handlers = {
    .save_complete = verify_save_complete,
    .load_setup = verify_load_setup,
    .load_state = verify_load_state,
    .is_active = verify_is_active,
};

void disk_verify_register(void)
{
    savevm_register(DISK_VERIFY_IDSTR, 0, DISK_VERIFY_VERSION, &verify_handlers, NULL);
}
