/* blkmig migrate as an operator's tool (issue 12): --json lines a
 * machine can read, the copy mode and limits it sets (the completion
 * timeout scaled by the disks' size), and an exit code for each outcome:
 * 0 completed, 1 failed (a timeout too), 2 cancelled (Ctrl-C), 64 usage. */
#include <signal.h>
#include <string.h>

#include "migration-framework.h"

#define TOOL_TIMEOUT_S 120
#define FAST_GUEST "--workload drive=" MF_DRIVE_ID ",pattern=randwrite,bs=4k,rate=0,seed=21"

/* Daemons over a disk of SIZE with some data and the guest GUEST. */
static void start(Migration *m, uint64_t size, const char *guest)
{
    mf_make_src_disk(m, size, 41, 16, MIB);
    mf_start_pair(m, size, guest);
}

/* Run blkmig migrate from M's source to its destination with EXTRA
 * options (NULL-terminated array); returns the exit code, *OUT (caller
 * frees) gets stdout. */
static int migrate(Migration *m, const char *log, char **extra, char **out)
{
    g_autofree char *src = qtest_daemon_qmp_uri(m->src), *dst = qtest_daemon_qmp_uri(m->dst);
    g_autoptr(GPtrArray) args = g_ptr_array_new();
    QTestTool t;
    int status;

    g_ptr_array_add(args, "migrate");
    g_ptr_array_add(args, "--src");
    g_ptr_array_add(args, src);
    g_ptr_array_add(args, "--dst");
    g_ptr_array_add(args, dst);
    g_ptr_array_add(args, "--uri");
    g_ptr_array_add(args, m->uri);
    for (char **e = extra; *e; e++) {
        g_ptr_array_add(args, *e);
    }
    g_ptr_array_add(args, NULL);
    t = qtest_tool_start(log, (char **)args->pdata, TOOL_TIMEOUT_S);
    status = qtest_tool_wait(&t);
    *out = qtest_tool_output(&t);
    g_test_message("blkmig migrate: exit %d, last line: %s", status, strrchr(*out, '{') ?: *out);
    qtest_tool_clear(&t);
    return status;
}

/* Every line of OUT is a JSON object; returns them (unref). */
static GPtrArray *json_lines(const char *out)
{
    g_auto(GStrv) lines = g_strsplit(out, "\n", -1);
    GPtrArray *objs = g_ptr_array_new_with_free_func((GDestroyNotify)json_node_unref);

    for (char **l = lines; *l; l++) {
        GError *err = NULL;
        JsonNode *node;

        if (!**l) {
            continue;
        }
        node = json_from_string(*l, &err);
        if (!node || !JSON_NODE_HOLDS_OBJECT(node)) {
            g_error("not a JSON object line: '%s' (%s)", *l, err ? err->message : "");
        }
        g_ptr_array_add(objs, node);
    }
    g_assert_cmpuint(objs->len, >=, 2);
    return objs;
}

static const char *line_type(GPtrArray *lines, guint i)
{
    return qtest_json_str(lines->pdata[i], "type");
}

/* A progress line carries the figures an operator watches. */
static void assert_progress_line(JsonNode *p, uint64_t total)
{
    static const char *const members[] = { "time", "status", "percent", "remaining",
                                           "transferred", "rate", "dirty-rate", "pass", "eta" };

    for (size_t i = 0; i < G_N_ELEMENTS(members); i++) {
        g_assert_nonnull(qtest_json_get(p, members[i]));
    }
    /* While the migration is still in setup nothing is sized yet. */
    if (g_str_equal(qtest_json_str(p, "status"), "setup")) {
        g_assert_cmpint(qtest_json_int(p, "total"), <=, total);
    } else {
        g_assert_cmpint(qtest_json_int(p, "total"), ==, total);
    }
    g_assert_cmpint(qtest_json_int(p, "remaining"), <=, total);
}

