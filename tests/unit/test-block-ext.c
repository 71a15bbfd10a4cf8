/* blkmig's stream extensions on the load side, on real sparse raw files:
 * SPAN and COMPRESSED records apply exactly and keep holes holes, bad ones
 * fail with a message naming what is wrong and leave the disk untouched;
 * a save -> file -> load round trip with compression and 4 KiB dirty
 * spans reproduces the source. */
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/block.h"
#include "block/dirty-bitmap.h"
#include "migration/block-migration.h"
#include "migration/options.h"
#include "migration/savevm.h"
#include "util/compress.h"
#include "../lib/block-load-fixture.h"
#include "../lib/drives.h"
#include "../lib/files.h"
#include "../lib/stream-bytes.h"

#define KiB 1024
#define MiB (1024 * 1024)
#define CHUNK BLK_MIG_CHUNK_SIZE
#define DISK_SIZE BLF_DISK_SIZE
/* A disk whose last sector is partial. */
#define ODD_SIZE (CHUNK + 1536 + 100)

typedef BlockLoadFixture Fixture;

/* ---- building streams ---- */

/* A record header up to and including the span length. */
static void span_header(GByteArray *b, uint64_t off, unsigned flags, uint32_t len)
{
    sb_put64(b, off | BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_SPAN | flags);
    sb_put_name(b, "disk0");
    sb_put32(b, len);
}

static void rec_span_data(GByteArray *b, uint64_t off, const uint8_t *data, uint32_t len)
{
    span_header(b, off, 0, len);
    g_byte_array_append(b, data, len);
}

static void rec_span_zero(GByteArray *b, uint64_t off, uint32_t len)
{
    span_header(b, off, BLK_MIG_FLAG_ZERO_BLOCK, len);
}

static uint8_t *compress_with(CompressAlgo algo, const uint8_t *data, size_t len, size_t *out)
{
    g_autoptr(Compressor) c = compressor_new(algo, 0, NULL);
    size_t cap = compressor_bound(c, len);
    uint8_t *buf = g_malloc(cap);

    g_assert_true(compressor_compress(c, data, len, buf, cap, out, NULL));
    return buf;
}

/* A compressed span: algorithm byte ALGO_BYTE, payload CDATA. */
static void rec_span_compressed(GByteArray *b, uint64_t off, uint32_t len, uint8_t algo_byte,
                                const uint8_t *cdata, uint32_t clen)
{
    span_header(b, off, BLK_MIG_FLAG_COMPRESSED, len);
    sb_put8(b, algo_byte);
    sb_put32(b, clen);
    g_byte_array_append(b, cdata, clen);
}

/* ---- looking at disks ---- */

/* Words that compress well but are not zero. */
static void fill_text(uint8_t *buf, size_t len, uint8_t seed)
{
    static const char words[] = "migrate the disk while the guest runs ";

    for (size_t i = 0; i < len; i++) {
        buf[i] = words[(i + seed) % (sizeof(words) - 1)];
    }
}

/* ---- records that apply ---- */

/* Data spans land exactly; zero spans over old data punch holes; holes
 * around stay holes. */
static void test_spans_apply(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();
    uint8_t block[8 * KiB];
    gsize len;
    g_autofree uint8_t *disk = NULL;

    td_write_drive(fx->disk, 1 * MiB, CHUNK, 3);               /* stale data */
    td_fill(block, sizeof(block), 42);
    rec_span_zero(b, 1 * MiB, CHUNK / 2);
    for (uint64_t off = 1 * MiB + CHUNK / 2; off < 2 * MiB; off += 4 * KiB) {
        rec_span_zero(b, off, 4 * KiB);                     /* merged into one */
    }
    rec_span_data(b, 1 * MiB + 64 * KiB, block, sizeof(block));
    rec_span_data(b, 5 * MiB + 512, block, 512);
    sb_block_stream_end(b);
    g_assert_no_error(sb_load_file(fx->stream_path, b));

    disk = tf_read_file(fx->disk_path, &len);
    g_assert_cmpuint(len, ==, DISK_SIZE);
    g_assert_cmpmem(disk + 1 * MiB + 64 * KiB, sizeof(block), block, sizeof(block));
    g_assert_cmpmem(disk + 5 * MiB + 512, 512, block, 512);
    for (size_t i = 1 * MiB; i < 2 * MiB; i++) {
        if (i < 1 * MiB + 64 * KiB || i >= 1 * MiB + 64 * KiB + sizeof(block)) {
            g_assert_cmpuint(disk[i], ==, 0);
        }
    }
    /* 8 KiB and a 4 KiB block: everything else is holes again. */
    g_assert_cmpint(tf_allocated_bytes(fx->disk_path), <=, 16 * KiB);
}

