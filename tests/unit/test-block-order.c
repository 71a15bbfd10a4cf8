/* The order of a chunk's units (migration/block/order.c) and mirrored
 * guest writes (mirror.c), in-process: a unit is handed on only once
 * every unit of its chunk that cleared dirty bits before it was; a
 * mirrored write re-reads what it cleared, waits behind an earlier job of
 * its chunk and returns only once its unit is done; a write to a range
 * the bulk copy has not walked is not mirrored. */
#include <glib.h>
#include <string.h>

#include "../../migration/block/block-internal.h"
#include "../lib/blk-mig-device.h"
#include "../lib/drives.h"

#define DRIVE_SIZE (4 * MiB)
#define GRAN 4096

typedef struct Fixture {
    TestBlkMigDevice d;
    BlkOrder *order;
} Fixture;

static void fixture_setup(Fixture *f, gconstpointer data)
{
    tbd_open(&f->d, "test-block-order-XXXXXX", DRIVE_SIZE, GRAN);
    f->order = blk_order_new();
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    blk_order_free(f->order);
    g_assert_true(tbd_close(&f->d));
}

static BlkChunkJob *unit(Fixture *f, uint64_t chunk)
{
    BlkChunkJob *job = blk_chunk_job_new(f->d.dev.bs, "d0", chunk, DRIVE_SIZE);

    blk_order_lock(f->order);
    blk_order_enter_locked(f->order, job);
    blk_order_unlock(f->order);
    return job;
}

static void test_turnstile(Fixture *f, gconstpointer data)
{
    BlkChunkJob *a = unit(f, 0), *b = unit(f, 0), *c = unit(f, MiB);

    g_assert_true(blk_order_is_first(f->order, a));
    g_assert_false(blk_order_is_first(f->order, b));
    g_assert_true(blk_order_is_first(f->order, c));      /* another chunk */
    g_assert_cmpuint(a->seq, <, b->seq);
    blk_order_leave(f->order, a);
    g_assert_true(blk_order_is_first(f->order, b));
    blk_order_leave(f->order, b);
    blk_order_leave(f->order, c);
    /* A new unit of an empty chunk is first at once. */
    blk_chunk_job_free(a);
    a = unit(f, 0);
    g_assert_true(blk_order_is_first(f->order, a));
    blk_order_leave(f->order, a);
    blk_chunk_job_free(a);
    blk_chunk_job_free(b);
    blk_chunk_job_free(c);
}

/* Runs of dirty granules of a sub-range, clipped to it granule-wise, and
 * only theirs are cleared. */
static void test_take_dirty(Fixture *f, gconstpointer data)
{
    BlkChunkJob *job = blk_chunk_job_new(f->d.dev.bs, "d0", MiB, DRIVE_SIZE);
    BlkRange *r;

    dirty_bitmap_mark(f->d.dev.bitmap, MiB + 8192, 3 * GRAN);         /* granules 2..4 */
    dirty_bitmap_mark(f->d.dev.bitmap, MiB + 40 * GRAN, 1);            /* granule 40 */
    blk_order_lock(f->order);
    blk_order_take_dirty_locked(&f->d.dev, job, MiB + 3 * GRAN + 100, 20 * GRAN, false);
    blk_order_unlock(f->order);
    g_assert_cmpuint(job->ranges->len, ==, 1);
    r = &g_array_index(job->ranges, BlkRange, 0);
    g_assert_cmpuint(r->off, ==, MiB + 3 * GRAN);
    g_assert_cmpuint(r->len, ==, 2 * GRAN);
    g_assert_true(dirty_bitmap_is_dirty(f->d.dev.bitmap, MiB + 2 * GRAN));
    g_assert_false(dirty_bitmap_is_dirty(f->d.dev.bitmap, MiB + 3 * GRAN));
    g_assert_true(dirty_bitmap_is_dirty(f->d.dev.bitmap, MiB + 40 * GRAN));
    blk_chunk_job_free(job);

    /* qemu-compat: the whole chunk, once any bit of it was set. */
    job = blk_chunk_job_new(f->d.dev.bs, "d0", MiB, DRIVE_SIZE);
    blk_order_take_dirty_locked(&f->d.dev, job, MiB + 3 * GRAN, GRAN, true);
    g_assert_cmpuint(job->ranges->len, ==, 1);
    g_assert_cmpuint(g_array_index(job->ranges, BlkRange, 0).len, ==, MiB);
    g_assert_cmpint(dirty_bitmap_next_dirty(f->d.dev.bitmap, 0), ==, -1);
    blk_chunk_job_free(job);
}

