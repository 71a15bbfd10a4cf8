/* Block jobs seen and steered over QMP: query-block-jobs (QEMU's
 * BlockJobInfo), query-jobs (JobInfo), block-job-set-speed, -pause,
 * -resume and -cancel, which name the job by its id in "device" as QEMU
 * does since jobs have ids. */
#include "qmp-internal.h"

#include "jobs/job.h"

static JsonObject *block_job_info(const JobInfo *j)
{
    JsonObject *obj = qmp_block_job_members(j);
    json_object_set_boolean_member(obj, "busy", j->busy);
    json_object_set_boolean_member(obj, "paused", j->paused);
    json_object_set_string_member(obj, "io-status", job_io_status_name(j->io_status));
    json_object_set_boolean_member(obj, "ready", j->ready);
    json_object_set_string_member(obj, "status", job_status_name(j->status));
    json_object_set_boolean_member(obj, "auto-finalize", true);
    json_object_set_boolean_member(obj, "auto-dismiss", true);
    if (j->error) {
        json_object_set_string_member(obj, "error", j->error);
    }
    return obj;
}

static JsonObject *job_info(const JobInfo *j)
{
    JsonObject *obj = json_object_new();
    json_object_set_string_member(obj, "id", j->id);
    json_object_set_string_member(obj, "type", j->type);
    json_object_set_string_member(obj, "status", job_status_name(j->status));
    json_object_set_int_member(obj, "current-progress", (gint64)j->offset);
    json_object_set_int_member(obj, "total-progress", (gint64)j->len);
    if (j->error) {
        json_object_set_string_member(obj, "error", j->error);
    }
    return obj;
}

/* Every job as FORMAT makes it. */
static JsonNode *list_jobs(JsonObject *args, JsonObject *(*format)(const JobInfo *),
                           GError **errp)
{
    if (!qmp_args_only(args, errp, NULL)) {
        return NULL;
    }
    GArray *infos = job_query_all();
    JsonArray *list = json_array_new();
    for (guint i = 0; i < infos->len; i++) {
        JobInfo *j = &g_array_index(infos, JobInfo, i);
        json_array_add_object_element(list, format(j));
        job_info_clear(j);
    }
    g_array_unref(infos);
    return qmp_node_take_array(list);
}

static JsonNode *query_block_jobs(JsonObject *args, GError **errp)
{
    return list_jobs(args, block_job_info, errp);
}

static JsonNode *query_jobs(JsonObject *args, GError **errp)
{
    return list_jobs(args, job_info, errp);
}

/* The job named by "device", or NULL with QEMU's DeviceNotActive error. */
static Job *find_job(JsonObject *args, GError **errp)
{
    const char *id = qmp_arg_str(args, "device", true, errp);
    Job *job = id ? job_find(id) : NULL;

    if (id && !job) {
        qmp_set_error(errp, QMP_ERR_DEVICE_NOT_ACTIVE, "Block job '%s' not found", id);
    }
    return job;
}

typedef bool (*JobVerbFn)(Job *job, GError **errp);

/* A verb that takes only the job ("force" of cancel is accepted: a stream
 * job is never ready, where it would matter). */
static JsonNode *job_verb(JsonObject *args, JobVerbFn verb, bool takes_force, GError **errp)
{
    bool force = false;
    if (!qmp_args_only(args, errp, "device", takes_force ? "force" : NULL, NULL) ||
        !qmp_arg_bool(args, "force", &force, errp)) {
        return NULL;
    }
    Job *job = find_job(args, errp);
    if (job) {
        verb(job, errp);
        job_release(job);
    }
    return NULL;
}

static JsonNode *block_job_pause(JsonObject *args, GError **errp)
{
    return job_verb(args, job_user_pause, false, errp);
}

static JsonNode *block_job_resume(JsonObject *args, GError **errp)
{
    return job_verb(args, job_user_resume, false, errp);
}

static JsonNode *block_job_cancel(JsonObject *args, GError **errp)
{
    return job_verb(args, job_user_cancel, true, errp);
}

static JsonNode *block_job_set_speed(JsonObject *args, GError **errp)
{
    int64_t speed = 0;
    bool has_speed = false;

    if (!qmp_args_only(args, errp, "device", "speed", NULL) ||
        !qmp_arg_int(args, "speed", &has_speed, &speed, errp)) {
        return NULL;
    }
    if (!has_speed) {
        qmp_set_error(errp, QMP_ERR_GENERIC, "Parameter 'speed' is missing");
        return NULL;
    }
    Job *job = find_job(args, errp);
    if (job) {
        job_set_speed(job, speed, errp);
        job_release(job);
    }
    return NULL;
}

void qmp_register_job_commands(void)
{
    qmp_register_command("query-block-jobs", query_block_jobs);
    qmp_register_command("query-jobs", query_jobs);
    qmp_register_command("block-job-set-speed", block_job_set_speed);
    qmp_register_command("block-job-pause", block_job_pause);
    qmp_register_command("block-job-resume", block_job_resume);
    qmp_register_command("block-job-cancel", block_job_cancel);
    qmp_job_events_init();
}
