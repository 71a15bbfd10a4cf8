/* Socket I/O for one NBD connection: buffered reads so pipelined small
 * requests cost one recv() between them, complete writes that never raise
 * SIGPIPE (a client vanishing must not kill the daemon), and variants that
 * return when the socket stalls, so a connection can give its budgeted
 * slice back instead of holding it for a client that stopped.  After
 * NBD_OPT_STARTTLS every byte goes through the connection's TLS session. */
#include "nbd-internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

/* False when FD did not become ready for EVENTS within TIMEOUT_MS; errors
 * count as ready, for the next call to report. */
static bool wait_ready(int fd, short events, int timeout_ms)
{
    struct pollfd pfd = { .fd = fd, .events = events };
    int n;

    do {
        n = poll(&pfd, 1, timeout_ms);
    } while (n < 0 && errno == EINTR);
    return n != 0;
}

bool nbd_socket_ready(NBDConn *c, short events, int timeout_ms)
{
    if ((events & POLLIN) && (c->in_pos < c->in_len ||
                              (c->tls && tls_session_pending(c->tls) > 0))) {
        return true;
    }
    return wait_ready(c->fd, events, timeout_ms);
}

void nbd_socket_wait(NBDConn *c, short events)
{
    int kept = 0;

    while (c->slice && !nbd_socket_ready(c, events, NBD_STALL_MS)) {
        kept += NBD_STALL_MS;
        if (kept >= NBD_SLICE_KEEP_MS || nbd_budget_contended()) {
            nbd_conn_drop_slice(c);
        }
    }
    nbd_socket_ready(c, events, -1);
}

/* After a call that would block: true to try again, false when STALL_MS
 * passed with the socket not ready. */
static bool would_block(NBDConn *c, short events, int stall_ms)
{
    if (stall_ms < 0) {
        nbd_socket_wait(c, events);
        return true;
    }
    return wait_ready(c->fd, events, stall_ms);
}

/* Through TLS: one record in or out like recv(2)/sendmsg(2) (a send
 * takes the first piece of MSG only; a retry after EAGAIN passes the same
 * bytes, as util/tls.h wants), waiting for the socket unless DONTWAIT, at
 * most io_timeout_ms (then EAGAIN, a failure for a blocking call). */
static ssize_t tls_io(NBDConn *c, void *buf, size_t len, bool sending, bool dontwait)
{
    for (;;) {
        GError *err = NULL;
        ssize_t n = sending ? tls_session_send(c->tls, buf, len, &err)
                            : tls_session_recv(c->tls, buf, len, &err);
        if (n < 0 && errno != EAGAIN) {
            g_debug("%s: %s", c->peer, err->message);
            g_error_free(err);
        }
        if (n >= 0 || errno != EAGAIN || dontwait ||
            !wait_ready(c->fd, sending ? POLLOUT : POLLIN, c->io_timeout_ms)) {
            return n;
        }
    }
}

static ssize_t conn_recv(NBDConn *c, void *buf, size_t len, bool dontwait)
{
    if (c->tls) {
        return tls_io(c, buf, len, false, dontwait);
    }
    return recv(c->fd, buf, len, dontwait ? MSG_DONTWAIT : 0);
}

static ssize_t conn_sendmsg(NBDConn *c, struct msghdr *msg, bool dontwait)
{
    if (c->tls) {
        return tls_io(c, msg->msg_iov[0].iov_base, msg->msg_iov[0].iov_len, true, dontwait);
    }
    return sendmsg(c->fd, msg, MSG_NOSIGNAL | (dontwait ? MSG_DONTWAIT : 0));
}

/* One recv(): bytes (> 0), 0 after a stall of STALL_MS, -1 on EOF or
 * error.  Without a stall limit it blocks, through nbd_socket_wait while
 * a slice is held; SO_RCVTIMEO (set for the handshake, when none is held)
 * ends a blocking recv with EAGAIN, a failure. */
static ssize_t recv_step(NBDConn *c, void *buf, size_t len, int stall_ms)
{
    for (;;) {
        bool dontwait = stall_ms >= 0 || c->slice;
        ssize_t n = conn_recv(c, buf, len, dontwait);

        if (n > 0) {
            return n;
        }
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n == 0 || errno != EAGAIN || !dontwait) {
            return -1;
        }
        if (!would_block(c, POLLIN, stall_ms)) {
            return 0;
        }
    }
}

