/* The raw driver through the generic block layer, on real sparse files. */
#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/block.h"
#include "block/dirty-bitmap.h"
#include "util/size.h"
#include "util/zero.h"

#define DRIVE_SIZE (64 * MiB)

/* The test is linked with -Wl,--wrap=lseek (Makefile), so every lseek of
 * the block layer comes through here and can be counted. */
off_t __real_lseek(int fd, off_t off, int whence);
off_t __wrap_lseek(int fd, off_t off, int whence);
static unsigned lseek_calls;

off_t __wrap_lseek(int fd, off_t off, int whence)
{
    g_atomic_int_inc(&lseek_calls);
    return __real_lseek(fd, off, whence);
}

typedef struct Fixture {
    char *dir;
    char *path;
} Fixture;

static void fixture_setup(Fixture *f, gconstpointer data)
{
    GError *err = NULL;
    f->dir = g_dir_make_tmp("test-raw-XXXXXX", &err);
    g_assert_no_error(err);
    f->path = g_build_filename(f->dir, "disk.raw", NULL);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    bdrv_close_all();
    g_assert_null(bdrv_list());
    g_unlink(f->path);
    g_assert_cmpint(g_rmdir(f->dir), ==, 0);
    g_free(f->path);
    g_free(f->dir);
}

typedef struct Mode {
    bool cache_none;
    bool aio_native;
} Mode;

/* Open (creating) the fixture's file; NULL with a skip when O_DIRECT is
 * refused by the file system. */
static BlockDriverState *open_drive(Fixture *f, const char *id, uint64_t size, const Mode *mode)
{
    BlockOptions opts = {
        .id = id, .filename = f->path, .size = size, .create = true,
        .cache_none = mode && mode->cache_none, .aio_native = mode && mode->aio_native,
    };
    GError *err = NULL;
    BlockDriverState *bs = bdrv_open(&opts, &err);
    if (!bs && opts.cache_none && g_error_matches(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED)) {
        g_test_skip(err->message);
        g_error_free(err);
        return NULL;
    }
    g_assert_no_error(err);
    g_assert_nonnull(bs);
    return bs;
}

static uint64_t file_blocks(const char *path)
{
    struct stat st;
    g_assert_cmpint(stat(path, &st), ==, 0);
    return (uint64_t)st.st_blocks;
}

static void fill_pattern(uint8_t *buf, size_t len, uint64_t off, uint8_t seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)((off + i) * 7 + seed) | 1;      /* never zero */
    }
}

static void write_pattern(BlockDriverState *bs, uint64_t off, size_t len, uint8_t seed)
{
    uint8_t *buf = bdrv_buf_alloc(bs, len);
    fill_pattern(buf, len, off, seed);
    g_assert_cmpint(bdrv_pwrite(bs, off, buf, len, 0), ==, 0);
    bdrv_buf_free(buf);
}

static void assert_reads_zero(BlockDriverState *bs, uint64_t off, size_t len)
{
    uint8_t *buf = bdrv_buf_alloc(bs, len);
    memset(buf, 0xaa, len);
    g_assert_cmpint(bdrv_pread(bs, off, buf, len), ==, 0);
    g_assert_true(buffer_is_zero(buf, len));
    bdrv_buf_free(buf);
}

/* ---- Data runs and holes ---- */

typedef struct Run {
    uint64_t off, len;
} Run;

/* Data runs reported by bdrv_block_status over the whole drive. */
static GArray *status_data_runs(BlockDriverState *bs)
{
    GArray *runs = g_array_new(FALSE, FALSE, sizeof(Run));
    uint64_t size = (uint64_t)bdrv_getlength(bs);
    for (uint64_t off = 0; off < size;) {
        uint64_t pnum = 0;
        bool data = false;
        g_assert_cmpint(bdrv_block_status(bs, off, size - off, &pnum, &data), ==, 0);
        g_assert_cmpuint(pnum, >, 0);
        g_assert_cmpuint(pnum, <=, size - off);
        if (data) {
            Run *last = runs->len ? &g_array_index(runs, Run, runs->len - 1) : NULL;
            if (last && last->off + last->len == off) {
                last->len += pnum;
            } else {
                Run r = { off, pnum };
                g_array_append_val(runs, r);
            }
        }
        off += pnum;
    }
    return runs;
}

