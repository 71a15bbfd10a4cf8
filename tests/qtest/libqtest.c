/* Test harness for whole blkmigd daemons (see libqtest.h). */
#include "libqtest.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qapi/qmp-client.h"

#define QMP_START_TIMEOUT_MS 10000
#define POLL_INTERVAL_US (20 * 1000)
#define CHUNK (1u << 20)

struct QTestDaemon {
    char *name;
    pid_t pid;
    bool reaped;
    int wait_status;
    char *qmp_path;
    char *log_path;
    QmpClient *qmp;
};

/* Fail the running test with a formatted message; never returns. */
#define qtest_fail(...) qtest_fail_at(__FILE__, __LINE__, G_STRFUNC, __VA_ARGS__)

static void G_GNUC_NORETURN G_GNUC_PRINTF(4, 5)
qtest_fail_at(const char *file, int line, const char *func, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_assertion_message(G_LOG_DOMAIN, file, line, func, msg);
    g_free(msg);
    abort();  /* assertions may be non-fatal; a harness failure is not */
}

/* ---- scratch directory ---- */

static char *tmpdir;

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    remove(path);
    return 0;
}

static void remove_tmpdir(void)
{
    if (tmpdir && !g_getenv("KEEP_TMP")) {
        nftw(tmpdir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
}

const char *qtest_tmpdir(void)
{
    if (!tmpdir) {
        GError *err = NULL;
        tmpdir = g_dir_make_tmp("blkmig-qtest-XXXXXX", &err);
        if (!tmpdir) {
            qtest_fail("cannot create scratch directory: %s", err->message);
        }
        atexit(remove_tmpdir);
        if (g_getenv("KEEP_TMP")) {
            g_test_message("scratch directory kept: %s", tmpdir);
        }
    }
    return tmpdir;
}

char *qtest_path(const char *name)
{
    return g_build_filename(qtest_tmpdir(), name, NULL);
}

/* ---- daemons ---- */

static const char *daemon_binary(void)
{
    const char *bin = g_getenv("BLKMIGD");
    return bin && *bin ? bin : "build/blkmigd";
}

char *qtest_daemon_log_tail(QTestDaemon *d)
{
    char *text = NULL;
    gsize len = 0;
    if (!g_file_get_contents(d->log_path, &text, &len, NULL)) {
        return g_strdup("(no log)");
    }
    const gsize keep = 4000;
    char *tail = g_strdup(len > keep ? text + len - keep : text);
    g_free(text);
    return tail;
}

/* Append the words of the space-separated TEXT to ARGV. */
static void add_words(GPtrArray *argv, const char *text)
{
    char **words = g_strsplit_set(text, " \t\n", -1);
    for (char **w = words; *w; w++) {
        if (**w) {
            g_ptr_array_add(argv, g_strdup(*w));
        }
    }
    g_strfreev(words);
}

static char **build_argv(const char *prefix, const char *args, const char *qmp_path)
{
    GPtrArray *argv = g_ptr_array_new();
    add_words(argv, prefix ? prefix : "");
    g_ptr_array_add(argv, g_strdup(daemon_binary()));
    add_words(argv, args);
    g_ptr_array_add(argv, g_strdup("--qmp"));
    g_ptr_array_add(argv, g_strconcat("unix:", qmp_path, NULL));
    g_ptr_array_add(argv, NULL);
    return (char **)g_ptr_array_free(argv, FALSE);
}

/* In the child: die with the test, send output to the log, exec. */
static void G_GNUC_NORETURN exec_daemon(char **argv, int log_fd, pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) {
        _exit(126);  /* the test died before prctl took effect */
    }
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    execvp(argv[0], argv);  /* a prefix command is looked up in PATH */
    /* Only async-signal-safe calls between fork and exec. */
    static const char msg[] = "libqtest: cannot execute the daemon (set $BLKMIGD): ";
    ssize_t ignored = write(STDERR_FILENO, msg, sizeof(msg) - 1);
    ignored = write(STDERR_FILENO, argv[0], strlen(argv[0]));
    ignored = write(STDERR_FILENO, "\n", 1);
    (void)ignored;
    _exit(127);
}

/* Reap without blocking; true when the daemon has exited. */
static bool reap_nohang(QTestDaemon *d)
{
    if (!d->reaped && waitpid(d->pid, &d->wait_status, WNOHANG) == d->pid) {
        d->reaped = true;
    }
    return d->reaped;
}

static char *describe_exit(int status)
{
    if (WIFEXITED(status)) {
        return g_strdup_printf("exited with status %d", WEXITSTATUS(status));
    }
    if (WIFSIGNALED(status)) {
        return g_strdup_printf("killed by signal %d", WTERMSIG(status));
    }
    return g_strdup_printf("wait status 0x%x", status);
}

static void G_GNUC_NORETURN fail_dead(QTestDaemon *d, const char *what)
{
    g_autofree char *how = describe_exit(d->wait_status);
    g_autofree char *tail = qtest_daemon_log_tail(d);
    qtest_fail("daemon '%s' %s %s; log %s ends with:\n%s",
               d->name, how, what, d->log_path, tail);
}

/* Connect until the daemon answers QMP, it dies, or the time is up. */
static void connect_qmp(QTestDaemon *d)
{
    g_autofree char *uri = g_strconcat("unix:", d->qmp_path, NULL);
    gint64 deadline = g_get_monotonic_time() + QMP_START_TIMEOUT_MS * 1000LL;
    GError *err = NULL;

    for (;;) {
        d->qmp = qmp_client_open(uri, &err);
        if (d->qmp) {
            return;
        }
        if (reap_nohang(d)) {
            g_clear_error(&err);
            fail_dead(d, "before its QMP socket answered");
        }
        if (g_get_monotonic_time() > deadline) {
            g_autofree char *tail = qtest_daemon_log_tail(d);
            qtest_fail("daemon '%s' QMP not ready after %d ms (%s); log ends with:\n%s",
                       d->name, QMP_START_TIMEOUT_MS, err->message, tail);
        }
        g_clear_error(&err);
        g_usleep(POLL_INTERVAL_US);
    }
}

static QTestDaemon *daemon_start(const char *prefix, const char *name, const char *args)
{
    QTestDaemon *d = g_new0(QTestDaemon, 1);
    d->name = g_strdup(name);
    d->qmp_path = g_strdup_printf("%s/%s.qmp", qtest_tmpdir(), name);
    d->log_path = g_strdup_printf("%s/%s.log", qtest_tmpdir(), name);
    unlink(d->qmp_path);  /* a socket left by an earlier daemon of that name */

    int log_fd = open(d->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log_fd < 0) {
        qtest_fail("cannot create %s: %s", d->log_path, g_strerror(errno));
    }
    char **argv = build_argv(prefix, args, d->qmp_path);
    g_autofree char *cmdline = g_strjoinv(" ", argv);
    g_test_message("start %s: %s", name, cmdline);

    pid_t parent = getpid();
    d->pid = fork();
    if (d->pid == 0) {
        exec_daemon(argv, log_fd, parent);
    }
    int fork_errno = errno;
    close(log_fd);
    g_strfreev(argv);
    if (d->pid < 0) {
        qtest_fail("fork: %s", g_strerror(fork_errno));
    }
    connect_qmp(d);
    return d;
}

/* Reap PID within TIMEOUT_MS, else SIGKILL it: its exit code, or -1. */
static int reap_within(pid_t pid, int timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    int status = 0;

    while (waitpid(pid, &status, WNOHANG) != pid) {
        if (g_get_monotonic_time() > deadline) {
            kill(pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
            return -1;
        }
        g_usleep(POLL_INTERVAL_US);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The daemon, then FIRST and what follows it up to NULL. */
static char **argv_from_list(const char *first, va_list ap)
{
    GPtrArray *argv = g_ptr_array_new();
    g_ptr_array_add(argv, g_strdup(daemon_binary()));
    for (const char *a = first; a; a = va_arg(ap, const char *)) {
        g_ptr_array_add(argv, g_strdup(a));
    }
    g_ptr_array_add(argv, NULL);
    return (char **)g_ptr_array_free(argv, FALSE);
}

int qtest_daemon_run(int timeout_ms, char **output, const char *first, ...)
{
    static unsigned runs;
    va_list ap;
    va_start(ap, first);
    char **argv = argv_from_list(first, ap);
    va_end(ap);

    g_autofree char *name = g_strdup_printf("run-%u.log", runs++);
    g_autofree char *log_path = qtest_path(name);
    int log_fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log_fd < 0) {
        qtest_fail("cannot create %s: %s", log_path, g_strerror(errno));
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        exec_daemon(argv, log_fd, parent);
    }
    int fork_errno = errno;
    close(log_fd);
    if (pid < 0) {
        qtest_fail("fork: %s", g_strerror(fork_errno));
    }
    int code = reap_within(pid, timeout_ms);
    g_autofree char *text = NULL;
    g_file_get_contents(log_path, &text, NULL, NULL);
    g_autofree char *cmdline = g_strjoinv(" ", argv);
    g_test_message("run %s: exit %d\n%s", cmdline, code, text ? text : "");
    if (output) {
        *output = g_strdup(text ? text : "");
    }
    g_strfreev(argv);
    return code;
}

QTestDaemon *qtest_daemon_start(const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *args = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    return daemon_start(NULL, name, args);
}

QTestDaemon *qtest_daemon_start_prefixed(const char *prefix, const char *name,
                                         const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *args = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    return daemon_start(prefix, name, args);
}

static void daemon_free(QTestDaemon *d)
{
    qmp_client_close(d->qmp);
    unlink(d->qmp_path);
    g_free(d->name);
    g_free(d->qmp_path);
    g_free(d->log_path);
    g_free(d);
}

void qtest_daemon_kill(QTestDaemon *d)
{
    if (!d) {
        return;
    }
    if (!reap_nohang(d)) {
        kill(d->pid, SIGKILL);
        while (waitpid(d->pid, &d->wait_status, 0) < 0 && errno == EINTR) {
        }
        d->reaped = true;
    }
    daemon_free(d);
}

int qtest_daemon_wait_exit(QTestDaemon *d, int timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    while (!reap_nohang(d)) {
        if (g_get_monotonic_time() > deadline) {
            return -1;
        }
        g_usleep(10 * 1000);
    }
    return d->wait_status;
}

void qtest_daemon_quit(QTestDaemon *d)
{
    GError *err = NULL;
    JsonNode *ret = qmp_client_execute(d->qmp, "quit", NULL, NULL, &err);
    if (ret) {
        json_node_unref(ret);
    } else {
        /* The daemon may close the socket before its reply is read. */
        g_test_message("quit '%s': %s", d->name, err->message);
        g_clear_error(&err);
    }
    int status = qtest_daemon_wait_exit(d, 10000);
    if (status < 0) {
        g_autofree char *tail = qtest_daemon_log_tail(d);
        qtest_daemon_kill(d);
        qtest_fail("daemon did not exit within 10 s of quit; log ends with:\n%s", tail);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fail_dead(d, "after quit");
    }
    daemon_free(d);
}

bool qtest_daemon_alive(QTestDaemon *d)
{
    return !reap_nohang(d) && kill(d->pid, 0) == 0;
}

const char *qtest_daemon_qmp_path(QTestDaemon *d)
{
    return d->qmp_path;
}

const char *qtest_daemon_log(QTestDaemon *d)
{
    return d->log_path;
}

QmpClient *qtest_daemon_client(QTestDaemon *d)
{
    return d->qmp;
}

int qtest_daemon_pid(QTestDaemon *d)
{
    return d->pid;
}

uint64_t qtest_daemon_peak_rss(QTestDaemon *d)
{
    g_autofree char *path = g_strdup_printf("/proc/%d/status", (int)d->pid);
    g_autofree char *text = NULL;
    const char *line;

    if (!g_file_get_contents(path, &text, NULL, NULL) ||
        !(line = strstr(text, "\nVmHWM:"))) {
        qtest_fail("no VmHWM in %s (daemon %s gone?)", path, d->name);
    }
    return g_ascii_strtoull(line + strlen("\nVmHWM:"), NULL, 10) * 1024;
}

/* ---- QMP ---- */

static void G_GNUC_NORETURN fail_qmp(QTestDaemon *d, const char *cmd, GError *err)
{
    if (reap_nohang(d)) {
        fail_dead(d, "during a QMP command");
    }
    g_autofree char *tail = qtest_daemon_log_tail(d);
    qtest_fail("QMP to '%s' failed (%s) for %s; log ends with:\n%s",
               d->name, err->message, cmd, tail);
}

static JsonNode *qmp_vsend(QTestDaemon *d, const char *fmt, va_list ap)
{
    g_autofree char *text = g_strdup_vprintf(fmt, ap);
    GError *err = NULL;
    JsonNode *request = json_from_string(text, &err);
    if (!request || !JSON_NODE_HOLDS_OBJECT(request)) {
        qtest_fail("test bug: not a JSON object: %s (%s)", text,
                   err ? err->message : "not an object");
    }
    JsonNode *reply = qmp_client_request(d->qmp, request, &err);
    json_node_unref(request);
    if (!reply) {
        fail_qmp(d, text, err);
    }
    return reply;
}

JsonNode *qtest_qmp(QTestDaemon *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    JsonNode *reply = qmp_vsend(d, fmt, ap);
    va_end(ap);
    return reply;
}

JsonNode *qtest_qmp_ok(QTestDaemon *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    JsonNode *reply = qmp_vsend(d, fmt, ap);
    va_end(ap);

    const char *cls, *desc;
    if (qmp_reply_is_error(reply, &cls, &desc)) {
        g_autofree char *text = qmp_json_to_string(reply, false);
        qtest_fail("QMP command to '%s' failed: %s", d->name, text);
    }
    JsonNode *ret = json_object_get_member(json_node_get_object(reply), "return");
    if (!ret) {
        g_autofree char *text = qmp_json_to_string(reply, false);
        qtest_fail("QMP reply from '%s' has no return: %s", d->name, text);
    }
    ret = json_node_ref(ret);
    json_node_unref(reply);
    return ret;
}

char *qtest_qmp_error(QTestDaemon *d, char **desc_out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    JsonNode *reply = qmp_vsend(d, fmt, ap);
    va_end(ap);

    const char *cls, *desc;
    if (!qmp_reply_is_error(reply, &cls, &desc)) {
        g_autofree char *text = qmp_json_to_string(reply, false);
        qtest_fail("QMP command to '%s' was expected to fail: %s", d->name, text);
    }
    char *cls_copy = g_strdup(cls);
    if (desc_out) {
        *desc_out = g_strdup(desc);
    }
    json_node_unref(reply);
    return cls_copy;
}

JsonNode *qtest_event_wait(QTestDaemon *d, const char *name, int timeout_ms)
{
    GError *err = NULL;
    JsonNode *ev = qmp_client_event_wait(d->qmp, name, timeout_ms, &err);
    if (!ev) {
        if (!g_error_matches(err, QMP_CLIENT_ERROR, QMP_CLIENT_ERR_TIMEOUT)) {
            fail_qmp(d, name, err);
        }
        g_error_free(err);
    }
    return ev;
}

char *qtest_runstate(QTestDaemon *d)
{
    JsonNode *ret = qtest_qmp_ok(d, "{\"execute\": \"query-status\"}");
    char *state = g_strdup(qtest_json_str(ret, "status"));
    json_node_unref(ret);
    return state;
}

JsonNode *qtest_query_migrate(QTestDaemon *d)
{
    return qtest_qmp_ok(d, "{\"execute\": \"query-migrate\"}");
}

static bool status_is_final(const char *status)
{
    return !strcmp(status, "completed") || !strcmp(status, "failed") ||
           !strcmp(status, "cancelled");
}

static JsonNode *migrate_poll(QTestDaemon *d, const char *want, int timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    for (;;) {
        JsonNode *info = qtest_query_migrate(d);
        JsonNode *st = qtest_json_get(info, "status");
        const char *status = st ? json_node_get_string(st) : "(none)";
        if (want ? !strcmp(status, want) : status_is_final(status)) {
            return info;
        }
        if (want && status_is_final(status)) {
            g_autofree char *text = qmp_json_to_string(info, false);
            g_autofree char *tail = qtest_daemon_log_tail(d);
            qtest_fail("'%s' migration ended '%s' while waiting for '%s': %s\nlog:\n%s",
                       d->name, status, want, text, tail);
        }
        if (g_get_monotonic_time() > deadline) {
            g_autofree char *text = qmp_json_to_string(info, false);
            g_autofree char *tail = qtest_daemon_log_tail(d);
            qtest_fail("'%s' migration still '%s' after %d ms: %s\nlog:\n%s",
                       d->name, status, timeout_ms, text, tail);
        }
        json_node_unref(info);
        g_usleep(POLL_INTERVAL_US);
    }
}

JsonNode *qtest_migrate_wait(QTestDaemon *d, int timeout_ms)
{
    return migrate_poll(d, NULL, timeout_ms);
}

JsonNode *qtest_migrate_wait_status(QTestDaemon *d, const char *status, int timeout_ms)
{
    return migrate_poll(d, status, timeout_ms);
}

void qtest_wait_runstate(QTestDaemon *d, const char *state, int timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    for (;;) {
        g_autofree char *now = qtest_runstate(d);
        if (!strcmp(now, state)) {
            return;
        }
        if (g_get_monotonic_time() > deadline) {
            qtest_fail("'%s' runstate is '%s', expected '%s' within %d ms",
                       d->name, now, state, timeout_ms);
        }
        g_usleep(POLL_INTERVAL_US);
    }
}

void qtest_set_caps(QTestDaemon *d, ...)
{
    GString *caps = g_string_new("");
    va_list ap;
    va_start(ap, d);
    for (const char *name = va_arg(ap, const char *); name; name = va_arg(ap, const char *)) {
        g_string_append_printf(caps, "%s{\"capability\": \"%s\", \"state\": true}",
                               caps->len ? ", " : "", name);
    }
    va_end(ap);
    JsonNode *ret = qtest_qmp_ok(d, "{\"execute\": \"migrate-set-capabilities\","
                                 " \"arguments\": {\"capabilities\": [%s]}}", caps->str);
    json_node_unref(ret);
    g_string_free(caps, TRUE);
}

void qtest_set_params(QTestDaemon *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *members = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    json_node_unref(qtest_qmp_ok(d, "{\"execute\": \"migrate-set-parameters\","
                                 " \"arguments\": {%s}}", members));
}

void qtest_migrate_start(QTestDaemon *src, const char *uri)
{
    json_node_unref(qtest_qmp_ok(src, "{\"execute\": \"migrate\", \"arguments\":"
                                 " {\"uri\": \"%s\"}}", uri));
}

char *qtest_tcp_uri(void)
{
    return g_strdup_printf("tcp:127.0.0.1:%d", qtest_free_port());
}

/* ---- JSON paths ---- */

JsonNode *qtest_json_get(JsonNode *obj, const char *path)
{
    char **parts = g_strsplit(path, ".", -1);
    JsonNode *node = obj;
    for (char **p = parts; node && *p; p++) {
        node = JSON_NODE_HOLDS_OBJECT(node)
            ? json_object_get_member(json_node_get_object(node), *p) : NULL;
    }
    g_strfreev(parts);
    return node;
}

static JsonNode *json_need(JsonNode *obj, const char *path, GType type)
{
    JsonNode *node = qtest_json_get(obj, path);
    if (!node || !JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != type) {
        g_autofree char *text = qmp_json_to_string(obj, false);
        qtest_fail("expected %s member '%s' in %s", g_type_name(type), path, text);
    }
    return node;
}

gint64 qtest_json_int(JsonNode *obj, const char *path)
{
    return json_node_get_int(json_need(obj, path, G_TYPE_INT64));
}

const char *qtest_json_str(JsonNode *obj, const char *path)
{
    return json_node_get_string(json_need(obj, path, G_TYPE_STRING));
}

bool qtest_json_bool(JsonNode *obj, const char *path)
{
    return json_node_get_boolean(json_need(obj, path, G_TYPE_BOOLEAN));
}

/* ---- disk files ---- */

static int open_or_fail(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC, 0644);
    if (fd < 0) {
        qtest_fail("open %s: %s", path, g_strerror(errno));
    }
    return fd;
}

uint64_t qtest_file_size(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        qtest_fail("stat %s: %s", path, g_strerror(errno));
    }
    return (uint64_t)st.st_size;
}

uint64_t qtest_allocated_bytes(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        qtest_fail("stat %s: %s", path, g_strerror(errno));
    }
    return (uint64_t)st.st_blocks * 512;
}

