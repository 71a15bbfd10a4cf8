/* The block graph's generic parts on real files: format names and
 * format=auto probing, the probing-safety rule of a probed raw image, the
 * create helper that never replaces an image, and block-status walks. */
#include <errno.h>
#include <gio/gio.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include "block/block-driver.h"
#include "util/size.h"

typedef struct Fixture {
    char *dir;
    char *path;
} Fixture;

static void fixture_setup(Fixture *f, gconstpointer data)
{
    GError *err = NULL;
    f->dir = g_dir_make_tmp("test-block-graph-XXXXXX", &err);
    g_assert_no_error(err);
    f->path = g_build_filename(f->dir, "disk.img", NULL);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    bdrv_close_all();
    g_unlink(f->path);
    g_assert_cmpint(g_rmdir(f->dir), ==, 0);
    g_free(f->path);
    g_free(f->dir);
}

static BlockDriverState *open_fmt(Fixture *f, const char *format, GError **errp)
{
    BlockOptions opts = { .id = "d0", .filename = f->path, .format = format };
    return bdrv_open(&opts, errp);
}

static void make_raw(Fixture *f, uint64_t size)
{
    BlockOptions opts = { .id = "mk", .filename = f->path, .size = size, .create = true };
    GError *err = NULL;
    BlockDriverState *bs = bdrv_open(&opts, &err);
    g_assert_no_error(err);
    bdrv_close(bs);
}

/* ---- Formats and probing ---- */

static void test_unknown_format(Fixture *f, gconstpointer data)
{
    GError *err = NULL;
    make_raw(f, MiB);
    g_assert_null(open_fmt(f, "qcow9", &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
    g_assert_nonnull(strstr(err->message, "(supported: raw"));
    g_assert_nonnull(strstr(err->message, "auto)"));
    g_clear_error(&err);

    BlockOptions opts = { .id = "d0", .filename = f->path, .format = "auto",
                          .create = true, .size = MiB };
    g_assert_null(bdrv_open(&opts, &err));
    g_assert_nonnull(strstr(err->message, "not auto"));
    g_clear_error(&err);
}

/* Options raw does not take are refused, not ignored. */
static void test_raw_refuses_qcow2_options(Fixture *f, gconstpointer data)
{
    static const struct { BlockOptions opts; const char *message; } cases[] = {
        { { .backing = "base.img" }, "backing= needs format=qcow2" },
        { { .backing_format = "raw" }, "backing= needs format=qcow2" },
        { { .cluster_size = 65536 }, "cluster-size= needs format=qcow2" },
        { { .format = "auto", .backing = "base.img" }, "backing= needs format=qcow2" },
        { { .format = "qcow2", .cluster_size = 65536 }, "applies to create=on only" },
        { { .format = "qcow2", .create = true, .size = MiB, .backing_format = "raw" },
          "backing-format= needs backing=" },
    };
    GError *err = NULL;

    make_raw(f, MiB);
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        BlockOptions opts = cases[i].opts;
        opts.id = "d0";
        opts.filename = f->path;
        g_assert_null(bdrv_open(&opts, &err));
        g_assert_nonnull(err);
        g_assert_nonnull(strstr(err->message, cases[i].message));
        g_clear_error(&err);
    }
}

static void test_auto_raw(Fixture *f, gconstpointer data)
{
    GError *err = NULL;
    make_raw(f, MiB);
    BlockDriverState *bs = open_fmt(f, "auto", &err);
    g_assert_no_error(err);
    g_assert_cmpstr(bdrv_get_format(bs), ==, "raw");
    g_assert_cmpint(bdrv_getlength(bs), ==, MiB);
    g_assert_null(bdrv_get_backing(bs));
    g_assert_cmpint(bdrv_get_backing_depth(bs), ==, 0);
    g_assert_null(bdrv_get_backing_filename(bs));
    g_assert_cmpuint(bdrv_get_cluster_size(bs), ==, 0);
}

/* An image with the magic of a format blkmig cannot open is refused
 * rather than taken for raw. */
static void test_auto_foreign(Fixture *f, gconstpointer data)
{
    GError *err = NULL;
    make_raw(f, MiB);
    BlockDriverState *bs = open_fmt(f, "raw", &err);
    g_assert_cmpint(bdrv_pwrite(bs, 0, "conectix", 8, 0), ==, 0);
    bdrv_close(bs);

    g_assert_null(open_fmt(f, "auto", &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
    g_assert_nonnull(strstr(err->message, "vpc"));
    g_clear_error(&err);
    bs = open_fmt(f, "raw", &err);          /* format=raw still opens it */
    g_assert_no_error(err);
}

static void expect_refused(BlockDriverState *bs, uint64_t off, const void *buf, size_t len)
{
    g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING, "*Refused a write to sector 0*");
    g_assert_cmpint(bdrv_pwrite(bs, off, buf, len, 0), ==, -EPERM);
    g_test_assert_expected_messages();
}

/* QEMU's probing-safety rule: a guest must not turn a probed raw image
 * into something the next probe opens as another format. */
static void test_probed_raw_refuses_header(Fixture *f, gconstpointer data)
{
    static const uint8_t qcow2_start[8] = { 'Q', 'F', 'I', 0xfb, 0, 0, 0, 3 };
    static const uint8_t qed_start[4] = { 'Q', 'E', 'D', 0 };
    GError *err = NULL;
    uint8_t sector[512], back[512];

    make_raw(f, MiB);
    BlockDriverState *bs = open_fmt(f, "auto", &err);
    g_assert_no_error(err);
    memset(sector, 0x5a, sizeof(sector));
    g_assert_cmpint(bdrv_pwrite(bs, 0, sector, sizeof(sector), 0), ==, 0);

    memcpy(sector, qcow2_start, sizeof(qcow2_start));
    expect_refused(bs, 0, sector, sizeof(sector));
    expect_refused(bs, 0, qcow2_start, sizeof(qcow2_start));   /* part of it */
    expect_refused(bs, 0, qed_start, sizeof(qed_start));
    /* The magic alone is split across two writes: the second completes it. */
    g_assert_cmpint(bdrv_pwrite(bs, 0, "QF", 2, 0), ==, 0);
    expect_refused(bs, 2, "I\xfb\0\0\0\3", 6);

    /* Nothing refused reached the file; other writes are fine. */
    g_assert_cmpint(bdrv_pread(bs, 0, back, sizeof(back)), ==, 0);
    g_assert_cmpmem(back, 2, "QF", 2);
    g_assert_cmpint(back[2], ==, 0x5a);
    g_assert_cmpint(bdrv_pwrite(bs, 512, qcow2_start, sizeof(qcow2_start), 0), ==, 0);
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, 0, 512, 0), ==, 0);
    bdrv_close(bs);

    /* Opened as raw on purpose, the image takes the header. */
    bs = open_fmt(f, "raw", &err);
    g_assert_cmpint(bdrv_pwrite(bs, 0, qcow2_start, sizeof(qcow2_start), 0), ==, 0);
}

