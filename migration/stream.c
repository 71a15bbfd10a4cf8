/* Buffered, rate-limited, error-latching byte stream over one fd, whose
 * socket I/O fails once the link stalls. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdatomic.h>
#include <string.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "migration/stream.h"
#include "util/bswap.h"
#include "util/tls.h"

#define STREAM_BUF_SIZE (64 * 1024)
/* Longest single sleep of the rate limiter, so that cancellation and live
 * limit changes take effect quickly. */
#define RATE_SLICE_US 20000

/* A token bucket; streams that share one (the connections of a multifd
 * migration) share its limit. */
typedef struct RateBucket {
    gint refs;
    GMutex lock;                /* guards everything below but rate_limit */
    _Atomic uint64_t rate_limit;
    uint64_t bucket_rate;       /* limit the bucket below was filled at */
    double tokens;
    gint64 refill_time;
} RateBucket;

/* A TLS session shared by the streams on one socket (the main stream and
 * its return path: one thread sends, one receives, as GnuTLS allows).
 * It runs on its own dup of the socket, so whichever stream closes first
 * never leaves it a closed (or reused) descriptor. */
typedef struct MigTls {
    gint refs;
    TlsSession *session;
    int fd;
} MigTls;

/* TLS records carry at most this much: big writes are cut at it. */
#define TLS_RECORD 16384

/* What the latched error says of the connection. */
typedef enum { ERR_OTHER, ERR_ENDED, ERR_STALLED, ERR_REFUSED } ErrorKind;

/* When a byte last arrived on any stream sharing it (the connections of
 * one incoming migration). */
typedef struct LinkClock {
    gint refs;
    _Atomic gint64 last_us;
} LinkClock;

struct MigStream {
    int fd;
    bool writer;
    bool is_socket;
    uint8_t *buf;
    size_t len;                 /* writer: bytes buffered; reader: bytes held */
    size_t pos;                 /* reader: next unread byte in buf */
    uint64_t bytes;

    GMutex err_lock;            /* serialises latching the first error */
    atomic_int err;
    char *err_msg;              /* written once, before err is published */
    atomic_bool cancelled;

    RateBucket *rate;           /* own, or shared with other streams */

    /* Socket waits are poll()s bounded by these, not blocking calls with
     * SO_RCVTIMEO / SO_SNDTIMEO, which belong to the socket: the source's
     * return path reads the main socket and must wait as long as it takes,
     * arrivals on other connections count, and neither a rate-limit pause
     * nor a wait that a shutdown ends early is a stall. */
    gint64 link_timeout_us;     /* 0: a wait lasts as long as it takes */
    LinkClock *clock;           /* own, or shared with other readers */
    _Atomic gint64 deadline_us; /* mig_stream_shutdown_at; 0: none */
    ErrorKind err_kind;         /* of the latched error */

    MigTls *tls;                /* NULL: in the clear */
    /* A TLS send that would have blocked must be retried with at least
     * as many bytes from the same place (util/tls.h): how many. */
    size_t tls_again;
};

static MigStream *stream_new(int fd, bool writer)
{
    MigStream *f = g_new0(MigStream, 1);
    struct stat st;

    f->fd = fd;
    f->writer = writer;
    f->is_socket = fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
    f->buf = g_malloc(STREAM_BUF_SIZE);
    g_mutex_init(&f->err_lock);
    f->rate = g_new0(RateBucket, 1);
    f->rate->refs = 1;
    g_mutex_init(&f->rate->lock);
    f->clock = g_new0(LinkClock, 1);
    f->clock->refs = 1;
    return f;
}

static void link_clock_unref(LinkClock *c)
{
    if (g_atomic_int_dec_and_test(&c->refs)) {
        g_free(c);
    }
}

static void rate_bucket_unref(RateBucket *b)
{
    if (g_atomic_int_dec_and_test(&b->refs)) {
        g_mutex_clear(&b->lock);
        g_free(b);
    }
}

MigStream *mig_stream_new_writer(int fd)
{
    return stream_new(fd, true);
}

