/* NBD_CMD_WRITE.  The payload comes off the wire slice by slice, into the
 * connection's small buffer or a budgeted slice, and each slice is written
 * inside the runstate gate once it is complete, or as far as it came when
 * the client stalls while others wait for budget (payload.c).  Until the
 * reply the write is not acknowledged, so a client that vanishes half-way
 * leaves part of it written, as with any unacknowledged write.  After a
 * failed slice the rest of the payload is drained and the error is the
 * reply.  FUA goes with the write itself when it fits one slice, else one
 * flush follows the last slice.  bdrv_pwrite marks the dirty bitmaps
 * migration relies on. */
#include "nbd-internal.h"

#include <poll.h>

typedef struct SliceWrite {
    BlockDriverState *bs;
    uint64_t off;
    const void *buf;
    size_t len;
    int flags;
} SliceWrite;

static int pwrite_slice(void *opaque)
{
    SliceWrite *s = opaque;

    return s->len ? bdrv_pwrite(s->bs, s->off, s->buf, s->len, s->flags) : 0;
}

static int flush_drive(void *opaque)
{
    return bdrv_flush(opaque);
}

/* Take up to LEN bytes of payload and write them at OFF: returns the bytes
 * taken off the wire (*err gets the write's result), or -1 to drop. */
static ssize_t write_slice(NBDConn *c, const NBDRequest *r, uint64_t off, size_t len,
                           int *err)
{
    bool fua = (r->flags & NBD_CMD_FLAG_FUA) && r->len <= NBD_SLICE_MAX;
    SliceWrite s = { .bs = c->bs, .off = off, .flags = fua ? BDRV_REQ_FUA : 0 };
    void *buf = nbd_conn_slice(c, len, POLLIN);
    ssize_t got;

    if (!buf) {
        return -1;
    }
    got = nbd_payload_recv(c, buf, len);
    if (got < 0) {
        return -1;
    }
    s.buf = buf;
    s.len = got;
    *err = got ? nbd_gate_run(true, pwrite_slice, &s) : 0;
    if ((size_t)got < len) {
        nbd_conn_drop_slice(c);     /* the client stalled: give it back */
    } else {
        nbd_conn_slice_done(c);
    }
    return got;
}

/* Receive and write the whole payload: 0 or the first error; -1 to drop. */
static int write_payload(NBDConn *c, const NBDRequest *r, int *err)
{
    uint64_t done = 0;

    while (done < r->len && *err == 0) {
        ssize_t n = write_slice(c, r, r->offset + done,
                                MIN(r->len - done, (uint64_t)NBD_SLICE_MAX), err);
        if (n < 0) {
            return -1;
        }
        done += n;
    }
    /* After a failure the rest of the payload is still on the wire. */
    return done < r->len ? nbd_recv_discard(c, r->len - done) : 0;
}

int nbd_cmd_write(NBDConn *c, const NBDRequest *r)
{
    SliceWrite none = { .bs = c->bs };
    int err = 0;

    if (r->len == 0) {
        err = nbd_gate_run(true, pwrite_slice, &none);   /* refused like any write */
    } else if (write_payload(c, r, &err) < 0) {
        return -1;
    }
    if (err == 0 && (r->flags & NBD_CMD_FLAG_FUA) && r->len > NBD_SLICE_MAX) {
        err = nbd_gate_run(true, flush_drive, c->bs);
    }
    if (err < 0) {
        return nbd_reply_cmd_error(c, r, err);
    }
    return nbd_reply_ok(c, r);
}