typedef struct Writer {
    Fixture *f;
    BlkMirror *mirror;
    uint64_t off;
    gint done;
} Writer;

/* A guest write: data, dirty mark (as the block layer does), mirror. */
static gpointer writer_thread(gpointer opaque)
{
    Writer *w = opaque;
    uint8_t buf[GRAN];

    td_fill(buf, sizeof(buf), 9);
    g_assert_cmpint(bdrv_pwrite(w->f->d.dev.bs, w->off, buf, sizeof(buf), 0), ==, 0);
    blk_mirror_write(w->mirror, &w->f->d.dev, w->off, sizeof(buf));
    g_atomic_int_set(&w->done, 1);
    return NULL;
}

/* The migration thread's side: the first unit ready and first of its
 * chunk, waiting up to a few seconds for one. */
static BlkChunkJob *take_within(BlkMirror *m, gint64 timeout_us)
{
    gint64 deadline = g_get_monotonic_time() + timeout_us;
    BlkChunkJob *job;

    while (!(job = blk_mirror_take(m)) && g_get_monotonic_time() < deadline) {
        g_usleep(1000);
    }
    return job;
}

static void test_mirror_waits_for_job(Fixture *f, gconstpointer data)
{
    BlkChunkOptions o = { .zero_blocks = true };
    BlkPipeline *p = blk_pipeline_new(&o, 4 * MiB);
    BlkMirror *m = blk_mirror_new(f->order, &o, 4 * MiB, p);
    Writer w = { .f = f, .mirror = m, .off = 3 * MiB + 5 * GRAN };
    BlkChunkJob *job, *u;
    GThread *t;

    f->d.dev.bulk_cursor = 2 * MiB;       /* chunks 0 and 1 copied */
    blk_mirror_set_active(m, true, 0);
    /* Not copied yet: not mirrored, the bit stays for the bulk walk. */
    writer_thread(&w);
    g_assert_true(blk_mirror_is_empty(m));
    g_assert_true(dirty_bitmap_is_dirty(f->d.dev.bitmap, w.off));

    /* Copied, and a job of the chunk took its place before the write. */
    w.off = MiB + 5 * GRAN;
    w.done = 0;
    job = unit(f, MiB);
    t = g_thread_new("guest", writer_thread, &w);
    g_assert_null(take_within(m, 300 * 1000));
    g_assert_false(g_atomic_int_get(&w.done));
    blk_order_leave(f->order, job);
    u = take_within(m, 5 * G_USEC_PER_SEC);
    g_assert_nonnull(u);
    g_assert_cmpuint(u->records->len, ==, 1);
    g_assert_cmpuint(g_array_index(u->records, BlkRecord, 0).offset, ==, w.off);
    g_assert_false(dirty_bitmap_is_dirty(f->d.dev.bitmap, w.off));
    g_assert_false(g_atomic_int_get(&w.done));          /* not sent yet */
    blk_mirror_done(m, u, true);
    g_thread_join(t);
    g_assert_true(g_atomic_int_get(&w.done));
    blk_chunk_job_free(job);
    blk_mirror_stop_waiting(m);
    blk_mirror_free(m);
    blk_pipeline_free(p);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add("/block-order/turnstile", Fixture, NULL, fixture_setup, test_turnstile,
               fixture_teardown);
    g_test_add("/block-order/take-dirty", Fixture, NULL, fixture_setup, test_take_dirty,
               fixture_teardown);
    g_test_add("/block-order/mirror-waits-for-job", Fixture, NULL, fixture_setup,
               test_mirror_waits_for_job, fixture_teardown);
    return g_test_run();
}
