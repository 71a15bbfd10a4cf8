/* The whole-daemon harness (libqtest.h): the harness's own failures, the
 * scratch directory, free ports, connections and programs on PATH.  Daemons, QMP,
 * JSON paths and disk files have files of their own (qtest-*.c). */
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "libqtest-internal.h"
#include "util/sockets.h"

void G_GNUC_NORETURN G_GNUC_PRINTF(4, 5)
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

/* ---- ports and programs ---- */

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

int qtest_connect(const char *uri)
{
    GError *err = NULL;
    Endpoint ep;
    int fd = -1;

    if (endpoint_parse(uri, (1u << ENDPOINT_TCP) | (1u << ENDPOINT_UNIX), &ep, &err)) {
        fd = endpoint_connect(&ep, &err);
        endpoint_clear(&ep);
    }
    if (fd < 0) {
        qtest_fail("cannot connect to %s: %s", uri, err->message);
    }
    return fd;
}

bool qtest_have_program(const char *prog)
{
    g_autofree char *path = g_find_program_in_path(prog);
    return path != NULL;
}
