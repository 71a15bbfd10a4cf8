/* NBD_CMD_READ.  First which parts of the range are data and which are
 * holes (holes go out as OFFSET_HOLE chunks and need no buffer), then the
 * data slice by slice: each slice is read inside the runstate gate and
 * sent outside it (so a slow client never delays a pause), from the
 * connection's small buffer or a budgeted slice (payload.c).
 *
 * A failure to read the first slice of a reply or chunk gets an error
 * reply as before.  Past that point the framing has promised data that
 * cannot come, so the connection is dropped.  Structured replies are
 * split into chunks of one slice (unless DF) so that this happens only to
 * simple replies and DF reads above a slice, or to a re-read after a
 * stall. */
#include "nbd-internal.h"

#include <inttypes.h>
#include <poll.h>

typedef struct ReadExtent {
    uint64_t offset;
    uint32_t len;
    bool data;          /* false: reads as zeroes, sent as OFFSET_HOLE */
} ReadExtent;

typedef struct ReadPlan {
    NBDConn *c;
    const NBDRequest *r;
    ReadExtent ext[NBD_READ_MAX_EXTENTS];
    int n_ext;
} ReadPlan;

typedef struct SliceRead {
    BlockDriverState *bs;
    uint64_t off;
    void *buf;
    size_t len;
} SliceRead;

static void add_extent(ReadPlan *p, uint64_t offset, uint32_t len, bool data)
{
    ReadExtent *last = p->n_ext ? &p->ext[p->n_ext - 1] : NULL;

    if (last && last->data == data) {
        last->len += len;
        return;
    }
    p->ext[p->n_ext++] = (ReadExtent){ offset, len, data };
}

/* Split a read into data and hole extents (inside the gate).  A fragmented
 * range ends in one data extent covering the rest, and a range whose
 * status cannot be read is data: always correct, just less thin. */
static int plan_sparse_read(void *opaque)
{
    ReadPlan *p = opaque;
    uint64_t end = p->r->offset + p->r->len;
    BdrvWalk w;
    BdrvExtent e;

    bdrv_walk_init(&w, p->c->bs, p->r->offset, p->r->len, BDRV_WALK_GUEST,
                   BDRV_WALK_ERROR_AS_DATA);
    while (bdrv_walk_next(&w, &e) > 0) {
        if (p->n_ext >= NBD_READ_MAX_EXTENTS - 1) {
            add_extent(p, e.off, end - e.off, true);
            break;
        }
        add_extent(p, e.off, e.len, e.status == BDRV_STATUS_DATA);
    }
    return 0;
}

static int plan_read(ReadPlan *p)
{
    const NBDRequest *r = p->r;

    /* Holes pay off only for large reads from a structured client that
     * accepts fragments; small reads skip the extra lseek. */
    if (p->c->structured && !(r->flags & NBD_CMD_FLAG_DF) &&
        r->len >= NBD_SPARSE_READ_MIN) {
        return nbd_gate_run(false, plan_sparse_read, p);
    }
    if (r->len) {
        add_extent(p, r->offset, r->len, true);
    }
    return 0;
}

static int pread_slice(void *opaque)
{
    SliceRead *s = opaque;

    return bdrv_pread(s->bs, s->off, s->buf, s->len);
}

/* 1 when nothing of HEAD went out yet and the error reply did; else -1. */
static int slice_failed(NBDConn *c, const NBDRequest *r, const NBDFrame *head,
                        uint64_t off, int err)
{
    if (head->pos > 0) {
        g_warning("%s: READ at %" PRIu64 " failed after its reply started: %s; "
                  "disconnecting", c->peer, off, g_strerror(-err));
        return -1;
    }
    return nbd_reply_cmd_error(c, r, err) < 0 ? -1 : 1;
}

/* Send HEAD, then LEN (> 0) bytes of the export from OFF.  0: sent; 1: an
 * error reply went out instead; -1: drop the connection. */