static void test_json_completed(void)
{
    Migration m = { 0 };
    g_autofree char *out = NULL;
    g_autoptr(GPtrArray) lines = NULL;
    JsonNode *result, *p;

    start(&m, 64 * MIB, "--workload drive=" MF_DRIVE_ID ",rate=10,seed=2");
    g_assert_cmpint(migrate(&m, "json.log", (char *[]){ "--json", "--zero-blocks",
                            "--bandwidth", "16M", "--downtime", "400", "--copy-mode",
                            "write-blocking", NULL }, &out), ==, 0);
    lines = json_lines(out);
    for (guint i = 0; i + 1 < lines->len; i++) {
        g_assert_cmpstr(line_type(lines, i), ==, "progress");
        assert_progress_line(lines->pdata[i], 64 * MIB);
    }
    result = lines->pdata[lines->len - 1];
    g_assert_cmpstr(qtest_json_str(result, "type"), ==, "result");
    g_assert_cmpstr(qtest_json_str(result, "status"), ==, "completed");
    g_assert_cmpint(qtest_json_int(result, "exit"), ==, 0);
    g_assert_cmpstr(qtest_json_str(result, "destination"), ==, "completed, guest running");
    g_assert_cmpstr(qtest_json_str(result, "query-migrate.status"), ==, "completed");
    mf_assert_identical(m.src_disk, m.dst_disk);
    p = qtest_qmp_ok(m.src, "{\"execute\": \"query-migrate-parameters\"}");
    g_assert_cmpint(qtest_json_int(p, "max-bandwidth"), ==, 16 * MIB);
    g_assert_cmpint(qtest_json_int(p, "downtime-limit"), ==, 400);
    g_assert_cmpstr(qtest_json_str(p, "block-copy-mode"), ==, "write-blocking");
    json_node_unref(p);
    mf_free(&m);
}

/* A small disk migrates in a fraction of a progress interval (500 ms):
 * the command returns soon after the source completes, not at the next
 * progress line (it did: at least 500 ms after migrate). */
static void test_returns_promptly(void)
{
    Migration m = { 0 };
    g_autofree char *out = NULL;

    start(&m, 4 * MIB, "");
    gint64 t0 = g_get_monotonic_time();
    g_assert_cmpint(migrate(&m, "prompt.log", (char *[]){ "--bandwidth", "0", NULL }, &out), ==, 0);
    gint64 wall_ms = (g_get_monotonic_time() - t0) / 1000;
    JsonNode *info = qtest_qmp_ok(m.src, "{\"execute\": \"query-migrate\"}");
    gint64 total_ms = qtest_json_int(info, "total-time");
    json_node_unref(info);
    g_test_message("blkmig migrate took %" G_GINT64_FORMAT " ms, the migration %" G_GINT64_FORMAT
                   " ms", wall_ms, total_ms);
    g_assert_cmpint(wall_ms - total_ms, <, 350);
    mf_free(&m);
}

/* A guest faster than the link: --progress-timeout fails the migration,
 * exit 1 with the reason; --on-timeout write-blocking finishes it. */
static void test_timeouts(void)
{
    Migration m = { 0 };
    g_autofree char *out = NULL;
    g_autoptr(GPtrArray) lines = NULL;
    JsonNode *result;

    start(&m, 256 * MIB, FAST_GUEST);
    g_assert_cmpint(migrate(&m, "stall.log", (char *[]){ "--json", "--bandwidth", "16M",
                            "--progress-timeout", "3", NULL }, &out), ==, 1);
    lines = json_lines(out);
    result = lines->pdata[lines->len - 1];
    g_assert_cmpstr(qtest_json_str(result, "status"), ==, "failed");
    g_assert_cmpint(qtest_json_int(result, "exit"), ==, 1);
    mf_assert_contains(qtest_json_str(result, "error"), "(progress-timeout)");
    mf_assert_runstate(m.src, "running");
    g_clear_pointer(&out, g_free);

    json_node_unref(qtest_migrate_wait_status(m.dst, "failed", MF_STATE_TIMEOUT_MS));
    g_assert_cmpint(migrate(&m, "switch.log", (char *[]){ "--bandwidth", "16M",
                            "--progress-timeout", "3", "--on-timeout", "write-blocking", NULL },
                            &out), ==, 0);
    mf_assert_contains(out, "status:           completed");
    mf_assert_contains(out, "destination:      completed, guest running");
    mf_assert_identical(m.src_disk, m.dst_disk);
    mf_free(&m);
}

