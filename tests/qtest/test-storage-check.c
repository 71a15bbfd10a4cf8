/* What a migration must never do to a guest's disks, and what it reports
 * meanwhile, between real blkmigd daemons:
 *   - without `block` the destination checks that its disks are the
 *     source's (the storage check) and refuses to start its guest when
 *     they are not, while shared storage still migrates;
 *   - README's operator example completes, as README writes it;
 *   - progress under a random writer: `remaining` never exceeds `total`
 *     and the blkmig client's percent never goes back. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "migration-framework.h"
#include "util/size.h"

/* Generous: ASan builds on two shared cores are slow. */
#define STATE_TIMEOUT_MS 30000
/* README's example takes about 9 s here; without convergence it never
 * ends, and the test says so instead of hanging. */
#define README_TIMEOUT_S 120
#define TOOL_POLL_US (25 * 1000)
#define DIFFER_HINT "the disks differ: enable the 'block' capability to copy the disks, " \
                    "or use shared storage"

/* ---- helpers ---- */

/* The migration (capabilities CAP, may be NULL) from a source with
 * SRC_DRIVES to a destination with DST_DRIVES begins (the framework's,
 * with this file's longer waits for states). */
static void start_migration(Migration *m, const char *src_drives, const char *dst_drives,
                            const char *cap)
{
    *m = (Migration){ .state_timeout_ms = STATE_TIMEOUT_MS };
    mf_start_daemons(m, src_drives, dst_drives);
    if (cap) {
        qtest_set_caps(m->src, cap, NULL);
    }
    qtest_migrate_start(m->src, m->uri);
}

static char *drive_opt(const char *id, const char *path)
{
    return g_strdup_printf("--drive id=%s,file=%s", id, path);
}

/* ---- the storage check ---- */

/* Two disks of the same size holding different data: refused. */
static void test_different_disks(void)
{
    g_autofree char *a = qtest_path("a.raw"), *b = qtest_path("b.raw");
    g_autofree char *src_opt = drive_opt("disk0", a), *dst_opt = drive_opt("disk0", b);
    Migration m;

    qtest_disk_create(a, 64 * MIB);
    qtest_disk_scatter(a, 3, 8, 64 * KIB);
    qtest_disk_create(b, 64 * MIB);
    qtest_disk_scatter(b, 4, 8, 64 * KIB);
    start_migration(&m, src_opt, dst_opt, NULL);
    mf_expect_refused(&m, "drive 'disk0' does not match the source's", DIFFER_HINT);
    mf_free(&m);
}

/* One file opened by both daemons (shared storage), written by the
 * source guest until it stops: the check passes, so it must be taken
 * with the guest stopped and its writes flushed. */
static void test_shared_storage(void)
{
    g_autofree char *disk = qtest_path("shared.raw");
    g_autofree char *opt = drive_opt("disk0", disk);
    g_autofree char *src_opt = g_strdup_printf("%s --workload drive=disk0,rate=20,seed=7", opt);
    Migration m;

    qtest_disk_create(disk, 256 * MIB);
    qtest_disk_scatter(disk, 5, 40, 256 * KIB);
    start_migration(&m, src_opt, opt, NULL);
    json_node_unref(mf_wait_completed(&m));
    mf_free(&m);
}

/* Different sizes: refused, naming both. */
static void test_different_sizes(void)
{
    g_autofree char *a = qtest_path("a.raw"), *b = qtest_path("b.raw");
    g_autofree char *src_opt = drive_opt("disk0", a), *dst_opt = drive_opt("disk0", b);
    Migration m;

    qtest_disk_create(a, 64 * MIB);
    qtest_disk_create(b, 32 * MIB);
    start_migration(&m, src_opt, dst_opt, NULL);
    mf_expect_refused(&m, "drive 'disk0' is 67108864 bytes at the source but "
                      "33554432 bytes here: ", DIFFER_HINT);
    mf_free(&m);
}

/* A sparse 1 GiB source with three 4 KiB blocks of data, none inside an
 * evenly spread range (those start at multiples of size / 32 and are
 * 64 KiB long), against an empty destination: only the ranges that seek
 * data can tell them apart, and they must, every time. */
