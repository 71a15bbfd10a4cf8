/* Hostile streams that misuse blkmig's record extensions (SPAN,
 * COMPRESSED and CHANNELS as include/migration/block-migration.h defines
 * them): impossible lengths, decompression bombs, corrupt compressed
 * data, channels a file stream cannot have.  Each stream's only record is
 * the hostile one, at stream offset 27.  Run by test_hostile
 * (stream-fuzz-hostile.c). */
#include <glib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

#include "migration/block-migration.h"
#include "migration/savevm.h"
#include "../lib/stream-bytes.h"
#include "stream-fuzz.h"

typedef struct ExtRecord {
    uint64_t offset;
    unsigned flags;             /* added to DEVICE_BLOCK */
    const char *id;             /* NULL: disk0 */
    uint32_t span_len;          /* sent with SPAN */
    uint8_t algo;               /* sent with COMPRESSED */
    uint32_t comp_len;          /* sent with COMPRESSED */
    const uint8_t *payload;     /* NULL: payload_len bytes of 0x5a */
    size_t payload_len;         /* bytes actually sent after the fields */
} ExtRecord;

static void put_ext_record(GByteArray *b, const ExtRecord *r)
{
    sb_put64(b, r->offset | BLK_MIG_FLAG_DEVICE_BLOCK | r->flags);
    sb_put_name(b, r->id ? r->id : "disk0");
    if (r->flags & BLK_MIG_FLAG_SPAN) {
        sb_put32(b, r->span_len);
    }
    if (r->flags & BLK_MIG_FLAG_COMPRESSED) {
        sb_put8(b, r->algo);
        sb_put32(b, r->comp_len);
    }
    if (r->payload) {
        g_byte_array_append(b, r->payload, r->payload_len);
    } else {
        size_t at = b->len;
        g_byte_array_set_size(b, at + r->payload_len);
        memset(b->data + at, 0x5a, r->payload_len);
    }
}

/* A whole stream whose only record is R. */
static void ext_stream(GByteArray *b, const ExtRecord *r)
{
    sb_put_block_begin(b);
    put_ext_record(b, r);
    sb_block_stream_end(b);
}

#define SPAN BLK_MIG_FLAG_SPAN
#define COMPRESSED BLK_MIG_FLAG_COMPRESSED

static void expect_bad_span_len(GString *expected, uint32_t len)
{
    g_string_printf(expected, "block migration: drive 'disk0': span length %u at offset 0 "
                    "is not a multiple of 512 from 512 to 1048576", len);
}

/* What the decompressor said about the payload of the record. */
static void expect_corrupt(GString *expected, const char *why)
{
    g_string_printf(expected, "block migration: drive 'disk0': corrupt compressed data in "
                    "record at stream offset %d: %s", SECTION0_RECORDS, why);
}

static void expect_bad_comp_len(GString *expected, uint32_t len, uint32_t ulen)
{
    g_string_printf(expected, "block migration: compressed length %u in record at stream "
                    "offset %d is not between 1 and %u (%u bytes uncompressed)",
                    len, SECTION0_RECORDS, ulen + BLK_MIG_COMPRESS_SLACK, ulen);
}

static void build_span_len_0(GByteArray *b, GString *expected)
{
    ext_stream(b, &(ExtRecord){ .flags = SPAN, .span_len = 0 });
    expect_bad_span_len(expected, 0);
}

static void build_span_len_513(GByteArray *b, GString *expected)
{
    ext_stream(b, &(ExtRecord){ .flags = SPAN, .span_len = 513, .payload_len = 513 });
    expect_bad_span_len(expected, 513);
}

/* Must fail on the length, not try to read or allocate 4 GiB. */
static void build_span_len_max(GByteArray *b, GString *expected)
{
    ext_stream(b, &(ExtRecord){ .flags = SPAN, .span_len = UINT32_MAX, .payload_len = 4096 });
    expect_bad_span_len(expected, UINT32_MAX);
}

static void build_zero_span_len_max(GByteArray *b, GString *expected)
{
    ext_stream(b, &(ExtRecord){ .flags = SPAN | BLK_MIG_FLAG_ZERO_BLOCK,
                                .span_len = UINT32_MAX });
    expect_bad_span_len(expected, UINT32_MAX);
}

static void build_span_over_chunk(GByteArray *b, GString *expected)
{
    ext_stream(b, &(ExtRecord){ .flags = SPAN, .span_len = CHUNK + 512,
                                .payload_len = CHUNK + 512 });
    expect_bad_span_len(expected, CHUNK + 512);
}

