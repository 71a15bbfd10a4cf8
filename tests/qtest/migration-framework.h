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
/* How often waits poll a daemon. */
#define MF_POLL_US (50 * 1000)

typedef struct Migration {
    char *src_disk;             /* NULL when the test names its drives itself */
    char *dst_disk;
    char *uri;
    QTestDaemon *src;
    QTestDaemon *dst;
    /* How long a side may take to reach a state once the source ended
     * (0: MF_STATE_TIMEOUT_MS). */
    int state_timeout_ms;
} Migration;

/* Names m->src_disk and m->dst_disk in the scratch directory (removing a
 * destination disk an earlier case left) and makes the source disk: SIZE
 * sparse bytes with RUNS seeded random runs of RUN_LEN.  Returns the
 * number of 1 MiB chunks holding data. */
uint64_t mf_make_src_disk(Migration *m, uint64_t size, uint64_t seed, unsigned runs,
                          uint64_t run_len);
/* A destination NAME with a fresh blank drive of SIZE at m->dst_disk,
 * waiting on m->uri. */
QTestDaemon *mf_start_dst(Migration *m, const char *name, uint64_t size);
/* The same run under PREFIX (NULL: none; e.g. "ip netns exec NS", see
 * qtest_daemon_start_prefixed) and waiting on INCOMING (NULL: m->uri). */
QTestDaemon *mf_start_dst_at(Migration *m, const char *prefix, const char *name,
                             uint64_t size, const char *incoming);
/* The source "src" on m->src_disk, with EXTRA blkmigd arguments. */
QTestDaemon *mf_start_src(Migration *m, const char *extra);
/* The usual pair over TCP: m->uri a free port, the destination "dst"
 * (mf_start_dst, a blank drive of DST_SIZE) waiting on it, then the source
 * "src" (mf_start_src, with SRC_EXTRA). */
void mf_start_pair(Migration *m, uint64_t dst_size, const char *src_extra);
/* A destination "dst" with a blank drive of SIZE loads the stream the
 * source saved to FILE_URI ("file:..."; m->uri becomes a copy) and
 * reports completed. */
void mf_load_saved(Migration *m, const char *file_uri, uint64_t size);
/* A destination "dst" with DST_ARGS (its --drive options, as blkmigd takes
 * them) waiting on m->uri (a free TCP port when NULL), then a source "src"
 * with SRC_ARGS. */
void mf_start_daemons(Migration *m, const char *src_args, const char *dst_args);
/* Kill both daemons, remove both disks, free the strings. */
void mf_free(Migration *m);
/* "quit" both daemons, each of which must exit with status 0. */
void mf_quit(Migration *m);

/* Both sides report completed, the destination guest runs and the source
 * is in postmigrate.  Returns the source's final query-migrate (unref). */
JsonNode *mf_wait_completed(Migration *m);
/* The source failed because the destination refused: the destination's
 * error names WHY (and HINT unless NULL), the source's error quotes it,
 * the source guest runs again and the destination's never started. */
void mf_expect_refused(Migration *m, const char *why, const char *hint);

/* How one side's migration ended. */
typedef struct MfOutcome {
    char *status;
    char *error_desc;           /* "" when none */
    double seconds;             /* after the start of the wait */
} MfOutcome;
/* Wait until both sides ended, at most TIMEOUT_S seconds (else the test
 * fails saying where each side is). */
void mf_wait_both_ended(Migration *m, double timeout_s, MfOutcome *src, MfOutcome *dst);
void mf_outcome_clear(MfOutcome *o);
/* Stop the source guest, copy its disk as it is now, let it run again;
 * returns the copy's path (caller frees and unlinks). */
char *mf_snapshot_running_disk(Migration *m);

void mf_assert_runstate(QTestDaemon *d, const char *want);
/* TEXT (may be NULL) contains PART, or the test fails showing both. */
void mf_assert_contains(const char *text, const char *part);
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

/* ---- qcow2 images and backing chains: qemu-img and qemu-io make them
 * and are the oracle ---- */

/* A new qcow2 image at PATH (replacing any) of SIZE, over the qcow2 image
 * BACKING (NULL: none). */
void mf_qcow2_create(const char *path, uint64_t size, const char *backing);
/* qemu-io writes to the qcow2 image PATH of SIZE, at seeded random 64 KiB
 * aligned offsets: RUNS runs (64 KiB..512 KiB) of a non-zero pattern,
 * then ZERO_RUNS runs of zeroes, alternately `write -z` (zero clusters)
 * and zeroes written as data (allocated clusters that read as zero). */
void mf_qcow2_scatter(const char *path, uint64_t size, uint64_t seed, unsigned runs,
                      unsigned zero_runs);
/* The guest views of A and B (formats FA, FB, with their backing chains)
 * are identical (`qemu-img compare`). */
void mf_assert_same_view(const char *a, const char *fa, const char *b, const char *fb);
/* Thin: the destination holds at most 1% + 1 MiB more data (allocated
 * clusters, qt_data_bytes) than the source. */
void mf_assert_thin_data(uint64_t src_bytes, uint64_t dst_bytes);
/* Thin down to the file: the image files SRC and DST (qcow2, with their
 * metadata) as mf_assert_thin_data, in bytes allocated on the file
 * system.  Zeroes a qcow2 cluster holds as a hole of the file must not
 * become written zeroes at the destination. */
void mf_assert_thin_files(const char *src, const char *dst);

#endif
