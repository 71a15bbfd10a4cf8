/* The "block" savevm handler, destination side: read and validate each
 * record in full (decompressing it and checking its checksum if needed)
 * before anything of it reaches a disk, then queue it for the
 * connection's writer thread.  The
 * main connection and every multifd channel decode this way; the load
 * ends only when all of them have written everything. */
#include <errno.h>
#include <string.h>

#include "block/block.h"
#include "migration/options.h"
#include "block-internal.h"

#define MAX_COMPRESSED (BLK_CHUNK + BLK_MIG_COMPRESS_SLACK)

/* One connection's decoder. */
struct BlkLoader {
    int channel;                /* multifd channel index; -1: main connection */
    BlkApplier *applier;
    Decompressor *zlib;
    Decompressor *zstd;
    uint8_t *cbuf;              /* a compressed payload */
    char id[256];               /* the drive id of the record being read */
};

/* What one load (one at a time; the main connection's thread sets it up)
 * shares between its connections. */
typedef struct LoadShared {
    const SaveVMLoadContext *ctx;   /* from the core, until the load ends */
    LoadFlusher *flusher;
    BlkApplyBudget *budget;
    BlkLoader *main;
    unsigned sections;          /* sections of the main connection loaded */
    bool sized;                 /* a DEVICE_SIZE record came */
    bool incremental;           /* the INCREMENTAL option came */
    bool resume;                /* the RESUME option came (block-resume) */
    bool checksum;              /* the CHECKSUM option came: data records carry one */
} LoadShared;

static LoadShared load;

static int G_GNUC_PRINTF(4, 5)
load_fail(const BlkLoader *l, GError **errp, MigStream *f, const char *fmt, ...)
{
    g_autofree char *where = l->channel >= 0
                             ? g_strdup_printf("multifd channel %d: ", l->channel)
                             : g_strdup("");
    va_list ap;
    char *msg;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    if (f && mig_stream_error(f)) {
        g_set_error(errp, MIG_ERROR, 0, "block migration: %s%s: %s", where, msg,
                    mig_stream_error_msg(f));
    } else {
        g_set_error(errp, MIG_ERROR, 0, "block migration: %s%s", where, msg);
    }
    g_free(msg);
    return -1;
}

/* ---- loaders ---- */

static BlkLoader *loader_new(int channel)
{
    BlkLoader *l = g_new0(BlkLoader, 1);

    l->channel = channel;
    l->applier = blk_applier_new(load.budget, load.flusher);
    return l;
}

static void loader_free(BlkLoader *l)
{
    if (!l) {
        return;
    }
    blk_applier_free(l->applier);
    decompressor_free(l->zlib);
    decompressor_free(l->zstd);
    g_free(l->cbuf);
    g_free(l);
}

void block_load_setup(const SaveVMLoadContext *ctx)
{
    load.ctx = ctx;
}

/* The first section of a load sets up what its connections share. */
static void load_start(void)
{
    MigrationParameters params;

    if (load.main) {
        return;
    }
    mig_params_get(&params);
    load.flusher = load_flusher_start(load.ctx);
    /* Enough to keep the writers busy; more would only grow what the
     * switchover must write and flush. */
    load.budget = blk_apply_budget_new(MAX(params.max_inflight / 4, 4 * BLK_CHUNK));
    load.main = loader_new(-1);
    load.sections = 0;
    load.sized = false;
    load.incremental = false;
    load.resume = false;
    load.checksum = false;
}

/* ---- checks ---- */

/* The name of a record that only the setup part may hold; NULL for the
 * others. */
static const char *setup_only_name(unsigned flags)
{
    if (flags & BLK_MIG_FLAG_DEVICE_SIZE) {
        return "DEVICE_SIZE";
    }
    if (flags & BLK_MIG_FLAG_CHANNELS) {
        return "CHANNELS";
    }
    return flags & BLK_MIG_FLAG_OPTION ? "OPTION" : NULL;
}