void qtest_disk_create(const char *path, uint64_t size)
{
    int fd = open_or_fail(path, O_WRONLY | O_CREAT | O_TRUNC);
    if (ftruncate(fd, (off_t)size) < 0) {
        qtest_fail("ftruncate %s: %s", path, g_strerror(errno));
    }
    close(fd);
}

static void pread_full(int fd, void *buf, size_t len, uint64_t off, const char *path)
{
    ssize_t n = pread(fd, buf, len, (off_t)off);
    if (n != (ssize_t)len) {
        qtest_fail("read %s at %" G_GUINT64_FORMAT ": %s", path, off,
                   n < 0 ? g_strerror(errno) : "short read");
    }
}

static void pwrite_full(int fd, const void *buf, size_t len, uint64_t off, const char *path)
{
    ssize_t n = pwrite(fd, buf, len, (off_t)off);
    if (n != (ssize_t)len) {
        qtest_fail("write %s at %" G_GUINT64_FORMAT ": %s", path, off,
                   n < 0 ? g_strerror(errno) : "short write");
    }
}

/* Random bytes, with every 4 KiB block holding a non-zero byte so no block
 * of the run can be mistaken for a hole. */
static void fill_random(GRand *rng, guint8 *buf, uint64_t len)
{
    for (uint64_t i = 0; i < len; i += 4) {
        guint32 v = g_rand_int(rng);
        memcpy(buf + i, &v, MIN(4, len - i));
    }
    for (uint64_t i = 0; i < len; i += 4096) {
        buf[i] |= 1;
    }
}

