/* Provisioning from a template, whole daemons (issue 11): a template
 * served by qemu-nbd (and by nbdkit), a blkmigd drive created over it
 * with create=on,backing=nbd+unix://..., and block-stream pulling it in
 * while the guest runs: the built-in workload and qemu-io writing during
 * the stream, completion with QEMU's events and query fields, the server
 * stopped and the image alone equal to template + writes with no backing
 * file (qemu-img info, compare, check); pause, resume, cancel,
 * set-speed; the speed within 10% over a 2-second window; range mode to
 * the end; the server killed mid-job (on-error report and stop), then
 * back and the stream finished; copy-on-read; migration refused while a
 * job runs; QMP's errors; blkmig stream's exit codes. */
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/qemu-tools.h"
#include "../qtest/libqtest.h"
#include "interop.h"
#include "nbd-servers.h"

#define MiB (UINT64_C(1) << 20)
#define KiB (UINT64_C(1) << 10)
#define SIZE (64 * MiB)
#define EVENT_MS 20000

/* ---- The template and the daemon ---- */

/* template.qcow2: SIZE bytes, data in four regions of constant bytes (so
 * a misplaced copy shows), holes elsewhere. */
static char *make_template(void)
{
    char *path = qtest_path("template.qcow2");

    unlink(path);
    g_free(qt_run("qemu-img create -q -f qcow2 %s %" G_GUINT64_FORMAT, path, SIZE));
    g_free(qt_run("qemu-io -f qcow2 -c 'write -P 0x11 0 4M' -c 'write -P 0x22 8M 8M' "
                  "-c 'write -P 0x33 30M 1M' -c 'write -P 0x44 63M 1M' %s", path));
    return path;
}

static NbdServer *serve_template(const char *tmpl)
{
    g_autofree char *args = g_strdup_printf("-r --shared=8 -f qcow2 %s", tmpl);
    return ns_qemu_nbd("tmpl", args);
}

/* blkmigd with disk0 = vm.qcow2, created over the server at URI, and its
 * NBD export; EXTRA goes on the command line. */
static QTestDaemon *start_vm(const char *uri, const char *drive_extra, const char *extra)
{
    g_autofree char *img = qtest_path("vm.qcow2");
    g_autofree char *nbd = qtest_path("vm-nbd.sock");

    unlink(img);
    return qtest_daemon_start("vm", "--drive id=disk0,file=%s,format=qcow2,create=on,"
                              "backing=%s,backing-format=raw%s --nbd unix:%s %s", img, uri,
                              drive_extra, nbd, extra);
}

static char *vm_export_uri(void)
{
    g_autofree char *nbd = qtest_path("vm-nbd.sock");
    return interop_nbd_uri(nbd, "disk0");
}

static void stream(QTestDaemon *d, const char *extra_args)
{
    json_node_unref(qtest_qmp_ok(d, "{\"execute\": \"block-stream\", \"arguments\": "
                                 "{\"device\": \"disk0\"%s}}", extra_args));
}

/* query-block-jobs' only entry (new ref), or NULL when there is none. */
static JsonNode *the_job(QTestDaemon *d)
{
    g_autoptr(JsonNode) jobs = qtest_qmp_ok(d, "{\"execute\": \"query-block-jobs\"}");
    JsonArray *a = json_node_get_array(jobs);

    g_assert_cmpuint(json_array_get_length(a), <=, 1);
    return json_array_get_length(a) ? json_node_copy(json_array_get_element(a, 0)) : NULL;
}

static JsonNode *wait_event(QTestDaemon *d, const char *name)
{
    JsonNode *ev = qtest_event_wait(d, name, EVENT_MS);
    if (!ev) {
        g_error("no %s event within %d ms", name, EVENT_MS);
    }
    return ev;
}

/* The next JOB_STATUS_CHANGE events must name these states, in order. */
static void expect_states(QTestDaemon *d, const char *const *states)
{
    for (; *states; states++) {
        g_autoptr(JsonNode) ev = wait_event(d, "JOB_STATUS_CHANGE");
        g_assert_cmpstr(qtest_json_str(ev, "data.id"), ==, "disk0");
        g_assert_cmpstr(qtest_json_str(ev, "data.status"), ==, *states);
    }
}