static int send_frame(NBDConn *c, const NBDRequest *r, NBDFrame *head,
                      uint64_t off, uint64_t len)
{
    while (len > 0) {
        SliceRead s = { .bs = c->bs, .off = off, .len = MIN(len, NBD_SLICE_MAX) };
        ssize_t sent;
        int ret;

        s.buf = nbd_conn_slice(c, s.len, POLLOUT);
        if (!s.buf) {
            return -1;
        }
        ret = nbd_gate_run(false, pread_slice, &s);
        if (ret < 0) {
            return slice_failed(c, r, head, off, ret);
        }
        sent = nbd_payload_send(c, head, s.buf, s.len);
        if (sent < 0) {
            return -1;
        }
        off += sent;    /* less than a slice: the rest is read again */
        len -= sent;
        nbd_conn_slice_done(c);
    }
    return 0;
}

static int send_simple(NBDConn *c, const NBDRequest *r)
{
    NBDFrame head = { .len = NBD_SIMPLE_REPLY_LEN };

    if (r->len == 0) {
        return nbd_reply_simple(c, r->cookie, 0, NULL, 0);
    }
    nbd_simple_header(head.bytes, r->cookie, 0);
    return send_frame(c, r, &head, r->offset, r->len) < 0 ? -1 : 0;
}

static int send_data_chunk(NBDConn *c, const NBDRequest *r, uint16_t flags,
                           uint64_t off, uint32_t len)
{
    NBDFrame head = { .len = NBD_CHUNK_HEADER_LEN + 8 };

    nbd_chunk_header(head.bytes, r->cookie, flags, NBD_REPLY_TYPE_OFFSET_DATA, 8 + len);
    st_be64(head.bytes + NBD_CHUNK_HEADER_LEN, off);
    return send_frame(c, r, &head, off, len);
}

/* A data extent: one chunk with DF, else one chunk per slice, so that a
 * slice that fails to read can still be reported. */
static int send_data(NBDConn *c, const NBDRequest *r, const ReadExtent *e, bool last)
{
    uint32_t max = (r->flags & NBD_CMD_FLAG_DF) ? e->len : NBD_SLICE_MAX;
    uint32_t done = 0;

    while (done < e->len) {
        uint32_t n = MIN(e->len - done, max);
        bool done_flag = last && done + n == e->len;
        int ret = send_data_chunk(c, r, done_flag ? NBD_REPLY_FLAG_DONE : 0,
                                  e->offset + done, n);

        if (ret != 0) {
            return ret;
        }
        done += n;
    }
    return 0;
}

static int send_hole(NBDConn *c, const NBDRequest *r, const ReadExtent *e, bool last)
{
    uint8_t head[12];

    st_be64(head, e->offset);
    st_be32(head + 8, e->len);
    return nbd_reply_chunk(c, r->cookie, last ? NBD_REPLY_FLAG_DONE : 0,
                           NBD_REPLY_TYPE_OFFSET_HOLE, head, sizeof(head), NULL, 0);
}

static int send_structured(NBDConn *c, const NBDRequest *r, const ReadPlan *p)
{
    if (p->n_ext == 0) {
        return nbd_reply_chunk(c, r->cookie, NBD_REPLY_FLAG_DONE,
                               NBD_REPLY_TYPE_NONE, NULL, 0, NULL, 0);
    }
    for (int i = 0; i < p->n_ext; i++) {
        bool last = i == p->n_ext - 1;
        int ret = p->ext[i].data ? send_data(c, r, &p->ext[i], last)
                                 : send_hole(c, r, &p->ext[i], last);

        if (ret != 0) {
            return ret < 0 ? -1 : 0;
        }
    }
    return 0;
}

int nbd_cmd_read(NBDConn *c, const NBDRequest *r)
{
    ReadPlan p = { .c = c, .r = r };
    int ret;

    if (!c->structured) {
        return send_simple(c, r);
    }
    ret = plan_read(&p);
    if (ret < 0) {
        return nbd_reply_cmd_error(c, r, ret);
    }
    return send_structured(c, r, &p);
}
