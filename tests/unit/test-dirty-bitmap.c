/* Dirty bitmaps: single-thread semantics, and no mark lost or invented
 * while writers race a snapshot-and-clear reader. */
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>

#include "block/block.h"
#include "block/dirty-bitmap.h"
#include "util/bitmap.h"
#include "util/size.h"

#define GRAN (64 * KiB)
/* 256 granules and a last partial one of 1000 bytes. */
#define DRIVE_SIZE (16 * MiB + 1000)
#define NGRANULES (DRIVE_SIZE / GRAN + 1)

typedef struct Fixture {
    char *dir;
    char *path;
    BlockDriverState *bs;
    DirtyBitmap *bm;
} Fixture;

static void fixture_setup(Fixture *f, gconstpointer data)
{
    GError *err = NULL;
    f->dir = g_dir_make_tmp("test-dirty-bitmap-XXXXXX", &err);
    g_assert_no_error(err);
    f->path = g_build_filename(f->dir, "disk.raw", NULL);
    BlockOptions opts = { .id = "d0", .filename = f->path, .size = DRIVE_SIZE, .create = true };
    f->bs = bdrv_open(&opts, &err);
    g_assert_no_error(err);
    f->bm = bdrv_create_dirty_bitmap(f->bs, GRAN);
    g_assert_nonnull(f->bm);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    bdrv_close(f->bs);          /* releases the bitmap too */
    g_assert_cmpint(g_unlink(f->path), ==, 0);
    g_assert_cmpint(g_rmdir(f->dir), ==, 0);
    g_free(f->path);
    g_free(f->dir);
}

static void test_basic(Fixture *f, gconstpointer data)
{
    DirtyBitmap *bm = f->bm;

    g_assert_cmpuint(dirty_bitmap_granularity(bm), ==, GRAN);
    g_assert_cmpuint(dirty_bitmap_dirty_bytes(bm), ==, 0);
    g_assert_cmpint(dirty_bitmap_next_dirty(bm, 0), ==, -1);

    /* One byte dirties its whole granule; a range straddling a boundary
     * dirties both. */
    dirty_bitmap_mark(bm, 3 * GRAN + 5, 1);
    dirty_bitmap_mark(bm, 10 * GRAN - 1, 2);
    g_assert_false(dirty_bitmap_is_dirty(bm, 3 * GRAN - 1));
    g_assert_true(dirty_bitmap_is_dirty(bm, 3 * GRAN));
    g_assert_true(dirty_bitmap_is_dirty(bm, 4 * GRAN - 1));
    g_assert_false(dirty_bitmap_is_dirty(bm, 4 * GRAN));
    g_assert_true(dirty_bitmap_is_dirty(bm, 9 * GRAN));
    g_assert_true(dirty_bitmap_is_dirty(bm, 10 * GRAN));
    g_assert_false(dirty_bitmap_is_dirty(bm, 11 * GRAN));
    g_assert_cmpuint(dirty_bitmap_dirty_bytes(bm), ==, 3 * GRAN);

    g_assert_cmpint(dirty_bitmap_next_dirty(bm, 0), ==, 3 * GRAN);
    g_assert_cmpint(dirty_bitmap_next_dirty(bm, 3 * GRAN + 100), ==, 3 * GRAN);
    g_assert_cmpint(dirty_bitmap_next_dirty(bm, 4 * GRAN), ==, 9 * GRAN);
    g_assert_cmpint(dirty_bitmap_next_dirty(bm, 11 * GRAN), ==, -1);
    g_assert_cmpint(dirty_bitmap_next_dirty(bm, DRIVE_SIZE), ==, -1);

    /* Length 0 and ranges outside the drive mark nothing. */
    dirty_bitmap_mark(bm, 20 * GRAN, 0);
    dirty_bitmap_mark(bm, DRIVE_SIZE, GRAN);
    g_assert_cmpuint(dirty_bitmap_dirty_bytes(bm), ==, 3 * GRAN);

    g_assert_false(dirty_bitmap_test_and_clear(bm, 0, 3 * GRAN));
    g_assert_true(dirty_bitmap_test_and_clear(bm, 2 * GRAN, 2 * GRAN));
    g_assert_false(dirty_bitmap_is_dirty(bm, 3 * GRAN));
    g_assert_false(dirty_bitmap_test_and_clear(bm, 2 * GRAN, 2 * GRAN));
    g_assert_cmpuint(dirty_bitmap_dirty_bytes(bm), ==, 2 * GRAN);

    dirty_bitmap_clear_all(bm);
    g_assert_cmpuint(dirty_bitmap_dirty_bytes(bm), ==, 0);
}

