/* A copy side on a byte stream: stdin as a source, stdout as a target, or
 * any pipe.  A stream goes front to back, so each request waits for its
 * turn (the plan hands items out in offset order, and every byte of a
 * stream is in some item); reads and writes of other workers' items still
 * overlap with it.  Zeroes are written as bytes, except into a regular
 * file that is empty past where the stream starts: there they become
 * holes.  Waits poll the descriptor together with an eventfd, so stopping
 * the copy never hangs on a pipe whose other end went quiet. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "copy-int.h"

#define ZERO_CHUNK (1u << 20)

typedef struct StreamSide {
    CopySide side;
    int fd;
    int fd_flags;               /* F_GETFL at start, restored at the end */
    char *name;
    bool holes;                 /* zeroes become holes (lseek), see above */
    uint64_t start;             /* the descriptor's offset at start (holes) */
    int wake_fd;                /* eventfd: the copy stops */
    GMutex lock;
    GCond turn;
    uint64_t pos;               /* the next offset of the stream */
    bool aborted;
} StreamSide;

static const uint8_t zero_chunk[ZERO_CHUNK];

static StreamSide *stream(CopySide *s)
{
    return (StreamSide *)s;
}

static int set_error(GError **errp, int err, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
static int set_error(GError **errp, int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error_literal(errp, G_IO_ERROR, g_io_error_from_errno(err), msg);
    return -err;
}

/* ---- Turns ---- */

static int wait_turn(StreamSide *st, uint64_t off, GError **errp)
{
    g_mutex_lock(&st->lock);
    while (st->pos != off && !st->aborted) {
        g_cond_wait(&st->turn, &st->lock);
    }
    bool aborted = st->aborted;
    g_mutex_unlock(&st->lock);
    return aborted ? set_error(errp, ECANCELED, "the copy stopped") : 0;
}

static void end_turn(StreamSide *st, uint64_t len)
{
    g_mutex_lock(&st->lock);
    st->pos += len;
    g_cond_broadcast(&st->turn);
    g_mutex_unlock(&st->lock);
}

/* Wait until FD is ready for EVENTS; -ECANCELED once the copy stops. */
static int wait_fd(StreamSide *st, short events)
{
    struct pollfd fds[2] = { { st->fd, events, 0 }, { st->wake_fd, POLLIN, 0 } };

    while (poll(fds, 2, -1) < 0) {
        if (errno != EINTR) {
            return -errno;
        }
    }
    return fds[1].revents ? -ECANCELED : 0;
}

/* ---- Bytes in and out ---- */

/* Up to LEN bytes; 0 at the end of the stream. */
static ssize_t read_some(StreamSide *st, void *buf, size_t len)
{
    for (;;) {
        ssize_t n = read(st->fd, buf, len);
        if (n >= 0) {
            return n;
        }
        if (errno != EAGAIN && errno != EINTR) {
            return -errno;
        }
        int ret = wait_fd(st, POLLIN);
        if (ret < 0) {
            return ret;
        }
    }
}

static int read_full(StreamSide *st, uint64_t off, uint8_t *buf, size_t len, GError **errp)
{
    for (size_t done = 0; done < len;) {
        ssize_t n = read_some(st, buf + done, len - done);
        if (n < 0) {
            return set_error(errp, (int)-n, "%s: %s", st->name, g_strerror((int)-n));
        }
        if (n == 0) {
            return set_error(errp, EIO, "%s ended after %" G_GUINT64_FORMAT " bytes, but %"
                             G_GUINT64_FORMAT " were expected", st->name, off + done,
                             st->side.size);
        }
        done += (size_t)n;
    }
    return 0;
}

/* After the last byte: the stream must end there too. */
static int check_end(StreamSide *st, GError **errp)
{
    uint8_t byte;
    ssize_t n = read_some(st, &byte, 1);

    if (n > 0) {
        return set_error(errp, EFBIG, "%s holds more than the %" G_GUINT64_FORMAT
                         " bytes expected", st->name, st->side.size);
    }
    return n < 0 ? set_error(errp, (int)-n, "%s: %s", st->name, g_strerror((int)-n)) : 0;
}

static int write_full(StreamSide *st, const uint8_t *buf, size_t len, GError **errp)
{
    while (len > 0) {
        ssize_t n = write(st->fd, buf, len);
        if (n > 0) {
            buf += n;
            len -= (size_t)n;
            continue;
        }
        int ret = n == 0 ? -EIO : -errno;
        if (ret == -EAGAIN || ret == -EINTR) {
            ret = wait_fd(st, POLLOUT);
        }
        if (ret < 0) {
            return set_error(errp, -ret, "%s: %s", st->name, g_strerror(-ret));
        }
    }
    return 0;
}

static int skip_hole(StreamSide *st, uint64_t len, GError **errp)
{
    if (lseek(st->fd, (off_t)len, SEEK_CUR) < 0) {
        return set_error(errp, errno, "%s: %s", st->name, g_strerror(errno));
    }
    return 0;
}

static int write_zeroes(StreamSide *st, uint64_t len, GError **errp)
{
    int ret = 0;

    while (ret == 0 && len > 0) {
        size_t n = (size_t)MIN(len, (uint64_t)ZERO_CHUNK);
        ret = write_full(st, zero_chunk, n, errp);
        len -= n;
    }
    return ret;
}

/* ---- The side's operations ---- */

static int stream_read(CopySide *s, uint64_t off, void *buf, size_t len, GError **errp)
{
    StreamSide *st = stream(s);
    int ret = wait_turn(st, off, errp);

    if (ret == 0) {
        ret = read_full(st, off, buf, len, errp);
    }
    if (ret == 0 && off + len == s->size) {
        ret = check_end(st, errp);
    }
    if (ret == 0) {
        end_turn(st, len);
    }
    return ret;
}

static int stream_write(CopySide *s, uint64_t off, const void *buf, size_t len, GError **errp)
{
    StreamSide *st = stream(s);
    int ret = wait_turn(st, off, errp);

    ret = ret < 0 ? ret : write_full(st, buf, len, errp);
    if (ret == 0) {
        end_turn(st, len);
    }
    return ret;
}

static int stream_zero(CopySide *s, uint64_t off, uint64_t len, GError **errp)
{
    StreamSide *st = stream(s);
    int ret = wait_turn(st, off, errp);

    if (ret == 0) {
        ret = st->holes ? skip_hole(st, len, errp) : write_zeroes(st, len, errp);
    }
    if (ret == 0) {
        end_turn(st, len);
    }
    return ret;
}

/* A file with holes at its end gets its size now; a regular file is
 * synced; a pipe has nothing to flush. */
static int stream_flush(CopySide *s, GError **errp)
{
    StreamSide *st = stream(s);
    struct stat sb;

    if (st->holes && ftruncate(st->fd, (off_t)(st->start + s->size)) < 0) {
        return set_error(errp, errno, "%s: %s", st->name, g_strerror(errno));
    }
    if (fstat(st->fd, &sb) == 0 && S_ISREG(sb.st_mode) && fdatasync(st->fd) < 0) {
        return set_error(errp, errno, "%s: %s", st->name, g_strerror(errno));
    }
    return 0;
}

static void stream_abort(CopySide *s)
{
    StreamSide *st = stream(s);
    uint64_t one = 1;

    g_mutex_lock(&st->lock);
    st->aborted = true;
    g_cond_broadcast(&st->turn);
    g_mutex_unlock(&st->lock);
    if (write(st->wake_fd, &one, sizeof(one)) < 0) {
        /* an eventfd at its maximum is readable already */
    }
}

static void stream_free(CopySide *s)
{
    StreamSide *st = stream(s);

    fcntl(st->fd, F_SETFL, st->fd_flags);
    close(st->wake_fd);
    g_mutex_clear(&st->lock);
    g_cond_clear(&st->turn);
    g_free(st->name);
    g_free(st);
}

static const CopySideOps stream_ops = {
    .read = stream_read,
    .write = stream_write,
    .zero = stream_zero,
    .flush = stream_flush,
    .abort = stream_abort,
    .free = stream_free,
};

/* Holes only where they read as zeroes: a regular file (not appending)
 * with nothing past the current offset. */
static bool can_punch(int fd, int flags, uint64_t *start)
{
    struct stat sb;
    off_t cur = lseek(fd, 0, SEEK_CUR);

    if (cur < 0 || fstat(fd, &sb) < 0 || !S_ISREG(sb.st_mode) || (flags & O_APPEND)) {
        return false;
    }
    *start = (uint64_t)cur;
    return sb.st_size <= cur;
}

CopySide *copy_side_stream(int fd, uint64_t size, bool is_target, const char *name)
{
    StreamSide *st = g_new0(StreamSide, 1);

    st->side.ops = &stream_ops;
    st->side.size = size;
    st->fd = fd;
    st->name = g_strdup(name);
    st->fd_flags = fcntl(fd, F_GETFL);
    st->holes = is_target && can_punch(fd, st->fd_flags, &st->start);
    st->wake_fd = eventfd(0, EFD_CLOEXEC);
    g_mutex_init(&st->lock);
    g_cond_init(&st->turn);
    /* Non-blocking, so a wait can also watch wake_fd; flags come back at
     * the end (regular files ignore it). */
    fcntl(fd, F_SETFL, st->fd_flags | O_NONBLOCK);
    return &st->side;
}
