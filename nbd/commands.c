/* Transmission requests executed against the block layer.
 *
 * Each request runs in two steps: the block I/O, inside the runstate gate
 * (so pausing waits for it), then the reply, outside the gate (so a slow or
 * vanished client never delays a pause).  Writes go through bdrv_pwrite,
 * bdrv_pwrite_zeroes and bdrv_discard only, which mark the dirty bitmaps
 * migration relies on. */
#include "nbd-internal.h"

#include <errno.h>
#include <inttypes.h>

typedef struct ReadExtent {
    uint64_t offset;
    uint32_t len;
    bool data;          /* false: reads as zeroes, sent as OFFSET_HOLE */
} ReadExtent;

/* What the I/O step leaves for the reply step. */
typedef struct CmdResult {
    ReadExtent ext[NBD_READ_MAX_EXTENTS];
    int n_ext;
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

static void add_extent(CmdResult *res, uint64_t offset, uint32_t len, bool data)
{
    ReadExtent *last = res->n_ext ? &res->ext[res->n_ext - 1] : NULL;

    if (last && last->data == data) {
        last->len += len;
        return;
    }
    res->ext[res->n_ext++] = (ReadExtent){ offset, len, data };
}

/* Split a read into data and hole extents.  A fragmented range ends in one
 * data extent covering the rest, which is always correct, just less thin. */
static void plan_sparse_read(NBDConn *c, const NBDRequest *r, CmdResult *res)
{
    uint64_t off = r->offset, end = r->offset + r->len;

    while (off < end) {
        uint64_t pnum;
        bool is_data;

        if (res->n_ext >= NBD_READ_MAX_EXTENTS - 1 ||
            bdrv_block_status(c->bs, off, end - off, &pnum, &is_data) < 0 ||
            pnum == 0) {
            add_extent(res, off, end - off, true);
            return;
        }
        pnum = MIN(pnum, end - off);
        add_extent(res, off, pnum, is_data);
        off += pnum;
    }
}

static int do_read(NBDConn *c, const NBDRequest *r, CmdResult *res)
{
    uint8_t *buf = c->buf;

    if (r->len == 0) {
        return 0;
    }
    /* Holes pay off only for large reads from a structured client that
     * accepts fragments; small reads skip the extra lseek. */
    if (c->structured && !(r->flags & NBD_CMD_FLAG_DF) &&
        r->len >= NBD_SPARSE_READ_MIN) {
        plan_sparse_read(c, r, res);
    } else {
        add_extent(res, r->offset, r->len, true);
    }
    for (int i = 0; i < res->n_ext; i++) {
        const ReadExtent *e = &res->ext[i];
        int ret;

        if (!e->data) {
            continue;
        }
        ret = bdrv_pread(c->bs, e->offset, buf + (e->offset - r->offset), e->len);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
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

static int run_io(NBDConn *c, const NBDRequest *r, CmdResult *res)
{
    bool fua = r->flags & NBD_CMD_FLAG_FUA;
    int ret = 0;

    switch (r->type) {
    case NBD_CMD_READ:
        return do_read(c, r, res);
    case NBD_CMD_WRITE:
        return r->len ? bdrv_pwrite(c->bs, r->offset, c->buf, r->len,
                                    fua ? BDRV_REQ_FUA : 0) : 0;
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

static int send_read(NBDConn *c, const NBDRequest *r, const CmdResult *res)
{
    if (!c->structured) {
        return nbd_reply_simple(c, r->cookie, 0, c->buf, r->len);
    }
    if (res->n_ext == 0) {
        return nbd_reply_chunk(c, r->cookie, NBD_REPLY_FLAG_DONE,
                               NBD_REPLY_TYPE_NONE, NULL, 0, NULL, 0);
    }
    for (int i = 0; i < res->n_ext; i++) {
        const ReadExtent *e = &res->ext[i];
        uint16_t flags = i == res->n_ext - 1 ? NBD_REPLY_FLAG_DONE : 0;
        uint8_t head[12];
        int ret;

        nbd_put64(head, e->offset);
        if (e->data) {
            const uint8_t *data = (const uint8_t *)c->buf + (e->offset - r->offset);
            ret = nbd_reply_chunk(c, r->cookie, flags, NBD_REPLY_TYPE_OFFSET_DATA,
                                  head, 8, data, e->len);
        } else {
            nbd_put32(head + 8, e->len);
            ret = nbd_reply_chunk(c, r->cookie, flags, NBD_REPLY_TYPE_OFFSET_HOLE,
                                  head, 12, NULL, 0);
        }
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

static int send_result(NBDConn *c, const NBDRequest *r, const CmdResult *res)
{
    uint8_t ctx[4];

    switch (r->type) {
    case NBD_CMD_READ:
        return send_read(c, r, res);
    case NBD_CMD_BLOCK_STATUS:
        nbd_put32(ctx, NBD_META_ID_BASE_ALLOCATION);
        return nbd_reply_chunk(c, r->cookie, NBD_REPLY_FLAG_DONE,
                               NBD_REPLY_TYPE_BLOCK_STATUS, ctx, sizeof(ctx),
                               res->status, res->status_len);
    default:
        return nbd_reply_ok(c, r);
    }
}

int nbd_cmd_execute(NBDConn *c, const NBDRequest *r)
{
    CmdResult res = { .n_ext = 0 };
    bool counted;
    int ret;

    ret = nbd_gate_enter(nbd_cmd_is_write(r->type), &counted);
    if (ret == 0) {
        ret = run_io(c, r, &res);
    }
    if (counted) {
        nbd_gate_leave();
    }

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