/* The last sector of a drive whose size is no multiple of 512: the span
 * covers it whole, only the part inside the drive is written. */
static void test_span_last_sector(Fixture *fx, gconstpointer data)
{
    g_autofree char *path = g_build_filename(blf_dir(), "odd.raw", NULL);
    g_autoptr(GByteArray) b = sb_block_stream_begin();
    uint8_t block[2048];
    g_autofree uint8_t *disk = NULL;
    gsize len;

    td_open_drive("odd", path, ODD_SIZE);
    td_fill(block, sizeof(block), 9);
    sb_put64(b, CHUNK | BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_SPAN);
    sb_put_name(b, "odd");
    sb_put32(b, sizeof(block));
    g_byte_array_append(b, block, sizeof(block));
    sb_block_stream_end(b);
    g_assert_no_error(sb_load_file(fx->stream_path, b));
    disk = tf_read_file(path, &len);
    g_assert_cmpuint(len, ==, ODD_SIZE);
    g_assert_cmpmem(disk + CHUNK, ODD_SIZE - CHUNK, block, ODD_SIZE - CHUNK);
    g_unlink(path);
}

static void test_compressed_apply(Fixture *fx, gconstpointer data)
{
    CompressAlgo algo = GPOINTER_TO_INT(data);
    uint8_t algo_byte = algo == COMPRESS_ZLIB ? BLK_MIG_COMPRESS_ZLIB : BLK_MIG_COMPRESS_ZSTD;
    g_autoptr(GByteArray) b = sb_block_stream_begin();
    g_autofree uint8_t *chunk = g_malloc(CHUNK);
    g_autofree uint8_t *span = g_malloc(64 * KiB);
    g_autofree uint8_t *cchunk = NULL, *cspan = NULL, *disk = NULL;
    size_t clen_chunk, clen_span;
    gsize len;

    fill_text(chunk, CHUNK, 1);
    fill_text(span, 64 * KiB, 5);
    cchunk = compress_with(algo, chunk, CHUNK, &clen_chunk);
    cspan = compress_with(algo, span, 64 * KiB, &clen_span);
    g_assert_cmpuint(clen_chunk, <, CHUNK / 4);
    /* A whole chunk, then a span. */
    sb_put64(b, 2 * MiB | BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_COMPRESSED);
    sb_put_name(b, "disk0");
    sb_put8(b, algo_byte);
    sb_put32(b, clen_chunk);
    g_byte_array_append(b, cchunk, clen_chunk);
    rec_span_compressed(b, 6 * MiB + 128 * KiB, 64 * KiB, algo_byte, cspan, clen_span);
    sb_block_stream_end(b);
    g_assert_no_error(sb_load_file(fx->stream_path, b));
    disk = tf_read_file(fx->disk_path, &len);
    g_assert_cmpmem(disk + 2 * MiB, CHUNK, chunk, CHUNK);
    g_assert_cmpmem(disk + 6 * MiB + 128 * KiB, 64 * KiB, span, 64 * KiB);
}

/* ---- bad records: the message, and the disk untouched ---- */

