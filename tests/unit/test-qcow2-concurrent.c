/* qcow2 under concurrency and crashes: writer threads racing for the same
 * clusters (with and without a backing image) while another thread
 * discards and reuses clusters; a child process killed with SIGKILL at
 * random moments while it writes and flushes, after which `qemu-img check`
 * finds no corruption and every acknowledged flushed write is there.  With
 * -m perf, 4 KiB random I/O through qcow2 against raw. */
#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "block/block.h"
#include "../lib/files.h"
#include "../lib/qemu-tools.h"
#include "util/size.h"

#define GRANULE 4096u

typedef struct Fixture {
    char *dir;
} Fixture;

/* In /dev/shm when there is one: a SIGKILL keeps the page cache, so the
 * syncs the block layer makes matter nothing here, and on a busy disk
 * they would cost most of the run. */
static void fixture_setup(Fixture *f, gconstpointer data)
{
    GError *err = NULL;
    const char *shm = "/dev/shm/test-qcow2-concurrent-XXXXXX";

    f->dir = g_file_test("/dev/shm", G_FILE_TEST_IS_DIR) ? g_mkdtemp(g_strdup(shm)) : NULL;
    if (!f->dir) {
        f->dir = g_dir_make_tmp("test-qcow2-concurrent-XXXXXX", &err);
        g_assert_no_error(err);
    }
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    bdrv_close_all();
    g_free(qt_run("rm -rf %s", f->dir));
    g_free(f->dir);
}

static char *path_in(Fixture *f, const char *name)
{
    return g_build_filename(f->dir, name, NULL);
}

static BlockDriverState *open_opts(const BlockOptions *opts)
{
    GError *err = NULL;
    BlockDriverState *bs = bdrv_open(opts, &err);
    g_assert_no_error(err);
    return bs;
}

/* Bytes of granule G written by thread T in its round R: never zero. */
static void granule_pattern(uint8_t *buf, uint64_t g, unsigned t, unsigned r)
{
    for (unsigned i = 0; i < GRANULE; i += 8) {
        uint64_t v = (g << 24) | ((uint64_t)t << 16) | (r & 0xffff) | (1ULL << 63);
        memcpy(buf + i, &v, 8);
    }
}

/* The test is linked with -Wl,--wrap=pwrite (Makefile): a child may die
 * right before its N-th write to any file, the moment a crash would cut
 * the block layer's sequence of writes there. */
ssize_t __real_pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off);
static gint64 writes_until_crash = -1;     /* < 0: never */
static gint64 writes_done;
/* A thread that sets it runs it right before each of its writes: the
 * write is then in flight, mapped but not done. */
static __thread void (*before_pwrite)(void);

ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    if (writes_until_crash >= 0 && writes_done >= writes_until_crash) {
        _exit(0);
    }
    if (before_pwrite) {
        before_pwrite();
    }
    writes_done++;
    return __real_pwrite(fd, buf, n, off);
}

/* ---- Writers racing for clusters ---- */

#define WRITERS 4
#define RACE_SIZE (16 * MiB)             /* writers' region */
#define REUSE_SIZE (4 * MiB)             /* the discarding thread's region */
#define RACE_DISK (RACE_SIZE + REUSE_SIZE)

typedef struct Race {
    BlockDriverState *bs;
    uint8_t *model;                      /* expected disk, written per owner */
    uint32_t cs;
    pthread_barrier_t start;             /* the writers, per cluster */
} Race;

typedef struct Writer {
    Race *race;
    unsigned t;
} Writer;

static void write_granule(Race *race, uint64_t g, unsigned t, unsigned r)
{
    uint8_t buf[GRANULE];
    granule_pattern(buf, g, t, r);
    g_assert_cmpint(bdrv_pwrite(race->bs, g * GRANULE, buf, GRANULE, 0), ==, 0);
    memcpy(race->model + g * GRANULE, buf, GRANULE);
}

/* All writers start together on the same unallocated cluster, each on its
 * own granule: without serialised allocation some of them are lost. */