static int check_flags(const BlkLoader *l, const BlkRecord *r, GError **errp)
{
    unsigned payload = r->flags & (BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_DEVICE_SIZE |
                                   BLK_MIG_FLAG_PROGRESS | BLK_MIG_FLAG_CHANNELS |
                                   BLK_MIG_FLAG_OPTION);
    static const struct {
        unsigned flag;
        const char *name;
    } block_only[] = {
        { BLK_MIG_FLAG_ZERO_BLOCK, "ZERO_BLOCK" },
        { BLK_MIG_FLAG_SPAN, "SPAN" },
        { BLK_MIG_FLAG_COMPRESSED, "COMPRESSED" },
    };

    /* As QEMU does: skipping it would let a framing error go unnoticed. */
    if (r->flags == 0) {
        return load_fail(l, errp, NULL, "record without flags at stream offset %"
                         G_GUINT64_FORMAT, r->stream_offset);
    }
    if ((payload & (payload - 1)) ||
        ((r->flags & BLK_MIG_FLAG_OPTION) && r->flags != BLK_MIG_FLAG_OPTION)) {
        return load_fail(l, errp, NULL,
                         "conflicting flags 0x%x in record at stream offset %" G_GUINT64_FORMAT,
                         r->flags, r->stream_offset);
    }
    if (setup_only_name(r->flags) && load.sections > 0) {
        return load_fail(l, errp, NULL, "%s record outside the setup part at stream offset %"
                         G_GUINT64_FORMAT, setup_only_name(r->flags), r->stream_offset);
    }
    for (size_t i = 0; i < G_N_ELEMENTS(block_only); i++) {
        if ((r->flags & block_only[i].flag) && !(r->flags & BLK_MIG_FLAG_DEVICE_BLOCK)) {
            return load_fail(l, errp, NULL, "%s flag without DEVICE_BLOCK in record at "
                             "stream offset %" G_GUINT64_FORMAT,
                             block_only[i].name, r->stream_offset);
        }
    }
    if ((r->flags & BLK_MIG_FLAG_COMPRESSED) && (r->flags & BLK_MIG_FLAG_ZERO_BLOCK)) {
        return load_fail(l, errp, NULL, "COMPRESSED flag with ZERO_BLOCK in record at "
                         "stream offset %" G_GUINT64_FORMAT, r->stream_offset);
    }
    return 0;
}

/* A channel carries block data and, last, its end marker. */
static int check_channel_flags(const BlkLoader *l, const BlkRecord *r, GError **errp)
{
    const unsigned data_flags = BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_ZERO_BLOCK |
                                BLK_MIG_FLAG_SPAN | BLK_MIG_FLAG_COMPRESSED;
    bool end_marker = r->flags == BLK_MIG_FLAG_EOS && r->offset == 0;
    bool data = (r->flags & BLK_MIG_FLAG_DEVICE_BLOCK) && !(r->flags & ~data_flags);

    if (!end_marker && !data) {
        return load_fail(l, errp, NULL,
                         "record with flags 0x%x at stream offset %" G_GUINT64_FORMAT
                         " is neither block data nor the end marker",
                         r->flags, r->stream_offset);
    }
    return check_flags(l, r, errp);
}

/* u8 len + drive id, resolved to a drive of ours. */
static int read_drive(BlkLoader *l, MigStream *f, BlkRecord *r, GError **errp)
{
    uint8_t len = mig_get_u8(f);

    mig_get_buffer(f, l->id, len);
    l->id[len] = '\0';
    r->id = l->id;
    if (mig_stream_error(f)) {
        return load_fail(l, errp, f, "reading record at stream offset %" G_GUINT64_FORMAT,
                         r->stream_offset);
    }
    if (memchr(r->id, '\0', len)) {
        return load_fail(l, errp, NULL, "drive id with a NUL byte in record at stream "
                         "offset %" G_GUINT64_FORMAT, r->stream_offset);
    }
    r->bs = bdrv_find(r->id);
    if (!r->bs) {
        /* Error texts go out as JSON: only valid UTF-8. */
        g_autofree char *shown = g_utf8_make_valid(r->id, -1);
        return load_fail(l, errp, NULL, "unknown drive '%s': the source has a drive that "
                         "this destination lacks", shown);
    }
    return 0;
}

/* ---- setup records (main connection) ---- */

