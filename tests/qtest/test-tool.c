/* The blkmig command-line tool against real daemons. */
#include <stdarg.h>
#include <string.h>
#include <sys/wait.h>

#include "libqtest.h"

#define MIB (UINT64_C(1) << 20)

typedef struct ToolRun {
    int status;         /* exit status, or -1 when it did not exit normally */
    char *out;
    char *err;
} ToolRun;

/* Run blkmig with the NULL-terminated arguments. */
static ToolRun run_tool(const char *first, ...)
{
    GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
    g_ptr_array_add(argv, qtest_tool_path());
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *)) {
        g_ptr_array_add(argv, g_strdup(a));
    }
    va_end(ap);
    g_ptr_array_add(argv, NULL);

    ToolRun r = { 0 };
    int wait_status = 0;
    GError *err = NULL;
    g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                 &r.out, &r.err, &wait_status, &err);
    g_assert_no_error(err);
    r.status = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1;
    g_test_message("blkmig %s: exit %d\n%s%s", first, r.status, r.out, r.err);
    g_ptr_array_free(argv, TRUE);
    return r;
}

static void tool_run_clear(ToolRun *r)
{
    g_free(r->out);
    g_free(r->err);
}

static QTestDaemon *start_with_disk(const char *name, uint64_t size, const char *extra)
{
    g_autofree char *file = g_strdup_printf("%s.raw", name);
    g_autofree char *disk = qtest_path(file);
    return qtest_daemon_start(name, "--drive id=disk0,file=%s,size=%" G_GUINT64_FORMAT
                              ",create=on %s", disk, size, extra);
}

static void test_help(void)
{
    ToolRun r = run_tool("--help", NULL);
    g_assert_cmpint(r.status, ==, 0);
    g_assert_nonnull(strstr(r.out, "qmp SOCKET COMMAND"));
    g_assert_nonnull(strstr(r.out, "migrate --src"));
    tool_run_clear(&r);

    r = run_tool("migrate", "--help", NULL);
    g_assert_cmpint(r.status, ==, 0);
    const char *options[] = { "--src", "--dst", "--uri", "--zero-blocks",
                              "--max-bandwidth", "--downtime-limit", "--help" };
    for (size_t i = 0; i < G_N_ELEMENTS(options); i++) {
        g_assert_nonnull(strstr(r.out, options[i]));
    }
    tool_run_clear(&r);

    r = run_tool("qmp", "--help", NULL);
    g_assert_cmpint(r.status, ==, 0);
    g_assert_nonnull(strstr(r.out, "ARGUMENTS-JSON"));
    tool_run_clear(&r);

    r = run_tool("frobnicate", NULL);
    g_assert_cmpint(r.status, ==, 64);
    tool_run_clear(&r);
    r = run_tool("migrate", "--uri", "tcp:127.0.0.1:1", NULL);   /* no --src */
    g_assert_cmpint(r.status, ==, 64);
    tool_run_clear(&r);
}

static void test_qmp_command(void)
{
    QTestDaemon *d = start_with_disk("tool-qmp", 16 * MIB, "");
    g_autofree char *sock = g_strdup(qtest_daemon_qmp_path(d));
    g_autofree char *unix_uri = g_strconcat("unix:", sock, NULL);

    ToolRun r = run_tool("qmp", unix_uri, "query-status", NULL);
    g_assert_cmpint(r.status, ==, 0);
    JsonNode *ret = json_from_string(r.out, NULL);
    g_assert_nonnull(ret);
    g_assert_cmpstr(qtest_json_str(ret, "status"), ==, "running");
    json_node_unref(ret);
    tool_run_clear(&r);

    /* A bare path works too, and arguments reach the daemon. */
    r = run_tool("qmp", sock, "migrate-set-parameters", "{\"downtime-limit\": 1234}", NULL);
    g_assert_cmpint(r.status, ==, 0);
    tool_run_clear(&r);
    JsonNode *p = qtest_qmp_ok(d, "{\"execute\": \"query-migrate-parameters\"}");
    g_assert_cmpint(qtest_json_int(p, "downtime-limit"), ==, 1234);
    json_node_unref(p);

    r = run_tool("qmp", sock, "no-such-command", NULL);
    g_assert_cmpint(r.status, ==, 1);
    g_assert_nonnull(strstr(r.err, "CommandNotFound"));
    g_assert_nonnull(strstr(r.err, "no-such-command"));
    tool_run_clear(&r);

    r = run_tool("qmp", sock, "migrate-set-parameters", "{not json", NULL);
    g_assert_cmpint(r.status, ==, 64);
    tool_run_clear(&r);
    qtest_daemon_quit(d);

    r = run_tool("qmp", sock, "query-status", NULL);   /* daemon gone */
    g_assert_cmpint(r.status, ==, 1);
    tool_run_clear(&r);
}