static void test_sparse_source_empty_destination(void)
{
    static const uint64_t data_at[] = { 16 * MIB + 12 * KIB, 300 * MIB, 1000 * MIB + 8 * KIB };
    g_autofree char *a = qtest_path("a.raw"), *b = qtest_path("b.raw");
    g_autofree char *src_opt = drive_opt("disk0", a), *dst_opt = drive_opt("disk0", b);

    qtest_disk_create(a, GIB);
    qtest_disk_create(b, GIB);
    for (size_t i = 0; i < G_N_ELEMENTS(data_at); i++) {
        g_assert_cmpuint(data_at[i] % (GIB / 32), >=, 64 * KIB);
        qtest_disk_set(a, data_at[i], 4 * KIB, 0x5a + i);
    }
    for (int round = 0; round < 3; round++) {
        Migration m;
        start_migration(&m, src_opt, dst_opt, NULL);
        mf_expect_refused(&m, "drive 'disk0' does not match the source's", DIFFER_HINT);
        mf_free(&m);
    }
}

/* A drive on one side only, without `block` (the other drive is shared)
 * and with it: refused, naming the drive. */
static void test_drive_on_one_side(void)
{
    g_autofree char *shared = qtest_path("shared.raw"), *extra = qtest_path("extra.raw");
    g_autofree char *d0 = drive_opt("disk0", shared), *d1 = drive_opt("disk1", extra);
    g_autofree char *both = g_strdup_printf("%s %s", d0, d1);
    g_autofree char *dst_disk = qtest_path("dst.raw");
    g_autofree char *dst_both = g_strdup_printf("--drive id=disk0,file=%s,size=%" G_GUINT64_FORMAT
                                                ",create=on %s", dst_disk, 16 * MIB, d1);
    Migration m;

    qtest_disk_create(shared, 16 * MIB);
    qtest_disk_scatter(shared, 9, 4, 64 * KIB);
    qtest_disk_create(extra, 16 * MIB);

    start_migration(&m, both, d0, NULL);
    mf_expect_refused(&m, "the source has a drive 'disk1' that this destination lacks",
                   NULL);
    mf_free(&m);

    start_migration(&m, d0, both, NULL);
    mf_expect_refused(&m, "drive 'disk1' of this destination is not on the source "
                   "(which has: disk0)", NULL);
    mf_free(&m);

    start_migration(&m, d0, dst_both, "block");
    mf_expect_refused(&m, "drive 'disk1' of this destination is not on the source", NULL);
    mf_free(&m);
    unlink(dst_disk);
}

/* qemu-compat without `block` sends no check: the destination cannot
 * know its disk is the source's and does not start. */
static void test_compat_without_block(void)
{
    g_autofree char *disk = qtest_path("shared.raw");
    g_autofree char *opt = drive_opt("disk0", disk);
    Migration m;

    qtest_disk_create(disk, 16 * MIB);
    start_migration(&m, opt, opt, "qemu-compat");
    mf_expect_refused(&m, "drive 'disk0' got neither disk contents nor a storage check",
                   "enable the 'block' capability");
    mf_free(&m);
}

/* ---- the blkmig tool, bounded in time ---- */

/* ---- README's operator example ---- */

/* The blkmigd and blkmig commands in the indented blocks of README's
 * section HEADING (up to the next heading), continuation lines joined,
 * as argument vectors. */
static GPtrArray *readme_commands(const char *readme, const char *heading)
{
    g_auto(GStrv) lines = g_strsplit(readme, "\n", -1);
    GPtrArray *cmds = g_ptr_array_new_with_free_func((GDestroyNotify)g_strfreev);
    g_autoptr(GString) cmd = g_string_new("");
    char **l = lines;

    while (*l && strcmp(*l, heading)) {
        l++;
    }
    g_assert_nonnull(*l);
    for (l++; *l && (*l)[0] != '#'; l++) {
        char **argv = NULL;

        if (!g_str_has_prefix(*l, "    ") || (*l)[4] == '#') {
            continue;
        }
        g_string_append(cmd, *l + 4);
        if (g_str_has_suffix(cmd->str, "\\")) {
            g_string_truncate(cmd, cmd->len - 1);
            continue;
        }
        if (g_shell_parse_argv(cmd->str, NULL, &argv, NULL) &&
            (!strcmp(argv[0], "blkmigd") || !strcmp(argv[0], "blkmig"))) {
            g_ptr_array_add(cmds, g_steal_pointer(&argv));
        }
        g_strfreev(argv);
        g_string_truncate(cmd, 0);
    }
    return cmds;
}

/* URI (tcp:HOST:PORT) with port PORT, and HOST unless it is NULL. */
static char *with_port(const char *uri, const char *host, int port)
{
    g_auto(GStrv) parts = g_strsplit(uri, ":", 3);

    g_assert_cmpstr(parts[0], ==, "tcp");
    g_assert_nonnull(parts[1]);
    return g_strdup_printf("tcp:%s:%d", host ? host : parts[1], port);
}