MigStream *mig_stream_new_reader(int fd)
{
    return stream_new(fd, false);
}

static void mig_tls_unref(MigTls *t)
{
    if (t && g_atomic_int_dec_and_test(&t->refs)) {
        tls_session_free(t->session);
        close(t->fd);
        g_free(t);
    }
}

void mig_stream_close(MigStream *f)
{
    if (!f) {
        return;
    }
    if (f->writer) {
        mig_stream_flush(f);
    }
    mig_tls_unref(f->tls);
    close(f->fd);
    rate_bucket_unref(f->rate);
    link_clock_unref(f->clock);
    g_mutex_clear(&f->err_lock);
    g_free(f->err_msg);
    g_free(f->buf);
    g_free(f);
}

int mig_stream_fd(MigStream *f)
{
    return f->fd;
}

/* ---- errors ---- */

static void latch(MigStream *f, int err, const char *msg, ErrorKind kind)
{
    if (err > 0) {
        err = -err;
    } else if (err == 0) {
        err = -EIO;
    }
    g_mutex_lock(&f->err_lock);
    if (atomic_load(&f->err) == 0) {
        f->err_msg = g_strdup(msg ? msg : g_strerror(-err));
        f->err_kind = kind;
        atomic_store(&f->err, err);
    }
    g_mutex_unlock(&f->err_lock);
}

void mig_stream_set_error(MigStream *f, int err, const char *msg)
{
    latch(f, err, msg, ERR_OTHER);
}

/* Once the deadline of mig_stream_shutdown_at has passed. */
static void shutdown_if_due(MigStream *f)
{
    gint64 deadline = atomic_load(&f->deadline_us);

    if (deadline && g_get_monotonic_time() >= deadline && !atomic_load(&f->cancelled)) {
        mig_stream_shutdown(f);
    }
}

int mig_stream_error(MigStream *f)
{
    int err = atomic_load(&f->err);

    if (err == 0) {
        shutdown_if_due(f);
    }
    if (err == 0 && atomic_load(&f->cancelled)) {
        mig_stream_set_error(f, -ECANCELED, NULL);
        err = atomic_load(&f->err);
    }
    return err;
}

const char *mig_stream_error_msg(MigStream *f)
{
    return mig_stream_error(f) ? f->err_msg : NULL;
}

bool mig_stream_ended(MigStream *f)
{
    return mig_stream_error(f) && f->err_kind == ERR_ENDED;
}

bool mig_stream_stalled(MigStream *f)
{
    return mig_stream_error(f) && f->err_kind == ERR_STALLED;
}

bool mig_stream_refused(MigStream *f)
{
    return mig_stream_error(f) && f->err_kind == ERR_REFUSED;
}

/* The kernel ended the connection because the peer had gone silent
 * (TCP_USER_TIMEOUT, keepalive; see socket_set_link_timeout): it is closed
 * and nothing came from the peer for a while.  The error it reports says
 * less: ETIMEDOUT or an ICMP error to the first caller, a broken pipe or
 * an end of file to the others (the return path shares the socket). */
static bool peer_went_silent(MigStream *f)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);

    if (!f->link_timeout_us || getsockopt(f->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0) {
        return false;
    }
    return ti.tcpi_state == TCP_CLOSE &&
           (gint64)ti.tcpi_last_ack_recv * 1000 >= f->link_timeout_us / 2;
}

static void latch_silent_peer(MigStream *f)
{
    char *msg = g_strdup_printf("link stalled: the peer acknowledged nothing for %d s "
                                "(link-timeout)",
                                (int)(f->link_timeout_us / G_USEC_PER_SEC));

    latch(f, -ETIMEDOUT, msg, ERR_STALLED);
    g_free(msg);
}

/* Latch the errno of a failed syscall; a shutdown takes precedence because
 * the failure is then only its consequence. */
static void latch_errno(MigStream *f, int saved_errno)
{
    if (atomic_load(&f->cancelled)) {
        mig_stream_set_error(f, -ECANCELED, NULL);
    } else if (peer_went_silent(f)) {
        latch_silent_peer(f);
    } else {
        mig_stream_set_error(f, -saved_errno, NULL);
    }
}