static void test_last_partial_granule(Fixture *f, gconstpointer data)
{
    DirtyBitmap *bm = f->bm;
    uint64_t last = (NGRANULES - 1) * (uint64_t)GRAN;

    dirty_bitmap_mark(bm, DRIVE_SIZE - 1, 1);
    g_assert_true(dirty_bitmap_is_dirty(bm, last));
    g_assert_cmpint(dirty_bitmap_next_dirty(bm, 0), ==, (int64_t)last);
    /* Only the 1000 bytes inside the drive count. */
    g_assert_cmpuint(dirty_bitmap_dirty_bytes(bm), ==, 1000);
    dirty_bitmap_mark(bm, 0, 1);
    g_assert_cmpuint(dirty_bitmap_dirty_bytes(bm), ==, GRAN + 1000);

    dirty_bitmap_set_all(bm);
    g_assert_cmpuint(dirty_bitmap_dirty_bytes(bm), ==, DRIVE_SIZE);
    g_assert_true(dirty_bitmap_test_and_clear(bm, last, 1000));
    g_assert_cmpuint(dirty_bitmap_dirty_bytes(bm), ==, DRIVE_SIZE - 1000);
}

static void test_snapshot(Fixture *f, gconstpointer data)
{
    DirtyBitmap *bm = f->bm;
    unsigned long out[BITMAP_WORDS(NGRANULES + 1)];

    dirty_bitmap_mark(bm, 5 * GRAN, 1);
    dirty_bitmap_mark(bm, 70 * GRAN, 3 * GRAN);     /* 70, 71, 72 */
    dirty_bitmap_mark(bm, DRIVE_SIZE - 1, 1);

    /* Window [4, 72): bit 0 is granule 4. */
    memset(out, 0xff, sizeof(out));
    g_assert_cmpuint(dirty_bitmap_snapshot_and_clear(bm, 4 * GRAN, 68 * GRAN, out), ==, 68);
    g_assert_cmpuint(bitmap_count(out, 68), ==, 3);
    g_assert_true(bitmap_test(out, 1));
    g_assert_true(bitmap_test(out, 66));
    g_assert_true(bitmap_test(out, 67));
    /* Cleared inside the window, untouched outside it. */
    g_assert_false(dirty_bitmap_is_dirty(bm, 5 * GRAN));
    g_assert_false(dirty_bitmap_is_dirty(bm, 71 * GRAN));
    g_assert_true(dirty_bitmap_is_dirty(bm, 72 * GRAN));

    /* A window running past the end is clipped to the drive. */
    g_assert_cmpuint(dirty_bitmap_snapshot_and_clear(bm, 72 * GRAN, 1ULL << 40, out), ==,
                     NGRANULES - 72);
    g_assert_cmpuint(bitmap_count(out, NGRANULES - 72), ==, 2);
    g_assert_true(bitmap_test(out, 0));
    g_assert_true(bitmap_test(out, NGRANULES - 73));
    g_assert_cmpuint(dirty_bitmap_dirty_bytes(bm), ==, 0);
    g_assert_cmpuint(dirty_bitmap_snapshot_and_clear(bm, DRIVE_SIZE, GRAN, out), ==, 0);
}

static void test_disabled(Fixture *f, gconstpointer data)
{
    DirtyBitmap *bm = f->bm;
    char buf[512] = "x";

    g_assert_true(dirty_bitmap_is_enabled(bm));
    dirty_bitmap_set_enabled(bm, false);
    g_assert_cmpint(bdrv_pwrite(f->bs, 0, buf, sizeof(buf), 0), ==, 0);
    g_assert_false(dirty_bitmap_is_dirty(bm, 0));
    dirty_bitmap_set_enabled(bm, true);
    g_assert_cmpint(bdrv_pwrite(f->bs, 0, buf, sizeof(buf), 0), ==, 0);
    g_assert_true(dirty_bitmap_is_dirty(bm, 0));
}

/* ---- Concurrency ---- */

/* A fine bitmap so that the writers leave most granules clean: a lost or
 * invented mark then shows. */
#define CGRAN 512
#define CGRANULES ((DRIVE_SIZE + CGRAN - 1) / CGRAN)
#define NWRITERS 4
#define MARKS_PER_WRITER 4000

typedef struct Writer {
    DirtyBitmap *bm;
    gint *snapshots;                    /* the reader's count */
    guint32 seed;
    bool marked[CGRANULES];
} Writer;

typedef struct Reader {
    DirtyBitmap *bm;
    gint *stop;
    bool seen[CGRANULES];
    gint snapshots;
} Reader;

/* Wait until the reader has taken a snapshot since now, so that marks and
 * snapshots interleave however busy the machine is (a reader left
 * unscheduled until the writers end would test nothing). */
static void wait_for_snapshot(gint *snapshots)
{
    gint seen = g_atomic_int_get(snapshots);

    while (g_atomic_int_get(snapshots) == seen) {
        g_usleep(100);
    }
}

