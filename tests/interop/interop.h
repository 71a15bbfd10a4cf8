/* Helpers for tests that drive real third-party tools (qemu-img, qemu-io,
 * nbdinfo, nbdcopy, fio) against blkmigd. */
#ifndef TESTS_INTEROP_INTEROP_H
#define TESTS_INTEROP_INTEROP_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* g_test_skip with a message and false when PROG is not on PATH. */
bool interop_need(const char *prog);

/* Run PROG with the NULL-terminated arguments and wait; returns the exit
 * status (or -1 when killed by a signal).  *out / *err (optional) get the
 * output; both are also logged with g_test_message on failure. */
int interop_run(char **out, char **err, const char *prog, ...) G_GNUC_NULL_TERMINATED;

/* Start PROG in the background, output to LOG_PATH (may be NULL). */
pid_t interop_spawn(const char *log_path, const char *prog, ...) G_GNUC_NULL_TERMINATED;
/* Same with a NULL-terminated ARGV (argv[0] is the program). */
pid_t interop_spawnv(const char *log_path, char **argv);
/* Exit status of a spawned process once it ends, -1 on signal, or -2 if
 * it is still running after TIMEOUT_MS (then it keeps running). */
int interop_wait(pid_t pid, int timeout_ms);
/* SIGKILL and reap (for cleanup paths). */
void interop_kill(pid_t pid);

/* nbd+unix:///EXPORT?socket=SOCK (caller frees). */
char *interop_nbd_uri(const char *sock, const char *export);

/* Data/hole layout of a file as SEEK_DATA/SEEK_HOLE see it, or of any
 * other source converted to the same form; adjacent extents of one kind
 * are merged. */
typedef struct InteropExtent {
    uint64_t offset;
    uint64_t length;
    bool data;
} InteropExtent;

GArray *interop_file_extents(const char *path);
/* Append, merging with the last extent when of the same kind. */
void interop_extent_add(GArray *extents, uint64_t offset, uint64_t length, bool data);
/* Asserts both layouts are identical, printing both on mismatch. */
void interop_assert_extents_equal(GArray *expected, GArray *actual, const char *what);

/* TEXT, a tool's JSON output, parsed (json_node_unref); the test fails
 * showing TEXT when it is not JSON. */
JsonNode *interop_parse_json(const char *text);
/* `nbdinfo --json --map` of URI, which must succeed, as extents: every
 * run is data (type 0) or a hole that reads as zeroes (type 3), as
 * blkmigd's exports report them; any other type fails the test. */
GArray *interop_nbdinfo_map(const char *uri);

/* Whether the LEN bytes at OFF of PATH all hold BYTE (qtest_disk_set
 * writes them). */
bool interop_file_has(const char *path, uint64_t off, uint64_t len, uint8_t byte);

#endif
