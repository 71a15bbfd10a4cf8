/* Socket I/O for one NBD connection: buffered reads so pipelined small
 * requests cost one recv() between them, and complete writes that never
 * raise SIGPIPE (a client vanishing must not kill the daemon). */
#include "nbd-internal.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>

/* recv() retrying on EINTR; 0 on EOF, -1 on error, else bytes. */
static ssize_t recv_some(int fd, void *buf, size_t len)
{
    ssize_t n;

    do {
        n = recv(fd, buf, len, 0);
    } while (n < 0 && errno == EINTR);
    return n;
}

int nbd_recv(NBDConn *c, void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len > 0) {
        size_t avail = c->in_len - c->in_pos;
        ssize_t n;

        if (avail > 0) {
            size_t take = MIN(avail, len);
            memcpy(p, c->inbuf + c->in_pos, take);
            c->in_pos += take;
            p += take;
            len -= take;
            continue;
        }
        /* Large payloads go straight to the caller's buffer. */
        if (len >= NBD_INBUF_SIZE) {
            n = recv_some(c->fd, p, len);
            if (n <= 0) {
                return -1;
            }
            p += n;
            len -= n;
            continue;
        }
        n = recv_some(c->fd, c->inbuf, NBD_INBUF_SIZE);
        if (n <= 0) {
            return -1;
        }
        c->in_pos = 0;
        c->in_len = n;
    }
    return 0;
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
        n = recv_some(c->fd, c->inbuf, NBD_INBUF_SIZE);
        if (n <= 0) {
            return -1;
        }
        c->in_pos = 0;
        c->in_len = n;
    }
    return 0;
}

int nbd_sendv(NBDConn *c, struct iovec *iov, int iovcnt)
{
    while (iovcnt > 0) {
        struct msghdr msg = { .msg_iov = iov, .msg_iovlen = iovcnt };
        ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);

        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        /* Skip what went out; a short write resumes mid-vector. */
        while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
            n -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + n;
            iov->iov_len -= n;
        }
    }
    return 0;
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