uint64_t qtest_disk_scatter(const char *path, uint64_t seed, unsigned runs, uint64_t run_len)
{
    uint64_t size = qtest_file_size(path);
    g_assert_cmpuint(run_len, <=, size);
    guint32 seeds[2] = { (guint32)seed, (guint32)(seed >> 32) };
    GRand *rng = g_rand_new_with_seed_array(seeds, 2);
    uint64_t slots = (size - run_len) / 4096 + 1;
    uint64_t nchunks = (size + CHUNK - 1) / CHUNK;
    guint8 *touched = g_new0(guint8, nchunks);
    guint8 *buf = g_malloc(run_len);
    int fd = open_or_fail(path, O_WRONLY);

    for (unsigned i = 0; i < runs; i++) {
        uint64_t r = ((uint64_t)g_rand_int(rng) << 32) | g_rand_int(rng);
        uint64_t off = (r % slots) * 4096;
        fill_random(rng, buf, run_len);
        pwrite_full(fd, buf, run_len, off, path);
        for (uint64_t c = off / CHUNK; c <= (off + run_len - 1) / CHUNK; c++) {
            touched[c] = 1;
        }
    }
    close(fd);

    uint64_t count = 0;
    for (uint64_t c = 0; c < nchunks; c++) {
        count += touched[c];
    }
    g_free(buf);
    g_free(touched);
    g_rand_free(rng);
    return count;
}