/* The same, straight from the file with SEEK_DATA / SEEK_HOLE. */
static GArray *lseek_data_runs(const char *path)
{
    GArray *runs = g_array_new(FALSE, FALSE, sizeof(Run));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);
    off_t size = lseek(fd, 0, SEEK_END);
    off_t off = 0;
    while (off < size) {
        off_t data = lseek(fd, off, SEEK_DATA);
        if (data < 0) {
            g_assert_cmpint(errno, ==, ENXIO);
            break;
        }
        off_t hole = lseek(fd, data, SEEK_HOLE);
        g_assert_cmpint(hole, >, data);
        Run r = { (uint64_t)data, (uint64_t)(hole - data) };
        g_array_append_val(runs, r);
        off = hole;
    }
    close(fd);
    return runs;
}

static void assert_runs(GArray *runs, const Run *expect, size_t n)
{
    for (guint i = 0; i < runs->len; i++) {
        Run *r = &g_array_index(runs, Run, i);
        g_test_message("data run %u: %" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT, i, r->off, r->len);
    }
    g_assert_cmpuint(runs->len, ==, n);
    for (size_t i = 0; i < n; i++) {
        g_assert_cmpuint(g_array_index(runs, Run, i).off, ==, expect[i].off);
        g_assert_cmpuint(g_array_index(runs, Run, i).len, ==, expect[i].len);
    }
}

static const Run written[] = {
    { 0, 4 * KiB },
    { 8 * MiB, 64 * KiB },
    { 32 * MiB, 1 * MiB },
    { DRIVE_SIZE - 4 * KiB, 4 * KiB },
};

static void write_runs(BlockDriverState *bs)
{
    for (size_t i = 0; i < G_N_ELEMENTS(written); i++) {
        write_pattern(bs, written[i].off, written[i].len, (uint8_t)i);
    }
}

static void test_create_sparse(Fixture *f, gconstpointer data)
{
    /* A new file: sparse, exactly size= bytes. */
    BlockDriverState *bs = open_drive(f, "d0", DRIVE_SIZE, NULL);

    g_assert_cmpint(bdrv_getlength(bs), ==, DRIVE_SIZE);
    g_assert_cmpuint(file_blocks(f->path), ==, 0);
    g_assert_cmpint(bdrv_allocated_bytes(bs), ==, 0);
    assert_reads_zero(bs, 0, 64 * KiB);
    GArray *runs = status_data_runs(bs);
    g_assert_cmpuint(runs->len, ==, 0);
    g_array_unref(runs);
    BdrvFileId id;
    g_assert_true(bdrv_created_file(bs, &id));
}

/* create over a file holding data is refused and leaves it as it was;
 * overwrite erases it and makes a new one. */