/* A TLS call failed with ERR (errno set): a shutdown or a silent peer
 * explains it better, as for plain sockets. */
static void latch_tls_error(MigStream *f, GError *err)
{
    int saved = errno;

    if (atomic_load(&f->cancelled)) {
        mig_stream_set_error(f, -ECANCELED, NULL);
    } else if (peer_went_silent(f)) {
        latch_silent_peer(f);
    } else {
        /* util/tls says ECONNRESET for an alert: the peer refused us. */
        latch(f, -saved, err ? err->message : NULL,
              saved == ECONNRESET ? ERR_REFUSED : ERR_OTHER);
    }
    g_clear_error(&err);
    errno = saved;
}

static void latch_stall(MigStream *f, bool reading)
{
    char *msg = g_strdup_printf("link stalled: nothing %s for %d s (link-timeout)",
                                reading ? "arrived" : "could be sent",
                                (int)(f->link_timeout_us / G_USEC_PER_SEC));

    latch(f, -ETIMEDOUT, msg, ERR_STALLED);
    g_free(msg);
}

void mig_stream_shutdown(MigStream *f)
{
    atomic_store(&f->cancelled, true);
    if (f->is_socket) {
        shutdown(f->fd, SHUT_RDWR);
    }
}

void mig_stream_shutdown_read(MigStream *f)
{
    atomic_store(&f->cancelled, true);
    if (f->is_socket) {
        shutdown(f->fd, SHUT_RD);
    }
}

void mig_stream_shutdown_at(MigStream *f, gint64 deadline_us)
{
    atomic_store(&f->deadline_us, MAX(deadline_us, 1));
}

void mig_stream_set_link_timeout(MigStream *f, unsigned timeout_s)
{
    if (f->is_socket) {
        f->link_timeout_us = (gint64)timeout_s * G_USEC_PER_SEC;
    }
}

void mig_stream_share_arrivals(MigStream *f, MigStream *with)
{
    g_atomic_int_inc(&with->clock->refs);
    link_clock_unref(f->clock);
    f->clock = with->clock;
}

/* ---- TLS ---- */

bool mig_stream_start_tls(MigStream *f, TlsCreds *creds, const char *hostname,
                          const char *authz_id, int timeout_ms, GError **errp)
{
    int fd = dup(f->fd);
    TlsSession *s;

    g_assert(!f->tls && f->len == 0);
    if (fd < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(errno),
                    "cannot start TLS: %s", g_strerror(errno));
        return false;
    }
    s = tls_session_new(creds, fd, hostname, authz_id, errp);
    if (!s || !tls_session_handshake(s, timeout_ms, errp)) {
        tls_session_free(s);
        close(fd);
        return false;
    }
    f->tls = g_new0(MigTls, 1);
    f->tls->refs = 1;
    f->tls->session = s;
    f->tls->fd = fd;
    return true;
}

void mig_stream_share_tls(MigStream *f, MigStream *with)
{
    g_assert(!f->tls);
    if (with->tls) {
        g_atomic_int_inc(&with->tls->refs);
        f->tls = with->tls;
    }
}

const char *mig_stream_tls_peer(MigStream *f)
{
    return f->tls ? tls_session_peer_identity(f->tls->session) : NULL;
}

uint64_t mig_stream_bytes(MigStream *f)
{
    return f->bytes;
}

uint64_t mig_stream_unsent_bytes(MigStream *f)
{
    int queued = 0;

    if (!f->is_socket || ioctl(f->fd, SIOCOUTQ, &queued) < 0 || queued < 0) {
        return 0;
    }
    return queued;
}

/* When a socket wait that began at SINCE must end: at the shutdown
 * deadline, or once the link stalled: nothing moved since SINCE (nor, for
 * a read, arrived on a stream sharing the clock since then). */
