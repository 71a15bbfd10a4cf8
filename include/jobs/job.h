/* Background block jobs (QEMU's job model, as far as blkmig needs it):
 * each job runs in a thread of its own through the states of QEMU's
 * qapi/job.json (created, running, paused, ready, waiting, pending,
 * aborting, concluded, null; standby is never entered), with a rate limit
 * in bytes/s, pause and resume, cancel, progress, an error policy
 * (on-error), and events delivered to whoever registered for them (qapi/
 * turns them into JOB_STATUS_CHANGE, BLOCK_JOB_COMPLETED, ...).  Jobs
 * finalize and dismiss themselves (QEMU's auto-finalize and auto-dismiss
 * on): once concluded they leave the list.
 *
 * A job driver (jobs/stream.c) gives run, which does the work with the
 * helpers below (pause points, the rate limit, progress, the error
 * policy), and prepare, which commits the result once run succeeded.
 * Control functions are called from the main thread (QMP); everything is
 * thread-safe. */
#ifndef JOBS_JOB_H
#define JOBS_JOB_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum JobStatus {
    JOB_STATUS_UNDEFINED,
    JOB_STATUS_CREATED,
    JOB_STATUS_RUNNING,
    JOB_STATUS_PAUSED,
    JOB_STATUS_READY,
    JOB_STATUS_STANDBY,
    JOB_STATUS_WAITING,
    JOB_STATUS_PENDING,
    JOB_STATUS_ABORTING,
    JOB_STATUS_CONCLUDED,
    JOB_STATUS_NULL,
    JOB_STATUS__MAX,
} JobStatus;

/* QEMU's BlockdevOnError for a job. */
typedef enum JobOnError {
    JOB_ON_ERROR_REPORT,     /* the job fails */
    JOB_ON_ERROR_IGNORE,     /* the range is skipped, the job goes on */
    JOB_ON_ERROR_ENOSPC,     /* stop on ENOSPC, report otherwise */
    JOB_ON_ERROR_STOP,       /* the job pauses until block-job-resume */
    JOB_ON_ERROR_AUTO,       /* as enospc */
} JobOnError;

typedef enum JobErrorAction {
    JOB_ACTION_REPORT,
    JOB_ACTION_IGNORE,
    JOB_ACTION_STOP,
} JobErrorAction;

/* QEMU's BlockDeviceIoStatus of a job. */
typedef enum JobIoStatus {
    JOB_IO_OK,
    JOB_IO_FAILED,
    JOB_IO_NOSPACE,
} JobIoStatus;

const char *job_status_name(JobStatus s);
const char *job_on_error_name(JobOnError e);
/* The policy named NAME ("report", ...), or -1. */
int job_on_error_from_name(const char *name);
const char *job_action_name(JobErrorAction a);
const char *job_io_status_name(JobIoStatus s);

typedef struct Job Job;

typedef struct JobDriver {
    const char *type;            /* QEMU's JobType: "stream" */
    /* The work, in the job's thread: 0, or a negative errno with *errp
     * set (-ECANCELED when it stopped because of a cancel). */
    int (*run)(Job *job, GError **errp);
    /* After run succeeded and was not cancelled (status pending): commit
     * the result; a failure fails the job. */
    int (*prepare)(Job *job, GError **errp);
    /* Free what the driver holds (the job is concluded). */
    void (*clean)(Job *job);
} JobDriver;

/* A snapshot of a job, for queries and events. */
typedef struct JobInfo {
    char *id;
    const char *type;
    char *device;                /* the drive the job works on */
    JobStatus status;
    uint64_t len, offset;        /* progress: total and done, in bytes */
    int64_t speed;               /* bytes/s, 0 = unlimited */
    bool busy;                   /* doing work now (not sleeping, paused) */
    bool paused;                 /* a pause is requested */
    bool ready;
    JobIoStatus io_status;
    char *error;                 /* why it failed, once it did */
} JobInfo;

