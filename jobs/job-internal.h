/* Private to jobs/: the job record and the calls between the files of
 * the framework:
 *
 *   job.c            the life of one job: create, its thread, the state
 *                    machine, conclusion, events, snapshots
 *   job-registry.c   the list of jobs: ids, lookups, queries, the
 *                    migration blocker, cancelling all at shutdown
 *   job-control.c    what QMP asks of a job: pause, resume, cancel, speed
 *   job-run.c        what a running job asks: pause points, the rate
 *                    limit, progress, the error policy
 *   stream.c         the stream job
 *   stream-copier.c  the stream job's copies in flight
 *
 * Locking: job->lock protects the fields marked below; the registry lock
 * (job-registry.c) the list.  The registry lock is taken before a job's
 * lock, never after. */
#ifndef JOBS_JOB_INTERNAL_H
#define JOBS_JOB_INTERNAL_H

#include "block/block.h"
#include "jobs/job.h"

struct Job {
    char *id;
    const JobDriver *drv;
    char *device;
    void *opaque;
    JobOnError on_error;
    gint refcnt;                 /* atomic: its thread's, and lookups' */

    GMutex lock;
    GCond cond;                  /* pause, resume, cancel, speed changed */
    JobStatus status;            /* lock */
    bool cancelled;              /* lock */
    bool user_paused;            /* lock: paused by QMP or an error stop */
    int pause_count;             /* lock: pause requests in force */
    bool busy;                   /* lock */
    JobIoStatus io_status;       /* lock */
    int64_t speed;               /* lock: bytes/s, 0 = unlimited */
    gint64 rate_next_us;         /* lock: the next unit may start then */
    gint64 rate_mark_us;         /* lock: when the current unit started */
    uint64_t len, offset;        /* lock */
    char *error;                 /* lock: set once it failed */
};

/* job.c */
void job_ref(Job *job);
void job_unref(Job *job);
/* Move to NEW (a transition QEMU's state table allows) and say so. */
void job_set_status(Job *job, JobStatus status);
/* A snapshot of JOB into INFO (job->lock NOT held). */
void job_get_info(Job *job, JobInfo *info);
/* The registered event sink (a copy; the callbacks may be NULL). */
JobEventSink job_event_sink(void);

/* job-control.c: cancel, whatever the state (shutdown). */
void job_request_cancel(Job *job);

/* job-registry.c */
/* Register JOB under its id, refusing a taken id or a busy device. */
bool job_registry_add(Job *job, GError **errp);
/* Unregister JOB (invisible to lookups and the migration blocker from
 * now on); its thread keeps running until job_registry_thread_done. */
void job_registry_remove(Job *job);
/* The last act of a job's thread (shutdown waits for every one). */
void job_registry_thread_done(void);

/* stream-copier.c: copies of the stream job in flight (its thread only). */
typedef struct StreamCopier StreamCopier;

/* The outcome of one copy (bdrv_stream_copy). */
typedef struct StreamCopyResult {
    uint64_t start, len;
    int ret;                     /* 0 or a negative errno */
    const char *operation;       /* on failure: "read" (the chain) or "write" */
} StreamCopyResult;

/* Up to DEPTH copies of at most MAX_COPY bytes at once into drive BS
 * (SKIP_ZERO as bdrv_stream_copy). */
StreamCopier *stream_copier_new(BlockDriverState *bs, unsigned depth, uint64_t max_copy,
                                bool skip_zero);
/* Waits for the copies in flight, then frees C. */
void stream_copier_free(StreamCopier *c);
unsigned stream_copier_in_flight(StreamCopier *c);
bool stream_copier_full(StreamCopier *c);
/* Start copying [start, start+len) (C must not be full). */
void stream_copier_submit(StreamCopier *c, uint64_t start, uint64_t len);
/* Wait for the next copy to finish (one must be in flight). */
void stream_copier_collect(StreamCopier *c, StreamCopyResult *r);
/* The lowest start of a copy in flight, or POS when lower. */
uint64_t stream_copier_low_mark(StreamCopier *c, uint64_t pos);

#endif
