/* The block layer's NBD client when things go wrong or get busy: servers
 * that are missing, silent, killed or frozen mid-request (requests fail
 * with EIO within the timeout and never hang; a server that comes back is
 * used again), and many threads sharing one drive over one connection
 * (qemu-nbd) and over multi-conn (nbdkit). */
#include <errno.h>
#include <gio/gio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../qtest/libqtest.h"
#include "interop.h"
#include "nbd-servers.h"

#define MiB (1024 * 1024)
#define TIMEOUT_S 1            /* the drives' timeout= in this file */
#define BACK_WITHIN_S 15       /* a restarted server is used again by then */

static gint64 now_ms(void)
{
    return g_get_monotonic_time() / 1000;
}

static BlockDriverState *open_ok(const char *uri)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = ns_open("d0", uri, "raw", TIMEOUT_S, &err);

    g_assert_no_error(err);
    return bs;
}

static NbdServer *serve_file(const char *name, uint64_t size, uint8_t fill)
{
    g_autofree char *file = g_strdup_printf("%s.img", name);
    g_autofree char *path = qtest_path(file);

    qtest_disk_create(path, size);
    qtest_disk_set(path, 0, size, fill);
    g_autofree char *args = g_strdup_printf("-f raw %s", path);
    return ns_qemu_nbd(name, args);
}

/* Reads until one succeeds (the driver reconnected), failing the test
 * after BACK_WITHIN_S; then checks the data. */
static void wait_back(BlockDriverState *bs, uint8_t fill)
{
    gint64 deadline = now_ms() + BACK_WITHIN_S * 1000;
    uint8_t buf[4096];
    int ret;

    while ((ret = bdrv_pread(bs, 0, buf, sizeof(buf))) != 0) {
        g_assert_cmpint(ret, ==, -EIO);
        g_assert_cmpint(now_ms(), <, deadline);
        g_usleep(50 * 1000);
    }
    g_assert_cmpint(buf[0], ==, fill);
    g_assert_cmpint(buf[4095], ==, fill);
}

/* ---- Opening ---- */

static void assert_open_fails(const char *uri, const char *part, gint64 max_ms)
{
    g_autoptr(GError) err = NULL;
    gint64 t0 = now_ms();

    g_assert_null(ns_open("bad", uri, "raw", TIMEOUT_S, &err));
    g_assert_nonnull(err);
    g_test_message("%s: %s", uri, err->message);
    g_assert_nonnull(strstr(err->message, part));
    g_assert_cmpint(now_ms() - t0, <, max_ms);
    g_assert_null(bdrv_find("bad"));
}

