/* Test harness for whole daemons: start blkmigd processes, talk QMP to
 * them, build and compare real sparse disk files.  Used by tests/qtest,
 * tests/interop and tests/bench.  The one header of the harness, whose
 * files each have one job: libqtest.c (scratch directory, ports,
 * programs, the harness's failures), qtest-daemon.c, qtest-qmp.c,
 * qtest-json.c, qtest-disk.c, qtest-netns.c, qtest-tool.c, qtest-nbdkit.c. */
#ifndef TESTS_LIBQTEST_H
#define TESTS_LIBQTEST_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct QTestDaemon QTestDaemon;

/* Per-process scratch directory (removed at exit unless KEEP_TMP is set).
 * A failed test aborts, which keeps it (daemon logs, disks) for a look. */
const char *qtest_tmpdir(void);
/* g_build_filename(qtest_tmpdir(), name); caller frees. */
char *qtest_path(const char *name);

/* Start $BLKMIGD (default build/blkmigd) with the space-separated ARGS
 * (printf format) plus "--qmp unix:<tmpdir>/<name>.qmp".  Waits until the
 * QMP greeting arrives and qmp_capabilities succeeded; fails the test if
 * the daemon exits first.  The daemon dies with the test process. */
QTestDaemon *qtest_daemon_start(const char *name, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* Run $BLKMIGD with the NULL-terminated arguments only (no --qmp added)
 * and wait for it to exit: returns its exit code, or -1 when it is still
 * running after TIMEOUT_MS (it is then killed) or died of a signal.
 * *OUTPUT (optional, caller frees) gets what it wrote to stdout and
 * stderr.  For command lines and start-ups that must fail. */
int qtest_daemon_run(int timeout_ms, char **output, const char *first, ...)
    G_GNUC_NULL_TERMINATED;
/* The same with PREFIX (space-separated words, the first looked up in
 * PATH) put before the daemon on the command line, e.g. "ip netns exec NS"
 * to run it in network namespace NS.  The prefix must exec the daemon in
 * its own process, as ip netns exec does, so the test's kill and waitpid
 * reach the daemon. */
QTestDaemon *qtest_daemon_start_prefixed(const char *prefix, const char *name,
                                         const char *fmt, ...) G_GNUC_PRINTF(3, 4);
/* Start $QEMU (default qemu-system-x86_64) with the space-separated ARGS
 * plus "-qmp unix:<tmpdir>/<name>.qmp,server=on,wait=off", as a daemon of
 * the harness: every function below works on it (quit, query-migrate,
 * capabilities...). */
QTestDaemon *qtest_qemu_start(const char *name, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* SIGKILL and reap. Frees D. */
void qtest_daemon_kill(QTestDaemon *d);
/* "quit" over QMP, then reap (SIGKILL after 10 s); fails the test unless
 * the daemon exited with status 0. Frees D. */
void qtest_daemon_quit(QTestDaemon *d);
bool qtest_daemon_alive(QTestDaemon *d);
const char *qtest_daemon_qmp_path(QTestDaemon *d);
/* "unix:PATH" of its QMP socket, as blkmig takes it (caller frees). */
char *qtest_daemon_qmp_uri(QTestDaemon *d);
/* Log file of the daemon (its stderr), for messages on failure. */
const char *qtest_daemon_log(QTestDaemon *d);

/* Send one command (printf format producing a JSON object, single quotes
 * are NOT translated) and return the reply object; events that arrive
 * meanwhile are queued.  Caller unrefs the node. */
JsonNode *qtest_qmp(QTestDaemon *d, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* Like qtest_qmp but asserts success; returns the "return" member (new ref). */
JsonNode *qtest_qmp_ok(QTestDaemon *d, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* Asserts the reply is an error and returns its class (caller frees);
 * *desc_out (optional) gets the desc. */
char *qtest_qmp_error(QTestDaemon *d, char **desc_out, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
/* Wait for event NAME (queued or new) up to TIMEOUT_MS; returns the whole
 * event object or NULL on timeout. */
JsonNode *qtest_event_wait(QTestDaemon *d, const char *name, int timeout_ms);

/* Convenience over query-status / query-migrate. */
char *qtest_runstate(QTestDaemon *d);
JsonNode *qtest_query_migrate(QTestDaemon *d);
/* Poll query-migrate until status is completed, failed or cancelled (or
 * TIMEOUT_MS passes: test fails).  Returns the final query-migrate reply
 * "return" object node. */
JsonNode *qtest_migrate_wait(QTestDaemon *d, int timeout_ms);
/* Enable capabilities, e.g. qtest_set_caps(d, "block", "zero-blocks", NULL). */
void qtest_set_caps(QTestDaemon *d, ...) G_GNUC_NULL_TERMINATED;
/* migrate-set-parameters with the members given as a printf format, e.g.
 * qtest_set_params(d, "\"max-bandwidth\": %d", 0). */
void qtest_set_params(QTestDaemon *d, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
/* "migrate" to URI; asserts the command was accepted. */
void qtest_migrate_start(QTestDaemon *src, const char *uri);
/* "tcp:127.0.0.1:PORT" with a free port; caller frees. */
char *qtest_tcp_uri(void);
/* A connected socket to URI (tcp: or unix:), as a peer a test plays by
 * hand; the test fails if it cannot connect. */
int qtest_connect(const char *uri);

/* Disk files. */
void qtest_disk_create(const char *path, uint64_t size);            /* sparse */
/* Write DATA_CHUNKS runs of random (never all-zero per 4 KiB) data of
 * RUN_LEN bytes at seeded random 4 KiB-aligned offsets; returns the set of
 * distinct 1 MiB chunks touched. */
uint64_t qtest_disk_scatter(const char *path, uint64_t seed, unsigned runs, uint64_t run_len);
/* Number of 1 MiB chunks of PATH holding any non-zero byte. */
uint64_t qtest_disk_data_chunks(const char *path);
uint64_t qtest_allocated_bytes(const char *path);   /* st_blocks * 512 */
/* Byte compare; on difference fills *first_diff and returns false. */
bool qtest_files_equal(const char *a, const char *b, uint64_t *first_diff);

/* A free TCP port on 127.0.0.1 (bind to 0, read back, close). */
int qtest_free_port(void);
/* Test skip helper for optional third-party tools: true when PROG is on PATH. */
bool qtest_have_program(const char *prog);

/* ---- Additions (libqtest owner) ---- */

typedef struct QmpClient QmpClient;

/* The QMP connection libqtest uses for D (borrowed), for tests that need
 * raw access; see include/qapi/qmp-client.h. */
QmpClient *qtest_daemon_client(QTestDaemon *d);
int qtest_daemon_pid(QTestDaemon *d);
/* Peak resident set of the daemon so far in bytes (VmHWM of
 * /proc/PID/status); fails the test when it cannot be read. */
uint64_t qtest_daemon_peak_rss(QTestDaemon *d);
/* Wait up to TIMEOUT_MS for the daemon to exit by itself and reap it:
 * returns the waitpid status, or -1 on timeout (the daemon keeps running).
 * D stays valid; free it with qtest_daemon_kill. */
int qtest_daemon_wait_exit(QTestDaemon *d, int timeout_ms);
/* The last lines of the daemon's log (caller frees). */
char *qtest_daemon_log_tail(QTestDaemon *d);

/* Member at a dotted PATH ("disk.transferred") of an object node, borrowed,
 * or NULL when absent. */
JsonNode *qtest_json_get(JsonNode *obj, const char *path);
/* Same, asserting the member exists and has the type. */
gint64 qtest_json_int(JsonNode *obj, const char *path);
const char *qtest_json_str(JsonNode *obj, const char *path);
bool qtest_json_bool(JsonNode *obj, const char *path);

/* Poll query-status until the runstate is STATE; fails the test after
 * TIMEOUT_MS. */
void qtest_wait_runstate(QTestDaemon *d, const char *state, int timeout_ms);
/* Poll query-migrate until its status is STATUS; fails the test after
 * TIMEOUT_MS or when another final status is reached first. Returns the
 * query-migrate "return" node. */
JsonNode *qtest_migrate_wait_status(QTestDaemon *d, const char *status, int timeout_ms);

/* Bytes in the 4 KiB blocks of PATH that hold any non-zero byte: the least
 * a migration must carry when it sends no zeroes and no compression. */
uint64_t qtest_disk_nonzero_bytes(const char *path);
/* Write LEN bytes of BYTE at OFF into the existing file PATH. */
void qtest_disk_set(const char *path, uint64_t off, uint64_t len, uint8_t byte);
/* Copy SRC to DST keeping holes (only data extents are written). */
void qtest_disk_copy(const char *src, const char *dst);
/* File size in bytes (asserts it exists). */
uint64_t qtest_file_size(const char *path);

/* A disk of SIZE bytes at PATH (created or replaced) in which every
 * 4 KiB block holds seeded pseudo-random data, no two chunks alike: a
 * disk in use, with no holes. */
void qtest_disk_fill(const char *path, uint64_t size, uint64_t seed);
/* The blkmig tool next to $BLKMIGD (the build directory), else
 * build/blkmig; caller frees. */
char *qtest_tool_path(void);


/* ---- A TCP proxy (qtest-proxy.c) ---- */

/* Forwards every connection to its port on to TARGET_URI (tcp:HOST:PORT
 * on this host), both ways, until stopped. */
typedef struct QTestProxy QTestProxy;
QTestProxy *qtest_proxy_start(const char *target_uri);
/* "tcp:127.0.0.1:PORT" to connect to instead of the target (borrowed). */
const char *qtest_proxy_uri(QTestProxy *p);
/* XOR MASK into the byte at OFFSET that connection CONN (0: the first
 * accepted) carries towards the target.  Call before it connects. */
void qtest_proxy_corrupt(QTestProxy *p, unsigned conn, uint64_t offset, uint8_t mask);
/* Whether that byte went through (damaged). */
bool qtest_proxy_corrupted(QTestProxy *p);
/* Close every connection and free P. */
void qtest_proxy_stop(QTestProxy *p);

/* ---- nbdkit's sh plugin over a disk file (qtest-nbdkit.c) ---- */

/* Writes tmpdir/NAME, a script for nbdkit's sh plugin that serves the
 * file DISK and runs the shell command FLUSH (which may use $disk) for
 * each flush; returns its path (caller frees). */
char *qtest_nbdkit_sh_script(const char *name, const char *disk, const char *flush);
/* nbdkit serving SCRIPT on the Unix socket SOCK, in the foreground and
 * gone with this test; its pid, once it listens (writes SOCK.pid). */
GPid qtest_nbdkit_start(const char *script, const char *sock);
/* SIGTERM and reap. */
void qtest_nbdkit_stop(GPid pid);

/* ---- Network namespaces (qtest-netns.c) ---- */

/* Run the shell command FMT; true when it exits 0.  A failure's output
 * goes to the test log. */
bool qtest_sh(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
/* Why this process cannot make network namespaces (not root, no ip(8)),
 * or NULL when it can. */
const char *qtest_netns_unavailable(void);
/* Delete the namespaces named PREFIX<pid>... whose pid no longer runs:
 * those a killed run of a test left behind. */
void qtest_netns_remove_stale(const char *prefix);

/* The blkmig tool in the background (qtest-tool.c): started with ARGS (a
 * NULL-terminated array, without the program), stdout in
 * tmpdir/LOG_NAME and stderr in tmpdir/LOG_NAME.err; it must end within
 * TIMEOUT_S. */
typedef struct QTestTool {
    GPid pid;
    char *log_path;
    char *err_path;
    gint64 deadline;
} QTestTool;
QTestTool qtest_tool_start(const char *log_name, char **args, int timeout_s);
/* Its stdout / stderr so far; caller frees. */
char *qtest_tool_output(const QTestTool *t);
char *qtest_tool_errors(const QTestTool *t);
/* The last line of its stdout, for messages; caller frees. */
char *qtest_tool_last_line(const QTestTool *t);
/* True once it exited (*STATUS its exit code).  Past the deadline it is
 * interrupted (it cancels the migration) and the test fails. */
bool qtest_tool_exited(QTestTool *t, int *status);
int qtest_tool_wait(QTestTool *t);
void qtest_tool_clear(QTestTool *t);

#endif
