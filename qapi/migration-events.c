/* MIGRATION events on migration status changes and MIGRATION_PASS events
 * at each pass over the disks (only with the "events" capability, as in
 * QEMU).  Runs on the migration's threads; the
 * migration core has restored a temporary block capability (QMP migrate
 * "blk": true) before a final status reaches us. */
#include "qmp-internal.h"

#include "migration/migration.h"
#include "migration/options.h"

static void on_status(MigrationStatus status, void *opaque)
{
    if (mig_cap_enabled(MIG_CAP_EVENTS)) {
        JsonObject *data = json_object_new();
        json_object_set_string_member(data, "status", mig_status_name(status));
        qmp_event_emit("MIGRATION", data);
    }
}

static void on_pass(uint64_t pass, void *opaque)
{
    if (mig_cap_enabled(MIG_CAP_EVENTS)) {
        JsonObject *data = json_object_new();
        json_object_set_int_member(data, "pass", (gint64)pass);
        qmp_event_emit("MIGRATION_PASS", data);
    }
}

void qmp_migration_events_init(void)
{
    migration_set_status_listener(on_status, NULL);
    migration_set_pass_listener(on_pass, NULL);
}