/* The states up to and including STATE (earlier jobs' states skipped). */
static void skip_states_to(QTestDaemon *d, const char *state)
{
    for (;;) {
        g_autoptr(JsonNode) ev = wait_event(d, "JOB_STATUS_CHANGE");
        if (strcmp(qtest_json_str(ev, "data.status"), state) == 0) {
            return;
        }
    }
}

/* BLOCK_JOB_COMPLETED of disk0 without an error, and the states around
 * it: waiting, pending before, concluded, null after. */
static void expect_completed(QTestDaemon *d)
{
    g_autoptr(JsonNode) ev = wait_event(d, "BLOCK_JOB_COMPLETED");

    g_assert_cmpstr(qtest_json_str(ev, "data.type"), ==, "stream");
    g_assert_cmpstr(qtest_json_str(ev, "data.device"), ==, "disk0");
    g_assert_cmpint(qtest_json_int(ev, "data.len"), ==, SIZE);
    g_assert_cmpint(qtest_json_int(ev, "data.offset"), ==, SIZE);
    qtest_json_int(ev, "data.speed");
    g_assert_null(qtest_json_get(ev, "data.error"));
    g_assert_nonnull(qtest_json_get(ev, "timestamp"));
    skip_states_to(d, "waiting");
    expect_states(d, (const char *const[]){ "pending", "concluded", "null", NULL });
}

/* block-stream until a job completes without an error (a restarted
 * server takes a moment to be reconnected). */
static void stream_until_done(QTestDaemon *d)
{
    gint64 deadline = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;

    for (;;) {
        stream(d, "");
        g_autoptr(JsonNode) ev = wait_event(d, "BLOCK_JOB_COMPLETED");
        if (!qtest_json_get(ev, "data.error")) {
            return;
        }
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(200 * 1000);
    }
}

/* query-block: how many backing layers disk0 has. */
static gint64 backing_depth(QTestDaemon *d)
{
    g_autoptr(JsonNode) r = qtest_qmp_ok(d, "{\"execute\": \"query-block\"}");
    JsonNode *drive = json_array_get_element(json_node_get_array(r), 0);
    return qtest_json_int(drive, "inserted.backing_file_depth");
}

/* After the daemon quit: vm.qcow2 names no backing file, is sound, and
 * reads as EXPECTED (format FMT). */
static void check_image_alone(const char *expected, const char *fmt)
{
    g_autofree char *img = qtest_path("vm.qcow2");
    g_autoptr(JsonNode) info = qt_info(img);

    g_assert_null(qtest_json_get(info, "backing-filename"));
    g_assert_cmpint(qt_check(img), ==, 0);
    g_assert_true(qt_compare(img, "qcow2", expected, fmt));
}

/* ---- The stream with the built-in guest writing ---- */

/* Every 4 KiB block of GOT is the template's, or the workload's random
 * data (never one repeated byte, which is what a misplaced or lost copy
 * of the template would leave); returns the blocks the guest wrote. */
static uint64_t check_blocks(const uint8_t *got, const uint8_t *tmpl, uint64_t size)
{
    uint64_t written = 0;

    for (uint64_t off = 0; off < size; off += 4096) {
        if (memcmp(got + off, tmpl + off, 4096) == 0) {
            continue;
        }
        bool constant = true;
        for (unsigned i = 1; i < 4096 && constant; i++) {
            constant = got[off + i] == got[off];
        }
        if (constant) {
            g_error("block at %#" G_GINT64_MODIFIER "x is 0x%02x throughout, neither the "
                    "template's nor the guest's", off, got[off]);
        }
        written++;
    }
    return written;
}

static uint8_t *read_raw(const char *img, const char *fmt, const char *name)
{
    g_autofree char *raw = qtest_path(name);
    gsize len = 0;
    char *data = NULL;

    g_free(qt_run("qemu-img convert -f %s -O raw %s %s", fmt, img, raw));
    g_assert_true(g_file_get_contents(raw, &data, &len, NULL));
    g_assert_cmpuint(len, ==, SIZE);
    return (uint8_t *)data;
}

