/* The copy engine (copy/) on real files and pipes: identical and thin
 * results whatever the request shape, zero ranges as punched holes on a
 * target that holds old data, qcow2 targets, delta copies against a base
 * (from block status in a backing chain, or by comparing), verify, byte
 * streams in and out, bad parameters refused before anything is touched,
 * a cancel, and a mapped source that shrinks. */
#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "copy/copy.h"
#include "../../copy/copy-int.h"
#include "../lib/drives.h"
#include "../lib/files.h"
#include "../lib/qemu-tools.h"
#include "util/size.h"
#include "util/zero.h"

#define DISK (32 * MiB)
#define BLOCK 4096

typedef struct Fixture {
    char *dir;
    char *src;
    char *dst;
} Fixture;

static void fixture_setup(Fixture *f, gconstpointer data)
{
    GError *err = NULL;
    f->dir = g_dir_make_tmp("test-copy-XXXXXX", &err);
    g_assert_no_error(err);
    f->src = g_build_filename(f->dir, "src.raw", NULL);
    f->dst = g_build_filename(f->dir, "dst.img", NULL);
    BlockDriverState *bs = td_open_drive("mk", f->src, DISK);
    td_populate(bs, DISK, 7);
    bdrv_close(bs);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    bdrv_close_all();
    g_free(qt_run("rm -rf %s", f->dir));
    g_free(f->dir);
    g_free(f->src);
    g_free(f->dst);
}

static BlockDriverState *open_image(const char *id, const char *path, const char *format,
                                    bool read_only)
{
    BlockOptions o = { .id = id, .filename = path, .format = format, .read_only = read_only };
    GError *err = NULL;
    BlockDriverState *bs = bdrv_open(&o, &err);
    g_assert_no_error(err);
    return bs;
}

static BlockDriverState *create_image(const char *id, const char *path, const char *format,
                                      uint64_t size)
{
    BlockOptions o = { .id = id, .filename = path, .format = format, .size = size,
                       .create = true, .overwrite = true };
    GError *err = NULL;
    BlockDriverState *bs = bdrv_open(&o, &err);
    g_assert_no_error(err);
    return bs;
}

/* Copy drive SRC to drive DST with P; asserts the outcome. */
static CopyStats copy_drives(BlockDriverState *src, BlockDriverState *dst, const CopyParams *p,
                             CopyOutcome want)
{
    CopySide *s = copy_side_drive(src), *d = copy_side_drive(dst);
    CopyStats st = { 0 };
    GError *err = NULL;
    CopyOutcome out = copy_run(s, d, p, &st, &err);

    if (out != want) {
        g_error("copy outcome %d, not %d: %s", out, want, err ? err->message : "no error");
    }
    g_clear_error(&err);
    copy_side_free(s);
    copy_side_free(d);
    return st;
}

/* Bytes in the 4 KiB blocks of PATH holding anything but zeroes. */
static uint64_t nonzero_bytes(const char *path)
{
    gsize len;
    g_autofree uint8_t *buf = tf_read_file(path, &len);
    uint64_t n = 0;

    for (gsize off = 0; off < len; off += BLOCK) {
        gsize l = MIN((gsize)BLOCK, len - off);
        n += buffer_is_zero(buf + off, l) ? 0 : l;
    }
    return n;
}

static void assert_same_files(const char *a, const char *b)
{
    gsize la, lb;
    g_autofree uint8_t *x = tf_read_file(a, &la);
    g_autofree uint8_t *y = tf_read_file(b, &lb);
    g_assert_cmpmem(x, la, y, lb);
}

/* As thin as it can be: the non-zero blocks, plus file-system metadata. */
static void assert_thin(const char *path, uint64_t data)
{
    int64_t alloc = tf_allocated_bytes(path);
    g_assert_cmpint(alloc, >=, (int64_t)ROUND_UP(data, BLOCK));
    g_assert_cmpint(alloc, <=, (int64_t)ROUND_UP(data, BLOCK) + 64 * KiB);
}

/* ---- Plain copies ---- */