static int load_device_size(BlkLoader *l, MigStream *f, BlkRecord *r, GError **errp)
{
    uint64_t src_size, dst_size;

    if (read_drive(l, f, r, errp) < 0) {
        return -1;
    }
    src_size = mig_get_be64(f);
    if (mig_stream_error(f)) {
        return load_fail(l, errp, f, "reading record at stream offset %" G_GUINT64_FORMAT,
                         r->stream_offset);
    }
    dst_size = bdrv_getlength(r->bs);
    if (dst_size < src_size) {
        return load_fail(l, errp, NULL,
                         "drive '%s' is %" G_GUINT64_FORMAT " bytes at the source but only %"
                         G_GUINT64_FORMAT " bytes at the destination",
                         r->id, src_size, dst_size);
    }
    if (load.incremental && !bdrv_get_backing(r->bs)) {
        return load_fail(l, errp, NULL,
                         "drive '%s' has no backing image, but the source migrates with "
                         "block-incremental (the top layer only): the destination drive must "
                         "be an overlay on the same base image (format=qcow2,backing=BASE)",
                         r->id);
    }
    if (!load.sized && !load.resume) {
        /* A migration that cannot be resumed: old journals mean nothing. */
        blk_resume_load_forget();
    }
    load.sized = true;
    /* Only blkmig sends this: its return path understands progress. */
    load_flusher_report_progress(load.flusher);
    return 0;
}

static int load_channels(BlkLoader *l, MigStream *f, BlkRecord *r, GError **errp)
{
    uint8_t id[BLK_MIG_MULTIFD_ID_LEN];
    uint32_t n = mig_get_be32(f);
    GError *local = NULL;

    mig_get_buffer(f, id, sizeof(id));
    if (mig_stream_error(f)) {
        return load_fail(l, errp, f, "reading record at stream offset %" G_GUINT64_FORMAT,
                         r->stream_offset);
    }
    if (r->offset != 0) {
        return load_fail(l, errp, NULL, "CHANNELS record at stream offset %" G_GUINT64_FORMAT
                         " has a non-zero offset field", r->stream_offset);
    }
    if (!multifd_recv_expect(n, id, &local)) {
        load_fail(l, errp, NULL, "CHANNELS record at stream offset %" G_GUINT64_FORMAT ": %s",
                  r->stream_offset, local->message);
        g_error_free(local);
        return -1;
    }
    return 0;
}

/* Where an OPTION record with a LEN-byte payload may not be; NULL when
 * it is fine. */
static const char *misplaced_option(const BlkRecord *r, uint32_t len)
{
    if (r->offset != 0) {
        return "has a non-zero offset field";
    }
    if (len > BLK_MIG_OPTION_MAX_PAYLOAD) {
        return "has a payload of more than 4096 bytes";
    }
    return load.sized ? "comes after a DEVICE_SIZE record" : NULL;
}

/* OPTION: be32 code, be32 payload length, the payload. */
static int load_option(BlkLoader *l, MigStream *f, BlkRecord *r, GError **errp)
{
    uint8_t payload[BLK_MIG_OPTION_MAX_PAYLOAD];
    uint32_t code = mig_get_be32(f);
    uint32_t len = mig_get_be32(f);
    const char *misplaced = misplaced_option(r, len);

    if (!mig_stream_error(f) && !misplaced) {
        mig_get_buffer(f, payload, len);
    }
    if (mig_stream_error(f)) {
        return load_fail(l, errp, f, "reading record at stream offset %" G_GUINT64_FORMAT,
                         r->stream_offset);
    }
    if (misplaced) {
        return load_fail(l, errp, NULL, "OPTION record at stream offset %" G_GUINT64_FORMAT
                         " %s", r->stream_offset, misplaced);
    }
    if (code == BLK_MIG_OPTION_RESUME) {
        load.resume = true;
        return blk_resume_load_option(payload, len, load.ctx, errp) ? 0 : -1;
    }
    if (code != BLK_MIG_OPTION_INCREMENTAL && code != BLK_MIG_OPTION_CHECKSUM) {
        return load_fail(l, errp, NULL, "unknown stream option %u at stream offset %"
                         G_GUINT64_FORMAT " (from a newer source?)", code, r->stream_offset);
    }
    if (len != 0) {
        return load_fail(l, errp, NULL, "%s option at stream offset %" G_GUINT64_FORMAT
                         " has a %u-byte payload", code == BLK_MIG_OPTION_CHECKSUM
                         ? "CHECKSUM" : "INCREMENTAL", r->stream_offset, len);
    }
    if (code == BLK_MIG_OPTION_CHECKSUM) {
        load.checksum = true;
    } else {
        load.incremental = true;
    }
    return 0;
}

