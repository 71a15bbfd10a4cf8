/* --daemonize and --pidfile.
 *
 * The fork happens before start-up, while blkmigd is still one thread
 * (threads do not survive fork), and the parent stays until the child is
 * ready: it exits 0 once the child reports success over a pipe, or with
 * the child's own exit code if the child dies first.  So whoever runs
 * "blkmigd --daemonize" finds every socket listening when it returns, and
 * start-up errors still reach its stderr and exit code. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "system-internal.h"

static int ready_fd = -1;       /* child: write end of the readiness pipe */
static int pidfile_fd = -1;     /* held open (and locked) while we run */
static char *pidfile_path;

static void set_errno_error(GError **errp, const char *what)
{
    int err = errno;
    g_set_error(errp, BLKMIGD_ERROR, 0, "%s: %s", what, g_strerror(err));
}

G_GNUC_NORETURN static void parent_wait(int fd, pid_t child)
{
    unsigned char status;
    ssize_t n;
    do {
        n = read(fd, &status, 1);
    } while (n < 0 && errno == EINTR);
    if (n == 1) {
        _exit(status);
    }
    int wstatus = 0;
    while (waitpid(child, &wstatus, 0) < 0 && errno == EINTR) {
    }
    int code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 1;
    _exit(code ? code : 1);
}

bool daemonize_start(GError **errp)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0) {
        set_errno_error(errp, "--daemonize: pipe");
        return false;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        set_errno_error(errp, "--daemonize: fork");
        close(fds[0]);
        close(fds[1]);
        return false;
    }
    if (pid > 0) {
        close(fds[1]);
        parent_wait(fds[0], pid);
    }
    close(fds[0]);
    ready_fd = fds[1];
    setsid();
    return true;
}

static void redirect_to_null(int target)
{
    int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (fd >= 0) {
        dup2(fd, target);
        close(fd);
    }
}

void daemonize_ready(void)
{
    if (ready_fd < 0) {
        return;
    }
    unsigned char ok = 0;
    ssize_t n;
    do {
        n = write(ready_fd, &ok, 1);
    } while (n < 0 && errno == EINTR);
    close(ready_fd);
    ready_fd = -1;
    /* Messages go to --log from now on; the terminal is not ours. */
    redirect_to_null(STDIN_FILENO);
    redirect_to_null(STDOUT_FILENO);
    redirect_to_null(STDERR_FILENO);
}

/* The lock keeps a second blkmigd from taking over a live pidfile. */
bool pidfile_write(const char *path, GError **errp)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        g_set_error(errp, BLKMIGD_ERROR, 0, "--pidfile: cannot open '%s': %s", path,
                    g_strerror(errno));
        return false;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        g_set_error(errp, BLKMIGD_ERROR, 0, "--pidfile: '%s' is locked by another process",
                    path);
        close(fd);
        return false;
    }
    char *text = g_strdup_printf("%d\n", (int)getpid());
    size_t len = strlen(text);
    bool ok = ftruncate(fd, 0) == 0 && write(fd, text, len) == (ssize_t)len;
    g_free(text);
    if (!ok) {
        g_set_error(errp, BLKMIGD_ERROR, 0, "--pidfile: cannot write '%s': %s", path,
                    g_strerror(errno));
        unlink(path);
        close(fd);
        return false;
    }
    pidfile_fd = fd;
    pidfile_path = g_canonicalize_filename(path, NULL);
    return true;
}

void pidfile_remove(void)
{
    if (pidfile_fd >= 0) {
        unlink(pidfile_path);
        close(pidfile_fd);
        pidfile_fd = -1;
        g_clear_pointer(&pidfile_path, g_free);
    }
}
