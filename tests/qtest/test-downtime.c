/* The switchover's fixed costs count in its expected downtime (issue
 * 12): the destination's final flush comes after the last byte, however
 * little is left to send.  The destination's drive is on NBD, served by
 * nbdkit's sh plugin over a file, and every flush there takes 0.4 s, as
 * on a slow filer.  With the default downtime-limit of 300 ms the source
 * must not stop its guest (an estimate that only counts the bytes left
 * stops it and takes twice the limit); query-migrate's expected-downtime
 * shows the flush; once downtime-limit allows it the migration finishes
 * within it. */
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "migration-framework.h"

#define DISK_SIZE (32 * MIB)
#define FLUSH_S "0.4"
#define FLUSH_MS 400
#define ENOUGH_MS 2000

/* The plugin: pread and pwrite on DISK with dd, a flush that sleeps. */
static char *write_plugin(const char *disk)
{
    char *script = qtest_path("slow-flush.sh");
    g_autofree char *text = g_strdup_printf(
        "#!/bin/sh\n"
        "disk='%s'\n"
        "case \"$1\" in\n"
        "get_size) stat -L -c %%s \"$disk\" ;;\n"
        "pread) dd if=\"$disk\" skip=\"$4\" count=\"$3\" iflag=skip_bytes,count_bytes "
        "status=none ;;\n"
        "pwrite) dd of=\"$disk\" seek=\"$4\" oflag=seek_bytes conv=notrunc status=none ;;\n"
        "can_write|can_flush) exit 0 ;;\n"
        "flush) sleep " FLUSH_S " ;;\n"
        "*) exit 2 ;;\n"
        "esac\n", disk);

    g_assert_true(g_file_set_contents(script, text, -1, NULL));
    g_assert_cmpint(g_chmod(script, 0755), ==, 0);
    return script;
}

/* nbdkit serving the plugin on SOCK, in the foreground and gone with
 * this test; its pid, once it listens (when it writes its pidfile). */
static GPid start_nbdkit(const char *script, const char *sock)
{
    g_autofree char *pidfile = qtest_path("nbdkit.pid");
    char *argv[] = { "nbdkit", "-f", "--exit-with-parent", "-U", (char *)sock, "-P", pidfile,
                     "sh", (char *)script, NULL };
    GPid pid;

    unlink(sock);
    unlink(pidfile);
    g_assert_true(g_spawn_async(NULL, argv, NULL,
                                G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD |
                                G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, &pid, NULL));
    for (int i = 0; i < 200 && !g_file_test(pidfile, G_FILE_TEST_EXISTS); i++) {
        g_usleep(MF_POLL_US);
    }
    g_assert_true(g_file_test(pidfile, G_FILE_TEST_EXISTS));
    return pid;
}

static void stop_nbdkit(GPid pid)
{
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    g_spawn_close_pid(pid);
}

/* The source's migration is still under way (the test fails otherwise,
 * saying how it ended); its expected-downtime (0 while there is none). */
static gint64 still_active(QTestDaemon *src)
{
    JsonNode *info = qtest_query_migrate(src);
    const char *status = qtest_json_str(info, "status");
    gint64 expected = qtest_json_get(info, "expected-downtime")
                      ? qtest_json_int(info, "expected-downtime") : 0;

    if (!g_str_equal(status, "setup") && !g_str_equal(status, "active")) {
        mf_log_json("source", info);
        g_error("the migration ended (%s, downtime %" G_GINT64_FORMAT " ms) although the "
                "destination's flush alone takes longer than downtime-limit", status,
                qtest_json_int(info, "downtime"));
    }
    json_node_unref(info);
    return expected;
}

/* Until the source's expected-downtime is at least MS and its log says
 * that it waits for the fixed costs, with the migration under way all
 * along; returns that figure. */
static gint64 wait_while_too_long(QTestDaemon *src, gint64 ms)
{
    gint64 expected = 0;

    for (int i = 0; i < 400; i++) {
        g_autofree char *log = qtest_daemon_log_tail(src);

        expected = still_active(src);
        if (expected >= ms && strstr(log, "fixed costs alone")) {
            return expected;
        }
        g_usleep(MF_POLL_US);
    }
    g_error("expected-downtime %" G_GINT64_FORMAT " ms, never %" G_GINT64_FORMAT " ms with "
            "a word in the log", expected, ms);
}

static void test_slow_flush(void)
{
    Migration m = { 0 };
    g_autofree char *sock = qtest_path("slow.sock");
    g_autofree char *script = NULL, *dst_args = NULL;
    gint64 expected;
    JsonNode *info;
    GPid nbdkit;

    if (!qtest_have_program("nbdkit")) {
        g_test_skip("nbdkit is not installed");
        return;
    }
    mf_make_src_disk(&m, DISK_SIZE, 23, 8, 2 * MIB);
    qtest_disk_create(m.dst_disk, DISK_SIZE);
    script = write_plugin(m.dst_disk);
    nbdkit = start_nbdkit(script, sock);
    dst_args = g_strdup_printf("--drive id=" MF_DRIVE_ID ",format=raw,"
                               "file=nbd+unix:///?socket=%s", sock);
    m.uri = qtest_tcp_uri();
    m.dst = qtest_daemon_start("dst", "%s --incoming %s", dst_args, m.uri);
    m.src = mf_start_src(&m, "");
    qtest_set_caps(m.src, "block", "zero-blocks", "events", "return-path", NULL);
    qtest_migrate_start(m.src, m.uri);

    /* The default limit: it waits, and says why. */
    expected = wait_while_too_long(m.src, FLUSH_MS);
    g_test_message("expected downtime %" G_GINT64_FORMAT " ms", expected);
    g_usleep(G_USEC_PER_SEC);
    still_active(m.src);

    /* A limit the flush fits in: it finishes within it. */
    qtest_set_params(m.src, "\"downtime-limit\": %d", ENOUGH_MS);
    info = mf_wait_completed(&m);
    mf_log_json("source", info);
    g_assert_cmpint(qtest_json_int(info, "downtime"), >=, FLUSH_MS);
    g_assert_cmpint(qtest_json_int(info, "downtime"), <, ENOUGH_MS);
    json_node_unref(info);
    mf_quit(&m);
    mf_assert_identical(m.src_disk, m.dst_disk);
    stop_nbdkit(nbdkit);
    mf_free(&m);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_tmpdir();
    g_test_add_func("/downtime/slow-flush", test_slow_flush);
    return g_test_run();
}
