/* MEASUREMENT ONLY (BLKMIG_NBD_ENGINE=pool): the other concurrency design
 * for the NBD driver, a pool of handles each used by one caller at a time,
 * the caller polling its own handle (libnbd's synchronous style, with the
 * timeout).  Kept only until tests/bench/nbd-client.sh has compared it
 * with the dispatch threads; no reconnect. */
#include "nbd-int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

bool nbdc_pool_wanted(void)
{
    const char *e = getenv("BLKMIG_NBD_ENGINE");
    return e && strcmp(e, "pool") == 0;
}

void nbdc_pool_start(NbdClient *c, struct nbd_handle *h)
{
    c->pool = g_async_queue_new();
    c->nconns = c->exp.can_multi_conn ? NBD_MAX_CONNS : 1;
    for (int i = 0; i < c->nconns; i++) {
        NbdConn *conn = &c->conns[i];
        conn->client = c;
        conn->index = i;
        conn->h = i == 0 ? h : nbdc_conn_connect(c, -1, NULL);
        conn->driver_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        conn->keeper_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        g_rw_lock_init(&conn->use_lock);
        g_mutex_init(&conn->lock);
        if (conn->h) {
            g_async_queue_push(c->pool, conn);
        }
    }
}

void nbdc_pool_stop(NbdClient *c)
{
    for (int i = 0; i < c->nconns; i++) {
        if (c->conns[i].h) {
            nbdc_conn_close(c->conns[i].h);
        }
        close(c->conns[i].driver_fd);
        close(c->conns[i].keeper_fd);
        g_rw_lock_clear(&c->conns[i].use_lock);
        g_mutex_clear(&c->conns[i].lock);
    }
    g_async_queue_unref(c->pool);
}

static int pending(NbdWait *w)
{
    g_mutex_lock(&w->conn->lock);
    int n = w->pending;
    g_mutex_unlock(&w->conn->lock);
    return n;
}

/* Drive CONN's handle until W's commands are done or DEADLINE passes. */
static void pool_drive(NbdConn *conn, NbdWait *w, gint64 deadline)
{
    while (pending(w) > 0) {
        gint64 left_ms = (deadline - g_get_monotonic_time()) / 1000;
        if (left_ms <= 0 || nbd_aio_is_dead(conn->h)) {
            nbdc_shut_socket(conn->h);
            w->err = w->err ? w->err : ETIMEDOUT;
            left_ms = 100;
        }
        nbdc_conn_poll(conn->h, -1, (int)left_ms);
    }
}

int nbdc_pool_request(NbdClient *c, uint64_t off, uint64_t len, void *buf, uint64_t max,
                      NbdSubmitFn submit, void *opaque)
{
    NbdConn *conn = g_async_queue_timeout_pop(c->pool, (guint64)c->timeout_us);
    NbdWait w = { .conn = conn };
    int ret;

    if (!conn) {
        return -EIO;
    }
    g_cond_init(&w.cond);
    do {
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
        pool_drive(conn, &w, deadline);
        ret = w.err ? -EIO : 0;
    } while (ret == 0 && len > 0);
    g_cond_clear(&w.cond);
    g_async_queue_push(c->pool, conn);
    return ret;
}