static void test_create_existing(Fixture *f, gconstpointer data)
{
    GError *err = NULL;
    BlockOptions opts = { .id = "d0", .filename = f->path, .size = MiB, .create = true };
    g_assert_true(g_file_set_contents(f->path, "old contents", -1, NULL));

    g_assert_null(bdrv_open(&opts, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_EXISTS);
    g_assert_nonnull(strstr(err->message, f->path));
    g_clear_error(&err);
    g_autofree char *text = NULL;
    g_assert_true(g_file_get_contents(f->path, &text, NULL, NULL));
    g_assert_cmpstr(text, ==, "old contents");

    opts.overwrite = true;
    BlockDriverState *bs = bdrv_open(&opts, &err);
    g_assert_no_error(err);
    g_assert_cmpint(bdrv_getlength(bs), ==, MiB);
    assert_reads_zero(bs, 0, 64 * KiB);
    BdrvFileId id;
    g_assert_false(bdrv_created_file(bs, &id));     /* erased, not made */
}

/* An empty file is grown; overwrite needs create. */
static void test_create_empty(Fixture *f, gconstpointer data)
{
    GError *err = NULL;
    BlockOptions opts = { .id = "d0", .filename = f->path, .size = MiB, .overwrite = true };
    g_assert_true(g_file_set_contents(f->path, "", 0, NULL));

    g_assert_null(bdrv_open(&opts, &err));
    g_assert_nonnull(strstr(err->message, "overwrite=on needs create=on"));
    g_clear_error(&err);

    opts.overwrite = false;
    opts.create = true;
    BlockDriverState *bs = bdrv_open(&opts, &err);
    g_assert_no_error(err);
    g_assert_cmpint(bdrv_getlength(bs), ==, MiB);
    BdrvFileId id;
    g_assert_false(bdrv_created_file(bs, &id));
}

/* A file made by an open that then fails goes again; a file put in its
 * place (while the drive holds the original, so the inode is not reused)
 * is never removed in its name. */
static void test_create_undo(Fixture *f, gconstpointer data)
{
    GError *err = NULL;
    BlockOptions opts = { .id = "d0", .filename = f->path, .size = (uint64_t)INT64_MAX + 1,
                          .create = true };

    g_assert_null(bdrv_open(&opts, &err));          /* ftruncate: too large */
    g_clear_error(&err);
    g_assert_false(g_file_test(f->path, G_FILE_TEST_EXISTS));

    BlockDriverState *bs = open_drive(f, "d0", MiB, NULL);
    BdrvFileId id;
    g_assert_true(bdrv_created_file(bs, &id));
    g_assert_cmpint(g_unlink(f->path), ==, 0);
    g_assert_true(g_file_set_contents(f->path, "someone else's", -1, NULL));
    bdrv_remove_created_file(f->path, &id);
    g_assert_true(g_file_test(f->path, G_FILE_TEST_EXISTS));
    bdrv_close(bs);
}

static void test_block_status(Fixture *f, gconstpointer data)
{
    BlockDriverState *bs = open_drive(f, "d0", DRIVE_SIZE, NULL);
    write_runs(bs);
    g_assert_cmpint(bdrv_flush(bs), ==, 0);

    GArray *runs = status_data_runs(bs);
    assert_runs(runs, written, G_N_ELEMENTS(written));
    GArray *lruns = lseek_data_runs(f->path);
    assert_runs(lruns, written, G_N_ELEMENTS(written));
    g_array_unref(runs);
    g_array_unref(lruns);

    /* A query limited to part of a run reports exactly that part. */
    uint64_t pnum;
    bool is_data;
    g_assert_cmpint(bdrv_block_status(bs, 8 * MiB + 4 * KiB, 8 * KiB, &pnum, &is_data), ==, 0);
    g_assert_true(is_data);
    g_assert_cmpuint(pnum, ==, 8 * KiB);
    g_assert_cmpint(bdrv_block_status(bs, 4 * KiB, 1 * MiB, &pnum, &is_data), ==, 0);
    g_assert_false(is_data);
    g_assert_cmpuint(pnum, ==, 1 * MiB);
    g_assert_cmpint(bdrv_block_status(bs, 33 * MiB, 31 * MiB - 4 * KiB, &pnum, &is_data), ==, 0);
    g_assert_false(is_data);
    g_assert_cmpuint(pnum, ==, 31 * MiB - 4 * KiB);
    g_assert_cmpint(bdrv_allocated_bytes(bs), >=, (int64_t)(4 + 64 + 1024 + 4) * (int64_t)KiB);
}

/* Walking a fully written drive chunk by chunk asks the file system once:
 * SEEK_HOLE costs time linear in the data before the hole on tmpfs, so one
 * probe per chunk made a migration's bulk phase quadratic there. */
static void test_block_status_cached(Fixture *f, gconstpointer data)
{
    BlockDriverState *bs = open_drive(f, "d0", DRIVE_SIZE, NULL);
    uint64_t pnum;
    bool is_data;

    write_pattern(bs, 0, DRIVE_SIZE, 7);
    lseek_calls = 0;
    for (uint64_t off = 0; off < DRIVE_SIZE; off += MiB) {
        g_assert_cmpint(bdrv_block_status(bs, off, MiB, &pnum, &is_data), ==, 0);
        g_assert_true(is_data);
        g_assert_cmpuint(pnum, ==, MiB);
    }
    g_assert_cmpuint(lseek_calls, <=, 2);
}

/* Holes made after a probe are seen: discard and write-zeroes with unmap
 * forget what the cache knew. */
static void test_block_status_after_punch(Fixture *f, gconstpointer data)
{
    BlockDriverState *bs = open_drive(f, "d0", DRIVE_SIZE, NULL);
    uint64_t pnum;
    bool is_data;

    write_pattern(bs, 0, DRIVE_SIZE, 9);
    g_assert_cmpint(bdrv_block_status(bs, 0, MiB, &pnum, &is_data), ==, 0);
    g_assert_true(is_data);

    g_assert_cmpint(bdrv_discard(bs, 8 * MiB, MiB), ==, 0);
    g_assert_cmpint(bdrv_block_status(bs, 8 * MiB, MiB, &pnum, &is_data), ==, 0);
    g_assert_false(is_data);
    g_assert_cmpuint(pnum, ==, MiB);
    g_assert_cmpint(bdrv_block_status(bs, 4 * MiB, 8 * MiB, &pnum, &is_data), ==, 0);
    g_assert_true(is_data);
    g_assert_cmpuint(pnum, ==, 4 * MiB);

    g_assert_cmpint(bdrv_block_status(bs, 16 * MiB, MiB, &pnum, &is_data), ==, 0);
    g_assert_true(is_data);
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, 20 * MiB, MiB, BDRV_REQ_MAY_UNMAP), ==, 0);
    g_assert_cmpint(bdrv_block_status(bs, 20 * MiB, MiB, &pnum, &is_data), ==, 0);
    g_assert_false(is_data);
}

