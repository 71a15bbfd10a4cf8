/* The switchover's fixed costs count in its expected downtime (issue
 * 12): the destination's final flush comes after the last byte, however
 * little is left to send.  The destination's drive is on NBD, served by
 * nbdkit's sh plugin over a file, and every flush there takes 0.4 s, as
 * on a slow filer.  With the default downtime-limit of 300 ms the source
 * must not stop its guest (an estimate that only counts the bytes left
 * stops it and takes twice the limit); query-migrate's expected-downtime
 * shows the flush; once downtime-limit allows it the migration finishes
 * within it. */
#include <string.h>

#include "migration-framework.h"

#define DISK_SIZE (32 * MIB)
#define FLUSH_CMD "sleep 0.4"
#define FLUSH_MS 400
#define ENOUGH_MS 2000

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
    script = qtest_nbdkit_sh_script("slow-flush.sh", m.dst_disk, FLUSH_CMD);
    nbdkit = qtest_nbdkit_start(script, sock);
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
    qtest_nbdkit_stop(nbdkit);
    mf_free(&m);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_tmpdir();
    g_test_add_func("/downtime/slow-flush", test_slow_flush);
    return g_test_run();
}
