/* Operator safety of whole blkmigd daemons (issue 8): a daemon nothing
 * could control refuses to start. */
#include <string.h>
#include <unistd.h>

#include "libqtest.h"

/* Start-ups that must fail do so at once; one that runs is killed then. */
#define RUN_TIMEOUT_MS 10000
/* How long a start-up that must go on is watched before it is killed. */
#define KEEPS_RUNNING_MS 3000

/* ---- helpers ---- */

static void assert_contains(const char *text, const char *want)
{
    if (!strstr(text, want)) {
        g_error("expected '%s' in:\n%s", want, text);
    }
}

/* ---- a daemon nothing can control ---- */

static void test_needs_qmp(void)
{
    g_autofree char *out = NULL;
    g_assert_cmpint(qtest_daemon_run(RUN_TIMEOUT_MS, &out, NULL, NULL), ==, 64);
    assert_contains(out, "--qmp");

    g_autofree char *sock = qtest_path("noqmp.sock");
    g_autofree char *nbd_uri = g_strconcat("unix:", sock, NULL);
    g_clear_pointer(&out, g_free);
    g_assert_cmpint(qtest_daemon_run(RUN_TIMEOUT_MS, &out, "--daemonize", "--nbd", nbd_uri,
                                     NULL), ==, 64);
    assert_contains(out, "--daemonize needs --qmp");

    /* In the foreground with something to serve: runs, with a warning
     * (-1: still running when it was killed). */
    g_autofree char *img = qtest_path("noqmp.raw");
    g_autofree char *drive = g_strdup_printf("id=d,file=%s,size=1M,create=on", img);
    unlink(img);
    g_clear_pointer(&out, g_free);
    g_assert_cmpint(qtest_daemon_run(KEEPS_RUNNING_MS, &out, "--drive", drive, "--nbd",
                                     nbd_uri, NULL), ==, -1);
    assert_contains(out, "warning: no --qmp");
    unlink(img);
    unlink(sock);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/safety/cmdline/needs-qmp", test_needs_qmp);
    return g_test_run();
}
