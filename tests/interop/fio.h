/* fio as the guest in interop tests: its nbd engine against a blkmigd
 * export, verified writes, and reading its JSON results. */
#ifndef TESTS_INTEROP_FIO_H
#define TESTS_INTEROP_FIO_H

#include <glib.h>
#include <sys/types.h>

/* The arguments a writing run and its verify_only run share (same jobs,
 * seeds and offsets): JOBS connections writing IOS verified 4 KiB blocks
 * each, at random in their own SIZE_MIB slice of the export at URI. */
GPtrArray *fio_verified_args(const char *uri, unsigned jobs, unsigned ios, unsigned size_mib);
/* Run fio with ARGS plus EXTRA (NULL-terminated) in the background,
 * output to LOG (may be NULL). */
pid_t fio_spawn(const char *log, GPtrArray *args, ...) G_GNUC_NULL_TERMINATED;
/* Wait up to TIMEOUT_MS for fio to exit 0; the test fails otherwise,
 * showing its output, WHAT says which run. */
void fio_wait_ok(pid_t pid, const char *log, int timeout_ms, const char *what);
/* read.io_bytes of the single job group in fio's --output-format=json
 * output at JSON_PATH. */
gint64 fio_read_bytes(const char *json_path);
/* The whole file at PATH, or "(no output)" (caller frees). */
char *fio_read_log(const char *path);

#endif