static void race_for_clusters(Writer *w)
{
    uint64_t per_cluster = w->race->cs / GRANULE;

    for (uint64_t c = 0; c < 64; c++) {
        pthread_barrier_wait(&w->race->start);
        write_granule(w->race, c * per_cluster + w->t, w->t, 0);
    }
}

/* Thread T owns granules g with g % WRITERS == T: neighbours in every
 * cluster, so allocations of one cluster race. */
static gpointer writer_thread(gpointer opaque)
{
    Writer *w = opaque;
    Race *race = w->race;
    GRand *rand = g_rand_new_with_seed(w->t + 1);
    uint8_t buf[GRANULE], back[GRANULE];
    uint64_t ngranules = RACE_SIZE / GRANULE / WRITERS;

    race_for_clusters(w);
    for (unsigned r = 1; r < 1500; r++) {
        uint64_t g = (uint64_t)g_rand_int_range(rand, 0, (gint32)ngranules) * WRITERS + w->t;
        uint64_t off = g * GRANULE;
        int op = g_rand_int_range(rand, 0, 8);
        if (op < 6) {
            granule_pattern(buf, g, w->t, r);
            g_assert_cmpint(bdrv_pwrite(race->bs, off, buf, GRANULE, 0), ==, 0);
            memcpy(race->model + off, buf, GRANULE);
        } else if (op == 6) {
            g_assert_cmpint(bdrv_pwrite_zeroes(race->bs, off, GRANULE, r % 2 ? BDRV_REQ_MAY_UNMAP : 0),
                            ==, 0);
            memset(race->model + off, 0, GRANULE);
        } else {
            g_assert_cmpint(bdrv_pread(race->bs, off, back, GRANULE), ==, 0);
            g_assert_cmpmem(back, GRANULE, race->model + off, GRANULE);
        }
    }
    g_rand_free(rand);
    return NULL;
}

/* Whole clusters written, checked, discarded and flushed, so that freed
 * clusters go back to the allocator while the writers allocate. */
static gpointer reuse_thread(gpointer opaque)
{
    Race *race = opaque;
    uint64_t len = race->cs;
    uint8_t *buf = g_malloc(len), *back = g_malloc(len);

    for (unsigned r = 0; r < 150; r++) {
        uint64_t off = RACE_SIZE + (r * len) % REUSE_SIZE;
        for (uint64_t g = 0; g < len / GRANULE; g++) {
            granule_pattern(buf + g * GRANULE, (off / GRANULE) + g, 9, r);
        }
        g_assert_cmpint(bdrv_pwrite(race->bs, off, buf, len, 0), ==, 0);
        g_assert_cmpint(bdrv_pread(race->bs, off, back, len), ==, 0);
        g_assert_cmpmem(back, len, buf, len);
        g_assert_cmpint(bdrv_discard(race->bs, off, len), ==, 0);
        g_assert_cmpint(bdrv_flush(race->bs), ==, 0);
        memset(race->model + off, 0, len);
    }
    g_free(buf);
    g_free(back);
    return NULL;
}

static void run_race(Race *race)
{
    Writer writers[WRITERS];
    GThread *threads[WRITERS + 1];

    pthread_barrier_init(&race->start, NULL, WRITERS);
    for (unsigned t = 0; t < WRITERS; t++) {
        writers[t] = (Writer){ race, t };
        threads[t] = g_thread_new("writer", writer_thread, &writers[t]);
    }
    threads[WRITERS] = g_thread_new("reuse", reuse_thread, race);
    for (unsigned t = 0; t <= WRITERS; t++) {
        g_thread_join(threads[t]);
    }
    pthread_barrier_destroy(&race->start);
}

