/* The NBD server's memory is bounded across all clients together
 * (issue 8, defect 5): many clients pipelining the largest reads without
 * reading the replies, or stalling half-way through a write's payload,
 * must not grow blkmigd beyond its server-wide buffer budget; every
 * request must still be answered with the right data once the clients
 * read; and a client arriving while the others hog the budget must get
 * its own large reads and writes through (no starvation, no deadlock).
 * Real daemon, real sparse file, real unix sockets; raw clients because
 * no real client can be told to stop reading its replies. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "../qtest/libqtest.h"
#include "interop.h"
#include "nbd-raw.h"

#define MiB             (1024u * 1024)
#define REQ_LEN         (32 * MiB)      /* the largest request blkmigd takes */
#define N_HOGS          24
/* Reads each hog pipelines: 64 as in the issue with -m slow; else 4,
 * which holds the server up the same way (it serves one request of a
 * connection at a time, old code and new) at a sixteenth of the data to
 * drain afterwards (3 GiB instead of 48). */
#define HOG_DEPTH       (g_test_slow() ? 64 : 4)
#define N_WRITERS       2               /* clients stalled inside a write payload */
#define WRITER_SENT     (3 * MiB)       /* payload bytes a stalled writer sends */
/* Regions of REQ_LEN: the hogs read the first READ_REGIONS, a new client
 * writes the next one, each stalled writer one more. */
#define READ_REGIONS    4
#define REGIONS         (READ_REGIONS + 1 + N_WRITERS)
#define DISK_SIZE       ((uint64_t)REGIONS * REQ_LEN)
/* The peak RSS may grow from the idle daemon's by the server-wide budget
 * (NBD_BUFFER_BUDGET in nbd/nbd-internal.h) plus what connections hold
 * besides it: 128 KiB of fixed buffers each (27 at most here), thread
 * stacks and malloc arenas.  Before the budget each stalled connection
 * held a whole 32 MiB buffer: 24 clients grew the daemon by 640 MiB. */
#define BUDGET          (64 * MiB)
#define RSS_MARGIN      (16 * MiB)
/* A step that takes longer is a hang: the test fails instead of waiting. */
#define STEP_TIMEOUT_S  30
#define TEST_TIMEOUT_S  600

typedef struct Fixture {
    QTestDaemon *d;
    char *img, *sock;
    uint8_t *ref;               /* what the disk holds, DISK_SIZE bytes */
    uint64_t idle_rss;          /* the daemon's peak before any client */
} Fixture;

/* Every MiB: 512 KiB of seeded random bytes, then a hole. */
static uint8_t *make_disk(const char *path)
{
    g_autoptr(GRand) rng = g_rand_new_with_seed(8);
    uint8_t *ref = g_malloc0(DISK_SIZE);
    int fd;

    qtest_disk_create(path, DISK_SIZE);
    fd = open(path, O_WRONLY | O_CLOEXEC);
    g_assert_cmpint(fd, >=, 0);
    for (uint64_t off = 0; off < DISK_SIZE; off += MiB) {
        for (uint32_t i = 0; i < MiB / 2; i += 4) {
            uint32_t v = g_rand_int(rng) | 1;
            memcpy(ref + off + i, &v, 4);
        }
        g_assert_cmpint(pwrite(fd, ref + off, MiB / 2, off), ==, MiB / 2);
    }
    close(fd);
    return ref;
}

static void fixture_start(Fixture *f, const char *name)
{
    g_autofree char *img = g_strdup_printf("%s.img", name);
    g_autofree char *sock = g_strdup_printf("%s.nbd", name);

    alarm(TEST_TIMEOUT_S);      /* last resort: SIGALRM fails the test */
    f->img = qtest_path(img);
    f->sock = qtest_path(sock);
    f->ref = make_disk(f->img);
    f->d = qtest_daemon_start(name, "--drive id=disk0,file=%s --nbd unix:%s",
                              f->img, f->sock);
    qtest_wait_runstate(f->d, "running", 10000);
    f->idle_rss = qtest_daemon_peak_rss(f->d);
}

static void fixture_stop(Fixture *f)
{
    qtest_daemon_quit(f->d);
    unlink(f->img);
    g_free(f->img);
    g_free(f->sock);
    g_free(f->ref);
    alarm(0);
}

/* Bounded socket waits on the client side as well. */
static void set_timeouts(RawConn *c)
{
    struct timeval tv = { .tv_sec = STEP_TIMEOUT_S };

    g_assert_cmpint(setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), ==, 0);
    g_assert_cmpint(setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)), ==, 0);
}

/* Hogs come in three kinds so that every reply path is held up: simple
 * replies, one structured data chunk (DF), and structured replies split
 * into data and hole chunks. */