void qtest_disk_fill(const char *path, uint64_t size, uint64_t seed)
{
    GRand *rng = g_rand_new_with_seed((guint32)seed);
    guint8 *buf = g_malloc(CHUNK);
    int fd = open_or_fail(path, O_WRONLY | O_CREAT | O_TRUNC);

    fill_random(rng, buf, CHUNK);
    for (uint64_t off = 0; off < size; off += CHUNK) {
        /* Each block stamped with its offset: chunks differ, none is zero. */
        for (uint64_t b = 0; b < CHUNK; b += 4096) {
            uint64_t stamp = off + b + 1;
            memcpy(buf + b, &stamp, sizeof(stamp));
        }
        pwrite_full(fd, buf, MIN(CHUNK, size - off), off, path);
    }
    close(fd);
    g_free(buf);
    g_rand_free(rng);
}

char *qtest_tool_path(void)
{
    const char *daemon = g_getenv("BLKMIGD");

    if (daemon && *daemon) {
        g_autofree char *dir = g_path_get_dirname(daemon);
        return g_build_filename(dir, "blkmig", NULL);
    }
    return g_strdup("build/blkmig");
}

/* Next data offset at or after OFF, or SIZE when only holes follow. */
static uint64_t next_data(int fd, uint64_t off, uint64_t size)
{
    if (off >= size) {
        return size;
    }
    off_t r = lseek(fd, (off_t)off, SEEK_DATA);
    return r < 0 ? size : MIN((uint64_t)r, size);
}