/* ---- Create helper ---- */

static void test_create_new_file(Fixture *f, gconstpointer data)
{
    BlockOptions opts = { .id = "new", .filename = f->path };
    BdrvCreatedFile made = { 0 };
    GError *err = NULL;
    int fd = bdrv_create_file(&opts, &made, &err);         /* new */
    g_assert_no_error(err);
    g_assert_cmpint(fd, >=, 0);
    g_assert_true(made.made);
    close(fd);
    made = (BdrvCreatedFile){ 0 };
    fd = bdrv_create_file(&opts, &made, &err);             /* empty */
    g_assert_no_error(err);
    g_assert_false(made.made);
    g_assert_cmpint(write(fd, "x", 1), ==, 1);
    close(fd);
    g_assert_cmpint(bdrv_create_file(&opts, &made, &err), ==, -1);  /* not empty */
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_EXISTS);
    g_assert_nonnull(strstr(err->message, "never replaces"));
    g_clear_error(&err);
    gsize len;
    char *content;
    g_assert_true(g_file_get_contents(f->path, &content, &len, NULL));
    g_assert_cmpmem(content, len, "x", 1);
    g_free(content);
}

/* qcow2's create follows the same rule as raw's: an image with data is
 * refused and left as it was; overwrite=on replaces it with a new image. */