ssize_t nbd_recv_until_stall(NBDConn *c, void *buf, size_t len, int stall_ms)
{
    uint8_t *p = buf;
    size_t got = 0;

    while (got < len) {
        size_t avail = c->in_len - c->in_pos;
        bool direct = len - got >= NBD_INBUF_SIZE;
        ssize_t n;

        if (avail > 0) {
            size_t take = MIN(avail, len - got);
            memcpy(p + got, c->inbuf + c->in_pos, take);
            c->in_pos += take;
            got += take;
            continue;
        }
        /* Large payloads go straight to the caller's buffer. */
        n = recv_step(c, direct ? p + got : c->inbuf,
                      direct ? len - got : NBD_INBUF_SIZE, stall_ms);
        if (n <= 0) {
            return n < 0 ? -1 : (ssize_t)got;
        }
        if (direct) {
            got += n;
        } else {
            c->in_pos = 0;
            c->in_len = n;
        }
    }
    return got;
}

int nbd_recv(NBDConn *c, void *buf, size_t len)
{
    return nbd_recv_until_stall(c, buf, len, -1) == (ssize_t)len ? 0 : -1;
}

/* Read and drop LEN bytes through the input buffer: memory stays bounded
 * whatever length the client announced. */
int nbd_recv_discard(NBDConn *c, uint64_t len)
{
    while (len > 0) {
        size_t avail = c->in_len - c->in_pos;
        ssize_t n;

        if (avail > 0) {
            size_t take = MIN((uint64_t)avail, len);
            c->in_pos += take;
            len -= take;
            continue;
        }
        n = recv_step(c, c->inbuf, NBD_INBUF_SIZE, -1);
        if (n < 0) {
            return -1;
        }
        c->in_pos = 0;
        c->in_len = n;
    }
    return 0;
}

/* Skip N bytes that went out; a short write resumes mid-vector. */
static void iov_advance(struct iovec **iov, int *iovcnt, size_t n)
{
    while (*iovcnt > 0 && n >= (*iov)->iov_len) {
        n -= (*iov)->iov_len;
        (*iov)++;
        (*iovcnt)--;
    }
    if (*iovcnt > 0) {
        (*iov)->iov_base = (uint8_t *)(*iov)->iov_base + n;
        (*iov)->iov_len -= n;
    }
}

/* One sendmsg(), like recv_step. */
static ssize_t send_step(NBDConn *c, struct msghdr *msg, int stall_ms)
{
    for (;;) {
        bool dontwait = stall_ms >= 0 || c->slice;
        ssize_t n = conn_sendmsg(c, msg, dontwait);

        if (n >= 0) {
            return n;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN || !dontwait) {
            return -1;
        }
        if (!would_block(c, POLLOUT, stall_ms)) {
            return 0;
        }
    }
}

ssize_t nbd_sendv_until_stall(NBDConn *c, struct iovec *iov, int iovcnt, int stall_ms)
{
    size_t sent = 0;

    while (iovcnt > 0) {
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = iovcnt };
        ssize_t n = send_step(c, &msg, stall_ms);

        if (n <= 0) {
            return n < 0 ? -1 : (ssize_t)sent;
        }
        sent += n;
        iov_advance(&iov, &iovcnt, n);
    }
    return sent;
}

int nbd_sendv(NBDConn *c, struct iovec *iov, int iovcnt)
{
    return nbd_sendv_until_stall(c, iov, iovcnt, -1) < 0 ? -1 : 0;
}

int nbd_send(NBDConn *c, const void *buf, size_t len)
{
    struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

    return nbd_sendv(c, &iov, 1);
}

/* Replies are small and latency-bound: no Nagle delay on TCP.  Fails
 * harmlessly on unix sockets. */
void nbd_socket_setup(int fd)
{
    int one = 1;

    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* A bounded wait for the handshake, so a silent client cannot pin a
 * connection slot forever; 0 removes it for the transmission phase where
 * idle clients are legitimate. */
void nbd_socket_set_timeout(int fd, int seconds)
{
    struct timeval tv = { .tv_sec = seconds };

    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}
