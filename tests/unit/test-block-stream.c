/* Streaming in the block layer, on real qcow2 images over real backing
 * files: a copy lands only where the top layer is still unallocated; a
 * guest write racing with the copies always wins; a chain shortened to a
 * base or to nothing (qemu-img sees the new header, the data reads the
 * same); a crash at any write of a stream and its header change leaves an
 * image qemu-img finds sound, reading the same, naming the old backing
 * file or none; copy-on-read; readers while the chain changes. */
#include <errno.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/drives.h"
#include "../lib/qemu-tools.h"
#include "block/block.h"
#include "util/size.h"

#define DISK (8 * MiB)
#define CS (64 * KiB)

/* The test is linked with -Wl,--wrap=pwrite (Makefile): a crash child
 * dies right before its N-th write to any file. */
ssize_t __real_pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off);
static gint64 writes_until_crash = -1;     /* < 0: never */
static gint64 writes_done;

ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    if (writes_until_crash >= 0 && writes_done >= writes_until_crash) {
        _exit(0);
    }
    writes_done++;
    return __real_pwrite(fd, buf, n, off);
}

/* ---- Images ---- */

static char *dir;

static char *path(const char *name)
{
    return g_build_filename(dir, name, NULL);
}

/* base.raw: DISK bytes, data in [1M, 3M) and [5M+4k, 5M+68k), holes
 * elsewhere. */
static void make_base(void)
{
    g_autofree char *p = path("base.raw");
    BlockDriverState *bs = td_open_drive("mkbase", p, DISK);

    td_write_drive(bs, 1 * MiB, 2 * MiB, 1);
    td_write_drive(bs, 5 * MiB + 4096, 64 * KiB, 2);
    bdrv_close(bs);
}

static BlockDriverState *open_image(const char *id, const char *name, const char *backing,
                                    bool create, bool cor)
{
    g_autofree char *p = path(name);
    BlockOptions opts = {
        .id = id, .filename = p, .format = "qcow2", .create = create, .overwrite = create,
        .backing = backing, .copy_on_read = cor,
    };
    GError *err = NULL;
    BlockDriverState *bs = bdrv_open(&opts, &err);
    g_assert_no_error(err);
    return bs;
}

/* top.qcow2 over base.raw, with the guest's data at 2M+512 (inside base
 * data) and at 6M (in a hole). */
static BlockDriverState *make_top(void)
{
    BlockDriverState *bs = open_image("top", "top.qcow2", "base.raw", true, false);
    td_write_drive(bs, 2 * MiB + 512, 1024, 7);
    td_write_drive(bs, 6 * MiB, 4096, 8);
    return bs;
}

static uint8_t *read_all(BlockDriverState *bs)
{
    uint8_t *buf = g_malloc(DISK);
    g_assert_cmpint(bdrv_pread(bs, 0, buf, DISK), ==, 0);
    return buf;
}

/* Copy everything BS lacks from its chain above BASE, in MAX-byte steps. */
static void stream_all(BlockDriverState *bs, BlockDriverState *base, uint64_t max)
{
    uint8_t *buf = bdrv_buf_alloc(bs, MAX(max, CS));
    uint64_t off = 0, start, len;
    bool read_failed;

    for (;;) {
        g_assert_cmpint(bdrv_stream_next(bs, base, off, max, &start, &len), ==, 0);
        if (len == 0) {
            break;
        }
        g_assert_cmpuint(start % CS, ==, 0);
        g_assert_cmpint(bdrv_stream_copy(bs, start, len, buf, base == NULL, &read_failed), ==, 0);
        off = start + len;
    }
    g_assert_cmpuint(start, ==, DISK);
    bdrv_buf_free(buf);
}

static BdrvStatus top_status(BlockDriverState *bs, uint64_t off)
{
    uint64_t pnum;
    BdrvStatus st;
    g_assert_cmpint(bdrv_block_status_ext(bs, off, 1, BDRV_STATUS_TOP_ONLY, &pnum, &st, NULL),
                    ==, 0);
    return st;
}

/* ---- Tests ---- */

/* Only what the top lacks and the base holds is copied; the guest's data
 * stays; the base's holes are not copied at all. */