void job_info_clear(JobInfo *info);

/* Events (called from the job's thread; a sink must not block). */
typedef struct JobEventSink {
    void (*status_changed)(const char *id, JobStatus status, void *opaque);
    /* BLOCK_JOB_COMPLETED: ERROR is NULL on success. */
    void (*completed)(const JobInfo *info, const char *error, void *opaque);
    void (*cancelled)(const JobInfo *info, void *opaque);
    /* BLOCK_JOB_ERROR: OPERATION "read" or "write". */
    void (*error)(const JobInfo *info, const char *operation, JobErrorAction action,
                  void *opaque);
    void (*ready)(const JobInfo *info, void *opaque);
    void *opaque;
} JobEventSink;
void job_set_event_sink(const JobEventSink *sink);

/* ---- Creating jobs ---- */

/* A new job (status created) with the identifier ID (QEMU's rule: a
 * letter, then letters, digits, '-', '.', '_'; unique among jobs) working
 * on drive DEVICE, of which only one job at a time may use.  OPAQUE is
 * the driver's (job_opaque).  NULL with *errp set otherwise. */
Job *job_create(const char *id, const JobDriver *drv, const char *device, int64_t speed,
                JobOnError on_error, void *opaque, GError **errp);
/* Start its thread (status running).  From then on the job frees itself
 * once concluded. */
void job_start(Job *job);
void *job_opaque(Job *job);

/* ---- Inside run ---- */

/* Blocks while the job is paused (status paused, events); returns at once
 * otherwise.  Call it between units of work. */
void job_pause_point(Job *job);
bool job_is_cancelled(Job *job);
/* A pause or a cancel is pending: the job should bring its I/O in flight
 * to rest and call job_pause_point. */
bool job_interrupted(Job *job);
/* Waits until the rate limit allows the next unit of work (returns early
 * on pause, cancel or a new speed)... */
void job_rate_wait(Job *job);
/* ... and counts BYTES of work done since then. */
void job_rate_account(Job *job, uint64_t bytes);
/* The largest unit of work that keeps the rate within 10% over a 2 s
 * window at the current speed: at most MAX, at least UNIT, a multiple of
 * UNIT. */
uint64_t job_rate_chunk(Job *job, uint64_t unit, uint64_t max);
void job_progress_set_total(Job *job, uint64_t len);
void job_progress_set_offset(Job *job, uint64_t offset);
/* An I/O error ERR (negative errno) of OPERATION ("read", "write"): what
 * on-error says to do.  BLOCK_JOB_ERROR is emitted; for STOP the job is
 * paused (io-status failed) and the caller, after job_pause_point, tries
 * again; IGNORE goes on; REPORT makes run fail. */
JobErrorAction job_error_action(Job *job, const char *operation, int err);

/* ---- Control (QMP) ---- */

/* The job ID / the job working on drive DEVICE, or NULL: a reference
 * that keeps the record valid (not the job running) until job_release. */
Job *job_find(const char *id);
Job *job_find_by_device(const char *device);
void job_release(Job *job);
/* Snapshots of every job, in creation order (free with job_info_clear,
 * then g_array_unref). */
GArray *job_query_all(void);
bool job_user_pause(Job *job, GError **errp);
bool job_user_resume(Job *job, GError **errp);
bool job_user_cancel(Job *job, GError **errp);
bool job_set_speed(Job *job, int64_t speed, GError **errp);

/* Fails with QEMU's "Node 'ID' is busy: ..." while a job uses drive
 * DEVICE. */
bool job_check_device_free(const char *device, GError **errp);
/* Fails with an error naming the first running job, if any: a migration
 * must wait for jobs (blkmigd hands this to the migration core). */
bool job_check_migration(GError **errp);
/* Cancel every job and wait until all have concluded (shutdown). */
void job_cancel_all_sync(void);

#endif