static bool all_zero(const guint8 *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (buf[i]) {
            return false;
        }
    }
    return true;
}

uint64_t qtest_disk_data_chunks(const char *path)
{
    uint64_t size = qtest_file_size(path);
    int fd = open_or_fail(path, O_RDONLY);
    guint8 *buf = g_malloc(CHUNK);
    uint64_t count = 0;

    for (uint64_t off = 0; off < size; off += CHUNK) {
        uint64_t data = next_data(fd, off, size);
        if (data >= size) {
            break;
        }
        off = data / CHUNK * CHUNK;  /* holes between chunks are skipped */
        size_t len = MIN(CHUNK, size - off);
        pread_full(fd, buf, len, off, path);
        count += !all_zero(buf, len);
    }
    g_free(buf);
    close(fd);
    return count;
}

uint64_t qtest_disk_nonzero_bytes(const char *path)
{
    const size_t block = 4096;
    uint64_t size = qtest_file_size(path);
    int fd = open_or_fail(path, O_RDONLY);
    guint8 *buf = g_malloc(CHUNK);
    uint64_t count = 0;

    for (uint64_t off = 0; off < size; off += CHUNK) {
        uint64_t data = next_data(fd, off, size);
        if (data >= size) {
            break;
        }
        off = data / CHUNK * CHUNK;
        size_t len = MIN(CHUNK, size - off);
        pread_full(fd, buf, len, off, path);
        for (size_t i = 0; i < len; i += block) {
            size_t n = MIN(block, len - i);
            count += all_zero(buf + i, n) ? 0 : n;
        }
    }
    g_free(buf);
    close(fd);
    return count;
}

