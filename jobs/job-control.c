/* What QMP asks of a job (block-job-pause, -resume, -cancel, -set-speed),
 * each allowed only in the states QEMU's verb table allows, with QEMU's
 * messages when not. */
#include "job-internal.h"

#include <gio/gio.h>

typedef enum JobVerb {
    JOB_VERB_CANCEL,
    JOB_VERB_PAUSE,
    JOB_VERB_RESUME,
    JOB_VERB_SET_SPEED,
} JobVerb;

/* In which states each verb is accepted: created, running, paused,
 * ready, standby; cancel also waiting and pending. */
static bool verb_allowed(JobVerb verb, JobStatus s)
{
    bool early = s >= JOB_STATUS_CREATED && s <= JOB_STATUS_STANDBY;
    return early || (verb == JOB_VERB_CANCEL &&
                     (s == JOB_STATUS_WAITING || s == JOB_STATUS_PENDING));
}

/* job->lock held. */
static bool check_verb(Job *job, JobVerb verb, GError **errp)
{
    static const char *const names[] = { "cancel", "pause", "resume", "set-speed" };

    if (verb_allowed(verb, job->status)) {
        return true;
    }
    g_set_error(errp, G_IO_ERROR, G_IO_ERROR_FAILED,
                "Job '%s' in state '%s' cannot accept command verb '%s'", job->id,
                job_status_name(job->status), names[verb]);
    return false;
}

bool job_user_pause(Job *job, GError **errp)
{
    g_mutex_lock(&job->lock);
    bool ok = check_verb(job, JOB_VERB_PAUSE, errp);
    if (ok && job->user_paused) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_FAILED, "Job is already paused");
        ok = false;
    }
    if (ok) {
        job->user_paused = true;
        job->pause_count++;
        g_cond_broadcast(&job->cond);
    }
    g_mutex_unlock(&job->lock);
    return ok;
}

/* job->lock held: lift the user's (or an error stop's) pause. */
static void unpause_locked(Job *job)
{
    if (job->user_paused) {
        job->user_paused = false;
        job->pause_count--;
        job->io_status = JOB_IO_OK;
        g_cond_broadcast(&job->cond);
    }
}

bool job_user_resume(Job *job, GError **errp)
{
    g_mutex_lock(&job->lock);
    bool ok = check_verb(job, JOB_VERB_RESUME, errp);
    if (ok && !job->user_paused) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_FAILED,
                    "Can't resume a job that was not paused");
        ok = false;
    }
    if (ok) {
        unpause_locked(job);
    }
    g_mutex_unlock(&job->lock);
    return ok;
}

void job_request_cancel(Job *job)
{
    g_mutex_lock(&job->lock);
    job->cancelled = true;
    unpause_locked(job);
    g_cond_broadcast(&job->cond);
    g_mutex_unlock(&job->lock);
}

bool job_user_cancel(Job *job, GError **errp)
{
    g_mutex_lock(&job->lock);
    bool ok = check_verb(job, JOB_VERB_CANCEL, errp);
    g_mutex_unlock(&job->lock);
    if (ok) {
        job_request_cancel(job);
    }
    return ok;
}

bool job_set_speed(Job *job, int64_t speed, GError **errp)
{
    g_mutex_lock(&job->lock);
    bool ok = check_verb(job, JOB_VERB_SET_SPEED, errp);
    if (ok && speed < 0) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "Invalid parameter 'speed'");
        ok = false;
    }
    if (ok) {
        job->speed = speed;
        job->rate_next_us = g_get_monotonic_time();
        g_cond_broadcast(&job->cond);
    }
    g_mutex_unlock(&job->lock);
    return ok;
}