static gint64 wait_end(MigStream *f, gint64 since, bool reading, bool *stall)
{
    gint64 deadline = atomic_load(&f->deadline_us);
    gint64 stall_at = G_MAXINT64;

    if (f->link_timeout_us) {
        gint64 last = reading ? MAX(since, atomic_load(&f->clock->last_us)) : since;
        stall_at = last + f->link_timeout_us;
    }
    *stall = !deadline || stall_at < deadline;
    return *stall ? stall_at : deadline;
}

/* Wait until the fd may be ready for EVENTS (the caller retries its call).
 * A socket wait that reaches its end latches the stall (or shuts the
 * stream down at its deadline); other fds, non-blocking ones handed to
 * us, are polled in short slices so a shutdown is noticed. */
static void wait_io(MigStream *f, short events, gint64 since, bool reading)
{
    struct pollfd pfd = { .fd = f->fd, .events = events };
    gint64 now = g_get_monotonic_time();
    bool stall = false;
    gint64 end = f->is_socket ? wait_end(f, since, reading, &stall) : now + RATE_SLICE_US;

    if (end <= now) {
        if (stall) {
            latch_stall(f, reading);
        } else {
            mig_stream_shutdown(f);
        }
        return;
    }
    poll(&pfd, 1, end == G_MAXINT64 ? -1 : (int)MIN((end - now + 999) / 1000, INT_MAX));
}

/* ---- rate limiting ---- */

void mig_stream_set_rate_limit(MigStream *f, uint64_t bytes_per_sec)
{
    atomic_store(&f->rate->rate_limit, bytes_per_sec);
}

void mig_stream_share_rate_limit(MigStream *f, MigStream *with)
{
    g_atomic_int_inc(&with->rate->refs);
    rate_bucket_unref(f->rate);
    f->rate = with->rate;
}

/* The most tokens a bucket holds: a tenth of a second at RATE. */
static uint64_t bucket_depth(uint64_t rate)
{
    return MAX(rate / 10, 1);
}

/* b->lock held. */
static void bucket_refill(RateBucket *b, uint64_t rate, uint64_t depth)
{
    gint64 now = g_get_monotonic_time();

    if (b->bucket_rate == 0) {
        /* Newly limited: the bucket starts empty. */
        b->tokens = 0;
        b->refill_time = now;
    }
    b->bucket_rate = rate;
    b->tokens += (double)(now - b->refill_time) * rate / G_USEC_PER_SEC;
    b->refill_time = now;
    if (b->tokens > depth) {
        b->tokens = depth;
    }
}

/* Take up to WANT tokens: how many (0 when the caller must wait *wait_us
 * first). */
static size_t bucket_take(RateBucket *b, uint64_t rate, size_t want, double *wait_us)
{
    uint64_t depth = bucket_depth(rate);
    uint64_t chunk = MIN(want, depth);
    size_t got = 0;

    g_mutex_lock(&b->lock);
    bucket_refill(b, rate, depth);
    if (b->tokens >= chunk) {
        b->tokens -= chunk;
        got = chunk;
    } else {
        *wait_us = (chunk - b->tokens) * G_USEC_PER_SEC / rate;
    }
    g_mutex_unlock(&b->lock);
    return got;
}

gint64 mig_stream_rate_delay_us(MigStream *f, size_t bytes)
{
    RateBucket *b = f->rate;
    uint64_t rate = atomic_load(&b->rate_limit);
    uint64_t depth = bucket_depth(rate);
    double want;
    gint64 delay = 0;

    if (rate == 0) {
        return 0;
    }
    want = MIN(f->len + bytes, depth);
    g_mutex_lock(&b->lock);
    bucket_refill(b, rate, depth);
    if (b->tokens < want) {
        delay = (gint64)((want - b->tokens) * G_USEC_PER_SEC / rate) + 1;
    }
    g_mutex_unlock(&b->lock);
    return delay;
}

/* Wait until some of WANT bytes may be written and take their tokens.
 * Returns how many (at most the bucket depth), or 0 when cancelled. */