/* First differing byte of two equally long buffers, or LEN. */
static size_t first_mismatch(const guint8 *a, const guint8 *b, size_t len)
{
    if (memcmp(a, b, len) == 0) {
        return len;
    }
    size_t i = 0;
    while (a[i] == b[i]) {
        i++;
    }
    return i;
}

bool qtest_files_equal(const char *a, const char *b, uint64_t *first_diff)
{
    uint64_t size = qtest_file_size(a);
    uint64_t size_b = qtest_file_size(b);
    int fa = open_or_fail(a, O_RDONLY);
    int fb = open_or_fail(b, O_RDONLY);
    guint8 *ba = g_malloc(CHUNK), *bb = g_malloc(CHUNK);
    uint64_t common = MIN(size, size_b);
    uint64_t diff = size == size_b ? UINT64_MAX : common;
    uint64_t off = 0;

    while (off < common && diff == UINT64_MAX) {
        /* Where both files are holes they read as zeroes: skip. */
        uint64_t data = MIN(next_data(fa, off, common), next_data(fb, off, common));
        if (data > off) {
            off = data;
            continue;
        }
        size_t len = MIN(CHUNK, common - off);
        pread_full(fa, ba, len, off, a);
        pread_full(fb, bb, len, off, b);
        size_t at = first_mismatch(ba, bb, len);
        if (at < len) {
            diff = off + at;
        }
        off += len;
    }
    g_free(ba);
    g_free(bb);
    close(fa);
    close(fb);
    if (diff != UINT64_MAX && first_diff) {
        *first_diff = diff;
    }
    return diff == UINT64_MAX;
}

