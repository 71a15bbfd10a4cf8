/* Reactions to migration status changes: MIGRATION events (only with the
 * "events" capability, as in QEMU) and the end of a "blk": true migration,
 * which turns the block capability back off.  Runs on the migration's
 * threads. */
#include "qmp-internal.h"

#include "migration/migration.h"
#include "migration/options.h"

static gint block_cap_temporary;

void qmp_migration_block_cap_is_temporary(void)
{
    g_atomic_int_set(&block_cap_temporary, 1);
}

void qmp_migration_block_cap_restore(void)
{
    if (g_atomic_int_compare_and_exchange(&block_cap_temporary, 1, 0)) {
        mig_cap_set(MIG_CAP_BLOCK, false);
    }
}

static bool status_is_final(MigrationStatus status)
{
    return status == MIG_STATUS_COMPLETED || status == MIG_STATUS_FAILED ||
           status == MIG_STATUS_CANCELLED;
}

static void on_status(MigrationStatus status, void *opaque)
{
    /* Restore first so that a client reacting to the final event already
     * sees the capabilities as they were before. */
    if (status_is_final(status)) {
        qmp_migration_block_cap_restore();
    }
    if (mig_cap_enabled(MIG_CAP_EVENTS)) {
        JsonObject *data = json_object_new();
        json_object_set_string_member(data, "status", mig_status_name(status));
        qmp_event_emit("MIGRATION", data);
    }
}

void qmp_migration_events_init(void)
{
    migration_set_status_listener(on_status, NULL);
}
