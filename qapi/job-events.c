/* The events of block jobs, as QEMU sends them: JOB_STATUS_CHANGE on
 * every state change, BLOCK_JOB_COMPLETED (with "error" when it failed),
 * BLOCK_JOB_CANCELLED, BLOCK_JOB_ERROR and BLOCK_JOB_READY.  The job layer
 * calls them from the jobs' threads through the sink registered here. */
#include "qmp-internal.h"

#include "jobs/job.h"

static void on_status_changed(const char *id, JobStatus status, void *opaque)
{
    JsonObject *data = json_object_new();
    json_object_set_string_member(data, "id", id);
    json_object_set_string_member(data, "status", job_status_name(status));
    qmp_event_emit("JOB_STATUS_CHANGE", data);
}

JsonObject *qmp_block_job_members(const JobInfo *info)
{
    JsonObject *data = json_object_new();
    json_object_set_string_member(data, "type", info->type);
    json_object_set_string_member(data, "device", info->id);
    json_object_set_int_member(data, "len", (gint64)info->len);
    json_object_set_int_member(data, "offset", (gint64)info->offset);
    json_object_set_int_member(data, "speed", info->speed);
    return data;
}

static void on_completed(const JobInfo *info, const char *error, void *opaque)
{
    JsonObject *data = qmp_block_job_members(info);
    if (error) {
        json_object_set_string_member(data, "error", error);
    }
    qmp_event_emit("BLOCK_JOB_COMPLETED", data);
}

static void on_cancelled(const JobInfo *info, void *opaque)
{
    qmp_event_emit("BLOCK_JOB_CANCELLED", qmp_block_job_members(info));
}

static void on_error(const JobInfo *info, const char *operation, JobErrorAction action,
                     void *opaque)
{
    JsonObject *data = json_object_new();
    json_object_set_string_member(data, "device", info->id);
    json_object_set_string_member(data, "operation", operation);
    json_object_set_string_member(data, "action", job_action_name(action));
    qmp_event_emit("BLOCK_JOB_ERROR", data);
}

static void on_ready(const JobInfo *info, void *opaque)
{
    qmp_event_emit("BLOCK_JOB_READY", qmp_block_job_members(info));
}

void qmp_job_events_init(void)
{
    static const JobEventSink sink = {
        .status_changed = on_status_changed,
        .completed = on_completed,
        .cancelled = on_cancelled,
        .error = on_error,
        .ready = on_ready,
    };
    job_set_event_sink(&sink);
}
