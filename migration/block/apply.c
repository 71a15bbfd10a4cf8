/* Destination: writing validated block records on a thread of their own,
 * so the connection's thread keeps receiving while the disk writes.  Runs
 * of zero 4 KiB blocks become one write-zeroes (which may punch a hole),
 * runs of data one write; zero ranges merge across consecutive records
 * and skip whatever the guest reads as zeroes already. */
#include <errno.h>
#include <string.h>

#include "block/block.h"
#include "block-internal.h"
#include "util/zero.h"

typedef struct ZeroRun {
    BlockDriverState *bs;
    uint64_t off;
    uint64_t len;
} ZeroRun;

struct BlkApplier {
    BlkApplyBudget *budget;
    LoadFlusher *flusher;
    GAsyncQueue *queue;         /* BlkApplyItem *, or the markers below */
    GThread *thread;
    GMutex lock;
    GCond cond;
    char *error;                /* the first failed write */
    unsigned drains;            /* drain markers handled */
    ZeroRun pending;            /* writer thread only */
};

static BlkApplyItem drain_marker, stop_marker;

/* What a queued record without data counts against the budget, so that a
 * flood of zero records cannot queue without bound. */
#define ZERO_ITEM_COST 256

static void set_error(BlkApplier *a, BlockDriverState *bs, uint64_t off, int ret)
{
    g_mutex_lock(&a->lock);
    if (!a->error) {
        a->error = g_strdup_printf("block migration: drive '%s': writing at offset %"
                                   G_GUINT64_FORMAT " failed: %s",
                                   bdrv_get_id(bs), off, g_strerror(-ret));
    }
    g_mutex_unlock(&a->lock);
}

static bool has_error(BlkApplier *a)
{
    bool failed;

    g_mutex_lock(&a->lock);
    failed = a->error != NULL;
    g_mutex_unlock(&a->lock);
    return failed;
}

/* Write zeroes over [off, off+len) except where the guest reads zeroes
 * already (a hole, a zero cluster, nothing in the chain).  Where a backing
 * image shows data, the format keeps the top layer reading zero (qcow2:
 * zero clusters) rather than deallocate. */
static int write_zeroes(BlockDriverState *bs, uint64_t off, uint64_t len, uint64_t *fail_off)
{
    BdrvWalk w;
    BdrvExtent e;

    bdrv_walk_init(&w, bs, off, len, BDRV_WALK_GUEST, BDRV_WALK_ERROR_AS_DATA);
    while (bdrv_walk_next(&w, &e) > 0) {
        if (e.status != BDRV_STATUS_DATA) {
            continue;
        }
        int ret = bdrv_pwrite_zeroes(bs, e.off, e.len, BDRV_REQ_MAY_UNMAP);
        if (ret < 0) {
            *fail_off = e.off;
            return ret;
        }
    }
    return 0;
}

static void flush_zeroes(BlkApplier *a)
{
    ZeroRun *z = &a->pending;
    uint64_t fail_off = 0;
    int ret;

    if (!z->len || has_error(a)) {
        z->len = 0;
        return;
    }
    ret = write_zeroes(z->bs, z->off, z->len, &fail_off);
    if (ret < 0) {
        set_error(a, z->bs, fail_off, ret);
    }
    z->len = 0;
}

static void add_zeroes(BlkApplier *a, BlockDriverState *bs, uint64_t off, uint64_t len)
{
    ZeroRun *z = &a->pending;

    if (z->len && (z->bs != bs || z->off + z->len != off)) {
        flush_zeroes(a);
    }
    if (!z->len) {
        z->bs = bs;
        z->off = off;
    }
    z->len += len;
}

/* Runs of non-zero blocks as data, runs of zero blocks as zeroes. */
static void apply_data(BlkApplier *a, const BlkApplyItem *it)
{
    uint64_t pos = 0;

    while (pos < it->len && !has_error(a)) {
        uint64_t end = MIN(pos + BLK_GRAIN, it->len);
        bool zero = buffer_is_zero(it->data + pos, end - pos);

        while (end < it->len &&
               buffer_is_zero(it->data + end, MIN(BLK_GRAIN, it->len - end)) == zero) {
            end = MIN(end + BLK_GRAIN, it->len);
        }
        if (zero) {
            add_zeroes(a, it->bs, it->offset + pos, end - pos);
        } else {
            /* Earlier zeroes first: they may cover what this writes. */
            flush_zeroes(a);
            int ret = bdrv_pwrite(it->bs, it->offset + pos, it->data + pos, end - pos, 0);
            if (ret < 0) {
                set_error(a, it->bs, it->offset + pos, ret);
            }
        }
        pos = end;
    }
}