static void build_span_crosses_chunk(GByteArray *b, GString *expected)
{
    ext_stream(b, &(ExtRecord){ .offset = CHUNK - 512, .flags = SPAN, .span_len = 1024,
                                .payload_len = 1024 });
    g_string_printf(expected, "block migration: drive 'disk0': span of 1024 bytes at offset "
                    "%u crosses a 1 MiB chunk boundary", CHUNK - 512);
}

static void build_span_beyond_drive(GByteArray *b, GString *expected)
{
    ext_stream(b, &(ExtRecord){ .offset = specs[1].size, .id = specs[1].id,
                                .flags = SPAN | BLK_MIG_FLAG_ZERO_BLOCK, .span_len = 512 });
    g_string_printf(expected, "block migration: drive '%s': chunk at offset %" G_GUINT64_FORMAT
                    " is beyond the destination size %" G_GUINT64_FORMAT,
                    specs[1].id, specs[1].size, specs[1].size);
}

/* Starts inside the drive, ends 63 KiB past it (only a partial last
 * sector may reach past the end). */
static void build_span_past_end(GByteArray *b, GString *expected)
{
    ext_stream(b, &(ExtRecord){ .offset = specs[0].size - 1024, .flags = SPAN,
                                .span_len = 64 * 1024, .payload_len = 64 * 1024 });
    g_string_printf(expected, "block migration: drive 'disk0': span of 65536 bytes at offset %"
                    G_GUINT64_FORMAT " ends beyond the destination size %" G_GUINT64_FORMAT,
                    specs[0].size - 1024, specs[0].size);
}

uint8_t *zlib_of(const uint8_t *data, size_t len, size_t *out_len)
{
    uLongf cap = compressBound(len);
    uint8_t *out = g_malloc(cap);

    g_assert_cmpint(compress2(out, &cap, data, len, 9), ==, Z_OK);
    *out_len = cap;
    return out;
}

/* One zstd frame of LEN zero bytes, with or without the content size in
 * its header, made a chunk at a time so a huge LEN costs no memory. */
static uint8_t *zstd_zeros(uint64_t len, bool with_size, size_t *out_len)
{
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    uint8_t *zeros = g_malloc0(CHUNK);
    ZSTD_outBuffer out = { g_malloc(CHUNK), CHUNK, 0 };
    size_t left;

    ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, with_size);
    if (with_size) {
        ZSTD_CCtx_setPledgedSrcSize(cctx, len);
    }
    for (uint64_t done = 0; done < len; done += CHUNK) {
        ZSTD_inBuffer in = { zeros, MIN(CHUNK, len - done), 0 };
        while (in.pos < in.size) {
            g_assert_false(ZSTD_isError(ZSTD_compressStream2(cctx, &out, &in,
                                                             ZSTD_e_continue)));
        }
    }
    do {
        ZSTD_inBuffer none = { NULL, 0, 0 };
        left = ZSTD_compressStream2(cctx, &out, &none, ZSTD_e_end);
        g_assert_false(ZSTD_isError(left));
    } while (left);
    ZSTD_freeCCtx(cctx);
    g_free(zeros);
    *out_len = out.pos;
    return out.dst;
}

/* A COMPRESSED span of 4 KiB whose payload is DATA. */
void compressed_span(GByteArray *b, uint8_t algo, const uint8_t *data, size_t len)
{
    ext_stream(b, &(ExtRecord){ .flags = SPAN | COMPRESSED, .span_len = 4096, .algo = algo,
                                .comp_len = len, .payload = data, .payload_len = len });
}

static void zlib_span(GByteArray *b, uint8_t algo, size_t plain_len)
{
    g_autofree uint8_t *plain = g_malloc(plain_len);
    g_autofree uint8_t *z = NULL;
    size_t zlen;

    memset(plain, 0x5a, plain_len);
    z = zlib_of(plain, plain_len, &zlen);
    compressed_span(b, algo, z, zlen);
}

static void build_compressed_algo_0(GByteArray *b, GString *expected)
{
    zlib_span(b, 0, 4096);
    g_string_printf(expected, "block migration: unknown compression algorithm 0 in record "
                    "at stream offset %d", SECTION0_RECORDS);
}

static void build_compressed_algo_3(GByteArray *b, GString *expected)
{
    zlib_span(b, 3, 4096);
    g_string_printf(expected, "block migration: unknown compression algorithm 3 in record "
                    "at stream offset %d", SECTION0_RECORDS);
}