static void copy_new(Fixture *f, const CopyParams *p)
{
    BlockDriverState *src = open_image("s", f->src, "raw", true);
    BlockDriverState *dst = create_image("d", f->dst, "raw", DISK);
    CopyParams q = *p;

    q.target_is_zero = true;
    CopyStats st = copy_drives(src, dst, &q, COPY_DONE);
    bdrv_close(src);
    bdrv_close(dst);
    assert_same_files(f->src, f->dst);
    assert_thin(f->dst, nonzero_bytes(f->src));
    g_assert_cmpuint(st.written, ==, nonzero_bytes(f->src));
    g_assert_cmpuint(st.zeroed, ==, 0);
    g_assert_cmpuint(st.done, ==, DISK);
    g_assert_cmpuint(st.work, ==, DISK);
}

static void test_new_target(Fixture *f, gconstpointer data)
{
    copy_new(f, &(CopyParams){ 0 });
}

/* One request at a time of the smallest size; many of the largest. */
static void test_request_shapes(Fixture *f, gconstpointer data)
{
    copy_new(f, &(CopyParams){ .requests = 1, .request_size = BLOCK });
    g_unlink(f->dst);
    copy_new(f, &(CopyParams){ .requests = 7, .request_size = 12 * KiB });
    g_unlink(f->dst);
    copy_new(f, &(CopyParams){ .requests = 32, .request_size = 32 * MiB });
}

/* The source copied onto a raw target whose first OLD bytes hold old
 * data: the target then is the source, and as thin. */
static CopyStats copy_over_old_data(Fixture *f, uint64_t old)
{
    BlockDriverState *dst = create_image("d", f->dst, "raw", DISK);

    td_write_drive(dst, 0, old, 99);
    BlockDriverState *src = open_image("s", f->src, "raw", true);
    CopyStats st = copy_drives(src, dst, &(CopyParams){ 0 }, COPY_DONE);
    bdrv_close(src);
    bdrv_close(dst);
    assert_same_files(f->src, f->dst);
    assert_thin(f->dst, nonzero_bytes(f->src));
    return st;
}

/* A target full of old data: zero ranges are punched, not written. */
static void test_existing_target(Fixture *f, gconstpointer data)
{
    CopyStats st = copy_over_old_data(f, DISK);

    g_assert_cmpuint(st.zeroed + st.written, ==, DISK);
}

/* A target that exists but reads as zeroes outside its first MiB: the
 * source's holes get write-zeroes only there, where old data is;
 * everywhere else the target's block status says nothing is needed. */
static void test_existing_target_holes(Fixture *f, gconstpointer data)
{
    CopyStats st = copy_over_old_data(f, MiB);

    /* Zeroes went to the first MiB and to zero blocks inside the source's
     * data extents (found when read: ~1 MiB here); without the target's
     * status it was every zero byte (31 MiB). */
    g_assert_cmpuint(st.zeroed, <=, 3 * MiB);
    g_assert_cmpuint(st.skipped, >=, DISK - nonzero_bytes(f->src) - 3 * MiB);
    g_assert_cmpuint(st.zeroed + st.written + st.skipped, ==, DISK);
}

static void test_qcow2_target(Fixture *f, gconstpointer data)
{
    BlockDriverState *src = open_image("s", f->src, "auto", true);
    BlockDriverState *dst = create_image("d", f->dst, "qcow2", DISK);

    copy_drives(src, dst, &(CopyParams){ .target_is_zero = true, .verify = true }, COPY_DONE);
    bdrv_close(src);
    bdrv_close(dst);
    g_assert_true(qt_compare(f->src, "raw", f->dst, "qcow2"));
    g_assert_cmpint(qt_check(f->dst), ==, 0);
}

/* ---- Bases ---- */

/* The target holds the base; the source is the base with RANGES changed
 * (pairs of offset, length): only those reach the target. */
static const uint64_t changes[][2] = {
    { 64 * KiB, 8 * KiB }, { 5 * MiB, MiB }, { 2 * MiB + 4 * KiB, 4 * KiB }, { DISK - 4 * KiB, 4 * KiB },
};

static uint64_t changed_bytes(void)
{
    uint64_t n = 0;
    for (size_t i = 0; i < G_N_ELEMENTS(changes); i++) {
        n += changes[i][1];
    }
    return n;
}

