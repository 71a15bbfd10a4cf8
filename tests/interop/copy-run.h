/* Running `blkmig copy` from interop tests, and judging its results:
 * identical (qemu-img compare) and as thin as the source. */
#ifndef TESTS_INTEROP_COPY_RUN_H
#define TESTS_INTEROP_COPY_RUN_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct CopyRun {
    int status;             /* exit status; -1 when killed */
    char *out;
    char *err;
} CopyRun;

/* blkmig copy with the NULL-terminated arguments, in the scratch
 * directory, killed after two minutes. */
CopyRun copy_tool(const char *first, ...) G_GNUC_NULL_TERMINATED;
/* The same with a NULL-terminated array. */
CopyRun copy_toolv(const char *const *args);
/* The same through `sh -c SCRIPT`, where $BLKMIG is the tool. */
CopyRun copy_shell(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
void copy_run_clear(CopyRun *r);
/* Asserts R's exit status and that its stderr holds NEEDLE (may be NULL). */
void copy_expect(const CopyRun *r, int status, const char *needle);

/* The absolute path of the blkmig tool. */
char *copy_tool_path(void);
/* A raw image of SIZE in the scratch directory holding data runs, an
 * explicitly written zero run, and holes (qemu-io writes them). */
char *copy_make_raw(const char *name, uint64_t size);
/* Allocation of COPY at most 1% + 1 MiB over ORIG's (less is fine: an
 * image qemu-io wrote zeroes into holds allocated zeroes a copy skips). */
void copy_assert_thin(const char *copy, const char *orig);
/* 'Progress: N' lines in TEXT: at least one, N never going back, the
 * last 100. */
void copy_assert_progress(const char *text);

#endif
