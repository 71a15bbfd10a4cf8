/* Block status: what each range of a drive is made of, one layer at a time
 * (the driver's answer) or down the backing chain, and the one walk over a
 * range in runs that every user of block status shares. */
#include "block/block.h"

#include <errno.h>

#include "block-int.h"

static int check_status_request(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    return len == 0 || off > bs->size || len > bs->size - off ? -EINVAL : 0;
}

int bdrv_layer_status(BlockDriverState *bs, uint64_t off, uint64_t len,
                      uint64_t *pnum, BdrvStatus *status)
{
    if (!bs->drv->block_status) {
        *pnum = len;
        *status = BDRV_STATUS_DATA;
        return 0;
    }
    int ret = bs->drv->block_status(bs, off, len, pnum, status);
    if (ret == 0 && (*pnum == 0 || *pnum > len)) {
        ret = -EIO;        /* a driver bug must not stall a walk */
    }
    return ret;
}

/* BS's own answer, BACKING turned into UNALLOCATED where no backing node
 * covers OFF; *pnum stops at the end of the backing node. */
static int top_status(BlockDriverState *bs, uint64_t off, uint64_t len,
                      uint64_t *pnum, BdrvStatus *status)
{
    int ret = bdrv_layer_status(bs, off, len, pnum, status);

    if (ret < 0 || *status != BDRV_STATUS_BACKING) {
        return ret;
    }
    uint64_t below = bs->backing ? bs->backing->size : 0;
    if (off >= below) {
        *status = BDRV_STATUS_UNALLOCATED;
    } else {
        *pnum = MIN(*pnum, below - off);
    }
    return 0;
}

/* Down the chain until a layer decides. */
static int chain_status(BlockDriverState *bs, uint64_t off, uint64_t len,
                        uint64_t *pnum, BdrvStatus *status, int *depth)
{
    for (int d = 1;; d++) {
        int ret = top_status(bs, off, len, pnum, status);
        if (ret < 0) {
            return ret;
        }
        if (*status != BDRV_STATUS_BACKING) {
            *depth = *status == BDRV_STATUS_UNALLOCATED ? 0 : d;
            return 0;
        }
        len = *pnum;
        bs = bs->backing;
    }
}

int bdrv_block_status_ext(BlockDriverState *bs, uint64_t off, uint64_t len, int flags,
                          uint64_t *pnum, BdrvStatus *status, int *depth)
{
    int d = 0;
    int ret = check_status_request(bs, off, len);

    if (ret < 0) {
        return ret;
    }
    bdrv_gate_enter(bs);
    if (flags & BDRV_STATUS_TOP_ONLY) {
        ret = top_status(bs, off, len, pnum, status);
        d = *status == BDRV_STATUS_DATA || *status == BDRV_STATUS_ZERO;
    } else {
        ret = chain_status(bs, off, len, pnum, status, &d);
    }
    bdrv_gate_leave(bs);
    if (depth) {
        *depth = d;
    }
    return ret;
}

int bdrv_block_status(BlockDriverState *bs, uint64_t off, uint64_t len,
                      uint64_t *pnum, bool *is_data)
{
    BdrvStatus status;
    int ret = bdrv_block_status_ext(bs, off, len, 0, pnum, &status, NULL);

    if (ret == 0) {
        *is_data = status == BDRV_STATUS_DATA;
    }
    return ret;
}

/* ---- Walks ---- */

void bdrv_walk_init(BdrvWalk *w, BlockDriverState *bs, uint64_t off, uint64_t len,
                    BdrvWalkMode mode, int flags)
{
    *w = (BdrvWalk){ .bs = bs, .pos = off, .end = off + len, .mode = mode, .flags = flags };
}

/* One status call at w->pos, in the walk's terms. */
static int walk_step(BdrvWalk *w, BdrvExtent *e)
{
    int flags = w->mode == BDRV_WALK_TOP ? BDRV_STATUS_TOP_ONLY : 0;
    uint64_t pnum = 0;
    int ret = bdrv_block_status_ext(w->bs, w->pos, w->end - w->pos, flags, &pnum,
                                    &e->status, &e->depth);

    if (ret < 0 && !(w->flags & BDRV_WALK_ERROR_AS_DATA)) {
        return ret;
    }
    if (ret < 0) {
        pnum = w->end - w->pos;
        e->status = BDRV_STATUS_DATA;
        e->depth = 0;
    }
    if (w->mode == BDRV_WALK_GUEST) {
        e->status = e->status == BDRV_STATUS_DATA ? BDRV_STATUS_DATA : BDRV_STATUS_ZERO;
        e->depth = 0;
    }
    e->off = w->pos;
    e->len = pnum;
    w->pos += pnum;
    return 1;
}

static bool same_run(const BdrvExtent *a, const BdrvExtent *b)
{
    return a->status == b->status && a->depth == b->depth && a->off + a->len == b->off;
}

int bdrv_walk_next(BdrvWalk *w, BdrvExtent *ext)
{
    if (!w->have_next) {
        if (w->pos >= w->end) {
            return 0;
        }
        int ret = walk_step(w, &w->next);
        if (ret < 0) {
            return ret;
        }
    }
    *ext = w->next;
    w->have_next = false;
    while (w->pos < w->end && walk_step(w, &w->next) > 0) {
        if (!same_run(ext, &w->next)) {
            w->have_next = true;
            break;
        }
        ext->len += w->next.len;
    }
    return 1;
}
