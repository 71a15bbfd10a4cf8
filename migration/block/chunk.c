/* One chunk's work in the read pipeline: find what of the chunk's ranges
 * is data (one block-status walk; holes are never read), read it, and
 * turn it into records.  With qemu-compat a chunk is one 1 MiB record;
 * otherwise ranges become spans, where holes and all-zero 4 KiB blocks
 * are zero spans (when zero-blocks is on) and each data span is
 * compressed if that makes it smaller.  With block-incremental the walk
 * looks at the top layer only: what the top layer does not hold is left
 * out, the destination's backing chain has it. */
#include <string.h>

#include "block/block.h"
#include "block-internal.h"
#include "util/zero.h"

/* Source of zero payloads when zero-blocks is off; never written, so it
 * costs no memory. */
static uint8_t zero_chunk[BLK_CHUNK];

typedef struct Piece {
    uint64_t off;
    uint64_t len;
    bool zero;
} Piece;

BlkChunkJob *blk_chunk_job_new(BlockDriverState *bs, const char *id, uint64_t chunk,
                               uint64_t drive_size)
{
    BlkChunkJob *job = g_new0(BlkChunkJob, 1);

    job->bs = bs;
    job->id = id;
    job->chunk = chunk;
    job->buf_off = chunk;
    job->drive_size = drive_size;
    job->ranges = g_array_new(false, false, sizeof(BlkRange));
    job->extents = g_array_new(false, false, sizeof(BlkExtent));
    job->records = g_array_new(false, false, sizeof(BlkRecord));
    return job;
}

void blk_chunk_job_free(BlkChunkJob *job)
{
    g_array_unref(job->ranges);
    g_array_unref(job->extents);
    g_array_unref(job->records);
    g_free(job->error);
    g_free(job);
}

void blk_chunk_add_range(BlkChunkJob *job, uint64_t off, uint64_t len)
{
    BlkRange r = { off, len };

    g_array_append_val(job->ranges, r);
    job->walked += len;
}

/* ---- planning (submitter) ---- */

static void add_extent(GArray *extents, uint64_t off, uint64_t len, bool is_data)
{
    if (extents->len) {
        BlkExtent *last = &g_array_index(extents, BlkExtent, extents->len - 1);
        if (last->off + last->len == off && last->is_data == is_data) {
            last->len += len;
            return;
        }
    }
    BlkExtent e = { off, len, is_data };
    g_array_append_val(extents, e);
}

/* What a run of a block-status walk becomes: read and sent, sent as
 * zeroes, or left out (the destination's backing chain has it). */
typedef enum PlanKind {
    PLAN_DATA,
    PLAN_ZERO,
    PLAN_SKIP,
} PlanKind;

/* Whether UNALLOCATED (in no layer of the chain: reads as zero) must
 * travel as zeroes in a TOP walk: in a dirty pass (beyond the backing
 * image's end, the guest deallocated it since the bulk phase), and on a
 * drive without a backing image, whose top layer is all there is (the
 * destination's base must not show through where it reads zero). */
static bool unallocated_is_sent(const BlkChunkJob *job)
{
    return job->resend || !bdrv_get_backing(job->bs);
}

/* GUEST walks answer DATA or ZERO only.  A TOP walk (block-incremental)
 * leaves out what the top layer does not hold. */
static PlanKind plan_kind(const BlkChunkJob *job, BdrvStatus status)
{
    switch (status) {
    case BDRV_STATUS_DATA:
        return PLAN_DATA;
    case BDRV_STATUS_ZERO:
        return PLAN_ZERO;
    case BDRV_STATUS_BACKING:
        return PLAN_SKIP;
    default:
        return unallocated_is_sent(job) ? PLAN_ZERO : PLAN_SKIP;
    }
}

/* Allocation map of [off, off+len) in MODE; a failing block status is
 * taken as data, which only costs a read. */