/* ---- block data ---- */

/* SPAN: be32 length, checked against the drive; *ULEN gets it. */
static int read_span(BlkLoader *l, MigStream *f, const BlkRecord *r, uint64_t size,
                     uint32_t *ulen, GError **errp)
{
    uint32_t span = mig_get_be32(f);

    if (mig_stream_error(f)) {
        return load_fail(l, errp, f, "reading record at stream offset %" G_GUINT64_FORMAT,
                         r->stream_offset);
    }
    if (span == 0 || span % BLK_SECTOR || span > BLK_CHUNK) {
        return load_fail(l, errp, NULL, "drive '%s': span length %u at offset %"
                         G_GUINT64_FORMAT " is not a multiple of 512 from 512 to 1048576",
                         r->id, span, r->offset);
    }
    if (r->offset % BLK_CHUNK + span > BLK_CHUNK) {
        return load_fail(l, errp, NULL, "drive '%s': span of %u bytes at offset %"
                         G_GUINT64_FORMAT " crosses a 1 MiB chunk boundary",
                         r->id, span, r->offset);
    }
    if (r->offset + span > ROUND_UP(size, BLK_SECTOR)) {
        return load_fail(l, errp, NULL, "drive '%s': span of %u bytes at offset %"
                         G_GUINT64_FORMAT " ends beyond the destination size %" G_GUINT64_FORMAT,
                         r->id, span, r->offset, size);
    }
    *ulen = span;
    return 0;
}

static Decompressor *decompressor_for(BlkLoader *l, uint8_t algo)
{
    Decompressor **d = algo == BLK_MIG_COMPRESS_ZLIB ? &l->zlib : &l->zstd;

    if (!*d) {
        *d = decompressor_new(algo == BLK_MIG_COMPRESS_ZLIB ? COMPRESS_ZLIB : COMPRESS_ZSTD);
    }
    return *d;
}

/* COMPRESSED: u8 algorithm, be32 length, the bytes; decompressed into
 * BUF (ULEN bytes). */
static int read_compressed(BlkLoader *l, MigStream *f, const BlkRecord *r, uint32_t ulen,
                           uint8_t *buf, GError **errp)
{
    uint8_t algo = mig_get_u8(f);
    uint32_t clen = mig_get_be32(f);
    GError *local = NULL;

    if (mig_stream_error(f)) {
        return load_fail(l, errp, f, "reading record at stream offset %" G_GUINT64_FORMAT,
                         r->stream_offset);
    }
    if (algo != BLK_MIG_COMPRESS_ZLIB && algo != BLK_MIG_COMPRESS_ZSTD) {
        return load_fail(l, errp, NULL, "unknown compression algorithm %u in record at "
                         "stream offset %" G_GUINT64_FORMAT, algo, r->stream_offset);
    }
    if (clen == 0 || clen > (uint64_t)ulen + BLK_MIG_COMPRESS_SLACK) {
        return load_fail(l, errp, NULL, "compressed length %u in record at stream offset %"
                         G_GUINT64_FORMAT " is not between 1 and %u (%u bytes uncompressed)",
                         clen, r->stream_offset, ulen + BLK_MIG_COMPRESS_SLACK, ulen);
    }
    if (!l->cbuf) {
        l->cbuf = g_malloc(MAX_COMPRESSED);
    }
    if (mig_get_buffer(f, l->cbuf, clen) != clen) {
        return load_fail(l, errp, f, "reading the data of the record at stream offset %"
                         G_GUINT64_FORMAT, r->stream_offset);
    }
    if (!decompressor_decompress(decompressor_for(l, algo), l->cbuf, clen, buf, ulen, &local)) {
        load_fail(l, errp, NULL, "drive '%s': corrupt compressed data in record at stream "
                  "offset %" G_GUINT64_FORMAT ": %s", r->id, r->stream_offset, local->message);
        g_error_free(local);
        return -1;
    }
    return 0;
}

