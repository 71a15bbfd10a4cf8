/* QMP sockets: listeners, one connection per client, and the byte-level
 * I/O between them and the dispatcher, in the clear or through a TLS
 * session (set up by server-tls.c).  Everything here runs on the main
 * context captured by the first qmp_server_start; connections never block
 * the loop (non-blocking fds, output buffered until writable).
 *
 * A connection that fails is only marked dead and its watches removed;
 * it is freed from an idle callback, because the failure may be noticed
 * deep inside another callback that still uses it (a broadcast triggered
 * by the command that connection itself is running). */
#include "qmp-internal.h"

#include <errno.h>
#include <glib-unix.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/sockets.h"
#include "util/tls.h"

#define READ_CHUNK (64 * 1024)
/* A client that stops reading is dropped once this much output piles up. */
#define MAX_PENDING_OUTPUT (16 * 1024 * 1024)
/* How long qmp_server_stop waits to hand remaining output to each client. */
#define STOP_FLUSH_TIMEOUT_MS 1000

typedef struct QmpListener {
    int fd;
    GSource *watch;
    char *unix_path;        /* socket file to remove on stop */
    TlsCreds *creds;        /* TLS: every client goes through a handshake */
    char *authz;            /* TLS: id of the authz object clients must pass */
} QmpListener;

typedef struct QmpConn {
    int fd;
    TlsSession *tls;        /* NULL: in the clear */
    char *peer;             /* for log lines */
    GSource *read_watch;
    GSource *write_watch;   /* only while output is pending */
    GString *out;
    QmpSplitter *splitter;
    QmpSession session;
    bool read_closed;       /* peer sent EOF: close once output is flushed */
    bool dead;
} QmpConn;

static GList *listeners;
static GList *conns;
static GSource *reaper;
static GMainContext *server_context;
static GThread *server_thread;

GMainContext *qmp_server_context(void)
{
    return server_context ? server_context : g_main_context_default();
}

bool qmp_server_in_main_thread(void)
{
    return !server_thread || server_thread == g_thread_self();
}

GSource *qmp_watch_fd(int fd, GIOCondition cond, GUnixFDSourceFunc fn, gpointer data)
{
    GSource *src = g_unix_fd_source_new(fd, cond);
    g_source_set_callback(src, (GSourceFunc)(void (*)(void))fn, data, NULL);
    g_source_attach(src, qmp_server_context());
    return src;
}

void qmp_unwatch(GSource **src)
{
    if (*src) {
        g_source_destroy(*src);
        g_source_unref(*src);
        *src = NULL;
    }
}

/* ---- connection lifetime ---- */

static void conn_free(QmpConn *c)
{
    qmp_unwatch(&c->read_watch);
    qmp_unwatch(&c->write_watch);
    if (c->tls) {
        tls_session_bye(c->tls, 0, NULL);   /* close_notify if it goes out at once */
        tls_session_free(c->tls);
    }
    g_free(c->peer);
    close(c->fd);
    qmp_splitter_free(c->splitter);
    g_string_free(c->out, TRUE);
    g_free(c);
}

static gboolean reap_dead(gpointer unused)
{
    for (GList *l = conns, *next; l; l = next) {
        next = l->next;
        QmpConn *c = l->data;
        if (c->dead) {
            conns = g_list_delete_link(conns, l);
            conn_free(c);
        }
    }
    g_clear_pointer(&reaper, g_source_unref);
    return G_SOURCE_REMOVE;
}

static void conn_kill(QmpConn *c)
{
    if (c->dead) {
        return;
    }
    c->dead = true;
    qmp_unwatch(&c->read_watch);
    qmp_unwatch(&c->write_watch);
    if (!reaper) {
        reaper = g_idle_source_new();
        g_source_set_callback(reaper, reap_dead, NULL, NULL);
        g_source_attach(reaper, qmp_server_context());
    }
}

/* ---- output ---- */

static gboolean on_writable(gint fd, GIOCondition cond, gpointer data);

/* The connection failed in a TLS call: say why (a plain socket's
 * failures are not worth a line: the client went away). */
static void conn_tls_error(QmpConn *c, GError *err)
{
    if (err) {
        g_message("QMP: TLS client %s: %s", c->peer, err->message);
        g_error_free(err);
    }
}