static void test_race(Fixture *f, gconstpointer data)
{
    bool with_backing = GPOINTER_TO_INT(data);
    g_autofree char *img = path_in(f, "race.qcow2"), *base = path_in(f, "base.raw");
    g_autofree char *want = path_in(f, "want.raw");
    uint64_t size = RACE_DISK;
    Race race = { .model = g_malloc0(size), .cs = 64 * 1024 };
    BlockOptions opts = { .id = "race", .filename = img, .format = "qcow2", .size = size,
                          .create = true };

    if (with_backing) {
        for (uint64_t g = 0; g < size / GRANULE; g += 3) {
            granule_pattern(race.model + g * GRANULE, g, 7, 0);
        }
        g_assert_true(g_file_set_contents(base, (const char *)race.model, (gssize)size, NULL));
        opts.backing = base;
        opts.backing_format = "raw";
    }
    race.bs = open_opts(&opts);
    run_race(&race);
    bdrv_close(race.bs);
    g_assert_cmpint(qt_check(img), ==, 0);
    g_assert_true(g_file_set_contents(want, (const char *)race.model, (gssize)size, NULL));
    g_assert_true(qt_compare(img, "qcow2", want, "raw"));
    g_free(race.model);
}

/* ---- Freeing a cluster under a write ---- */

/* The writer announces its write in flight and waits; meanwhile the main
 * thread discards that guest cluster, flushes (which releases what is
 * durable), and has a new cluster allocated and written.  The late write
 * must not land in that new cluster. */
static GAsyncQueue *in_flight, *go_on;

static void announce_and_wait(void)
{
    g_async_queue_push(in_flight, GINT_TO_POINTER(1));
    g_async_queue_pop(go_on);
}

typedef struct Late {
    BlockDriverState *bs;
    unsigned rounds;
} Late;

static gpointer late_writer(gpointer opaque)
{
    Late *late = opaque;
    uint8_t buf[GRANULE];

    memset(buf, 0xee, sizeof(buf));
    for (unsigned r = 0; r < late->rounds; r++) {
        g_assert_cmpint(bdrv_pwrite(late->bs, 0, buf, GRANULE, 0), ==, 0);    /* allocates */
        before_pwrite = announce_and_wait;
        g_assert_cmpint(bdrv_pwrite(late->bs, 0, buf, GRANULE, 0), ==, 0);    /* in place */
        before_pwrite = NULL;
    }
    return NULL;
}

static void test_free_under_write(Fixture *f, gconstpointer data)
{
    g_autofree char *img = path_in(f, "late.qcow2"), *want = path_in(f, "late.raw");
    BlockOptions opts = { .id = "late", .filename = img, .format = "qcow2", .size = 8 * MiB,
                          .create = true };
    Late late = { open_opts(&opts), 20 };
    uint8_t *model = g_malloc0(8 * MiB);

    in_flight = g_async_queue_new();
    go_on = g_async_queue_new();
    GThread *writer = g_thread_new("late", late_writer, &late);
    for (unsigned r = 0; r < late.rounds; r++) {
        uint64_t g = (r + 1) * (64 * KiB / GRANULE) + r % 16;
        g_async_queue_pop(in_flight);
        g_assert_cmpint(bdrv_discard(late.bs, 0, 64 * KiB), ==, 0);
        g_assert_cmpint(bdrv_flush(late.bs), ==, 0);
        granule_pattern(model + g * GRANULE, g, 1, r);
        g_assert_cmpint(bdrv_pwrite(late.bs, g * GRANULE, model + g * GRANULE, GRANULE, 0), ==, 0);
        g_async_queue_push(go_on, GINT_TO_POINTER(1));
    }
    g_thread_join(writer);
    g_assert_cmpint(bdrv_discard(late.bs, 0, 64 * KiB), ==, 0);
    bdrv_close(late.bs);
    g_assert_cmpint(qt_check(img), ==, 0);
    g_assert_true(g_file_set_contents(want, (const char *)model, 8 * MiB, NULL));
    g_assert_true(qt_compare(img, "qcow2", want, "raw"));
    g_async_queue_unref(in_flight);
    g_async_queue_unref(go_on);
    g_free(model);
}

/* ---- Crash loop ---- */

#define CRASH_SIZE (16 * MiB)
#define STRIPE (64 * 1024)               /* thread t owns stripes s % 2 == t */
#define SECTOR 512u

enum { R_START, R_DONE, R_FBEGIN, R_FDONE };
enum { OP_WRITE, OP_ZERO };