static void test_copy_unallocated_only(void)
{
    BlockDriverState *bs = make_top();
    g_autofree uint8_t *before = read_all(bs);

    g_assert_cmpint(bdrv_prepare_write(bs, 0, DISK), ==, 0);      /* the L2 tables, first */
    g_assert_cmpint(top_status(bs, 1 * MiB), ==, BDRV_STATUS_BACKING);
    stream_all(bs, NULL, MiB);
    g_autofree uint8_t *after = read_all(bs);
    g_assert_cmpmem(before, DISK, after, DISK);
    g_assert_cmpint(top_status(bs, 1 * MiB), ==, BDRV_STATUS_DATA);
    g_assert_cmpint(top_status(bs, 5 * MiB), ==, BDRV_STATUS_DATA);
    g_assert_cmpint(top_status(bs, 0), ==, BDRV_STATUS_BACKING);
    g_assert_cmpint(top_status(bs, 4 * MiB), ==, BDRV_STATUS_BACKING);
    g_assert_cmpint(top_status(bs, 7 * MiB), ==, BDRV_STATUS_BACKING);
    bdrv_close(bs);
    g_autofree char *top = path("top.qcow2");
    g_assert_cmpint(qt_check(top), ==, 0);
}

/* ---- A guest racing the copies ---- */

#define RACE_WRITERS 3
#define RACE_ROUNDS 6

typedef struct Race {
    BlockDriverState *bs;
    uint8_t *model;              /* what the disk must read: base, then writes */
    gint stop;
} Race;

typedef struct RaceWriter {
    Race *race;
    unsigned t;
    GRand *rand;
} RaceWriter;

/* Writer T owns the clusters c with c % RACE_WRITERS == T: writes of 4k
 * at random places in them (data, or write-zeroes), recorded in the
 * model. */
static void race_write(RaceWriter *w, uint8_t *buf)
{
    uint64_t nclusters = DISK / CS / RACE_WRITERS;
    uint64_t c = g_rand_int_range(w->rand, 0, (gint32)nclusters) * RACE_WRITERS + w->t;
    uint64_t off = c * CS + g_rand_int_range(w->rand, 0, CS / 4096) * 4096;

    if (g_rand_int_range(w->rand, 0, 8) == 0) {
        g_assert_cmpint(bdrv_pwrite_zeroes(w->race->bs, off, 4096, 0), ==, 0);
        memset(w->race->model + off, 0, 4096);
        return;
    }
    td_fill(buf, 4096, (uint8_t)g_rand_int(w->rand));
    g_assert_cmpint(bdrv_pwrite(w->race->bs, off, buf, 4096, 0), ==, 0);
    memcpy(w->race->model + off, buf, 4096);
}

static gpointer race_writer(gpointer opaque)
{
    RaceWriter *w = opaque;
    uint8_t buf[4096];

    while (!g_atomic_int_get(&w->race->stop)) {
        race_write(w, buf);
    }
    return NULL;
}

/* One round: writers start, the whole disk is streamed one cluster at a
 * time, writers stop; the disk must read as the model. */
static void race_round(unsigned round)
{
    BlockDriverState *bs = open_image("race", "race.qcow2", "base.raw", true, false);
    Race race = { .bs = bs, .model = read_all(bs) };
    RaceWriter w[RACE_WRITERS];
    GThread *threads[RACE_WRITERS];

    for (unsigned t = 0; t < RACE_WRITERS; t++) {
        w[t] = (RaceWriter){ &race, t, g_rand_new_with_seed(round * 10 + t) };
        threads[t] = g_thread_new("race-writer", race_writer, &w[t]);
    }
    stream_all(bs, NULL, CS);
    g_atomic_int_set(&race.stop, 1);
    for (unsigned t = 0; t < RACE_WRITERS; t++) {
        g_thread_join(threads[t]);
        g_rand_free(w[t].rand);
    }
    g_autofree uint8_t *got = read_all(bs);
    g_assert_cmpmem(got, DISK, race.model, DISK);
    bdrv_close(bs);
    g_free(race.model);
}

/* Guest writes always win over a copy of the stale base data. */
static void test_guest_wins(void)
{
    for (unsigned r = 0; r < RACE_ROUNDS; r++) {
        race_round(r);
    }
    g_autofree char *img = path("race.qcow2");
    g_assert_cmpint(qt_check(img), ==, 0);
}

/* ---- Shortening the chain ---- */

/* mid.qcow2 over base.raw: data at 2M (over base data), zeroes at 1M (a
 * zero cluster over base data), data at 4M (a base hole). */
static void make_mid(void)
{
    BlockDriverState *mid = open_image("mid", "mid.qcow2", "base.raw", true, false);

    td_write_drive(mid, 2 * MiB, 128 * KiB, 3);
    g_assert_cmpint(bdrv_pwrite_zeroes(mid, 1 * MiB, CS, 0), ==, 0);
    td_write_drive(mid, 4 * MiB, CS, 4);
    bdrv_close(mid);
}

/* top over mid over base: streaming down to base copies what mid holds
 * (its zeroes too); the header then names base.raw; qemu-img agrees. */
