/* The "block" section's load side on real sparse raw files: hand-built
 * records apply exactly (holes stay holes), bad records fail with their
 * message and leave the disk alone, and a real save -> file -> load round
 * trip reproduces the source drives. */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/block.h"
#include "migration/block-migration.h"
#include "migration/options.h"
#include "migration/savevm.h"
#include "util/checksum.h"
#include "../lib/block-load-fixture.h"
#include "../lib/drives.h"
#include "../lib/files.h"
#include "../lib/stream-bytes.h"

#define MiB (1024 * 1024)
#define CHUNK BLK_MIG_CHUNK_SIZE
#define DISK_SIZE BLF_DISK_SIZE
#define DIRTY_BLOCK 4096            /* the default dirty-granularity */

typedef BlockLoadFixture Fixture;

/* ---- hand-built streams ---- */

static void rec_zero(GByteArray *b, const char *id, uint64_t off)
{
    sb_put64(b, off | BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_ZERO_BLOCK);
    sb_put_name(b, id);
}

static void rec_data(GByteArray *b, const char *id, uint64_t off, const uint8_t *chunk)
{
    sb_put64(b, off | BLK_MIG_FLAG_DEVICE_BLOCK);
    sb_put_name(b, id);
    g_byte_array_append(b, chunk, CHUNK);
}

static void rec_size(GByteArray *b, const char *id, uint64_t size)
{
    sb_put64(b, BLK_MIG_FLAG_DEVICE_SIZE);
    sb_put_name(b, id);
    sb_put64(b, size);
}

/* ---- looking at the disk file ---- */

/* Whether the 4 KiB block at OFF holds allocated data. */
static bool block_is_data(const char *path, off_t off)
{
    int fd = open(path, O_RDONLY);
    off_t data = lseek(fd, off, SEEK_DATA);

    close(fd);
    return data == off;
}

/* ---- records applied ---- */

static void test_zero_block_punches_hole(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();
    int64_t before, after;
    uint8_t *contents;
    gsize len;
    GError *err;

    td_write_drive(fx->disk, 1 * MiB, CHUNK, 1);
    td_write_drive(fx->disk, 3 * MiB, CHUNK, 2);
    before = tf_allocated_bytes(fx->disk_path);
    g_assert_cmpint(before, >=, 2 * MiB);
    rec_zero(b, "disk0", 1 * MiB);
    sb_block_stream_end(b);
    err = sb_load_file(fx->stream_path, b);
    g_assert_no_error(err);
    after = tf_allocated_bytes(fx->disk_path);
    g_test_message("allocated %" G_GINT64_FORMAT " -> %" G_GINT64_FORMAT, before, after);
    g_assert_cmpint(after, <=, before - CHUNK);
    contents = tf_read_file(fx->disk_path, &len);
    g_assert_cmpuint(len, ==, DISK_SIZE);
    for (size_t i = 1 * MiB; i < 2 * MiB; i++) {
        g_assert_cmpuint(contents[i], ==, 0);
    }
    g_assert_cmpuint(contents[3 * MiB], !=, 0);     /* untouched chunk */
    g_free(contents);
}

/* A data chunk whose even 4 KiB blocks are zero: only the odd ones become
 * data on the destination, even over old data. */
static void test_half_zero_chunk_stays_thin(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();
    uint8_t *chunk = g_malloc0(CHUNK);
    uint8_t *contents;
    gsize len;
    GError *err;

    td_write_drive(fx->disk, 2 * MiB, CHUNK, 9);       /* stale data to replace */
    for (size_t blk = 1; blk < CHUNK / 4096; blk += 2) {
        td_fill(chunk + blk * 4096, 4096, blk);
    }
    rec_data(b, "disk0", 2 * MiB, chunk);
    rec_data(b, "disk0", 5 * MiB, chunk);           /* onto a hole */
    sb_block_stream_end(b);
    err = sb_load_file(fx->stream_path, b);
    g_assert_no_error(err);

    contents = tf_read_file(fx->disk_path, &len);
    g_assert_cmpmem(contents + 2 * MiB, CHUNK, chunk, CHUNK);
    g_assert_cmpmem(contents + 5 * MiB, CHUNK, chunk, CHUNK);
    for (size_t blk = 0; blk < CHUNK / 4096; blk++) {
        g_assert_cmpint(block_is_data(fx->disk_path, 2 * MiB + blk * 4096), ==, blk % 2);
        g_assert_cmpint(block_is_data(fx->disk_path, 5 * MiB + blk * 4096), ==, blk % 2);
    }
    g_assert_cmpint(tf_allocated_bytes(fx->disk_path), <=, CHUNK + 64 * 1024);
    g_free(contents);
    g_free(chunk);
}