static void build_compressed_algo_255(GByteArray *b, GString *expected)
{
    zlib_span(b, 255, 4096);
    g_string_printf(expected, "block migration: unknown compression algorithm 255 in record "
                    "at stream offset %d", SECTION0_RECORDS);
}

/* Decompresses to 100 bytes where 4096 are due. */
static void build_compressed_short(GByteArray *b, GString *expected)
{
    zlib_span(b, BLK_MIG_COMPRESS_ZLIB, 100);
    expect_corrupt(expected, "zlib stream holds 100 bytes, expected 4096");
}

/* 1 MiB out of about 1 KiB, for a 4 KiB span. */
static void build_compressed_zlib_bomb(GByteArray *b, GString *expected)
{
    zlib_span(b, BLK_MIG_COMPRESS_ZLIB, CHUNK);
    expect_corrupt(expected, "zlib stream holds more than the expected 4096 bytes");
}

#define BOMB_SIZE (64 * (uint64_t)MiB)

/* A 2 KiB frame of 64 MiB for a 4 KiB span: must fail without
 * allocating or producing it. */
static void build_compressed_zstd_bomb(GByteArray *b, GString *expected)
{
    size_t len;
    g_autofree uint8_t *z = zstd_zeros(BOMB_SIZE, true, &len);

    g_autofree char *why = g_strdup_printf("zstd frame holds %" G_GUINT64_FORMAT
                                           " bytes, expected 4096", BOMB_SIZE);

    g_assert_cmpuint(len, <=, 4096 + BLK_MIG_COMPRESS_SLACK);
    compressed_span(b, BLK_MIG_COMPRESS_ZSTD, z, len);
    expect_corrupt(expected, why);
}

/* The same without the size in the frame header: decompression itself
 * must stop at 4 KiB. */
static void build_compressed_zstd_bomb_unsized(GByteArray *b, GString *expected)
{
    size_t len;
    g_autofree uint8_t *z = zstd_zeros(BOMB_SIZE, false, &len);

    g_assert_cmpuint(len, <=, 4096 + BLK_MIG_COMPRESS_SLACK);
    compressed_span(b, BLK_MIG_COMPRESS_ZSTD, z, len);
    expect_corrupt(expected, "zstd frame holds more than the expected 4096 bytes");
}

/* Without SPAN the record covers a chunk: the bound is then 1 MiB. */
static void build_compressed_chunk_zstd_bomb(GByteArray *b, GString *expected)
{
    size_t len;
    g_autofree uint8_t *z = zstd_zeros(BOMB_SIZE, true, &len);

    g_autofree char *why = g_strdup_printf("zstd frame holds %" G_GUINT64_FORMAT
                                           " bytes, expected %u", BOMB_SIZE, CHUNK);

    ext_stream(b, &(ExtRecord){ .flags = COMPRESSED, .algo = BLK_MIG_COMPRESS_ZSTD,
                                .comp_len = len, .payload = z, .payload_len = len });
    expect_corrupt(expected, why);
}

static void build_compressed_garbage(GByteArray *b, GString *expected)
{
    uint8_t junk[700];

    for (size_t i = 0; i < sizeof(junk); i++) {
        junk[i] = (uint8_t)(i * 151 + 7);
    }
    compressed_span(b, BLK_MIG_COMPRESS_ZSTD, junk, sizeof(junk));
    expect_corrupt(expected, "not a zstd frame (700 bytes, bad magic number)");
}

static void build_compressed_len_0(GByteArray *b, GString *expected)
{
    compressed_span(b, BLK_MIG_COMPRESS_ZLIB, NULL, 0);
    expect_bad_comp_len(expected, 0, 4096);
}

static void build_compressed_len_over_slack(GByteArray *b, GString *expected)
{
    ext_stream(b, &(ExtRecord){ .flags = SPAN | COMPRESSED, .span_len = 4096,
                                .algo = BLK_MIG_COMPRESS_ZLIB,
                                .comp_len = 4096 + BLK_MIG_COMPRESS_SLACK + 1,
                                .payload_len = 4096 + BLK_MIG_COMPRESS_SLACK + 1 });
    expect_bad_comp_len(expected, 4096 + BLK_MIG_COMPRESS_SLACK + 1, 4096);
}

