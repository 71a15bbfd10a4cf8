/* What a running job asks of the framework between units of work: to
 * stop at a pause point while paused, to wait for its rate limit, to
 * count progress, and what to do about an I/O error (on-error).
 *
 * The rate limit is a clock of when the next unit may start: a unit of
 * N bytes moves it on by N / speed from when it was due, so units follow
 * each other at exactly the speed when the work is faster than that,
 * also when the thread wakes up late; a slow unit or a pause earns no
 * burst beyond RATE_MAX_LAG_US.  With units of at most a twentieth of the
 * speed (job_rate_chunk), any 2-second window sees the speed within 10%
 * (a unit, and the lag at most). */
#include "job-internal.h"

#include <errno.h>

/* Units per second at most: a unit is at most 1/20 s of work. */
#define UNITS_PER_SECOND 20
/* A unit that starts late (the thread was not scheduled at once) may
 * make up this much lost time, no more (a burst after a pause). */
#define RATE_MAX_LAG_US (G_USEC_PER_SEC / 10)

bool job_is_cancelled(Job *job)
{
    g_mutex_lock(&job->lock);
    bool cancelled = job->cancelled;
    g_mutex_unlock(&job->lock);
    return cancelled;
}

static bool must_pause(Job *job)
{
    return job->pause_count > 0 && !job->cancelled;
}

bool job_interrupted(Job *job)
{
    g_mutex_lock(&job->lock);
    bool stop = job->pause_count > 0 || job->cancelled;
    g_mutex_unlock(&job->lock);
    return stop;
}

void job_pause_point(Job *job)
{
    g_mutex_lock(&job->lock);
    if (!must_pause(job)) {
        g_mutex_unlock(&job->lock);
        return;
    }
    job->busy = false;
    g_mutex_unlock(&job->lock);
    job_set_status(job, JOB_STATUS_PAUSED);
    g_mutex_lock(&job->lock);
    while (must_pause(job)) {
        g_cond_wait(&job->cond, &job->lock);
    }
    job->busy = true;
    g_mutex_unlock(&job->lock);
    job_set_status(job, JOB_STATUS_RUNNING);
}

/* ---- Rate limit ---- */

void job_rate_wait(Job *job)
{
    g_mutex_lock(&job->lock);
    job->busy = false;
    while (job->speed > 0 && !job->cancelled && job->pause_count == 0 &&
           g_get_monotonic_time() < job->rate_next_us) {
        g_cond_wait_until(&job->cond, &job->lock, job->rate_next_us);
    }
    job->busy = true;
    job->rate_mark_us = g_get_monotonic_time();
    g_mutex_unlock(&job->lock);
}

void job_rate_account(Job *job, uint64_t bytes)
{
    g_mutex_lock(&job->lock);
    if (job->speed > 0) {
        gint64 start = MAX(job->rate_next_us, job->rate_mark_us - RATE_MAX_LAG_US);
        job->rate_next_us = start + (gint64)((double)bytes * G_USEC_PER_SEC / job->speed);
    }
    g_mutex_unlock(&job->lock);
}

uint64_t job_rate_chunk(Job *job, uint64_t unit, uint64_t max)
{
    g_mutex_lock(&job->lock);
    int64_t speed = job->speed;
    g_mutex_unlock(&job->lock);
    if (speed == 0) {
        return max;
    }
    uint64_t chunk = (uint64_t)speed / UNITS_PER_SECOND / unit * unit;
    return MIN(MAX(chunk, unit), max);
}

/* ---- Progress ---- */

void job_progress_set_total(Job *job, uint64_t len)
{
    g_mutex_lock(&job->lock);
    job->len = len;
    g_mutex_unlock(&job->lock);
}

void job_progress_set_offset(Job *job, uint64_t offset)
{
    g_mutex_lock(&job->lock);
    job->offset = offset;
    g_mutex_unlock(&job->lock);
}

/* ---- Errors ---- */

static JobErrorAction action_for(JobOnError policy, int err)
{
    switch (policy) {
    case JOB_ON_ERROR_IGNORE:
        return JOB_ACTION_IGNORE;
    case JOB_ON_ERROR_STOP:
        return JOB_ACTION_STOP;
    case JOB_ON_ERROR_ENOSPC:
    case JOB_ON_ERROR_AUTO:
        return err == -ENOSPC ? JOB_ACTION_STOP : JOB_ACTION_REPORT;
    default:
        return JOB_ACTION_REPORT;
    }
}

/* An error stop: paused as if by the user, io-status says why. */
static void stop_on_error(Job *job, int err)
{
    g_mutex_lock(&job->lock);
    if (!job->user_paused) {
        job->user_paused = true;
        job->pause_count++;
    }
    job->io_status = err == -ENOSPC ? JOB_IO_NOSPACE : JOB_IO_FAILED;
    g_mutex_unlock(&job->lock);
}

JobErrorAction job_error_action(Job *job, const char *operation, int err)
{
    JobErrorAction action = action_for(job->on_error, err);
    JobEventSink s = job_event_sink();

    if (action == JOB_ACTION_STOP) {
        stop_on_error(job, err);
    }
    if (s.error) {
        JobInfo info;
        job_get_info(job, &info);
        s.error(&info, operation, action, s.opaque);
        job_info_clear(&info);
    }
    return action;
}
