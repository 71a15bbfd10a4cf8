/* Block status of an NBD export: one NBD_CMD_BLOCK_STATUS for the
 * contexts the server negotiated.  base:allocation decides DATA or ZERO:
 * only the zero bit makes a run ZERO, since NBD says a hole without it
 * may read as anything.  qemu:allocation-depth (qemu-nbd -A) adds what
 * no layer of a remote chain allocates (depth 0): this node answers
 * BACKING there, which the block layer, finding no backing node below,
 * reports as UNALLOCATED. */
#include "nbd-int.h"

#include <errno.h>
#include <string.h>

/* The first run of one context's reply. */
typedef struct StatusRun {
    bool seen;
    uint64_t len;
    BdrvStatus status;
} StatusRun;

typedef struct StatusReply {
    uint64_t want;              /* the request's length */
    StatusRun alloc, depth;
} StatusReply;

static BdrvStatus alloc_status(uint32_t flags)
{
    return flags & LIBNBD_STATE_ZERO ? BDRV_STATUS_ZERO : BDRV_STATUS_DATA;
}

static BdrvStatus depth_status(uint32_t depth)
{
    return depth == 0 ? BDRV_STATUS_BACKING : BDRV_STATUS_DATA;
}

/* Merge the leading ENTRIES (length, flags pairs) that map to the same
 * status, up to WANT bytes. */
static void first_run(StatusRun *run, const uint32_t *entries, size_t nr, uint64_t want,
                      BdrvStatus (*map)(uint32_t))
{
    run->seen = true;
    run->len = 0;
    if (nr < 2) {
        return;
    }
    run->status = map(entries[1]);
    for (size_t i = 0; i + 1 < nr && run->len < want; i += 2) {
        if (map(entries[i + 1]) != run->status) {
            break;
        }
        run->len += entries[i];
    }
    run->len = MIN(run->len, want);
}

static int extent_cb(void *opaque, const char *context, uint64_t off, uint32_t *entries,
                     size_t nr, int *error)
{
    StatusReply *r = opaque;

    if (strcmp(context, LIBNBD_CONTEXT_BASE_ALLOCATION) == 0) {
        first_run(&r->alloc, entries, nr, r->want, alloc_status);
    } else if (strcmp(context, NBD_CTX_DEPTH) == 0) {
        first_run(&r->depth, entries, nr, r->want, depth_status);
    }
    return 0;
}

static int64_t submit_status(struct nbd_handle *h, uint64_t off, uint64_t len, void *buf,
                             nbd_completion_callback cb, void *opaque)
{
    nbd_extent_callback ecb = { .callback = extent_cb, .user_data = opaque };
    return nbd_aio_block_status(h, len, off, ecb, cb, LIBNBD_CMD_FLAG_REQ_ONE);
}

/* base:allocation's run, shortened and marked BACKING by the depth's. */
static int combine(const StatusReply *r, uint64_t *pnum, BdrvStatus *status)
{
    if (!r->alloc.seen || r->alloc.len == 0) {
        return -EIO;            /* the server left out the context it agreed to */
    }
    *pnum = r->alloc.len;
    *status = r->alloc.status;
    if (r->depth.seen && r->depth.len > 0) {
        *pnum = MIN(*pnum, r->depth.len);
        if (r->depth.status == BDRV_STATUS_BACKING) {
            *status = BDRV_STATUS_BACKING;
        }
    }
    return 0;
}

int nbdc_status(NbdClient *c, uint64_t off, uint64_t len, uint64_t *pnum, BdrvStatus *status)
{
    StatusReply r = { .want = MIN(len, (uint64_t)NBD_MAX_EFFECT) };

    if (!c->exp.has_allocation) {
        *pnum = len;
        *status = BDRV_STATUS_DATA;
        return 0;
    }
    int ret = nbdc_request(c, off, r.want, NULL, r.want, submit_status, &r);
    return ret < 0 ? ret : combine(&r, pnum, status);
}
