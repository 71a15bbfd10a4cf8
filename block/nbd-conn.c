/* One libnbd handle of the NBD driver: connecting it within the timeout
 * (libnbd's blocking connect calls have none, so the aio connect is
 * driven here with a deadline), what its export offers, whether a
 * reconnected handle still serves the same export, and a goodbye that
 * cannot hang. */
#include "nbd-int.h"

#include <errno.h>
#include <gio/gio.h>
#include <inttypes.h>
#include <poll.h>
#include <unistd.h>

/* How long a graceful disconnect may wait for the server. */
#define NBD_DISCONNECT_MS 1000

int nbdc_conn_poll(struct nbd_handle *h, int wake_fd, int timeout_ms)
{
    unsigned dir = nbd_aio_get_direction(h);
    struct pollfd pfd[2] = {
        { .fd = nbd_aio_get_fd(h),
          .events = (short)((dir & LIBNBD_AIO_DIRECTION_READ ? POLLIN : 0) |
                            (dir & LIBNBD_AIO_DIRECTION_WRITE ? POLLOUT : 0)) },
        { .fd = wake_fd, .events = POLLIN },
    };
    uint64_t count;

    if (poll(pfd, 2, timeout_ms) <= 0) {
        return 0;                           /* timeout or EINTR: caller re-checks */
    }
    short r = pfd[0].revents;
    int ret = 0;
    if ((dir & LIBNBD_AIO_DIRECTION_READ) && (r & (POLLIN | POLLHUP | POLLERR))) {
        ret = nbd_aio_notify_read(h);
    } else if ((dir & LIBNBD_AIO_DIRECTION_WRITE) && (r & (POLLOUT | POLLHUP | POLLERR))) {
        ret = nbd_aio_notify_write(h);
    }
    if (ret < 0) {
        return -1;
    }
    if (pfd[1].revents & POLLIN) {
        return read(wake_fd, &count, sizeof(count)) == sizeof(count) ? 1 : 0;
    }
    return 0;
}

static bool handle_dead(struct nbd_handle *h)
{
    return nbd_aio_is_dead(h) || nbd_aio_is_closed(h);
}

/* Drive H's connect and handshake: 0 when ready, -1 on a libnbd error,
 * -ETIMEDOUT past DEADLINE, -ECANCELED when close() runs meanwhile. */
static int run_until_ready(NbdClient *c, struct nbd_handle *h, gint64 deadline, int wake_fd)
{
    while (!nbd_aio_is_ready(h)) {
        if (handle_dead(h)) {
            return -1;
        }
        gint64 left_ms = (deadline - g_get_monotonic_time()) / 1000;
        if (left_ms <= 0) {
            return -ETIMEDOUT;
        }
        if (nbdc_conn_poll(h, wake_fd, (int)MIN(left_ms, G_MAXINT)) == 1 &&
            g_atomic_int_get(&c->stopping)) {
            return -ECANCELED;
        }
    }
    return 0;
}

/* The drive's TLS files on H (with an nbds:// URI, which requires TLS). */
static int set_tls(struct nbd_handle *h, const NbdTls *tls)
{
    g_autofree char *keys = NULL;

    if (!tls->dir) {
        return 0;
    }
    if (!tls->psk) {
        return nbd_set_tls_certificates(h, tls->dir) < 0 ||
               nbd_set_tls_verify_peer(h, tls->verify_peer) < 0 ? -1 : 0;
    }
    keys = g_build_filename(tls->dir, "keys.psk", NULL);
    return nbd_set_tls_psk_file(h, keys) < 0 || nbd_set_tls_username(h, tls->username) < 0
           ? -1 : 0;
}

/* A new handle asking for the block-status contexts the driver uses (a
 * server lacking one simply does not negotiate it), with C's TLS files. */
static struct nbd_handle *handle_new(NbdClient *c)
{
    struct nbd_handle *h = nbd_create();

    if (h && (nbd_add_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) < 0 ||
              nbd_add_meta_context(h, NBD_CTX_DEPTH) < 0 || set_tls(h, &c->tls) < 0)) {
        nbd_close(h);
        return NULL;
    }
    return h;
}

struct nbd_handle *nbdc_conn_connect(NbdClient *c, int wake_fd, GError **errp)
{
    struct nbd_handle *h = handle_new(c);
    gint64 deadline = g_get_monotonic_time() + c->timeout_us;
    int ret = -1;

    if (h && nbd_aio_connect_uri(h, c->uri) == 0) {
        ret = run_until_ready(c, h, deadline, wake_fd);
    }
    if (ret == 0) {
        return h;
    }
    g_set_error(errp, G_IO_ERROR, ret == -ETIMEDOUT ? G_IO_ERROR_TIMED_OUT : G_IO_ERROR_FAILED,
                "Cannot connect to NBD server '%s': %s", c->uri,
                ret == -ETIMEDOUT ? "no answer within the timeout" :
                ret == -ECANCELED ? "the drive is closing" : nbd_get_error());
    if (h) {
        nbd_close(h);
    }
    return NULL;
}

static uint32_t block_size(struct nbd_handle *h, int which, uint32_t fallback)
{
    int64_t v = nbd_get_block_size(h, which);
    return v > 0 && v <= UINT32_MAX ? (uint32_t)v : fallback;
}

bool nbdc_conn_describe(struct nbd_handle *h, NbdExport *exp, GError **errp)
{
    int64_t size = nbd_get_size(h);

    if (size < 0) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_FAILED, "Cannot get the export size: %s",
                    nbd_get_error());
        return false;
    }
    exp->size = (uint64_t)size;
    exp->read_only = nbd_is_read_only(h) == 1;
    exp->can_flush = nbd_can_flush(h) == 1;
    exp->can_fua = nbd_can_fua(h) == 1;
    exp->can_trim = nbd_can_trim(h) == 1;
    exp->can_zero = nbd_can_zero(h) == 1;
    exp->can_fast_zero = nbd_can_fast_zero(h) == 1;
    exp->can_multi_conn = nbd_can_multi_conn(h) == 1;
    exp->has_allocation = nbd_can_meta_context(h, LIBNBD_CONTEXT_BASE_ALLOCATION) == 1;
    exp->has_depth = nbd_can_meta_context(h, NBD_CTX_DEPTH) == 1;
    exp->min_block = block_size(h, LIBNBD_SIZE_MINIMUM, 1);
    exp->max_payload = MIN(block_size(h, LIBNBD_SIZE_MAXIMUM, NBD_MAX_PAYLOAD), NBD_MAX_PAYLOAD);
    exp->max_payload -= exp->max_payload % exp->min_block;
    return true;
}

bool nbdc_conn_matches(NbdClient *c, struct nbd_handle *h, GError **errp)
{
    NbdExport now;

    if (!nbdc_conn_describe(h, &now, errp)) {
        return false;
    }
    if (now.size != c->exp.size || now.read_only != c->exp.read_only ||
        now.has_allocation != c->exp.has_allocation) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "the export changed (size %" PRIu64 ", was %" PRIu64 "; read-only %d, "
                    "was %d); not using it", now.size, c->exp.size, now.read_only,
                    c->exp.read_only);
        return false;
    }
    return true;
}

void nbdc_conn_close(struct nbd_handle *h)
{
    gint64 deadline = g_get_monotonic_time() + NBD_DISCONNECT_MS * 1000;

    if (nbd_aio_is_ready(h) && nbd_aio_disconnect(h, 0) == 0) {
        while (!handle_dead(h) && g_get_monotonic_time() < deadline) {
            nbdc_conn_poll(h, -1, NBD_DISCONNECT_MS / 10);
        }
    }
    nbd_close(h);
}