static void test_read_back(Fixture *f, gconstpointer data)
{
    BlockDriverState *bs = open_drive(f, "d0", DRIVE_SIZE, data);
    if (!bs) {
        return;
    }
    write_runs(bs);
    for (size_t i = 0; i < G_N_ELEMENTS(written); i++) {
        size_t len = written[i].len;
        uint8_t *buf = bdrv_buf_alloc(bs, len), *expect = g_malloc(len);
        fill_pattern(expect, len, written[i].off, (uint8_t)i);
        g_assert_cmpint(bdrv_pread(bs, written[i].off, buf, len), ==, 0);
        g_assert_cmpmem(buf, len, expect, len);
        g_free(expect);
        bdrv_buf_free(buf);
    }
    assert_reads_zero(bs, 4 * KiB, 8 * MiB - 4 * KiB);
}

/* bdrv_map_read gives the bytes bdrv_pread reads, at any offset (the
 * mapping starts on a page boundary below it), holes as zeroes; nothing
 * past the end, and nothing with cache=none (O_DIRECT keeps out of the
 * page cache). */
static void test_map_read(Fixture *f, gconstpointer data)
{
    const Mode *mode = data;
    BlockDriverState *bs = open_drive(f, "d0", DRIVE_SIZE, data);
    if (!bs) {
        return;
    }
    write_runs(bs);
    for (size_t i = 0; i < G_N_ELEMENTS(written); i++) {
        uint64_t off = written[i].off + 512;            /* not on a page boundary */
        size_t len = written[i].len - 512;
        uint8_t *expect = g_malloc(len);
        const uint8_t *p = bdrv_map_read(bs, off, len);
        if (mode->cache_none) {
            g_assert_null(p);
            g_free(expect);
            continue;
        }
        g_assert_nonnull(p);
        fill_pattern(expect, len, off, (uint8_t)i);
        g_assert_cmpmem(p, len, expect, len);
        bdrv_unmap_read(bs, p, len);
        g_free(expect);
    }
    const uint8_t *hole = bdrv_map_read(bs, 4 * KiB, MiB);
    g_assert_true(mode->cache_none ? hole == NULL : buffer_is_zero(hole, MiB));
    if (hole) {
        bdrv_unmap_read(bs, hole, MiB);
    }
    g_assert_null(bdrv_map_read(bs, DRIVE_SIZE - 4 * KiB, 8 * KiB));
    g_assert_null(bdrv_map_read(bs, DRIVE_SIZE, 4 * KiB));
}

static void test_write_zeroes_unmap(Fixture *f, gconstpointer data)
{
    BlockDriverState *bs = open_drive(f, "d0", DRIVE_SIZE, data);
    if (!bs) {
        return;
    }
    write_runs(bs);
    g_assert_cmpint(bdrv_flush(bs), ==, 0);
    uint64_t before = file_blocks(f->path);

    g_assert_cmpint(bdrv_pwrite_zeroes(bs, 32 * MiB, 1 * MiB, BDRV_REQ_MAY_UNMAP), ==, 0);
    /* 1 MiB = 2048 sectors deallocated. */
    g_assert_cmpuint(file_blocks(f->path), <=, before - 2048);
    assert_reads_zero(bs, 32 * MiB, 1 * MiB);
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    g_assert_cmpint(lseek(fd, 32 * MiB, SEEK_DATA), ==, DRIVE_SIZE - 4 * KiB);
    close(fd);
    GArray *runs = status_data_runs(bs);
    Run expect[] = { written[0], written[1], written[3] };
    assert_runs(runs, expect, G_N_ELEMENTS(expect));
    g_array_unref(runs);

    /* The very end of the file: deallocated, size unchanged. */
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, DRIVE_SIZE - 4 * KiB, 4 * KiB, BDRV_REQ_MAY_UNMAP), ==, 0);
    assert_reads_zero(bs, DRIVE_SIZE - 4 * KiB, 4 * KiB);
    struct stat st;
    g_assert_cmpint(stat(f->path, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, DRIVE_SIZE);

    /* Unaligned edges: the bytes around the range survive. */
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, 8 * MiB + 100, 8 * KiB + 5, BDRV_REQ_MAY_UNMAP), ==, 0);
    uint8_t *buf = bdrv_buf_alloc(bs, 64 * KiB), *want = g_malloc(64 * KiB);
    fill_pattern(want, 64 * KiB, 8 * MiB, 1);
    memset(want + 100, 0, 8 * KiB + 5);
    g_assert_cmpint(bdrv_pread(bs, 8 * MiB, buf, 64 * KiB), ==, 0);
    g_assert_cmpmem(buf, 64 * KiB, want, 64 * KiB);
    g_free(want);
    bdrv_buf_free(buf);
}