static void add_extents(BlkChunkJob *job, BdrvWalkMode mode, uint64_t off, uint64_t len)
{
    BdrvWalk w;
    BdrvExtent e;

    bdrv_walk_init(&w, job->bs, off, len, mode, BDRV_WALK_ERROR_AS_DATA);
    while (bdrv_walk_next(&w, &e) > 0) {
        PlanKind kind = plan_kind(job, e.status);
        if (kind != PLAN_SKIP) {
            add_extent(job->extents, e.off, e.len, kind == PLAN_DATA);
        }
    }
}

/* qemu-compat with block-incremental, as QEMU 7.2: a bulk chunk of which
 * the top layer holds nothing (neither data nor zero clusters) is not
 * sent; any other chunk goes whole, as the guest sees it.  A drive
 * without a backing image goes whole. */
static bool top_layer_holds_any(BlkChunkJob *job)
{
    BdrvWalk w;
    BdrvExtent e;

    if (!bdrv_get_backing(job->bs)) {
        return true;
    }
    bdrv_walk_init(&w, job->bs, job->chunk, MIN(BLK_CHUNK, job->drive_size - job->chunk),
                   BDRV_WALK_TOP, BDRV_WALK_ERROR_AS_DATA);
    while (bdrv_walk_next(&w, &e) > 0) {
        if (e.status == BDRV_STATUS_DATA || e.status == BDRV_STATUS_ZERO) {
            return true;
        }
    }
    return false;
}

/* How the job's ranges are walked (false: the chunk is not sent). */
static bool plan_mode(BlkChunkJob *job, const BlkChunkOptions *o, BdrvWalkMode *mode)
{
    *mode = BDRV_WALK_GUEST;
    if (!o->incremental) {
        return true;
    }
    if (o->whole_chunks) {
        return job->resend || top_layer_holds_any(job);
    }
    *mode = BDRV_WALK_TOP;
    return true;
}

/* Spans must be whole sectors: an allocation boundary inside a sector
 * (none on real file systems) makes the whole range data. */
static bool extents_sector_aligned(BlkChunkJob *job)
{
    for (guint i = 0; i < job->extents->len; i++) {
        BlkExtent *e = &g_array_index(job->extents, BlkExtent, i);
        uint64_t end = e->off + e->len;
        if (e->off % BLK_SECTOR || (end % BLK_SECTOR && end != job->drive_size)) {
            return false;
        }
    }
    return true;
}

void blk_chunk_plan(BlkChunkJob *job, const BlkChunkOptions *o)
{
    BdrvWalkMode mode;
    bool send = plan_mode(job, o, &mode);
    bool any_data = false;

    for (guint i = 0; send && i < job->ranges->len; i++) {
        BlkRange *r = &g_array_index(job->ranges, BlkRange, i);
        add_extents(job, mode, r->off, r->len);
    }
    if (!extents_sector_aligned(job)) {
        g_array_set_size(job->extents, 0);
        for (guint i = 0; i < job->ranges->len; i++) {
            BlkRange *r = &g_array_index(job->ranges, BlkRange, i);
            add_extent(job->extents, r->off, r->len, true);
        }
    }
    job->left_out = job->walked;
    for (guint i = 0; i < job->extents->len; i++) {
        BlkExtent *e = &g_array_index(job->extents, BlkExtent, i);
        any_data |= e->is_data;
        job->left_out -= e->len;
    }
    /* Zeroes to compress need a buffer for the output; a chunk left out
     * needs nothing. */
    job->needs_worker = any_data || (o->compress && !o->zero_blocks && job->extents->len);
}

/* ---- preparing (worker) ---- */

/* Where the data of drive offset OFF is (or goes) in BASE: the job's
 * buffer, or the zero chunk. */
static uint8_t *at(const BlkChunkJob *job, uint8_t *base, uint64_t off)
{
    return base + (off - job->buf_off);
}

static bool read_extent(BlkChunkJob *job, const BlkExtent *e)
{
    int ret = bdrv_pread(job->bs, e->off, at(job, job->buf, e->off), e->len);

    if (ret < 0) {
        job->error = g_strdup_printf("block migration: reading drive '%s' at offset %"
                                     G_GUINT64_FORMAT " failed: %s",
                                     job->id, e->off, g_strerror(-ret));
        return false;
    }
    return true;
}

