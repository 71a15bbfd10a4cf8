/* MigStream over real sockets, pipes and files: every width round trips,
 * big buffers, end of stream, error latching, shutdown, rate limit and
 * the link timeout. */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migration/stream.h"

#define BIG_LEN (3 * 1024 * 1024 + 123)     /* not a multiple of anything */

static char *tmpdir;

static void fill_pattern(uint8_t *buf, size_t len, uint32_t seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)((i * 2654435761u + seed) >> 13);
    }
}

/* Everything the round-trip tests write, in order. */
static void write_all_kinds(MigStream *f, const uint8_t *big)
{
    static const uint8_t small[5] = { 1, 2, 3, 4, 5 };

    mig_put_u8(f, 0);
    mig_put_u8(f, 0xff);
    mig_put_be16(f, 0x1234);
    mig_put_be16(f, 0xffff);
    mig_put_be32(f, 0xdeadbeef);
    mig_put_be32(f, 0);
    mig_put_be64(f, 0x0123456789abcdefULL);
    mig_put_be64(f, UINT64_MAX);
    mig_put_buffer(f, small, sizeof(small));
    /* Buffered bytes followed by a large buffer: the writev path. */
    mig_put_buffer(f, big, BIG_LEN);
    mig_put_buffer(f, big, 65535);          /* just under the direct size */
    mig_put_buffer(f, big, 65536);          /* exactly the direct size */
    mig_put_be32(f, 0xcafef00d);
}

static void read_all_kinds(MigStream *f, const uint8_t *big)
{
    uint8_t small[5];
    uint8_t *got = g_malloc(BIG_LEN);

    g_assert_cmpuint(mig_get_u8(f), ==, 0);
    g_assert_cmpuint(mig_get_u8(f), ==, 0xff);
    g_assert_cmpuint(mig_get_be16(f), ==, 0x1234);
    g_assert_cmpuint(mig_get_be16(f), ==, 0xffff);
    g_assert_cmpuint(mig_get_be32(f), ==, 0xdeadbeef);
    g_assert_cmpuint(mig_get_be32(f), ==, 0);
    g_assert_cmpuint(mig_get_be64(f), ==, 0x0123456789abcdefULL);
    g_assert_cmpuint(mig_get_be64(f), ==, UINT64_MAX);
    g_assert_cmpuint(mig_get_buffer(f, small, sizeof(small)), ==, sizeof(small));
    g_assert_cmpmem(small, sizeof(small), ((uint8_t[]){ 1, 2, 3, 4, 5 }), 5);
    g_assert_cmpuint(mig_get_buffer(f, got, BIG_LEN), ==, BIG_LEN);
    g_assert_true(memcmp(got, big, BIG_LEN) == 0);
    g_assert_cmpuint(mig_get_buffer(f, got, 65535), ==, 65535);
    g_assert_true(memcmp(got, big, 65535) == 0);
    /* Skipping crosses the read buffer's boundaries too. */
    mig_skip(f, 65536);
    g_assert_cmpuint(mig_get_be32(f), ==, 0xcafef00d);
    g_assert_cmpint(mig_stream_error(f), ==, 0);
    g_free(got);
}

#define ALL_KINDS_BYTES (1 + 1 + 2 + 2 + 4 + 4 + 8 + 8 + 5 + BIG_LEN + 65535 + 65536 + 4)

typedef struct Writer {
    MigStream *f;
    const uint8_t *big;
} Writer;

static gpointer writer_thread(gpointer opaque)
{
    Writer *w = opaque;

    write_all_kinds(w->f, w->big);
    g_assert_cmpint(mig_stream_flush(w->f), ==, 0);
    g_assert_cmpuint(mig_stream_bytes(w->f), ==, ALL_KINDS_BYTES);
    mig_stream_close(w->f);
    return NULL;
}

static void test_roundtrip_socket(void)
{
    int sv[2];
    uint8_t *big = g_malloc(BIG_LEN);
    Writer w;
    GThread *t;
    MigStream *r;

    fill_pattern(big, BIG_LEN, 7);
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
    w = (Writer){ mig_stream_new_writer(sv[0]), big };
    r = mig_stream_new_reader(sv[1]);
    t = g_thread_new("writer", writer_thread, &w);
    read_all_kinds(r, big);
    g_assert_true(mig_at_eof(r));
    g_assert_cmpuint(mig_stream_bytes(r), ==, ALL_KINDS_BYTES);
    g_thread_join(t);
    mig_stream_close(r);
    g_free(big);
}