/* New data in the first two changes, zeroes over data in the third (the
 * base has data at 2 MiB), new data at the end. */
static void apply_changes(BlockDriverState *bs)
{
    for (size_t i = 0; i < G_N_ELEMENTS(changes); i++) {
        if (i == 2) {
            g_assert_cmpint(bdrv_pwrite_zeroes(bs, changes[i][0], changes[i][1], 0), ==, 0);
        } else {
            td_write_drive(bs, changes[i][0], changes[i][1], (uint8_t)(40 + i));
        }
    }
    g_assert_cmpint(bdrv_flush(bs), ==, 0);
}

static void copy_with_base(Fixture *f, const char *src_path, const char *src_format,
                           bool verify, CopyStats *st)
{
    BlockDriverState *src = open_image("s", src_path, src_format, true);
    BlockDriverState *base = open_image("b", f->src, "raw", true);
    BlockDriverState *dst = open_image("d", f->dst, "raw", false);
    CopySide *b = copy_side_drive(base);

    *st = copy_drives(src, dst, &(CopyParams){ .base = b, .verify = verify }, COPY_DONE);
    copy_side_free(b);
    bdrv_close(src);
    bdrv_close(base);
    bdrv_close(dst);
}

/* A base that is not in the source's chain: read and compared. */
static void test_base_compare(Fixture *f, gconstpointer data)
{
    g_autofree char *newer = g_build_filename(f->dir, "newer.raw", NULL);
    CopyStats st;

    g_free(qt_run("cp --sparse=always %s %s", f->src, newer));
    g_free(qt_run("cp --sparse=always %s %s", f->src, f->dst));
    BlockDriverState *bs = open_image("n", newer, "raw", false);
    apply_changes(bs);
    bdrv_close(bs);
    copy_with_base(f, newer, "raw", true, &st);
    assert_same_files(newer, f->dst);
    g_assert_cmpuint(st.written + st.zeroed, ==, changed_bytes());
    g_assert_cmpuint(st.verified, ==, DISK);
}

/* A qcow2 overlay on the base: block status says what differs, and the
 * base is not read at all (the source reads only its own clusters). */
static void test_base_delta(Fixture *f, gconstpointer data)
{
    g_autofree char *overlay = g_build_filename(f->dir, "overlay.qcow2", NULL);
    g_autofree char *flat = g_build_filename(f->dir, "flat.raw", NULL);
    CopyStats st;

    g_free(qt_run("qemu-img create -q -f qcow2 -b %s -F raw %s", f->src, overlay));
    g_free(qt_run("cp --sparse=always %s %s", f->src, f->dst));
    BlockDriverState *bs = open_image("o", overlay, "qcow2", false);
    apply_changes(bs);
    bdrv_close(bs);
    copy_with_base(f, overlay, "auto", false, &st);
    g_free(qt_run("qemu-img convert -f qcow2 -O raw %s %s", overlay, flat));
    assert_same_files(flat, f->dst);
    /* Whole 64 KiB clusters of the overlay (the third change made a zero
     * cluster), nothing else: not even a read of the base's data. */
    uint64_t clusters = 0;
    for (size_t i = 0; i < G_N_ELEMENTS(changes); i++) {
        clusters += ROUND_UP(changes[i][0] + changes[i][1], 64 * KiB) -
                    ROUND_DOWN(changes[i][0], 64 * KiB);
    }
    g_assert_cmpuint(st.written + st.zeroed, <=, clusters);
    g_assert_cmpuint(st.written + st.zeroed, >=, changed_bytes());
    g_assert_cmpuint(st.read, <=, clusters);
    g_assert_cmpuint(st.skipped, >=, DISK - clusters);
}

/* ---- Streams ---- */

typedef struct Feeder {
    int fd;
    const uint8_t *data;
    size_t len;
} Feeder;

static gpointer feed(gpointer opaque)
{
    Feeder *fd = opaque;
    for (size_t off = 0; off < fd->len;) {
        ssize_t n = write(fd->fd, fd->data + off, MIN(fd->len - off, (size_t)65536));
        if (n <= 0) {
            break;
        }
        off += (size_t)n;
    }
    close(fd->fd);
    return NULL;
}