/* The last chunk of a disk whose size is not a chunk multiple: the whole
 * chunk is on the wire, only the part inside the disk is written. */
static void test_last_partial_chunk(Fixture *fx, gconstpointer data)
{
    g_autofree char *path = g_build_filename(blf_dir(), "small.raw", NULL);
    g_autoptr(GByteArray) b = sb_block_stream_begin();
    uint8_t *chunk = g_malloc(CHUNK);
    uint8_t *contents;
    gsize len;
    GError *err;

    td_open_drive("small", path, CHUNK + CHUNK / 2 + 512);
    td_fill(chunk, CHUNK, 5);
    rec_size(b, "small", CHUNK + CHUNK / 2 + 512);
    rec_data(b, "small", CHUNK, chunk);
    sb_block_stream_end(b);
    err = sb_load_file(fx->stream_path, b);
    g_assert_no_error(err);
    contents = tf_read_file(path, &len);
    g_assert_cmpuint(len, ==, CHUNK + CHUNK / 2 + 512);
    g_assert_cmpmem(contents + CHUNK, CHUNK / 2 + 512, chunk, CHUNK / 2 + 512);
    g_free(contents);
    g_free(chunk);
    g_unlink(path);
}

static void test_device_size_larger_destination(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();
    GError *err;

    rec_size(b, "disk0", DISK_SIZE / 2);
    sb_put64(b, 50ULL << 9 | BLK_MIG_FLAG_PROGRESS);
    sb_block_stream_end(b);
    err = sb_load_file(fx->stream_path, b);
    g_assert_no_error(err);
}

/* ---- bad records: the message, and the disk untouched ---- */

/* OPTION (0x100): be32 code, be32 length, the payload. */
static void rec_option(GByteArray *b, uint32_t code, uint32_t len)
{
    sb_put64(b, BLK_MIG_FLAG_OPTION);
    sb_put32(b, code);
    sb_put32(b, len);
    g_byte_array_set_size(b, b->len + len);
    memset(b->data + b->len - len, 0, len);
}

/* Options a destination does not know, or in the wrong place, fail the
 * load before anything is written. */
