/* Scanning a mapped source (bdrv_map_read) without dying of it.  A page
 * of a mapping that can no longer be read (the file shrank under the
 * copy, or its disk failed after the pages were read in) raises SIGBUS
 * when touched; on the worker scanning it for zeroes that becomes a
 * failed read of the item, reported with its offset like any other.
 * Writes from a mapping need no guard: the kernel reads it and returns
 * EFAULT instead.  A SIGBUS anywhere else keeps its default action. */
#include <glib.h>
#include <setjmp.h>
#include <signal.h>

#include "copy-int.h"
#include "util/zero.h"

static __thread sigjmp_buf *scan_guard;

static void on_sigbus(int sig, siginfo_t *info, void *uctx)
{
    if (scan_guard) {
        siglongjmp(*scan_guard, 1);
    }
    /* Not a guarded scan: back to the default, and the faulting access,
     * run again on return, ends the process as it would have. */
    signal(SIGBUS, SIG_DFL);
}

static void install_handler(void)
{
    static gsize installed;

    if (g_once_init_enter(&installed)) {
        struct sigaction sa = { .sa_sigaction = on_sigbus, .sa_flags = SA_SIGINFO | SA_NODEFER };
        sigemptyset(&sa.sa_mask);
        sigaction(SIGBUS, &sa, NULL);
        g_once_init_leave(&installed, 1);
    }
}

bool copy_mapped_zero_run(const uint8_t *p, size_t len, uint64_t off, size_t *run, bool *zero)
{
    sigjmp_buf jb;
    volatile bool ok = true;

    install_handler();
    if (sigsetjmp(jb, 0) == 0) {
        scan_guard = &jb;
        *run = buffer_zero_run(p, len, off, COPY_ZERO_GRAIN, zero);
    } else {
        ok = false;
    }
    scan_guard = NULL;
    return ok;
}