static gpointer drain(gpointer opaque)
{
    Feeder *fd = opaque;
    GByteArray *out = g_byte_array_new();
    uint8_t buf[65536];
    ssize_t n;

    while ((n = read(fd->fd, buf, sizeof(buf))) > 0) {
        g_byte_array_append(out, buf, (guint)n);
    }
    close(fd->fd);
    return out;
}

/* The source file through a pipe holding LEN of its bytes, into a new
 * raw target: the outcome. */
static CopyOutcome copy_from_pipe(Fixture *f, size_t len, GError **errp)
{
    int p[2];
    gsize flen;
    g_autofree uint8_t *data = tf_read_file(f->src, &flen);
    Feeder fd = { 0, data, len };

    g_assert_cmpint(pipe(p), ==, 0);
    fd.fd = p[1];
    GThread *t = g_thread_new("feed", feed, &fd);
    CopySide *s = copy_side_stream(p[0], DISK, false, "the pipe");
    BlockDriverState *dst = create_image("d", f->dst, "raw", DISK);
    CopySide *d = copy_side_drive(dst);
    CopyOutcome out = copy_run(s, d, &(CopyParams){ .target_is_zero = true }, NULL, errp);
    copy_side_free(s);
    close(p[0]);            /* the feeder's writes end, if it still writes */
    g_thread_join(t);
    copy_side_free(d);
    bdrv_close(dst);
    return out;
}

static void test_stream_source(Fixture *f, gconstpointer data)
{
    GError *err = NULL;

    g_assert_cmpint(copy_from_pipe(f, DISK, &err), ==, COPY_DONE);
    g_assert_no_error(err);
    assert_same_files(f->src, f->dst);
    assert_thin(f->dst, nonzero_bytes(f->src));
    g_assert_cmpint(copy_from_pipe(f, DISK - 5000, &err), ==, COPY_FAILED);
    g_assert_nonnull(strstr(err->message, "the pipe ended after 33549432 bytes, but 33554432"));
    g_clear_error(&err);
}

static void test_stream_target(Fixture *f, gconstpointer data)
{
    int p[2];
    gsize len;
    g_autofree uint8_t *want = tf_read_file(f->src, &len);
    GError *err = NULL;

    g_assert_cmpint(pipe(p), ==, 0);
    Feeder fd = { p[0], NULL, 0 };
    GThread *t = g_thread_new("drain", drain, &fd);
    BlockDriverState *src = open_image("s", f->src, "raw", true);
    CopySide *s = copy_side_drive(src);
    CopySide *d = copy_side_stream(p[1], DISK, true, "the pipe");
    CopyOutcome out = copy_run(s, d, &(CopyParams){ .requests = 8, .request_size = 64 * KiB },
                               NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpint(out, ==, COPY_DONE);
    copy_side_free(d);
    close(p[1]);
    GByteArray *got = g_thread_join(t);
    g_assert_cmpmem(got->data, got->len, want, len);
    g_byte_array_unref(got);
    copy_side_free(s);
}

/* ---- Refusals and cancel ---- */

static void expect_invalid(BlockDriverState *src, BlockDriverState *dst, const CopyParams *p,
                           const char *message)
{
    CopySide *s = copy_side_drive(src), *d = copy_side_drive(dst);
    CopyStats st = { 0 };
    GError *err = NULL;

    g_assert_cmpint(copy_run(s, d, p, &st, &err), ==, COPY_FAILED);
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
    if (!strstr(err->message, message)) {
        g_error("'%s' does not say '%s'", err->message, message);
    }
    g_error_free(err);
    copy_side_free(s);
    copy_side_free(d);
}

static void test_invalid(Fixture *f, gconstpointer data)
{
    BlockDriverState *src = open_image("s", f->src, "raw", true);
    BlockDriverState *dst = create_image("d", f->dst, "raw", DISK);
    g_autofree char *small_path = g_build_filename(f->dir, "small.raw", NULL);
    BlockDriverState *small = create_image("t", small_path, "raw", DISK / 2);
    CopySide *b = copy_side_drive(src);

    expect_invalid(src, small, NULL, "smaller than the source");
    expect_invalid(src, dst, &(CopyParams){ .requests = 65 }, "1..64");
    expect_invalid(src, dst, &(CopyParams){ .request_size = 1000 }, "multiple of 4 KiB");
    expect_invalid(src, dst, &(CopyParams){ .request_size = 64 * MiB }, "32 MiB");
    expect_invalid(src, dst, &(CopyParams){ .requests = 64, .request_size = 32 * MiB },
                   "1 GiB of buffers");
    expect_invalid(src, dst, &(CopyParams){ .base = b, .target_is_zero = true },
                   "does not read as zeroes");
    copy_side_free(b);
    g_assert_cmpint(tf_allocated_bytes(f->dst), ==, 0);       /* nothing written */
}

static bool stop_at_once(const CopyStats *st, void *opaque)
{
    (*(int *)opaque)++;
    return false;
}

/* A source that never sends: the first progress report cancels, and the
 * worker waiting on the pipe is woken. */
static void test_cancel(Fixture *f, gconstpointer data)
{
    int p[2];
    int calls = 0;
    GError *err = NULL;

    g_assert_cmpint(pipe(p), ==, 0);
    CopySide *s = copy_side_stream(p[0], DISK, false, "the pipe");
    BlockDriverState *dst = create_image("d", f->dst, "raw", DISK);
    CopySide *d = copy_side_drive(dst);
    CopyParams prm = { .progress = stop_at_once, .opaque = &calls };
    CopyOutcome out = copy_run(s, d, &prm, NULL, &err);

    g_assert_cmpint(out, ==, COPY_CANCELLED);
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_CANCELLED);
    g_assert_cmpint(calls, ==, 1);
    g_clear_error(&err);
    copy_side_free(s);
    copy_side_free(d);
    close(p[0]);
    close(p[1]);
}