static void test_bad_span_length(Fixture *fx, gconstpointer data)
{
    static const uint32_t lengths[] = { 0, 1000, CHUNK + 512, 0xffffffffu };

    for (size_t i = 0; i < G_N_ELEMENTS(lengths); i++) {
        g_autoptr(GByteArray) b = sb_block_stream_begin();
        g_autofree char *expected = g_strdup_printf(
            "block migration: drive 'disk0': span length %u at offset 0 is not a multiple "
            "of 512 from 512 to 1048576", lengths[i]);

        span_header(b, 0, BLK_MIG_FLAG_ZERO_BLOCK, lengths[i]);
        sb_block_stream_end(b);
        blf_assert_rejected(fx, b, expected);
    }
}

static void test_span_crosses_chunk(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();

    rec_span_zero(b, CHUNK - 4 * KiB, 8 * KiB);
    sb_block_stream_end(b);
    blf_assert_rejected(fx, b, "block migration: drive 'disk0': span of 8192 bytes at offset "
                               "1044480 crosses a 1 MiB chunk boundary");
}

static void test_span_past_end(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();
    g_autofree char *path = g_build_filename(blf_dir(), "odd.raw", NULL);

    /* The drive's last sector may be covered, no more. */
    td_open_drive("odd", path, ODD_SIZE);
    sb_put64(b, CHUNK | BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_SPAN | BLK_MIG_FLAG_ZERO_BLOCK);
    sb_put_name(b, "odd");
    sb_put32(b, 2560);
    sb_block_stream_end(b);
    blf_assert_rejected(fx, b, "block migration: drive 'odd': span of 2560 bytes at offset "
                               "1048576 ends beyond the destination size 1050212");
    g_unlink(path);
}

static void test_span_beyond(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();

    rec_span_zero(b, DISK_SIZE, 4 * KiB);
    sb_block_stream_end(b);
    blf_assert_rejected(fx, b, "block migration: drive 'disk0': chunk at offset 8388608 is "
                               "beyond the destination size 8388608");
}

/* A data span cut short: nothing of it reaches the disk. */
static void test_span_truncated(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();
    uint8_t block[4 * KiB];

    td_fill(block, sizeof(block), 1);
    span_header(b, 0, 0, 8 * KiB);
    g_byte_array_append(b, block, sizeof(block));
    blf_assert_rejected(fx, b, "block migration: reading the data of the record at stream "
                               "offset 27: unexpected end of stream");
}

static void test_compressed_too_long(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();
    g_autoptr(GByteArray) c = sb_block_stream_begin();
    g_autofree uint8_t *junk = g_malloc0(8 * KiB);

    rec_span_compressed(b, 0, 4 * KiB, BLK_MIG_COMPRESS_ZSTD, junk, 4 * KiB + 1025);
    sb_block_stream_end(b);
    blf_assert_rejected(fx, b, "block migration: compressed length 5121 in record at stream "
                               "offset 27 is not between 1 and 5120 (4096 bytes uncompressed)");
    rec_span_compressed(c, 0, 4 * KiB, BLK_MIG_COMPRESS_ZLIB, junk, 0);
    sb_block_stream_end(c);
    blf_assert_rejected(fx, c, "block migration: compressed length 0 in record at stream "
                               "offset 27 is not between 1 and 5120");
}

static void test_compressed_corrupt(Fixture *fx, gconstpointer data)
{
    CompressAlgo algo = GPOINTER_TO_INT(data);
    uint8_t algo_byte = algo == COMPRESS_ZLIB ? BLK_MIG_COMPRESS_ZLIB : BLK_MIG_COMPRESS_ZSTD;
    g_autoptr(GByteArray) b = sb_block_stream_begin();
    g_autofree uint8_t *span = g_malloc(64 * KiB);
    g_autofree uint8_t *cspan = NULL;
    size_t clen;

    fill_text(span, 64 * KiB, 2);
    cspan = compress_with(algo, span, 64 * KiB, &clen);
    cspan[clen / 2] ^= 0x55;
    rec_span_compressed(b, 0, 64 * KiB, algo_byte, cspan, clen);
    sb_block_stream_end(b);
    blf_assert_rejected(fx, b, "block migration: drive 'disk0': corrupt compressed data in "
                               "record at stream offset 27: ");
}

