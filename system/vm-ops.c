/* What a migration does to the guest, registered with migration/ as its
 * MigrationVmOps.  These run on the migration's threads. */
#include <string.h>

#include "migration/migration.h"
#include "nbd/server.h"
#include "system/runstate.h"
#include "system-internal.h"

static gint autostart;      /* start the guest after an incoming migration */
static gint source_stopped; /* ...unless its source's guest did not run */
static gint nbd_in_use;

void vm_ops_set_autostart(bool on)
{
    g_atomic_int_set(&autostart, on);
}

void vm_ops_source_runstate(const char *runstate, void *opaque)
{
    g_atomic_int_set(&source_stopped, runstate && strcmp(runstate, "running") != 0);
}

static void stop_for_switchover(void *opaque)
{
    vm_stop(RUN_STATE_FINISH_MIGRATE);
}

/* Success: the destination owns the disks now, so the guest must never
 * write here again (NBD clients get ESHUTDOWN).  Failure: the guest goes on
 * here as if nothing happened. */
static void source_finished(void *opaque, bool success, bool was_running)
{
    if (success) {
        runstate_set(RUN_STATE_POSTMIGRATE);
        if (g_atomic_int_get(&nbd_in_use)) {
            nbd_server_refuse_writes();
        }
    } else if (was_running) {
        vm_start_force();
    } else if (runstate_get() == RUN_STATE_FINISH_MIGRATE) {
        runstate_set(RUN_STATE_PAUSED);
    }
}

/* Failure leaves the guest waiting in inmigrate: migrate-incoming may try
 * again. */
static void incoming_finished(void *opaque, bool success)
{
    if (!success) {
        return;
    }
    if (g_atomic_int_get(&autostart) && !g_atomic_int_get(&source_stopped)) {
        vm_start_force();
    } else {
        runstate_set(RUN_STATE_PAUSED);
    }
}

static bool guest_is_running(void *opaque)
{
    return runstate_is_running();
}

void vm_ops_install(bool start_after_incoming)
{
    static const MigrationVmOps ops = {
        .stop_for_switchover = stop_for_switchover,
        .source_finished = source_finished,
        .incoming_finished = incoming_finished,
        .guest_is_running = guest_is_running,
    };
    vm_ops_set_autostart(start_after_incoming);
    migration_set_vm_ops(&ops);
}

void vm_ops_set_nbd_in_use(bool in_use)
{
    g_atomic_int_set(&nbd_in_use, in_use);
}