/* A mapped source that shrinks under the scan for zeroes: the SIGBUS
 * of touching its lost pages is a failed read, not the end of the
 * process, and the next scan works as before. */
static void test_mapped_source_shrinks(Fixture *f, gconstpointer data)
{
    uint8_t block[2 * BLOCK];
    int fd = open(f->src, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    size_t run = 0;
    bool zero = true;

    g_assert_cmpint(fd, >=, 0);
    memset(block, 0x5a, sizeof(block));
    g_assert_cmpint(pwrite(fd, block, sizeof(block), 0), ==, sizeof(block));
    const uint8_t *p = mmap(NULL, sizeof(block), PROT_READ, MAP_SHARED, fd, 0);
    g_assert_true(p != MAP_FAILED);
    g_assert_true(copy_mapped_zero_run(p, sizeof(block), 0, &run, &zero));
    g_assert_cmpuint(run, ==, sizeof(block));
    g_assert_false(zero);

    g_assert_cmpint(ftruncate(fd, 0), ==, 0);
    g_assert_false(copy_mapped_zero_run(p, sizeof(block), 0, &run, &zero));

    g_assert_cmpint(ftruncate(fd, sizeof(block)), ==, 0);     /* a hole now */
    g_assert_true(copy_mapped_zero_run(p, sizeof(block), 0, &run, &zero));
    g_assert_cmpuint(run, ==, sizeof(block));
    g_assert_true(zero);
    munmap((void *)p, sizeof(block));
    close(fd);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) g_test_add(path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
    ADD("/copy/new-target", test_new_target);
    ADD("/copy/request-shapes", test_request_shapes);
    ADD("/copy/existing-target", test_existing_target);
    ADD("/copy/existing-target-holes", test_existing_target_holes);
    ADD("/copy/qcow2-target", test_qcow2_target);
    ADD("/copy/base/compare", test_base_compare);
    ADD("/copy/base/delta", test_base_delta);
    ADD("/copy/stream/source", test_stream_source);
    ADD("/copy/stream/target", test_stream_target);
    ADD("/copy/invalid", test_invalid);
    ADD("/copy/cancel", test_cancel);
    ADD("/copy/mapped-source-shrinks", test_mapped_source_shrinks);
    return g_test_run();
}
