/* The list of jobs: unique ids and one job per drive, lookups and
 * queries, the migration blocker (a migration is refused while any job is
 * listed), and cancelling every job at shutdown, waiting for their
 * threads. */
#include "job-internal.h"

#include <gio/gio.h>
#include <string.h>

#include "util/id.h"

#define MAX_ID_LEN 255

static GMutex registry_lock;
static GCond threads_done;
static GQueue jobs = G_QUEUE_INIT;     /* Job *, creation order */
static unsigned live_threads;          /* created jobs whose thread has not ended */

static Job *find_locked(const char *id, const char *device)
{
    for (GList *l = jobs.head; l; l = l->next) {
        Job *job = l->data;
        if ((id && strcmp(job->id, id) == 0) || (device && strcmp(job->device, device) == 0)) {
            return job;
        }
    }
    return NULL;
}

static bool device_free_locked(const char *device, GError **errp)
{
    Job *other = find_locked(NULL, device);

    if (other) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_BUSY,
                    "Node '%s' is busy: block device is in use by block job: %s", device,
                    other->drv->type);
    }
    return other == NULL;
}

bool job_check_device_free(const char *device, GError **errp)
{
    g_mutex_lock(&registry_lock);
    bool ok = device_free_locked(device, errp);
    g_mutex_unlock(&registry_lock);
    return ok;
}

static bool check_new_locked(Job *job, GError **errp)
{
    if (!id_wellformed(job->id, MAX_ID_LEN)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "Invalid job ID '%s'",
                    job->id);
        return false;
    }
    if (find_locked(job->id, NULL)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_EXISTS, "Job ID '%s' already in use",
                    job->id);
        return false;
    }
    return device_free_locked(job->device, errp);
}

bool job_registry_add(Job *job, GError **errp)
{
    g_mutex_lock(&registry_lock);
    bool ok = check_new_locked(job, errp);
    if (ok) {
        g_queue_push_tail(&jobs, job);
        live_threads++;
    }
    g_mutex_unlock(&registry_lock);
    return ok;
}

void job_registry_remove(Job *job)
{
    g_mutex_lock(&registry_lock);
    g_queue_remove(&jobs, job);
    g_mutex_unlock(&registry_lock);
}

void job_registry_thread_done(void)
{
    g_mutex_lock(&registry_lock);
    live_threads--;
    g_cond_broadcast(&threads_done);
    g_mutex_unlock(&registry_lock);
}

static Job *lookup(const char *id, const char *device)
{
    g_mutex_lock(&registry_lock);
    Job *job = find_locked(id, device);
    if (job) {
        job_ref(job);
    }
    g_mutex_unlock(&registry_lock);
    return job;
}

Job *job_find(const char *id)
{
    return lookup(id, NULL);
}

Job *job_find_by_device(const char *device)
{
    return lookup(NULL, device);
}

void job_release(Job *job)
{
    job_unref(job);
}

GArray *job_query_all(void)
{
    GArray *infos = g_array_new(FALSE, TRUE, sizeof(JobInfo));

    g_mutex_lock(&registry_lock);
    for (GList *l = jobs.head; l; l = l->next) {
        JobInfo info;
        job_get_info(l->data, &info);
        g_array_append_val(infos, info);
    }
    g_mutex_unlock(&registry_lock);
    return infos;
}

bool job_check_migration(GError **errp)
{
    g_mutex_lock(&registry_lock);
    Job *job = g_queue_peek_head(&jobs);
    if (job) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_BUSY,
                    "Block job '%s' (%s of drive '%s') is running: migration is blocked "
                    "until it completes or is cancelled", job->id, job->drv->type,
                    job->device);
    }
    g_mutex_unlock(&registry_lock);
    return job == NULL;
}

void job_cancel_all_sync(void)
{
    g_mutex_lock(&registry_lock);
    for (GList *l = jobs.head; l; l = l->next) {
        job_request_cancel(l->data);
    }
    while (live_threads > 0) {
        g_cond_wait(&threads_done, &registry_lock);
    }
    g_mutex_unlock(&registry_lock);
}
