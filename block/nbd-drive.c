/* Waiting for NBD replies: one waiting caller at a time drives its
 * connection (polls the socket, lets libnbd read the replies and run the
 * completion callbacks, which wake the other waiters); when its own
 * commands are done it hands the role to the next waiter.  A caller that
 * waits past its deadline has the socket shut down, so libnbd fails every
 * command on the connection and releases their buffers before the caller
 * returns. */
#include "nbd-int.h"

#include <errno.h>
#include <sys/socket.h>

void nbdc_shut_socket(struct nbd_handle *h)
{
    int fd = nbd_aio_get_fd(h);
    if (fd >= 0) {
        shutdown(fd, SHUT_RDWR);
    }
}

static int ms_until(gint64 deadline)
{
    gint64 ms = (deadline - g_get_monotonic_time() + 999) / 1000;
    return deadline == G_MAXINT64 ? -1 : (int)CLAMP(ms, 0, G_MAXINT);
}

static int pending(NbdWait *w)
{
    g_mutex_lock(&w->conn->lock);
    int n = w->pending;
    g_mutex_unlock(&w->conn->lock);
    return n;
}

/* Tell the keeper that the handle died (or is about to), and why. */
static void note_death(NbdConn *conn, char *why)
{
    g_mutex_lock(&conn->lock);
    if (!conn->why) {
        conn->why = g_steal_pointer(&why);
    }
    g_mutex_unlock(&conn->lock);
    g_free(why);
    nbdc_wake(conn->keeper_fd);
}

/* Called with the role: poll H until W's commands are done.  Past
 * DEADLINE or when a waiter asks (kill), the socket is shut down. */
static void drive(NbdWait *w, struct nbd_handle *h, gint64 deadline)
{
    NbdConn *conn = w->conn;

    while (pending(w) > 0) {
        if (g_atomic_int_compare_and_exchange(&conn->kill, 1, 0) ||
            g_get_monotonic_time() >= deadline) {
            nbdc_shut_socket(h);
            note_death(conn, g_strdup_printf("no reply within %" G_GINT64_FORMAT " s",
                                             conn->client->timeout_us / G_USEC_PER_SEC));
            deadline = G_MAXINT64;
        }
        if (nbdc_conn_poll(h, conn->driver_fd, ms_until(deadline)) < 0 ||
            nbd_aio_is_dead(h) || nbd_aio_is_closed(h)) {
            const char *why = nbd_get_error();
            note_death(conn, g_strdup(why ? why : "closed"));
        }
    }
}

/* With conn->lock held: the role is free; the keeper, if it waits for
 * it, or else the first waiter, is told. */
static void pass_on(NbdConn *conn)
{
    NbdWait *next = g_queue_peek_head(&conn->waiters);

    if (conn->keeper_waiting) {
        g_cond_broadcast(&conn->idle);
    } else if (next) {
        g_cond_signal(&next->cond);
    }
}

/* With conn->lock held: drive until W is done, then free the role. */
static void drive_locked(NbdWait *w, gint64 deadline)
{
    NbdConn *conn = w->conn;
    struct nbd_handle *h = conn->h;

    conn->driving = true;
    g_mutex_unlock(&conn->lock);
    drive(w, h, deadline);
    g_mutex_lock(&conn->lock);
    conn->driving = false;
}

/* With conn->lock held: a waiter past its deadline asks the driver to
 * shut the connection down. */
static void ask_kill(NbdWait *w)
{
    NbdConn *conn = w->conn;

    w->err = w->err ? w->err : ETIMEDOUT;
    g_atomic_int_set(&conn->kill, 1);
    nbdc_wake(conn->driver_fd);
}

void nbdc_drive_wait(NbdWait *w, gint64 deadline)
{
    NbdConn *conn = w->conn;

    g_mutex_lock(&conn->lock);
    while (w->pending > 0) {
        if (!conn->driving) {
            drive_locked(w, deadline);
            continue;
        }
        g_queue_push_tail(&conn->waiters, w);
        bool woken = deadline == G_MAXINT64 ? (g_cond_wait(&w->cond, &conn->lock), true)
                                            : g_cond_wait_until(&w->cond, &conn->lock, deadline);
        g_queue_remove(&conn->waiters, w);
        if (!woken && w->pending > 0) {
            ask_kill(w);
            deadline = G_MAXINT64;  /* the kill completes the commands */
        }
    }
    if (!conn->driving) {
        pass_on(conn);
    }
    g_mutex_unlock(&conn->lock);
}

void nbdc_drive_take(NbdConn *conn)
{
    g_mutex_lock(&conn->lock);
    conn->keeper_waiting++;
    while (conn->driving) {
        g_cond_wait(&conn->idle, &conn->lock);
    }
    conn->keeper_waiting--;
    conn->driving = true;
    g_mutex_unlock(&conn->lock);
}

void nbdc_drive_release(NbdConn *conn)
{
    g_mutex_lock(&conn->lock);
    conn->driving = false;
    pass_on(conn);
    g_mutex_unlock(&conn->lock);
}