static void build_compressed_len_max(GByteArray *b, GString *expected)
{
    ext_stream(b, &(ExtRecord){ .flags = COMPRESSED, .algo = BLK_MIG_COMPRESS_ZSTD,
                                .comp_len = UINT32_MAX, .payload_len = 4096 });
    expect_bad_comp_len(expected, UINT32_MAX, CHUNK);
}

static void build_compressed_zero_block(GByteArray *b, GString *expected)
{
    ext_stream(b, &(ExtRecord){ .flags = SPAN | COMPRESSED | BLK_MIG_FLAG_ZERO_BLOCK,
                                .span_len = 4096, .algo = BLK_MIG_COMPRESS_ZLIB,
                                .comp_len = 16 });
    g_string_printf(expected, "block migration: COMPRESSED flag with ZERO_BLOCK in record at "
                    "stream offset %d", SECTION0_RECORDS);
}

/* CHANNELS: be32 count, 16-byte id. */
static void channels_stream(GByteArray *b, uint64_t header, uint32_t count)
{
    static const uint8_t id[BLK_MIG_MULTIFD_ID_LEN] = "fuzz-migration!";

    sb_put_block_begin(b);
    sb_put64(b, header);
    sb_put32(b, count);
    g_byte_array_append(b, id, sizeof(id));
    sb_block_stream_end(b);
}

/* A file stream has no channel connections: announcing some must fail
 * (not wait for ever, not load without their records). */
static void build_channels_in_file(GByteArray *b, GString *expected)
{
    channels_stream(b, BLK_MIG_FLAG_CHANNELS, 2);
    g_string_printf(expected, "block migration: CHANNELS record at stream offset %d: "
                    "multifd channels are announced, but this incoming migration cannot "
                    "accept connections (it is not a socket)", SECTION0_RECORDS);
}

/* Which check of a bad count comes first (it, or that a file stream has
 * no channels) is the loader's choice: only the record is pinned. */
static void build_channels_0(GByteArray *b, GString *expected)
{
    channels_stream(b, BLK_MIG_FLAG_CHANNELS, 0);
    g_string_printf(expected, "block migration: CHANNELS record at stream offset %d: ",
                    SECTION0_RECORDS);
}

static void build_channels_17(GByteArray *b, GString *expected)
{
    channels_stream(b, BLK_MIG_FLAG_CHANNELS, BLK_MIG_MULTIFD_MAX_CHANNELS + 1);
    g_string_printf(expected, "block migration: CHANNELS record at stream offset %d: ",
                    SECTION0_RECORDS);
}

static void build_channels_with_offset(GByteArray *b, GString *expected)
{
    channels_stream(b, 1 * MiB | BLK_MIG_FLAG_CHANNELS, 2);
    g_string_printf(expected, "block migration: CHANNELS record at stream offset %d has a "
                    "non-zero offset field", SECTION0_RECORDS);
}

const HostileCase hostile_ext_cases[] = {
    { "span-len-0", build_span_len_0 },
    { "span-len-513", build_span_len_513 },
    { "span-len-max", build_span_len_max },
    { "zero-span-len-max", build_zero_span_len_max },
    { "span-over-chunk", build_span_over_chunk },
    { "span-crosses-chunk", build_span_crosses_chunk },
    { "span-beyond-drive", build_span_beyond_drive },
    { "span-past-end", build_span_past_end },
    { "compressed-algo-0", build_compressed_algo_0 },
    { "compressed-algo-3", build_compressed_algo_3 },
    { "compressed-algo-255", build_compressed_algo_255 },
    { "compressed-short-output", build_compressed_short },
    { "compressed-zlib-bomb", build_compressed_zlib_bomb },
    { "compressed-zstd-bomb", build_compressed_zstd_bomb },
    { "compressed-zstd-bomb-unsized", build_compressed_zstd_bomb_unsized },
    { "compressed-chunk-zstd-bomb", build_compressed_chunk_zstd_bomb },
    { "compressed-garbage", build_compressed_garbage },
    { "compressed-len-0", build_compressed_len_0 },
    { "compressed-len-over-slack", build_compressed_len_over_slack },
    { "compressed-len-max", build_compressed_len_max },
    { "compressed-zero-block", build_compressed_zero_block },
    { "channels-in-file-stream", build_channels_in_file },
    { "channels-0", build_channels_0 },
    { "channels-17", build_channels_17 },
    { "channels-with-offset", build_channels_with_offset },
};

const guint n_hostile_ext_cases = G_N_ELEMENTS(hostile_ext_cases);