/* A --drive VALUE with its file in the scratch directory; *FILE gets
 * that path, *SIZE the size given (unchanged without one). */
static char *drive_in_tmpdir(const char *value, char **file, uint64_t *size)
{
    g_auto(GStrv) opts = g_strsplit(value, ",", -1);

    for (char **o = opts; *o; o++) {
        if (g_str_has_prefix(*o, "file=")) {
            *file = qtest_path(*o + 5);
            g_free(*o);
            *o = g_strconcat("file=", *file, NULL);
        } else if (g_str_has_prefix(*o, "size=")) {
            g_assert_true(size_parse(*o + 5, size, NULL));
        }
    }
    return g_strjoinv(",", opts);
}

/* A README blkmigd command as libqtest arguments: without its --qmp
 * (libqtest adds one), files in the scratch directory, port PORT. */
static char *daemon_args(char **argv, int port, char **file, uint64_t *size)
{
    g_autoptr(GString) args = g_string_new("");

    for (char **a = argv + 1; *a; a++) {
        g_autofree char *value = NULL;

        if (!strcmp(*a, "--qmp") && a[1]) {
            a++;
            continue;
        }
        if (!strcmp(a[-1], "--drive")) {
            value = drive_in_tmpdir(*a, file, size);
        } else if (!strcmp(a[-1], "--incoming")) {
            value = with_port(*a, NULL, port);
        }
        g_string_append_printf(args, " %s", value ? value : *a);
    }
    return g_strdup(args->str);
}

static char *qmp_uri(QTestDaemon *d)
{
    return g_strconcat("unix:", qtest_daemon_qmp_path(d), NULL);
}

/* The README's blkmig command for these daemons and port (without the
 * program name). */
static GStrv migrate_args(char **argv, QTestDaemon *src, QTestDaemon *dst, int port)
{
    GPtrArray *out = g_ptr_array_new();

    g_assert_cmpstr(argv[1], ==, "migrate");
    for (char **a = argv + 1; *a; a++) {
        if (!strcmp(a[-1], "--src")) {
            g_ptr_array_add(out, qmp_uri(src));
        } else if (!strcmp(a[-1], "--dst")) {
            g_ptr_array_add(out, qmp_uri(dst));
        } else if (!strcmp(a[-1], "--uri")) {
            g_ptr_array_add(out, with_port(*a, "127.0.0.1", port));
        } else {
            g_ptr_array_add(out, g_strdup(*a));
        }
    }
    g_ptr_array_add(out, NULL);
    return (GStrv)g_ptr_array_free(out, FALSE);
}

/* README's "Start a destination and a source" and "Migrate" with the
 * blkmig client, as written there (scratch paths, a free port, and a
 * source disk full of data, as the README describes it): the migration
 * completes and both disks are identical. */
static void test_readme_example(void)
{
    g_autofree char *readme = NULL;
    g_autoptr(GPtrArray) daemons = NULL, migrate = NULL;
    g_autofree char *dst_args = NULL, *src_args = NULL;
    g_autofree char *out = NULL;
    g_auto(GStrv) margs = NULL;
    uint64_t size = 0, unused = 0;
    int port = qtest_free_port();
    Migration m = { 0 };
    QTestTool t;

    g_assert_true(g_file_get_contents("README.md", &readme, NULL, NULL));
    daemons = readme_commands(readme, "### Start a destination and a source");
    migrate = readme_commands(readme, "### Migrate");
    g_assert_cmpuint(daemons->len, ==, 2);
    g_assert_cmpuint(migrate->len, ==, 1);
    dst_args = daemon_args(daemons->pdata[0], port, &m.dst_disk, &size);
    src_args = daemon_args(daemons->pdata[1], port, &m.src_disk, &unused);
    mf_assert_contains(dst_args, "--incoming");
    g_assert_cmpuint(size, >, 0);
    qtest_disk_fill(m.src_disk, size, 1);
    unlink(m.dst_disk);     /* README's destination host has no disk yet */
    m.dst = qtest_daemon_start("readme-dst", "%s", dst_args);
    m.src = qtest_daemon_start("readme-src", "%s", src_args);
    margs = migrate_args(migrate->pdata[0], m.src, m.dst, port);
    t = qtest_tool_start("readme-blkmig.log", margs, README_TIMEOUT_S);
    g_assert_cmpint(qtest_tool_wait(&t), ==, 0);
    out = qtest_tool_output(&t);
    g_test_message("%s", out);
    mf_assert_contains(out, "destination:      completed, guest running");
    g_assert_true(qtest_files_equal(m.src_disk, m.dst_disk, NULL));
    mf_free(&m);
    qtest_tool_clear(&t);
}

