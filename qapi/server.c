/* QMP sockets: listeners, one connection per client, and the byte-level
 * I/O between them and the dispatcher.  Everything here runs on the main
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

#define READ_CHUNK (64 * 1024)
/* A client that stops reading is dropped once this much output piles up. */
#define MAX_PENDING_OUTPUT (16 * 1024 * 1024)
/* How long qmp_server_stop waits to hand remaining output to each client. */
#define STOP_FLUSH_TIMEOUT_MS 1000

typedef struct QmpListener {
    int fd;
    GSource *watch;
    char *unix_path;        /* socket file to remove on stop */
} QmpListener;

typedef struct QmpConn {
    int fd;
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

static GSource *watch_fd(int fd, GIOCondition cond, GUnixFDSourceFunc fn, gpointer data)
{
    GSource *src = g_unix_fd_source_new(fd, cond);
    g_source_set_callback(src, (GSourceFunc)(void (*)(void))fn, data, NULL);
    g_source_attach(src, qmp_server_context());
    return src;
}

static void unwatch(GSource **src)
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
    unwatch(&c->read_watch);
    unwatch(&c->write_watch);
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
    unwatch(&c->read_watch);
    unwatch(&c->write_watch);
    if (!reaper) {
        reaper = g_idle_source_new();
        g_source_set_callback(reaper, reap_dead, NULL, NULL);
        g_source_attach(reaper, qmp_server_context());
    }
}

/* ---- output ---- */

static gboolean on_writable(gint fd, GIOCondition cond, gpointer data);

/* Send what the socket takes now; watch for writability if some is left. */
static void conn_flush(QmpConn *c)
{
    while (c->out->len > 0) {
        ssize_t n = send(c->fd, c->out->str, c->out->len, MSG_NOSIGNAL);
        if (n > 0) {
            g_string_erase(c->out, 0, n);
        } else if (n < 0 && errno == EINTR) {
            continue;
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
        c->write_watch = watch_fd(c->fd, G_IO_OUT, on_writable, c);
    } else if (c->out->len == 0) {
        unwatch(&c->write_watch);
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

static gboolean on_readable(gint fd, GIOCondition cond, gpointer data)
{
    QmpConn *c = data;
    char buf[READ_CHUNK];
    ssize_t n = read(c->fd, buf, sizeof(buf));

    if (n > 0) {
        qmp_splitter_feed(c->splitter, buf, (size_t)n);
    } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        /* EOF: replies already queued still go out before the close. */
        c->read_closed = true;
        unwatch(&c->read_watch);
        conn_flush(c);
    }
    return G_SOURCE_CONTINUE;
}

static void conn_new(int fd)
{
    QmpConn *c = g_new0(QmpConn, 1);
    int on = 1;

    g_unix_set_fd_nonblocking(fd, TRUE, NULL);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));  /* fails on unix: fine */
    c->fd = fd;
    c->out = g_string_new(NULL);
    c->splitter = qmp_splitter_new(on_text, on_framing_error, c);
    c->read_watch = watch_fd(fd, G_IO_IN | G_IO_HUP | G_IO_ERR, on_readable, c);
    conns = g_list_append(conns, c);

    char *greeting = qmp_greeting_line();
    conn_send(c, greeting);
    g_free(greeting);
}

static gboolean on_accept(gint fd, GIOCondition cond, gpointer data)
{
    int cfd = socket_accept(fd);
    if (cfd >= 0) {
        conn_new(cfd);
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED) {
        g_warning("QMP: accept failed: %s", g_strerror(errno));
    }
    return G_SOURCE_CONTINUE;
}

/* ---- server ---- */

bool qmp_server_start(const char *endpoint_uri, GError **errp)
{
    Endpoint ep;
    if (!endpoint_parse(endpoint_uri, (1u << ENDPOINT_TCP) | (1u << ENDPOINT_UNIX), &ep, errp)) {
        return false;
    }
    int fd = endpoint_listen(&ep, errp);
    if (fd < 0) {
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
    l->watch = watch_fd(fd, G_IO_IN, on_accept, l);
    listeners = g_list_append(listeners, l);
    endpoint_clear(&ep);
    return true;
}

static void listener_free(QmpListener *l)
{
    unwatch(&l->watch);
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
    for (GList *l = conns; l; l = l->next) {
        conn_drain(l->data);
    }
    g_list_free_full(conns, (GDestroyNotify)conn_free);
    conns = NULL;
    unwatch(&reaper);
    g_clear_pointer(&server_context, g_main_context_unref);
    server_thread = NULL;
}
