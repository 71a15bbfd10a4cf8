/* The blkmig tool run in the background by a test, its output in files
 * of the scratch directory, with a deadline (see libqtest.h). */
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libqtest.h"

#define TOOL_POLL_US (25 * 1000)

static int open_log(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

    g_assert_cmpint(fd, >=, 0);
    return fd;
}

QTestTool qtest_tool_start(const char *log_name, char **args, int timeout_s)
{
    g_autofree char *err_name = g_strdup_printf("%s.err", log_name);
    QTestTool t = { .log_path = qtest_path(log_name), .err_path = qtest_path(err_name),
                    .deadline = g_get_monotonic_time() + timeout_s * G_USEC_PER_SEC };
    g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
    int out = open_log(t.log_path), err_fd = open_log(t.err_path);
    GError *err = NULL;

    g_ptr_array_add(argv, qtest_tool_path());
    for (char **a = args; *a; a++) {
        g_ptr_array_add(argv, g_strdup(*a));
    }
    g_ptr_array_add(argv, NULL);
    g_spawn_async_with_fds(NULL, (char **)argv->pdata, NULL, G_SPAWN_DO_NOT_REAP_CHILD, NULL,
                           NULL, &t.pid, -1, out, err_fd, &err);
    g_assert_no_error(err);
    close(out);
    close(err_fd);
    return t;
}

static char *read_file(const char *path)
{
    char *text = NULL;

    g_assert_true(g_file_get_contents(path, &text, NULL, NULL));
    return text;
}

char *qtest_tool_output(const QTestTool *t)
{
    return read_file(t->log_path);
}

char *qtest_tool_errors(const QTestTool *t)
{
    return read_file(t->err_path);
}

char *qtest_tool_last_line(const QTestTool *t)
{
    char *text = g_strchomp(qtest_tool_output(t));
    const char *nl = strrchr(text, '\n');
    char *last = g_strdup(nl ? nl + 1 : text);

    g_free(text);
    return last;
}

bool qtest_tool_exited(QTestTool *t, int *status)
{
    int ws;
    pid_t r = waitpid(t->pid, &ws, WNOHANG);

    if (r == t->pid) {
        *status = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
        return true;
    }
    if (g_get_monotonic_time() > t->deadline) {
        g_autofree char *last = qtest_tool_last_line(t);
        kill(t->pid, SIGINT);
        g_usleep(2 * G_USEC_PER_SEC);
        kill(t->pid, SIGKILL);
        waitpid(t->pid, &ws, 0);
        g_error("blkmig did not finish in time (the migration does not converge?); "
                "its last line: %s", last);
    }
    return false;
}

int qtest_tool_wait(QTestTool *t)
{
    int status;

    while (!qtest_tool_exited(t, &status)) {
        g_usleep(TOOL_POLL_US);
    }
    return status;
}

void qtest_tool_clear(QTestTool *t)
{
    g_free(t->log_path);
    g_free(t->err_path);
}