/* While the job runs: QEMU's fields in query-block-jobs and query-jobs. */
static void check_running_job(QTestDaemon *d)
{
    g_autoptr(JsonNode) j = the_job(d);
    g_autoptr(JsonNode) jobs = qtest_qmp_ok(d, "{\"execute\": \"query-jobs\"}");
    JsonNode *q = json_array_get_element(json_node_get_array(jobs), 0);

    g_assert_nonnull(j);
    g_assert_cmpstr(qtest_json_str(j, "type"), ==, "stream");
    g_assert_cmpstr(qtest_json_str(j, "device"), ==, "disk0");
    g_assert_cmpint(qtest_json_int(j, "len"), ==, SIZE);
    g_assert_cmpint(qtest_json_int(j, "offset"), <=, SIZE);
    g_assert_cmpint(qtest_json_int(j, "speed"), ==, 4 * MiB);
    g_assert_false(qtest_json_bool(j, "paused"));
    g_assert_false(qtest_json_bool(j, "ready"));
    qtest_json_bool(j, "busy");
    g_assert_cmpstr(qtest_json_str(j, "status"), ==, "running");
    g_assert_cmpstr(qtest_json_str(j, "io-status"), ==, "ok");
    g_assert_cmpstr(qtest_json_str(q, "id"), ==, "disk0");
    g_assert_cmpstr(qtest_json_str(q, "type"), ==, "stream");
    g_assert_cmpstr(qtest_json_str(q, "status"), ==, "running");
    g_assert_cmpint(qtest_json_int(q, "total-progress"), ==, SIZE);
    g_assert_cmpint(qtest_json_int(q, "current-progress"), <=, SIZE);
}

/* The template through qemu-nbd, the workload writing 4 KiB blocks at
 * random while the stream runs at 4 MiB/s; then the server goes away and
 * the image stands alone. */
static void test_stream_with_workload(void)
{
    g_autofree char *tmpl = make_template();
    NbdServer *srv = serve_template(tmpl);
    QTestDaemon *d = start_vm(srv->uri, "", "--workload drive=disk0,rate=4,seed=7");

    stream(d, ", \"speed\": 4194304");
    expect_states(d, (const char *const[]){ "created", "running", NULL });
    check_running_job(d);
    expect_completed(d);
    g_assert_null(the_job(d));
    g_assert_cmpint(backing_depth(d), ==, 0);
    ns_free(srv);                         /* the template is no longer needed */
    g_usleep(300 * 1000);                 /* the guest writes on without it */
    qtest_daemon_quit(d);

    g_autofree char *img = qtest_path("vm.qcow2");
    g_autoptr(JsonNode) info = qt_info(img);
    g_assert_null(qtest_json_get(info, "backing-filename"));
    g_assert_cmpint(qt_check(img), ==, 0);
    g_autofree uint8_t *got = read_raw(img, "qcow2", "vm.raw");
    g_autofree uint8_t *want = read_raw(tmpl, "qcow2", "template.raw");
    uint64_t written = check_blocks(got, want, SIZE);
    g_test_message("%" G_GUINT64_FORMAT " blocks written by the guest", written);
    g_assert_cmpuint(written, >, 100);
}

/* ---- Guest writes with known data: template + writes ---- */

static const char *const guest_writes[] = {
    "write -P 0xa1 1M 64k", "write -P 0xa2 9M 4k", "write -P 0xa3 20M 1M",
    "write -P 0xa4 30M 512", "write -P 0xa5 63M 128k", "write -P 0xa6 12M 3M",
};

/* qemu-io's -c options for guest_writes. */
static char *write_commands(void)
{
    GString *s = g_string_new(NULL);
    for (size_t i = 0; i < G_N_ELEMENTS(guest_writes); i++) {
        g_string_append_printf(s, "-c '%s' ", guest_writes[i]);
    }
    return g_string_free(s, FALSE);
}

/* The template served by nbdkit (a raw copy); qemu-io writes known data
 * through blkmigd's export while the stream runs: the image alone reads
 * exactly as template + writes. */