/* ---- progress under a random writer ---- */

/* remaining never exceeds total in any query-migrate. */
static void sample_remaining(QTestDaemon *src, unsigned *samples)
{
    JsonNode *info = qtest_query_migrate(src);

    if (qtest_json_get(info, "disk.total")) {
        gint64 total = qtest_json_int(info, "disk.total");
        gint64 remaining = qtest_json_int(info, "disk.remaining");
        if (remaining > total) {
            g_error("remaining %" G_GINT64_FORMAT " > total %" G_GINT64_FORMAT, remaining,
                    total);
        }
        (*samples)++;
    }
    json_node_unref(info);
}

/* The client's progress lines so far: percent never goes back, what is
 * left is never more than the disk. */
static unsigned check_client_lines(const QTestTool *t, uint64_t total)
{
    g_autofree char *out = qtest_tool_output(t);
    g_auto(GStrv) lines = g_strsplit(out, "\n", -1);
    double last = 0;
    unsigned count = 0;

    for (char **l = lines; *l; l++) {
        double secs, percent, sent, left;
        char status[16];

        if (sscanf(*l, "migrate %lfs %15s %lf%% sent %lf MiB left %lf MiB", &secs, status,
                   &percent, &sent, &left) != 5) {
            continue;
        }
        if (percent < last) {
            g_error("percent went back from %.1f to %.1f: %s", last, percent, *l);
        }
        if (left > (double)total / MIB + 0.05) {
            g_error("%.1f MiB left of a %" G_GUINT64_FORMAT " MiB disk: %s", left, total / MIB,
                    *l);
        }
        last = percent;
        count++;
    }
    return count;
}

/* A 256 MiB disk full of data, written 4 KiB at random at 20 MiB/s while
 * it moves at 64 MiB/s: query-migrate polled every 25 ms and the blkmig
 * client's lines stay within bounds and move forward. */
static void test_progress_under_random_writer(void)
{
    const uint64_t size = 256 * MIB;
    Migration m = { .src_disk = qtest_path("a.raw"), .dst_disk = qtest_path("b.raw"),
                    .uri = qtest_tcp_uri() };
    g_autofree char *src_q = NULL, *dst_q = NULL;
    unsigned samples = 0;
    int status;
    QTestTool t;

    qtest_disk_fill(m.src_disk, size, 2);
    unlink(m.dst_disk);     /* an earlier case's disk: create=on makes a new one */
    m.dst = mf_start_dst(&m, "dst", size);
    m.src = mf_start_src(&m, "--workload drive=disk0,pattern=randwrite,bs=4k,rate=20,seed=3");
    src_q = qmp_uri(m.src);
    dst_q = qmp_uri(m.dst);
    t = qtest_tool_start("progress-blkmig.log", (char *[]){ "migrate", "--src", src_q,
                         "--dst", dst_q, "--uri", m.uri, "--zero-blocks", "--max-bandwidth",
                         "64M", NULL }, README_TIMEOUT_S);
    while (!qtest_tool_exited(&t, &status)) {
        sample_remaining(m.src, &samples);
        check_client_lines(&t, size);
        g_usleep(TOOL_POLL_US);
    }
    g_assert_cmpint(status, ==, 0);
    g_assert_cmpuint(check_client_lines(&t, size), >=, 4);
    g_test_message("%u query-migrate samples", samples);
    g_assert_cmpuint(samples, >=, 40);
    g_assert_true(qtest_files_equal(m.src_disk, m.dst_disk, NULL));
    mf_free(&m);
    qtest_tool_clear(&t);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/storage-check/different-disks", test_different_disks);
    g_test_add_func("/storage-check/shared-storage", test_shared_storage);
    g_test_add_func("/storage-check/different-sizes", test_different_sizes);
    g_test_add_func("/storage-check/sparse-source-empty-destination",
                    test_sparse_source_empty_destination);
    g_test_add_func("/storage-check/drive-on-one-side", test_drive_on_one_side);
    g_test_add_func("/storage-check/qemu-compat-without-block", test_compat_without_block);
    g_test_add_func("/storage-check/readme-example", test_readme_example);
    g_test_add_func("/storage-check/progress-under-random-writer",
                    test_progress_under_random_writer);
    return g_test_run();
}
