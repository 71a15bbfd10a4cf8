/* Migration state machine: outgoing migration thread, incoming side,
 * cancel, query.  Callers: QMP commands and blkmigd main, which also
 * registers the handlers of the stream (include/migration/savevm.h). */
#ifndef MIGRATION_MIGRATION_H
#define MIGRATION_MIGRATION_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum {
    MIG_STATUS_NONE,
    MIG_STATUS_SETUP,
    MIG_STATUS_ACTIVE,
    MIG_STATUS_CANCELLING,
    MIG_STATUS_CANCELLED,
    MIG_STATUS_COMPLETED,
    MIG_STATUS_FAILED,
    /* block-resume: the connection was lost before the switchover; the
     * source guest runs on, the destination keeps what it received, and
     * both wait to be resumed (migrate resume / migrate-recover). */
    MIG_STATUS_PAUSED,
} MigrationStatus;

const char *mig_status_name(MigrationStatus s);

typedef struct MigrationDiskStats {
    uint64_t transferred;       /* bytes written to the stream for disks */
    uint64_t remaining;         /* disk bytes still to read and send, each
                                 * once: not yet walked, or written since
                                 * read; at most total; grows when the guest
                                 * writes faster than they go */
    uint64_t total;             /* sum of drive sizes */
    uint64_t bulk_copied;       /* bytes the first pass has walked (holes too);
                                 * only grows; percent done = bulk_copied / total */
    uint64_t zero_blocks;       /* chunks sent as ZERO_BLOCK */
    uint64_t data_blocks;       /* chunks sent with data */
    uint64_t dirty_sync_count;  /* completed passes over the dirty bitmaps */
    double mbps;                /* wire throughput, megabits/s */
    uint64_t dirty_rate;        /* bytes/s the guest wrote over the last pass
                                 * (the running one until a pass ended) */
    uint64_t pass;              /* 1: the bulk copy; n + 1: the n-th dirty pass
                                 * (walks of less than a second count as one) */
    uint64_t verified;          /* block-checksum: disk bytes the destination
                                 * compared at switchover and found equal (set
                                 * once it confirmed the migration) */
} MigrationDiskStats;

typedef struct MigrationInfo {
    MigrationStatus status;
    bool has_times;             /* total/setup/downtime known (source side) */
    int64_t total_time;         /* ms */
    int64_t setup_time;         /* ms */
    int64_t downtime;           /* ms, once completed */
    int64_t expected_downtime;  /* ms, while active */
    char *error_desc;           /* on failure; freed by migration_info_clear */
    bool has_disk;
    MigrationDiskStats disk;
    /* auto-converge: percent of the guest's write throughput withheld
     * (QEMU's cpu-throttle-percentage), while throttling. */
    bool has_throttle;
    uint64_t throttle_percentage;
} MigrationInfo;

void migration_info_clear(MigrationInfo *info);

/* Hooks the emulator (a higher layer) registers.  Called from the migration
 * thread. */
typedef struct MigrationVmOps {
    /* Stop the guest for switchover: returns once no guest write is in
     * flight; the runstate becomes finish-migrate. */
    void (*stop_for_switchover)(void *opaque);
    /* Source ended: completed -> postmigrate; failed/cancelled -> resume the
     * guest if it ran before (SUCCESS says which). */
    void (*source_finished)(void *opaque, bool success, bool was_running);
    /* Destination loaded everything and flushed: start the guest (or leave
     * it paused if blkmigd was started with --paused). */
    void (*incoming_finished)(void *opaque, bool success);
    bool (*guest_is_running)(void *opaque);
    void *opaque;
} MigrationVmOps;
void migration_set_vm_ops(const MigrationVmOps *ops);

/* Status-change listener (QMP turns it into MIGRATION events when the
 * events capability is on).  Called from any thread. */
typedef void (*MigrationStatusListener)(MigrationStatus status, void *opaque);
void migration_set_status_listener(MigrationStatusListener cb, void *opaque);

/* Pass listener: a new pass over the disks started (QMP turns it into
 * MIGRATION_PASS events when the events capability is on).  Called from
 * the migration thread. */
typedef void (*MigrationPassListener)(uint64_t pass, void *opaque);
void migration_set_pass_listener(MigrationPassListener cb, void *opaque);

/* Something that forbids migrating now (QEMU's migration blockers): returns
 * false with *errp saying why.  The emulator registers it (blkmigd: the
 * block job layer's, while a job runs); migration_start asks it first. */
typedef bool (*MigrationBlockerCheck)(GError **errp);
void migration_set_blocker_check(MigrationBlockerCheck check);

/* Start an outgoing migration to URI (tcp:, unix:, file:).  Fails at once
 * if a blocker forbids it, a migration is active, the URI is bad or the
 * connection is refused. */
bool migration_start(const char *uri, GError **errp);
/* The same with the block capability on for this migration only (QMP
 * migrate's "blk": true), and with INCREMENTAL the block-incremental
 * parameter too ("inc": true): they go back off when the migration
 * reaches a final status, or at once when it does not start. */
bool migration_start_with_block(const char *uri, bool incremental, GError **errp);
/* block-resume: reconnect a paused outgoing migration to URI (QMP migrate
 * with "resume": true).  Fails at once when none is paused or the
 * connection is refused (it stays paused then). */
bool migration_resume(const char *uri, GError **errp);
/* Request cancel of the active (or paused) outgoing migration; no-op
 * otherwise. */
void migration_cancel(void);

/* Listen for (tcp:, unix:) or read (file:) an incoming migration.  The
 * load runs in a thread; returns once listening / the file is open. */
bool migration_incoming_start(const char *uri, GError **errp);
/* The same, and after a failed or cancelled socket migration listen on
 * URI again with the guest still waiting (blkmigd --incoming URI). */
bool migration_incoming_start_relistening(const char *uri, GError **errp);
/* block-resume: listen on URI for the source of a paused incoming
 * migration (QMP migrate-recover); fails unless one is paused. */
bool migration_incoming_recover(const char *uri, GError **errp);
/* True while an incoming migration is expected or running. */
bool migration_incoming_pending(void);

void migration_query(MigrationInfo *out);
bool migration_is_active(void);  /* setup, active or cancelling */
/* Outgoing migration thread: the last switchover estimate did not fit
 * downtime-limit while data was left to move, so a guest that dirtied
 * less would let it finish sooner (auto-converge throttles harder). */
bool migration_switchover_waits_for_data(void);

/* The machine type of the configuration section (QEMU's -machine): sent
 * with qemu-compat, and what a stream's configuration section must name
 * (blkmigd --machine).  Default MIGRATION_DEFAULT_MACHINE. */
#define MIGRATION_DEFAULT_MACHINE "none"
void migration_set_machine(const char *name);
char *migration_get_machine(void);      /* caller frees */

/* Wait for background threads to finish (blkmigd exit). */
void migration_shutdown(void);

#endif