static RawConn *hog_open(Fixture *f, unsigned i)
{
    RawConn *c = raw_open(f->sock, "disk0", i % 3 != 0, false);

    set_timeouts(c);
    return c;
}

static uint16_t hog_flags(unsigned i)
{
    return i % 3 == 1 ? RAW_FLAG_DF : 0;
}

static uint64_t hog_offset(unsigned i, unsigned k)
{
    return (uint64_t)((i + k) % READ_REGIONS) * REQ_LEN;
}

static void hog_send(RawConn *c, unsigned i, unsigned depth)
{
    for (unsigned k = 0; k < depth; k++) {
        raw_request(c, hog_flags(i), RAW_CMD_READ, hog_offset(i, k), REQ_LEN, NULL, 0);
    }
}

/* Bytes the server has queued on the client's socket. */
static int pending_bytes(RawConn *c)
{
    int n = 0;

    g_assert_cmpint(ioctl(c->fd, FIONREAD, &n), ==, 0);
    return n;
}

/* Wait until every hog has reply bytes waiting: the server reached each
 * of them and is now blocked on their full sockets. */
static void wait_all_stalled(RawConn **hogs, unsigned n)
{
    gint64 deadline = g_get_monotonic_time() + STEP_TIMEOUT_S * G_TIME_SPAN_SECOND;
    unsigned ready = 0;

    while (ready < n) {
        ready = 0;
        for (unsigned i = 0; i < n; i++) {
            ready += pending_bytes(hogs[i]) > 0;
        }
        if (g_get_monotonic_time() > deadline) {
            g_error("only %u of %u clients got a reply within %d s", ready, n,
                    STEP_TIMEOUT_S);
        }
        g_usleep(20 * 1000);
    }
    /* Let connections that were waiting for budget settle too. */
    g_usleep(G_USEC_PER_SEC);
}

static void start_hogs(Fixture *f, RawConn **hogs)
{
    for (unsigned i = 0; i < N_HOGS; i++) {
        hogs[i] = hog_open(f, i);
        hog_send(hogs[i], i, HOG_DEPTH);
    }
    wait_all_stalled(hogs, N_HOGS);
}

static void assert_rss_bounded(Fixture *f, const char *when)
{
    uint64_t peak = qtest_daemon_peak_rss(f->d);

    g_test_message("blkmigd peak RSS %s: %" G_GUINT64_FORMAT " MiB (idle %"
                   G_GUINT64_FORMAT " MiB)", when, peak / MiB, f->idle_rss / MiB);
    g_assert_cmpuint(peak - f->idle_rss, <, BUDGET + RSS_MARGIN);
}

/* Read one reply of REQ_LEN and compare it with what the disk holds. */
static void check_read_reply(Fixture *f, RawConn *c, uint64_t cookie, uint64_t off,
                             uint8_t *buf)
{
    g_assert_cmpuint(raw_reply(c, cookie, RAW_CMD_READ, off, REQ_LEN, buf, NULL), ==, 0);
    if (memcmp(buf, f->ref + off, REQ_LEN) != 0) {
        g_error("read of %u bytes at %" G_GUINT64_FORMAT " (cookie %" G_GUINT64_FORMAT
                ") returned wrong data", REQ_LEN, off, cookie);
    }
}

static void hog_drain(Fixture *f, RawConn *c, unsigned i, unsigned depth, uint8_t *buf)
{
    for (unsigned k = 0; k < depth; k++) {
        check_read_reply(f, c, k + 1, hog_offset(i, k), buf);
    }
    raw_close(c);
}

/* A fresh client: its largest read returns the right data, and QMP still
 * answers. */
static void assert_still_serving(Fixture *f, uint64_t off, uint8_t *buf)
{
    RawConn *c = raw_open(f->sock, "disk0", true, false);
    g_autoptr(JsonNode) st = NULL;

    set_timeouts(c);
    check_read_reply(f, c, raw_request(c, 0, RAW_CMD_READ, off, REQ_LEN, NULL, 0),
                     off, buf);
    raw_close(c);
    st = qtest_qmp_ok(f->d, "{\"execute\": \"query-status\"}");
    g_assert_cmpstr(qtest_json_str(st, "status"), ==, "running");
}

/* 24 clients each pipeline reads of 32 MiB and read nothing: the daemon
 * stays within its budget, then answers every request correctly. */
static void test_stalled_readers(void)
{
    g_autofree uint8_t *buf = g_malloc(REQ_LEN);
    RawConn *hogs[N_HOGS];
    Fixture f;

    fixture_start(&f, "stalled-readers");
    start_hogs(&f, hogs);
    assert_rss_bounded(&f, "with stalled readers");

    for (unsigned i = 0; i < N_HOGS; i++) {
        hog_drain(&f, hogs[i], i, HOG_DEPTH, buf);
    }
    assert_still_serving(&f, 0, buf);
    assert_rss_bounded(&f, "after draining");
    fixture_stop(&f);
}

