/* Operator safety of whole blkmigd daemons (issue 8): create=on never
 * wipes an image, overwrite=on is the explicit way to, start-up cleanup
 * removes only files blkmigd made, unix sockets are 0600 whatever the
 * umask, a daemon nothing could control refuses to start, and README's
 * destination command can be run again on a host that holds the disk. */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "migration-framework.h"

/* Start-ups that must fail do so at once; one that runs is killed then. */
#define RUN_TIMEOUT_MS 10000
/* How long a start-up that must go on is watched before it is killed. */
#define KEEPS_RUNNING_MS 3000

/* ---- helpers ---- */

/* PATH: SIZE bytes, sparse, with random data in a few runs (seed SEED). */
static void make_data_file(const char *path, uint64_t size, uint64_t seed)
{
    unlink(path);
    qtest_disk_create(path, size);
    g_assert_cmpuint(qtest_disk_scatter(path, seed, 16, 64 * 1024), >, 0);
}

/* "unix:<tmpdir>/NAME.qmp", so that a start-up can get past the QMP check. */
static char *qmp_uri(const char *name)
{
    g_autofree char *file = g_strdup_printf("%s.qmp", name);
    g_autofree char *path = qtest_path(file);
    return g_strconcat("unix:", path, NULL);
}

/* blkmigd --drive DRIVE --qmp ... [EXTRA EXTRA_VALUE]: exit code, output. */
static int run_drive(const char *drive, const char *extra, const char *extra_value,
                     char **out)
{
    g_autofree char *qmp = qmp_uri("run");
    return qtest_daemon_run(RUN_TIMEOUT_MS, out, "--drive", drive, "--qmp", qmp,
                            extra, extra_value, NULL);
}

static void assert_mode_0600(const char *path)
{
    struct stat st;
    g_assert_cmpint(lstat(path, &st), ==, 0);
    g_assert_true(S_ISSOCK(st.st_mode));
    g_test_message("%s: mode %04o", path, (unsigned)(st.st_mode & 07777));
    g_assert_cmpuint(st.st_mode & 07777, ==, 0600);
}

/* ---- create=on and overwrite=on ---- */

/* An image holding data, pointed at by create=on with a larger, the same
 * and a smaller size: refused, named, explained, and not one byte changed. */
static void test_create_refuses_data(void)
{
    g_autofree char *img = qtest_path("data.raw");
    g_autofree char *copy = qtest_path("data-copy.raw");
    const char *sizes[] = { "64M", "8M", "4M" };

    make_data_file(img, 8 * MIB, 1);
    qtest_disk_copy(img, copy);
    for (size_t i = 0; i < G_N_ELEMENTS(sizes); i++) {
        g_autofree char *drive = g_strdup_printf("id=d,file=%s,size=%s,create=on", img,
                                                 sizes[i]);
        g_autofree char *out = NULL;
        g_assert_cmpint(run_drive(drive, NULL, NULL, &out), ==, 1);
        mf_assert_contains(out, img);
        mf_assert_contains(out, "already exists");
        mf_assert_contains(out, "drop create=on");
        mf_assert_contains(out, "overwrite=on");
        g_assert_cmpuint(qtest_file_size(img), ==, 8 * MIB);
        mf_assert_identical(img, copy);
    }
    unlink(img);
    unlink(copy);
}

/* An existing empty file is grown to size=; it was not blkmigd's to remove. */
static void test_create_grows_empty(void)
{
    g_autofree char *img = qtest_path("empty.raw");
    g_assert_true(g_file_set_contents(img, "", 0, NULL));

    QTestDaemon *d = qtest_daemon_start("grow", "--drive id=d,file=%s,size=16M,create=on",
                                        img);
    g_assert_cmpuint(qtest_file_size(img), ==, 16 * MIB);
    g_assert_cmpuint(qtest_allocated_bytes(img), ==, 0);
    qtest_daemon_quit(d);
    g_assert_cmpuint(qtest_file_size(img), ==, 16 * MIB);
    unlink(img);
}

/* overwrite=on erases and recreates at size=; it needs create=on. */
static void test_overwrite(void)
{
    g_autofree char *img = qtest_path("over.raw");
    g_autofree char *copy = qtest_path("over-copy.raw");
    make_data_file(img, 8 * MIB, 2);
    qtest_disk_copy(img, copy);

    g_autofree char *out = NULL;
    g_autofree char *bad = g_strdup_printf("id=d,file=%s,overwrite=on", img);
    g_assert_cmpint(run_drive(bad, NULL, NULL, &out), ==, 64);
    mf_assert_contains(out, "overwrite=on needs create=on");
    mf_assert_identical(img, copy);

    QTestDaemon *d = qtest_daemon_start("over", "--drive id=d,file=%s,size=16M,create=on,"
                                        "overwrite=on", img);
    g_assert_cmpuint(qtest_file_size(img), ==, 16 * MIB);
    g_assert_cmpuint(qtest_disk_data_chunks(img), ==, 0);
    g_assert_cmpuint(qtest_allocated_bytes(img), ==, 0);
    qtest_daemon_quit(d);
    unlink(img);
    unlink(copy);
}

