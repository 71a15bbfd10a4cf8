/* One client connection: its resources (socket, buffers) and its two
 * phases.  The connection's thread owns everything here, including the
 * socket; its budgeted slice is the only part shared with other
 * connections (through budget.c). */
#include "nbd-internal.h"

#include <unistd.h>

NBDConn *nbd_conn_new(int fd, const char *peer, NBDTlsConfig *tls)
{
    NBDConn *c = g_new0(NBDConn, 1);

    c->fd = fd;
    c->peer = g_strdup(peer);
    c->tls_config = nbd_tls_config_ref(tls);
    c->io_timeout_ms = -1;
    c->inbuf = g_malloc(NBD_INBUF_SIZE);
    return c;
}

void nbd_conn_free(NBDConn *c)
{
    if (c->tls) {
        tls_session_bye(c->tls, 0, NULL);   /* close_notify if it goes out at once */
        tls_session_free(c->tls);
    }
    nbd_tls_config_unref(c->tls_config);
    close(c->fd);
    nbd_conn_drop_slice(c);
    bdrv_buf_free(c->small);
    g_free(c->inbuf);
    g_free(c->peer);
    g_free(c);
}

void nbd_conn_drop_slice(NBDConn *c)
{
    if (c->slice) {
        nbd_budget_free(c->slice, c->slice_size);
        c->slice = NULL;
        c->slice_size = 0;
    }
}

/* Budget is taken only once the socket can move the slice: a client that
 * does not read (or send) holds none while the connection waits for it. */
static void *budgeted_slice(NBDConn *c, size_t len, short events)
{
    size_t page = sysconf(_SC_PAGESIZE);
    size_t size = (len + page - 1) / page * page;

    g_assert(bdrv_buf_align(c->bs) <= page);    /* mmap's alignment */
    nbd_socket_wait(c, events);
    if (c->slice && c->slice_size >= len) {
        return c->slice;
    }
    nbd_conn_drop_slice(c);     /* never wait for budget while holding some */
    c->slice = nbd_budget_alloc(size);
    c->slice_size = c->slice ? size : 0;
    return c->slice;
}

void *nbd_conn_slice(NBDConn *c, size_t len, short events)
{
    g_assert(len <= NBD_SLICE_MAX && c->bs);
    if (len > NBD_SMALL_PAYLOAD) {
        return budgeted_slice(c, len, events);
    }
    if (!c->small) {
        c->small = bdrv_buf_alloc(c->bs, NBD_SMALL_PAYLOAD);
    }
    return c->small;
}

void nbd_conn_slice_done(NBDConn *c)
{
    if (c->slice && nbd_budget_contended()) {
        nbd_conn_drop_slice(c);
    }
}

void nbd_conn_serve(NBDConn *c)
{
    nbd_socket_setup(c->fd);
    nbd_socket_set_timeout(c->fd, NBD_HANDSHAKE_TIMEOUT_S);
    c->io_timeout_ms = NBD_HANDSHAKE_TIMEOUT_S * 1000;
    if (!nbd_handshake(c)) {
        g_debug("%s: closed during the handshake", c->peer);
        return;
    }
    nbd_socket_set_timeout(c->fd, 0);
    c->io_timeout_ms = -1;
    nbd_transmission(c);
    g_debug("%s: closed", c->peer);
}