static void test_roundtrip_pipe(void)
{
    int p[2];
    uint8_t *big = g_malloc(BIG_LEN);
    Writer w;
    GThread *t;
    MigStream *r;

    fill_pattern(big, BIG_LEN, 99);
    g_assert_cmpint(pipe(p), ==, 0);
    w = (Writer){ mig_stream_new_writer(p[1]), big };
    r = mig_stream_new_reader(p[0]);
    t = g_thread_new("writer", writer_thread, &w);
    read_all_kinds(r, big);
    g_assert_true(mig_at_eof(r));
    g_thread_join(t);
    mig_stream_close(r);
    g_free(big);
}

static void test_roundtrip_file(void)
{
    char *path = g_build_filename(tmpdir, "roundtrip", NULL);
    uint8_t *big = g_malloc(BIG_LEN);
    MigStream *f;
    GStatBuf st;

    fill_pattern(big, BIG_LEN, 3);
    f = mig_stream_new_writer(open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600));
    write_all_kinds(f, big);
    g_assert_cmpint(mig_stream_fsync(f), ==, 0);
    g_assert_cmpuint(mig_stream_bytes(f), ==, ALL_KINDS_BYTES);
    mig_stream_close(f);
    g_assert_cmpint(g_stat(path, &st), ==, 0);
    g_assert_cmpint(st.st_size, ==, ALL_KINDS_BYTES);

    f = mig_stream_new_reader(open(path, O_RDONLY));
    read_all_kinds(f, big);
    g_assert_true(mig_at_eof(f));
    mig_stream_close(f);
    g_unlink(path);
    g_free(path);
    g_free(big);
}

static void test_eof_message(void)
{
    char *path = g_build_filename(tmpdir, "short", NULL);
    MigStream *f;
    uint8_t buf[16];

    g_assert_true(g_file_set_contents(path, "\x01\x02\x03", 3, NULL));
    f = mig_stream_new_reader(open(path, O_RDONLY));
    g_assert_false(mig_at_eof(f));
    g_assert_cmpuint(mig_get_u8(f), ==, 1);
    /* Two bytes remain: a be32 cannot be read, and reads as 0. */
    g_assert_cmpuint(mig_get_be32(f), ==, 0);
    g_assert_cmpint(mig_stream_error(f), ==, -EPIPE);
    g_assert_cmpstr(mig_stream_error_msg(f), ==, "unexpected end of stream at byte 3");
    /* Latched: later reads give zeros, the first error stays. */
    memset(buf, 0xaa, sizeof(buf));
    g_assert_cmpuint(mig_get_buffer(f, buf, sizeof(buf)), ==, 0);
    g_assert_true(buf[0] == 0 && buf[15] == 0);
    mig_stream_set_error(f, -EIO, "later error");
    g_assert_cmpstr(mig_stream_error_msg(f), ==, "unexpected end of stream at byte 3");
    mig_stream_close(f);
    g_unlink(path);
    g_free(path);
}

static void test_error_latching(void)
{
    int sv[2];
    MigStream *f;
    uint8_t *big = g_malloc0(1 << 20);
    uint64_t before;

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
    f = mig_stream_new_writer(sv[0]);
    g_assert_null(mig_stream_error_msg(f));
    close(sv[1]);
    mig_put_buffer(f, big, 1 << 20);
    g_assert_cmpint(mig_stream_error(f), ==, -EPIPE);
    g_assert_cmpstr(mig_stream_error_msg(f), ==, g_strerror(EPIPE));
    /* Later puts are no-ops and do not count. */
    before = mig_stream_bytes(f);
    mig_put_be64(f, 1);
    mig_put_buffer(f, big, 1 << 20);
    g_assert_cmpuint(mig_stream_bytes(f), ==, before);
    g_assert_cmpint(mig_stream_flush(f), ==, -EPIPE);
    mig_stream_close(f);
    g_free(big);
}

