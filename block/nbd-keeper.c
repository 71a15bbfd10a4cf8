/* The keeper thread of each NBD connection: it sleeps until the server
 * hangs up, a driver finds the handle dead, or the drive closes; it takes
 * a dead handle away from the callers (who get EIO at once meanwhile) and
 * brings the connection back with back-off.  It never touches the socket
 * on the path of a request: callers drive their own replies
 * (nbd-drive.c). */
#include "nbd-int.h"

#include <errno.h>
#include <gio/gio.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* Attempts of the keeper to see a hung-up socket's EOF before it gives
 * up waiting for libnbd (each NBD_EOF_POLL_MS). */
#define NBD_EOF_POLLS 10
#define NBD_EOF_POLL_MS 100

static bool stopping(NbdConn *conn)
{
    return g_atomic_int_get(&conn->client->stopping);
}

void nbdc_wake(int fd)
{
    uint64_t one = 1;
    if (write(fd, &one, sizeof(one)) < 0) {
        /* EAGAIN: the counter is already far from zero; awake anyway */
    }
}

static void drain(int fd)
{
    uint64_t count;
    if (read(fd, &count, sizeof(count)) < 0) {
        /* EAGAIN: nothing was pending */
    }
}

static bool handle_dead(struct nbd_handle *h)
{
    return nbd_aio_is_dead(h) || nbd_aio_is_closed(h);
}

/* The server hung up while no caller drove: let libnbd read the EOF. */
static void finish_hangup(NbdConn *conn)
{
    nbdc_drive_take(conn);
    for (int i = 0; i < NBD_EOF_POLLS && !handle_dead(conn->h); i++) {
        if (nbdc_conn_poll(conn->h, -1, NBD_EOF_POLL_MS) < 0) {
            g_mutex_lock(&conn->lock);
            conn->why = conn->why ? conn->why : g_strdup(nbd_get_error());
            g_mutex_unlock(&conn->lock);
        }
    }
    if (!handle_dead(conn->h)) {
        nbdc_shut_socket(conn->h);
        nbdc_conn_poll(conn->h, -1, NBD_EOF_POLL_MS);
    }
    nbdc_drive_release(conn);
}

/* Sleep until the handle is dead or close() runs.  Only a hang-up wakes
 * the keeper from the socket (POLLRDHUP), never a reply. */
static void watch(NbdConn *conn)
{
    while (!stopping(conn) && !handle_dead(conn->h)) {
        struct pollfd pfd[2] = {
            { .fd = nbd_aio_get_fd(conn->h), .events = POLLRDHUP },
            { .fd = conn->keeper_fd, .events = POLLIN },
        };
        if (poll(pfd, 2, -1) <= 0) {
            continue;
        }
        if (pfd[1].revents & POLLIN) {
            drain(conn->keeper_fd);
        }
        if (pfd[0].revents & (POLLRDHUP | POLLHUP | POLLERR)) {
            finish_hangup(conn);
        }
    }
}

/* Take the dead handle away from submitters and drivers and close it;
 * libnbd has already failed every command it held. */
static void drop(NbdConn *conn)
{
    nbdc_drive_take(conn);
    g_atomic_int_set(&conn->up, 0);
    g_rw_lock_writer_lock(&conn->use_lock);
    struct nbd_handle *h = conn->h;
    conn->h = NULL;
    g_rw_lock_writer_unlock(&conn->use_lock);
    g_mutex_lock(&conn->lock);
    g_autofree char *why = conn->why;
    conn->why = NULL;
    g_mutex_unlock(&conn->lock);
    nbdc_drive_release(conn);
    nbd_close(h);
    g_message("NBD server '%s': connection %d lost (%s); requests fail with EIO "
              "until it is back", conn->client->uri, conn->index, why ? why : "closed");
}

static void publish(NbdConn *conn, struct nbd_handle *h)
{
    nbdc_drive_take(conn);
    g_rw_lock_writer_lock(&conn->use_lock);
    conn->h = h;
    g_rw_lock_writer_unlock(&conn->use_lock);
    nbdc_drive_release(conn);
    if (conn->ever_up) {
        g_message("NBD server '%s': connection %d is back", conn->client->uri, conn->index);
    }
    conn->ever_up = true;
    g_atomic_int_set(&conn->up, 1);
}

/* Sleep MS unless close() wakes the keeper. */
static void backoff_sleep(NbdConn *conn, guint ms)
{
    struct pollfd pfd = { .fd = conn->keeper_fd, .events = POLLIN };

    if (poll(&pfd, 1, (int)ms) > 0) {
        drain(conn->keeper_fd);
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
    struct nbd_handle *h = nbdc_conn_connect(conn->client, conn->keeper_fd, &err);
    if (h && !nbdc_conn_matches(conn->client, h, &err)) {
        g_message("NBD server '%s': %s", conn->client->uri, err->message);
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

static gpointer keeper_thread(gpointer opaque)
{
    NbdConn *conn = opaque;
    guint backoff_ms = 0;       /* a new connection's first attempt goes at once */

    while (!stopping(conn)) {
        if (conn->h) {
            watch(conn);
            if (!stopping(conn)) {
                drop(conn);
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

static int new_eventfd(void)
{
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fd < 0) {
        g_error("Cannot create an eventfd for an NBD connection: %s", g_strerror(errno));
    }
    return fd;
}

void nbdc_keeper_start(NbdConn *conn)
{
    g_autofree char *name = g_strdup_printf("nbd-conn%d", conn->index);

    conn->keeper_fd = new_eventfd();
    conn->driver_fd = new_eventfd();
    g_rw_lock_init(&conn->use_lock);
    g_mutex_init(&conn->lock);
    g_cond_init(&conn->idle);
    g_queue_init(&conn->waiters);
    conn->up = conn->h != NULL;
    conn->ever_up = conn->h != NULL;
    conn->keeper = g_thread_new(name, keeper_thread, conn);
}

void nbdc_keeper_stop_all(NbdClient *c)
{
    g_atomic_int_set(&c->stopping, 1);
    for (int i = 0; i < c->nconns; i++) {
        nbdc_wake(c->conns[i].keeper_fd);
    }
    for (int i = 0; i < c->nconns; i++) {
        NbdConn *conn = &c->conns[i];
        g_thread_join(conn->keeper);
        close(conn->keeper_fd);
        close(conn->driver_fd);
        g_rw_lock_clear(&conn->use_lock);
        g_mutex_clear(&conn->lock);
        g_cond_clear(&conn->idle);
        g_free(conn->why);
    }
}
