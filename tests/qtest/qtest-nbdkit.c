/* A destination drive on a slow filer, for whole-daemon tests: nbdkit's
 * sh plugin serving a disk file over a Unix socket, with a flush that
 * runs whatever shell command the test gives it (a sleep, say). */
#include <glib/gstdio.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "libqtest.h"

/* How often, and how many times, to look for nbdkit's pidfile. */
#define PIDFILE_POLL_US (50 * 1000)
#define PIDFILE_POLLS 200

char *qtest_nbdkit_sh_script(const char *name, const char *disk, const char *flush)
{
    char *script = qtest_path(name);
    g_autofree char *text = g_strdup_printf(
        "#!/bin/sh\n"
        "disk='%s'\n"
        "case \"$1\" in\n"
        "get_size) stat -L -c %%s \"$disk\" ;;\n"
        "pread) dd if=\"$disk\" skip=\"$4\" count=\"$3\" iflag=skip_bytes,count_bytes "
        "status=none ;;\n"
        "pwrite) dd of=\"$disk\" seek=\"$4\" oflag=seek_bytes conv=notrunc status=none ;;\n"
        "can_write|can_flush) exit 0 ;;\n"
        "flush) %s ;;\n"
        "*) exit 2 ;;\n"
        "esac\n", disk, flush);

    g_assert_true(g_file_set_contents(script, text, -1, NULL));
    g_assert_cmpint(g_chmod(script, 0755), ==, 0);
    return script;
}

GPid qtest_nbdkit_start(const char *script, const char *sock)
{
    g_autofree char *pidfile = g_strdup_printf("%s.pid", sock);
    char *argv[] = { "nbdkit", "-f", "--exit-with-parent", "-U", (char *)sock, "-P", pidfile,
                     "sh", (char *)script, NULL };
    GPid pid;

    unlink(sock);
    unlink(pidfile);
    g_assert_true(g_spawn_async(NULL, argv, NULL,
                                G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD |
                                G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL, &pid, NULL));
    for (int i = 0; i < PIDFILE_POLLS && !g_file_test(pidfile, G_FILE_TEST_EXISTS); i++) {
        g_usleep(PIDFILE_POLL_US);
    }
    g_assert_true(g_file_test(pidfile, G_FILE_TEST_EXISTS));
    return pid;
}

void qtest_nbdkit_stop(GPid pid)
{
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
    g_spawn_close_pid(pid);
}
