/* The life of one job: its creation, its thread (run, then prepare), the
 * state machine with QEMU's transition table, the events of each step,
 * and its conclusion: unregistered first (so a client that sees the final
 * event finds neither the job nor its migration blocker), then
 * BLOCK_JOB_COMPLETED or BLOCK_JOB_CANCELLED, concluded, null. */
#include "job-internal.h"

#include <errno.h>
#include <gio/gio.h>
#include <string.h>

static GMutex sink_lock;
static JobEventSink sink;

/* ---- Names ---- */

const char *job_status_name(JobStatus s)
{
    static const char *const names[] = {
        "undefined", "created", "running", "paused", "ready", "standby",
        "waiting", "pending", "aborting", "concluded", "null",
    };
    return (unsigned)s < G_N_ELEMENTS(names) ? names[s] : "undefined";
}

static const char *const on_error_names[] = { "report", "ignore", "enospc", "stop", "auto" };

const char *job_on_error_name(JobOnError e)
{
    return (unsigned)e < G_N_ELEMENTS(on_error_names) ? on_error_names[e] : "report";
}

int job_on_error_from_name(const char *name)
{
    for (size_t i = 0; i < G_N_ELEMENTS(on_error_names); i++) {
        if (strcmp(on_error_names[i], name) == 0) {
            return (int)i;
        }
    }
    return -1;
}

const char *job_action_name(JobErrorAction a)
{
    return a == JOB_ACTION_IGNORE ? "ignore" : a == JOB_ACTION_STOP ? "stop" : "report";
}

const char *job_io_status_name(JobIoStatus s)
{
    return s == JOB_IO_FAILED ? "failed" : s == JOB_IO_NOSPACE ? "nospace" : "ok";
}

/* ---- Events ---- */

void job_set_event_sink(const JobEventSink *s)
{
    g_mutex_lock(&sink_lock);
    sink = *s;
    g_mutex_unlock(&sink_lock);
}

JobEventSink job_event_sink(void)
{
    g_mutex_lock(&sink_lock);
    JobEventSink s = sink;
    g_mutex_unlock(&sink_lock);
    return s;
}

/* QEMU's state transition table (qapi/job.json's states in order). */
static bool transition_allowed(JobStatus from, JobStatus to)
{
    static const uint16_t allowed[JOB_STATUS__MAX] = {
#define TO(s) (1u << JOB_STATUS_##s)
        [JOB_STATUS_UNDEFINED] = TO(CREATED),
        [JOB_STATUS_CREATED] = TO(RUNNING) | TO(ABORTING) | TO(NULL),
        [JOB_STATUS_RUNNING] = TO(PAUSED) | TO(READY) | TO(WAITING) | TO(ABORTING),
        [JOB_STATUS_PAUSED] = TO(RUNNING),
        [JOB_STATUS_READY] = TO(STANDBY) | TO(WAITING) | TO(ABORTING),
        [JOB_STATUS_STANDBY] = TO(READY),
        [JOB_STATUS_WAITING] = TO(PENDING) | TO(ABORTING),
        [JOB_STATUS_PENDING] = TO(ABORTING) | TO(CONCLUDED),
        [JOB_STATUS_ABORTING] = TO(ABORTING) | TO(CONCLUDED),
        [JOB_STATUS_CONCLUDED] = TO(NULL),
#undef TO
    };
    return allowed[from] & (1u << to);
}

void job_set_status(Job *job, JobStatus status)
{
    g_mutex_lock(&job->lock);
    JobStatus from = job->status;
    g_assert(transition_allowed(from, status));
    job->status = status;
    g_mutex_unlock(&job->lock);
    JobEventSink s = job_event_sink();
    if (s.status_changed && from != status) {
        s.status_changed(job->id, status, s.opaque);
    }
}

/* ---- Snapshots ---- */

void job_get_info(Job *job, JobInfo *info)
{
    g_mutex_lock(&job->lock);
    *info = (JobInfo){
        .id = g_strdup(job->id), .type = job->drv->type, .device = g_strdup(job->device),
        .status = job->status, .len = job->len, .offset = job->offset, .speed = job->speed,
        .busy = job->busy, .paused = job->pause_count > 0, .ready = false,
        .io_status = job->io_status, .error = g_strdup(job->error),
    };
    g_mutex_unlock(&job->lock);
}

