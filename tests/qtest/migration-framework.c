/* The migration test framework (see migration-framework.h). */
#include "migration-framework.h"

#include <string.h>
#include <unistd.h>

#include "../lib/qemu-tools.h"

static bool is_final_status(const char *status)
{
    return !strcmp(status, "completed") || !strcmp(status, "failed") ||
           !strcmp(status, "cancelled");
}

uint64_t mf_make_src_disk(Migration *m, uint64_t size, uint64_t seed, unsigned runs,
                          uint64_t run_len)
{
    m->src_disk = qtest_path("src.raw");
    m->dst_disk = qtest_path("dst.raw");
    unlink(m->dst_disk);
    qtest_disk_create(m->src_disk, size);
    uint64_t touched = qtest_disk_scatter(m->src_disk, seed, runs, run_len);
    uint64_t chunks = qtest_disk_data_chunks(m->src_disk);
    g_assert_cmpuint(chunks, ==, touched);
    return chunks;
}

QTestDaemon *mf_start_dst(Migration *m, const char *name, uint64_t size)
{
    return mf_start_dst_at(m, NULL, name, size, NULL);
}

QTestDaemon *mf_start_dst_at(Migration *m, const char *prefix, const char *name,
                             uint64_t size, const char *incoming)
{
    return qtest_daemon_start_prefixed(prefix, name, "--drive id=" MF_DRIVE_ID ",file=%s,size=%"
                                       G_GUINT64_FORMAT ",create=on --incoming %s",
                                       m->dst_disk, size, incoming ? incoming : m->uri);
}

QTestDaemon *mf_start_src(Migration *m, const char *extra)
{
    return qtest_daemon_start("src", "--drive id=" MF_DRIVE_ID ",file=%s %s", m->src_disk,
                              extra);
}

void mf_start_pair(Migration *m, uint64_t dst_size, const char *src_extra)
{
    m->uri = qtest_tcp_uri();
    m->dst = mf_start_dst(m, "dst", dst_size);
    m->src = mf_start_src(m, src_extra);
}

void mf_load_saved(Migration *m, const char *file_uri, uint64_t size)
{
    m->uri = g_strdup(file_uri);
    m->dst = mf_start_dst(m, "dst", size);
    json_node_unref(qtest_migrate_wait_status(m->dst, "completed", MF_MIGRATE_TIMEOUT_MS));
}

void mf_start_daemons(Migration *m, const char *src_args, const char *dst_args)
{
    if (!m->uri) {
        m->uri = qtest_tcp_uri();
    }
    m->dst = qtest_daemon_start("dst", "%s --incoming %s", dst_args, m->uri);
    m->src = qtest_daemon_start("src", "%s", src_args);
}

