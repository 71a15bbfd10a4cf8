/* The one migration test framework: a source and a destination blkmigd
 * over real sparse disk files, and the checks every migration test makes
 * (completed on both sides, identical, thin).  Every whole-daemon
 * migration test builds on it instead of keeping its own fixture. */
#ifndef TESTS_MIGRATION_FRAMEWORK_H
#define TESTS_MIGRATION_FRAMEWORK_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdint.h>

#include "libqtest.h"

#define KIB (UINT64_C(1) << 10)
#define MIB (UINT64_C(1) << 20)
#define GIB (UINT64_C(1) << 30)
#define MF_DRIVE_ID "disk0"
/* Generous: ASan builds on two shared cores are slow. */
#define MF_MIGRATE_TIMEOUT_MS 180000
#define MF_STATE_TIMEOUT_MS 10000

typedef struct Migration {
    char *src_disk;
    char *dst_disk;
    char *uri;
    QTestDaemon *src;
    QTestDaemon *dst;
} Migration;

/* Names m->src_disk and m->dst_disk in the scratch directory and makes the
 * source disk: SIZE sparse bytes with RUNS seeded random runs of RUN_LEN.
 * Returns the number of 1 MiB chunks holding data. */
uint64_t mf_make_src_disk(Migration *m, uint64_t size, uint64_t seed, unsigned runs,
                          uint64_t run_len);
/* A destination NAME with a fresh blank drive of SIZE at m->dst_disk,
 * waiting on m->uri. */
QTestDaemon *mf_start_dst(Migration *m, const char *name, uint64_t size);
/* The source "src" on m->src_disk, with EXTRA blkmigd arguments. */
QTestDaemon *mf_start_src(Migration *m, const char *extra);
/* Kill both daemons, remove both disks, free the strings. */
void mf_free(Migration *m);

/* Both sides report completed, the destination guest runs and the source
 * is in postmigrate.  Returns the source's final query-migrate (unref). */
JsonNode *mf_wait_completed(Migration *m);
/* Stop the source guest, copy its disk as it is now, let it run again;
 * returns the copy's path (caller frees and unlinks). */
char *mf_snapshot_running_disk(Migration *m);

void mf_assert_runstate(QTestDaemon *d, const char *want);
/* Byte-identical files, or the test fails naming the first difference. */
void mf_assert_identical(const char *a, const char *b);
/* The destination allocates what the source does: at least the source's
 * bytes less 64 KiB, at most the source's plus 64 KiB plus SLACK_PERCENT of
 * them.  64 KiB covers the file system's own metadata; a guest writing
 * randomly during the migration leaves the two files with different extent
 * trees, which tests of live guests allow for with a percent. */
void mf_assert_thin(const char *src, const char *dst, unsigned slack_percent);
/* The source's MIGRATION events up to a final status, as "setup,active,...". */
char *mf_migration_event_trail(QTestDaemon *d);
void mf_log_json(const char *what, JsonNode *node);

#endif