static void test_stream_guest_writes_nbdkit(void)
{
    if (!interop_need("nbdkit")) {
        return;
    }
    g_autofree char *tmpl = make_template();
    g_autofree char *raw = qtest_path("template.raw");
    g_free(qt_run("qemu-img convert -f qcow2 -O raw %s %s", tmpl, raw));
    g_autofree char *args = g_strdup_printf("file %s", raw);
    NbdServer *srv = ns_nbdkit("kit", args);
    QTestDaemon *d = start_vm(srv->uri, "", "");
    g_autofree char *uri = vm_export_uri(), *cmds = write_commands();

    stream(d, ", \"speed\": 4194304");
    g_free(qt_run("qemu-io -f raw %s %s", cmds, uri));
    g_usleep(700 * 1000);
    g_free(qt_run("qemu-io -f raw %s %s", cmds, uri));       /* again, mid-stream */
    expect_completed(d);
    ns_free(srv);
    qtest_daemon_quit(d);

    g_free(qt_run("qemu-io -f raw %s %s", cmds, raw));       /* template + writes */
    check_image_alone(raw, "raw");
}

/* ---- Pause, resume, set-speed, cancel ---- */

static gint64 job_offset(QTestDaemon *d)
{
    g_autoptr(JsonNode) j = the_job(d);
    g_assert_nonnull(j);
    return qtest_json_int(j, "offset");
}

static void job_cmd(QTestDaemon *d, const char *cmd, const char *extra)
{
    json_node_unref(qtest_qmp_ok(d, "{\"execute\": \"%s\", \"arguments\": "
                                 "{\"device\": \"disk0\"%s}}", cmd, extra));
}

static void test_pause_resume_speed(void)
{
    g_autofree char *tmpl = make_template();
    NbdServer *srv = serve_template(tmpl);
    QTestDaemon *d = start_vm(srv->uri, "", "");

    stream(d, ", \"speed\": 1048576");
    expect_states(d, (const char *const[]){ "created", "running", NULL });
    job_cmd(d, "block-job-pause", "");
    expect_states(d, (const char *const[]){ "paused", NULL });
    g_autoptr(JsonNode) j = the_job(d);
    g_assert_true(qtest_json_bool(j, "paused"));
    g_assert_false(qtest_json_bool(j, "busy"));
    g_assert_cmpstr(qtest_json_str(j, "status"), ==, "paused");
    gint64 off = job_offset(d);
    g_usleep(400 * 1000);
    g_assert_cmpint(job_offset(d), ==, off);
    g_autofree char *desc = NULL;
    g_autofree char *cls = qtest_qmp_error(d, &desc, "{\"execute\": \"block-job-pause\", "
                                           "\"arguments\": {\"device\": \"disk0\"}}");
    g_assert_cmpstr(desc, ==, "Job is already paused");
    job_cmd(d, "block-job-set-speed", ", \"speed\": 0");
    job_cmd(d, "block-job-resume", "");
    expect_states(d, (const char *const[]){ "running", NULL });
    expect_completed(d);
    ns_free(srv);
    qtest_daemon_quit(d);
    check_image_alone(tmpl, "qcow2");
}

/* A cancel keeps what was copied and the backing file; a second
 * block-stream goes on from there and finishes. */
static void test_cancel_then_again(void)
{
    g_autofree char *tmpl = make_template();
    NbdServer *srv = serve_template(tmpl);
    QTestDaemon *d = start_vm(srv->uri, "", "");

    stream(d, ", \"speed\": 2097152");
    while (job_offset(d) < 4 * (gint64)MiB) {
        g_usleep(50 * 1000);
    }
    job_cmd(d, "block-job-cancel", "");
    g_autoptr(JsonNode) ev = wait_event(d, "BLOCK_JOB_CANCELLED");
    g_assert_cmpstr(qtest_json_str(ev, "data.device"), ==, "disk0");
    g_assert_cmpint(qtest_json_int(ev, "data.offset"), <, SIZE);
    g_assert_null(the_job(d));
    g_assert_cmpint(backing_depth(d), ==, 1);
    stream(d, "");
    expect_completed(d);
    g_assert_cmpint(backing_depth(d), ==, 0);
    ns_free(srv);
    qtest_daemon_quit(d);
    check_image_alone(tmpl, "qcow2");
}