/* Intact data of the wrong size for its span. */
static void test_compressed_wrong_size(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();
    g_autofree uint8_t *span = g_malloc(8 * KiB);
    g_autofree uint8_t *cspan = NULL;
    size_t clen;

    fill_text(span, 8 * KiB, 3);
    cspan = compress_with(COMPRESS_ZSTD, span, 4 * KiB, &clen);
    rec_span_compressed(b, 0, 8 * KiB, BLK_MIG_COMPRESS_ZSTD, cspan, clen);
    sb_block_stream_end(b);
    blf_assert_rejected(fx, b, "block migration: drive 'disk0': corrupt compressed data in "
                               "record at stream offset 27: ");
}

static void test_compressed_unknown_algorithm(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();
    uint8_t junk[64] = { 0 };

    rec_span_compressed(b, 0, 4 * KiB, 3, junk, sizeof(junk));
    sb_block_stream_end(b);
    blf_assert_rejected(fx, b, "block migration: unknown compression algorithm 3 in record at "
                               "stream offset 27");
}

static void test_bad_flag_combinations(Fixture *fx, gconstpointer data)
{
    static const struct {
        uint64_t header;
        const char *expected;
    } cases[] = {
        { BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_COMPRESSED | BLK_MIG_FLAG_ZERO_BLOCK,
          "block migration: COMPRESSED flag with ZERO_BLOCK in record at stream offset 27" },
        { BLK_MIG_FLAG_SPAN, "block migration: SPAN flag without DEVICE_BLOCK in record at "
                             "stream offset 27" },
        { BLK_MIG_FLAG_COMPRESSED, "block migration: COMPRESSED flag without DEVICE_BLOCK" },
        { BLK_MIG_FLAG_CHANNELS | BLK_MIG_FLAG_DEVICE_BLOCK,
          "block migration: conflicting flags 0x81 in record at stream offset 27" },
        { BLK_MIG_FLAG_OPTION | BLK_MIG_FLAG_SPAN | BLK_MIG_FLAG_DEVICE_BLOCK,
          "block migration: conflicting flags 0x121 in record at stream offset 27" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GByteArray) b = sb_block_stream_begin();
        sb_put64(b, cases[i].header);
        sb_put_name(b, "disk0");
        sb_put32(b, 4 * KiB);
        sb_block_stream_end(b);
        blf_assert_rejected(fx, b, cases[i].expected);
    }
}

/* Multifd channels cannot come to a file: */
static void test_channels_in_file(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();
    uint8_t id[BLK_MIG_MULTIFD_ID_LEN] = { 1, 2, 3 };

    sb_put64(b, BLK_MIG_FLAG_CHANNELS);
    sb_put32(b, 2);
    g_byte_array_append(b, id, sizeof(id));
    sb_block_stream_end(b);
    blf_assert_rejected(fx, b, "block migration: CHANNELS record at stream offset 27: multifd "
                               "channels are announced, but this incoming migration cannot "
                               "accept connections");
}

/* ---- save -> file -> load with compression and 4 KiB dirty spans ---- */

typedef struct StreamStats {
    unsigned spans;
    unsigned compressed;
    unsigned whole;             /* 1 MiB DEVICE_BLOCK records */
} StreamStats;

static void set_granularity(uint64_t bytes)
{
    MigrationParametersUpdate u = { .has_dirty_granularity = true };
    GError *err = NULL;

    u.p.dirty_granularity = bytes;
    g_assert_true(mig_params_apply(&u, &err));
    g_assert_no_error(err);
}

/* Save SRC's drive with guest writes of 4 KiB after the bulk phase;
 * returns the bytes the dirty pass took. */
