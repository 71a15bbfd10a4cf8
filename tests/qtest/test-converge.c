/* Every migration finishes or says why (issue 12): a 512 MiB disk whose
 * guest writes 4 KiB blocks at random as fast as it can, over a link of
 * 32 MiB/s.  In background mode the migration cannot converge and
 * progress-timeout ends it with a reason; write-blocking mode, switched
 * on at the start, in the middle, or by timeout-action, and auto-converge
 * each finish it with identical disks and a short downtime; a guest at
 * 50 MiB/s still converges in background mode at the default bandwidth.
 * query-migrate shows the passes and the guest's dirty rate, and the
 * events capability announces each pass (MIGRATION_PASS). */
#include <string.h>

#include "migration-framework.h"

#define DISK_SIZE (512 * MIB)
#define LINK "33554432"                 /* max-bandwidth: 32 MiB/s */
#define FAST_GUEST "--workload drive=" MF_DRIVE_ID ",pattern=randwrite,bs=4k,rate=0,seed=12"
/* Long enough for a slow, shared machine; a migration that never
 * converges fails here, saying where it got. */
#define FINISH_TIMEOUT_S 150

/* A source with some data, its guest GUEST, a destination waiting, the
 * block capabilities and the 32 MiB/s link. */
static void start(Migration *m, const char *guest)
{
    mf_make_src_disk(m, DISK_SIZE, 31, 64, MIB);
    mf_start_pair(m, DISK_SIZE, guest);
    qtest_set_caps(m->src, "block", "zero-blocks", "events", NULL);
    qtest_set_params(m->src, "\"max-bandwidth\": " LINK);
}

/* Both sides ended; the source completed (the test fails otherwise,
 * with the error), the destination runs the guest, the disks are the
 * same and the downtime stayed under the limit.  Returns the source's
 * query-migrate (unref). */
static JsonNode *finish_completed(Migration *m)
{
    MfOutcome src, dst;
    JsonNode *info;

    mf_wait_both_ended(m, FINISH_TIMEOUT_S, &src, &dst);
    if (strcmp(src.status, "completed") != 0) {
        g_error("source %s after %.1f s: %s", src.status, src.seconds, src.error_desc);
    }
    g_assert_cmpstr(dst.status, ==, "completed");
    mf_outcome_clear(&src);
    mf_outcome_clear(&dst);
    qtest_wait_runstate(m->dst, "running", MF_STATE_TIMEOUT_MS);
    mf_assert_runstate(m->src, "postmigrate");
    info = qtest_query_migrate(m->src);
    mf_log_json("source", info);
    g_assert_cmpint(qtest_json_int(info, "downtime"), <, 300);
    mf_assert_identical(m->src_disk, m->dst_disk);
    return info;
}

/* The MIGRATION_PASS events so far, which must count up from 1. */
static unsigned count_passes(QTestDaemon *d)
{
    unsigned passes = 0;
    JsonNode *ev;

    while ((ev = qtest_event_wait(d, "MIGRATION_PASS", 200))) {
        g_assert_cmpint(qtest_json_int(ev, "data.pass"), ==, passes + 1);
        passes++;
        json_node_unref(ev);
    }
    return passes;
}

static void test_parameters(void)
{
    Migration m = { 0 };
    g_autofree char *desc = NULL;
    JsonNode *p;

    mf_make_src_disk(&m, 16 * MIB, 1, 1, MIB);
    m.src = mf_start_src(&m, "");
    p = qtest_qmp_ok(m.src, "{\"execute\": \"query-migrate-parameters\"}");
    g_assert_cmpstr(qtest_json_str(p, "block-copy-mode"), ==, "background");
    g_assert_cmpstr(qtest_json_str(p, "timeout-action"), ==, "cancel");
    g_assert_cmpint(qtest_json_int(p, "progress-timeout"), ==, 0);
    g_assert_cmpint(qtest_json_int(p, "completion-timeout"), ==, 0);
    g_assert_cmpint(qtest_json_int(p, "cpu-throttle-initial"), ==, 20);
    g_assert_cmpint(qtest_json_int(p, "cpu-throttle-increment"), ==, 10);
    g_assert_cmpint(qtest_json_int(p, "max-cpu-throttle"), ==, 99);
    g_assert_cmpint(qtest_json_int(p, "throttle-trigger-threshold"), ==, 50);
    json_node_unref(p);

    qtest_set_params(m.src, "\"block-copy-mode\": \"write-blocking\", \"progress-timeout\": 7, "
                     "\"timeout-action\": \"write-blocking\", \"cpu-throttle-initial\": 30");
    p = qtest_qmp_ok(m.src, "{\"execute\": \"query-migrate-parameters\"}");
    g_assert_cmpstr(qtest_json_str(p, "block-copy-mode"), ==, "write-blocking");
    g_assert_cmpstr(qtest_json_str(p, "timeout-action"), ==, "write-blocking");
    g_assert_cmpint(qtest_json_int(p, "progress-timeout"), ==, 7);
    g_assert_cmpint(qtest_json_int(p, "cpu-throttle-initial"), ==, 30);
    json_node_unref(p);

    /* Bad values change nothing, and say what is expected. */
    g_free(qtest_qmp_error(m.src, &desc, "{\"execute\": \"migrate-set-parameters\", "
                           "\"arguments\": {\"block-copy-mode\": \"fast\", "
                           "\"progress-timeout\": 9}}"));
    mf_assert_contains(desc, "'block-copy-mode' expects 'background' or 'write-blocking'");
    g_clear_pointer(&desc, g_free);
    g_free(qtest_qmp_error(m.src, &desc, "{\"execute\": \"migrate-set-parameters\", "
                           "\"arguments\": {\"max-cpu-throttle\": 100}}"));
    mf_assert_contains(desc, "'max-cpu-throttle' expects an integer in the range of 1 to 99");
    g_clear_pointer(&desc, g_free);
    g_free(qtest_qmp_error(m.src, &desc, "{\"execute\": \"migrate-set-parameters\", "
                           "\"arguments\": {\"timeout-action\": \"pause\"}}"));
    mf_assert_contains(desc, "'timeout-action' expects 'cancel' or 'write-blocking'");
    p = qtest_qmp_ok(m.src, "{\"execute\": \"query-migrate-parameters\"}");
    g_assert_cmpint(qtest_json_int(p, "progress-timeout"), ==, 7);
    json_node_unref(p);
    mf_free(&m);
}

