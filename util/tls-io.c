/* Moving bytes through an established TLS session: single attempts that
 * behave like recv()/send() on a non-blocking socket (for event loops and
 * callers with their own waits), blocking forms that wait in poll() with
 * a timeout, and close_notify. */
#include "tls-internal.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>

/* The largest TLS record: a write of this much is one record. */
#define RECORD_SIZE 16384

static int errno_for(int ret, int sys)
{
    if ((ret == GNUTLS_E_PUSH_ERROR || ret == GNUTLS_E_PULL_ERROR) && sys) {
        return sys;
    }
    return ret == GNUTLS_E_FATAL_ALERT_RECEIVED ? ECONNRESET : EIO;
}

void tls_io_error(TlsSession *s, int ret, bool receiving, GError **errp)
{
    const char *what = receiving ? "receive" : "send";
    int err = errno_for(ret, receiving ? s->recv_errno : s->send_errno);

    if (ret == GNUTLS_E_FATAL_ALERT_RECEIVED) {
        gnutls_alert_description_t alert = gnutls_alert_get(s->handle);
        tls_error(errp, TLS_ERR_IO, "TLS %s failed: the %s sent alert '%s'%s", what,
                  tls_session_peer_role(s), gnutls_alert_get_name(alert),
                  tls_alert_hint(s, alert));
    } else if (err != EIO) {
        tls_error(errp, TLS_ERR_IO, "TLS %s failed: %s", what, g_strerror(err));
    } else {
        tls_error(errp, TLS_ERR_IO, "TLS %s failed: %s", what, gnutls_strerror(ret));
    }
    errno = err;
}

bool tls_io_wait(TlsSession *s, short events, int timeout_ms, const char *what,
                 GError **errp)
{
    struct pollfd pfd = { .fd = s->fd, .events = events };
    gint64 deadline = timeout_ms < 0 ? -1 : g_get_monotonic_time() + timeout_ms * 1000LL;
    int r;

    do {
        int left = deadline < 0 ? -1
                   : (int)MAX(0, (deadline - g_get_monotonic_time() + 999) / 1000);
        r = poll(&pfd, 1, left);
    } while (r < 0 && errno == EINTR);
    if (r == 0) {
        tls_error(errp, TLS_ERR_TIMEOUT, "no byte moved for %d ms waiting to %s",
                  timeout_ms, what ? what : "move TLS data");
        errno = ETIMEDOUT;
        return false;
    }
    return true;    /* ready, or an error the next call reports */
}

ssize_t tls_session_recv(TlsSession *s, void *buf, size_t len, GError **errp)
{
    for (;;) {
        ssize_t n = gnutls_record_recv(s->handle, buf, len);
        if (n >= 0) {
            return n;
        }
        if (n == GNUTLS_E_AGAIN) {
            errno = EAGAIN;
            return -1;
        }
        if (n == GNUTLS_E_PREMATURE_TERMINATION) {
            return 0;   /* the protocol above knows whether it was complete */
        }
        if (gnutls_error_is_fatal((int)n)) {
            tls_io_error(s, (int)n, true, errp);
            return -1;
        }
        /* interrupted, a warning alert, a renegotiation request: go on */
    }
}

ssize_t tls_session_send(TlsSession *s, const void *buf, size_t len, GError **errp)
{
    for (;;) {
        ssize_t n = gnutls_record_send(s->handle, buf, len);
        if (n >= 0) {
            return n;
        }
        if (n == GNUTLS_E_AGAIN) {
            errno = EAGAIN;
            return -1;
        }
        if (n != GNUTLS_E_INTERRUPTED) {
            tls_io_error(s, (int)n, false, errp);
            return -1;
        }
    }
}

size_t tls_session_pending(TlsSession *s)
{
    return gnutls_record_check_pending(s->handle);
}

ssize_t tls_session_read(TlsSession *s, void *buf, size_t len, int timeout_ms,
                         GError **errp)
{
    for (;;) {
        ssize_t n = tls_session_recv(s, buf, len, errp);
        if (n >= 0 || errno != EAGAIN) {
            return n;
        }
        /* POLLIN only: a receiving thread must not spin on the sender's
         * writability (GnuTLS's direction flag is the session's). */
        if (!tls_io_wait(s, POLLIN, timeout_ms, "receive", errp)) {
            return -1;
        }
    }
}

bool tls_session_write_all(TlsSession *s, const void *buf, size_t len, int timeout_ms,
                           GError **errp)
{
    const uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = tls_session_send(s, p, len, errp);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && errno != EAGAIN) {
            return false;
        } else if (!tls_io_wait(s, POLLOUT, timeout_ms, "send", errp)) {
            return false;
        }
    }
    return true;
}

typedef struct Stage {
    uint8_t buf[RECORD_SIZE];
    size_t len;
} Stage;

static bool stage_flush(TlsSession *s, Stage *st, int timeout_ms, GError **errp)
{
    bool ok = tls_session_write_all(s, st->buf, st->len, timeout_ms, errp);

    st->len = 0;
    return ok;
}

/* Whole records straight from P while nothing is staged; the rest (small
 * pieces, tails) goes through the stage. */
static bool stage_piece(TlsSession *s, Stage *st, const uint8_t *p, size_t len,
                        int timeout_ms, GError **errp)
{
    while (len > 0) {
        size_t take;
        if (st->len == 0 && len >= RECORD_SIZE) {
            take = len - len % RECORD_SIZE;
            if (!tls_session_write_all(s, p, take, timeout_ms, errp)) {
                return false;
            }
        } else {
            take = MIN(len, RECORD_SIZE - st->len);
            memcpy(st->buf + st->len, p, take);
            st->len += take;
            if (st->len == RECORD_SIZE && !stage_flush(s, st, timeout_ms, errp)) {
                return false;
            }
        }
        p += take;
        len -= take;
    }
    return true;
}

bool tls_session_writev_all(TlsSession *s, const struct iovec *iov, int iovcnt,
                            int timeout_ms, GError **errp)
{
    Stage st = { .len = 0 };
    bool ok = true;

    for (int i = 0; ok && i < iovcnt; i++) {
        ok = stage_piece(s, &st, iov[i].iov_base, iov[i].iov_len, timeout_ms, errp);
    }
    return ok && (st.len == 0 || stage_flush(s, &st, timeout_ms, errp));
}

bool tls_session_bye(TlsSession *s, int timeout_ms, GError **errp)
{
    for (;;) {
        int ret = gnutls_bye(s->handle, GNUTLS_SHUT_WR);
        if (ret == GNUTLS_E_SUCCESS) {
            return true;
        }
        if (ret != GNUTLS_E_AGAIN && ret != GNUTLS_E_INTERRUPTED) {
            tls_io_error(s, ret, false, errp);
            return false;
        }
        if (!tls_io_wait(s, POLLOUT, timeout_ms, "send close_notify", errp)) {
            return false;
        }
    }
}