/* What the child tells the parent, appended to a log file. */
typedef struct Record {
    uint8_t kind, thread, type, pad;
    uint32_t id;
    uint64_t off;
    uint32_t len, pad2;
} Record;

static void log_record(int fd, const Record *r)
{
    g_assert_cmpint(write(fd, r, sizeof(*r)), ==, sizeof(*r));
}

/* Sector S as written by op ID: never zero. */
static uint64_t sector_word(uint32_t id, uint64_t s)
{
    return ((uint64_t)id << 32) | (s & 0xffffffff);
}

static void op_data(uint8_t *buf, uint32_t id, uint64_t off, uint32_t len)
{
    for (uint32_t i = 0; i < len; i += 8) {
        uint64_t v = sector_word(id, (off + i) / SECTOR);
        memcpy(buf + i, &v, 8);
    }
}

typedef struct Child {
    BlockDriverState *bs;
    int log;
    unsigned t;
    unsigned nthreads;
    uint64_t size;
} Child;

/* One random op of thread C->t (in stripes it owns), logged before and
 * after. */
static void child_op(Child *c, GRand *rand, uint32_t id, uint8_t *buf)
{
    uint64_t stripes = c->size / STRIPE / c->nthreads;
    uint64_t stripe = (uint64_t)g_rand_int_range(rand, 0, (gint32)stripes) * c->nthreads + c->t;
    uint32_t first = (uint32_t)g_rand_int_range(rand, 0, STRIPE / SECTOR);
    uint32_t sectors = (uint32_t)g_rand_int_range(rand, 1, STRIPE / SECTOR - first + 1);
    Record r = { R_START, (uint8_t)c->t, g_rand_int_range(rand, 0, 5) ? OP_WRITE : OP_ZERO, 0,
                 id, stripe * STRIPE + first * SECTOR, sectors * SECTOR, 0 };

    log_record(c->log, &r);
    if (r.type == OP_WRITE) {
        op_data(buf, r.id, r.off, r.len);
        g_assert_cmpint(bdrv_pwrite(c->bs, r.off, buf, r.len, 0), ==, 0);
    } else {
        g_assert_cmpint(bdrv_pwrite_zeroes(c->bs, r.off, r.len, BDRV_REQ_MAY_UNMAP), ==, 0);
    }
    r.kind = R_DONE;
    log_record(c->log, &r);
}

static void child_flush(Child *c)
{
    Record r = { .kind = R_FBEGIN };
    log_record(c->log, &r);
    g_assert_cmpint(bdrv_flush(c->bs), ==, 0);
    r.kind = R_FDONE;
    log_record(c->log, &r);
}

static gpointer child_writer(gpointer opaque)
{
    Child *c = opaque;
    GRand *rand = g_rand_new();
    uint8_t *buf = g_malloc(STRIPE);

    for (uint32_t n = 1;; n++) {
        child_op(c, rand, n * c->nthreads + c->t, buf);
    }
    return NULL;
}

static BlockDriverState *child_open(const char *img)
{
    BlockOptions opts = { .id = "crash", .filename = img, .format = "qcow2" };
    return open_opts(&opts);
}

/* The child: two writers and flushes until the parent kills it (or five
 * seconds pass, should the parent be gone). */
static G_NORETURN void crash_child(const char *img, int log)
{
    Child c[2];
    BlockDriverState *bs = child_open(img);

    for (unsigned t = 0; t < 2; t++) {
        c[t] = (Child){ bs, log, t, 2, CRASH_SIZE };
        g_thread_new("child-writer", child_writer, &c[t]);
    }
    for (int i = 0; i < 1000; i++) {
        g_usleep(3000);
        child_flush(&c[0]);
    }
    _exit(0);
}

typedef struct Op {
    Record r;
    bool durable;
} Op;

/* The ops of a log, in start order, with durability: done before the
 * beginning of a flush that completed. */