/* The payload of a data record into a buffer from the budget: whole
 * before anything is written, so a bad record leaves the disk alone. */
static int read_payload(BlkLoader *l, MigStream *f, const BlkRecord *r, uint32_t ulen,
                        BlkApplyItem *it, GError **errp)
{
    int ret = 0;

    it->data = blk_apply_budget_alloc(load.budget, ulen);
    if (!it->data) {
        return load_fail(l, errp, NULL, "reading the record at stream offset %"
                         G_GUINT64_FORMAT ": the load was stopped", r->stream_offset);
    }
    it->data_cap = ulen;
    if (r->flags & BLK_MIG_FLAG_COMPRESSED) {
        ret = read_compressed(l, f, r, ulen, it->data, errp);
    } else if (mig_get_buffer(f, it->data, ulen) != ulen) {
        ret = load_fail(l, errp, f, "reading the data of the record at stream offset %"
                        G_GUINT64_FORMAT, r->stream_offset);
    }
    if (ret < 0) {
        blk_apply_budget_release(load.budget, it->data, it->data_cap);
    }
    return ret;
}

/* CHECKSUM: the digest the source computed (before the payload). */
static int read_checksum(BlkLoader *l, MigStream *f, BlkRecord *r, GError **errp)
{
    mig_get_buffer(f, r->sum.bytes, CHECKSUM_LEN);
    if (mig_stream_error(f)) {
        return load_fail(l, errp, f, "reading record at stream offset %" G_GUINT64_FORMAT,
                         r->stream_offset);
    }
    r->has_sum = true;
    return 0;
}

/* The payload read (ULEN bytes at IT's data) against the record's
 * checksum; on a mismatch nothing of it is applied. */
static int verify_checksum(BlkLoader *l, const BlkRecord *r, uint32_t ulen,
                           BlkApplyItem *it, GError **errp)
{
    ChecksumDigest ours;

    blk_record_checksum(r->offset, it->data, ulen, &ours);
    if (memcmp(ours.bytes, r->sum.bytes, CHECKSUM_LEN) == 0) {
        return 0;
    }
    blk_apply_budget_release(load.budget, it->data, it->data_cap);
    return load_fail(l, errp, NULL, "drive '%s': checksum mismatch in the record of %u bytes "
                     "at offset %" G_GUINT64_FORMAT " (stream offset %" G_GUINT64_FORMAT
                     "): the data was damaged on the way; nothing of it was applied",
                     r->id, ulen, r->offset, r->stream_offset);
}

static int load_device_block(BlkLoader *l, MigStream *f, BlkRecord *r, GError **errp)
{
    BlkApplyItem it = { 0 };
    uint32_t ulen = BLK_CHUNK;
    uint64_t size;

    if (read_drive(l, f, r, errp) < 0) {
        return -1;
    }
    size = bdrv_getlength(r->bs);
    if (r->offset >= size) {
        return load_fail(l, errp, NULL,
                         "drive '%s': chunk at offset %" G_GUINT64_FORMAT
                         " is beyond the destination size %" G_GUINT64_FORMAT,
                         r->id, r->offset, size);
    }
    if ((r->flags & BLK_MIG_FLAG_SPAN) && read_span(l, f, r, size, &ulen, errp) < 0) {
        return -1;
    }
    if (load.checksum && !(r->flags & BLK_MIG_FLAG_ZERO_BLOCK) &&
        read_checksum(l, f, r, errp) < 0) {
        return -1;
    }
    /* Only the part inside the disk is applied (the last chunk of a disk
     * is whole on the wire). */
    it.bs = r->bs;
    it.offset = r->offset;
    it.len = MIN(ulen, size - r->offset);
    if (!(r->flags & BLK_MIG_FLAG_ZERO_BLOCK) && read_payload(l, f, r, ulen, &it, errp) < 0) {
        return -1;
    }
    if (r->has_sum && verify_checksum(l, r, ulen, &it, errp) < 0) {
        return -1;
    }
    return blk_applier_push(l->applier, &it, errp) ? 0 : -1;
}

