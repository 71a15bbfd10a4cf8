/* Resumable precopy block migration (issue 13, block-resume): a link
 * lost mid-copy pauses both sides instead of failing them; migrate-recover
 * and migrate resume:true continue the copy with only what the
 * destination lacks plus what the guest dirtied, even after the
 * destination process was killed and restarted on its journal; a journal
 * that does not match is refused with a clear error and the copy starts
 * again from scratch.  The connection is cut with `ss -K` (root); the
 * bytes on the wire are the source's disk.transferred. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "migration-framework.h"
#include "util/bswap.h"

#define DISK_SIZE (512 * MIB)
#define LINK "104857600"                /* max-bandwidth: 100 MiB/s */
#define CUT_AT (DISK_SIZE * 2 / 5)      /* cut after 40% went out */
#define SLACK (DISK_SIZE / 20)          /* the 5% the issue allows */
#define GUEST_RATE_MIB 2
#define GUEST "--workload drive=" MF_DRIVE_ID ",pattern=randwrite,bs=4k,rate=2,seed=5"
#define JOURNAL_HEADER 40               /* magic, version, id, size, count */

/* A full source disk (no holes: every byte costs wire), a destination
 * waiting and a source with GUEST_ARGS. */
static void start_daemons(Migration *m, const char *guest_args)
{
    mf_make_src_disk(m, DISK_SIZE, 7, 1, MIB);
    qtest_disk_fill(m->src_disk, DISK_SIZE, 7);
    mf_start_pair(m, DISK_SIZE, guest_args);
}

/* The daemons, block-resume on both sides, 100 MiB/s, the migration
 * started. */
static void start(Migration *m, const char *guest_args)
{
    start_daemons(m, guest_args);
    qtest_set_caps(m->dst, "block-resume", NULL);
    qtest_set_caps(m->src, "block", "zero-blocks", "events", "block-resume", NULL);
    qtest_set_params(m->src, "\"max-bandwidth\": " LINK);
    qtest_migrate_start(m->src, m->uri);
}

static uint64_t transferred(QTestDaemon *d)
{
    JsonNode *info = qtest_query_migrate(d);
    uint64_t bytes = qtest_json_get(info, "disk") ? qtest_json_int(info, "disk.transferred") : 0;

    json_node_unref(info);
    return bytes;
}

/* Until the source sent BYTES. */
static void wait_transferred(QTestDaemon *d, uint64_t bytes)
{
    gint64 deadline = g_get_monotonic_time() + MF_MIGRATE_TIMEOUT_MS * 1000LL;

    while (transferred(d) < bytes) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(MF_POLL_US);
    }
}

static int uri_port(const char *uri)
{
    return atoi(strrchr(uri, ':') + 1);
}

/* The kernel aborts the source's connections to URI (both ends see a
 * reset), as a dying link or middlebox would. */
static void cut_link(const char *uri)
{
    g_assert_true(qtest_sh("ss -K dst 127.0.0.1 dport = :%d", uri_port(uri)));
}

/* D's migration is paused; returns its error-desc. */
static char *wait_paused(QTestDaemon *d)
{
    JsonNode *info = qtest_migrate_wait_status(d, "paused", MF_STATE_TIMEOUT_MS * 3);
    char *why = g_strdup(qtest_json_str(info, "error-desc"));

    json_node_unref(info);
    return why;
}

/* Resume on a new port: migrate-recover on DST unless RECOVER is false
 * (a destination restarted with --incoming listens already on m->uri). */
static void resume(Migration *m, bool recover)
{
    if (recover) {
        g_free(m->uri);
        m->uri = qtest_tcp_uri();
        json_node_unref(qtest_qmp_ok(m->dst, "{\"execute\": \"migrate-recover\", "
                                     "\"arguments\": {\"uri\": \"%s\"}}", m->uri));
    }
    json_node_unref(qtest_qmp_ok(m->src, "{\"execute\": \"migrate\", \"arguments\": "
                                 "{\"uri\": \"%s\", \"resume\": true}}", m->uri));
}

/* True (the test skipped) without root and ss. */
static bool skip_unless_root(void)
{
    if (geteuid() != 0 || !qtest_have_program("ss")) {
        g_test_skip("needs root and ss -K to cut a connection");
        return true;
    }
    return false;
}

/* Cut the link once 40% went out; both sides pause, the source guest
 * runs on.  Returns what the source had sent by then. */
static uint64_t cut_and_pause(Migration *m)
{
    g_autofree char *src_why = NULL;
    g_autofree char *dst_why = NULL;

    wait_transferred(m->src, CUT_AT);
    cut_link(m->uri);
    src_why = wait_paused(m->src);
    dst_why = wait_paused(m->dst);
    g_test_message("source: %s; destination: %s", src_why, dst_why);
    mf_assert_contains(src_why, "lost the connection");
    mf_assert_runstate(m->src, "running");
    mf_assert_runstate(m->dst, "inmigrate");
    return transferred(m->src);
}

/* The link drops at 40%: after migrate-recover and migrate resume the
 * copy completes, identical, and what went on the wire after the resume
 * is at most what the source had not sent yet plus 5%. */
