/* The NBD server: a listening socket, an accept thread, a thread per
 * connection, and a registry so stopping can reach every connection. */
#include "nbd-internal.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <glib-unix.h>

#include "util/sockets.h"

static struct {
    GMutex lock;
    GCond cond;             /* signalled when a connection finished */
    bool running;
    int listen_fd;
    int wake_fds[2];        /* written by stop to end the accept loop */
    GThread *accept_thread;
    char *unix_path;        /* socket file to remove on stop */
    NBDTlsConfig *tls;      /* or NULL */
    GList *conns;           /* NBDConn*, for shutdown() on stop */
    unsigned live;          /* connection threads not yet finished */
    unsigned serial;
} srv = { .listen_fd = -1, .wake_fds = { -1, -1 } };

/* Called by a connection thread as its last act. */
void nbd_server_conn_done(NBDConn *c)
{
    /* Unlist before closing: stop must never shutdown() a reused fd. */
    g_mutex_lock(&srv.lock);
    srv.conns = g_list_remove(srv.conns, c);
    g_mutex_unlock(&srv.lock);

    nbd_conn_free(c);

    g_mutex_lock(&srv.lock);
    srv.live--;
    g_cond_broadcast(&srv.cond);
    g_mutex_unlock(&srv.lock);
}

static gpointer conn_thread(gpointer opaque)
{
    NBDConn *c = opaque;

    nbd_conn_serve(c);
    nbd_server_conn_done(c);
    return NULL;
}

/* Register and start a connection; takes ownership of FD. */
static void spawn_connection(int fd)
{
    g_autoptr(GError) err = NULL;
    g_autofree char *peer = NULL;
    GThread *thread;
    NBDConn *c;

    g_mutex_lock(&srv.lock);
    if (srv.live >= NBD_MAX_CONNECTIONS) {
        g_mutex_unlock(&srv.lock);
        g_warning("too many NBD connections (%d), refusing one", NBD_MAX_CONNECTIONS);
        close(fd);
        return;
    }
    peer = g_strdup_printf("nbd#%u", ++srv.serial);
    c = nbd_conn_new(fd, peer, srv.tls);
    srv.conns = g_list_prepend(srv.conns, c);
    srv.live++;
    g_mutex_unlock(&srv.lock);

    thread = g_thread_try_new(peer, conn_thread, c, &err);
    if (!thread) {
        g_warning("cannot start a thread for %s: %s", peer, err->message);
        nbd_server_conn_done(c);
        return;
    }
    g_thread_unref(thread);     /* it finishes on its own */
}

static gpointer accept_thread(gpointer opaque)
{
    for (;;) {
        struct pollfd pfd[2] = {
            { .fd = srv.listen_fd, .events = POLLIN },
            { .fd = srv.wake_fds[0], .events = POLLIN },
        };
        int fd;

        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            g_warning("NBD accept loop: poll: %s", g_strerror(errno));
            return NULL;
        }
        if (pfd[1].revents) {
            return NULL;
        }
        if (!pfd[0].revents) {
            continue;
        }
        fd = socket_accept(srv.listen_fd);
        if (fd < 0) {
            /* A client that gave up is nothing; anything else (out of
             * descriptors, memory) gets a pause instead of a busy loop. */
            if (errno != ECONNABORTED && errno != EAGAIN) {
                g_warning("NBD accept: %s", g_strerror(errno));
                g_usleep(100 * 1000);
            }
            continue;
        }
        spawn_connection(fd);
    }
}

bool nbd_server_start(const char *endpoint_uri, const NbdServerTls *tls, GError **errp)
{
    Endpoint ep = { 0 };
    int fd;

    if (srv.running) {
        g_set_error_literal(errp, G_FILE_ERROR, G_FILE_ERROR_EXIST, "NBD server already running");
        return false;
    }
    if (tls && tls->creds && !(srv.tls = nbd_tls_config_new(tls, errp))) {
        return false;
    }
    if (!endpoint_parse(endpoint_uri, (1u << ENDPOINT_TCP) | (1u << ENDPOINT_UNIX),
                        &ep, errp)) {
        g_clear_pointer(&srv.tls, nbd_tls_config_unref);
        return false;
    }
    fd = endpoint_listen(&ep, errp);
    if (fd < 0 || !g_unix_open_pipe(srv.wake_fds, FD_CLOEXEC, errp)) {
        if (fd >= 0) {
            close(fd);
        }
        endpoint_clear(&ep);
        g_clear_pointer(&srv.tls, nbd_tls_config_unref);
        return false;
    }
    srv.listen_fd = fd;
    srv.unix_path = ep.kind == ENDPOINT_UNIX ? g_strdup(ep.path) : NULL;
    endpoint_clear(&ep);

    nbd_gate_set_stopping(false);
    nbd_budget_set_stopping(false);
    srv.running = true;
    srv.accept_thread = g_thread_new("nbd-accept", accept_thread, NULL);
    g_info("NBD server listening on %s", endpoint_uri);
    return true;
}

void nbd_server_stop(void)
{
    if (!srv.running) {
        return;
    }
    /* No new connections. */
    (void)!write(srv.wake_fds[1], "x", 1);
    g_thread_join(srv.accept_thread);
    srv.accept_thread = NULL;
    close(srv.listen_fd);
    close(srv.wake_fds[0]);
    close(srv.wake_fds[1]);
    srv.listen_fd = srv.wake_fds[0] = srv.wake_fds[1] = -1;
    if (srv.unix_path) {
        unlink(srv.unix_path);
        g_clear_pointer(&srv.unix_path, g_free);
    }

    /* Held requests fail, waits for budget end, blocked sockets wake up,
     * threads finish. */
    nbd_gate_set_stopping(true);
    nbd_budget_set_stopping(true);
    g_mutex_lock(&srv.lock);
    for (GList *l = srv.conns; l; l = l->next) {
        shutdown(((NBDConn *)l->data)->fd, SHUT_RDWR);
    }
    while (srv.live > 0) {
        g_cond_wait(&srv.cond, &srv.lock);
    }
    g_mutex_unlock(&srv.lock);
    g_clear_pointer(&srv.tls, nbd_tls_config_unref);
    srv.running = false;
}