static gpointer writer_thread(gpointer opaque)
{
    Writer *w = opaque;
    GRand *rand = g_rand_new_with_seed(w->seed);

    for (int i = 0; i < MARKS_PER_WRITER; i++) {
        uint64_t off = (uint64_t)g_rand_int_range(rand, 0, DRIVE_SIZE);
        uint64_t len = g_rand_int_range(rand, 0, 8) ? 1 : (uint64_t)g_rand_int_range(rand, 1, 3 * CGRAN);
        dirty_bitmap_mark(w->bm, off, len);
        uint64_t end = MIN(off + len, (uint64_t)DRIVE_SIZE);
        for (uint64_t g = off / CGRAN; g <= (end - 1) / CGRAN; g++) {
            w->marked[g] = true;
        }
        if (i % 64 == 0) {
            g_thread_yield();           /* let the reader interleave */
        }
        if (i == MARKS_PER_WRITER / 3 || i == MARKS_PER_WRITER * 2 / 3) {
            wait_for_snapshot(w->snapshots);
        }
    }
    g_rand_free(rand);
    return NULL;
}

static void collect_snapshot(Reader *r)
{
    static unsigned long out[BITMAP_WORDS(CGRANULES + 1)];
    uint64_t n = dirty_bitmap_snapshot_and_clear(r->bm, 0, DRIVE_SIZE, out);

    g_assert_cmpuint(n, ==, CGRANULES);
    for (uint64_t g = bitmap_find_next_set(out, n, 0); g < n; g = bitmap_find_next_set(out, n, g + 1)) {
        r->seen[g] = true;
    }
    g_atomic_int_inc(&r->snapshots);
}

static gpointer reader_thread(gpointer opaque)
{
    Reader *r = opaque;
    while (!g_atomic_int_get(r->stop)) {
        collect_snapshot(r);
        /* Mix the other atomic operation in as well. */
        if (dirty_bitmap_test_and_clear(r->bm, 7 * CGRAN, CGRAN)) {
            r->seen[7] = true;
        }
        g_thread_yield();
    }
    return NULL;
}

static void test_concurrent(Fixture *f, gconstpointer data)
{
    static Writer writers[NWRITERS];
    static Reader reader;
    GThread *threads[NWRITERS];
    gint stop = 0;
    DirtyBitmap *bm = bdrv_create_dirty_bitmap(f->bs, CGRAN);

    memset(&reader, 0, sizeof(reader));
    reader.bm = bm;
    reader.stop = &stop;
    GThread *rt = g_thread_new("reader", reader_thread, &reader);
    for (int i = 0; i < NWRITERS; i++) {
        memset(&writers[i], 0, sizeof(writers[i]));
        writers[i].bm = bm;
        writers[i].snapshots = &reader.snapshots;
        writers[i].seed = 1000 + (guint32)i;
        threads[i] = g_thread_new("writer", writer_thread, &writers[i]);
    }
    for (int i = 0; i < NWRITERS; i++) {
        g_thread_join(threads[i]);
    }
    g_atomic_int_set(&stop, 1);
    g_thread_join(rt);
    collect_snapshot(&reader);          /* what is left after the writers */

    unsigned marked = 0;
    for (uint64_t g = 0; g < CGRANULES; g++) {
        bool expect = false;
        for (int i = 0; i < NWRITERS; i++) {
            expect |= writers[i].marked[g];
        }
        if (expect != reader.seen[g]) {
            g_error("granule %" G_GUINT64_FORMAT ": marked %d, seen %d", g, expect, reader.seen[g]);
        }
        marked += expect;
    }
    g_test_message("%u of %u granules marked, %u snapshots", marked, (unsigned)CGRANULES,
                   reader.snapshots);
    g_assert_cmpuint(marked, >, CGRANULES / 10);
    g_assert_cmpuint(marked, <, CGRANULES * 9 / 10);
    g_assert_cmpuint(reader.snapshots, >, 2);
    g_assert_cmpuint(dirty_bitmap_dirty_bytes(bm), ==, 0);
    bdrv_release_dirty_bitmap(bm);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add("/dirty-bitmap/basic", Fixture, NULL, fixture_setup, test_basic, fixture_teardown);
    g_test_add("/dirty-bitmap/last-partial-granule", Fixture, NULL, fixture_setup,
               test_last_partial_granule, fixture_teardown);
    g_test_add("/dirty-bitmap/snapshot", Fixture, NULL, fixture_setup, test_snapshot, fixture_teardown);
    g_test_add("/dirty-bitmap/disabled", Fixture, NULL, fixture_setup, test_disabled, fixture_teardown);
    g_test_add("/dirty-bitmap/concurrent", Fixture, NULL, fixture_setup, test_concurrent,
               fixture_teardown);
    return g_test_run();
}
