/* Destination: the memory of record payloads received and not yet
 * written, shared by every connection of a load.  A decoder waits here
 * when the writers fall behind, which pushes back on the sender through
 * the socket. */
#include "block/block.h"
#include "block-internal.h"


struct BlkApplyBudget {
    GMutex lock;
    GCond cond;
    uint64_t capacity;
    uint64_t used;
    bool aborted;
    GPtrArray *free_chunks;     /* chunk-sized buffers to reuse */
};

BlkApplyBudget *blk_apply_budget_new(uint64_t bytes)
{
    BlkApplyBudget *b = g_new0(BlkApplyBudget, 1);

    g_mutex_init(&b->lock);
    g_cond_init(&b->cond);
    b->capacity = bytes;
    b->free_chunks = g_ptr_array_new_with_free_func(bdrv_buf_free);
    return b;
}

void blk_apply_budget_free(BlkApplyBudget *b)
{
    if (!b) {
        return;
    }
    g_ptr_array_unref(b->free_chunks);
    g_cond_clear(&b->cond);
    g_mutex_clear(&b->lock);
    g_free(b);
}

/* Payloads above this come in chunk-sized buffers that are reused (and
 * count whole), so big records cost no page faults; smaller ones are
 * allocated as they are. */
#define POOLED_MIN (64 * 1024)

size_t blk_apply_budget_cost(size_t len)
{
    return len > POOLED_MIN ? BLK_CHUNK : len;
}

bool blk_apply_budget_take(BlkApplyBudget *b, size_t cost)
{
    bool aborted;

    g_mutex_lock(&b->lock);
    while (!b->aborted && b->used > 0 && b->used + cost > b->capacity) {
        g_cond_wait(&b->cond, &b->lock);
    }
    aborted = b->aborted;
    if (!aborted) {
        b->used += cost;
    }
    g_mutex_unlock(&b->lock);
    return !aborted;
}

void blk_apply_budget_give(BlkApplyBudget *b, size_t cost)
{
    g_mutex_lock(&b->lock);
    b->used -= cost;
    g_cond_broadcast(&b->cond);
    g_mutex_unlock(&b->lock);
}

uint8_t *blk_apply_budget_alloc(BlkApplyBudget *b, size_t len)
{
    size_t cost = blk_apply_budget_cost(len);
    uint8_t *buf = NULL;

    if (!blk_apply_budget_take(b, cost)) {
        return NULL;
    }
    if (cost == BLK_CHUNK) {
        g_mutex_lock(&b->lock);
        if (b->free_chunks->len) {
            buf = g_ptr_array_steal_index_fast(b->free_chunks, b->free_chunks->len - 1);
        }
        g_mutex_unlock(&b->lock);
    }
    /* Aligned for cache=none destinations, so writes need no bounce. */
    return buf ? buf : bdrv_buf_alloc(NULL, cost);
}

void blk_apply_budget_release(BlkApplyBudget *b, uint8_t *buf, size_t len)
{
    size_t cost = blk_apply_budget_cost(len);

    g_mutex_lock(&b->lock);
    if (cost == BLK_CHUNK && b->free_chunks->len < b->capacity / BLK_CHUNK) {
        g_ptr_array_add(b->free_chunks, buf);
        buf = NULL;
    }
    g_mutex_unlock(&b->lock);
    bdrv_buf_free(buf);
    blk_apply_budget_give(b, cost);
}

void blk_apply_budget_abort(BlkApplyBudget *b)
{
    g_mutex_lock(&b->lock);
    b->aborted = true;
    g_cond_broadcast(&b->cond);
    g_mutex_unlock(&b->lock);
}