static size_t rate_limit_take(MigStream *f, size_t want)
{
    RateBucket *b = f->rate;

    for (;;) {
        uint64_t rate = atomic_load(&b->rate_limit);
        double wait_us = 0;
        size_t got;

        if (mig_stream_error(f)) {
            return 0;
        }
        if (rate == 0) {
            g_mutex_lock(&b->lock);
            b->bucket_rate = 0;
            g_mutex_unlock(&b->lock);
            return want;
        }
        got = bucket_take(b, rate, want, &wait_us);
        if (got) {
            return got;
        }
        g_usleep(CLAMP((gulong)wait_us, 1, RATE_SLICE_US));
    }
}

/* Give back tokens taken for bytes the kernel did not accept. */
static void rate_limit_refund(MigStream *f, size_t unused)
{
    RateBucket *b = f->rate;

    if (unused == 0) {
        return;
    }
    g_mutex_lock(&b->lock);
    if (b->bucket_rate) {
        b->tokens += unused;
    }
    g_mutex_unlock(&b->lock);
}

/* ---- writing ---- */

/* One TLS record from the first piece of IOV, at most LIMIT bytes but
 * never fewer than a send that would have blocked tried: like sendmsg,
 * with any error but EAGAIN latched. */
static ssize_t tls_write_some(MigStream *f, const struct iovec *iov, size_t limit)
{
    size_t len = MIN(iov->iov_len, MAX(MIN(limit, TLS_RECORD), f->tls_again));
    GError *err = NULL;
    ssize_t n = tls_session_send(f->tls->session, iov->iov_base, len, &err);

    if (n < 0 && errno == EAGAIN) {
        f->tls_again = MAX(f->tls_again, len);
    } else if (n < 0) {
        latch_tls_error(f, err);
    } else {
        f->tls_again = 0;
    }
    return n;
}