/* ---- The speed ---- */

/* A template full of data streamed at 4 MiB/s: the offset advances by
 * 8 MiB within 10% over a 2-second window. */
static void test_speed_window(void)
{
    g_autofree char *tmpl = qtest_path("full.qcow2");
    unlink(tmpl);
    g_free(qt_run("qemu-img create -q -f qcow2 %s 64M", tmpl));
    g_free(qt_run("qemu-io -f qcow2 -c 'write -P 0x5a 0 64M' %s", tmpl));
    NbdServer *srv = serve_template(tmpl);
    QTestDaemon *d = start_vm(srv->uri, "", "");
    const double speed = 4 * MiB;

    stream(d, ", \"speed\": 4194304");
    g_usleep(500 * 1000);
    gint64 t0 = g_get_monotonic_time(), o0 = job_offset(d);
    g_usleep(2 * G_USEC_PER_SEC);
    gint64 o1 = job_offset(d), t1 = g_get_monotonic_time();
    double rate = (double)(o1 - o0) * G_USEC_PER_SEC / (double)(t1 - t0);
    g_test_message("%.0f bytes/s at speed %.0f", rate, speed);
    g_assert_cmpfloat(rate, >=, 0.9 * speed);
    g_assert_cmpfloat(rate, <=, 1.1 * speed);
    job_cmd(d, "block-job-cancel", "");
    json_node_unref(wait_event(d, "BLOCK_JOB_CANCELLED"));
    ns_free(srv);
    qtest_daemon_kill(d);
}

/* ---- Range at a time ---- */

static gint64 stream_range(QTestDaemon *d, gint64 offset)
{
    g_autoptr(JsonNode) r = qtest_qmp_ok(d, "{\"execute\": \"x-block-stream-range\", "
                                         "\"arguments\": {\"device\": \"disk0\", "
                                         "\"offset\": %" G_GINT64_FORMAT "}}", offset);
    return qtest_json_int(r, "offset");
}

/* x-block-stream-range from 0 to the end, at most 1 MiB a call; the
 * backing file stays until a block-stream, which has nothing left to copy
 * and drops it. */
static void test_range_mode(void)
{
    g_autofree char *tmpl = make_template();
    NbdServer *srv = serve_template(tmpl);
    QTestDaemon *d = start_vm(srv->uri, "", "");
    gint64 off = 0, calls = 0;

    while (off < (gint64)SIZE) {
        gint64 next = stream_range(d, off);
        g_assert_cmpint(next, >, off);
        g_assert_cmpint(next, <=, (gint64)SIZE);
        off = next;
        calls++;
    }
    g_assert_cmpint(calls, >=, 14);        /* 14 MiB of data, 1 MiB a call */
    g_assert_cmpint(calls, <=, 20);
    g_assert_cmpint(stream_range(d, SIZE), ==, SIZE);
    g_assert_cmpint(stream_range(d, 0), ==, SIZE);        /* nothing left */
    g_assert_cmpint(backing_depth(d), ==, 1);
    gint64 t0 = g_get_monotonic_time();
    stream(d, "");
    expect_completed(d);
    g_test_message("block-stream after the ranges: %" G_GINT64_FORMAT " ms",
                   (g_get_monotonic_time() - t0) / 1000);
    g_assert_cmpint(backing_depth(d), ==, 0);
    ns_free(srv);
    qtest_daemon_quit(d);
    check_image_alone(tmpl, "qcow2");
}

/* ---- The server killed mid-job ---- */

/* on-error=report: the job fails with the error; nothing copied is lost;
 * the server back, a new block-stream finishes. */