static gpointer drain_thread(gpointer opaque)
{
    int fd = GPOINTER_TO_INT(opaque);
    char *buf = g_malloc(1 << 16);

    while (read(fd, buf, 1 << 16) > 0) {
    }
    g_free(buf);
    close(fd);
    return NULL;
}

/* Seconds to write LEN bytes to a draining peer at LIMIT bytes/s. */
static double timed_write(uint64_t limit, size_t len)
{
    int sv[2];
    MigStream *f;
    GThread *t;
    uint8_t *buf = g_malloc0(len);
    gint64 start;
    double secs;

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
    t = g_thread_new("drain", drain_thread, GINT_TO_POINTER(sv[1]));
    f = mig_stream_new_writer(sv[0]);
    mig_stream_set_rate_limit(f, limit);
    start = g_get_monotonic_time();
    /* Mixed small and large writes: both are paced. */
    for (size_t done = 0; done < len;) {
        size_t n = MIN(len - done, done % 3 ? 1000 : 300000);
        mig_put_buffer(f, buf + done, n);
        done += n;
    }
    g_assert_cmpint(mig_stream_flush(f), ==, 0);
    secs = (g_get_monotonic_time() - start) / 1e6;
    mig_stream_close(f);
    g_thread_join(t);
    g_free(buf);
    return secs;
}

static void test_rate_limit(void)
{
    /* 4 MiB at 8 MiB/s from an empty bucket: half a second. */
    double secs = timed_write(8 << 20, 4 << 20);

    g_test_message("4 MiB at 8 MiB/s took %.3f s", secs);
    g_assert_cmpfloat(secs, >=, 0.45);
    g_assert_cmpfloat(secs, <=, 1.5);
    secs = timed_write(0, 4 << 20);
    g_test_message("4 MiB unlimited took %.3f s", secs);
    g_assert_cmpfloat(secs, <, 0.3);
}

/* How long the limit would hold up a write: from an empty bucket at
 * 1 MiB/s, 64 KiB (and what is buffered) wait about 62 ms; unlimited,
 * nothing waits; a write that waited leaves the bucket empty again. */
static void test_rate_delay(void)
{
    int sv[2];
    MigStream *f;
    gint64 delay;

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
    f = mig_stream_new_writer(sv[0]);
    g_assert_cmpint(mig_stream_rate_delay_us(f, 64 * 1024), ==, 0);
    mig_stream_set_rate_limit(f, 1 << 20);
    delay = mig_stream_rate_delay_us(f, 64 * 1024);
    g_assert_cmpint(delay, >, 50 * 1000);
    g_assert_cmpint(delay, <=, 63 * 1000);
    mig_put_be64(f, 0);
    g_assert_cmpint(mig_stream_rate_delay_us(f, 64 * 1024), >, delay);
    g_usleep(70 * 1000);
    g_assert_cmpint(mig_stream_rate_delay_us(f, 64 * 1024), <, 10 * 1000);
    mig_stream_close(f);
    close(sv[1]);
}

typedef struct LiveLimit {
    MigStream *f;
    uint8_t *buf;
    size_t len;
    gint done;
} LiveLimit;

static gpointer slow_writer(gpointer opaque)
{
    LiveLimit *l = opaque;

    mig_put_buffer(l->f, l->buf, l->len);
    mig_stream_flush(l->f);
    g_atomic_int_set(&l->done, 1);
    return NULL;
}

static void test_rate_limit_live_change(void)
{
    int sv[2];
    LiveLimit l = { .len = 8 << 20 };
    GThread *drain, *writer;
    gint64 start;
    double secs;

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
    drain = g_thread_new("drain", drain_thread, GINT_TO_POINTER(sv[1]));
    l.f = mig_stream_new_writer(sv[0]);
    l.buf = g_malloc0(l.len);
    /* 8 MiB at 1 MiB/s would take 8 s; lifting the limit must end it. */
    mig_stream_set_rate_limit(l.f, 1 << 20);
    start = g_get_monotonic_time();
    writer = g_thread_new("writer", slow_writer, &l);
    g_usleep(300 * 1000);
    g_assert_cmpint(g_atomic_int_get(&l.done), ==, 0);
    mig_stream_set_rate_limit(l.f, 0);
    g_thread_join(writer);
    secs = (g_get_monotonic_time() - start) / 1e6;
    g_test_message("live limit change: done after %.3f s", secs);
    g_assert_cmpfloat(secs, <, 2.0);
    g_assert_cmpint(mig_stream_error(l.f), ==, 0);
    mig_stream_close(l.f);
    g_thread_join(drain);
    g_free(l.buf);
}