/* A socket that listens but never accepts: the handshake never starts. */
static int silent_listener(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_strlcpy(sa.sun_path, path, sizeof(sa.sun_path));
    g_assert_cmpint(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    g_assert_cmpint(listen(fd, 4), ==, 0);
    return fd;
}

/* No server, a silent one (bounded by the timeout), an export the server
 * does not have, and create=on on a server: clear errors, no drive. */
static void test_open_errors(void)
{
    g_autofree char *missing = qtest_path("missing.sock");
    g_autofree char *silent = qtest_path("silent.sock");
    g_autofree char *missing_uri = interop_nbd_uri(missing, "");
    g_autofree char *silent_uri = interop_nbd_uri(silent, "");
    g_autoptr(GError) err = NULL;

    if (!interop_need("qemu-nbd")) {
        return;
    }
    assert_open_fails(missing_uri, "Cannot connect to NBD server", 1000);
    int fd = silent_listener(silent);
    assert_open_fails(silent_uri, "no answer within the timeout", TIMEOUT_S * 1000 + 2000);
    close(fd);

    NbdServer *s = ns_qemu_nbd("named", "-x disk7 -f raw /dev/null");
    g_autofree char *wrong = interop_nbd_uri(s->sock, "disk8");
    assert_open_fails(wrong, "Cannot connect to NBD server", 5000);
    g_autofree char *right = interop_nbd_uri(s->sock, "disk7");
    BlockOptions opts = { .id = "new", .filename = right, .format = "raw", .size = MiB,
                          .create = true };
    g_assert_null(bdrv_open(&opts, &err));
    g_assert_nonnull(strstr(err->message, "cannot make an image on an NBD server"));
    ns_free(s);
}

/* ---- Concurrency ---- */

#define THREADS 8
#define REGION (2 * MiB)         /* each thread's own part of the drive */
#define OPS 150

typedef struct Worker {
    BlockDriverState *bs;
    unsigned index;
    uint8_t *model;              /* the whole drive's expected bytes */
} Worker;

/* Random writes, zeroes, reads and flushes in the worker's own region,
 * every read checked against the worker's model of it. */
static gpointer worker_run(gpointer opaque)
{
    Worker *w = opaque;
    GRand *rand = g_rand_new_with_seed(w->index);
    uint64_t base = (uint64_t)w->index * REGION;
    g_autofree uint8_t *buf = g_malloc(256 * 1024);

    for (int i = 0; i < OPS; i++) {
        uint32_t len = g_rand_int_range(rand, 1, 256 * 1024);
        uint64_t off = base + g_rand_int_range(rand, 0, REGION - len);
        uint8_t *m = w->model + off;
        switch (g_rand_int_range(rand, 0, 8)) {
        case 0:
            g_assert_cmpint(bdrv_pwrite_zeroes(w->bs, off, len, BDRV_REQ_MAY_UNMAP), ==, 0);
            memset(m, 0, len);
            break;
        case 1:
            g_assert_cmpint(bdrv_flush(w->bs), ==, 0);
            break;
        case 2: case 3: case 4:
            memset(buf, (int)(w->index * 16 + (unsigned)i % 16 + 1), len);
            g_assert_cmpint(bdrv_pwrite(w->bs, off, buf, len, 0), ==, 0);
            memcpy(m, buf, len);
            break;
        default:
            g_assert_cmpint(bdrv_pread(w->bs, off, buf, len), ==, 0);
            g_assert_cmpint(memcmp(buf, m, len), ==, 0);
        }
    }
    g_rand_free(rand);
    return NULL;
}

static void run_workers(BlockDriverState *bs, uint8_t *model)
{
    Worker w[THREADS];
    GThread *t[THREADS];

    for (unsigned i = 0; i < THREADS; i++) {
        w[i] = (Worker){ .bs = bs, .index = i, .model = model };
        t[i] = g_thread_new("worker", worker_run, &w[i]);
    }
    for (unsigned i = 0; i < THREADS; i++) {
        g_thread_join(t[i]);
    }
}

/* Eight threads on one drive: over qemu-nbd's single connection (many
 * requests in flight on one libnbd handle) and over nbdkit's multi-conn;
 * every read sees its thread's last write and the export ends up equal
 * to the threads' models. */
static void test_concurrent(void)
{
    const uint64_t size = THREADS * REGION;
    g_autofree uint8_t *model = g_malloc0(size);

    if (!interop_need("qemu-nbd") || !interop_need("nbdkit")) {
        return;
    }
    NbdServer *servers[2] = { serve_file("conc", size, 0), ns_nbdkit("concmem", "memory 16M") };
    for (int k = 0; k < 2; k++) {
        BlockDriverState *bs = open_ok(servers[k]->uri);
        memset(model, 0, size);
        g_assert_cmpint(bdrv_pwrite_zeroes(bs, 0, size, 0), ==, 0);
        run_workers(bs, model);
        g_autofree uint8_t *got = ns_read_all(bs);
        ns_assert_same(model, got, size, servers[k]->argv[0]);
        bdrv_close(bs);
        ns_free(servers[k]);
    }
}

static gpointer slow_read(gpointer opaque)
{
    BlockDriverState *bs = opaque;
    uint8_t buf[4096];

    g_assert_cmpint(bdrv_pread(bs, 0, buf, sizeof(buf)), ==, 0);
    return NULL;
}

/* Requests of several threads are in flight together on one connection
 * (nbdkit without multi-conn, each read delayed 300 ms by the server):
 * eight reads take about one delay, not eight. */
static void test_in_flight(void)
{
    GThread *t[THREADS];

    if (!interop_need("nbdkit")) {
        return;
    }
    NbdServer *s = ns_nbdkit("slow", "--filter=multi-conn --filter=delay memory 16M "
                             "delay-read=300ms multi-conn-mode=disable");
    BlockDriverState *bs = open_ok(s->uri);
    gint64 t0 = now_ms();
    for (unsigned i = 0; i < THREADS; i++) {
        t[i] = g_thread_new("reader", slow_read, bs);
    }
    for (unsigned i = 0; i < THREADS; i++) {
        g_thread_join(t[i]);
    }
    gint64 took = now_ms() - t0;
    g_test_message("%d reads of 300 ms each took %" G_GINT64_FORMAT " ms", THREADS, took);
    g_assert_cmpint(took, <, 3 * 300);
    bdrv_close(bs);
    ns_free(s);
}

/* ---- A server that dies ---- */

typedef struct Reader {
    BlockDriverState *bs;
    gint *stop;
    gint64 slowest_ms;          /* longest single request */
    unsigned failures;
} Reader;

static gpointer reader_run(gpointer opaque)
{
    Reader *r = opaque;
    uint8_t buf[65536];

    while (!g_atomic_int_get(r->stop)) {
        gint64 t0 = now_ms();
        int ret = bdrv_pread(r->bs, 0, buf, sizeof(buf));
        r->slowest_ms = MAX(r->slowest_ms, now_ms() - t0);
        g_assert_true(ret == 0 || ret == -EIO);
        r->failures += ret != 0;
    }
    return NULL;
}

/* qemu-nbd killed while four threads read: every thread sees EIO and no
 * request takes longer than the timeout; restarted, the drive reads and
 * writes again. */
static void test_server_killed(void)
{
    gint stop = 0;
    Reader r[4];
    GThread *t[4];

    if (!interop_need("qemu-nbd")) {
        return;
    }
    NbdServer *s = serve_file("killed", 4 * MiB, 0x3c);
    BlockDriverState *bs = open_ok(s->uri);
    for (int i = 0; i < 4; i++) {
        r[i] = (Reader){ .bs = bs, .stop = &stop };
        t[i] = g_thread_new("reader", reader_run, &r[i]);
    }
    g_usleep(200 * 1000);
    ns_kill(s);
    g_usleep(1500 * 1000);
    g_atomic_int_set(&stop, 1);
    for (int i = 0; i < 4; i++) {
        g_thread_join(t[i]);
        g_assert_cmpuint(r[i].failures, >, 0);
        g_assert_cmpint(r[i].slowest_ms, <, TIMEOUT_S * 1000 + 500);
    }
    ns_restart(s);
    wait_back(bs, 0x3c);
    uint8_t one = 0x77;
    g_assert_cmpint(bdrv_pwrite(bs, 0, &one, 1, BDRV_REQ_FUA), ==, 0);
    bdrv_close(bs);
    ns_free(s);
}

static gpointer timed_read(gpointer opaque)
{
    BlockDriverState *bs = opaque;
    uint8_t buf[4096];
    gint64 t0 = now_ms();

    g_assert_cmpint(bdrv_pread(bs, 0, buf, sizeof(buf)), ==, -EIO);
    return GINT_TO_POINTER((int)(now_ms() - t0));
}

/* qemu-nbd frozen (SIGSTOP) with requests of four threads in flight: each
 * fails with EIO after the timeout, the next ones at once while the
 * connection is down; thawed, the server is used again. */
static void test_server_hung(void)
{
    uint8_t buf[4096];
    GThread *t[4];

    if (!interop_need("qemu-nbd")) {
        return;
    }
    NbdServer *s = serve_file("hung", 4 * MiB, 0x4d);
    BlockDriverState *bs = open_ok(s->uri);
    g_assert_cmpint(bdrv_pread(bs, 0, buf, sizeof(buf)), ==, 0);
    ns_freeze(s, true);

    for (int i = 0; i < 4; i++) {
        t[i] = g_thread_new("reader", timed_read, bs);
    }
    for (int i = 0; i < 4; i++) {
        int took = GPOINTER_TO_INT(g_thread_join(t[i]));
        g_assert_cmpint(took, >=, TIMEOUT_S * 1000 - 50);
        g_assert_cmpint(took, <, TIMEOUT_S * 1000 + 1000);
    }
    gint64 t0 = now_ms();
    g_assert_cmpint(bdrv_pread(bs, 0, buf, sizeof(buf)), ==, -EIO);
    g_assert_cmpint(now_ms() - t0, <, 200);

    ns_freeze(s, false);
    wait_back(bs, 0x4d);
    bdrv_close(bs);
    ns_free(s);
}

/* qemu-nbd killed and restarted while the drive is idle: the driver
 * notices the hang-up by itself and reconnects, so the next request just
 * works. */
static void test_idle_reconnect(void)
{
    uint8_t buf[4096];

    if (!interop_need("qemu-nbd")) {
        return;
    }
    NbdServer *s = serve_file("idle", 4 * MiB, 0x5e);
    BlockDriverState *bs = open_ok(s->uri);
    g_assert_cmpint(bdrv_pread(bs, 0, buf, sizeof(buf)), ==, 0);
    ns_restart(s);
    g_usleep(1000 * 1000);
    g_assert_cmpint(bdrv_pread(bs, 0, buf, sizeof(buf)), ==, 0);
    g_assert_cmpint(buf[0], ==, 0x5e);
    bdrv_close(bs);
    ns_free(s);
}

/* A server that comes back with another export (a different size) on
 * the same socket is not used: requests keep failing with EIO. */
static void test_export_changed(void)
{
    uint8_t buf[4096];

    if (!interop_need("qemu-nbd")) {
        return;
    }
    NbdServer *s = serve_file("changed", 4 * MiB, 0x6f);
    BlockDriverState *bs = open_ok(s->uri);
    g_assert_cmpint(bdrv_pread(bs, 0, buf, sizeof(buf)), ==, 0);
    ns_free(s);
    s = serve_file("changed", 8 * MiB, 0x70);
    g_usleep(1500 * 1000);      /* several reconnect attempts */
    g_assert_cmpint(bdrv_pread(bs, 0, buf, sizeof(buf)), ==, -EIO);
    g_assert_cmpint(bdrv_getlength(bs), ==, 4 * MiB);
    bdrv_close(bs);
    ns_free(s);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_tmpdir();
    g_test_add_func("/nbd-client/open-errors", test_open_errors);
    g_test_add_func("/nbd-client/concurrent", test_concurrent);
    g_test_add_func("/nbd-client/in-flight", test_in_flight);
    g_test_add_func("/nbd-client/server-killed", test_server_killed);
    g_test_add_func("/nbd-client/server-hung", test_server_hung);
    g_test_add_func("/nbd-client/idle-reconnect", test_idle_reconnect);
    g_test_add_func("/nbd-client/export-changed", test_export_changed);
    return g_test_run();
}
