/* Quiescing a drive while its backing chain changes: every request on a
 * drive (its root node) is counted while in flight, and a chain change
 * (bdrv_change_backing) first holds new requests back and waits for the
 * counted ones to end, so no request ever follows a backing pointer that
 * is being replaced or reads a node that is being closed.
 *
 * The fast path is two atomic operations: a request increments in_flight,
 * then looks at quiesce; the drainer sets quiesce, then looks at
 * in_flight.  Both are full barriers, so either the request sees quiesce
 * (and backs off until the drainer is done) or the drainer sees the
 * request (and waits for it).
 *
 * A request may start another on the same drive from inside (copy-on-read
 * writes what it read; a stream copy walks and writes under one hold): the
 * thread remembers the drive it is in and nested entries only count
 * depth, so they never wait for a drain that waits for them.  Nodes below
 * a drive are not counted: they are reached only through it. */
#include "block-int.h"

/* The drive this thread is inside, and how deep. */
static __thread BlockDriverState *entered_drive;
static __thread unsigned entered_depth;

static bool is_drive(BlockDriverState *bs)
{
    return bs->id != NULL;
}

/* Slow path: a drain is pending; stand back until it ends. */
static void wait_for_drain_end(BlockDriverState *bs)
{
    g_mutex_lock(&bs->gate_lock);
    while (g_atomic_int_get(&bs->quiesce)) {
        if (g_atomic_int_dec_and_test(&bs->in_flight)) {
            g_cond_broadcast(&bs->gate_cond);
        }
        g_cond_wait(&bs->gate_cond, &bs->gate_lock);
        g_atomic_int_inc(&bs->in_flight);
    }
    g_mutex_unlock(&bs->gate_lock);
}

void bdrv_gate_enter(BlockDriverState *bs)
{
    if (!is_drive(bs)) {
        return;
    }
    if (entered_drive == bs) {
        entered_depth++;
        return;
    }
    g_atomic_int_inc(&bs->in_flight);
    if (g_atomic_int_get(&bs->quiesce)) {
        wait_for_drain_end(bs);
    }
    if (!entered_drive) {
        entered_drive = bs;
        entered_depth = 1;
    }
}

void bdrv_gate_leave(BlockDriverState *bs)
{
    if (!is_drive(bs)) {
        return;
    }
    if (entered_drive == bs && --entered_depth > 0) {
        return;
    }
    if (entered_drive == bs) {
        entered_drive = NULL;
    }
    if (g_atomic_int_dec_and_test(&bs->in_flight) && g_atomic_int_get(&bs->quiesce)) {
        g_mutex_lock(&bs->gate_lock);
        g_cond_broadcast(&bs->gate_cond);
        g_mutex_unlock(&bs->gate_lock);
    }
}

void bdrv_drain_begin(BlockDriverState *bs)
{
    g_assert(entered_drive != bs);
    g_mutex_lock(&bs->gate_lock);
    g_atomic_int_inc(&bs->quiesce);
    while (g_atomic_int_get(&bs->in_flight) > 0) {
        g_cond_wait(&bs->gate_cond, &bs->gate_lock);
    }
    g_mutex_unlock(&bs->gate_lock);
}

void bdrv_drain_end(BlockDriverState *bs)
{
    g_mutex_lock(&bs->gate_lock);
    g_atomic_int_add(&bs->quiesce, -1);
    g_cond_broadcast(&bs->gate_cond);
    g_mutex_unlock(&bs->gate_lock);
}

void bdrv_chain_hold(BlockDriverState *bs)
{
    bdrv_gate_enter(bs);
}

void bdrv_chain_release(BlockDriverState *bs)
{
    bdrv_gate_leave(bs);
}