static gpointer blocked_reader(gpointer opaque)
{
    MigStream *f = opaque;

    mig_get_be64(f);
    return GINT_TO_POINTER(mig_stream_error(f));
}

static gpointer blocked_writer(gpointer opaque)
{
    MigStream *f = opaque;
    uint8_t *buf = g_malloc0(64 << 20);

    /* Nobody reads the peer: this blocks once the socket buffers fill. */
    mig_put_buffer(f, buf, 64 << 20);
    g_free(buf);
    return GINT_TO_POINTER(mig_stream_error(f));
}

static void test_shutdown_unblocks(void)
{
    int sv[2];
    MigStream *f;
    GThread *t;

    /* A reader waiting for bytes that never come. */
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
    f = mig_stream_new_reader(sv[0]);
    t = g_thread_new("reader", blocked_reader, f);
    g_usleep(100 * 1000);
    mig_stream_shutdown(f);
    g_assert_cmpint(GPOINTER_TO_INT(g_thread_join(t)), ==, -ECANCELED);
    mig_stream_close(f);
    close(sv[1]);

    /* A writer stuck on full socket buffers. */
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
    f = mig_stream_new_writer(sv[1]);
    t = g_thread_new("writer", blocked_writer, f);
    g_usleep(200 * 1000);
    mig_stream_shutdown(f);
    g_assert_cmpint(GPOINTER_TO_INT(g_thread_join(t)), ==, -ECANCELED);
    /* Future calls fail the same way. */
    mig_put_u8(f, 1);
    g_assert_cmpint(mig_stream_flush(f), ==, -ECANCELED);
    mig_stream_close(f);
    close(sv[0]);
}

static void test_shutdown_stops_rate_limited_writer(void)
{
    int sv[2];
    LiveLimit l = { .len = 8 << 20 };
    GThread *drain, *writer;
    gint64 start;

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
    drain = g_thread_new("drain", drain_thread, GINT_TO_POINTER(sv[1]));
    l.f = mig_stream_new_writer(sv[0]);
    l.buf = g_malloc0(l.len);
    mig_stream_set_rate_limit(l.f, 1 << 20);
    writer = g_thread_new("writer", slow_writer, &l);
    g_usleep(200 * 1000);
    start = g_get_monotonic_time();
    mig_stream_shutdown(l.f);
    g_thread_join(writer);
    g_assert_cmpint(g_get_monotonic_time() - start, <, 500 * 1000);
    g_assert_cmpint(mig_stream_error(l.f), ==, -ECANCELED);
    mig_stream_close(l.f);
    g_thread_join(drain);
    g_free(l.buf);
}

/* ---- the link timeout ---- */

/* Run BODY's thread on F and return its error and how long it took. */
static int timed_join(GThreadFunc body, MigStream *f, double *seconds)
{
    gint64 start = g_get_monotonic_time();
    int err = GPOINTER_TO_INT(g_thread_join(g_thread_new("io", body, f)));

    *seconds = (g_get_monotonic_time() - start) / 1e6;
    return err;
}

static void test_link_timeout_read_write(void)
{
    int sv[2];
    MigStream *f;
    double seconds;

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
    f = mig_stream_new_reader(sv[0]);
    mig_stream_set_link_timeout(f, 1);
    g_assert_cmpint(timed_join(blocked_reader, f, &seconds), ==, -ETIMEDOUT);
    g_assert_cmpfloat(seconds, >=, 0.9);
    g_assert_cmpfloat(seconds, <, 3);
    g_assert_cmpstr(mig_stream_error_msg(f), ==,
                    "link stalled: nothing arrived for 1 s (link-timeout)");
    g_assert_true(mig_stream_stalled(f));
    mig_stream_close(f);
    close(sv[1]);

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
    f = mig_stream_new_writer(sv[1]);
    mig_stream_set_link_timeout(f, 1);
    g_assert_cmpint(timed_join(blocked_writer, f, &seconds), ==, -ETIMEDOUT);
    g_assert_cmpfloat(seconds, <, 3);
    g_assert_cmpstr(mig_stream_error_msg(f), ==,
                    "link stalled: nothing could be sent for 1 s (link-timeout)");
    mig_stream_close(f);
    close(sv[0]);
}