/* Background mode cannot keep up: progress-timeout ends it within
 * seconds, saying why and with the figures; the source guest runs on. */
static void test_progress_timeout(void)
{
    Migration m = { 0 };
    MfOutcome src, dst;

    start(&m, FAST_GUEST);
    qtest_set_params(m.src, "\"progress-timeout\": 5");
    qtest_migrate_start(m.src, m.uri);
    mf_wait_both_ended(&m, 60, &src, &dst);
    g_test_message("source: %s after %.1f s: %s", src.status, src.seconds, src.error_desc);
    g_assert_cmpstr(src.status, ==, "failed");
    g_assert_cmpfloat(src.seconds, <, 15);
    mf_assert_contains(src.error_desc, "made no progress for 5 s (progress-timeout)");
    mf_assert_contains(src.error_desc, "MiB left of 512.0 MiB, the guest writes");
    g_assert_cmpstr(dst.status, ==, "failed");
    mf_assert_contains(dst.error_desc, "the source cancelled the migration");
    mf_assert_runstate(m.src, "running");
    mf_assert_runstate(m.dst, "inmigrate");
    mf_outcome_clear(&src);
    mf_outcome_clear(&dst);
    mf_free(&m);
}

/* The same guest, write-blocking from the start: it finishes.  While it
 * runs, query-migrate shows the pass and the guest's dirty rate. */
static void test_write_blocking(void)
{
    Migration m = { 0 };
    JsonNode *info;

    start(&m, FAST_GUEST);
    qtest_set_params(m.src, "\"block-copy-mode\": \"write-blocking\"");
    qtest_migrate_start(m.src, m.uri);
    g_usleep(2 * G_USEC_PER_SEC);
    info = qtest_query_migrate(m.src);
    mf_log_json("after 2 s", info);
    if (!strcmp(qtest_json_str(info, "status"), "active")) {
        g_assert_cmpint(qtest_json_int(info, "disk.pass"), >=, 1);
        g_assert_cmpint(qtest_json_int(info, "disk.dirty-rate"), >, 0);
    }
    json_node_unref(info);
    info = finish_completed(&m);
    g_assert_cmpint(qtest_json_int(info, "disk.pass"), >=, 2);
    g_assert_cmpuint(count_passes(m.src), ==, qtest_json_int(info, "disk.pass"));
    json_node_unref(info);
    mf_free(&m);
}

/* Background first; write-blocking switched on while the migration
 * runs, after the guest dirtied much of what was copied. */
static void test_switch_to_write_blocking(void)
{
    Migration m = { 0 };
    JsonNode *info;

    start(&m, FAST_GUEST);
    qtest_migrate_start(m.src, m.uri);
    g_usleep(3 * G_USEC_PER_SEC);
    info = qtest_query_migrate(m.src);
    g_assert_cmpstr(qtest_json_str(info, "status"), ==, "active");
    json_node_unref(info);
    qtest_set_params(m.src, "\"block-copy-mode\": \"write-blocking\"");
    json_node_unref(finish_completed(&m));
    mf_free(&m);
}

/* timeout-action write-blocking: the stall switches the mode, and the
 * migration finishes instead of failing. */