void job_info_clear(JobInfo *info)
{
    g_clear_pointer(&info->id, g_free);
    g_clear_pointer(&info->device, g_free);
    g_clear_pointer(&info->error, g_free);
}

/* ---- Life cycle ---- */

void job_ref(Job *job)
{
    g_atomic_int_inc(&job->refcnt);
}

void job_unref(Job *job)
{
    if (!job || !g_atomic_int_dec_and_test(&job->refcnt)) {
        return;
    }
    g_mutex_clear(&job->lock);
    g_cond_clear(&job->cond);
    g_free(job->id);
    g_free(job->device);
    g_free(job->error);
    g_free(job);
}

void *job_opaque(Job *job)
{
    return job->opaque;
}

Job *job_create(const char *id, const JobDriver *drv, const char *device, int64_t speed,
                JobOnError on_error, void *opaque, GError **errp)
{
    if (speed < 0) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "Invalid parameter 'speed'");
        return NULL;
    }
    Job *job = g_new0(Job, 1);
    job->id = g_strdup(id);
    job->drv = drv;
    job->device = g_strdup(device);
    job->opaque = opaque;
    job->on_error = on_error;
    job->speed = speed;
    job->refcnt = 1;
    g_mutex_init(&job->lock);
    g_cond_init(&job->cond);
    if (!job_registry_add(job, errp)) {
        job_unref(job);
        return NULL;
    }
    job_set_status(job, JOB_STATUS_CREATED);
    return job;
}

/* Success: waiting, pending, prepare.  Returns the final result. */
static int job_commit(Job *job, GError **errp)
{
    job_set_status(job, JOB_STATUS_WAITING);
    job_set_status(job, JOB_STATUS_PENDING);
    if (job_is_cancelled(job)) {
        return -ECANCELED;
    }
    return job->drv->prepare ? job->drv->prepare(job, errp) : 0;
}

static void record_error(Job *job, int ret, GError *err)
{
    g_mutex_lock(&job->lock);
    job->error = g_strdup(err ? err->message : g_strerror(-ret));
    g_mutex_unlock(&job->lock);
}

/* The final events; the job is no longer listed. */
static void announce_end(Job *job, bool cancelled)
{
    JobEventSink s = job_event_sink();
    JobInfo info;

    job_get_info(job, &info);
    if (cancelled && s.cancelled) {
        s.cancelled(&info, s.opaque);
    } else if (!cancelled && s.completed) {
        s.completed(&info, info.error, s.opaque);
    }
    job_info_clear(&info);
    job_set_status(job, JOB_STATUS_CONCLUDED);
    job_set_status(job, JOB_STATUS_NULL);
}

static void job_conclude(Job *job, int ret, GError *err)
{
    bool cancelled = ret == -ECANCELED && job_is_cancelled(job);

    if (ret < 0) {
        job_set_status(job, JOB_STATUS_ABORTING);
        if (!cancelled) {
            record_error(job, ret, err);
        }
    }
    job_registry_remove(job);
    announce_end(job, cancelled);
    if (job->drv->clean) {
        job->drv->clean(job);
    }
}

static gpointer job_thread(gpointer opaque)
{
    Job *job = opaque;
    GError *err = NULL;
    int ret = job->drv->run(job, &err);

    if (ret == 0 && job_is_cancelled(job)) {
        ret = -ECANCELED;
    }
    if (ret == 0) {
        ret = job_commit(job, &err);
    }
    job_conclude(job, ret, err);
    g_clear_error(&err);
    job_unref(job);
    job_registry_thread_done();
    return NULL;
}

void job_start(Job *job)
{
    g_mutex_lock(&job->lock);
    job->busy = true;
    job->rate_next_us = job->rate_mark_us = g_get_monotonic_time();
    g_mutex_unlock(&job->lock);
    job_set_status(job, JOB_STATUS_RUNNING);
    g_thread_unref(g_thread_new(job->id, job_thread, job));
}
