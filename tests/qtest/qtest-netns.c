/* Network namespaces for whole-daemon tests (libqtest.h): shell commands
 * with their failures in the test log, whether namespaces can be made
 * here, and the clean-up of namespaces a killed test left behind. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "libqtest.h"

bool qtest_sh(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *cmd = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_autofree char *out = NULL, *err = NULL;
    int status = -1;

    if (!g_spawn_command_line_sync(cmd, &out, &err, &status, NULL)) {
        return false;
    }
    if (status != 0) {
        g_test_message("'%s' failed: %s%s", cmd, out, err);
    }
    return g_spawn_check_wait_status(status, NULL);
}

const char *qtest_netns_unavailable(void)
{
    if (geteuid() != 0 || !qtest_have_program("ip")) {
        return "network namespaces need root and ip(8)";
    }
    return NULL;
}

void qtest_netns_remove_stale(const char *prefix)
{
    g_autofree char *out = NULL;
    if (!g_spawn_command_line_sync("ip netns list", &out, NULL, NULL, NULL)) {
        return;
    }
    g_auto(GStrv) lines = g_strsplit(out, "\n", -1);
    for (char **l = lines; *l; l++) {
        if (!g_str_has_prefix(*l, prefix)) {
            continue;
        }
        long pid = strtol(*l + strlen(prefix), NULL, 10);
        if (pid > 0 && kill(pid, 0) < 0 && errno == ESRCH) {
            g_autofree char *name = g_strndup(*l, strcspn(*l, " "));
            qtest_sh("ip netns del %s", name);
        }
    }
}