static void test_timeout_switches(void)
{
    Migration m = { 0 };
    JsonNode *p;

    start(&m, FAST_GUEST);
    qtest_set_params(m.src, "\"progress-timeout\": 3, \"timeout-action\": \"write-blocking\"");
    qtest_migrate_start(m.src, m.uri);
    json_node_unref(finish_completed(&m));
    p = qtest_qmp_ok(m.src, "{\"execute\": \"query-migrate-parameters\"}");
    g_assert_cmpstr(qtest_json_str(p, "block-copy-mode"), ==, "write-blocking");
    json_node_unref(p);
    g_autofree char *log = qtest_daemon_log_tail(m.src);
    mf_assert_contains(log, "progress-timeout ran out");
    mf_free(&m);
}

/* completion-timeout, action cancel: fails at the deadline, naming it. */
static void test_completion_timeout(void)
{
    Migration m = { 0 };
    MfOutcome src, dst;

    start(&m, FAST_GUEST);
    qtest_set_params(m.src, "\"completion-timeout\": 2");
    qtest_migrate_start(m.src, m.uri);
    mf_wait_both_ended(&m, 60, &src, &dst);
    g_assert_cmpstr(src.status, ==, "failed");
    mf_assert_contains(src.error_desc, "did not complete within 2 s (completion-timeout)");
    g_assert_cmpfloat(src.seconds, <, 10);
    mf_assert_runstate(m.src, "running");
    mf_outcome_clear(&src);
    mf_outcome_clear(&dst);
    mf_free(&m);
}

/* auto-converge throttles the guest (query-migrate shows by how much
 * while it runs) until the migration finishes; then it is lifted. */
static void test_auto_converge(void)
{
    Migration m = { 0 };
    gint64 most = 0;
    JsonNode *info;

    start(&m, FAST_GUEST);
    qtest_set_caps(m.src, "auto-converge", NULL);
    qtest_set_params(m.src, "\"cpu-throttle-initial\": 50, \"cpu-throttle-increment\": 25");
    qtest_migrate_start(m.src, m.uri);
    for (;;) {
        info = qtest_query_migrate(m.src);
        const char *status = qtest_json_str(info, "status");
        bool active = g_str_equal(status, "setup") || g_str_equal(status, "active");
        if (qtest_json_get(info, "cpu-throttle-percentage")) {
            most = MAX(most, qtest_json_int(info, "cpu-throttle-percentage"));
        }
        json_node_unref(info);
        if (!active) {
            break;
        }
        g_usleep(200 * 1000);
    }
    g_test_message("highest throttle seen: %" G_GINT64_FORMAT "%%", most);
    g_assert_cmpint(most, >=, 50);
    info = finish_completed(&m);
    g_assert_null(qtest_json_get(info, "cpu-throttle-percentage"));
    json_node_unref(info);
    g_autofree char *log = qtest_daemon_log_tail(m.src);
    mf_assert_contains(log, "auto-converge: guest writes throttled");
    mf_free(&m);
}

/* No regression: a disk full of data, a guest at 50 MiB/s, background
 * mode at the default bandwidth converges as before, and the figures
 * say so (the guest's rate, at least one dirty pass). */
static void test_background_converges(void)
{
    Migration m = { 0 };
    JsonNode *info;
    gint64 rate;

    m.src_disk = qtest_path("src.raw");
    m.dst_disk = qtest_path("dst.raw");
    qtest_disk_fill(m.src_disk, DISK_SIZE, 5);
    mf_start_pair(&m, DISK_SIZE, "--workload drive=" MF_DRIVE_ID ",pattern=randwrite,bs=4k,"
                                 "rate=50,seed=4");
    qtest_set_caps(m.src, "block", "zero-blocks", "events", NULL);
    qtest_migrate_start(m.src, m.uri);
    info = finish_completed(&m);
    g_assert_cmpint(qtest_json_int(info, "disk.pass"), >=, 2);
    rate = qtest_json_int(info, "disk.dirty-rate");
    g_test_message("dirty rate %.1f MiB/s", rate / (double)MIB);
    g_assert_cmpint(rate, >, 5 * MIB);
    g_assert_cmpint(rate, <, 60 * MIB);
    g_assert_cmpuint(count_passes(m.src), ==, qtest_json_int(info, "disk.pass"));
    json_node_unref(info);
    mf_free(&m);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_tmpdir();
    g_test_add_func("/converge/parameters", test_parameters);
    g_test_add_func("/converge/progress-timeout", test_progress_timeout);
    g_test_add_func("/converge/completion-timeout", test_completion_timeout);
    g_test_add_func("/converge/write-blocking", test_write_blocking);
    g_test_add_func("/converge/switch-to-write-blocking", test_switch_to_write_blocking);
    g_test_add_func("/converge/timeout-switches", test_timeout_switches);
    g_test_add_func("/converge/auto-converge", test_auto_converge);
    g_test_add_func("/converge/background-converges", test_background_converges);
    return g_test_run();
}
