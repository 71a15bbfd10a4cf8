/* The "block" section's load side on real sparse raw files: hand-built
 * records apply exactly (holes stay holes), bad records fail with their
 * message and leave the disk alone, and a real save -> file -> load round
 * trip reproduces the source drives. */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <poll.h>
#include <glib/gstdio.h>
#include <string.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "block/block.h"
#include "migration/block-migration.h"
#include "migration/migration.h"
#include "migration/options.h"
#include "migration/savevm.h"
#include "util/sockets.h"
#include "../lib/files.h"
#include "../lib/stream-bytes.h"

#define MiB (1024 * 1024)
#define CHUNK BLK_MIG_CHUNK_SIZE
#define DISK_SIZE (8 * MiB)
#define DIRTY_BLOCK 4096            /* the default dirty-granularity */

static char *tmpdir;

typedef struct Fixture {
    BlockDriverState *disk;     /* "disk0", DISK_SIZE, sparse */
    char *disk_path;
    char *stream_path;
} Fixture;

static BlockDriverState *open_drive(const char *id, const char *path, uint64_t size)
{
    BlockOptions opts = {
        .id = id, .filename = path, .format = "raw", .size = size, .create = true,
    };
    GError *err = NULL;
    BlockDriverState *bs = bdrv_open(&opts, &err);

    g_assert_no_error(err);
    g_assert_nonnull(bs);
    return bs;
}

static void fixture_setup(Fixture *fx, gconstpointer data)
{
    fx->disk_path = g_build_filename(tmpdir, "disk0.raw", NULL);
    fx->stream_path = g_build_filename(tmpdir, "stream", NULL);
    fx->disk = open_drive("disk0", fx->disk_path, DISK_SIZE);
    block_migration_register();
}

static void fixture_teardown(Fixture *fx, gconstpointer data)
{
    savevm_unregister_all();
    bdrv_close_all();
    g_unlink(fx->disk_path);
    g_unlink(fx->stream_path);
    g_free(fx->disk_path);
    g_free(fx->stream_path);
    for (int i = 0; i < MIG_CAP__MAX; i++) {
        mig_cap_set(i, i == MIG_CAP_RETURN_PATH);
    }
}

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

static void fill(uint8_t *buf, size_t len, uint8_t seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(seed + i * 7 + (i >> 12)) | 1;   /* never zero */
    }
}

static void write_drive(BlockDriverState *bs, uint64_t off, size_t len, uint8_t seed)
{
    uint8_t *buf = g_malloc(len);

    fill(buf, len, seed);
    g_assert_cmpint(bdrv_pwrite(bs, off, buf, len, 0), ==, 0);
    g_assert_cmpint(bdrv_flush(bs), ==, 0);
    g_free(buf);
}

/* ---- records applied ---- */

