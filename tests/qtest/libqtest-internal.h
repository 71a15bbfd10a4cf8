/* What the files of the whole-daemon harness share (libqtest.h is the
 * tests' header): the daemon's record and the harness's own failures. */
#ifndef TESTS_LIBQTEST_INTERNAL_H
#define TESTS_LIBQTEST_INTERNAL_H

#include <stdbool.h>
#include <sys/types.h>

#include "libqtest.h"
#include "qapi/qmp-client.h"

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
void G_GNUC_NORETURN G_GNUC_PRINTF(4, 5)
qtest_fail_at(const char *file, int line, const char *func, const char *fmt, ...);

/* qtest-daemon.c: reap D without blocking, true once it has exited; fail
 * the test saying that D died (it was reaped), WHAT it was doing. */
bool qtest_reap_nohang(QTestDaemon *d);
void G_GNUC_NORETURN qtest_fail_dead(QTestDaemon *d, const char *what);

#endif