void qtest_disk_copy(const char *src, const char *dst)
{
    uint64_t size = qtest_file_size(src);
    int in = open_or_fail(src, O_RDONLY);
    int out = open_or_fail(dst, O_WRONLY | O_CREAT | O_TRUNC);
    guint8 *buf = g_malloc(CHUNK);

    if (ftruncate(out, (off_t)size) < 0) {
        qtest_fail("ftruncate %s: %s", dst, g_strerror(errno));
    }
    for (uint64_t off = next_data(in, 0, size); off < size;) {
        off_t hole = lseek(in, (off_t)off, SEEK_HOLE);
        uint64_t end = hole < 0 ? size : MIN((uint64_t)hole, size);
        for (; off < end; off += CHUNK) {
            size_t len = MIN(CHUNK, end - off);
            pread_full(in, buf, len, off, src);
            pwrite_full(out, buf, len, off, dst);
        }
        off = next_data(in, end, size);
    }
    g_free(buf);
    close(in);
    close(out);
}

/* ---- misc ---- */

int qtest_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET,
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof(addr);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) < 0) {
        qtest_fail("cannot find a free port: %s", g_strerror(errno));
    }
    close(fd);
    return ntohs(addr.sin_port);
}

bool qtest_have_program(const char *prog)
{
    g_autofree char *path = g_find_program_in_path(prog);
    return path != NULL;
}
