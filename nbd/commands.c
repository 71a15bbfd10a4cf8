/* Transmission requests executed against the block layer; reads and
 * writes, which carry payloads, and block status have their own files
 * (read.c, write.c, block-status.c).
 *
 * Each request runs in two steps: the block I/O, inside the runstate gate
 * (so pausing waits for it), then the reply, outside the gate (so a slow or
 * vanished client never delays a pause).  Writes go through bdrv_pwrite,
 * bdrv_pwrite_zeroes and bdrv_discard only, which mark the dirty bitmaps
 * migration relies on. */
#include "nbd-internal.h"

#include <errno.h>
#include <inttypes.h>

/* One request on its way to the I/O step. */
typedef struct CmdIO {
    NBDConn *c;
    const NBDRequest *r;
} CmdIO;

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

int nbd_reply_cmd_error(NBDConn *c, const NBDRequest *r, int negative_errno)
{
    return nbd_reply_error(c, r, nbd_errno_to_wire(negative_errno), "%s at %" PRIu64
                           "+%" PRIu32 ": %s", nbd_cmd_name(r->type), r->offset, r->len,
                           g_strerror(-negative_errno));
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

/* The I/O step, run inside the gate (OPAQUE is the CmdIO). */
static int run_io(void *opaque)
{
    CmdIO *io = opaque;
    NBDConn *c = io->c;
    const NBDRequest *r = io->r;
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
    default:
        g_assert_not_reached();
    }
    /* The block layer does not promise FUA for these two: flush instead. */
    if (ret == 0 && fua && r->len) {
        ret = bdrv_flush(c->bs);
    }
    return ret;
}

int nbd_cmd_execute(NBDConn *c, const NBDRequest *r)
{
    CmdIO io = { .c = c, .r = r };
    int ret;

    if (r->type == NBD_CMD_READ) {
        return nbd_cmd_read(c, r);
    }
    if (r->type == NBD_CMD_WRITE) {
        return nbd_cmd_write(c, r);
    }
    if (r->type == NBD_CMD_BLOCK_STATUS) {
        return nbd_cmd_block_status(c, r);
    }
    ret = nbd_gate_run(nbd_cmd_is_write(r->type), run_io, &io);
    if (ret < 0) {
        return nbd_reply_cmd_error(c, r, ret);
    }
    return nbd_reply_ok(c, r);
}
