/* QMP over TLS: the handshake of each accepted client, run on the server's
 * main context without ever blocking it (non-blocking steps driven by fd
 * watches, bounded by a timeout), then handed to server.c.  A client that
 * fails (no certificate, one the CA did not sign, one tls-authz refuses,
 * not TLS at all) is refused with a log line naming it and the reason;
 * the monitor goes on serving everyone else.  The refused socket is not
 * closed at once: our alert must reach the client before a reset could
 * destroy it, so we stop sending and drain what it sends for a moment. */
#include "qmp-internal.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/sockets.h"

#define HANDSHAKE_TIMEOUT_MS 10000
/* Handshakes at once; more clients are refused until some finish. */
#define MAX_HANDSHAKES 16
/* How long a refused client may take to read our alert and close. */
#define REFUSED_DRAIN_MS 2000

typedef struct Handshake {
    int fd;
    TlsSession *tls;
    char *peer;
    GSource *watch;
    GSource *timer;
    bool refused;       /* draining before the close */
} Handshake;

static GList *handshakes;

static void handshake_free(Handshake *h, bool close_fd)
{
    handshakes = g_list_remove(handshakes, h);
    qmp_unwatch(&h->watch);
    qmp_unwatch(&h->timer);
    tls_session_free(h->tls);
    if (close_fd) {
        close(h->fd);
    }
    g_free(h->peer);
    g_free(h);
}

static gboolean on_drain(gint fd, GIOCondition cond, gpointer data)
{
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        handshake_free(data, true);
        return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
}

static gboolean on_timeout(gpointer data);

static void set_timer(Handshake *h, int ms)
{
    qmp_unwatch(&h->timer);
    h->timer = g_timeout_source_new(ms);
    g_source_set_callback(h->timer, on_timeout, h, NULL);
    g_source_attach(h->timer, qmp_server_context());
}

static void refuse(Handshake *h, const char *why)
{
    g_warning("QMP: refused TLS client %s: %s", h->peer, why);
    h->refused = true;
    qmp_unwatch(&h->watch);
    shutdown(h->fd, SHUT_WR);
    h->watch = qmp_watch_fd(h->fd, G_IO_IN | G_IO_HUP | G_IO_ERR, on_drain, h);
    set_timer(h, REFUSED_DRAIN_MS);
}

static gboolean on_timeout(gpointer data)
{
    Handshake *h = data;

    if (h->refused) {
        handshake_free(h, true);
    } else {
        g_clear_pointer(&h->timer, g_source_unref);    /* this source ends itself */
        refuse(h, "no TLS handshake within 10 s");
    }
    return G_SOURCE_REMOVE;
}

static void step(Handshake *h);

static gboolean on_ready(gint fd, GIOCondition cond, gpointer data)
{
    step(data);
    return G_SOURCE_CONTINUE;
}

static void done(Handshake *h)
{
    const char *who = tls_session_peer_identity(h->tls);

    g_message("QMP: TLS client %s connected as %s%s%s", h->peer, who ? "'" : "",
              who ? who : "an anonymous client", who ? "'" : "");
    qmp_server_conn_new(h->fd, h->tls, h->peer);
    h->tls = NULL;
    h->peer = NULL;
    handshake_free(h, false);
}

static void step(Handshake *h)
{
    GError *err = NULL;

    switch (tls_session_handshake_step(h->tls, &err)) {
    case TLS_STEP_DONE:
        done(h);
        break;
    case TLS_STEP_AGAIN:
        qmp_unwatch(&h->watch);
        h->watch = qmp_watch_fd(h->fd, tls_session_wait_events(h->tls) == POLLOUT ? G_IO_OUT
                                : G_IO_IN | G_IO_HUP | G_IO_ERR, on_ready, h);
        break;
    case TLS_STEP_FAILED:
        refuse(h, err->message);
        g_error_free(err);
        break;
    }
}

void qmp_tls_accept(int fd, TlsCreds *creds, const char *authz_id)
{
    GError *err = NULL;
    Handshake *h = g_new0(Handshake, 1);

    h->fd = fd;
    h->peer = socket_peer_name(fd);
    handshakes = g_list_prepend(handshakes, h);
    if (g_list_length(handshakes) > MAX_HANDSHAKES) {
        g_warning("QMP: refused TLS client %s: %d handshakes already in progress", h->peer,
                  MAX_HANDSHAKES);
        handshake_free(h, true);
        return;
    }
    h->tls = tls_session_new(creds, fd, NULL, authz_id, &err);
    if (!h->tls) {
        g_warning("QMP: refused TLS client %s: %s", h->peer, err->message);
        g_error_free(err);
        handshake_free(h, true);
        return;
    }
    set_timer(h, HANDSHAKE_TIMEOUT_MS);
    step(h);
}

void qmp_tls_accept_stop(void)
{
    while (handshakes) {
        handshake_free(handshakes->data, true);
    }
}