static GArray *parse_log(const char *path)
{
    gsize len;
    Record *recs = (Record *)tf_read_file(path, &len);
    size_t n = len / sizeof(Record), durable_before = 0, fbegin = 0;
    GArray *ops = g_array_new(FALSE, FALSE, sizeof(Op));
    GHashTable *done_at = g_hash_table_new(g_direct_hash, g_direct_equal);

    for (size_t i = 0; i < n; i++) {
        if (recs[i].kind == R_START) {
            Op op = { recs[i], false };
            g_array_append_val(ops, op);
        } else if (recs[i].kind == R_DONE) {
            g_hash_table_insert(done_at, GUINT_TO_POINTER(recs[i].id), GSIZE_TO_POINTER(i + 1));
        } else if (recs[i].kind == R_FBEGIN) {
            fbegin = i + 1;
        } else {
            durable_before = fbegin;     /* the last flush that completed */
        }
    }
    for (guint i = 0; i < ops->len; i++) {
        Op *op = &g_array_index(ops, Op, i);
        gsize at = GPOINTER_TO_SIZE(g_hash_table_lookup(done_at, GUINT_TO_POINTER(op->r.id)));
        op->durable = at && at < durable_before;
    }
    g_hash_table_destroy(done_at);
    g_free(recs);
    return ops;
}

static bool covers(const Op *op, uint64_t s)
{
    return op->r.off <= s * SECTOR && s * SECTOR < op->r.off + op->r.len;
}

static bool sector_is(const uint8_t *sector, const Op *op, uint64_t s)
{
    uint8_t want[SECTOR];
    if (op->r.type == OP_ZERO) {
        memset(want, 0, SECTOR);
    } else {
        op_data(want, op->r.id, s * SECTOR, SECTOR);
    }
    return memcmp(sector, want, SECTOR) == 0;
}

/* Sector S reads as its last durable op, or as an op after it (done or
 * not), or, without a durable op, as it was before this round. */
static void verify_sector(GArray *ops, const int64_t *last_durable, const uint8_t *actual,
                          const uint8_t *before, uint64_t s)
{
    const uint8_t *sector = actual + s * SECTOR;
    int64_t from = last_durable[s];

    if (from < 0 && memcmp(sector, before + s * SECTOR, SECTOR) == 0) {
        return;
    }
    for (guint i = (guint)MAX(from, 0); i < ops->len; i++) {
        const Op *op = &g_array_index(ops, Op, i);
        if (covers(op, s) && sector_is(sector, op, s)) {
            return;
        }
    }
    g_error("sector %" G_GUINT64_FORMAT " lost its acknowledged flushed write (op %" G_GINT64_FORMAT
            ")", s, from);
}

static void verify_round(GArray *ops, const uint8_t *actual, const uint8_t *before,
                         uint64_t size)
{
    uint64_t nsect = size / SECTOR;
    int64_t *last_durable = g_new(int64_t, nsect);
    unsigned durable = 0;

    for (uint64_t s = 0; s < nsect; s++) {
        last_durable[s] = -1;
    }
    for (guint i = 0; i < ops->len; i++) {
        const Op *op = &g_array_index(ops, Op, i);
        for (uint64_t s = op->r.off / SECTOR; op->durable && covers(op, s); s++) {
            last_durable[s] = i;
        }
        durable += op->durable;
    }
    g_test_message("%u ops, %u acknowledged and flushed", ops->len, durable);
    for (uint64_t s = 0; s < nsect; s++) {
        verify_sector(ops, last_durable, actual, before, s);
    }
    g_free(last_durable);
}

static uint8_t *read_image(const char *img, uint64_t size)
{
    BlockOptions opts = { .id = "check", .filename = img, .format = "qcow2", .read_only = true };
    BlockDriverState *bs = open_opts(&opts);
    uint8_t *buf = g_malloc(size);
    g_assert_cmpint(bdrv_pread(bs, 0, buf, size), ==, 0);
    bdrv_close(bs);
    return buf;
}

static void crash_once(Fixture *f, const char *img, uint8_t **before, GRand *rand)
{
    g_autofree char *logp = path_in(f, "ops.log");
    int log = open(logp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    pid_t pid = fork();

    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        crash_child(img, log);
    }
    close(log);
    g_usleep((gulong)g_rand_int_range(rand, 30000, 200000));
    g_assert_cmpint(kill(pid, SIGKILL), ==, 0);
    int status;
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    g_test_message("leaked clusters: %" G_GINT64_FORMAT, qt_check(img));
    uint8_t *actual = read_image(img, CRASH_SIZE);
    GArray *ops = parse_log(logp);
    verify_round(ops, actual, *before, CRASH_SIZE);
    g_array_unref(ops);
    g_free(*before);
    *before = actual;
}