static void test_stream_to_base(void)
{
    make_mid();
    BlockDriverState *bs = open_image("top", "top.qcow2", "mid.qcow2", true, false);
    g_autofree uint8_t *before = read_all(bs);
    BlockDriverState *base = bdrv_find_backing_image(bs, "base.raw");
    GError *err = NULL;

    g_assert_nonnull(base);
    g_assert_true(bdrv_get_backing(bdrv_get_backing(bs)) == base);
    stream_all(bs, base, MiB);
    g_assert_cmpint(top_status(bs, 0), ==, BDRV_STATUS_BACKING);
    g_assert_cmpint(bdrv_change_backing(bs, base, "base.raw", &err), ==, 0);
    g_assert_no_error(err);
    g_assert_true(bdrv_get_backing(bs) == base);
    g_assert_cmpint(bdrv_get_backing_depth(bs), ==, 1);
    g_autofree uint8_t *after = read_all(bs);
    g_assert_cmpmem(before, DISK, after, DISK);
    bdrv_close(bs);

    g_autofree char *top = path("top.qcow2");
    g_autoptr(JsonNode) info = qt_info(top);
    g_assert_cmpstr(json_object_get_string_member(json_node_get_object(info),
                    "backing-filename"), ==, "base.raw");
    g_assert_cmpstr(json_object_get_string_member(json_node_get_object(info),
                    "backing-filename-format"), ==, "raw");
    g_assert_cmpint(qt_check(top), ==, 0);
}

/* The whole chain: the header names no backing file, the image alone
 * reads as the chain did. */
