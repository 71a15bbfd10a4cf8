/* Transmission requests executed against the block layer; reads and
 * writes, which carry payloads, have their own files (read.c, write.c).
 *
 * Each request runs in two steps: the block I/O, inside the runstate gate
 * (so pausing waits for it), then the reply, outside the gate (so a slow or
 * vanished client never delays a pause).  Writes go through bdrv_pwrite,
 * bdrv_pwrite_zeroes and bdrv_discard only, which mark the dirty bitmaps
 * migration relies on. */
#include "nbd-internal.h"

#include <errno.h>
#include <inttypes.h>

/* One request between its I/O step and its reply step. */
typedef struct CmdResult {
    NBDConn *c;
    const NBDRequest *r;
    uint8_t *status;    /* BLOCK_STATUS descriptors (owned) */
    uint32_t status_len;
} CmdResult;

uint32_t nbd_errno_to_wire(int negative_errno)
{
    switch (-negative_errno) {
    case 0:
        return 0;
    case EPERM:
    case EACCES:
    case EROFS:
        return NBD_EPERM;
    case ENOMEM:
        return NBD_ENOMEM;
    case EINVAL:
        return NBD_EINVAL;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
        return NBD_ENOSPC;
    case EOVERFLOW:
        return NBD_EOVERFLOW;
    case ENOTSUP:
        return NBD_ENOTSUP;
    case ESHUTDOWN:
        return NBD_ESHUTDOWN;
    default:
        return NBD_EIO;
    }
}

/* base:allocation extents: holes read as zeroes, data is "unknown". */
static int do_block_status(NBDConn *c, const NBDRequest *r, CmdResult *res)
{
    unsigned max = (r->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : NBD_STATUS_MAX_EXTENTS;
    uint64_t off = r->offset, end = r->offset + r->len;
    uint8_t *desc = g_malloc(8 * max);
    unsigned n = 0;

    while (off < end) {
        uint64_t pnum;
        bool is_data;
        uint32_t flags;
        int ret = bdrv_block_status(c->bs, off, end - off, &pnum, &is_data);

        if (ret < 0 || pnum == 0) {
            if (n == 0) {
                g_free(desc);
                return ret < 0 ? ret : -EIO;
            }
            break;
        }
        pnum = MIN(pnum, end - off);
        flags = is_data ? 0 : NBD_STATE_HOLE | NBD_STATE_ZERO;
        if (n > 0 && nbd_get32(desc + 8 * (n - 1) + 4) == flags) {
            uint8_t *len_field = desc + 8 * (n - 1);
            nbd_put32(len_field, nbd_get32(len_field) + pnum);
        } else if (n < max) {
            nbd_put32(desc + 8 * n, pnum);
            nbd_put32(desc + 8 * n + 4, flags);
            n++;
        } else {
            break;
        }
        off += pnum;
    }
    res->status = desc;
    res->status_len = 8 * n;
    return 0;
}

static int do_write_zeroes(NBDConn *c, const NBDRequest *r)
{
    int flags = 0;

    /* Without NO_HOLE the range may become a hole, keeping the disk thin. */
    if (!(r->flags & NBD_CMD_FLAG_NO_HOLE)) {
        flags |= BDRV_REQ_MAY_UNMAP;
    }
    if (r->flags & NBD_CMD_FLAG_FAST_ZERO) {
        flags |= BDRV_REQ_NO_FALLBACK;
    }
    return bdrv_pwrite_zeroes(c->bs, r->offset, r->len, flags);
}

/* The I/O step, run inside the gate (OPAQUE is the CmdResult). */
static int run_io(void *opaque)
{
    CmdResult *res = opaque;
    NBDConn *c = res->c;
    const NBDRequest *r = res->r;
    bool fua = r->flags & NBD_CMD_FLAG_FUA;
    int ret = 0;

    switch (r->type) {
    case NBD_CMD_FLUSH:
        return bdrv_flush(c->bs);
    case NBD_CMD_TRIM:
        ret = r->len ? bdrv_discard(c->bs, r->offset, r->len) : 0;
        break;
    case NBD_CMD_WRITE_ZEROES:
        ret = r->len ? do_write_zeroes(c, r) : 0;
        break;
    case NBD_CMD_BLOCK_STATUS:
        return do_block_status(c, r, res);
    default:
        g_assert_not_reached();
    }
    /* The block layer does not promise FUA for these two: flush instead. */
    if (ret == 0 && fua && r->len) {
        ret = bdrv_flush(c->bs);
    }
    return ret;
}

static int send_result(NBDConn *c, const NBDRequest *r, const CmdResult *res)
{
    uint8_t ctx[4];

    if (r->type != NBD_CMD_BLOCK_STATUS) {
        return nbd_reply_ok(c, r);
    }
    nbd_put32(ctx, NBD_META_ID_BASE_ALLOCATION);
    return nbd_reply_chunk(c, r->cookie, NBD_REPLY_FLAG_DONE,
                           NBD_REPLY_TYPE_BLOCK_STATUS, ctx, sizeof(ctx),
                           res->status, res->status_len);
}

int nbd_cmd_execute(NBDConn *c, const NBDRequest *r)
{
    CmdResult res = { .c = c, .r = r };
    int ret;

    if (r->type == NBD_CMD_READ) {
        return nbd_cmd_read(c, r);
    }
    if (r->type == NBD_CMD_WRITE) {
        return nbd_cmd_write(c, r);
    }
    ret = nbd_gate_run(nbd_cmd_is_write(r->type), run_io, &res);
    if (ret < 0) {
        g_free(res.status);
        return nbd_reply_error(c, r, nbd_errno_to_wire(ret), "%s at %" PRIu64
                               "+%" PRIu32 ": %s", nbd_cmd_name(r->type),
                               r->offset, r->len, g_strerror(-ret));
    }
    ret = send_result(c, r, &res);
    g_free(res.status);
    return ret;
}
