/* The migration test framework (see migration-framework.h). */
#include "migration-framework.h"

#include <string.h>
#include <unistd.h>

uint64_t mf_make_src_disk(Migration *m, uint64_t size, uint64_t seed, unsigned runs,
                          uint64_t run_len)
{
    m->src_disk = qtest_path("src.raw");
    m->dst_disk = qtest_path("dst.raw");
    qtest_disk_create(m->src_disk, size);
    uint64_t touched = qtest_disk_scatter(m->src_disk, seed, runs, run_len);
    uint64_t chunks = qtest_disk_data_chunks(m->src_disk);
    g_assert_cmpuint(chunks, ==, touched);
    return chunks;
}

QTestDaemon *mf_start_dst(Migration *m, const char *name, uint64_t size)
{
    return qtest_daemon_start(name, "--drive id=" MF_DRIVE_ID ",file=%s,size=%" G_GUINT64_FORMAT
                              ",create=on --incoming %s", m->dst_disk, size, m->uri);
}

QTestDaemon *mf_start_src(Migration *m, const char *extra)
{
    return qtest_daemon_start("src", "--drive id=" MF_DRIVE_ID ",file=%s %s", m->src_disk,
                              extra);
}

void mf_free(Migration *m)
{
    qtest_daemon_kill(m->src);
    qtest_daemon_kill(m->dst);
    if (m->src_disk) {
        unlink(m->src_disk);
    }
    if (m->dst_disk) {
        unlink(m->dst_disk);
    }
    g_free(m->src_disk);
    g_free(m->dst_disk);
    g_free(m->uri);
}

void mf_log_json(const char *what, JsonNode *node)
{
    g_autofree char *text = json_to_string(node, FALSE);
    g_test_message("%s: %s", what, text);
}

void mf_assert_runstate(QTestDaemon *d, const char *want)
{
    g_autofree char *state = qtest_runstate(d);
    g_assert_cmpstr(state, ==, want);
}

void mf_assert_identical(const char *a, const char *b)
{
    uint64_t diff = 0;
    if (!qtest_files_equal(a, b, &diff)) {
        g_error("%s and %s differ at byte %" G_GUINT64_FORMAT " (sizes %" G_GUINT64_FORMAT
                ", %" G_GUINT64_FORMAT ")", a, b, diff, qtest_file_size(a), qtest_file_size(b));
    }
}

JsonNode *mf_wait_completed(Migration *m)
{
    JsonNode *info = qtest_migrate_wait(m->src, MF_MIGRATE_TIMEOUT_MS);
    mf_log_json("source", info);
    g_assert_cmpstr(qtest_json_str(info, "status"), ==, "completed");
    json_node_unref(qtest_migrate_wait_status(m->dst, "completed", MF_STATE_TIMEOUT_MS));
    qtest_wait_runstate(m->dst, "running", MF_STATE_TIMEOUT_MS);
    mf_assert_runstate(m->src, "postmigrate");
    return info;
}

void mf_assert_thin(const char *src, const char *dst, unsigned slack_percent)
{
    uint64_t a = qtest_allocated_bytes(src), b = qtest_allocated_bytes(dst);
    g_test_message("allocated: source %" G_GUINT64_FORMAT ", destination %" G_GUINT64_FORMAT,
                   a, b);
    g_assert_cmpuint(b, <=, a + a / 100 * slack_percent + 64 * KIB);
    g_assert_cmpuint(b + 64 * KIB, >=, a);
}

char *mf_snapshot_running_disk(Migration *m)
{
    char *before = qtest_path("src-before.raw");

    json_node_unref(qtest_qmp_ok(m->src, "{\"execute\": \"stop\"}"));
    qtest_disk_copy(m->src_disk, before);
    json_node_unref(qtest_qmp_ok(m->src, "{\"execute\": \"cont\"}"));
    return before;
}

static bool is_final_status(const char *status)
{
    return !strcmp(status, "completed") || !strcmp(status, "failed") ||
           !strcmp(status, "cancelled");
}

char *mf_migration_event_trail(QTestDaemon *d)
{
    GString *trail = g_string_new("");
    JsonNode *ev;
    while ((ev = qtest_event_wait(d, "MIGRATION", 5000))) {
        const char *status = qtest_json_str(ev, "data.status");
        bool final = is_final_status(status);
        g_string_append_printf(trail, "%s%s", trail->len ? "," : "", status);
        json_node_unref(ev);
        if (final) {
            break;
        }
    }
    return g_string_free(trail, FALSE);
}