/* ---- records ---- */

/* What follows the header of a checked record R. */
static int load_body(BlkLoader *l, MigStream *f, BlkRecord *r, GError **errp)
{
    if (r->flags & BLK_MIG_FLAG_DEVICE_SIZE) {
        return load_device_size(l, f, r, errp);
    }
    if (r->flags & BLK_MIG_FLAG_CHANNELS) {
        return load_channels(l, f, r, errp);
    }
    if (r->flags & BLK_MIG_FLAG_OPTION) {
        return load_option(l, f, r, errp);
    }
    if (r->flags & BLK_MIG_FLAG_DEVICE_BLOCK) {
        return load_device_block(l, f, r, errp);
    }
    return 0;
}

/* One record; *eos when it ends the section part (or the channel). */
static int load_record(BlkLoader *l, MigStream *f, bool *eos, GError **errp)
{
    BlkRecord r = { .stream_offset = mig_stream_bytes(f) };
    uint64_t header = mig_get_be64(f);

    if (mig_stream_error(f)) {
        return load_fail(l, errp, f, "reading record at stream offset %" G_GUINT64_FORMAT,
                         r.stream_offset);
    }
    r.flags = header & BLK_MIG_FLAGS_MASK;
    r.offset = header & ~(uint64_t)BLK_MIG_FLAGS_MASK;
    if ((l->channel >= 0 ? check_channel_flags(l, &r, errp) : check_flags(l, &r, errp)) < 0) {
        return -1;
    }
    if (load_body(l, f, &r, errp) < 0) {
        return -1;
    }
    /* Channels carry only drives the setup part named already. */
    if (l->channel < 0 && (r.flags & (BLK_MIG_FLAG_DEVICE_SIZE | BLK_MIG_FLAG_DEVICE_BLOCK))) {
        storage_check_note_loaded(r.id, r.flags & BLK_MIG_FLAG_DEVICE_SIZE);
    }
    /* PROGRESS carries nothing the destination needs. */
    *eos = r.flags & BLK_MIG_FLAG_EOS;
    return 0;
}

int block_load_state(MigStream *f, void *opaque, int version_id, GError **errp)
{
    bool eos = false;
    int ret = 0;

    load_start();
    while (!eos && ret == 0) {
        ret = load_record(load.main, f, &eos, errp);
    }
    if (ret == 0 && load.sections++ == 0 && !multifd_recv_setup_done(errp)) {
        ret = -1;
    }
    return ret;
}

/* ---- multifd channels ---- */

BlkLoader *block_load_channel_new(unsigned index)
{
    return loader_new(index);
}

void block_load_channel_free(BlkLoader *l)
{
    loader_free(l);
}

bool block_load_channel_next(BlkLoader *l, MigStream *f, bool *end, GError **errp)
{
    if (load_record(l, f, end, errp) < 0) {
        return false;
    }
    return !*end || blk_applier_drain(l->applier, errp);
}

/* ---- the end ---- */

bool block_load_wait_written(GError **errp)
{
    if (load.main && !blk_applier_drain(load.main->applier, errp)) {
        return false;
    }
    return multifd_recv_wait_all(errp);
}

int block_load_finish(void *opaque, GError **errp)
{
    LoadFlusher *fl;

    if (!block_load_wait_written(errp)) {
        return -1;
    }
    fl = g_steal_pointer(&load.flusher);
    if (load_flusher_stop(fl, errp) < 0) {
        return -1;
    }
    if (!blk_flush_all_drives("block migration", errp)) {
        return -1;
    }
    /* Everything is here and durable: nothing to resume any more. */
    blk_resume_load_forget();
    return 0;
}

void block_load_cleanup(void)
{
    if (load.budget) {
        /* Wake whoever waits for memory, then stop the channels. */
        blk_apply_budget_abort(load.budget);
    }
    multifd_recv_abort();
    g_clear_pointer(&load.main, loader_free);
    g_clear_pointer(&load.budget, blk_apply_budget_free);
    load_flusher_stop(g_steal_pointer(&load.flusher), NULL);
}