static void test_link_loss(void)
{
    Migration m = { 0 };
    uint64_t before, after;

    if (skip_unless_root()) {
        return;
    }
    start(&m, "");
    before = cut_and_pause(&m);
    resume(&m, true);
    json_node_unref(mf_wait_completed(&m));
    after = transferred(m.src) - before;
    g_test_message("wire bytes: %" G_GUINT64_FORMAT " before the cut, %" G_GUINT64_FORMAT
                   " after the resume (a restart sends about %" G_GUINT64_FORMAT ")",
                   before, after, DISK_SIZE);
    g_assert_cmpuint(after, <=, DISK_SIZE - before + SLACK);
    mf_assert_identical(m.src_disk, m.dst_disk);
    mf_free(&m);
}

/* Bytes of the 1 MiB chunks the destination's journal at PATH says it
 * holds (at least one record applied and flushed). */
static uint64_t journal_held_bytes(const char *path)
{
    g_autofree char *data = NULL;
    uint64_t held = 0, n;
    gsize len;

    g_assert_true(g_file_get_contents(path, &data, &len, NULL));
    g_assert_cmpuint(len, >=, JOURNAL_HEADER);
    n = ld_be64(data + JOURNAL_HEADER - 8);
    g_assert_cmpuint(len, ==, JOURNAL_HEADER + 4 * n);
    for (uint64_t i = 0; i < n; i++) {
        held += ld_be32(data + JOURNAL_HEADER + 4 * i) ? MIB : 0;
    }
    return held;
}

/* The destination dies at 40%; the source pauses, its guest writing on.
 * The destination comes back on the same drive (no create) and the
 * migration resumes from its journal. */
static void kill_destination(Migration *m, char **journal)
{
    wait_transferred(m->src, CUT_AT);
    qtest_daemon_kill(g_steal_pointer(&m->dst));
    g_free(wait_paused(m->src));
    mf_assert_runstate(m->src, "running");
    *journal = g_strdup_printf("%s.blkmig-resume", m->dst_disk);
    g_assert_true(g_file_test(*journal, G_FILE_TEST_EXISTS));
}

static void restart_destination(Migration *m)
{
    g_free(m->uri);
    m->uri = qtest_tcp_uri();
    m->dst = qtest_daemon_start("dst2", "--drive id=" MF_DRIVE_ID ",file=%s --incoming %s",
                                m->dst_disk, m->uri);
    qtest_set_caps(m->dst, "block-resume", NULL);
}

static void test_destination_restart(void)
{
    Migration m = { 0 };
    g_autofree char *journal = NULL;
    gint64 start_us = g_get_monotonic_time();
    uint64_t before, after, missing, dirtied;

    if (skip_unless_root()) {
        return;
    }
    start(&m, GUEST);
    kill_destination(&m, &journal);
    before = transferred(m.src);
    missing = DISK_SIZE - journal_held_bytes(journal);
    restart_destination(&m);
    resume(&m, false);
    json_node_unref(mf_wait_completed(&m));
    after = transferred(m.src) - before;
    /* The guest's 4 KiB writes since the start, re-sent with headers. */
    dirtied = (g_get_monotonic_time() - start_us) * GUEST_RATE_MIB * MIB / G_USEC_PER_SEC * 11 / 10;
    g_test_message("wire bytes after the resume: %" G_GUINT64_FORMAT " (missing at the "
                   "destination %" G_GUINT64_FORMAT ", dirtied at most %" G_GUINT64_FORMAT ")",
                   after, missing, dirtied);
    g_assert_cmpuint(after, <=, missing + dirtied + SLACK);
    g_assert_cmpuint(after, <, DISK_SIZE * 3 / 4);
    mf_assert_identical(m.src_disk, m.dst_disk);
    g_assert_false(g_file_test(journal, G_FILE_TEST_EXISTS));
    mf_free(&m);
}

/* Another migration's journal (its id changed) is refused, with a clear
 * error in the destination's log, and the copy starts again: everything
 * goes again and the disks still end identical. */
static void test_journal_mismatch(void)
{
    Migration m = { 0 };
    g_autofree char *journal = NULL;
    g_autofree char *data = NULL;
    uint64_t before, after;
    gsize len;

    if (skip_unless_root()) {
        return;
    }
    start(&m, "");
    kill_destination(&m, &journal);
    before = transferred(m.src);
    g_assert_true(g_file_get_contents(journal, &data, &len, NULL));
    data[8] ^= 0xff;            /* the first byte of the migration id */
    g_assert_true(g_file_set_contents(journal, data, len, NULL));
    restart_destination(&m);
    resume(&m, false);
    json_node_unref(mf_wait_completed(&m));
    after = transferred(m.src) - before;
    {
        g_autofree char *log = NULL;
        g_assert_true(g_file_get_contents(qtest_daemon_log(m.dst), &log, NULL, NULL));
        mf_assert_contains(log, "refused: it was written for another migration");
        mf_assert_contains(log, "starts again from scratch");
    }
    g_assert_cmpuint(after, >=, DISK_SIZE);
    mf_assert_identical(m.src_disk, m.dst_disk);
    mf_free(&m);
}

