/* Streaming: copying what a drive's backing chain holds into the drive's
 * own layer, one range at a time, for the stream job, blkmig's
 * range-at-a-time command and copy-on-read alike.  Which range comes next
 * is two walks: the drive's own layer finds what it lacks, and for each
 * such run the chain below says which layer decides it (the block status
 * of BDRV_WALK_TOP and BDRV_WALK_DEPTH), so holes of a remote base are
 * skipped without being read.  The copy reads the read-only chain and writes with
 * bdrv_pwrite_unallocated, so a guest write that got there first wins. */
#include "block/block.h"

#include <errno.h>
#include <string.h>

#include "block-int.h"
#include "util/size.h"
#include "util/zero.h"

/* Nodes of BS's chain above BASE (every one when BASE is NULL). */
static int layers_above(BlockDriverState *bs, BlockDriverState *base)
{
    int n = 0;
    for (BlockDriverState *b = bs->backing; b && b != base; b = b->backing) {
        n++;
    }
    return n;
}

/* A run of the chain below BS (depth 1 = BS's backing node) that the
 * stream must copy: data from a layer above BASE; zeroes only when a base
 * stays below (without one, what BS lacks reads as zero anyway). */
static bool needs_copy(const BdrvExtent *e, int above, bool has_base)
{
    if (e->depth < 1 || e->depth > above) {
        return false;
    }
    return e->status == BDRV_STATUS_DATA || (has_base && e->status == BDRV_STATUS_ZERO);
}

/* The status of the run at OFF (at most LEN) in *E.  One status call per
 * run, without the read-ahead of a BdrvWalk: on a remote base every call
 * is a round trip. */
static int status_at(BlockDriverState *bs, uint64_t off, uint64_t len, int flags, BdrvExtent *e)
{
    uint64_t pnum = 0;
    int ret = bdrv_block_status_ext(bs, off, len, flags, &pnum, &e->status, &e->depth);

    e->off = off;
    e->len = pnum;
    return ret;
}

/* In RUN (a run BS lacks), the first part the chain must give: 1 with
 * *FOUND set, 0 when there is none, or a negative errno. */
static int find_in_chain(BlockDriverState *bs, const BdrvExtent *run, int above, bool has_base,
                         BdrvExtent *found)
{
    for (uint64_t off = run->off, end = run->off + run->len; off < end; off += found->len) {
        int ret = status_at(bs->backing, off, end - off, 0, found);
        if (ret < 0) {
            return ret;
        }
        if (needs_copy(found, above, has_base)) {
            return 1;
        }
    }
    return 0;
}

/* The first run at or after OFF to copy, in *FOUND: 1, 0, or -errno. */
static int find_next(BlockDriverState *bs, BlockDriverState *base, uint64_t off,
                     BdrvExtent *found)
{
    int above = layers_above(bs, base);
    BdrvExtent run;

    for (; off < bs->size; off += run.len) {
        int ret = status_at(bs, off, bs->size - off, BDRV_STATUS_TOP_ONLY, &run);
        if (ret == 0 && run.status == BDRV_STATUS_BACKING) {
            ret = find_in_chain(bs, &run, above, base != NULL, found);
        }
        if (ret != 0) {
            return ret;
        }
    }
    return 0;
}

static uint64_t copy_unit(BlockDriverState *bs)
{
    uint32_t cs = bdrv_get_cluster_size(bs);
    return cs ? cs : 512;
}

int bdrv_stream_next(BlockDriverState *bs, BlockDriverState *base, uint64_t off, uint64_t max,
                     uint64_t *start, uint64_t *len)
{
    uint64_t unit = copy_unit(bs);
    BdrvExtent found;
    int ret = 0;

    *start = bs->size;
    *len = 0;
    bdrv_chain_hold(bs);
    if (off < bs->size && bs->backing) {
        ret = find_next(bs, base, off, &found);
    }
    bdrv_chain_release(bs);
    if (ret <= 0) {
        return ret;
    }
    max = MAX(ROUND_DOWN(max, unit), unit);
    *start = ROUND_DOWN(found.off, unit);
    *len = MIN(MIN(ROUND_UP(found.off + found.len, unit), bs->size) - *start, max);
    return 0;
}

/* The length of the unit at A of [0, len) and whether it reads as zero. */
static uint64_t unit_at(const uint8_t *buf, uint64_t a, uint64_t len, uint64_t unit, bool *zero)
{
    uint64_t n = MIN(unit, len - a);
    *zero = buffer_is_zero(buf + a, n);
    return n;
}

/* Write BUF ([off, off+len)) where BS is unallocated, leaving out the
 * clusters that read as zero when SKIP_ZERO says nothing below would show
 * through them. */
static int write_copy(BlockDriverState *bs, uint64_t off, const uint8_t *buf, uint64_t len,
                      bool skip_zero)
{
    uint64_t unit = copy_unit(bs), a = 0;

    if (!skip_zero) {
        return bdrv_pwrite_unallocated(bs, off, buf, len);
    }
    while (a < len) {
        bool zero;
        uint64_t n = unit_at(buf, a, len, unit, &zero);
        if (zero) {
            a += n;
            continue;
        }
        uint64_t b = a + n;
        while (b < len && (n = unit_at(buf, b, len, unit, &zero), !zero)) {
            b += n;
        }
        int ret = bdrv_pwrite_unallocated(bs, off + a, buf + a, b - a);
        if (ret < 0) {
            return ret;
        }
        a = b;
    }
    return 0;
}

int bdrv_stream_copy(BlockDriverState *bs, uint64_t off, uint64_t len, void *buf,
                     bool skip_zero, bool *read_failed)
{
    bdrv_chain_hold(bs);
    BlockDriverState *b = bs->backing;
    uint64_t below = b ? b->size : 0;
    uint64_t n = off < below ? MIN(len, below - off) : 0;
    int ret = n ? bdrv_pread(b, off, buf, n) : 0;

    memset((uint8_t *)buf + n, 0, len - n);
    *read_failed = ret < 0;
    if (ret == 0) {
        ret = write_copy(bs, off, buf, len, skip_zero);
    }
    bdrv_chain_release(bs);
    return ret;
}
