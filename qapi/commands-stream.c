/* Streaming over QMP: block-stream with QEMU's arguments (device, job-id,
 * base or base-node, backing-file, speed, on-error) and QEMU's errors,
 * and blkmig's own x-block-stream-range (device, offset), one range at a
 * time for managers that pace the work themselves. */
#include "qmp-internal.h"

#include <string.h>

#include "block/block.h"
#include "jobs/stream.h"
#include "migration/migration.h"

/* The drive named by "device", or NULL with QEMU's error. */
static BlockDriverState *find_drive(JsonObject *args, GError **errp)
{
    const char *device = qmp_arg_str(args, "device", true, errp);
    BlockDriverState *bs = device ? bdrv_find(device) : NULL;

    if (device && !bs) {
        qmp_set_error(errp, QMP_ERR_GENERIC, "Cannot find device=%s nor node_name=%s", device,
                      device);
    }
    return bs;
}

/* base-node: blkmig's backing nodes have no node names of their own; one
 * is named by its file name, as query-block's backing-image shows it. */
static BlockDriverState *find_base_node(BlockDriverState *bs, const char *name, GError **errp)
{
    for (BlockDriverState *b = bdrv_get_backing(bs); b; b = bdrv_get_backing(b)) {
        if (strcmp(bdrv_get_filename(b), name) == 0) {
            return b;
        }
    }
    qmp_set_error(errp, QMP_ERR_GENERIC, "Cannot find device= nor node_name=%s", name);
    return NULL;
}

/* *BASE from "base" or "base-node"; *NAME the name the header will give it
 * unless "backing-file" says otherwise. */
static bool find_base(JsonObject *args, BlockDriverState *bs, BlockDriverState **base,
                      const char **name, GError **errp)
{
    const char *by_name = qmp_arg_str(args, "base", false, errp);
    const char *by_node = qmp_arg_str(args, "base-node", false, errp);

    *base = NULL;
    *name = NULL;
    if (by_name && by_node) {
        qmp_set_error(errp, QMP_ERR_GENERIC,
                      "'base' and 'base-node' cannot be specified at the same time");
        return false;
    }
    if (by_name && !(*base = bdrv_find_backing_image(bs, by_name))) {
        qmp_set_error(errp, QMP_ERR_GENERIC, "Can't find '%s' in the backing chain", by_name);
        return false;
    }
    if (by_node && !(*base = find_base_node(bs, by_node, errp))) {
        return false;
    }
    *name = by_name ? by_name : by_node;
    return !(errp && *errp);
}

static bool parse_on_error(JsonObject *args, JobOnError *out, GError **errp)
{
    const char *name = qmp_arg_str(args, "on-error", false, errp);
    int v = name ? job_on_error_from_name(name) : JOB_ON_ERROR_REPORT;

    if (v < 0) {
        qmp_set_error(errp, QMP_ERR_GENERIC, "Parameter 'on-error' does not accept value '%s'",
                      name);
        return false;
    }
    *out = (JobOnError)v;
    return !(errp && *errp);
}

/* The rest of StreamOptions, after the drive and its base. */
static bool parse_stream_rest(JsonObject *args, StreamOptions *o, GError **errp)
{
    const char *backing = qmp_arg_str(args, "backing-file", false, errp);

    o->job_id = qmp_arg_str(args, "job-id", false, errp);
    if ((errp && *errp) || !qmp_arg_int(args, "speed", NULL, &o->speed, errp) ||
        !parse_on_error(args, &o->on_error, errp)) {
        return false;
    }
    if (backing && !o->base) {
        qmp_set_error(errp, QMP_ERR_GENERIC,
                      "backing file specified, but streaming the entire chain");
        return false;
    }
    o->backing_file = backing ? backing : o->backing_file;
    return true;
}

static JsonNode *block_stream(JsonObject *args, GError **errp)
{
    StreamOptions o = { 0 };

    /* A drive no job uses keeps its chain until this returns: only jobs
     * change chains, and only this thread starts them. */
    if (!qmp_args_only(args, errp, "device", "job-id", "base", "base-node", "backing-file",
                       "speed", "on-error", NULL) ||
        !(o.bs = find_drive(args, errp)) || !job_check_device_free(bdrv_get_id(o.bs), errp) ||
        !find_base(args, o.bs, &o.base, &o.backing_file, errp) ||
        !parse_stream_rest(args, &o, errp)) {
        return NULL;
    }
    if (migration_is_active()) {
        qmp_set_error(errp, QMP_ERR_GENERIC, "There's a migration process in progress");
        return NULL;
    }
    stream_start(&o, errp);
    return NULL;
}

static bool parse_offset(JsonObject *args, int64_t *offset, GError **errp)
{
    bool has = false;

    if (!qmp_arg_int(args, "offset", &has, offset, errp)) {
        return false;
    }
    if (!has || *offset < 0) {
        qmp_set_error(errp, QMP_ERR_GENERIC, has ? "Invalid parameter 'offset'"
                                                 : "Parameter 'offset' is missing");
        return false;
    }
    return true;
}

static JsonNode *block_stream_range(JsonObject *args, GError **errp)
{
    BlockDriverState *bs;
    int64_t offset;
    uint64_t next;

    if (!qmp_args_only(args, errp, "device", "offset", NULL) ||
        !(bs = find_drive(args, errp)) || !parse_offset(args, &offset, errp) ||
        !job_check_device_free(bdrv_get_id(bs), errp) ||
        !stream_range(bs, (uint64_t)offset, &next, errp)) {
        return NULL;
    }
    JsonObject *ret = json_object_new();
    json_object_set_int_member(ret, "offset", (gint64)next);
    return qmp_node_take_object(ret);
}

void qmp_register_stream_commands(void)
{
    qmp_register_command("block-stream", block_stream);
    qmp_register_command("x-block-stream-range", block_stream_range);
}
