/* Whole-daemon harness: starting blkmigd processes (and the blkmig tool
 * beside them, and QEMU for interop), reaping and killing them, their
 * logs. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libqtest-internal.h"

#define QMP_START_TIMEOUT_MS 10000
#define POLL_INTERVAL_US (20 * 1000)

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

static const char *qemu_binary(void)
{
    const char *bin = g_getenv("QEMU");
    return bin && *bin ? bin : "qemu-system-x86_64";
}

/* blkmigd, or QEMU (whose QMP option is spelt its own way). */
static char **build_argv(const char *prefix, bool qemu, const char *args,
                         const char *qmp_path)
{
    GPtrArray *argv = g_ptr_array_new();
    add_words(argv, prefix ? prefix : "");
    g_ptr_array_add(argv, g_strdup(qemu ? qemu_binary() : daemon_binary()));
    add_words(argv, args);
    g_ptr_array_add(argv, g_strdup(qemu ? "-qmp" : "--qmp"));
    g_ptr_array_add(argv, g_strconcat("unix:", qmp_path, qemu ? ",server=on,wait=off" : "",
                                      NULL));
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
bool qtest_reap_nohang(QTestDaemon *d)
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

void qtest_fail_dead(QTestDaemon *d, const char *what)
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
        if (qtest_reap_nohang(d)) {
            g_clear_error(&err);
            qtest_fail_dead(d, "before its QMP socket answered");
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

static QTestDaemon *daemon_start(const char *prefix, bool qemu, const char *name,
                                 const char *args)
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
    char **argv = build_argv(prefix, qemu, args, d->qmp_path);
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
    return daemon_start(NULL, false, name, args);
}

QTestDaemon *qtest_qemu_start(const char *name, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *args = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    return daemon_start(NULL, true, name, args);
}

QTestDaemon *qtest_daemon_start_prefixed(const char *prefix, const char *name,
                                         const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *args = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    return daemon_start(prefix, false, name, args);
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
    if (!qtest_reap_nohang(d)) {
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
    while (!qtest_reap_nohang(d)) {
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
        qtest_fail_dead(d, "after quit");
    }
    daemon_free(d);
}

bool qtest_daemon_alive(QTestDaemon *d)
{
    return !qtest_reap_nohang(d) && kill(d->pid, 0) == 0;
}

const char *qtest_daemon_qmp_path(QTestDaemon *d)
{
    return d->qmp_path;
}

char *qtest_daemon_qmp_uri(QTestDaemon *d)
{
    return g_strdup_printf("unix:%s", d->qmp_path);
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

char *qtest_tool_path(void)
{
    const char *daemon = g_getenv("BLKMIGD");

    if (daemon && *daemon) {
        g_autofree char *dir = g_path_get_dirname(daemon);
        return g_build_filename(dir, "blkmig", NULL);
    }
    return g_strdup("build/blkmig");
}