static void test_write_zeroes_no_unmap(Fixture *f, gconstpointer data)
{
    BlockDriverState *bs = open_drive(f, "d0", DRIVE_SIZE, data);
    if (!bs) {
        return;
    }
    write_runs(bs);
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, 32 * MiB, 1 * MiB, 0), ==, 0);
    assert_reads_zero(bs, 32 * MiB, 1 * MiB);
    /* Fast-only zeroing either works or says it cannot. */
    int ret = bdrv_pwrite_zeroes(bs, 8 * MiB, 64 * KiB, BDRV_REQ_NO_FALLBACK);
    g_assert_true(ret == 0 || ret == -ENOTSUP);
    if (ret == 0) {
        assert_reads_zero(bs, 8 * MiB, 64 * KiB);
    }
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, 0, 4 * KiB, BDRV_REQ_FUA), ==, 0);
    assert_reads_zero(bs, 0, 4 * KiB);
}

static void test_discard(Fixture *f, gconstpointer data)
{
    BlockDriverState *bs = open_drive(f, "d0", DRIVE_SIZE, NULL);
    write_runs(bs);
    g_assert_cmpint(bdrv_flush(bs), ==, 0);
    uint64_t before = file_blocks(f->path);
    g_assert_cmpint(bdrv_discard(bs, 32 * MiB, 1 * MiB), ==, 0);
    g_assert_cmpuint(file_blocks(f->path), <=, before - 2048);
    assert_reads_zero(bs, 32 * MiB, 1 * MiB);
}

static void test_bounds(Fixture *f, gconstpointer data)
{
    BlockDriverState *bs = open_drive(f, "d0", DRIVE_SIZE, data);
    if (!bs) {
        return;
    }
    uint8_t *buf = bdrv_buf_alloc(bs, 8 * KiB);
    uint64_t pnum;
    bool is_data;

    memset(buf, 1, 8 * KiB);
    g_assert_cmpint(bdrv_pread(bs, DRIVE_SIZE - 4 * KiB, buf, 8 * KiB), ==, -EINVAL);
    g_assert_cmpint(bdrv_pread(bs, DRIVE_SIZE - 1, buf, 2), ==, -EINVAL);
    g_assert_cmpint(bdrv_pread(bs, DRIVE_SIZE + 4 * KiB, buf, 4 * KiB), ==, -EINVAL);
    g_assert_cmpint(bdrv_pwrite(bs, DRIVE_SIZE, buf, 1, 0), ==, -EINVAL);
    g_assert_cmpint(bdrv_pwrite(bs, DRIVE_SIZE - 4 * KiB, buf, 8 * KiB, 0), ==, -EINVAL);
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, 1, UINT64_MAX, 0), ==, -EINVAL);
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, DRIVE_SIZE - 4 * KiB, 8 * KiB, BDRV_REQ_MAY_UNMAP), ==, -EINVAL);
    g_assert_cmpint(bdrv_discard(bs, UINT64_MAX, 2), ==, -EINVAL);
    g_assert_cmpint(bdrv_block_status(bs, DRIVE_SIZE, 1, &pnum, &is_data), ==, -EINVAL);
    g_assert_cmpint(bdrv_block_status(bs, 0, DRIVE_SIZE + 1, &pnum, &is_data), ==, -EINVAL);
    /* Nothing of the failed writes reached the file, nor grew it. */
    struct stat st;
    g_assert_cmpint(stat(f->path, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, DRIVE_SIZE);
    g_assert_cmpuint(file_blocks(f->path), ==, 0);
    /* Empty requests at the very end are fine. */
    g_assert_cmpint(bdrv_pread(bs, DRIVE_SIZE, buf, 0), ==, 0);
    g_assert_cmpint(bdrv_pwrite(bs, DRIVE_SIZE, buf, 0, 0), ==, 0);
    /* The last byte is reachable. */
    g_assert_cmpint(bdrv_pwrite(bs, DRIVE_SIZE - 1, buf, 1, 0), ==, 0);
    g_assert_cmpint(bdrv_pread(bs, DRIVE_SIZE - 1, buf + 1, 1), ==, 0);
    g_assert_cmpint(buf[1], ==, 1);
    bdrv_buf_free(buf);
}

/* ---- Unaligned requests (the cache=none bounce path) against a model ---- */

#define MODEL_SIZE (256 * KiB + 1000)    /* not a multiple of 4 KiB either */