static void add_record(BlkChunkJob *job, const BlkRecord *r)
{
    g_array_append_val(job->records, *r);
    job->wire_bytes += blk_record_wire_size(job->id, r);
    if (!(r->flags & BLK_MIG_FLAG_ZERO_BLOCK)) {
        job->has_data = true;
    }
}

static uint8_t algo_byte(CompressAlgo algo)
{
    return algo == COMPRESS_ZLIB ? BLK_MIG_COMPRESS_ZLIB : BLK_MIG_COMPRESS_ZSTD;
}

/* A data record for LEN bytes at OFF (payload DATA), compressed into the
 * job's cbuf at *CPOS when that is smaller. */
static void add_data_record(BlkChunkJob *job, Compressor *c, uint8_t flags, uint64_t off,
                            uint32_t len, const uint8_t *data, size_t *cpos)
{
    BlkRecord r = { .offset = off, .len = len, .flags = flags | BLK_MIG_FLAG_DEVICE_BLOCK,
                    .data = data, .data_len = len };
    size_t cap = MIN((size_t)len - 1, BLK_CHUNK - *cpos);
    size_t out = 0;

    if (c && job->cbuf && cap > 0 &&
        compressor_compress(c, data, len, job->cbuf + *cpos, cap, &out, NULL) && out < len) {
        r.flags |= BLK_MIG_FLAG_COMPRESSED;
        r.algo = algo_byte(compressor_algo(c));
        r.data = job->cbuf + *cpos;
        r.data_len = out;
        *cpos += out;
    }
    add_record(job, &r);
}

/* qemu-compat: the chunk as one 1 MiB record, zero-padded past the end. */
static void prepare_whole(BlkChunkJob *job, const BlkChunkOptions *o)
{
    uint64_t len = MIN(BLK_CHUNK, job->drive_size - job->chunk);
    const uint8_t *data = zero_chunk;
    bool zero = true;

    if (!job->extents->len) {
        return;                 /* left out (block-incremental) */
    }
    if (job->buf) {
        for (guint i = 0; i < job->extents->len; i++) {
            BlkExtent *e = &g_array_index(job->extents, BlkExtent, i);
            if (!e->is_data) {
                memset(at(job, job->buf, e->off), 0, e->len);
            } else if (!read_extent(job, e)) {
                return;
            }
        }
        memset(job->buf + len, 0, BLK_CHUNK - len);
        data = job->buf;
        zero = buffer_is_zero(job->buf, BLK_CHUNK);
    }
    if (zero && o->zero_blocks) {
        BlkRecord r = { .offset = job->chunk, .len = BLK_CHUNK,
                        .flags = BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_ZERO_BLOCK };
        add_record(job, &r);
    } else {
        BlkRecord r = { .offset = job->chunk, .len = BLK_CHUNK, .flags = BLK_MIG_FLAG_DEVICE_BLOCK,
                        .data = data, .data_len = BLK_CHUNK };
        add_record(job, &r);
    }
}

static void add_piece(GArray *pieces, uint64_t off, uint64_t len, bool zero)
{
    if (pieces->len) {
        Piece *last = &g_array_index(pieces, Piece, pieces->len - 1);
        if (last->off + last->len == off && last->zero == zero) {
            last->len += len;
            return;
        }
    }
    Piece p = { off, len, zero };
    g_array_append_val(pieces, p);
}

/* Split data at [off, off+len) (in the buffer) into zero and non-zero
 * runs of BLK_GRAIN-aligned blocks. */
static void add_data_pieces(GArray *pieces, const BlkChunkJob *job, uint64_t off, uint64_t len)
{
    uint64_t end = off + len;

    while (off < end) {
        uint64_t next = MIN(ROUND_UP(off + 1, BLK_GRAIN), end);
        add_piece(pieces, off, next - off, buffer_is_zero(at(job, job->buf, off), next - off));
        off = next;
    }
}

/* The extents as pieces, lengths rounded up to whole sectors at the end
 * of the drive (the buffer is zero there); false if a read failed. */