/* One send or TLS record; like send(2), EINTR already retried. */
static ssize_t conn_send_some(QmpConn *c, const char *buf, size_t len)
{
    GError *err = NULL;
    ssize_t n;

    if (!c->tls) {
        do {
            n = send(c->fd, buf, len, MSG_NOSIGNAL);
        } while (n < 0 && errno == EINTR);
        return n;
    }
    /* After EAGAIN this is called again with the same first bytes, as
     * TLS requires: output is only ever erased from the front once sent. */
    n = tls_session_send(c->tls, buf, len, &err);
    conn_tls_error(c, err);
    return n;
}

/* Send what the socket takes now; watch for writability if some is left. */
static void conn_flush(QmpConn *c)
{
    while (c->out->len > 0) {
        ssize_t n = conn_send_some(c, c->out->str, c->out->len);
        if (n > 0) {
            g_string_erase(c->out, 0, n);
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            conn_kill(c);
            return;
        }
    }
    if (c->out->len > MAX_PENDING_OUTPUT) {
        g_warning("QMP client not reading its replies; disconnecting it");
        conn_kill(c);
    } else if (c->out->len > 0 && !c->write_watch) {
        c->write_watch = qmp_watch_fd(c->fd, G_IO_OUT, on_writable, c);
    } else if (c->out->len == 0) {
        qmp_unwatch(&c->write_watch);
        if (c->read_closed) {
            conn_kill(c);
        }
    }
}

static void conn_send(QmpConn *c, const char *line)
{
    if (!c->dead) {
        g_string_append(c->out, line);
        conn_flush(c);
    }
}

static gboolean on_writable(gint fd, GIOCondition cond, gpointer data)
{
    conn_flush(data);
    return G_SOURCE_CONTINUE;
}

void qmp_server_broadcast(const char *line)
{
    for (GList *l = conns; l; l = l->next) {
        QmpConn *c = l->data;
        if (c->session.negotiated) {
            conn_send(c, line);
        }
    }
}

/* ---- input ---- */

static void on_text(const char *text, size_t len, void *opaque)
{
    QmpConn *c = opaque;
    if (c->dead) {
        return;
    }
    char *reply = qmp_dispatch_text(&c->session, text, len);
    conn_send(c, reply);
    g_free(reply);
}

static void on_framing_error(const char *desc, void *opaque)
{
    char *reply = qmp_framing_error_line(desc);
    conn_send(opaque, reply);
    g_free(reply);
}

static ssize_t conn_recv_some(QmpConn *c, char *buf, size_t len)
{
    GError *err = NULL;
    ssize_t n;

    if (!c->tls) {
        return read(c->fd, buf, len);
    }
    n = tls_session_recv(c->tls, buf, len, &err);
    conn_tls_error(c, err);
    return n;
}

/* One read; false when nothing more is to be read now. */
static bool conn_read_once(QmpConn *c)
{
    char buf[READ_CHUNK];
    ssize_t n = conn_recv_some(c, buf, sizeof(buf));

    if (n > 0) {
        qmp_splitter_feed(c->splitter, buf, (size_t)n);
        return true;
    }
    if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        /* EOF: replies already queued still go out before the close. */
        c->read_closed = true;
        qmp_unwatch(&c->read_watch);
        conn_flush(c);
    }
    return false;
}

static gboolean on_readable(gint fd, GIOCondition cond, gpointer data)
{
    QmpConn *c = data;

    /* A TLS session may hold decrypted bytes poll() cannot see. */
    while (conn_read_once(c) && c->tls && !c->dead && !c->read_closed &&
           tls_session_pending(c->tls) > 0) {
    }
    return G_SOURCE_CONTINUE;
}

void qmp_server_conn_new(int fd, TlsSession *tls, char *peer)
{
    QmpConn *c = g_new0(QmpConn, 1);
    int on = 1;

    g_unix_set_fd_nonblocking(fd, TRUE, NULL);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));  /* fails on unix: fine */
    c->fd = fd;
    c->tls = tls;
    c->peer = peer;
    c->out = g_string_new(NULL);
    c->splitter = qmp_splitter_new(on_text, on_framing_error, c);
    c->read_watch = qmp_watch_fd(fd, G_IO_IN | G_IO_HUP | G_IO_ERR, on_readable, c);
    conns = g_list_append(conns, c);

    char *greeting = qmp_greeting_line();
    conn_send(c, greeting);
    g_free(greeting);
    if (tls && tls_session_pending(tls) > 0) {
        on_readable(fd, G_IO_IN, c);    /* came with the handshake: poll() won't tell */
    }
}