static void test_zero_block_punches_hole(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();
    int64_t before, after;
    uint8_t *contents;
    gsize len;
    GError *err;

    write_drive(fx->disk, 1 * MiB, CHUNK, 1);
    write_drive(fx->disk, 3 * MiB, CHUNK, 2);
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

    write_drive(fx->disk, 2 * MiB, CHUNK, 9);       /* stale data to replace */
    for (size_t blk = 1; blk < CHUNK / 4096; blk += 2) {
        fill(chunk + blk * 4096, 4096, blk);
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
    g_autofree char *path = g_build_filename(tmpdir, "small.raw", NULL);
    g_autoptr(GByteArray) b = sb_block_stream_begin();
    uint8_t *chunk = g_malloc(CHUNK);
    uint8_t *contents;
    gsize len;
    GError *err;

    open_drive("small", path, CHUNK + CHUNK / 2 + 512);
    fill(chunk, CHUNK, 5);
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

static void assert_rejected(Fixture *fx, GByteArray *b, const char *expected)
{
    gsize len_before, len_after;
    uint8_t *before, *after;
    GError *err;

    write_drive(fx->disk, 0, CHUNK, 3);
    write_drive(fx->disk, 7 * MiB, CHUNK, 4);
    before = tf_read_file(fx->disk_path, &len_before);
    err = sb_load_file(fx->stream_path, b);
    g_assert_nonnull(err);
    g_test_message("error: %s", err->message);
    if (!strstr(err->message, expected)) {
        g_error("expected '%s' in '%s'", expected, err->message);
    }
    after = tf_read_file(fx->disk_path, &len_after);
    g_assert_cmpmem(before, len_before, after, len_after);
    g_free(before);
    g_free(after);
    g_error_free(err);
}

static void test_unknown_flags(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();
    uint8_t *zeros = g_malloc0(CHUNK);
    g_autofree char *expected = NULL;

    expected = g_strdup_printf("block migration: unknown flags 0x100 in record at "
                               "stream offset %u", b->len);
    sb_put64(b, 0x100 | BLK_MIG_FLAG_DEVICE_BLOCK);
    sb_put_name(b, "disk0");
    g_byte_array_append(b, zeros, CHUNK);
    sb_block_stream_end(b);
    assert_rejected(fx, b, expected);
    g_free(zeros);
}

static void test_unknown_drive(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();

    rec_zero(b, "nosuch", 0);
    sb_block_stream_end(b);
    assert_rejected(fx, b, "block migration: unknown drive 'nosuch'");
}

static void test_unknown_drive_size(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();

    rec_size(b, "x", DISK_SIZE);
    sb_block_stream_end(b);
    assert_rejected(fx, b, "block migration: unknown drive 'x'");
}

static void test_offset_beyond(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();
    uint8_t *chunk = g_malloc(CHUNK);

    fill(chunk, CHUNK, 1);
    rec_data(b, "disk0", DISK_SIZE, chunk);
    sb_block_stream_end(b);
    assert_rejected(fx, b, "block migration: drive 'disk0': chunk at offset 8388608 "
                           "is beyond the destination size 8388608");
    g_free(chunk);
}

static void test_zero_offset_beyond(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();

    rec_zero(b, "disk0", 1ULL << 40);
    sb_block_stream_end(b);
    assert_rejected(fx, b, "block migration: drive 'disk0': chunk at offset 1099511627776 "
                           "is beyond the destination size 8388608");
}

static void test_source_larger(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();

    rec_size(b, "disk0", 2 * DISK_SIZE);
    rec_zero(b, "disk0", 0);
    sb_block_stream_end(b);
    assert_rejected(fx, b, "block migration: drive 'disk0' is 16777216 bytes at the "
                           "source but only 8388608 bytes at the destination");
}

static void test_zero_without_device_block(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();

    sb_put64(b, BLK_MIG_FLAG_ZERO_BLOCK);
    sb_block_stream_end(b);
    assert_rejected(fx, b, "ZERO_BLOCK flag without DEVICE_BLOCK");
}

/* A data record cut short: nothing of it may reach the disk. */
static void test_truncated_payload(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();
    uint8_t *chunk = g_malloc(CHUNK);
    g_autofree char *expected = NULL;

    fill(chunk, CHUNK, 77);
    sb_put64(b, 0 | BLK_MIG_FLAG_DEVICE_BLOCK);
    sb_put_name(b, "disk0");
    g_byte_array_append(b, chunk, CHUNK / 2);
    expected = g_strdup_printf("unexpected end of stream at byte %u", b->len);
    assert_rejected(fx, b, expected);
    assert_rejected(fx, b, "block migration: reading the data of the record at stream offset 27");
    g_free(chunk);
}

static void test_truncated_header(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) b = sb_block_stream_begin();

    sb_put32(b, 0);                                    /* half a be64 */
    assert_rejected(fx, b, "block migration: reading record at stream offset 27: "
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

/* Scattered data: small writes, a whole chunk, explicitly written zeros
 * (allocated but zero: must arrive as a hole), data in the last sector. */
static void populate(BlockDriverState *bs, uint64_t size, uint8_t seed)
{
    uint8_t *zeros = g_malloc0(CHUNK);

    write_drive(bs, 4096, 4096, seed);
    write_drive(bs, 3 * MiB + 512, 512, seed + 1);
    write_drive(bs, 2 * MiB, CHUNK, seed + 2);
    g_assert_cmpint(bdrv_pwrite(bs, 4 * MiB, zeros, CHUNK, 0), ==, 0);
    write_drive(bs, size - 512, 512, seed + 3);
    if (size > 16 * MiB) {
        write_drive(bs, 16 * MiB + 12345 * 512, 70000, seed + 4);
    }
    g_free(zeros);
}

static char *drive_path(const char *side, const char *id)
{
    g_autofree char *name = g_strdup_printf("%s-%s.raw", side, id);
    return g_build_filename(tmpdir, name, NULL);
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
    write_drive(src[0], 2 * MiB + 4096, 4096, 200);
    write_drive(src[0], 20 * MiB, 8192, 201);
    g_assert_cmpuint(savevm_state_pending(), ==, 3 * DIRTY_BLOCK);
    g_assert_cmpint(savevm_state_iterate(f, 64 * MiB, &err), ==, 1);
    g_assert_no_error(err);
    g_assert_cmpuint(savevm_state_pending(), ==, 0);
    block_migration_stats(&stats);
    g_assert_cmpuint(stats.dirty_sync_count, ==, 1);

    /* And once more while "stopped": save_complete sends it. */
    write_drive(src[1], 0, 512, 202);
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
    bool zero_blocks = GPOINTER_TO_INT(data);
    BlockDriverState *src[2];
    char *src_path[2], *dst_path[2];
    uint64_t wire_with_data;
    GError *err;

    bdrv_close_all();
    mig_cap_set(MIG_CAP_BLOCK, true);
    mig_cap_set(MIG_CAP_ZERO_BLOCKS, zero_blocks);
    for (int i = 0; i < 2; i++) {
        src_path[i] = drive_path("src", layout[i].id);
        dst_path[i] = drive_path("dst", layout[i].id);
        src[i] = open_drive(layout[i].id, src_path[i], layout[i].size);
        populate(src[i], layout[i].size, 10 * i);
    }
    save_drives(fx, src);
    bdrv_close_all();

    for (int i = 0; i < 2; i++) {
        BlockDriverState *dst = open_drive(layout[i].id, dst_path[i], layout[i].size);
        /* Stale destination data must be overwritten, holes included. */
        write_drive(dst, 4 * MiB, CHUNK, 99);
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

/* ---- live migration over a socket to a second process ----
 *
 * The destination must be another process (drive ids are global), so the
 * test binary re-runs itself with DEST_ENV set: it then opens its own
 * drive, waits for the migration on a UNIX socket and prints the outcome
 * as "status=...\nerror=...\n". */

#define DEST_ENV "TEST_BLOCK_LOAD_DESTINATION"
#define LIVE_DISK_SIZE (32 * MiB)

static int run_destination(const char *spec)
{
    /* spec: "DIR;URI;SIZE" */
    g_auto(GStrv) parts = g_strsplit(spec, ";", 3);
    g_autofree char *path = g_build_filename(parts[0], "dst-disk0.raw", NULL);
    MigrationInfo info;
    GError *err = NULL;
    gint64 deadline = g_get_monotonic_time() + 120 * G_USEC_PER_SEC;

    migration_init();
    open_drive("disk0", path, g_ascii_strtoull(parts[2], NULL, 10));
    if (!migration_incoming_start(parts[1], &err)) {
        printf("status=start-failed\nerror=%s\n", err->message);
        return 1;
    }
    /* Wait until the incoming thread has answered the source too. */
    do {
        g_usleep(10 * 1000);
        migration_query(&info);
        migration_info_clear(&info);
    } while ((migration_incoming_pending() || info.status == MIG_STATUS_SETUP) &&
             g_get_monotonic_time() < deadline);
    migration_query(&info);
    printf("status=%s\nerror=%s\n", mig_status_name(info.status),
           info.error_desc ? info.error_desc : "");
    migration_info_clear(&info);
    migration_shutdown();
    bdrv_close_all();
    return 0;
}

/* The source's guest: random 4 KiB writes into a 4 MiB working set (so the
 * dirty phase converges under the downtime limit) until the migration
 * stops it. */
typedef struct Guest {
    BlockDriverState *bs;
    GThread *thread;
    gint stop;
    gint running;
    gint writes;
    GMutex lock;
    GCond stopped;
    GArray *statuses_at_finish;   /* migration status seen by source_finished */
    int finished_calls;
    bool finished_success;
    bool finished_was_running;
} Guest;

static Guest guest;

static gpointer guest_thread(gpointer opaque)
{
    GRand *rand = g_rand_new_with_seed(42);
    uint8_t buf[4096];

    while (!g_atomic_int_get(&guest.stop)) {
        uint64_t off = 8 * MiB + g_rand_int_range(rand, 0, 4 * MiB / 4096) * 4096ULL;
        fill(buf, sizeof(buf), g_atomic_int_add(&guest.writes, 1));
        g_assert_cmpint(bdrv_pwrite(guest.bs, off, buf, sizeof(buf), 0), ==, 0);
        g_usleep(3000);
    }
    g_rand_free(rand);
    return NULL;
}

static void guest_start(BlockDriverState *bs)
{
    guest.bs = bs;
    g_atomic_int_set(&guest.stop, 0);
    g_atomic_int_set(&guest.running, 1);
    guest.thread = g_thread_new("guest", guest_thread, NULL);
}

static void guest_stop(void)
{
    if (guest.thread) {
        g_atomic_int_set(&guest.stop, 1);
        g_thread_join(guest.thread);
        guest.thread = NULL;
    }
    g_atomic_int_set(&guest.running, 0);
}

static void vm_stop_for_switchover(void *opaque)
{
    guest_stop();
}

static void vm_source_finished(void *opaque, bool success, bool was_running)
{
    MigrationInfo info;

    migration_query(&info);
    g_array_append_val(guest.statuses_at_finish, info.status);
    migration_info_clear(&info);
    guest.finished_calls++;
    guest.finished_success = success;
    guest.finished_was_running = was_running;
}

static bool vm_guest_is_running(void *opaque)
{
    return g_atomic_int_get(&guest.running);
}

static const MigrationVmOps test_vm_ops = {
    .stop_for_switchover = vm_stop_for_switchover,
    .source_finished = vm_source_finished,
    .guest_is_running = vm_guest_is_running,
};

typedef struct Destination {
    GPid pid;
    int out_fd;
    char *uri;
    char *disk_path;
} Destination;

/* Run the destination on URI (a unix: socket is waited for). */
static void destination_spawn(Destination *d, const char *uri, uint64_t size)
{
    g_autofree char *self = g_file_read_link("/proc/self/exe", NULL);
    g_autofree char *spec = NULL;
    char *argv[] = { self, NULL };
    char **envp;
    GError *err = NULL;
    gint64 deadline = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;

    d->uri = g_strdup(uri);
    d->disk_path = g_build_filename(tmpdir, "dst-disk0.raw", NULL);
    spec = g_strdup_printf("%s;%s;%" G_GUINT64_FORMAT, tmpdir, d->uri, size);
    envp = g_environ_setenv(g_get_environ(), DEST_ENV, spec, TRUE);
    g_assert_true(g_spawn_async_with_pipes(NULL, argv, envp, G_SPAWN_DO_NOT_REAP_CHILD,
                                           NULL, NULL, &d->pid, NULL, &d->out_fd, NULL, &err));
    g_assert_no_error(err);
    g_strfreev(envp);
    while (g_str_has_prefix(uri, "unix:") && !g_file_test(uri + 5, G_FILE_TEST_EXISTS)) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(10 * 1000);
    }
}

static void destination_start(Destination *d, uint64_t size)
{
    g_autofree char *sock = g_build_filename(tmpdir, "mig.sock", NULL);
    g_autofree char *uri = g_strdup_printf("unix:%s", sock);

    g_unlink(sock);
    destination_spawn(d, uri, size);
}

/* Wait for the destination to exit; returns its report. */
static char *destination_finish(Destination *d)
{
    GString *out = g_string_new(NULL);
    char buf[256];
    ssize_t n;
    int status;

    while ((n = read(d->out_fd, buf, sizeof(buf))) > 0) {
        g_string_append_len(out, buf, n);
    }
    close(d->out_fd);
    g_assert_cmpint(waitpid(d->pid, &status, 0), ==, d->pid);
    g_spawn_close_pid(d->pid);
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    g_test_message("destination: %s", out->str);
    return g_string_free(out, FALSE);
}

static void destination_clear(Destination *d)
{
    if (g_str_has_prefix(d->uri, "unix:")) {
        g_unlink(d->uri + 5);       /* the listener leaves its socket file */
    }
    g_free(d->uri);
    g_unlink(d->disk_path);
    g_free(d->disk_path);
}

static MigrationInfo wait_for_final_status(int timeout_s)
{
    gint64 deadline = g_get_monotonic_time() + timeout_s * G_USEC_PER_SEC;
    MigrationInfo info;

    for (;;) {
        migration_query(&info);
        if (info.status == MIG_STATUS_COMPLETED || info.status == MIG_STATUS_FAILED ||
            info.status == MIG_STATUS_CANCELLED) {
            return info;
        }
        migration_info_clear(&info);
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(20 * 1000);
    }
}

static BlockDriverState *live_source(Fixture *fx, char **path)
{
    BlockDriverState *bs;

    bdrv_close_all();
    *path = drive_path("src", "disk0");
    bs = open_drive("disk0", *path, LIVE_DISK_SIZE);
    populate(bs, LIVE_DISK_SIZE, 1);
    write_drive(bs, 8 * MiB, 6 * MiB, 2);
    mig_cap_set(MIG_CAP_BLOCK, true);
    mig_cap_set(MIG_CAP_ZERO_BLOCKS, true);
    guest.statuses_at_finish = g_array_new(false, false, sizeof(MigrationStatus));
    guest.finished_calls = 0;
    migration_set_vm_ops(&test_vm_ops);
    return bs;
}

static void set_bandwidth(uint64_t bytes_per_sec)
{
    MigrationParametersUpdate u = { .has_max_bandwidth = true };
    GError *err = NULL;

    u.p.max_bandwidth = bytes_per_sec;
    g_assert_true(mig_params_apply(&u, &err));
    g_assert_no_error(err);
}

static void live_cleanup(char *src_path)
{
    static const MigrationVmOps no_ops;

    migration_shutdown();
    migration_set_vm_ops(&no_ops);
    g_array_unref(guest.statuses_at_finish);
    set_bandwidth(MIG_DEFAULT_MAX_BANDWIDTH);
    bdrv_close_all();
    g_unlink(src_path);
    g_free(src_path);
}

/* A guest writes during the whole migration; the destination ends equal to
 * the source at the moment the guest was stopped. */
static void test_live_migration(Fixture *fx, gconstpointer data)
{
    char *src_path;
    BlockDriverState *bs = live_source(fx, &src_path);
    Destination dest;
    MigrationInfo info;
    GError *err = NULL;
    g_autofree char *report = NULL;
    gsize src_len, dst_len;
    uint8_t *s, *d;

    destination_start(&dest, LIVE_DISK_SIZE);
    set_bandwidth(40 * MiB);
    guest_start(bs);
    g_assert_true(migration_start(dest.uri, &err));
    g_assert_no_error(err);
    g_assert_true(migration_is_active());
    /* A second one is refused while this one runs. */
    g_assert_false(migration_start(dest.uri, &err));
    g_assert_error(err, g_quark_from_static_string("blkmig-migration-error-quark"), 0);
    g_assert_cmpstr(err->message, ==, "There's a migration process in progress");
    g_clear_error(&err);

    info = wait_for_final_status(120);
    g_test_message("status %s (%s) after %" G_GINT64_FORMAT " ms, %" G_GUINT64_FORMAT
                   " bytes sent", mig_status_name(info.status),
                   info.error_desc ? info.error_desc : "no error", info.total_time,
                   info.disk.transferred);
    g_assert_cmpstr(mig_status_name(info.status), ==, "completed");
    g_assert_null(info.error_desc);
    g_assert_true(info.has_times && info.has_disk);
    g_test_message("total %" G_GINT64_FORMAT " ms, setup %" G_GINT64_FORMAT
                   " ms, downtime %" G_GINT64_FORMAT " ms, %d guest writes, %"
                   G_GUINT64_FORMAT " dirty passes, %.1f Mbit/s",
                   info.total_time, info.setup_time, info.downtime,
                   g_atomic_int_get(&guest.writes), info.disk.dirty_sync_count, info.disk.mbps);
    g_assert_cmpint(info.total_time, >=, info.setup_time);
    g_assert_cmpint(info.downtime, <=, info.total_time);
    g_assert_cmpuint(info.disk.total, ==, LIVE_DISK_SIZE);
    g_assert_cmpuint(info.disk.remaining, ==, 0);
    g_assert_cmpuint(info.disk.zero_blocks, >, 0);
    g_assert_cmpfloat(info.disk.mbps, >, 0);
    migration_info_clear(&info);
    /* The guest was stopped for switchover and the outcome reported
     * before the status said completed. */
    g_assert_false(vm_guest_is_running(NULL));
    g_assert_cmpint(guest.finished_calls, ==, 1);
    g_assert_true(guest.finished_success);
    g_assert_true(guest.finished_was_running);
    g_assert_cmpint(g_array_index(guest.statuses_at_finish, MigrationStatus, 0), !=,
                    MIG_STATUS_COMPLETED);

    report = destination_finish(&dest);
    g_assert_cmpstr(report, ==, "status=completed\nerror=\n");
    s = tf_read_file(src_path, &src_len);
    d = tf_read_file(dest.disk_path, &dst_len);
    g_assert_cmpmem(s, src_len, d, dst_len);
    g_free(s);
    g_free(d);
    destination_clear(&dest);
    live_cleanup(src_path);
}

/* The destination rejects the stream: the source fails with the
 * destination's own words and its guest never stopped. */
static void test_live_destination_error(Fixture *fx, gconstpointer data)
{
    char *src_path;
    BlockDriverState *bs = live_source(fx, &src_path);
    Destination dest;
    MigrationInfo info;
    GError *err = NULL;
    g_autofree char *report = NULL;
    const char *dest_msg = "block migration: drive 'disk0' is 33554432 bytes at the "
                           "source but only 16777216 bytes at the destination";
    g_autofree char *src_msg = g_strdup_printf("destination failed: %s", dest_msg);

    destination_start(&dest, LIVE_DISK_SIZE / 2);
    guest_start(bs);
    g_assert_true(migration_start(dest.uri, &err));
    g_assert_no_error(err);
    info = wait_for_final_status(60);
    g_assert_cmpstr(mig_status_name(info.status), ==, "failed");
    g_assert_cmpstr(info.error_desc, ==, src_msg);
    migration_info_clear(&info);
    g_assert_cmpint(guest.finished_calls, ==, 1);
    g_assert_false(guest.finished_success);
    g_assert_false(guest.finished_was_running);     /* never stopped it */
    g_assert_true(vm_guest_is_running(NULL));
    guest_stop();

    report = destination_finish(&dest);
    g_assert_true(g_str_has_prefix(report, "status=failed\nerror="));
    g_assert_nonnull(strstr(report, dest_msg));
    destination_clear(&dest);
    live_cleanup(src_path);
}

/* Cancel in the middle of a slow migration: cancelled quickly, guest still
 * running here, destination failed. */
static void test_live_cancel(Fixture *fx, gconstpointer data)
{
    char *src_path;
    BlockDriverState *bs = live_source(fx, &src_path);
    Destination dest;
    MigrationInfo info;
    GError *err = NULL;
    g_autofree char *report = NULL;
    gint64 start;

    destination_start(&dest, LIVE_DISK_SIZE);
    set_bandwidth(2 * MiB);                         /* ~4 s for the data */
    guest_start(bs);
    g_assert_true(migration_start(dest.uri, &err));
    g_assert_no_error(err);
    g_usleep(500 * 1000);
    migration_query(&info);
    g_assert_cmpstr(mig_status_name(info.status), ==, "active");
    g_assert_cmpuint(info.disk.transferred, >, 0);
    g_assert_cmpuint(info.disk.remaining, >, 0);
    migration_info_clear(&info);

    start = g_get_monotonic_time();
    migration_cancel();
    info = wait_for_final_status(10);
    g_assert_cmpint(g_get_monotonic_time() - start, <, G_USEC_PER_SEC);
    g_assert_cmpstr(mig_status_name(info.status), ==, "cancelled");
    migration_info_clear(&info);
    g_assert_cmpint(guest.finished_calls, ==, 1);
    g_assert_false(guest.finished_success);
    g_assert_true(vm_guest_is_running(NULL));
    guest_stop();

    report = destination_finish(&dest);
    g_assert_true(g_str_has_prefix(report, "status=failed\n"));
    destination_clear(&dest);
    live_cleanup(src_path);
}

static void test_connect_refused(Fixture *fx, gconstpointer data)
{
    g_autofree char *sock = g_build_filename(tmpdir, "nobody.sock", NULL);
    g_autofree char *uri = g_strdup_printf("unix:%s", sock);
    GError *err = NULL;

    g_assert_false(migration_start(uri, &err));
    g_assert_nonnull(err);
    g_test_message("error: %s", err->message);
    g_assert_nonnull(strstr(err->message, sock));
    g_error_free(err);
    g_assert_false(migration_is_active());
}

/* Saving to a file stops the guest for good; loading the file elsewhere
 * gives the same disk. */
static void test_file_migration(Fixture *fx, gconstpointer data)
{
    char *src_path;
    BlockDriverState *bs = live_source(fx, &src_path);
    g_autofree char *file = g_build_filename(tmpdir, "saved.stream", NULL);
    g_autofree char *uri = g_strdup_printf("file:%s", file);
    g_autofree char *report = NULL;
    Destination dest;
    MigrationInfo info;
    GError *err = NULL;
    gsize src_len, dst_len;
    uint8_t *s, *d;

    set_bandwidth(0);
    guest_start(bs);
    g_assert_true(migration_start(uri, &err));
    g_assert_no_error(err);
    info = wait_for_final_status(60);
    g_assert_cmpstr(mig_status_name(info.status), ==, "completed");
    migration_info_clear(&info);
    g_assert_true(guest.finished_success);
    g_assert_true(guest.finished_was_running);
    g_assert_false(vm_guest_is_running(NULL));

    destination_spawn(&dest, uri, LIVE_DISK_SIZE);
    report = destination_finish(&dest);
    g_assert_cmpstr(report, ==, "status=completed\nerror=\n");
    s = tf_read_file(src_path, &src_len);
    d = tf_read_file(dest.disk_path, &dst_len);
    g_assert_cmpmem(s, src_len, d, dst_len);
    g_free(s);
    g_free(d);
    destination_clear(&dest);
    g_unlink(file);
    live_cleanup(src_path);
}

/* A destination that takes everything but never confirms: the source
 * fails after switchover, and since the destination may have started the
 * guest, the source guest must not run again (no split brain). */
static gpointer silent_destination(gpointer opaque)
{
    int listen_fd = GPOINTER_TO_INT(opaque);
    int fd = socket_accept(listen_fd);
    char *buf = g_malloc(1 << 16);
    struct pollfd pfd = { .fd = fd, .events = POLLIN };

    close(listen_fd);
    /* Read until the source has been quiet for a while (it then waits for
     * the acknowledgement), then hang up. */
    while (poll(&pfd, 1, 500) > 0 && read(fd, buf, 1 << 16) > 0) {
    }
    close(fd);
    g_free(buf);
    return NULL;
}

static void test_missing_ack(Fixture *fx, gconstpointer data)
{
    char *src_path;
    BlockDriverState *bs = live_source(fx, &src_path);
    g_autofree char *sock = g_build_filename(tmpdir, "silent.sock", NULL);
    g_autofree char *uri = g_strdup_printf("unix:%s", sock);
    Endpoint ep;
    GThread *dest;
    MigrationInfo info;
    GError *err = NULL;

    g_assert_true(endpoint_parse(uri, 1u << ENDPOINT_UNIX, &ep, &err));
    dest = g_thread_new("silent", silent_destination,
                        GINT_TO_POINTER(endpoint_listen(&ep, &err)));
    g_assert_no_error(err);
    endpoint_clear(&ep);
    set_bandwidth(0);
    guest_start(bs);
    g_assert_true(migration_start(uri, &err));
    g_assert_no_error(err);
    info = wait_for_final_status(60);
    g_assert_cmpstr(mig_status_name(info.status), ==, "failed");
    g_assert_cmpstr(info.error_desc, ==,
                    "destination closed the connection without confirming the migration; "
                    "the destination may be running the guest, so the source guest "
                    "stays stopped");
    migration_info_clear(&info);
    g_thread_join(dest);
    g_assert_cmpint(guest.finished_calls, ==, 1);
    g_assert_false(guest.finished_success);
    g_assert_false(guest.finished_was_running);
    g_unlink(sock);
    live_cleanup(src_path);
}

int main(int argc, char **argv)
{
    int ret;

    if (g_getenv(DEST_ENV)) {
        return run_destination(g_getenv(DEST_ENV));
    }
    g_test_init(&argc, &argv, NULL);
    /* Failed migrations are logged as warnings; the tests expect some. */
    g_log_set_always_fatal(G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
    tmpdir = g_dir_make_tmp("test-block-load-XXXXXX", NULL);
    g_assert_nonnull(tmpdir);
#define ADD(name, fn, data) \
    g_test_add("/block-load/" name, Fixture, data, fixture_setup, fn, fixture_teardown)
    ADD("zero-block-punches-hole", test_zero_block_punches_hole, NULL);
    ADD("half-zero-chunk-stays-thin", test_half_zero_chunk_stays_thin, NULL);
    ADD("last-partial-chunk", test_last_partial_chunk, NULL);
    ADD("device-size-larger-destination", test_device_size_larger_destination, NULL);
    ADD("bad/unknown-flags", test_unknown_flags, NULL);
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
    ADD("migrate/live", test_live_migration, NULL);
    ADD("migrate/destination-error", test_live_destination_error, NULL);
    ADD("migrate/cancel", test_live_cancel, NULL);
    ADD("migrate/connect-refused", test_connect_refused, NULL);
    ADD("migrate/file", test_file_migration, NULL);
    ADD("migrate/missing-ack", test_missing_ack, NULL);
    ret = g_test_run();
    g_rmdir(tmpdir);
    g_free(tmpdir);
    return ret;
}