static void test_unaligned_model(Fixture *f, gconstpointer data)
{
    BlockDriverState *bs = open_drive(f, "d0", MODEL_SIZE, data);
    if (!bs) {
        return;
    }
    uint8_t *model = g_malloc0(MODEL_SIZE);
    uint8_t *mem = g_malloc(MODEL_SIZE + 16), *buf = mem + 3;   /* misaligned */
    GRand *rand = g_rand_new_with_seed(42);

    for (int round = 0; round < 300; round++) {
        uint64_t off = (uint64_t)g_rand_int_range(rand, 0, MODEL_SIZE);
        size_t len = (size_t)g_rand_int_range(rand, 0, (gint32)MIN(MODEL_SIZE - off, 20000) + 1);
        if (round % 10 == 0) {
            len = MODEL_SIZE - off;                  /* up to the unaligned end */
        }
        switch (g_rand_int_range(rand, 0, 5)) {
        case 0:
        case 1:
            fill_pattern(buf, len, off, (uint8_t)round);
            g_assert_cmpint(bdrv_pwrite(bs, off, buf, len, round % 3 ? 0 : BDRV_REQ_FUA), ==, 0);
            memcpy(model + off, buf, len);
            break;
        case 2:
            g_assert_cmpint(bdrv_pwrite_zeroes(bs, off, len, round % 2 ? BDRV_REQ_MAY_UNMAP : 0), ==, 0);
            memset(model + off, 0, len);
            break;
        case 3:
            /* The raw driver's discard punches a hole: reads give zeroes. */
            g_assert_cmpint(bdrv_discard(bs, off, len), ==, 0);
            memset(model + off, 0, len);
            break;
        default:
            g_assert_cmpint(bdrv_pread(bs, off, buf, len), ==, 0);
            g_assert_cmpmem(buf, len, model + off, len);
        }
    }
    g_assert_cmpint(bdrv_pread(bs, 0, buf, MODEL_SIZE), ==, 0);
    g_assert_cmpmem(buf, MODEL_SIZE, model, MODEL_SIZE);
    struct stat st;
    g_assert_cmpint(stat(f->path, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, MODEL_SIZE);
    g_rand_free(rand);
    g_free(mem);
    g_free(model);
}

/* Threads writing interleaved 512-byte slots that share 4 KiB blocks: a
 * read-modify-write that is not serialized loses some of them. */
#define SLOT 512
#define NSLOTS 256
#define NTHREADS 4

typedef struct SlotWriter {
    BlockDriverState *bs;
    int index;
} SlotWriter;

static gpointer slot_writer(gpointer opaque)
{
    SlotWriter *w = opaque;
    uint8_t buf[SLOT];
    for (int pass = 0; pass < 4; pass++) {
        for (int slot = w->index; slot < NSLOTS; slot += NTHREADS) {
            memset(buf, (uint8_t)(slot * 4 + pass + 1), SLOT);
            g_assert_cmpint(bdrv_pwrite(w->bs, (uint64_t)slot * SLOT + 1, buf, SLOT - 2, 0), ==, 0);
        }
    }
    return NULL;
}

static void test_concurrent_rmw(Fixture *f, gconstpointer data)
{
    BlockDriverState *bs = open_drive(f, "d0", 1 * MiB, data);
    if (!bs) {
        return;
    }
    SlotWriter writers[NTHREADS];
    GThread *threads[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        writers[i] = (SlotWriter){ bs, i };
        threads[i] = g_thread_new("slot-writer", slot_writer, &writers[i]);
    }
    for (int i = 0; i < NTHREADS; i++) {
        g_thread_join(threads[i]);
    }
    uint8_t *buf = g_malloc(NSLOTS * SLOT);
    g_assert_cmpint(bdrv_pread(bs, 0, buf, NSLOTS * SLOT), ==, 0);
    for (int slot = 0; slot < NSLOTS; slot++) {
        uint8_t *s = buf + slot * SLOT;
        uint8_t v = (uint8_t)(slot * 4 + 4);
        g_assert_cmpint(s[0], ==, 0);
        for (int i = 1; i < SLOT - 1; i++) {
            if (s[i] != v) {
                g_error("slot %d byte %d: %u, expected %u", slot, i, s[i], v);
            }
        }
        g_assert_cmpint(s[SLOT - 1], ==, 0);
    }
    g_free(buf);
}

/* ---- Dirty bitmaps marked by writes ---- */

static void test_marks_dirty(Fixture *f, gconstpointer data)
{
    BlockDriverState *bs = open_drive(f, "d0", DRIVE_SIZE, data);
    if (!bs) {
        return;
    }
    DirtyBitmap *bm = bdrv_create_dirty_bitmap(bs, 0);
    DirtyBitmap *bm2 = bdrv_create_dirty_bitmap(bs, 1 * MiB);
    uint8_t *buf = bdrv_buf_alloc(bs, 4 * KiB);
    fill_pattern(buf, 4 * KiB, 0, 9);

    g_assert_cmpint(bdrv_pread(bs, 0, buf, 4 * KiB), ==, 0);
    g_assert_cmpuint(dirty_bitmap_dirty_bytes(bm), ==, 0);
    g_assert_cmpint(bdrv_pwrite(bs, 5 * MiB + 10, buf, 100, 0), ==, 0);
    g_assert_true(dirty_bitmap_is_dirty(bm, 5 * MiB));
    g_assert_cmpuint(dirty_bitmap_dirty_bytes(bm), ==, DIRTY_GRANULARITY_DEFAULT);
    g_assert_true(dirty_bitmap_is_dirty(bm2, 5 * MiB));
    g_assert_cmpuint(dirty_bitmap_dirty_bytes(bm2), ==, 1 * MiB);

    g_assert_cmpint(bdrv_pwrite_zeroes(bs, 20 * MiB, 4 * KiB, BDRV_REQ_MAY_UNMAP), ==, 0);
    g_assert_true(dirty_bitmap_is_dirty(bm, 20 * MiB));
    g_assert_cmpint(bdrv_discard(bs, 30 * MiB, 4 * KiB), ==, 0);
    g_assert_true(dirty_bitmap_is_dirty(bm, 30 * MiB));
    g_assert_cmpint(dirty_bitmap_next_dirty(bm, 0), ==, 5 * MiB);

    /* A failed write marks nothing. */
    dirty_bitmap_clear_all(bm);
    g_assert_cmpint(bdrv_pwrite(bs, DRIVE_SIZE - 1, buf, 2, 0), ==, -EINVAL);
    g_assert_cmpuint(dirty_bitmap_dirty_bytes(bm), ==, 0);

    bdrv_release_dirty_bitmap(bm);
    /* bm2 is released by bdrv_close. */
    bdrv_buf_free(buf);
}

/* ---- Open options, registry ---- */

static void test_open_errors(Fixture *f, gconstpointer data)
{
    GError *err = NULL;
    BlockOptions opts = { .id = "d0", .filename = f->path, .create = true };

    g_assert_null(bdrv_open(&opts, &err));
    g_assert_nonnull(strstr(err->message, "create=on needs size="));
    g_clear_error(&err);

    opts.create = false;
    g_assert_null(bdrv_open(&opts, &err));          /* no such file */
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
    g_assert_nonnull(strstr(err->message, f->path));
    g_clear_error(&err);

    opts.format = "qcow9";
    g_assert_null(bdrv_open(&opts, &err));
    g_assert_nonnull(strstr(err->message, "'qcow9'"));
    g_clear_error(&err);
    opts.format = NULL;

    BlockDriverState *bs = open_drive(f, "d0", 1 * MiB, NULL);
    g_assert_null(bdrv_open(&opts, &err));
    g_assert_cmpstr(err->message, ==, "Duplicate drive id 'd0'");
    g_clear_error(&err);
    bdrv_close(bs);

    /* size= without create must match the file. */
    opts.id = "d1";
    opts.size = 2 * MiB;
    g_assert_null(bdrv_open(&opts, &err));
    g_assert_nonnull(strstr(err->message, f->path));
    g_clear_error(&err);
    opts.size = 1 * MiB;
    bs = bdrv_open(&opts, &err);
    g_assert_no_error(err);
    g_assert_cmpint(bdrv_getlength(bs), ==, 1 * MiB);
    g_assert_null(bdrv_find("d0"));
    g_assert_true(bdrv_find("d1") == bs);
}

static void test_read_only(Fixture *f, gconstpointer data)
{
    BlockDriverState *bs = open_drive(f, "rw", 1 * MiB, NULL);
    write_pattern(bs, 0, 4 * KiB, 3);
    bdrv_close(bs);

    GError *err = NULL;
    BlockOptions opts = { .id = "ro", .filename = f->path, .read_only = true };
    bs = bdrv_open(&opts, &err);
    g_assert_no_error(err);
    g_assert_true(bdrv_is_read_only(bs));
    uint8_t buf[4096], expect[4096];
    fill_pattern(expect, sizeof(expect), 0, 3);
    g_assert_cmpint(bdrv_pread(bs, 0, buf, sizeof(buf)), ==, 0);
    g_assert_cmpmem(buf, sizeof(buf), expect, sizeof(expect));
    g_assert_cmpint(bdrv_pwrite(bs, 0, buf, 1, 0), ==, -EPERM);
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, 0, 4096, BDRV_REQ_MAY_UNMAP), ==, -EPERM);
    g_assert_cmpint(bdrv_discard(bs, 0, 4096), ==, -EPERM);
    g_assert_cmpint(bdrv_pread(bs, 0, buf, sizeof(buf)), ==, 0);
    g_assert_cmpmem(buf, sizeof(buf), expect, sizeof(expect));

    opts.id = "ro2";
    opts.create = true;
    opts.size = MiB;
    g_assert_null(bdrv_open(&opts, &err));
    g_assert_nonnull(err);
    g_clear_error(&err);
}