/* A size that does not match an image holding data: the hint must not be
 * create=on, which would now be refused (and overwrite=on would erase it). */
static void test_size_mismatch_hint(void)
{
    g_autofree char *img = qtest_path("mismatch.raw");
    make_data_file(img, 8 * MIB, 3);

    g_autofree char *drive = g_strdup_printf("id=d,file=%s,size=4M", img);
    g_autofree char *out = NULL;
    g_assert_cmpint(run_drive(drive, NULL, NULL, &out), ==, 1);
    mf_assert_contains(out, "drop size=");
    g_assert_null(strstr(out, "create=on"));
    g_assert_cmpuint(qtest_file_size(img), ==, 8 * MIB);
    unlink(img);
}

/* A start-up that fails after its drives removes the file it created, and
 * keeps the empty file it only grew. */
static void test_failed_start_cleanup(void)
{
    g_autofree char *made = qtest_path("made.raw");
    g_autofree char *grown = qtest_path("grown.raw");
    g_autofree char *nbd = qtest_path("no-such-dir/nbd.sock");
    g_autofree char *nbd_uri = g_strconcat("unix:", nbd, NULL);
    g_autofree char *qmp = qmp_uri("cleanup");
    unlink(made);
    g_assert_true(g_file_set_contents(grown, "", 0, NULL));

    g_autofree char *d1 = g_strdup_printf("id=a,file=%s,size=1M,create=on", made);
    g_autofree char *d2 = g_strdup_printf("id=b,file=%s,size=1M,create=on", grown);
    g_autofree char *out = NULL;
    int code = qtest_daemon_run(RUN_TIMEOUT_MS, &out, "--drive", d1, "--drive", d2,
                                "--nbd", nbd_uri, "--qmp", qmp, NULL);
    g_assert_cmpint(code, ==, 1);
    g_assert_false(g_file_test(made, G_FILE_TEST_EXISTS));
    g_assert_cmpuint(qtest_file_size(grown), ==, 1 * MIB);
    unlink(grown);
}

/* create=on through a symlink to a missing file is refused: the old code
 * created the target behind the link and a failed start-up then removed
 * the operator's symlink instead of the file it made. */
static void test_dangling_symlink(void)
{
    g_autofree char *link = qtest_path("link.raw");
    g_autofree char *target = qtest_path("target.raw");
    g_autofree char *nbd = qtest_path("no-such-dir/nbd.sock");
    g_autofree char *nbd_uri = g_strconcat("unix:", nbd, NULL);
    unlink(link);
    unlink(target);
    g_assert_cmpint(symlink(target, link), ==, 0);

    g_autofree char *drive = g_strdup_printf("id=d,file=%s,size=1M,create=on", link);
    g_autofree char *out = NULL;
    g_assert_cmpint(run_drive(drive, "--nbd", nbd_uri, &out), ==, 1);
    struct stat st;
    g_assert_cmpint(lstat(link, &st), ==, 0);
    g_assert_true(S_ISLNK(st.st_mode));
    g_assert_false(g_file_test(target, G_FILE_TEST_EXISTS));
    mf_assert_contains(out, "symbolic link");
    unlink(link);
}

/* ---- unix socket modes ---- */

/* Under umask 000 the QMP, NBD and incoming migration sockets (command
 * line and migrate-incoming) are still 0600. */
static void test_socket_modes(void)
{
    g_autofree char *img = qtest_path("modes.raw");
    g_autofree char *nbd = qtest_path("modes-nbd.sock");
    g_autofree char *in = qtest_path("modes-in.sock");
    g_autofree char *in2 = qtest_path("modes-in2.sock");
    unlink(img);

    mode_t old = umask(0);
    QTestDaemon *d = qtest_daemon_start("modes", "--drive id=d,file=%s,size=16M,create=on "
                                        "--nbd unix:%s --incoming unix:%s", img, nbd, in);
    QTestDaemon *d2 = qtest_daemon_start("modes2", "--incoming defer");
    umask(old);

    assert_mode_0600(qtest_daemon_qmp_path(d));
    assert_mode_0600(nbd);
    assert_mode_0600(in);
    json_node_unref(qtest_qmp_ok(d2, "{\"execute\": \"migrate-incoming\", \"arguments\": "
                                 "{\"uri\": \"unix:%s\"}}", in2));
    assert_mode_0600(in2);
    qtest_daemon_kill(d);
    qtest_daemon_kill(d2);
    unlink(img);
}

/* ---- a daemon nothing can control ---- */

