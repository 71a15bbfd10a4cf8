/* One request of the NBD driver: cut into commands the server takes,
 * submitted on one connection in waves of at most NBD_MAX_WAVE, each wave
 * waited for with the timeout.  A wave past its deadline makes the
 * connection drop; libnbd then fails its commands, so the caller's buffer
 * is free again before the caller gets EIO. */
#include "nbd-int.h"

#include <errno.h>

static int complete_cb(void *opaque, int *error)
{
    NbdWait *w = opaque;

    g_mutex_lock(&w->lock);
    if (*error && !w->err) {
        w->err = *error;
    }
    if (--w->pending == 0) {
        g_cond_signal(&w->cond);
    }
    g_mutex_unlock(&w->lock);
    return 1;                   /* retire the command: nobody asks for it */
}

nbd_completion_callback nbdc_request_callback(NbdWait *w)
{
    return (nbd_completion_callback){ .callback = complete_cb, .user_data = w };
}

/* A connection that is up, round robin; NULL during an outage. */
static NbdConn *pick_conn(NbdClient *c)
{
    guint start = (guint)g_atomic_int_add(&c->next, 1);

    for (int i = 0; i < c->nconns; i++) {
        NbdConn *conn = &c->conns[(start + (guint)i) % (guint)c->nconns];
        if (g_atomic_int_get(&conn->up)) {
            return conn;
        }
    }
    return NULL;
}

/* The server's own errors pass through; anything about the connection
 * (lost, timed out, shut down) is EIO. */
static int request_errno(int err)
{
    switch (err) {
    case 0:
        return 0;
    case EPERM: case EINVAL: case ENOSPC: case ENOTSUP: case EOVERFLOW: case ENOMEM:
        return -err;
    default:
        return -EIO;
    }
}

static void wait_add(NbdWait *w, int delta, int err)
{
    g_mutex_lock(&w->lock);
    w->pending += delta;
    if (err && !w->err) {
        w->err = err;
    }
    g_mutex_unlock(&w->lock);
}

/* Why H refused a command: a handle that is no longer connected refuses
 * everything (libnbd says EINVAL, "invalid state"), which is a connection
 * problem; otherwise libnbd's own check failed (bounds, flags). */
static int submit_errno(struct nbd_handle *h)
{
    if (!h || (!nbd_aio_is_ready(h) && !nbd_aio_is_processing(h))) {
        return ENOTCONN;
    }
    return nbd_get_errno() ? nbd_get_errno() : EIO;
}

/* Submit one command; false (and W's error set) when it was not queued.
 * The dispatch thread is woken when the command could not be sent whole
 * (libnbd then waits to write) or the handle died under the submitter. */
bool nbdc_submit_one(NbdConn *conn, NbdWait *w, uint64_t off, uint64_t len, void *buf,
                       NbdSubmitFn submit, void *opaque)
{
    int err = 0;
    bool wake = false;

    wait_add(w, 1, 0);          /* before: the callback may run at once */
    g_rw_lock_reader_lock(&conn->use_lock);
    struct nbd_handle *h = conn->h;
    int64_t cookie = h ? submit(h, off, len, buf, nbdc_request_callback(w), opaque) : -1;
    if (cookie < 0) {
        err = submit_errno(h);
    }
    if (h) {
        wake = (nbd_aio_get_direction(h) & LIBNBD_AIO_DIRECTION_WRITE) || nbd_aio_is_dead(h);
    }
    g_rw_lock_reader_unlock(&conn->use_lock);
    if (wake) {
        nbdc_dispatch_wake(conn);
    }
    if (cookie < 0) {
        wait_add(w, -1, err);
    }
    return cookie >= 0;
}

/* Wait for W's commands.  Past DEADLINE the connection is told to drop,
 * which completes them (with ENOTCONN) within a poll cycle of its thread;
 * that last wait needs no deadline of its own. */
static void wait_wave(NbdConn *conn, NbdWait *w, gint64 deadline)
{
    bool dropped = false;

    g_mutex_lock(&w->lock);
    while (w->pending > 0) {
        if (dropped) {
            g_cond_wait(&w->cond, &w->lock);
        } else if (!g_cond_wait_until(&w->cond, &w->lock, deadline) && w->pending > 0) {
            w->err = w->err ? w->err : ETIMEDOUT;
            dropped = true;
            g_atomic_int_set(&conn->kill, 1);
            nbdc_dispatch_wake(conn);
        }
    }
    g_mutex_unlock(&w->lock);
    if (dropped) {
        g_message("NBD server '%s': no reply within %" G_GINT64_FORMAT " s; dropped "
                  "connection %d", conn->client->uri, conn->client->timeout_us / G_USEC_PER_SEC,
                  conn->index);
    }
}

int nbdc_request(NbdClient *c, uint64_t off, uint64_t len, void *buf, uint64_t max,
                NbdSubmitFn submit, void *opaque)
{
    if (c->pool) {
        return nbdc_pool_request(c, off, len, buf, max, submit, opaque);
    }
    NbdConn *conn = pick_conn(c);
    NbdWait w = { .pending = 0 };
    int ret;

    if (!conn) {
        return -EIO;
    }
    g_mutex_init(&w.lock);
    g_cond_init(&w.cond);
    do {                        /* once for a length 0 (flush) */
        gint64 deadline = g_get_monotonic_time() + c->timeout_us;
        int n = 0;
        do {
            uint64_t chunk = MIN(len, max);
            if (!nbdc_submit_one(conn, &w, off, chunk, buf, submit, opaque)) {
                break;
            }
            off += chunk;
            len -= chunk;
            buf = buf ? (uint8_t *)buf + chunk : NULL;
        } while (++n < NBD_MAX_WAVE && len > 0);
        wait_wave(conn, &w, deadline);
        ret = request_errno(w.err);
    } while (ret == 0 && len > 0);
    g_cond_clear(&w.cond);
    g_mutex_clear(&w.lock);
    return ret;
}