static void apply_item(BlkApplier *a, BlkApplyItem *it)
{
    if (!has_error(a)) {
        if (it->data) {
            apply_data(a, it);
        } else {
            add_zeroes(a, it->bs, it->offset, it->len);
        }
        if (blk_resume_load_resumable()) {
            /* Counted once written: zeroes are not held back. */
            flush_zeroes(a);
            if (!has_error(a)) {
                blk_resume_load_applied(it->bs, it->offset);
            }
        }
        load_flusher_written(a->flusher, it->len);
    }
    if (it->data) {
        blk_apply_budget_release(a->budget, it->data, it->data_cap);
    } else {
        blk_apply_budget_give(a->budget, ZERO_ITEM_COST);
    }
    g_free(it);
}

static gpointer writer_thread(gpointer opaque)
{
    BlkApplier *a = opaque;

    for (;;) {
        BlkApplyItem *it = g_async_queue_try_pop(a->queue);

        if (!it) {
            /* Idle: write the zeroes held back for merging. */
            flush_zeroes(a);
            it = g_async_queue_pop(a->queue);
        }
        if (it == &stop_marker) {
            break;
        }
        if (it == &drain_marker) {
            flush_zeroes(a);
            g_mutex_lock(&a->lock);
            a->drains++;
            g_cond_broadcast(&a->cond);
            g_mutex_unlock(&a->lock);
            continue;
        }
        apply_item(a, it);
    }
    return NULL;
}

BlkApplier *blk_applier_new(BlkApplyBudget *budget, LoadFlusher *flusher)
{
    BlkApplier *a = g_new0(BlkApplier, 1);

    a->budget = budget;
    a->flusher = flusher;
    a->queue = g_async_queue_new();
    g_mutex_init(&a->lock);
    g_cond_init(&a->cond);
    a->thread = g_thread_new("mig-writer", writer_thread, a);
    return a;
}

static bool get_error(BlkApplier *a, GError **errp)
{
    bool failed;

    g_mutex_lock(&a->lock);
    failed = a->error != NULL;
    if (failed) {
        g_set_error_literal(errp, MIG_ERROR, 0, a->error);
    }
    g_mutex_unlock(&a->lock);
    return failed;
}

bool blk_applier_push(BlkApplier *a, const BlkApplyItem *item, GError **errp)
{
    if (get_error(a, errp)) {
        if (item->data) {
            blk_apply_budget_release(a->budget, item->data, item->data_cap);
        }
        return false;
    }
    if (!item->data && !blk_apply_budget_take(a->budget, ZERO_ITEM_COST)) {
        g_set_error(errp, MIG_ERROR, 0, "block migration: the load was stopped");
        return false;
    }
    g_async_queue_push(a->queue, g_memdup2(item, sizeof(*item)));
    return true;
}

bool blk_applier_drain(BlkApplier *a, GError **errp)
{
    unsigned target;

    g_mutex_lock(&a->lock);
    target = a->drains + 1;
    g_mutex_unlock(&a->lock);
    g_async_queue_push(a->queue, &drain_marker);
    g_mutex_lock(&a->lock);
    while (a->drains < target) {
        g_cond_wait(&a->cond, &a->lock);
    }
    g_mutex_unlock(&a->lock);
    return !get_error(a, errp);
}

void blk_applier_free(BlkApplier *a)
{
    BlkApplyItem *it;

    if (!a) {
        return;
    }
    /* Drop what is queued: the load failed or everything was drained. */
    g_mutex_lock(&a->lock);
    if (!a->error) {
        a->error = g_strdup("block migration: stopped");
    }
    g_mutex_unlock(&a->lock);
    g_async_queue_push(a->queue, &stop_marker);
    g_thread_join(a->thread);
    while ((it = g_async_queue_try_pop(a->queue))) {
        if (it != &drain_marker) {
            apply_item(a, it);
        }
    }
    g_async_queue_unref(a->queue);
    g_free(a->error);
    g_cond_clear(&a->cond);
    g_mutex_clear(&a->lock);
    g_free(a);
}
