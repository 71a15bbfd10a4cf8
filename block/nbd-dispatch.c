/* The thread of each NBD connection: the only code that polls its socket
 * and feeds what arrives to libnbd (so completion callbacks run here and
 * wake the callers), that carries out a timed-out request's verdict by
 * shutting the socket down, and that brings a lost connection back with
 * back-off while callers get EIO at once. */
#include "nbd-int.h"

#include <errno.h>
#include <gio/gio.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

static bool stopping(NbdConn *conn)
{
    return g_atomic_int_get(&conn->client->stopping);
}

void nbdc_dispatch_wake(NbdConn *conn)
{
    uint64_t one = 1;
    if (write(conn->wake_fd, &one, sizeof(one)) < 0) {
        /* the counter cannot overflow in practice; a pending wake-up suffices */
    }
}

/* libnbd sees EOF next and fails every command still on the handle. */
static void shut_socket(NbdConn *conn)
{
    int fd = nbd_aio_get_fd(conn->h);
    if (fd >= 0) {
        shutdown(fd, SHUT_RDWR);
    }
}

/* Serve the handle until it dies or close() runs; why it died (g_free),
 * or NULL. */
static char *serve(NbdConn *conn)
{
    char *why = NULL;

    while (!stopping(conn) && !nbd_aio_is_dead(conn->h) && !nbd_aio_is_closed(conn->h)) {
        if (g_atomic_int_compare_and_exchange(&conn->kill, 1, 0)) {
            shut_socket(conn);
            why = why ? why : g_strdup("request timed out");
        }
        if (nbdc_conn_poll(conn->h, conn->wake_fd, -1) < 0 && !why) {
            why = g_strdup(nbd_get_error());
        }
    }
    return why;
}

/* Take the dead handle away from submitters and close it; libnbd has
 * already failed every command it held. */
static void drop(NbdConn *conn, const char *why)
{
    g_atomic_int_set(&conn->up, 0);
    g_rw_lock_writer_lock(&conn->use_lock);
    struct nbd_handle *h = conn->h;
    conn->h = NULL;
    g_rw_lock_writer_unlock(&conn->use_lock);
    nbd_close(h);
    g_message("NBD server '%s': connection %d lost (%s); requests fail with EIO "
              "until it is back", conn->client->uri, conn->index, why ? why : "closed");
}

static void publish(NbdConn *conn, struct nbd_handle *h)
{
    g_rw_lock_writer_lock(&conn->use_lock);
    conn->h = h;
    g_rw_lock_writer_unlock(&conn->use_lock);
    if (conn->ever_up) {
        g_message("NBD server '%s': connection %d is back", conn->client->uri, conn->index);
    }
    conn->ever_up = true;
    g_atomic_int_set(&conn->up, 1);
}

/* Sleep MS unless close() wakes the thread. */
static void backoff_sleep(NbdConn *conn, guint ms)
{
    struct pollfd pfd = { .fd = conn->wake_fd, .events = POLLIN };
    uint64_t count;

    if (poll(&pfd, 1, (int)ms) > 0 && read(conn->wake_fd, &count, sizeof(count)) < 0) {
        /* drained or nothing to drain: either way the loop looks again */
    }
}

/* One attempt after *BACKOFF_MS; false gives up: an extra multi-conn
 * connection that never came up (the server may allow fewer clients). */
static bool reconnect(NbdConn *conn, guint *backoff_ms)
{
    g_autoptr(GError) err = NULL;

    if (*backoff_ms) {
        backoff_sleep(conn, *backoff_ms);
        if (stopping(conn)) {
            return true;
        }
    }
    struct nbd_handle *h = nbdc_conn_connect(conn->client, conn->wake_fd, &err);
    if (h && !nbdc_conn_matches(conn->client, h, &err)) {
        nbdc_conn_close(h);
        h = NULL;
    }
    if (h) {
        publish(conn, h);
        return true;
    }
    g_debug("NBD connection %d: %s", conn->index, err->message);
    *backoff_ms = CLAMP(*backoff_ms * 2, NBD_BACKOFF_MIN_MS, NBD_BACKOFF_MAX_MS);
    return conn->ever_up;
}

static gpointer conn_thread(gpointer opaque)
{
    NbdConn *conn = opaque;
    guint backoff_ms = 0;       /* a new connection's first attempt goes at once */

    while (!stopping(conn)) {
        if (conn->h) {
            g_autofree char *why = serve(conn);
            if (!stopping(conn)) {
                drop(conn, why);
                backoff_ms = NBD_BACKOFF_MIN_MS;
            }
        } else if (!reconnect(conn, &backoff_ms)) {
            break;
        }
    }
    if (conn->h) {
        nbdc_conn_close(conn->h);
        conn->h = NULL;
    }
    return NULL;
}

void nbdc_dispatch_start(NbdConn *conn)
{
    g_autofree char *name = g_strdup_printf("nbd-conn%d", conn->index);

    conn->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (conn->wake_fd < 0) {
        g_error("Cannot create an eventfd for an NBD connection: %s", g_strerror(errno));
    }
    g_rw_lock_init(&conn->use_lock);
    conn->up = conn->h != NULL;
    conn->ever_up = conn->h != NULL;
    conn->thread = g_thread_new(name, conn_thread, conn);
}

void nbdc_dispatch_stop_all(NbdClient *c)
{
    g_atomic_int_set(&c->stopping, 1);
    for (int i = 0; i < c->nconns; i++) {
        nbdc_dispatch_wake(&c->conns[i]);
    }
    for (int i = 0; i < c->nconns; i++) {
        NbdConn *conn = &c->conns[i];
        g_thread_join(conn->thread);
        close(conn->wake_fd);
        g_rw_lock_clear(&conn->use_lock);
    }
}