static uint64_t save_with_dirty_writes(Fixture *fx, BlockDriverState *src)
{
    MigStream *f = mig_stream_new_writer(open(fx->stream_path, O_WRONLY | O_CREAT | O_TRUNC,
                                              0600));
    GError *err = NULL;
    uint64_t before;

    g_assert_cmpint(savevm_state_header(f, &err), ==, 0);
    g_assert_cmpint(savevm_state_setup(f, &err), ==, 0);
    while (savevm_state_iterate(f, 4 * MiB, &err) == 0) {
        g_assert_no_error(err);
    }
    for (int i = 0; i < 16; i++) {
        td_write_drive(src, (uint64_t)i * 397 * 4 * KiB % DISK_SIZE, 4 * KiB, 100 + i);
    }
    g_assert_cmpuint(savevm_state_pending(), ==, 16 * 4 * KiB);
    before = mig_stream_bytes(f);
    g_assert_cmpint(savevm_state_iterate(f, 64 * MiB, &err), ==, 1);
    g_assert_no_error(err);
    before = mig_stream_bytes(f) - before;
    g_assert_cmpint(savevm_state_complete(f, &err), ==, 0);
    g_assert_no_error(err);
    savevm_state_cleanup();
    mig_stream_close(f);
    return before;
}

/* Walk the records of a stream made by save_with_dirty_writes (one
 * section per part, block records only). */
static StreamStats scan_stream(const uint8_t *s, size_t len)
{
    StreamStats st = { 0 };
    size_t pos = 8;

    while (pos < len && s[pos] != BLKMIG_VM_EOF) {
        uint8_t type = s[pos];
        pos += 5;
        if (type == QEMU_VM_SECTION_START) {
            pos += 1 + s[pos] + 8;
        }
        for (;;) {
            uint64_t h = 0;
            for (int i = 0; i < 8; i++) {
                h = h << 8 | s[pos + i];
            }
            pos += 8;
            unsigned flags = h & BLK_MIG_FLAGS_MASK;
            uint32_t ulen = CHUNK, plen;
            if (flags & (BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_DEVICE_SIZE)) {
                pos += 1 + s[pos];
            }
            if (flags & BLK_MIG_FLAG_DEVICE_SIZE) {
                pos += 8;
            } else if (flags & BLK_MIG_FLAG_DEVICE_BLOCK) {
                if (flags & BLK_MIG_FLAG_SPAN) {
                    ulen = (uint32_t)s[pos] << 24 | s[pos + 1] << 16 | s[pos + 2] << 8 | s[pos + 3];
                    pos += 4;
                    st.spans++;
                } else {
                    st.whole++;
                }
                plen = flags & BLK_MIG_FLAG_ZERO_BLOCK ? 0 : ulen;
                if (flags & BLK_MIG_FLAG_COMPRESSED) {
                    plen = (uint32_t)s[pos + 1] << 24 | s[pos + 2] << 16 | s[pos + 3] << 8 |
                           s[pos + 4];
                    pos += 5;
                    st.compressed++;
                }
                pos += plen;
            }
            if (flags & BLK_MIG_FLAG_EOS) {
                break;
            }
        }
        pos += 5;       /* footer */
    }
    g_assert_cmpuint(pos, ==, len - 1);
    return st;
}

