/* One client connection: its resources and its two phases.  The
 * connection's thread owns everything here, including the socket. */
#include "nbd-internal.h"

#include <unistd.h>

/* A payload buffer above this is freed after the request that needed it,
 * so an idle connection does not keep up to NBD_MAX_PAYLOAD around. */
#define KEEP_BUFFER_MAX (1024 * 1024)
#define MIN_BUFFER      (64 * 1024)

NBDConn *nbd_conn_new(int fd, const char *peer)
{
    NBDConn *c = g_new0(NBDConn, 1);

    c->fd = fd;
    c->peer = g_strdup(peer);
    c->inbuf = g_malloc(NBD_INBUF_SIZE);
    return c;
}

void nbd_conn_free(NBDConn *c)
{
    close(c->fd);
    bdrv_buf_free(c->buf);
    g_free(c->inbuf);
    g_free(c->peer);
    g_free(c);
}

void *nbd_conn_buffer(NBDConn *c, size_t len)
{
    g_assert(len <= NBD_MAX_PAYLOAD && c->bs);
    if (c->buf && c->buf_size >= len) {
        return c->buf;
    }
    bdrv_buf_free(c->buf);
    /* Whole pages: cache=none drives need aligned lengths as well. */
    c->buf_size = MAX((len + 4095) & ~(size_t)4095, (size_t)MIN_BUFFER);
    c->buf = bdrv_buf_alloc(c->bs, c->buf_size);
    if (!c->buf) {
        c->buf_size = 0;
    }
    return c->buf;
}

void nbd_conn_trim_buffer(NBDConn *c)
{
    if (c->buf_size > KEEP_BUFFER_MAX) {
        bdrv_buf_free(c->buf);
        c->buf = NULL;
        c->buf_size = 0;
    }
}

void nbd_conn_serve(NBDConn *c)
{
    nbd_socket_setup(c->fd);
    nbd_socket_set_timeout(c->fd, NBD_HANDSHAKE_TIMEOUT_S);
    if (!nbd_handshake(c)) {
        g_debug("%s: closed during the handshake", c->peer);
        return;
    }
    nbd_socket_set_timeout(c->fd, 0);
    nbd_transmission(c);
    g_debug("%s: closed", c->peer);
}