static void test_needs_qmp(void)
{
    g_autofree char *out = NULL;
    g_assert_cmpint(qtest_daemon_run(RUN_TIMEOUT_MS, &out, NULL, NULL), ==, 64);
    mf_assert_contains(out, "--qmp");

    g_autofree char *sock = qtest_path("noqmp.sock");
    g_autofree char *nbd_uri = g_strconcat("unix:", sock, NULL);
    g_clear_pointer(&out, g_free);
    g_assert_cmpint(qtest_daemon_run(RUN_TIMEOUT_MS, &out, "--daemonize", "--nbd", nbd_uri,
                                     NULL), ==, 64);
    mf_assert_contains(out, "--daemonize needs --qmp");

    /* In the foreground with something to serve: runs, with a warning
     * (-1: still running when it was killed). */
    g_autofree char *img = qtest_path("noqmp.raw");
    g_autofree char *drive = g_strdup_printf("id=d,file=%s,size=1M,create=on", img);
    unlink(img);
    g_clear_pointer(&out, g_free);
    g_assert_cmpint(qtest_daemon_run(KEEPS_RUNNING_MS, &out, "--drive", drive, "--nbd",
                                     nbd_uri, NULL), ==, -1);
    mf_assert_contains(out, "warning: no --qmp");
    unlink(img);
    unlink(sock);
}

/* --help says what create=on, overwrite=on, sockets and exit codes do. */
static void test_help(void)
{
    g_autofree char *out = NULL;
    g_assert_cmpint(qtest_daemon_run(RUN_TIMEOUT_MS, &out, "--help", NULL), ==, 0);
    mf_assert_contains(out, "is empty (0 bytes)");
    mf_assert_contains(out, "blkmigd refuses to start");
    mf_assert_contains(out, "overwrite=on, only with");
    mf_assert_contains(out, "mode 0600");
    mf_assert_contains(out, "--qmp is needed");
    mf_assert_contains(out, "64 when the command");
}

/* ---- README's destination command, run twice ---- */

/* Migrate SRC_IMG into a destination started with DST_DRIVE; both sides
 * complete, both daemons quit cleanly and the disks are identical. */
static void migrate_into(const char *src_img, const char *dst_img, const char *dst_drive)
{
    Migration m = { 0 };
    g_autofree char *src_args = g_strdup_printf("--drive id=disk0,file=%s", src_img);
    g_autofree char *dst_args = g_strdup_printf("--drive %s", dst_drive);

    mf_start_daemons(&m, src_args, dst_args);
    qtest_set_caps(m.src, "block", "zero-blocks", NULL);
    qtest_migrate_start(m.src, m.uri);
    json_node_unref(mf_wait_completed(&m));
    mf_quit(&m);
    mf_free(&m);
    mf_assert_identical(src_img, dst_img);
}

/* The second run of the same command leaves the migrated disk alone and
 * says what to do; without create=on the disk takes a new migration
 * whole (stale data where the new source has holes included). */
static void test_readme_destination_twice(void)
{
    g_autofree char *src = qtest_path("readme-src.raw");
    g_autofree char *src2 = qtest_path("readme-src2.raw");
    g_autofree char *dst = qtest_path("readme-dst.raw");
    unlink(dst);
    make_data_file(src, 32 * MIB, 4);
    make_data_file(src2, 32 * MIB, 5);
    g_autofree char *create = g_strdup_printf("id=disk0,file=%s,size=32M,create=on", dst);
    migrate_into(src, dst, create);

    g_autofree char *uri = qtest_tcp_uri();
    g_autofree char *out = NULL;
    g_assert_cmpint(run_drive(create, "--incoming", uri, &out), ==, 1);
    mf_assert_contains(out, "drop create=on");
    mf_assert_identical(src, dst);

    g_autofree char *reuse = g_strdup_printf("id=disk0,file=%s,size=32M", dst);
    migrate_into(src2, dst, reuse);
    unlink(src);
    unlink(src2);
    unlink(dst);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/safety/create/refuses-data", test_create_refuses_data);
    g_test_add_func("/safety/create/grows-empty", test_create_grows_empty);
    g_test_add_func("/safety/create/overwrite", test_overwrite);
    g_test_add_func("/safety/create/size-mismatch-hint", test_size_mismatch_hint);
    g_test_add_func("/safety/create/failed-start-cleanup", test_failed_start_cleanup);
    g_test_add_func("/safety/create/dangling-symlink", test_dangling_symlink);
    g_test_add_func("/safety/sockets/mode-0600", test_socket_modes);
    g_test_add_func("/safety/cmdline/needs-qmp", test_needs_qmp);
    g_test_add_func("/safety/cmdline/help", test_help);
    g_test_add_func("/safety/readme/destination-twice", test_readme_destination_twice);
    return g_test_run();
}
