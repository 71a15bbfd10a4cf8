/* Running migrations: migrate, migrate_cancel, migrate-incoming,
 * query-migrate. */
#include "qmp-internal.h"

#include "migration/migration.h"
#include "migration/options.h"

#define MIGRATION_ACTIVE_MSG "There's a migration process in progress"

static QmpIncomingAllowedFn incoming_allowed;

void qmp_set_incoming_allowed(QmpIncomingAllowedFn fn)
{
    incoming_allowed = fn;
}

typedef struct MigrateArgs {
    const char *uri;
    bool blk, inc, detach, resume;
} MigrateArgs;

static bool parse_migrate_args(JsonObject *args, MigrateArgs *m, GError **errp)
{
    *m = (MigrateArgs){ 0 };
    if (!qmp_args_only(args, errp, "uri", "blk", "inc", "detach", "resume", NULL)) {
        return false;
    }
    m->uri = qmp_arg_str(args, "uri", true, errp);
    return m->uri &&
        qmp_arg_bool(args, "blk", &m->blk, errp) &&
        qmp_arg_bool(args, "inc", &m->inc, errp) &&
        qmp_arg_bool(args, "detach", &m->detach, errp) &&   /* ignored, as in QEMU */
        qmp_arg_bool(args, "resume", &m->resume, errp);
}

static bool migrate_allowed(const MigrateArgs *m, GError **errp)
{
    const char *why = NULL;

    if (m->resume) {
        return true;    /* migration_resume says whether one is paused */
    }
    if (migration_incoming_pending()) {
        why = "Guest is waiting for an incoming migration";
    } else if (migration_is_active()) {
        why = MIGRATION_ACTIVE_MSG;
    }
    if (why) {
        qmp_set_error(errp, QMP_ERR_GENERIC, "%s", why);
    }
    return !why;
}

/* "blk": true turns the block capability on for this migration only;
 * "inc": true the block-incremental parameter as well, as in QEMU. */
static JsonNode *migrate(JsonObject *args, GError **errp)
{
    MigrateArgs m;
    if (!parse_migrate_args(args, &m, errp) || !migrate_allowed(&m, errp)) {
        return NULL;
    }
    if (m.resume) {
        migration_resume(m.uri, errp);
    } else if (m.blk || m.inc) {
        migration_start_with_block(m.uri, m.inc, errp);
    } else {
        migration_start(m.uri, errp);
    }
    return NULL;
}

static JsonNode *migrate_cancel(JsonObject *args, GError **errp)
{
    if (qmp_args_only(args, errp, NULL)) {
        migration_cancel();
    }
    return NULL;
}

static JsonNode *migrate_incoming(JsonObject *args, GError **errp)
{
    if (!qmp_args_only(args, errp, "uri", NULL)) {
        return NULL;
    }
    const char *uri = qmp_arg_str(args, "uri", true, errp);
    if (!uri) {
        return NULL;
    }
    if (!incoming_allowed || !incoming_allowed()) {
        qmp_set_error(errp, QMP_ERR_GENERIC,
                      "'-incoming' was not specified on the command line");
    } else if (migration_incoming_pending()) {
        qmp_set_error(errp, QMP_ERR_GENERIC, "The incoming migration has already been started");
    } else {
        migration_incoming_start(uri, errp);
    }
    return NULL;
}

/* block-resume: a paused incoming migration listens on "uri" again. */
static JsonNode *migrate_recover(JsonObject *args, GError **errp)
{
    if (!qmp_args_only(args, errp, "uri", NULL)) {
        return NULL;
    }
    const char *uri = qmp_arg_str(args, "uri", true, errp);
    if (uri) {
        migration_incoming_recover(uri, errp);
    }
    return NULL;
}

static JsonObject *disk_info(const MigrationDiskStats *d)
{
    JsonObject *disk = json_object_new();
    json_object_set_int_member(disk, "transferred", (gint64)d->transferred);
    json_object_set_int_member(disk, "remaining", (gint64)d->remaining);
    json_object_set_int_member(disk, "total", (gint64)d->total);
    json_object_set_int_member(disk, "bulk-copied", (gint64)d->bulk_copied);
    json_object_set_int_member(disk, "zero-blocks", (gint64)d->zero_blocks);
    json_object_set_int_member(disk, "data-blocks", (gint64)d->data_blocks);
    json_object_set_int_member(disk, "dirty-sync-count", (gint64)d->dirty_sync_count);
    json_object_set_double_member(disk, "mbps", d->mbps);
    json_object_set_int_member(disk, "dirty-rate", (gint64)d->dirty_rate);
    json_object_set_int_member(disk, "pass", (gint64)d->pass);
    json_object_set_int_member(disk, "verified", (gint64)d->verified);
    return disk;
}

static void add_times(JsonObject *obj, const MigrationInfo *info)
{
    json_object_set_int_member(obj, "total-time", info->total_time);
    json_object_set_int_member(obj, "setup-time", info->setup_time);
    if (info->status == MIG_STATUS_COMPLETED) {
        json_object_set_int_member(obj, "downtime", info->downtime);
    } else if (info->status == MIG_STATUS_ACTIVE) {
        json_object_set_int_member(obj, "expected-downtime", info->expected_downtime);
    }
}

static JsonObject *migration_info_object(const MigrationInfo *info)
{
    JsonObject *obj = json_object_new();
    if (info->status == MIG_STATUS_NONE) {
        return obj;
    }
    json_object_set_string_member(obj, "status", mig_status_name(info->status));
    if (info->has_times) {
        add_times(obj, info);
    }
    if ((info->status == MIG_STATUS_FAILED || info->status == MIG_STATUS_PAUSED) &&
        info->error_desc) {
        json_object_set_string_member(obj, "error-desc", info->error_desc);
    }
    if (info->has_disk) {
        json_object_set_object_member(obj, "disk", disk_info(&info->disk));
    }
    if (info->has_throttle) {
        json_object_set_int_member(obj, "cpu-throttle-percentage",
                                   (gint64)info->throttle_percentage);
    }
    return obj;
}

static JsonNode *query_migrate(JsonObject *args, GError **errp)
{
    if (!qmp_args_only(args, errp, NULL)) {
        return NULL;
    }
    MigrationInfo info = { 0 };
    migration_query(&info);
    JsonNode *ret = qmp_node_take_object(migration_info_object(&info));
    migration_info_clear(&info);
    return ret;
}

void qmp_register_migration_commands(void)
{
    qmp_register_command("migrate", migrate);
    qmp_register_command("migrate_cancel", migrate_cancel);
    qmp_register_command("migrate-incoming", migrate_incoming);
    qmp_register_command("migrate-recover", migrate_recover);
    qmp_register_command("query-migrate", query_migrate);
}