static void test_registry(Fixture *f, gconstpointer data)
{
    BlockDriverState *a = open_drive(f, "a", 1 * MiB, NULL);
    char *path_b = g_build_filename(f->dir, "b.raw", NULL);
    BlockOptions opts = { .id = "b", .filename = path_b, .create = true, .size = MiB };
    GError *err = NULL;
    BlockDriverState *b = bdrv_open(&opts, &err);
    g_assert_no_error(err);

    GList *list = bdrv_list();
    g_assert_cmpuint(g_list_length(list), ==, 2);
    g_assert_true(list->data == a && list->next->data == b);
    g_list_free(list);
    g_assert_cmpstr(bdrv_get_id(b), ==, "b");
    g_assert_cmpstr(bdrv_get_filename(b), ==, path_b);
    g_assert_cmpstr(bdrv_get_format(b), ==, "raw");
    g_assert_false(bdrv_is_cache_none(b));
    g_assert_false(bdrv_is_aio_native(b));
    g_assert_cmpuint(bdrv_buf_align(b), ==, 1);
    bdrv_close(a);
    g_assert_null(bdrv_find("a"));
    g_assert_true(bdrv_find("b") == b);
    bdrv_close(b);
    g_unlink(path_b);
    g_free(path_b);
}

static const Mode mode_buffered = { false, false };
static const Mode mode_direct = { true, false };
static const Mode mode_native = { false, true };
static const Mode mode_direct_native = { true, true };