static void test_server_killed_report(void)
{
    g_autofree char *tmpl = make_template();
    NbdServer *srv = serve_template(tmpl);
    QTestDaemon *d = start_vm(srv->uri, "", "");
    g_autofree char *uri = vm_export_uri();

    stream(d, ", \"speed\": 4194304");
    while (job_offset(d) < 9 * (gint64)MiB) {
        g_usleep(20 * 1000);
    }
    ns_kill(srv);
    g_autoptr(JsonNode) err = wait_event(d, "BLOCK_JOB_ERROR");
    g_assert_cmpstr(qtest_json_str(err, "data.device"), ==, "disk0");
    g_assert_cmpstr(qtest_json_str(err, "data.operation"), ==, "read");
    g_assert_cmpstr(qtest_json_str(err, "data.action"), ==, "report");
    g_autoptr(JsonNode) done = wait_event(d, "BLOCK_JOB_COMPLETED");
    g_assert_cmpstr(qtest_json_str(done, "data.error"), ==, "Input/output error");
    g_assert_cmpint(qtest_json_int(done, "data.offset"), <, SIZE);
    g_assert_cmpint(backing_depth(d), ==, 1);
    /* The guest reads what was copied; only what is missing fails. */
    g_free(qt_run("qemu-io -f raw -c 'read -P 0x11 0 4M' -c 'read -P 0x22 8M 512k' %s", uri));
    g_autofree char *out = NULL;
    qt_run_status(&out, "qemu-io -f raw -c 'read -P 0x33 30M 64k' %s", uri);
    g_assert_nonnull(strstr(out, "Input/output error"));
    ns_restart(srv);
    stream_until_done(d);
    ns_free(srv);
    qtest_daemon_quit(d);
    check_image_alone(tmpl, "qcow2");
}

/* on-error=stop: the job pauses (io-status failed) and goes on after
 * block-job-resume once the server is back. */
static void test_server_killed_stop(void)
{
    g_autofree char *tmpl = make_template();
    NbdServer *srv = serve_template(tmpl);
    QTestDaemon *d = start_vm(srv->uri, "", "");

    stream(d, ", \"speed\": 4194304, \"on-error\": \"stop\"");
    while (job_offset(d) < 9 * (gint64)MiB) {
        g_usleep(20 * 1000);
    }
    ns_kill(srv);
    g_autoptr(JsonNode) err = wait_event(d, "BLOCK_JOB_ERROR");
    g_assert_cmpstr(qtest_json_str(err, "data.action"), ==, "stop");
    g_autoptr(JsonNode) j = the_job(d);
    while (strcmp(qtest_json_str(j, "status"), "paused") != 0) {
        json_node_unref(j);
        j = the_job(d);
    }
    g_assert_cmpstr(qtest_json_str(j, "io-status"), ==, "failed");
    g_assert_true(qtest_json_bool(j, "paused"));
    ns_restart(srv);
    /* Until the connection is back a resumed job stops again. */
    g_autoptr(JsonNode) done = NULL;
    while (!(done = qtest_event_wait(d, "BLOCK_JOB_COMPLETED", 200))) {
        g_autoptr(JsonNode) now = the_job(d);
        if (now && strcmp(qtest_json_str(now, "status"), "paused") == 0) {
            job_cmd(d, "block-job-resume", "");
        }
    }
    g_assert_null(qtest_json_get(done, "data.error"));
    ns_free(srv);
    qtest_daemon_quit(d);
    check_image_alone(tmpl, "qcow2");
}

/* ---- Copy-on-read ---- */

/* What the guest reads lands in the image, whole clusters; what it does
 * not read stays with the template. */