static void test_crash_loop(Fixture *f, gconstpointer data)
{
    g_autofree char *img = path_in(f, "crash.qcow2"), *raw = path_in(f, "after.raw");
    BlockOptions opts = { .id = "mk", .filename = img, .format = "qcow2", .size = CRASH_SIZE,
                          .create = true, .cluster_size = 4096 };
    GRand *rand = g_rand_new_with_seed(99);
    uint8_t *before = g_malloc0(CRASH_SIZE);

    bdrv_close(open_opts(&opts));
    for (int round = 0; round < 6; round++) {
        crash_once(f, img, &before, rand);
    }
    /* qemu-img reads what blkmig reads. */
    g_assert_true(g_file_set_contents(raw, (const char *)before, CRASH_SIZE, NULL));
    g_assert_true(qt_compare(img, "qcow2", raw, "raw"));
    g_free(before);
    g_rand_free(rand);
}

/* ---- Crash points ---- */

#define POINTS_SIZE (4 * MiB)
#define POINTS_OPS 60

/* The same seeded ops and flushes every time: a child that runs them all
 * tells how many writes that takes (an op id of 0 in the last record). */
static G_NORETURN void points_child(const char *img, int log, gint64 crash_at)
{
    Child c = { child_open(img), log, 0, 1, POINTS_SIZE };
    GRand *rand = g_rand_new_with_seed(31);
    uint8_t *buf = g_malloc(STRIPE);

    writes_until_crash = crash_at;
    writes_done = 0;
    for (uint32_t n = 1; n <= POINTS_OPS; n++) {
        child_op(&c, rand, n, buf);
        if (n % 7 == 0) {
            child_flush(&c);
        }
    }
    bdrv_close(c.bs);
    Record end = { .kind = R_FDONE, .off = (uint64_t)writes_done };
    writes_until_crash = -1;
    log_record(log, &end);
    _exit(0);
}