static void add_mode_tests(const char *name, const Mode *mode)
{
    static const struct { const char *name; void (*fn)(Fixture *, gconstpointer); } tests[] = {
        { "read-back", test_read_back },
        { "map-read", test_map_read },
        { "write-zeroes-unmap", test_write_zeroes_unmap },
        { "write-zeroes-no-unmap", test_write_zeroes_no_unmap },
        { "bounds", test_bounds },
        { "unaligned-model", test_unaligned_model },
        { "concurrent-rmw", test_concurrent_rmw },
        { "marks-dirty", test_marks_dirty },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(tests); i++) {
        char *path = g_strdup_printf("/raw/%s/%s", name, tests[i].name);
        g_test_add(path, Fixture, mode, fixture_setup, tests[i].fn, fixture_teardown);
        g_free(path);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add("/raw/create-sparse", Fixture, NULL, fixture_setup, test_create_sparse, fixture_teardown);
    g_test_add("/raw/create-existing", Fixture, NULL, fixture_setup, test_create_existing, fixture_teardown);
    g_test_add("/raw/create-empty", Fixture, NULL, fixture_setup, test_create_empty, fixture_teardown);
    g_test_add("/raw/create-undo", Fixture, NULL, fixture_setup, test_create_undo, fixture_teardown);
    g_test_add("/raw/block-status", Fixture, NULL, fixture_setup, test_block_status, fixture_teardown);
    g_test_add("/raw/block-status-cached", Fixture, NULL, fixture_setup, test_block_status_cached, fixture_teardown);
    g_test_add("/raw/block-status-after-punch", Fixture, NULL, fixture_setup, test_block_status_after_punch, fixture_teardown);
    g_test_add("/raw/discard", Fixture, NULL, fixture_setup, test_discard, fixture_teardown);
    g_test_add("/raw/open-errors", Fixture, NULL, fixture_setup, test_open_errors, fixture_teardown);
    g_test_add("/raw/read-only", Fixture, NULL, fixture_setup, test_read_only, fixture_teardown);
    g_test_add("/raw/registry", Fixture, NULL, fixture_setup, test_registry, fixture_teardown);
    add_mode_tests("buffered", &mode_buffered);
    add_mode_tests("cache-none", &mode_direct);
    add_mode_tests("aio-native", &mode_native);
    add_mode_tests("cache-none-aio-native", &mode_direct_native);
    return g_test_run();
}