static gboolean on_accept(gint fd, GIOCondition cond, gpointer data)
{
    QmpListener *l = data;
    int cfd = socket_accept(fd);

    if (cfd >= 0 && l->creds) {
        qmp_tls_accept(cfd, l->creds, l->authz);
    } else if (cfd >= 0) {
        qmp_server_conn_new(cfd, NULL, NULL);
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED) {
        g_warning("QMP: accept failed: %s", g_strerror(errno));
    }
    return G_SOURCE_CONTINUE;
}

/* ---- server ---- */

/* The credentials (endpoint=server) of a listener on EP, or NULL. */
static bool listener_creds(const Endpoint *ep, const char *creds_id, TlsCreds **out,
                           GError **errp)
{
    *out = NULL;
    if (!creds_id) {
        return true;
    }
    if (ep->kind != ENDPOINT_TCP) {
        g_set_error(errp, QMP_ERROR, QMP_ERR_GENERIC, "tls-creds needs a tcp: address");
        return false;
    }
    *out = tls_creds_lookup(creds_id, TLS_ENDPOINT_SERVER, errp);
    return *out != NULL;
}

bool qmp_server_start(const char *endpoint_uri, GError **errp)
{
    return qmp_server_start_tls(endpoint_uri, NULL, NULL, errp);
}

bool qmp_server_start_tls(const char *endpoint_uri, const char *creds_id,
                          const char *authz_id, GError **errp)
{
    Endpoint ep;
    TlsCreds *creds = NULL;
    int fd = -1;

    if (!endpoint_parse(endpoint_uri, (1u << ENDPOINT_TCP) | (1u << ENDPOINT_UNIX), &ep, errp)) {
        return false;
    }
    if (!listener_creds(&ep, creds_id, &creds, errp) || (fd = endpoint_listen(&ep, errp)) < 0) {
        tls_creds_unref(creds);
        endpoint_clear(&ep);
        return false;
    }
    if (!server_context) {
        server_context = g_main_context_ref_thread_default();
        server_thread = g_thread_self();
    }
    g_unix_set_fd_nonblocking(fd, TRUE, NULL);

    QmpListener *l = g_new0(QmpListener, 1);
    l->fd = fd;
    l->unix_path = ep.kind == ENDPOINT_UNIX ? g_strdup(ep.path) : NULL;
    l->creds = creds;
    l->authz = g_strdup(authz_id);
    l->watch = qmp_watch_fd(fd, G_IO_IN, on_accept, l);
    listeners = g_list_append(listeners, l);
    endpoint_clear(&ep);
    return true;
}

static void listener_free(QmpListener *l)
{
    qmp_unwatch(&l->watch);
    tls_creds_unref(l->creds);
    g_free(l->authz);
    close(l->fd);
    if (l->unix_path) {
        unlink(l->unix_path);
        g_free(l->unix_path);
    }
    g_free(l);
}

/* Last chance for queued replies and events (the "quit" reply, SHUTDOWN):
 * wait a little for each client to take them. */
static void conn_drain(QmpConn *c)
{
    gint64 deadline = g_get_monotonic_time() + STOP_FLUSH_TIMEOUT_MS * 1000;

    while (!c->dead && c->out->len > 0) {
        gint64 left_ms = (deadline - g_get_monotonic_time()) / 1000;
        struct pollfd pfd = { .fd = c->fd, .events = POLLOUT };
        if (left_ms <= 0 || poll(&pfd, 1, (int)left_ms) <= 0) {
            break;
        }
        conn_flush(c);
    }
}

void qmp_server_stop(void)
{
    g_list_free_full(listeners, (GDestroyNotify)listener_free);
    listeners = NULL;
    qmp_tls_accept_stop();
    for (GList *l = conns; l; l = l->next) {
        conn_drain(l->data);
    }
    g_list_free_full(conns, (GDestroyNotify)conn_free);
    conns = NULL;
    qmp_unwatch(&reaper);
    g_clear_pointer(&server_context, g_main_context_unref);
    server_thread = NULL;
}
