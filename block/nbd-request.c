/* One request of the NBD driver: on the least busy connection, cut into
 * commands the server takes, submitted in waves of at most NBD_MAX_WAVE,
 * each wave waited for with the timeout (nbd-drive.c). */
#include "nbd-int.h"

#include <errno.h>

static int complete_cb(void *opaque, int *error)
{
    NbdWait *w = opaque;
    NbdConn *conn = w->conn;

    g_mutex_lock(&conn->lock);
    if (*error && !w->err) {
        w->err = *error;
    }
    if (--w->pending == 0) {
        g_cond_signal(&w->cond);
    }
    g_mutex_unlock(&conn->lock);
    return 1;                   /* retire the command: nobody asks for it */
}

static nbd_completion_callback request_callback(NbdWait *w)
{
    return (nbd_completion_callback){ .callback = complete_cb, .user_data = w };
}

/* The connection that is up with the fewest requests on it (ties go
 * round robin); NULL during an outage. */
static NbdConn *pick_conn(NbdClient *c)
{
    guint start = (guint)g_atomic_int_add(&c->next, 1);
    NbdConn *best = NULL;

    for (int i = 0; i < c->nconns; i++) {
        NbdConn *conn = &c->conns[(start + (guint)i) % (guint)c->nconns];
        if (g_atomic_int_get(&conn->up) &&
            (!best || g_atomic_int_get(&conn->busy) < g_atomic_int_get(&best->busy))) {
            best = conn;
        }
    }
    return best;
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
    g_mutex_lock(&w->conn->lock);
    w->pending += delta;
    if (err && !w->err) {
        w->err = err;
    }
    g_mutex_unlock(&w->conn->lock);
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
 * The driver is woken when the command could not be sent whole (libnbd
 * then waits to write), the keeper when the handle died under us. */
static bool submit_one(NbdConn *conn, NbdWait *w, uint64_t off, uint64_t len, void *buf,
                     NbdSubmitFn submit, void *opaque)
{
    bool need_write = false, dead = false;
    int err = 0;

    wait_add(w, 1, 0);          /* before: the callback may run at once */
    g_rw_lock_reader_lock(&conn->use_lock);
    struct nbd_handle *h = conn->h;
    int64_t cookie = h ? submit(h, off, len, buf, request_callback(w), opaque) : -1;
    if (cookie < 0) {
        err = submit_errno(h);
    }
    if (h) {
        need_write = nbd_aio_get_direction(h) & LIBNBD_AIO_DIRECTION_WRITE;
        dead = nbd_aio_is_dead(h);
    }
    g_rw_lock_reader_unlock(&conn->use_lock);
    if (need_write) {
        nbdc_wake(conn->driver_fd);
    }
    if (dead) {
        nbdc_wake(conn->keeper_fd);
    }
    if (cookie < 0) {
        wait_add(w, -1, err);
    }
    return cookie >= 0;
}

/* Up to NBD_MAX_WAVE commands from [*off, *off + *len), advancing. */
static void submit_wave(NbdWait *w, uint64_t *off, uint64_t *len, void **buf, uint64_t max,
                        NbdSubmitFn submit, void *opaque)
{
    int n = 0;

    do {                        /* once for a length 0 (flush) */
        uint64_t chunk = MIN(*len, max);
        if (!submit_one(w->conn, w, *off, chunk, *buf, submit, opaque)) {
            return;
        }
        *off += chunk;
        *len -= chunk;
        *buf = *buf ? (uint8_t *)*buf + chunk : NULL;
    } while (++n < NBD_MAX_WAVE && *len > 0);
}

int nbdc_request(NbdClient *c, uint64_t off, uint64_t len, void *buf, uint64_t max,
                 NbdSubmitFn submit, void *opaque)
{
    NbdConn *conn = pick_conn(c);
    NbdWait w = { .conn = conn };
    int ret;

    if (!conn) {
        return -EIO;
    }
    g_atomic_int_inc(&conn->busy);
    g_cond_init(&w.cond);
    do {
        gint64 deadline = g_get_monotonic_time() + c->timeout_us;
        submit_wave(&w, &off, &len, &buf, max, submit, opaque);
        nbdc_drive_wait(&w, deadline);
        ret = request_errno(w.err);
    } while (ret == 0 && len > 0);
    g_cond_clear(&w.cond);
    g_atomic_int_add(&conn->busy, -1);
    return ret;
}