static bool make_pieces(BlkChunkJob *job, const BlkChunkOptions *o, GArray *pieces)
{
    uint8_t *base = job->buf ? job->buf : zero_chunk;

    for (guint i = 0; i < job->extents->len; i++) {
        BlkExtent *e = &g_array_index(job->extents, BlkExtent, i);
        uint64_t padded = ROUND_UP(e->off + e->len, BLK_SECTOR) - e->off;

        if (e->is_data && !read_extent(job, e)) {
            return false;
        }
        /* Zeroes the buffer must hold: a hole sent as data, the tail of
         * the drive's last sector. */
        if (base == job->buf && !e->is_data && !o->zero_blocks) {
            memset(at(job, base, e->off), 0, padded);
        } else if (base == job->buf && e->is_data && padded > e->len) {
            memset(at(job, base, e->off) + e->len, 0, padded - e->len);
        }
        if (e->is_data && o->zero_blocks) {
            add_data_pieces(pieces, job, e->off, padded);
        } else {
            add_piece(pieces, e->off, padded, !e->is_data && o->zero_blocks);
        }
    }
    return true;
}

/* Data piece P as records of at most the job's max_record bytes. */
static void add_data_records(BlkChunkJob *job, Compressor *c, uint8_t span, const Piece *p,
                             uint8_t *base, size_t *cpos)
{
    uint64_t step = job->max_record ? job->max_record : p->len;

    for (uint64_t off = p->off; off < p->off + p->len; off += step) {
        uint32_t len = MIN(step, p->off + p->len - off);
        add_data_record(job, c, span, off, len, at(job, base, off), cpos);
    }
}

/* Pieces as records: one whole-chunk record when a single piece covers
 * the chunk (and records may be that long), else spans, the zero spans first: a destination applies them
 * while the clusters they share with data spans are still unallocated
 * there (and reading zero, nothing to write), not after the data made
 * those clusters hold zeroes that must then be written out. */
static void pieces_to_records(BlkChunkJob *job, GArray *pieces, Compressor *c)
{
    uint8_t *base = job->buf ? job->buf : zero_chunk;
    Piece *first = &g_array_index(pieces, Piece, 0);
    bool whole = pieces->len == 1 && first->off == job->chunk && first->len == BLK_CHUNK &&
                 (first->zero || !job->max_record || job->max_record >= BLK_CHUNK);
    uint8_t span = whole ? 0 : BLK_MIG_FLAG_SPAN;
    size_t cpos = 0;

    for (guint i = 0; i < pieces->len; i++) {
        Piece *p = &g_array_index(pieces, Piece, i);
        if (p->zero) {
            BlkRecord r = { .offset = p->off, .len = p->len,
                            .flags = BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_ZERO_BLOCK | span };
            add_record(job, &r);
        }
    }
    for (guint i = 0; i < pieces->len; i++) {
        Piece *p = &g_array_index(pieces, Piece, i);
        if (!p->zero) {
            add_data_records(job, c, span, p, base, &cpos);
        }
    }
}

/* block-checksum: each data record's digest, over its data as read
 * (before compression). */
static void add_checksums(BlkChunkJob *job)
{
    uint8_t *base = job->buf ? job->buf : zero_chunk;

    for (guint i = 0; i < job->records->len; i++) {
        BlkRecord *r = &g_array_index(job->records, BlkRecord, i);
        if (!(r->flags & BLK_MIG_FLAG_ZERO_BLOCK)) {
            r->has_sum = true;
            blk_record_checksum(r->offset, at(job, base, r->offset), r->len, &r->sum);
            job->wire_bytes += CHECKSUM_LEN;
        }
    }
}

void blk_chunk_prepare(BlkChunkJob *job, const BlkChunkOptions *o, Compressor *c)
{
    g_autoptr(GArray) pieces = NULL;

    if (o->whole_chunks) {
        prepare_whole(job, o);
        return;
    }
    pieces = g_array_new(false, false, sizeof(Piece));
    if (make_pieces(job, o, pieces) && pieces->len) {
        pieces_to_records(job, pieces, c);
        if (o->checksum) {
            add_checksums(job);
        }
    }
}