/* A source nobody resumes gives up after resume-timeout, saying so, its
 * guest running; one that is cancelled while paused is cancelled. */
static void test_resume_timeout_and_cancel(void)
{
    Migration m = { 0 };
    JsonNode *info;

    if (skip_unless_root()) {
        return;
    }
    start(&m, "");
    qtest_set_params(m.src, "\"resume-timeout\": 2");
    cut_and_pause(&m);
    info = qtest_migrate_wait(m.src, MF_STATE_TIMEOUT_MS);
    g_assert_cmpstr(qtest_json_str(info, "status"), ==, "failed");
    mf_assert_contains(qtest_json_str(info, "error-desc"),
                       "not resumed within resume-timeout (2 s) after the migration paused");
    json_node_unref(info);
    mf_assert_runstate(m.src, "running");
    mf_free(&m);

    start(&m, "");
    cut_and_pause(&m);
    json_node_unref(qtest_qmp_ok(m.src, "{\"execute\": \"migrate_cancel\"}"));
    info = qtest_migrate_wait(m.src, MF_STATE_TIMEOUT_MS);
    g_assert_cmpstr(qtest_json_str(info, "status"), ==, "cancelled");
    json_node_unref(info);
    mf_assert_runstate(m.src, "running");
    mf_free(&m);
}

/* blkmig migrate --retries sets block-resume on both sides and resumes
 * by itself each time the link drops (twice here). */
static void test_cli_retries(void)
{
    Migration m = { 0 };
    g_autofree char *src = NULL, *dst = NULL, *err = NULL;
    QTestTool t;

    if (skip_unless_root()) {
        return;
    }
    start_daemons(&m, "");
    src = qtest_daemon_qmp_uri(m.src);
    dst = qtest_daemon_qmp_uri(m.dst);
    t = qtest_tool_start("retries.log", (char *[]){ "migrate", "--src", src, "--dst", dst,
                         "--uri", m.uri, "--bandwidth", LINK, "--retries", "3", NULL }, 300);
    wait_transferred(m.src, CUT_AT);
    cut_link(m.uri);
    wait_transferred(m.src, DISK_SIZE * 7 / 10);
    cut_link(m.uri);
    g_assert_cmpint(qtest_tool_wait(&t), ==, 0);
    err = qtest_tool_errors(&t);
    g_test_message("blkmig migrate said: %s", err);
    mf_assert_contains(err, "connection lost; resumed (retry 2)");
    mf_assert_identical(m.src_disk, m.dst_disk);
    qtest_tool_clear(&t);
    mf_free(&m);
}

/* blkmig migrate --resume continues a paused migration: migrate-recover
 * on the destination, migrate resume on the source, then it follows it. */
static void test_cli_resume(void)
{
    Migration m = { 0 };
    g_autofree char *src = NULL, *dst = NULL;
    QTestTool t;

    if (skip_unless_root()) {
        return;
    }
    start(&m, "");
    cut_and_pause(&m);
    src = qtest_daemon_qmp_uri(m.src);
    dst = qtest_daemon_qmp_uri(m.dst);
    g_free(m.uri);
    m.uri = qtest_tcp_uri();
    t = qtest_tool_start("resume.log", (char *[]){ "migrate", "--src", src, "--dst", dst,
                         "--uri", m.uri, "--resume", NULL }, 300);
    g_assert_cmpint(qtest_tool_wait(&t), ==, 0);
    mf_assert_identical(m.src_disk, m.dst_disk);
    qtest_tool_clear(&t);
    mf_free(&m);
}

/* The capability is checked at the start, where it cannot work. */
static void test_refused_combinations(void)
{
    Migration m = { 0 };
    g_autofree char *desc = NULL;

    mf_make_src_disk(&m, 16 * MIB, 1, 1, MIB);
    m.uri = qtest_tcp_uri();
    m.src = mf_start_src(&m, "");
    qtest_set_caps(m.src, "block", "block-resume", "multifd", NULL);
    g_free(qtest_qmp_error(m.src, &desc, "{\"execute\": \"migrate\", \"arguments\": "
                           "{\"uri\": \"%s\"}}", m.uri));
    mf_assert_contains(desc, "'block-resume' cannot be combined with 'multifd'");
    g_clear_pointer(&desc, g_free);
    g_free(qtest_qmp_error(m.src, &desc, "{\"execute\": \"migrate\", \"arguments\": "
                           "{\"uri\": \"%s\", \"resume\": true}}", m.uri));
    mf_assert_contains(desc, "no paused migration");
    mf_free(&m);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_tmpdir();
    g_test_add_func("/resume/refused-combinations", test_refused_combinations);
    g_test_add_func("/resume/link-loss", test_link_loss);
    g_test_add_func("/resume/destination-restart", test_destination_restart);
    g_test_add_func("/resume/journal-mismatch", test_journal_mismatch);
    g_test_add_func("/resume/resume-timeout-and-cancel", test_resume_timeout_and_cancel);
    g_test_add_func("/resume/cli-retries", test_cli_retries);
    g_test_add_func("/resume/cli-resume", test_cli_resume);
    return g_test_run();
}