/* One writev/sendmsg of at most LIMIT bytes from IOV. */
static ssize_t write_some(MigStream *f, const struct iovec *iov, int iovcnt, size_t limit)
{
    struct iovec part[2];
    int n = 0;

    if (f->tls) {
        return tls_write_some(f, iov, limit);
    }
    g_assert(iovcnt <= 2);
    for (int i = 0; i < iovcnt && limit > 0; i++) {
        part[n] = iov[i];
        if (part[n].iov_len > limit) {
            part[n].iov_len = limit;
        }
        limit -= part[n].iov_len;
        n++;
    }
    if (f->is_socket) {
        /* MSG_NOSIGNAL: a vanished peer is an error, not a SIGPIPE. */
        struct msghdr msg = { .msg_iov = part, .msg_iovlen = n };
        return sendmsg(f->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    return writev(f->fd, part, n);
}

static void iov_advance(struct iovec **iov, int *iovcnt, size_t n)
{
    while (*iovcnt > 0 && n >= (*iov)->iov_len) {
        n -= (*iov)->iov_len;
        (*iov)++;
        (*iovcnt)--;
    }
    if (*iovcnt > 0) {
        (*iov)->iov_base = (uint8_t *)(*iov)->iov_base + n;
        (*iov)->iov_len -= n;
    }
}

/* Write all of IOV (consumed in place), pacing to the rate limit. */
static void write_iov(MigStream *f, struct iovec *iov, int iovcnt)
{
    size_t total = 0;
    gint64 blocked_since = 0;   /* the kernel took nothing since then */

    for (int i = 0; i < iovcnt; i++) {
        total += iov[i].iov_len;
    }
    while (total > 0 && mig_stream_error(f) == 0) {
        size_t allowed = rate_limit_take(f, total);
        ssize_t n;

        if (allowed == 0) {
            return;
        }
        n = write_some(f, iov, iovcnt, allowed);
        if (n < 0) {
            int saved = errno;
            rate_limit_refund(f, allowed);
            if (saved == EAGAIN || saved == EWOULDBLOCK) {
                blocked_since = blocked_since ? blocked_since : g_get_monotonic_time();
                wait_io(f, POLLOUT, blocked_since, false);
            } else if (saved != EINTR) {
                latch_errno(f, saved);
            }
            continue;
        }
        blocked_since = 0;
        /* A TLS retry may send a little more than was allowed. */
        rate_limit_refund(f, allowed > (size_t)n ? allowed - n : 0);
        if (atomic_load(&f->cancelled)) {
            mig_stream_set_error(f, -ECANCELED, NULL);
            return;
        }
        iov_advance(&iov, &iovcnt, n);
        total -= n;
    }
}

int mig_stream_flush(MigStream *f)
{
    if (f->writer && f->len > 0 && mig_stream_error(f) == 0) {
        struct iovec iov = { .iov_base = f->buf, .iov_len = f->len };
        write_iov(f, &iov, 1);
    }
    f->len = 0;
    return mig_stream_error(f);
}

int mig_stream_fsync(MigStream *f)
{
    if (mig_stream_flush(f) < 0) {
        return mig_stream_error(f);
    }
    if (fsync(f->fd) < 0) {
        int saved = errno;
        char *msg = g_strdup_printf("fsync failed: %s", g_strerror(saved));
        mig_stream_set_error(f, -saved, msg);
        g_free(msg);
    }
    return mig_stream_error(f);
}

void mig_put_buffer(MigStream *f, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    if (mig_stream_error(f)) {
        return;
    }
    f->bytes += len;
    if (len >= STREAM_BUF_SIZE && f->tls && f->len % TLS_RECORD) {
        /* Through TLS, fill the buffer up to a whole record first: the
         * small header before a payload then costs no record of its own. */
        size_t fill = TLS_RECORD - f->len % TLS_RECORD;
        memcpy(f->buf + f->len, p, fill);
        f->len += fill;
        p += fill;
        len -= fill;
    }
    if (len >= STREAM_BUF_SIZE) {
        /* Big payloads go to the fd from the caller's memory, after what
         * is buffered, in one system call where the kernel allows. */
        struct iovec iov[2] = {
            { .iov_base = f->buf, .iov_len = f->len },
            { .iov_base = (void *)p, .iov_len = len },
        };
        write_iov(f, f->len ? iov : iov + 1, f->len ? 2 : 1);
        f->len = 0;
        return;
    }
    while (len > 0) {
        size_t n = MIN(len, STREAM_BUF_SIZE - f->len);
        memcpy(f->buf + f->len, p, n);
        f->len += n;
        p += n;
        len -= n;
        if (f->len == STREAM_BUF_SIZE && mig_stream_flush(f) < 0) {
            return;
        }
    }
}

void mig_put_u8(MigStream *f, uint8_t v)
{
    mig_put_buffer(f, &v, 1);
}

void mig_put_be16(MigStream *f, uint16_t v)
{
    uint8_t b[2];
    st_be16(b, v);
    mig_put_buffer(f, b, sizeof(b));
}

void mig_put_be32(MigStream *f, uint32_t v)
{
    uint8_t b[4];
    st_be32(b, v);
    mig_put_buffer(f, b, sizeof(b));
}

void mig_put_be64(MigStream *f, uint64_t v)
{
    uint8_t b[8];
    st_be64(b, v);
    mig_put_buffer(f, b, sizeof(b));
}

/* ---- reading ---- */

/* One read(2)/recv(2), or one TLS record (a failure other than EAGAIN
 * latched): bytes, 0 at the end, -1 with errno. */
static ssize_t raw_read(MigStream *f, void *buf, size_t len)
{
    GError *err = NULL;
    ssize_t n;

    if (!f->tls) {
        return f->is_socket ? recv(f->fd, buf, len, MSG_DONTWAIT) : read(f->fd, buf, len);
    }
    n = tls_session_recv(f->tls->session, buf, len, &err);
    if (n < 0 && errno != EAGAIN) {
        latch_tls_error(f, err);
    }
    return n;
}

/* One read: bytes read, 0 at end of file, -1 with the error latched. */
static ssize_t read_some(MigStream *f, void *buf, size_t len)
{
    gint64 since = g_get_monotonic_time();

    for (;;) {
        ssize_t n;

        if (mig_stream_error(f)) {
            return -1;
        }
        n = raw_read(f, buf, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            wait_io(f, POLLIN, since, true);
            continue;
        }
        if (n < 0) {
            if (!f->tls) {
                latch_errno(f, errno);
            }
            return -1;
        }
        if (atomic_load(&f->cancelled)) {
            mig_stream_set_error(f, -ECANCELED, NULL);
            return -1;
        }
        if (n > 0) {
            atomic_store(&f->clock->last_us, g_get_monotonic_time());
        }
        return n;
    }
}

static void latch_eof(MigStream *f)
{
    char *msg;

    if (peer_went_silent(f)) {
        latch_silent_peer(f);
        return;
    }
    msg = g_strdup_printf("unexpected end of stream at byte %" G_GUINT64_FORMAT, f->bytes);
    latch(f, -EPIPE, msg, ERR_ENDED);
    g_free(msg);
}

/* Refill the empty read buffer; false at end of file or on error. */
static bool refill(MigStream *f)
{
    ssize_t n = read_some(f, f->buf, STREAM_BUF_SIZE);

    f->pos = 0;
    f->len = n > 0 ? n : 0;
    return n > 0;
}

/* Copy or discard (BUF NULL) LEN bytes; false on end of file or error. */
static bool consume(MigStream *f, uint8_t *buf, size_t len)
{
    while (len > 0) {
        size_t n;

        if (f->pos == f->len) {
            if (buf && len >= STREAM_BUF_SIZE) {
                /* Big reads skip the buffer. */
                ssize_t got = read_some(f, buf, len);
                if (got <= 0) {
                    goto fail;
                }
                f->bytes += got;
                buf += got;
                len -= got;
                continue;
            }
            if (!refill(f)) {
                goto fail;
            }
        }
        n = MIN(len, f->len - f->pos);
        if (buf) {
            memcpy(buf, f->buf + f->pos, n);
            buf += n;
        }
        f->pos += n;
        f->bytes += n;
        len -= n;
    }
    return true;

fail:
    if (mig_stream_error(f) == 0) {
        latch_eof(f);
    }
    return false;
}

size_t mig_get_buffer(MigStream *f, void *buf, size_t len)
{
    if (mig_stream_error(f) || !consume(f, buf, len)) {
        memset(buf, 0, len);
        return 0;
    }
    return len;
}

void mig_skip(MigStream *f, size_t len)
{
    if (mig_stream_error(f) == 0) {
        consume(f, NULL, len);
    }
}

uint8_t mig_get_u8(MigStream *f)
{
    uint8_t v;
    mig_get_buffer(f, &v, 1);
    return v;
}

uint16_t mig_get_be16(MigStream *f)
{
    uint8_t b[2];
    mig_get_buffer(f, b, sizeof(b));
    return ld_be16(b);
}

uint32_t mig_get_be32(MigStream *f)
{
    uint8_t b[4];
    mig_get_buffer(f, b, sizeof(b));
    return ld_be32(b);
}

uint64_t mig_get_be64(MigStream *f)
{
    uint8_t b[8];
    mig_get_buffer(f, b, sizeof(b));
    return ld_be64(b);
}

bool mig_stream_peek(MigStream *f, void *buf, size_t len)
{
    g_assert(!f->writer && len <= STREAM_BUF_SIZE);
    if (mig_stream_error(f)) {
        return false;
    }
    if (f->len - f->pos < len) {
        /* Keep what is buffered at the front and read more after it. */
        memmove(f->buf, f->buf + f->pos, f->len - f->pos);
        f->len -= f->pos;
        f->pos = 0;
        while (f->len < len) {
            ssize_t n = read_some(f, f->buf + f->len, STREAM_BUF_SIZE - f->len);
            if (n <= 0) {
                if (mig_stream_error(f) == 0) {
                    latch_eof(f);
                }
                return false;
            }
            f->len += n;
        }
    }
    memcpy(buf, f->buf + f->pos, len);
    return true;
}

bool mig_at_eof(MigStream *f)
{
    if (mig_stream_error(f) || f->pos < f->len) {
        return false;
    }
    return !refill(f) && mig_stream_error(f) == 0;
}
