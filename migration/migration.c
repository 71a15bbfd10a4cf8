/* The module's facade: what both migration directions share (status
 * names, the hooks the emulator registers), query-migrate and shutdown.
 * Handlers are registered by the emulator (savevm.h), not here. */
#include "migration/migration.h"
#include "migration/options.h"
#include "migration-internal.h"

G_DEFINE_QUARK(blkmig-migration-error-quark, mig_error)

static GMutex hooks_lock;
static MigrationVmOps vm_ops;
static MigrationStatusListener status_listener;
static void *status_listener_opaque;
static MigrationPassListener pass_listener;
static void *pass_listener_opaque;
static MigrationBlockerCheck blocker_check;

const char *mig_status_name(MigrationStatus s)
{
    static const char *const names[] = {
        [MIG_STATUS_NONE] = "none",
        [MIG_STATUS_SETUP] = "setup",
        [MIG_STATUS_ACTIVE] = "active",
        [MIG_STATUS_CANCELLING] = "cancelling",
        [MIG_STATUS_CANCELLED] = "cancelled",
        [MIG_STATUS_COMPLETED] = "completed",
        [MIG_STATUS_FAILED] = "failed",
        [MIG_STATUS_PAUSED] = "paused",
    };
    return (unsigned)s < G_N_ELEMENTS(names) ? names[s] : "unknown";
}

void migration_info_clear(MigrationInfo *info)
{
    g_clear_pointer(&info->error_desc, g_free);
}

void migration_set_vm_ops(const MigrationVmOps *ops)
{
    g_mutex_lock(&hooks_lock);
    vm_ops = *ops;
    g_mutex_unlock(&hooks_lock);
}

MigrationVmOps migration_get_vm_ops(void)
{
    MigrationVmOps ops;

    g_mutex_lock(&hooks_lock);
    ops = vm_ops;
    g_mutex_unlock(&hooks_lock);
    return ops;
}

void migration_set_status_listener(MigrationStatusListener cb, void *opaque)
{
    g_mutex_lock(&hooks_lock);
    status_listener = cb;
    status_listener_opaque = opaque;
    g_mutex_unlock(&hooks_lock);
}

void migration_set_pass_listener(MigrationPassListener cb, void *opaque)
{
    g_mutex_lock(&hooks_lock);
    pass_listener = cb;
    pass_listener_opaque = opaque;
    g_mutex_unlock(&hooks_lock);
}

void migration_notify_pass(uint64_t pass)
{
    MigrationPassListener cb;
    void *opaque;

    g_mutex_lock(&hooks_lock);
    cb = pass_listener;
    opaque = pass_listener_opaque;
    g_mutex_unlock(&hooks_lock);
    if (cb) {
        cb(pass, opaque);
    }
}

void migration_set_blocker_check(MigrationBlockerCheck check)
{
    g_mutex_lock(&hooks_lock);
    blocker_check = check;
    g_mutex_unlock(&hooks_lock);
}

bool migration_check_blockers(GError **errp)
{
    g_mutex_lock(&hooks_lock);
    MigrationBlockerCheck check = blocker_check;
    g_mutex_unlock(&hooks_lock);
    return !check || check(errp);
}

static bool status_is_final(MigrationStatus status)
{
    return status == MIG_STATUS_COMPLETED || status == MIG_STATUS_FAILED ||
           status == MIG_STATUS_CANCELLED;
}

void migration_notify_status(MigrationStatus status)
{
    MigrationStatusListener cb;
    void *opaque;

    /* First, so that whoever reacts to the final status already sees the
     * capabilities as they were before. */
    if (status_is_final(status)) {
        mig_cap_restore_temporary();
    }
    g_mutex_lock(&hooks_lock);
    cb = status_listener;
    opaque = status_listener_opaque;
    g_mutex_unlock(&hooks_lock);
    if (cb) {
        cb(status, opaque);
    }
}

void migration_join_thread(GMutex *lock, GThread **slot)
{
    GThread *thread;

    g_mutex_lock(lock);
    thread = *slot;
    *slot = NULL;
    g_mutex_unlock(lock);
    if (thread) {
        g_thread_join(thread);
    }
}

/* The outgoing migration is what query-migrate describes once one was
 * started; before that, a destination reports its incoming state. */
void migration_query(MigrationInfo *out)
{
    *out = (MigrationInfo){ .status = MIG_STATUS_NONE };
    if (!outgoing_query(out)) {
        incoming_query(out);
    }
}

void migration_shutdown(void)
{
    outgoing_shutdown();
    incoming_shutdown();
}