void mf_quit(Migration *m)
{
    qtest_daemon_quit(g_steal_pointer(&m->src));
    qtest_daemon_quit(g_steal_pointer(&m->dst));
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

void mf_assert_contains(const char *text, const char *part)
{
    if (!text || !strstr(text, part)) {
        g_error("expected '%s' in '%s'", part, text ? text : "(null)");
    }
}

void mf_assert_identical(const char *a, const char *b)
{
    uint64_t diff = 0;
    if (!qtest_files_equal(a, b, &diff)) {
        g_error("%s and %s differ at byte %" G_GUINT64_FORMAT " (sizes %" G_GUINT64_FORMAT
                ", %" G_GUINT64_FORMAT ")", a, b, diff, qtest_file_size(a), qtest_file_size(b));
    }
}

static int state_timeout(const Migration *m)
{
    return m->state_timeout_ms ? m->state_timeout_ms : MF_STATE_TIMEOUT_MS;
}

JsonNode *mf_wait_completed(Migration *m)
{
    JsonNode *info = qtest_migrate_wait(m->src, MF_MIGRATE_TIMEOUT_MS);
    mf_log_json("source", info);
    if (strcmp(qtest_json_str(info, "status"), "completed")) {
        JsonNode *desc = qtest_json_get(info, "error-desc");
        g_error("migration %s: %s", qtest_json_str(info, "status"),
                desc ? json_node_get_string(desc) : "");
    }
    json_node_unref(qtest_migrate_wait_status(m->dst, "completed", state_timeout(m)));
    qtest_wait_runstate(m->dst, "running", state_timeout(m));
    mf_assert_runstate(m->src, "postmigrate");
    return info;
}

void mf_expect_refused(Migration *m, const char *why, const char *hint)
{
    JsonNode *s = qtest_migrate_wait(m->src, MF_MIGRATE_TIMEOUT_MS);
    JsonNode *d = qtest_migrate_wait_status(m->dst, "failed", state_timeout(m));
    const char *dst_error = qtest_json_str(d, "error-desc");
    g_autofree char *said = g_strdup_printf("destination failed: %s", dst_error);

    g_test_message("source: %s", qtest_json_str(s, "error-desc"));
    g_assert_cmpstr(qtest_json_str(s, "status"), ==, "failed");
    mf_assert_contains(dst_error, why);
    if (hint) {
        mf_assert_contains(dst_error, hint);
    }
    mf_assert_contains(qtest_json_str(s, "error-desc"), said);
    qtest_wait_runstate(m->src, "running", state_timeout(m));
    mf_assert_runstate(m->dst, "inmigrate");
    json_node_unref(s);
    json_node_unref(d);
}

/* ---- how each side ended ---- */

void mf_outcome_clear(MfOutcome *o)
{
    g_free(o->status);
    g_free(o->error_desc);
}

/* Whether D's migration has ended; if so fills O. */
static bool poll_final(QTestDaemon *d, gint64 start, MfOutcome *o)
{
    JsonNode *info = qtest_query_migrate(d);
    const char *status = qtest_json_str(info, "status");
    JsonNode *desc = qtest_json_get(info, "error-desc");
    bool final = is_final_status(status);

    if (final) {
        o->status = g_strdup(status);
        o->error_desc = g_strdup(desc ? json_node_get_string(desc) : "");
        o->seconds = (g_get_monotonic_time() - start) / 1e6;
    }
    json_node_unref(info);
    return final;
}

void mf_wait_both_ended(Migration *m, double timeout_s, MfOutcome *src, MfOutcome *dst)
{
    gint64 start = g_get_monotonic_time();
    bool src_done = false, dst_done = false;

    while (!(src_done && dst_done)) {
        src_done = src_done || poll_final(m->src, start, src);
        dst_done = dst_done || poll_final(m->dst, start, dst);
        if (!(src_done && dst_done) && g_get_monotonic_time() - start > timeout_s * 1e6) {
            g_autofree char *a = qtest_runstate(m->src), *b = qtest_runstate(m->dst);
            g_error("after %.0f s the source is %s (runstate %s), the destination %s "
                    "(runstate %s)", timeout_s, src_done ? src->status : "still migrating",
                    a, dst_done ? dst->status : "still migrating", b);
        }
        g_usleep(MF_POLL_US);
    }
    g_test_message("source: %s after %.1f s: %s", src->status, src->seconds, src->error_desc);
    g_test_message("destination: %s after %.1f s: %s", dst->status, dst->seconds,
                   dst->error_desc);
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

/* ---- qcow2 images and backing chains ---- */

void mf_qcow2_create(const char *path, uint64_t size, const char *backing)
{
    unlink(path);
    if (backing) {
        g_free(qt_run("qemu-img create -q -f qcow2 -b %s -F qcow2 %s %" G_GUINT64_FORMAT,
                      backing, path, size));
    } else {
        g_free(qt_run("qemu-img create -q -f qcow2 %s %" G_GUINT64_FORMAT, path, size));
    }
}

/* One qemu-io command for run I of RUNS + ZERO_RUNS. */
static void add_scatter_command(GString *cmds, GRand *rand, uint64_t size, unsigned i,
                                unsigned runs)
{
    uint64_t len = (uint64_t)g_rand_int_range(rand, 1, 9) * 64 * KIB;
    uint64_t off = (uint64_t)g_rand_int_range(rand, 0, (size - len) / (64 * KIB)) * 64 * KIB;

    if (i < runs) {
        g_string_append_printf(cmds, " -c 'write -P %d %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT
                               "'", g_rand_int_range(rand, 1, 256), off, len);
    } else {
        g_string_append_printf(cmds, " -c 'write %s %" G_GUINT64_FORMAT " %" G_GUINT64_FORMAT
                               "'", (i - runs) % 2 ? "-P 0" : "-z", off, len);
    }
}

void mf_qcow2_scatter(const char *path, uint64_t size, uint64_t seed, unsigned runs,
                      unsigned zero_runs)
{
    GRand *rand = g_rand_new_with_seed(seed);
    GString *cmds = g_string_new("");

    for (unsigned i = 0; i < runs + zero_runs; i++) {
        add_scatter_command(cmds, rand, size, i, runs);
    }
    g_free(qt_run("qemu-io -f qcow2%s %s", cmds->str, path));
    g_string_free(cmds, TRUE);
    g_rand_free(rand);
}

void mf_assert_same_view(const char *a, const char *fa, const char *b, const char *fb)
{
    if (!qt_compare(a, fa, b, fb)) {
        g_error("%s (%s) and %s (%s) differ as the guest sees them", a, fa, b, fb);
    }
}

void mf_assert_thin_data(uint64_t src_bytes, uint64_t dst_bytes)
{
    g_test_message("data: source %" G_GUINT64_FORMAT ", destination %" G_GUINT64_FORMAT,
                   src_bytes, dst_bytes);
    g_assert_cmpuint(dst_bytes, <=, src_bytes + src_bytes / 100 + MIB);
}

void mf_assert_thin_files(const char *src, const char *dst)
{
    g_test_message("files:");
    mf_assert_thin_data(qtest_allocated_bytes(src), qtest_allocated_bytes(dst));
}
