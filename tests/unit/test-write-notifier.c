/* Block-layer write notifiers: called once per successful write, with its
 * range, after the dirty bitmap was marked and before the write returns;
 * never for a failed write; and removing one waits for a call in
 * progress. */
#include <glib.h>
#include <glib/gstdio.h>

#include "block/block.h"
#include "block/dirty-bitmap.h"
#include "util/size.h"
#include "../lib/drives.h"

#define DRIVE_SIZE (4 * MiB)

typedef struct Fixture {
    char *dir;
    char *path;
    BlockDriverState *bs;
    DirtyBitmap *bm;
} Fixture;

/* What a notifier saw. */
typedef struct Seen {
    Fixture *f;
    GArray *calls;              /* BlkRange-like pairs: off, len */
    bool bit_was_set;           /* the bitmap was marked before the call */
    /* Blocking mode: the call waits until released. */
    GMutex lock;
    GCond cond;
    bool block, inside, released;
} Seen;

static void fixture_setup(Fixture *f, gconstpointer data)
{
    GError *err = NULL;

    f->dir = g_dir_make_tmp("test-write-notifier-XXXXXX", &err);
    g_assert_no_error(err);
    f->path = g_build_filename(f->dir, "disk.raw", NULL);
    f->bs = td_open_drive("d0", f->path, DRIVE_SIZE);
    f->bm = bdrv_create_dirty_bitmap(f->bs, 4096);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    bdrv_close(f->bs);
    g_assert_cmpint(g_unlink(f->path), ==, 0);
    g_assert_cmpint(g_rmdir(f->dir), ==, 0);
    g_free(f->path);
    g_free(f->dir);
}

static void seen_init(Seen *s, Fixture *f)
{
    *s = (Seen){ .f = f, .calls = g_array_new(false, false, sizeof(uint64_t)) };
    g_mutex_init(&s->lock);
    g_cond_init(&s->cond);
}

static void seen_clear(Seen *s)
{
    g_array_unref(s->calls);
    g_mutex_clear(&s->lock);
    g_cond_clear(&s->cond);
}

static void on_write(void *opaque, uint64_t off, uint64_t len)
{
    Seen *s = opaque;

    g_mutex_lock(&s->lock);
    g_array_append_val(s->calls, off);
    g_array_append_val(s->calls, len);
    s->bit_was_set = dirty_bitmap_is_dirty(s->f->bm, off);
    s->inside = true;
    g_cond_broadcast(&s->cond);
    while (s->block && !s->released) {
        g_cond_wait(&s->cond, &s->lock);
    }
    s->inside = false;
    g_mutex_unlock(&s->lock);
}

static void assert_call(Seen *s, guint i, uint64_t off, uint64_t len)
{
    g_assert_cmpuint(s->calls->len, >, 2 * i + 1);
    g_assert_cmpuint(g_array_index(s->calls, uint64_t, 2 * i), ==, off);
    g_assert_cmpuint(g_array_index(s->calls, uint64_t, 2 * i + 1), ==, len);
}

static void test_every_write(Fixture *f, gconstpointer data)
{
    uint8_t buf[8192] = { 1 };
    Seen s;
    BdrvWriteNotifier *n;

    seen_init(&s, f);
    n = bdrv_add_write_notifier(f->bs, on_write, &s);
    g_assert_cmpint(bdrv_pwrite(f->bs, 12288, buf, sizeof(buf), 0), ==, 0);
    assert_call(&s, 0, 12288, sizeof(buf));
    g_assert_true(s.bit_was_set);
    g_assert_cmpint(bdrv_pwrite_zeroes(f->bs, MiB, 65536, BDRV_REQ_MAY_UNMAP), ==, 0);
    assert_call(&s, 1, MiB, 65536);
    g_assert_cmpint(bdrv_discard(f->bs, 2 * MiB, MiB), ==, 0);
    assert_call(&s, 2, 2 * MiB, MiB);
    /* A failed write is not one. */
    g_assert_cmpint(bdrv_pwrite(f->bs, DRIVE_SIZE, buf, sizeof(buf), 0), <, 0);
    g_assert_cmpuint(s.calls->len, ==, 6);
    /* Reads are not writes either. */
    g_assert_cmpint(bdrv_pread(f->bs, 0, buf, sizeof(buf)), ==, 0);
    g_assert_cmpuint(s.calls->len, ==, 6);
    bdrv_remove_write_notifier(n);
    g_assert_cmpint(bdrv_pwrite(f->bs, 0, buf, 512, 0), ==, 0);
    g_assert_cmpuint(s.calls->len, ==, 6);
    seen_clear(&s);
}

static gint written, removed;

static gpointer writer_thread(gpointer opaque)
{
    Fixture *f = opaque;
    uint8_t buf[4096] = { 7 };

    g_assert_cmpint(bdrv_pwrite(f->bs, 0, buf, sizeof(buf), 0), ==, 0);
    g_atomic_int_set(&written, 1);
    return NULL;
}

static gpointer remover_thread(gpointer opaque)
{
    bdrv_remove_write_notifier(opaque);
    g_atomic_int_set(&removed, 1);
    return NULL;
}

/* The write returns only after the notifier did, and a removal waits for
 * the call in progress. */
static void test_remove_waits(Fixture *f, gconstpointer data)
{
    Seen s;
    GThread *writer, *remover;
    gint64 deadline = g_get_monotonic_time() + 10 * G_USEC_PER_SEC;

    seen_init(&s, f);
    s.block = true;
    BdrvWriteNotifier *n = bdrv_add_write_notifier(f->bs, on_write, &s);
    writer = g_thread_new("writer", writer_thread, f);
    g_mutex_lock(&s.lock);
    while (!s.inside) {
        g_assert_true(g_cond_wait_until(&s.cond, &s.lock, deadline));
    }
    g_mutex_unlock(&s.lock);
    remover = g_thread_new("remover", remover_thread, n);
    g_usleep(100 * 1000);
    /* Held: neither the write nor the removal could finish. */
    g_assert_false(g_atomic_int_get(&written));
    g_assert_false(g_atomic_int_get(&removed));
    g_mutex_lock(&s.lock);
    s.released = true;
    g_cond_broadcast(&s.cond);
    g_mutex_unlock(&s.lock);
    g_thread_join(writer);
    g_thread_join(remover);
    g_assert_true(g_atomic_int_get(&written));
    g_assert_true(g_atomic_int_get(&removed));
    g_assert_false(s.inside);
    seen_clear(&s);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add("/write-notifier/every-write", Fixture, NULL, fixture_setup, test_every_write,
               fixture_teardown);
    g_test_add("/write-notifier/remove-waits", Fixture, NULL, fixture_setup,
               test_remove_waits, fixture_teardown);
    return g_test_run();
}