/* A new client (simple replies) writes 0x77 over 32 MiB at OFF. */
static void fresh_write(Fixture *f, uint64_t off, uint8_t *buf)
{
    RawConn *c = raw_open(f->sock, "disk0", false, false);

    set_timeouts(c);
    memset(buf, 0x77, REQ_LEN);
    g_assert_cmpuint(raw_cmd(c, 0, RAW_CMD_WRITE, off, REQ_LEN, buf, NULL), ==, 0);
    memcpy(f->ref + off, buf, REQ_LEN);
    raw_close(c);
}

static uint64_t writer_offset(unsigned w)
{
    return (uint64_t)(READ_REGIONS + 1 + w) * REQ_LEN;
}

/* A writer that sent a 32 MiB write's header and only part of its
 * payload; it writes 0x40 + W over its own region. */
static RawConn *writer_start(Fixture *f, unsigned w, uint8_t *buf)
{
    RawConn *c = raw_open(f->sock, "disk0", true, false);

    set_timeouts(c);
    memset(buf, 0x40 + w, REQ_LEN);
    raw_request(c, 0, RAW_CMD_WRITE, writer_offset(w), REQ_LEN, buf, WRITER_SENT);
    return c;
}

static void writer_finish(Fixture *f, RawConn *c, unsigned w, uint8_t *buf)
{
    uint64_t off = writer_offset(w);

    memset(buf, 0x40 + w, REQ_LEN);
    raw_send(c->fd, buf + WRITER_SENT, REQ_LEN - WRITER_SENT);
    g_assert_cmpuint(raw_reply(c, 1, RAW_CMD_WRITE, off, REQ_LEN, NULL, NULL), ==, 0);
    memcpy(f->ref + off, buf, REQ_LEN);
    raw_close(c);
}

/* While stalled readers and stalled writers hold up the server, a new
 * client's 32 MiB write and read complete (within STEP_TIMEOUT_S each);
 * then the stalled ones complete too, and all data is right. */
static void test_no_starvation(void)
{
    g_autofree uint8_t *buf = g_malloc(REQ_LEN);
    uint64_t fresh_off = (uint64_t)READ_REGIONS * REQ_LEN;
    RawConn *hogs[N_HOGS], *writers[N_WRITERS];
    gint64 start;
    Fixture f;

    fixture_start(&f, "no-starvation");
    for (unsigned w = 0; w < N_WRITERS; w++) {
        writers[w] = writer_start(&f, w, buf);
    }
    start_hogs(&f, hogs);

    start = g_get_monotonic_time();
    fresh_write(&f, fresh_off, buf);
    assert_still_serving(&f, fresh_off, buf);
    g_test_message("new client's 32 MiB write and read took %" G_GINT64_FORMAT " ms",
                   (g_get_monotonic_time() - start) / 1000);
    assert_rss_bounded(&f, "with stalled readers and writers");

    for (unsigned w = 0; w < N_WRITERS; w++) {
        writer_finish(&f, writers[w], w, buf);
    }
    for (unsigned i = 0; i < N_HOGS; i++) {
        hog_drain(&f, hogs[i], i, HOG_DEPTH, buf);
    }
    for (unsigned w = 0; w < N_WRITERS; w++) {
        assert_still_serving(&f, writer_offset(w), buf);
    }
    fixture_stop(&f);
}

/* While clients hog the budget, `stop` and `cont` answer (a pause waits
 * only for I/O in flight, never for a client), and `quit` ends the daemon
 * with status 0 within 10 s: stalled sends and waits for budget wake up. */
static void test_stop_and_quit_while_stalled(void)
{
    RawConn *hogs[N_HOGS];
    Fixture f;

    fixture_start(&f, "quit-stalled");
    start_hogs(&f, hogs);
    json_node_unref(qtest_qmp_ok(f.d, "{\"execute\": \"stop\"}"));
    qtest_wait_runstate(f.d, "paused", 10000);
    json_node_unref(qtest_qmp_ok(f.d, "{\"execute\": \"cont\"}"));
    qtest_wait_runstate(f.d, "running", 10000);
    fixture_stop(&f);
    for (unsigned i = 0; i < N_HOGS; i++) {
        close(hogs[i]->fd);
        g_free(hogs[i]);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_tmpdir();
    g_test_add_func("/nbd-budget/stalled-readers", test_stalled_readers);
    g_test_add_func("/nbd-budget/no-starvation", test_no_starvation);
    g_test_add_func("/nbd-budget/stop-and-quit-while-stalled",
                    test_stop_and_quit_while_stalled);
    return g_test_run();
}