static void test_copy_on_read(void)
{
    g_autofree char *tmpl = make_template();
    NbdServer *srv = serve_template(tmpl);
    QTestDaemon *d = start_vm(srv->uri, ",copy-on-read=on", "");
    g_autofree char *uri = vm_export_uri();

    g_free(qt_run("qemu-io -f raw -c 'read -P 0x22 8M 1M' -c 'read -P 0x11 100k 4k' %s", uri));
    qtest_daemon_quit(d);
    g_autofree char *img = qtest_path("vm.qcow2");
    g_autofree char *map = qt_run("qemu-img map -f qcow2 --output=json %s", img);
    g_autoptr(JsonNode) m = json_from_string(map, NULL);
    uint64_t local = 0;
    JsonArray *a = json_node_get_array(m);
    for (guint i = 0; i < json_array_get_length(a); i++) {
        JsonObject *e = json_array_get_object_element(a, i);
        if (json_object_get_int_member(e, "depth") == 0 &&
            json_object_get_boolean_member(e, "data")) {
            local += (uint64_t)json_object_get_int_member(e, "length");
        }
    }
    g_assert_cmpuint(local, ==, 1 * MiB + 64 * KiB);    /* 1 MiB, and 4k's cluster */
    g_assert_cmpint(qt_check(img), ==, 0);
    g_assert_true(qt_compare(img, "qcow2", tmpl, "qcow2"));
    ns_free(srv);
}

/* ---- Migration while a job runs; errors ---- */

static void test_migration_refused(void)
{
    g_autofree char *tmpl = make_template();
    NbdServer *srv = serve_template(tmpl);
    QTestDaemon *d = start_vm(srv->uri, "", "");
    g_autofree char *file = qtest_path("mig.bin");
    g_autofree char *desc = NULL;

    stream(d, ", \"speed\": 1048576, \"job-id\": \"pull0\"");
    g_autofree char *cls = qtest_qmp_error(d, &desc, "{\"execute\": \"migrate\", "
                                           "\"arguments\": {\"uri\": \"file:%s\"}}", file);
    g_assert_cmpstr(cls, ==, "GenericError");
    g_assert_nonnull(strstr(desc, "'pull0'"));
    g_assert_false(g_file_test(file, G_FILE_TEST_EXISTS));
    json_node_unref(qtest_qmp_ok(d, "{\"execute\": \"block-job-cancel\", "
                                 "\"arguments\": {\"device\": \"pull0\"}}"));
    json_node_unref(wait_event(d, "BLOCK_JOB_CANCELLED"));
    ns_free(srv);
    qtest_daemon_kill(d);
}

typedef struct BadCommand {
    const char *json;
    const char *cls;
    const char *desc;
} BadCommand;

/* QEMU's errors for block-stream and the job commands. */
static void test_errors(void)
{
    static const BadCommand bad[] = {
        { "{\"execute\": \"block-stream\", \"arguments\": {\"device\": \"nope\"}}",
          "GenericError", "Cannot find device=nope nor node_name=nope" },
        { "{\"execute\": \"block-stream\", \"arguments\": {\"device\": \"disk0\", "
          "\"base\": \"other.qcow2\"}}", "GenericError",
          "Can't find 'other.qcow2' in the backing chain" },
        { "{\"execute\": \"block-stream\", \"arguments\": {\"device\": \"disk0\", "
          "\"backing-file\": \"x\"}}", "GenericError",
          "backing file specified, but streaming the entire chain" },
        { "{\"execute\": \"block-stream\", \"arguments\": {\"device\": \"disk0\", "
          "\"on-error\": \"panic\"}}", "GenericError",
          "Parameter 'on-error' does not accept value 'panic'" },
        { "{\"execute\": \"block-stream\", \"arguments\": {\"device\": \"disk0\", "
          "\"speed\": -1}}", "GenericError", "Invalid parameter 'speed'" },
        { "{\"execute\": \"block-stream\", \"arguments\": {\"device\": \"disk0\", "
          "\"job-id\": \"1x\"}}", "GenericError", "Invalid job ID '1x'" },
        { "{\"execute\": \"block-job-pause\", \"arguments\": {\"device\": \"disk0\"}}",
          "DeviceNotActive", "Block job 'disk0' not found" },
        { "{\"execute\": \"block-job-cancel\", \"arguments\": {\"device\": \"j9\"}}",
          "DeviceNotActive", "Block job 'j9' not found" },
        { "{\"execute\": \"x-block-stream-range\", \"arguments\": {\"device\": \"disk0\"}}",
          "GenericError", "Parameter 'offset' is missing" },
    };
    g_autofree char *tmpl = make_template();
    NbdServer *srv = serve_template(tmpl);
    QTestDaemon *d = start_vm(srv->uri, "", "");

    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autofree char *desc = NULL;
        g_autofree char *cls = qtest_qmp_error(d, &desc, "%s", bad[i].json);
        g_assert_cmpstr(cls, ==, bad[i].cls);
        g_assert_cmpstr(desc, ==, bad[i].desc);
    }
    stream(d, ", \"speed\": 1048576");
    g_autofree char *desc = NULL;
    g_autofree char *cls = qtest_qmp_error(d, &desc, "{\"execute\": \"block-stream\", "
                                           "\"arguments\": {\"device\": \"disk0\", "
                                           "\"job-id\": \"j2\"}}");
    g_assert_cmpstr(desc, ==, "Node 'disk0' is busy: block device is in use by block job: "
                    "stream");
    g_assert_null(qtest_event_wait(d, "BLOCK_JOB_COMPLETED", 0));
    ns_free(srv);
    qtest_daemon_kill(d);
}