/* KubeVirt's completion policy: 4 s per GiB of a 512 MiB disk is 2 s. */
static void test_completion_per_gib(void)
{
    Migration m = { 0 };
    g_autofree char *out = NULL;
    JsonNode *p;

    start(&m, 512 * MIB, FAST_GUEST);
    g_assert_cmpint(migrate(&m, "per-gib.log", (char *[]){ "--bandwidth", "16M",
                            "--completion-timeout-per-gib", "4", NULL }, &out), ==, 1);
    mf_assert_contains(out, "status:           failed");
    mf_assert_contains(out, "did not complete within 2 s (completion-timeout)");
    p = qtest_qmp_ok(m.src, "{\"execute\": \"query-migrate-parameters\"}");
    g_assert_cmpint(qtest_json_int(p, "completion-timeout"), ==, 2);
    json_node_unref(p);
    mf_free(&m);
}

/* Ctrl-C cancels: exit 2, the source guest runs on, the destination
 * fails cleanly and waits for the next try. */
static void test_interrupt(void)
{
    Migration m = { 0 };
    g_autofree char *src = NULL, *dst = NULL, *out = NULL;
    QTestTool t;
    JsonNode *info;

    start(&m, 256 * MIB, FAST_GUEST);
    src = qtest_daemon_qmp_uri(m.src);
    dst = qtest_daemon_qmp_uri(m.dst);
    t = qtest_tool_start("interrupt.log", (char *[]){ "migrate", "--src", src, "--dst", dst,
                         "--uri", m.uri, "--bandwidth", "16M", NULL }, TOOL_TIMEOUT_S);
    json_node_unref(qtest_migrate_wait_status(m.src, "active", MF_STATE_TIMEOUT_MS));
    g_usleep(G_USEC_PER_SEC);
    g_assert_cmpint(kill(t.pid, SIGINT), ==, 0);
    g_assert_cmpint(qtest_tool_wait(&t), ==, 2);
    out = qtest_tool_output(&t);
    mf_assert_contains(out, "status:           cancelled");
    g_autofree char *err = qtest_tool_errors(&t);
    mf_assert_contains(err, "interrupted, cancelling the migration");
    info = qtest_query_migrate(m.src);
    g_assert_cmpstr(qtest_json_str(info, "status"), ==, "cancelled");
    json_node_unref(info);
    mf_assert_runstate(m.src, "running");
    json_node_unref(qtest_migrate_wait_status(m.dst, "failed", MF_STATE_TIMEOUT_MS));
    mf_assert_runstate(m.dst, "inmigrate");
    qtest_tool_clear(&t);
    mf_free(&m);
}

/* Bad values are refused before anything happens, naming the option. */
static void test_usage(void)
{
    static const char *const bad[][3] = {
        { "--copy-mode", "fast", "--copy-mode: 'fast' is neither background nor write-blocking" },
        { "--on-timeout", "pause", "--on-timeout: 'pause' is neither cancel nor write-blocking" },
        { "--progress-timeout", "soon", "--progress-timeout: " },
        { "--completion-timeout-per-gib", "0", "--completion-timeout-per-gib: " },
        { "--bandwidth", "lots", "--bandwidth: " },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        char *args[] = { "migrate", "--src", "unix:/nonexistent", "--uri", "tcp:127.0.0.1:1",
                         (char *)bad[i][0], (char *)bad[i][1], NULL };
        QTestTool t = qtest_tool_start("usage.log", args, 10);
        g_autofree char *err = NULL;

        g_assert_cmpint(qtest_tool_wait(&t), ==, 64);
        err = qtest_tool_errors(&t);
        mf_assert_contains(err, bad[i][2]);
        qtest_tool_clear(&t);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_tmpdir();
    g_test_add_func("/migrate-cli/usage", test_usage);
    g_test_add_func("/migrate-cli/json-completed", test_json_completed);
    g_test_add_func("/migrate-cli/returns-promptly", test_returns_promptly);
    g_test_add_func("/migrate-cli/timeouts", test_timeouts);
    g_test_add_func("/migrate-cli/completion-timeout-per-gib", test_completion_per_gib);
    g_test_add_func("/migrate-cli/interrupt", test_interrupt);
    return g_test_run();
}