static void test_migrate(void)
{
    const uint64_t size = 64 * MIB;
    g_autofree char *src_disk = qtest_path("tool-src.raw");
    g_autofree char *dst_disk = qtest_path("tool-dst.raw");
    qtest_disk_create(src_disk, size);
    qtest_disk_scatter(src_disk, 11, 20, 64 * 1024);
    g_autofree char *uri = g_strdup_printf("tcp:127.0.0.1:%d", qtest_free_port());
    QTestDaemon *dst = qtest_daemon_start("tool-dst", "--drive id=disk0,file=%s,size=%"
                                          G_GUINT64_FORMAT ",create=on --incoming %s",
                                          dst_disk, size, uri);
    QTestDaemon *src = qtest_daemon_start("tool-src", "--drive id=disk0,file=%s", src_disk);

    ToolRun r = run_tool("migrate", "--src", qtest_daemon_qmp_path(src),
                         "--dst", qtest_daemon_qmp_path(dst), "--uri", uri, "--zero-blocks",
                         "--max-bandwidth", "64M", "--downtime-limit", "500", NULL);
    g_assert_cmpint(r.status, ==, 0);
    g_assert_nonnull(strstr(r.out, "completed"));
    g_assert_nonnull(strstr(r.out, "destination:      completed, guest running"));
    tool_run_clear(&r);
    g_assert_true(qtest_files_equal(src_disk, dst_disk, NULL));

    /* The tool set what it was asked to. */
    JsonNode *p = qtest_qmp_ok(src, "{\"execute\": \"query-migrate-parameters\"}");
    g_assert_cmpint(qtest_json_int(p, "max-bandwidth"), ==, 64 * MIB);
    g_assert_cmpint(qtest_json_int(p, "downtime-limit"), ==, 500);
    json_node_unref(p);
    JsonNode *info = qtest_query_migrate(src);
    g_assert_cmpint(qtest_json_int(info, "disk.zero-blocks"), >, 0);
    json_node_unref(info);
    qtest_daemon_quit(src);
    qtest_daemon_quit(dst);

    /* A failing migration (destination too small) exits 1. */
    g_free(uri);
    uri = g_strdup_printf("tcp:127.0.0.1:%d", qtest_free_port());
    g_autofree char *small_disk = qtest_path("tool-small.raw");
    dst = qtest_daemon_start("tool-dst", "--drive id=disk0,file=%s,size=%" G_GUINT64_FORMAT
                             ",create=on --incoming %s", small_disk, size / 2, uri);
    src = qtest_daemon_start("tool-src", "--drive id=disk0,file=%s", src_disk);
    r = run_tool("migrate", "--src", qtest_daemon_qmp_path(src), "--uri", uri, NULL);
    g_assert_cmpint(r.status, ==, 1);
    g_assert_nonnull(strstr(r.out, "status:           failed"));
    tool_run_clear(&r);
    qtest_daemon_kill(src);
    qtest_daemon_kill(dst);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/tool/help", test_help);
    g_test_add_func("/tool/qmp", test_qmp_command);
    g_test_add_func("/tool/migrate", test_migrate);
    return g_test_run();
}