static void test_bad_options(Fixture *fx, gconstpointer data)
{
    static const struct {
        uint32_t code, len;
        bool after_size;
        const char *expected;       /* %u: the record's stream offset */
    } cases[] = {
        { 7, 0, false, "unknown stream option 7 at stream offset %u (from a newer source?)" },
        { 7, 12, false, "unknown stream option 7 at stream offset %u" },
        { BLK_MIG_OPTION_INCREMENTAL, 4, false,
          "INCREMENTAL option at stream offset %u has a 4-byte payload" },
        { BLK_MIG_OPTION_INCREMENTAL, 4097, false,
          "OPTION record at stream offset %u has a payload of more than 4096 bytes" },
        { BLK_MIG_OPTION_INCREMENTAL, 0, true,
          "OPTION record at stream offset %u comes after a DEVICE_SIZE record" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        g_autoptr(GByteArray) b = sb_block_stream_begin();
        g_autofree char *expected = NULL;

        if (cases[i].after_size) {
            rec_size(b, "disk0", DISK_SIZE);
        }
        expected = g_strdup_printf(cases[i].expected, b->len);
        rec_option(b, cases[i].code, cases[i].len);
        rec_zero(b, "disk0", 0);
        sb_block_stream_end(b);
        blf_assert_rejected(fx, b, expected);
    }
}

/* CHECKSUM (option 3): a data record carries, after its drive id, the
 * XXH3-128 of its payload seeded with its offset.  FLIP: a payload byte
 * damaged after the digest was taken. */
static void checksummed_stream(GByteArray *b, uint8_t *chunk, bool flip)
{
    ChecksumDigest sum;

    memset(chunk, 0x5a, CHUNK);
    chunk[77] = 1;
    checksum_buffer(1 * MiB, chunk, CHUNK, &sum);
    chunk[4096] ^= flip ? 0x80 : 0;
    rec_option(b, BLK_MIG_OPTION_CHECKSUM, 0);
    sb_put64(b, 1 * MiB | BLK_MIG_FLAG_DEVICE_BLOCK);
    sb_put_name(b, "disk0");
    g_byte_array_append(b, sum.bytes, CHECKSUM_LEN);
    g_byte_array_append(b, chunk, CHUNK);
    /* Zero records carry none (after the data record: a rejected load
     * must not have applied anything before it either). */
    rec_zero(b, "disk0", 0);
    sb_block_stream_end(b);
}

static void test_checksum_record(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();
    g_autofree uint8_t *chunk = g_malloc(CHUNK);
    g_autofree uint8_t *contents = NULL;
    gsize len;

    checksummed_stream(b, chunk, false);
    g_assert_no_error(sb_load_file(fx->stream_path, b));
    contents = tf_read_file(fx->disk_path, &len);
    g_assert_cmpmem(contents + 1 * MiB, CHUNK, chunk, CHUNK);
}

/* A payload damaged on the way fails the load naming the drive and the
 * offset, and nothing of the record reaches the disk. */
static void test_checksum_mismatch(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();
    g_autofree uint8_t *chunk = g_malloc(CHUNK);

    checksummed_stream(b, chunk, true);
    blf_assert_rejected(fx, b, "block migration: drive 'disk0': checksum mismatch in the record "
                        "of 1048576 bytes at offset 1048576 (stream offset");
}

/* OPTION belongs to the setup part (the START section) only. */
static void test_option_in_part(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();
    g_autofree char *expected = NULL;

    sb_put_block_section_end(b);
    sb_put8(b, QEMU_VM_SECTION_PART);
    sb_put32(b, 0);
    expected = g_strdup_printf("block migration: OPTION record outside the setup part at "
                               "stream offset %u", b->len);
    rec_option(b, BLK_MIG_OPTION_INCREMENTAL, 0);
    sb_block_stream_end(b);
    blf_assert_rejected(fx, b, expected);
}

/* block-incremental onto a drive without a backing image: refused at
 * once, naming the drive. */
static void test_incremental_needs_backing(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();

    rec_option(b, BLK_MIG_OPTION_INCREMENTAL, 0);
    rec_size(b, "disk0", DISK_SIZE);
    rec_zero(b, "disk0", 0);
    sb_block_stream_end(b);
    blf_assert_rejected(fx, b, "block migration: drive 'disk0' has no backing image, but the "
                        "source migrates with block-incremental (the top layer only)");
}

static void test_unknown_drive(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();

    rec_zero(b, "nosuch", 0);
    sb_block_stream_end(b);
    blf_assert_rejected(fx, b, "block migration: unknown drive 'nosuch'");
}

static void test_unknown_drive_size(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();

    rec_size(b, "x", DISK_SIZE);
    sb_block_stream_end(b);
    blf_assert_rejected(fx, b, "block migration: unknown drive 'x'");
}

static void test_offset_beyond(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();
    uint8_t *chunk = g_malloc(CHUNK);

    td_fill(chunk, CHUNK, 1);
    rec_data(b, "disk0", DISK_SIZE, chunk);
    sb_block_stream_end(b);
    blf_assert_rejected(fx, b, "block migration: drive 'disk0': chunk at offset 8388608 "
                               "is beyond the destination size 8388608");
    g_free(chunk);
}

static void test_zero_offset_beyond(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();

    rec_zero(b, "disk0", 1ULL << 40);
    sb_block_stream_end(b);
    blf_assert_rejected(fx, b, "block migration: drive 'disk0': chunk at offset 1099511627776 "
                               "is beyond the destination size 8388608");
}

static void test_source_larger(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();

    rec_size(b, "disk0", 2 * DISK_SIZE);
    rec_zero(b, "disk0", 0);
    sb_block_stream_end(b);
    blf_assert_rejected(fx, b, "block migration: drive 'disk0' is 16777216 bytes at the "
                               "source but only 8388608 bytes at the destination");
}

static void test_zero_without_device_block(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();

    sb_put64(b, BLK_MIG_FLAG_ZERO_BLOCK);
    sb_block_stream_end(b);
    blf_assert_rejected(fx, b, "ZERO_BLOCK flag without DEVICE_BLOCK");
}

/* A data record cut short: nothing of it may reach the disk. */
static void test_truncated_payload(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();
    uint8_t *chunk = g_malloc(CHUNK);
    g_autofree char *expected = NULL;

    td_fill(chunk, CHUNK, 77);
    sb_put64(b, 0 | BLK_MIG_FLAG_DEVICE_BLOCK);
    sb_put_name(b, "disk0");
    g_byte_array_append(b, chunk, CHUNK / 2);
    expected = g_strdup_printf("unexpected end of stream at byte %u", b->len);
    blf_assert_rejected(fx, b, expected);
    blf_assert_rejected(fx, b, "block migration: reading the data of the record at stream "
                               "offset 27");
    g_free(chunk);
}

static void test_truncated_header(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();

    sb_put32(b, 0);                                    /* half a be64 */
    blf_assert_rejected(fx, b, "block migration: reading record at stream offset 27: "
                               "unexpected end of stream at byte 31");
}

/* ---- save -> file -> load with the real handlers ---- */

typedef struct Layout {
    const char *id;
    uint64_t size;
} Layout;

static const Layout layout[] = {
    { "disk0", 24 * MiB },
    { "disk1", 5 * MiB + 3 * 512 },
};

static char *drive_path(const char *side, const char *id)
{
    g_autofree char *name = g_strdup_printf("%s-%s.raw", side, id);
    return g_build_filename(blf_dir(), name, NULL);
}

/* Run the source side into FX's stream file, with guest writes between
 * iterations after the bulk phase. */
static void save_drives(Fixture *fx, BlockDriverState **src)
{
    MigStream *f = mig_stream_new_writer(open(fx->stream_path, O_WRONLY | O_CREAT | O_TRUNC, 0600));
    MigrationDiskStats stats;
    GError *err = NULL;
    int ret, rounds = 0;

    g_assert_cmpint(savevm_state_header(f, &err), ==, 0);
    g_assert_cmpint(savevm_state_setup(f, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_cmpuint(savevm_state_pending(), ==, layout[0].size + layout[1].size);
    do {
        ret = savevm_state_iterate(f, 1 * MiB, &err);
        g_assert_no_error(err);
        rounds++;
    } while (ret == 0);
    g_assert_cmpint(rounds, >, 1);                  /* max_bytes was honoured */
    g_assert_cmpuint(savevm_state_pending(), ==, 0);

    /* The guest writes after its chunks were sent: dirty phase, which
     * sends the dirty blocks (4 KiB by default) as spans: one block, then
     * two. */
    td_write_drive(src[0], 2 * MiB + 4096, 4096, 200);
    td_write_drive(src[0], 20 * MiB, 8192, 201);
    g_assert_cmpuint(savevm_state_pending(), ==, 3 * DIRTY_BLOCK);
    g_assert_cmpint(savevm_state_iterate(f, 64 * MiB, &err), ==, 1);
    g_assert_no_error(err);
    g_assert_cmpuint(savevm_state_pending(), ==, 0);
    block_migration_stats(&stats);
    g_assert_cmpuint(stats.dirty_sync_count, ==, 1);

    /* And once more while "stopped": save_complete sends it. */
    td_write_drive(src[1], 0, 512, 202);
    g_assert_cmpuint(savevm_state_pending(), ==, DIRTY_BLOCK);
    g_assert_cmpint(savevm_state_complete(f, &err), ==, 0);
    g_assert_no_error(err);

    block_migration_stats(&stats);
    g_test_message("total %" G_GUINT64_FORMAT " transferred %" G_GUINT64_FORMAT
                   " zero %" G_GUINT64_FORMAT " data %" G_GUINT64_FORMAT,
                   stats.total, stats.transferred, stats.zero_blocks, stats.data_blocks);
    g_assert_cmpuint(stats.total, ==, layout[0].size + layout[1].size);
    g_assert_cmpuint(stats.remaining, ==, 0);
    g_assert_cmpuint(stats.transferred, <=, mig_stream_bytes(f));
    g_assert_cmpuint(stats.zero_blocks + stats.data_blocks, ==, 24 + 6 + 3);
    savevm_state_cleanup();
    mig_stream_close(f);
}

static void test_roundtrip(Fixture *fx, gconstpointer data)
{
    bool zero_blocks = GPOINTER_TO_INT(data) & 1;
    BlockDriverState *src[2];
    char *src_path[2], *dst_path[2];
    uint64_t wire_with_data;
    GError *err;

    bdrv_close_all();
    mig_cap_set(MIG_CAP_BLOCK, true);
    mig_cap_set(MIG_CAP_ZERO_BLOCKS, zero_blocks);
    mig_cap_set(MIG_CAP_BLOCK_CHECKSUM, GPOINTER_TO_INT(data) & 2);
    for (int i = 0; i < 2; i++) {
        src_path[i] = drive_path("src", layout[i].id);
        dst_path[i] = drive_path("dst", layout[i].id);
        src[i] = td_open_drive(layout[i].id, src_path[i], layout[i].size);
        td_populate(src[i], layout[i].size, 10 * i);
    }
    save_drives(fx, src);
    bdrv_close_all();

    for (int i = 0; i < 2; i++) {
        BlockDriverState *dst = td_open_drive(layout[i].id, dst_path[i], layout[i].size);
        /* Stale destination data must be overwritten, holes included. */
        td_write_drive(dst, 4 * MiB, CHUNK, 99);
    }
    {
        gsize len;
        g_autofree gchar *stream = NULL;
        GByteArray b = { 0 };

        g_assert_true(g_file_get_contents(fx->stream_path, &stream, &len, NULL));
        wire_with_data = len;
        b.data = (guint8 *)stream;
        b.len = len;
        err = sb_load_file(fx->stream_path, &b);
    }
    g_assert_no_error(err);
    bdrv_close_all();

    for (int i = 0; i < 2; i++) {
        gsize src_len, dst_len;
        uint8_t *s = tf_read_file(src_path[i], &src_len);
        uint8_t *d = tf_read_file(dst_path[i], &dst_len);

        g_assert_cmpmem(s, src_len, d, dst_len);
        g_test_message("%s: source allocated %" G_GINT64_FORMAT ", destination %" G_GINT64_FORMAT,
                       layout[i].id, tf_allocated_bytes(src_path[i]), tf_allocated_bytes(dst_path[i]));
        /* Thin: the source's explicit zero chunk is a hole here. */
        g_assert_cmpint(tf_allocated_bytes(dst_path[i]), <=, tf_allocated_bytes(src_path[i]) - CHUNK);
        g_free(s);
        g_free(d);
        g_unlink(src_path[i]);
        g_unlink(dst_path[i]);
        g_free(src_path[i]);
        g_free(dst_path[i]);
    }
    g_test_message("stream: %" G_GUINT64_FORMAT " bytes", wire_with_data);
    if (zero_blocks) {
        /* Chunks with data: disk0 0, 2, 3, 22, 23; disk1 0, 2, 3, 5; three
         * re-sent dirty chunks: 12 MiB of payload, the rest flags. */
        g_assert_cmpuint(wire_with_data, <, 16 * CHUNK);
    } else {
        /* Every bulk chunk whole but disk1's last, a 1536-byte span; the
         * dirty blocks as spans. */
        g_assert_cmpuint(wire_with_data, >, 29 * CHUNK);
        g_assert_cmpuint(wire_with_data, <, 30 * CHUNK);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    /* Failed migrations are logged as warnings; the tests expect some. */
    g_log_set_always_fatal(G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
    blf_init("test-block-load-XXXXXX");
#define ADD(name, fn, data) \
    g_test_add("/block-load/" name, Fixture, data, blf_setup, fn, blf_teardown)
    ADD("zero-block-punches-hole", test_zero_block_punches_hole, NULL);
    ADD("half-zero-chunk-stays-thin", test_half_zero_chunk_stays_thin, NULL);
    ADD("last-partial-chunk", test_last_partial_chunk, NULL);
    ADD("device-size-larger-destination", test_device_size_larger_destination, NULL);
    ADD("bad/options", test_bad_options, NULL);
    ADD("bad/option-in-part", test_option_in_part, NULL);
    ADD("bad/incremental-needs-backing", test_incremental_needs_backing, NULL);
    ADD("bad/unknown-drive", test_unknown_drive, NULL);
    ADD("bad/unknown-drive-size", test_unknown_drive_size, NULL);
    ADD("bad/offset-beyond", test_offset_beyond, NULL);
    ADD("bad/zero-offset-beyond", test_zero_offset_beyond, NULL);
    ADD("bad/source-larger", test_source_larger, NULL);
    ADD("bad/zero-without-device-block", test_zero_without_device_block, NULL);
    ADD("bad/truncated-payload", test_truncated_payload, NULL);
    ADD("bad/truncated-header", test_truncated_header, NULL);
    ADD("roundtrip/zero-blocks", test_roundtrip, GINT_TO_POINTER(1));
    ADD("roundtrip/no-zero-blocks", test_roundtrip, GINT_TO_POINTER(0));
    ADD("roundtrip/checksum", test_roundtrip, GINT_TO_POINTER(3));
    ADD("checksum/record", test_checksum_record, NULL);
    ADD("checksum/mismatch", test_checksum_mismatch, NULL);
    return blf_run();
}