static void test_stream_all_drops_backing(void)
{
    BlockDriverState *bs = make_top();
    g_autofree uint8_t *before = read_all(bs);
    GError *err = NULL;

    stream_all(bs, NULL, 3 * CS);
    g_assert_cmpint(bdrv_change_backing(bs, NULL, NULL, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_null(bdrv_get_backing(bs));
    g_assert_null(bdrv_get_backing_filename(bs));
    g_autofree uint8_t *after = read_all(bs);
    g_assert_cmpmem(before, DISK, after, DISK);
    bdrv_close(bs);

    g_autofree char *top = path("top.qcow2");
    g_autoptr(JsonNode) info = qt_info(top);
    g_assert_false(json_object_has_member(json_node_get_object(info), "backing-filename"));
    g_assert_cmpint(qt_check(top), ==, 0);
    g_autofree char *raw = path("expected.raw");
    g_assert_true(g_file_set_contents(raw, (char *)before, DISK, NULL));
    g_assert_true(qt_compare(top, "qcow2", raw, "raw"));
}

/* ---- Crashes ---- */

/* The child: stream all of top.qcow2 and drop its backing file, dying
 * before write CRASH_AT (< 0: never, it dies right after, without closing
 * the image); exits with the writes it did. */
static G_NORETURN void crash_child(gint64 crash_at)
{
    BlockDriverState *bs = open_image("top", "top.qcow2", NULL, false, false);

    writes_done = 0;
    writes_until_crash = crash_at;
    stream_all(bs, NULL, 2 * CS);
    g_assert_cmpint(bdrv_change_backing(bs, NULL, NULL, NULL), ==, 0);
    writes_until_crash = -1;
    _exit((int)MIN(writes_done, 255));
}

static int run_child(gint64 crash_at)
{
    int status;
    pid_t pid = fork();

    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        crash_child(crash_at);
    }
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* After a crash: sound (leaks allowed), the same data, old or no backing. */
static void check_after_crash(const char *top, const char *expected, gint64 at)
{
    g_autoptr(JsonNode) info = qt_info(top);
    JsonObject *o = json_node_get_object(info);
    const char *backing = json_object_has_member(o, "backing-filename")
        ? json_object_get_string_member(o, "backing-filename") : NULL;

    g_test_message("crash before write %" G_GINT64_FORMAT ": backing %s", at,
                   backing ? backing : "none");
    g_assert_true(backing == NULL || strcmp(backing, "base.raw") == 0);
    qt_check(top);
    g_assert_true(qt_compare(top, "qcow2", expected, "raw"));
}

/* A crash before each write of a stream and its header change. */
static void test_crash_points(void)
{
    g_autofree char *top = path("top.qcow2"), *saved = path("saved.qcow2");
    g_autofree char *expected = path("expected.raw");
    BlockDriverState *bs = make_top();
    g_autofree uint8_t *data = read_all(bs);

    bdrv_close(bs);
    g_assert_true(g_file_set_contents(expected, (char *)data, DISK, NULL));
    g_free(qt_run("cp %s %s", top, saved));
    int writes = run_child(-1);
    g_assert_cmpint(writes, >, 10);
    g_assert_cmpint(writes, <, 255);
    g_autoptr(JsonNode) info = qt_info(top);
    g_assert_false(json_object_has_member(json_node_get_object(info), "backing-filename"));
    g_assert_true(qt_compare(top, "qcow2", expected, "raw"));     /* killed right after */
    for (gint64 at = 0; at < writes; at++) {
        g_free(qt_run("cp %s %s", saved, top));
        g_assert_cmpint(run_child(at), ==, 0);
        check_after_crash(top, expected, at);
    }
}

/* ---- Copy-on-read, and readers while the chain changes ---- */

/* Reads pull whole clusters into the top; a cluster nobody read stays
 * with the base; the guest's own data is not touched. */
static void test_copy_on_read(void)
{
    bdrv_close(make_top());
    BlockDriverState *bs = open_image("cor", "top.qcow2", NULL, false, true);
    uint8_t buf[512];

    g_assert_cmpint(top_status(bs, 1 * MiB + CS), ==, BDRV_STATUS_BACKING);
    g_assert_cmpint(bdrv_pread(bs, 1 * MiB + CS + 100, buf, sizeof(buf)), ==, 0);
    g_assert_cmpint(top_status(bs, 1 * MiB + CS), ==, BDRV_STATUS_DATA);
    g_assert_cmpint(top_status(bs, 1 * MiB + 2 * CS), ==, BDRV_STATUS_BACKING);
    g_autofree uint8_t *all = read_all(bs);
    bdrv_close(bs);

    bs = open_image("plain", "top.qcow2", NULL, false, false);
    g_autofree uint8_t *again = read_all(bs);
    g_assert_cmpmem(all, DISK, again, DISK);
    g_assert_cmpint(top_status(bs, 1 * MiB + 2 * CS), ==, BDRV_STATUS_DATA);
    g_assert_cmpint(top_status(bs, 0), ==, BDRV_STATUS_BACKING);    /* a hole: nothing */
    bdrv_close(bs);
}

typedef struct Reader {
    BlockDriverState *bs;
    const uint8_t *expected;
    gint stop;
    gint reads;
} Reader;

static gpointer reader(gpointer opaque)
{
    Reader *r = opaque;
    uint8_t *buf = g_malloc(MiB);

    for (uint64_t off = 0; !g_atomic_int_get(&r->stop); off = (off + MiB) % DISK) {
        g_assert_cmpint(bdrv_pread(r->bs, off, buf, MiB), ==, 0);
        g_assert_cmpmem(buf, MiB, r->expected + off, MiB);
        g_atomic_int_inc(&r->reads);
    }
    g_free(buf);
    return NULL;
}

/* Readers keep reading while the backing chain is dropped under them. */
static void test_readers_during_change(void)
{
    BlockDriverState *bs = make_top();
    g_autofree uint8_t *expected = read_all(bs);
    Reader r = { .bs = bs, .expected = expected };
    GThread *t[2] = { g_thread_new("r0", reader, &r), g_thread_new("r1", reader, &r) };

    stream_all(bs, NULL, MiB);
    while (g_atomic_int_get(&r.reads) < 20) {
        g_usleep(1000);
    }
    g_assert_cmpint(bdrv_change_backing(bs, NULL, NULL, NULL), ==, 0);
    int reads = g_atomic_int_get(&r.reads);
    while (g_atomic_int_get(&r.reads) < reads + 20) {
        g_usleep(1000);
    }
    g_atomic_int_set(&r.stop, 1);
    g_thread_join(t[0]);
    g_thread_join(t[1]);
    g_assert_null(bdrv_get_backing(bs));
    bdrv_close(bs);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    dir = g_dir_make_tmp("test-block-stream-XXXXXX", NULL);
    make_base();
    g_test_add_func("/block-stream/copy-unallocated-only", test_copy_unallocated_only);
    g_test_add_func("/block-stream/guest-wins", test_guest_wins);
    g_test_add_func("/block-stream/stream-to-base", test_stream_to_base);
    g_test_add_func("/block-stream/stream-all-drops-backing", test_stream_all_drops_backing);
    g_test_add_func("/block-stream/crash-points", test_crash_points);
    g_test_add_func("/block-stream/copy-on-read", test_copy_on_read);
    g_test_add_func("/block-stream/readers-during-change", test_readers_during_change);
    int ret = g_test_run();
    if (!g_getenv("KEEP_TMP")) {
        g_free(qt_run("rm -rf %s", dir));
    }
    g_free(dir);
    return ret;
}