static void test_create_rule_qcow2(Fixture *f, gconstpointer data)
{
    BlockOptions opts = { .id = "q", .filename = f->path, .format = "qcow2",
                          .size = 16 << 20, .create = true };
    GError *err = NULL;
    gsize len;
    char *content;

    g_assert_true(g_file_set_contents(f->path, "data", 4, NULL));
    g_assert_null(bdrv_open(&opts, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_EXISTS);
    g_clear_error(&err);
    g_assert_true(g_file_get_contents(f->path, &content, &len, NULL));
    g_assert_cmpmem(content, len, "data", 4);
    g_free(content);

    opts.overwrite = true;
    BlockDriverState *bs = bdrv_open(&opts, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(bdrv_get_format(bs), ==, "qcow2");
    g_assert_cmpint(bdrv_getlength(bs), ==, 16 << 20);
    bdrv_close(bs);
}

/* ---- Walks ---- */

static void write_byte_run(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    uint8_t *buf = g_malloc(len);
    memset(buf, 0x11, len);
    g_assert_cmpint(bdrv_pwrite(bs, off, buf, len, 0), ==, 0);
    g_free(buf);
}

/* Runs of a walk as "status@off+len" words, to compare in one assertion. */
static char *walk_string(BlockDriverState *bs, uint64_t off, uint64_t len,
                         BdrvWalkMode mode, int flags, int *last_ret)
{
    static const char *names[] = { "D", "Z", "B", "U" };
    GString *s = g_string_new(NULL);
    BdrvWalk w;
    BdrvExtent e;
    int ret;

    bdrv_walk_init(&w, bs, off, len, mode, flags);
    while ((ret = bdrv_walk_next(&w, &e)) > 0) {
        g_string_append_printf(s, "%s%s@%" G_GUINT64_FORMAT "K+%" G_GUINT64_FORMAT "K",
                               s->len ? " " : "", names[e.status], e.off / KiB, e.len / KiB);
        if (e.depth) {
            g_string_append_printf(s, "/%d", e.depth);
        }
    }
    *last_ret = ret;
    return g_string_free(s, FALSE);
}

static void assert_walk(BlockDriverState *bs, uint64_t off, uint64_t len, BdrvWalkMode mode,
                        int flags, const char *expect, int expect_ret)
{
    int ret;
    char *got = walk_string(bs, off, len, mode, flags, &ret);
    g_assert_cmpstr(got, ==, expect);
    g_assert_cmpint(ret, ==, expect_ret);
    g_free(got);
}

static void test_walk_raw(Fixture *f, gconstpointer data)
{
    GError *err = NULL;
    make_raw(f, MiB);
    BlockDriverState *bs = open_fmt(f, "raw", &err);
    write_byte_run(bs, 64 * KiB, 64 * KiB);
    write_byte_run(bs, 128 * KiB, 64 * KiB);         /* adjacent: one run */
    write_byte_run(bs, 512 * KiB, 4 * KiB);

    assert_walk(bs, 0, MiB, BDRV_WALK_GUEST, 0,
                "Z@0K+64K D@64K+128K Z@192K+320K D@512K+4K Z@516K+508K", 0);
    /* A raw file decides everything itself: depth 1 for data and holes. */
    assert_walk(bs, 0, MiB, BDRV_WALK_DEPTH, 0,
                "Z@0K+64K/1 D@64K+128K/1 Z@192K+320K/1 D@512K+4K/1 Z@516K+508K/1", 0);
    assert_walk(bs, 0, MiB, BDRV_WALK_TOP, 0,
                "Z@0K+64K/1 D@64K+128K/1 Z@192K+320K/1 D@512K+4K/1 Z@516K+508K/1", 0);
    /* Runs never cross the range's ends. */
    assert_walk(bs, 100 * KiB, 416 * KiB, BDRV_WALK_GUEST, 0,
                "D@100K+92K Z@192K+320K D@512K+4K", 0);
    /* Past the end the status call fails: the error, or the range as data. */
    assert_walk(bs, 512 * KiB, 516 * KiB, BDRV_WALK_GUEST, 0, "", -EINVAL);
    assert_walk(bs, 512 * KiB, 516 * KiB, BDRV_WALK_GUEST, BDRV_WALK_ERROR_AS_DATA,
                "D@512K+516K", 0);
    assert_walk(bs, 0, 0, BDRV_WALK_GUEST, 0, "", 0);
}

/* bdrv_block_status_ext agrees with the old two-state call. */
static void test_status_ext_raw(Fixture *f, gconstpointer data)
{
    GError *err = NULL;
    make_raw(f, MiB);
    BlockDriverState *bs = open_fmt(f, "raw", &err);
    write_byte_run(bs, 0, 4 * KiB);
    uint64_t pnum;
    BdrvStatus st;
    int depth;
    bool is_data;

    g_assert_cmpint(bdrv_block_status_ext(bs, 0, MiB, 0, &pnum, &st, &depth), ==, 0);
    g_assert_cmpint(st, ==, BDRV_STATUS_DATA);
    g_assert_cmpint(depth, ==, 1);
    g_assert_cmpuint(pnum, ==, 4 * KiB);
    g_assert_cmpint(bdrv_block_status_ext(bs, 4 * KiB, KiB, BDRV_STATUS_TOP_ONLY, &pnum,
                                          &st, NULL), ==, 0);
    g_assert_cmpint(st, ==, BDRV_STATUS_ZERO);
    g_assert_cmpuint(pnum, ==, KiB);
    g_assert_cmpint(bdrv_block_status(bs, 4 * KiB, 8 * KiB, &pnum, &is_data), ==, 0);
    g_assert_false(is_data);
    g_assert_cmpint(bdrv_block_status_ext(bs, MiB, 1, 0, &pnum, &st, NULL), ==, -EINVAL);
    g_assert_cmpint(bdrv_block_status_ext(bs, 0, 0, 0, &pnum, &st, NULL), ==, -EINVAL);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) g_test_add(path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
    ADD("/block-graph/unknown-format", test_unknown_format);
    ADD("/block-graph/raw-refuses-qcow2-options", test_raw_refuses_qcow2_options);
    ADD("/block-graph/auto-raw", test_auto_raw);
    ADD("/block-graph/auto-foreign", test_auto_foreign);
    ADD("/block-graph/probed-raw-refuses-header", test_probed_raw_refuses_header);
    ADD("/block-graph/create-new-file", test_create_new_file);
    ADD("/block-graph/create-rule-qcow2", test_create_rule_qcow2);
    ADD("/block-graph/walk-raw", test_walk_raw);
    ADD("/block-graph/status-ext-raw", test_status_ext_raw);
    return g_test_run();
}