/* Runs the child against a fresh copy of TEMPLATE; the writes it made. */
static gint64 run_points_child(Fixture *f, const char *template, const char *img,
                               gint64 crash_at)
{
    g_autofree char *logp = path_in(f, "points.log");
    int log = open(logp, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    int status;

    g_free(qt_run("cp %s %s", template, img));
    pid_t pid = fork();
    g_assert_cmpint(pid, >=, 0);
    if (pid == 0) {
        points_child(img, log, crash_at);
    }
    close(log);
    g_assert_cmpint(waitpid(pid, &status, 0), ==, pid);
    g_assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

    gsize len;
    Record *recs = (Record *)tf_read_file(logp, &len);
    gint64 writes = crash_at < 0 ? (gint64)recs[len / sizeof(Record) - 1].off : crash_at;
    g_free(recs);
    if (crash_at >= 0) {
        uint8_t *zero = g_malloc0(POINTS_SIZE), *actual;
        qt_check(img);
        actual = read_image(img, POINTS_SIZE);
        GArray *ops = parse_log(logp);
        verify_round(ops, actual, zero, POINTS_SIZE);
        g_array_unref(ops);
        g_free(actual);
        g_free(zero);
    }
    return writes;
}

/* A crash right before each of many writes of a run: 512-byte clusters
 * and 64-bit refcounts make new L2 tables, refcount blocks and refcount
 * table growth frequent. */
static void test_crash_points(Fixture *f, gconstpointer data)
{
    g_autofree char *template = path_in(f, "template.qcow2"), *img = path_in(f, "points.qcow2");

    g_free(qt_run("qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=64 %s %u",
                  template, (unsigned)POINTS_SIZE));
    gint64 total = run_points_child(f, template, img, -1);
    gint64 step = MAX(total / 80, 1);
    g_test_message("%" G_GINT64_FORMAT " writes in a full run; crashing every %" G_GINT64_FORMAT,
                   total, step);
    g_assert_cmpint(total, >, 200);
    for (gint64 n = 0; n < total; n += step) {
        run_points_child(f, template, img, n + (n / step) % step);
    }
}

/* ---- Micro-benchmark (-m perf) ---- */

#define PERF_SIZE (1024 * MiB)
#define PERF_OPS 40000

static double random_io(BlockDriverState *bs, bool write, GRand *rand)
{
    uint8_t *buf = bdrv_buf_alloc(bs, GRANULE);
    memset(buf, 0x5a, GRANULE);
    gint64 t0 = g_get_monotonic_time();

    for (int i = 0; i < PERF_OPS; i++) {
        uint64_t off = (uint64_t)g_rand_int_range(rand, 0, PERF_SIZE / GRANULE) * GRANULE;
        int ret = write ? bdrv_pwrite(bs, off, buf, GRANULE, 0) : bdrv_pread(bs, off, buf, GRANULE);
        g_assert_cmpint(ret, ==, 0);
    }
    bdrv_buf_free(buf);
    return PERF_OPS / ((g_get_monotonic_time() - t0) / 1e6);
}

typedef struct PerfJob {
    BlockDriverState *bs;
    bool write;
    unsigned seed;
    double iops;
} PerfJob;

static gpointer perf_thread(gpointer opaque)
{
    PerfJob *j = opaque;
    GRand *rand = g_rand_new_with_seed(j->seed);
    j->iops = random_io(j->bs, j->write, rand);
    g_rand_free(rand);
    return NULL;
}

/* Total IOPS of four threads at once. */
static double threaded_io(BlockDriverState *bs, bool write)
{
    PerfJob jobs[4];
    GThread *threads[4];
    double total = 0;

    for (unsigned i = 0; i < 4; i++) {
        jobs[i] = (PerfJob){ bs, write, i + 1, 0 };
        threads[i] = g_thread_new("perf", perf_thread, &jobs[i]);
    }
    for (unsigned i = 0; i < 4; i++) {
        g_thread_join(threads[i]);
        total += jobs[i].iops;
    }
    return total;
}

static void perf_format(Fixture *f, const char *format)
{
    g_autofree char *img = path_in(f, format);
    BlockOptions opts = { .id = format, .filename = img, .format = format, .size = PERF_SIZE,
                          .create = true };
    BlockDriverState *bs = open_opts(&opts);
    GRand *rand = g_rand_new_with_seed(1);
    double fresh = random_io(bs, true, rand);
    g_rand_set_seed(rand, 1);
    double again = random_io(bs, true, rand);
    g_rand_set_seed(rand, 1);
    double reads = random_io(bs, false, rand);

    g_test_message("%-6s 4 KiB random, 1 thread: first writes %7.0f IOPS, rewrites %7.0f, "
                   "reads %7.0f", format, fresh, again, reads);
    g_test_message("%-6s 4 KiB random, 4 threads: writes %7.0f IOPS, reads %7.0f", format,
                   threaded_io(bs, true), threaded_io(bs, false));
    g_rand_free(rand);
    bdrv_close(bs);
}

static void test_perf(Fixture *f, gconstpointer data)
{
    if (!g_test_perf()) {
        g_test_skip("a micro-benchmark: run with -m perf");
        return;
    }
    perf_format(f, "raw");
    perf_format(f, "qcow2");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define ADD(path, fn, d) g_test_add(path, Fixture, d, fixture_setup, fn, fixture_teardown)
    ADD("/qcow2-concurrent/race", test_race, GINT_TO_POINTER(false));
    ADD("/qcow2-concurrent/race-backing", test_race, GINT_TO_POINTER(true));
    ADD("/qcow2-concurrent/free-under-write", test_free_under_write, NULL);
    ADD("/qcow2-concurrent/crash-loop", test_crash_loop, NULL);
    ADD("/qcow2-concurrent/crash-points", test_crash_points, NULL);
    ADD("/qcow2-concurrent/perf", test_perf, NULL);
    return g_test_run();
}