typedef struct Feeder {
    int fd;                     /* written to */
    MigStream *f;               /* reads what was written */
    int count;
} Feeder;

static gpointer feed_slowly(gpointer opaque)
{
    Feeder *fd = opaque;

    for (int i = 0; i < fd->count; i++) {
        g_usleep(300 * 1000);
        g_assert_cmpint(write(fd->fd, "x", 1), ==, 1);
        mig_get_u8(fd->f);
    }
    return NULL;
}

/* Bytes arriving on another stream of the migration keep a quiet one
 * alive; once they stop, the quiet one stalls. */
static void test_link_timeout_shared(void)
{
    int quiet[2], busy[2];
    Feeder feeder = { .count = 8 };
    MigStream *f;
    GThread *t;
    double seconds;

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, quiet), ==, 0);
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, busy), ==, 0);
    f = mig_stream_new_reader(quiet[0]);
    feeder.fd = busy[1];
    feeder.f = mig_stream_new_reader(busy[0]);
    mig_stream_set_link_timeout(f, 1);
    mig_stream_share_arrivals(f, feeder.f);
    t = g_thread_new("feeder", feed_slowly, &feeder);
    g_assert_cmpint(timed_join(blocked_reader, f, &seconds), ==, -ETIMEDOUT);
    g_assert_cmpfloat(seconds, >=, 2.4 + 0.9);
    g_thread_join(t);
    mig_stream_close(f);
    mig_stream_close(feeder.f);
    close(quiet[1]);
    close(busy[1]);
}

/* shutdown_at: I/O goes on until the deadline, a wait ends there. */
static void test_shutdown_at(void)
{
    int sv[2];
    MigStream *f;
    double seconds;

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
    f = mig_stream_new_writer(sv[1]);
    mig_stream_shutdown_at(f, g_get_monotonic_time() + 500 * 1000);
    mig_put_be64(f, 1);
    g_assert_cmpint(mig_stream_flush(f), ==, 0);
    g_assert_cmpint(timed_join(blocked_writer, f, &seconds), ==, -ECANCELED);
    g_assert_cmpfloat(seconds, >=, 0.4);
    g_assert_cmpfloat(seconds, <, 2);
    mig_stream_close(f);
    close(sv[0]);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    tmpdir = g_dir_make_tmp("test-stream-XXXXXX", NULL);
    g_assert_nonnull(tmpdir);
    g_test_add_func("/stream/roundtrip/socket", test_roundtrip_socket);
    g_test_add_func("/stream/roundtrip/pipe", test_roundtrip_pipe);
    g_test_add_func("/stream/roundtrip/file", test_roundtrip_file);
    g_test_add_func("/stream/eof-message", test_eof_message);
    g_test_add_func("/stream/error-latching", test_error_latching);
    g_test_add_func("/stream/rate-limit", test_rate_limit);
    g_test_add_func("/stream/rate-delay", test_rate_delay);
    g_test_add_func("/stream/rate-limit-live-change", test_rate_limit_live_change);
    g_test_add_func("/stream/shutdown-unblocks", test_shutdown_unblocks);
    g_test_add_func("/stream/shutdown-rate-limited", test_shutdown_stops_rate_limited_writer);
    g_test_add_func("/stream/shutdown-at", test_shutdown_at);
    g_test_add_func("/stream/link-timeout/read-write", test_link_timeout_read_write);
    g_test_add_func("/stream/link-timeout/shared", test_link_timeout_shared);
    ret = g_test_run();
    g_rmdir(tmpdir);
    g_free(tmpdir);
    return ret;
}