/* ---- blkmig stream ---- */

static int run_tool(const char *qmp, const char *extra, pid_t *pid_out, int timeout_ms)
{
    g_autofree char *rel = qtest_tool_path();
    g_autofree char *tool = g_canonicalize_filename(rel, NULL);   /* it runs in the tmpdir */
    g_autofree char *log = qtest_path("tool.log");
    g_autofree char *cmd = g_strdup_printf("%s stream --qmp %s --device disk0 %s", tool, qmp,
                                           extra);
    g_auto(GStrv) argv = NULL;

    g_assert_true(g_shell_parse_argv(cmd, NULL, &argv, NULL));
    pid_t pid = interop_spawnv(log, argv);
    if (pid_out) {
        *pid_out = pid;
        return 0;
    }
    return interop_wait(pid, timeout_ms);
}

/* 0 completed, 2 cancelled by Ctrl-C, 64 for a usage error. */
static void test_tool(void)
{
    g_autofree char *tmpl = make_template();
    NbdServer *srv = serve_template(tmpl);
    QTestDaemon *d = start_vm(srv->uri, "", "");
    const char *qmp = qtest_daemon_qmp_path(d);
    pid_t pid;

    g_assert_cmpint(run_tool(qmp, "--speed nonsense", NULL, 10000), ==, 64);
    run_tool(qmp, "--speed 1M --wait", &pid, 0);
    while (!the_job(d)) {
        g_usleep(20 * 1000);
    }
    g_usleep(300 * 1000);
    kill(pid, SIGINT);
    g_assert_cmpint(interop_wait(pid, 10000), ==, 2);
    g_assert_null(the_job(d));
    g_assert_cmpint(run_tool(qmp, "--wait", NULL, 30000), ==, 0);
    g_autofree char *log = qtest_path("tool.log"), *out = NULL;
    g_assert_true(g_file_get_contents(log, &out, NULL, NULL));
    g_assert_nonnull(strstr(out, "stream: completed"));
    g_assert_cmpint(backing_depth(d), ==, 0);
    ns_free(srv);
    qtest_daemon_quit(d);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    if (!qtest_have_program("qemu-nbd") || !qtest_have_program("qemu-img")) {
        g_test_skip("qemu-nbd and qemu-img are needed");
        return g_test_run();
    }
    g_test_add_func("/provision/stream-with-workload", test_stream_with_workload);
    g_test_add_func("/provision/guest-writes-nbdkit", test_stream_guest_writes_nbdkit);
    g_test_add_func("/provision/pause-resume-speed", test_pause_resume_speed);
    g_test_add_func("/provision/cancel-then-again", test_cancel_then_again);
    g_test_add_func("/provision/speed-window", test_speed_window);
    g_test_add_func("/provision/range-mode", test_range_mode);
    g_test_add_func("/provision/server-killed-report", test_server_killed_report);
    g_test_add_func("/provision/server-killed-stop", test_server_killed_stop);
    g_test_add_func("/provision/copy-on-read", test_copy_on_read);
    g_test_add_func("/provision/migration-refused", test_migration_refused);
    g_test_add_func("/provision/errors", test_errors);
    g_test_add_func("/provision/tool", test_tool);
    return g_test_run();
}
