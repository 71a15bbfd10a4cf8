/* One slice of a payload over the socket.  A slice in the connection's
 * small buffer moves with plain blocking calls, as any reply did before
 * the budget.  A budgeted slice watches for stalls: when its client has
 * moved nothing for NBD_STALL_MS while another connection waits for
 * budget, the slice stops early and is given back.  The caller then waits
 * for the socket without holding budget and carries on: a read re-reads
 * the unsent rest from the disk, a write writes what came.  So a client
 * that stops reading its replies (or stops sending a write's payload) is
 * not disconnected, but it cannot keep budget from the others either. */
#include "nbd-internal.h"

static bool give_back(NBDConn *c, bool budgeted, bool stalled)
{
    if (budgeted && stalled && nbd_budget_contended()) {
        g_debug("%s: client stalled; its slice goes to a waiting connection", c->peer);
        nbd_conn_drop_slice(c);
        return true;
    }
    return false;
}

ssize_t nbd_payload_send(NBDConn *c, NBDFrame *head, const void *buf, size_t len)
{
    bool budgeted = c->slice && buf == c->slice;
    size_t done = 0;

    while (head->pos < head->len || done < len) {
        struct iovec iov[2];
        int n = 0;
        ssize_t sent;
        size_t framing;

        if (head->pos < head->len) {
            iov[n++] = (struct iovec){ head->bytes + head->pos, head->len - head->pos };
        }
        if (done < len) {
            iov[n++] = (struct iovec){ (uint8_t *)buf + done, len - done };
        }
        sent = nbd_sendv_until_stall(c, iov, n, budgeted ? NBD_STALL_MS : -1);
        if (sent < 0) {
            return -1;
        }
        framing = MIN((size_t)sent, head->len - head->pos);
        head->pos += framing;
        done += sent - framing;
        if (give_back(c, budgeted, head->pos < head->len || done < len)) {
            break;
        }
    }
    return done;
}

ssize_t nbd_payload_recv(NBDConn *c, void *buf, size_t len)
{
    bool budgeted = c->slice && buf == c->slice;
    size_t got = 0;

    while (got < len) {
        ssize_t n = nbd_recv_until_stall(c, (uint8_t *)buf + got, len - got,
                                         budgeted ? NBD_STALL_MS : -1);
        if (n < 0) {
            return -1;
        }
        got += n;
        if (got < len && budgeted && nbd_budget_contended()) {
            g_debug("%s: client stalled; its slice goes to a waiting connection",
                    c->peer);
            break;      /* the caller writes what came, then gives back */
        }
    }
    return got;
}