static void test_roundtrip_compressed(Fixture *fx, gconstpointer data)
{
    MigrationParametersUpdate u = { .has_compress_algorithm = true };
    g_autofree char *src_path = g_build_filename(blf_dir(), "src.raw", NULL);
    g_autofree uint8_t *text = g_malloc(CHUNK);
    g_autofree uint8_t *s = NULL, *d = NULL;
    gsize slen, dlen, stream_len;
    g_autofree uint8_t *stream = NULL;
    BlockDriverState *src;
    uint64_t dirty_wire;
    StreamStats st;

    bdrv_close_all();
    src = td_open_drive("disk0", src_path, DISK_SIZE);
    fill_text(text, CHUNK, 7);
    g_assert_cmpint(bdrv_pwrite(src, 3 * MiB, text, CHUNK, 0), ==, 0);
    g_assert_cmpint(bdrv_pwrite(src, 5 * MiB + 8 * KiB, text, 100 * KiB, 0), ==, 0);
    td_write_drive(src, 6 * MiB, 64 * KiB, 11);                /* incompressible */
    mig_cap_set(MIG_CAP_BLOCK, true);
    mig_cap_set(MIG_CAP_ZERO_BLOCKS, true);
    mig_cap_set(MIG_CAP_COMPRESS, true);
    u.p.compress_algorithm = GPOINTER_TO_INT(data);
    g_assert_true(mig_params_apply(&u, NULL));
    set_granularity(4 * KiB);

    dirty_wire = save_with_dirty_writes(fx, src);
    g_test_message("dirty pass of 16 4 KiB writes: %" G_GUINT64_FORMAT " bytes", dirty_wire);
    g_assert_cmpuint(dirty_wire, <, 16 * (4 * KiB + 64) + 256);
    bdrv_close_all();

    stream = tf_read_file(fx->stream_path, &stream_len);
    st = scan_stream(stream, stream_len);
    g_test_message("stream %zu bytes: %u spans, %u whole, %u compressed", (size_t)stream_len,
                   st.spans, st.whole, st.compressed);
    g_assert_cmpuint(st.compressed, >=, 2);
    g_assert_cmpuint(stream_len, <, 64 * KiB + 2 * 16 * 4 * KiB + 64 * KiB);

    td_open_drive("disk0", fx->disk_path, DISK_SIZE);
    td_write_drive(bdrv_find("disk0"), 3 * MiB, CHUNK, 99);    /* stale */
    {
        GByteArray b = { .data = stream, .len = stream_len };
        g_assert_no_error(sb_load_file(fx->stream_path, &b));
    }
    bdrv_close_all();
    s = tf_read_file(src_path, &slen);
    d = tf_read_file(fx->disk_path, &dlen);
    g_assert_cmpmem(s, slen, d, dlen);
    g_assert_cmpint(tf_allocated_bytes(fx->disk_path), <=, tf_allocated_bytes(src_path));
    g_unlink(src_path);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_log_set_always_fatal(G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
    blf_init("test-block-ext-XXXXXX");
#define ADD(name, fn, data) \
    g_test_add("/block-ext/" name, Fixture, data, blf_setup, fn, blf_teardown)
    ADD("spans-apply", test_spans_apply, NULL);
    ADD("span-last-sector", test_span_last_sector, NULL);
    ADD("compressed-apply/zstd", test_compressed_apply, GINT_TO_POINTER(COMPRESS_ZSTD));
    ADD("compressed-apply/zlib", test_compressed_apply, GINT_TO_POINTER(COMPRESS_ZLIB));
    ADD("bad/span-length", test_bad_span_length, NULL);
    ADD("bad/span-crosses-chunk", test_span_crosses_chunk, NULL);
    ADD("bad/span-past-end", test_span_past_end, NULL);
    ADD("bad/span-beyond", test_span_beyond, NULL);
    ADD("bad/span-truncated", test_span_truncated, NULL);
    ADD("bad/compressed-too-long", test_compressed_too_long, NULL);
    ADD("bad/compressed-corrupt/zstd", test_compressed_corrupt, GINT_TO_POINTER(COMPRESS_ZSTD));
    ADD("bad/compressed-corrupt/zlib", test_compressed_corrupt, GINT_TO_POINTER(COMPRESS_ZLIB));
    ADD("bad/compressed-wrong-size", test_compressed_wrong_size, NULL);
    ADD("bad/compressed-unknown-algorithm", test_compressed_unknown_algorithm, NULL);
    ADD("bad/flag-combinations", test_bad_flag_combinations, NULL);
    ADD("bad/channels-in-file", test_channels_in_file, NULL);
    ADD("roundtrip/zstd", test_roundtrip_compressed, GINT_TO_POINTER(MIG_COMPRESS_ZSTD));
    ADD("roundtrip/zlib", test_roundtrip_compressed, GINT_TO_POINTER(MIG_COMPRESS_ZLIB));
    return blf_run();
}
