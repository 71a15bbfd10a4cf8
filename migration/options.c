/* Migration capabilities and parameters, shared by QMP and the migration
 * thread (which re-reads them while running, so changes apply live). */
#include <string.h>

#include "migration/options.h"
#include "migration-internal.h"

#define MIN_DIRTY_GRANULARITY 4096
#define MAX_DIRTY_GRANULARITY (1024 * 1024)

static const char *const cap_names[MIG_CAP__MAX] = {
    [MIG_CAP_BLOCK] = "block",
    [MIG_CAP_ZERO_BLOCKS] = "zero-blocks",
    [MIG_CAP_EVENTS] = "events",
    [MIG_CAP_RETURN_PATH] = "return-path",
    [MIG_CAP_QEMU_COMPAT] = "qemu-compat",
};

static GMutex options_lock;
static bool caps[MIG_CAP__MAX] = {
    [MIG_CAP_RETURN_PATH] = true,
};
static MigrationParameters params = {
    .max_bandwidth = MIG_DEFAULT_MAX_BANDWIDTH,
    .downtime_limit = MIG_DEFAULT_DOWNTIME_LIMIT,
    .dirty_granularity = 64 * 1024,
};

const char *mig_cap_name(MigrationCapability cap)
{
    return (unsigned)cap < MIG_CAP__MAX ? cap_names[cap] : NULL;
}

int mig_cap_from_name(const char *name)
{
    for (int i = 0; i < MIG_CAP__MAX; i++) {
        if (strcmp(name, cap_names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

bool mig_cap_enabled(MigrationCapability cap)
{
    bool on;

    g_return_val_if_fail((unsigned)cap < MIG_CAP__MAX, false);
    g_mutex_lock(&options_lock);
    on = caps[cap];
    g_mutex_unlock(&options_lock);
    return on;
}

void mig_cap_set(MigrationCapability cap, bool on)
{
    g_return_if_fail((unsigned)cap < MIG_CAP__MAX);
    g_mutex_lock(&options_lock);
    caps[cap] = on;
    g_mutex_unlock(&options_lock);
}

void mig_params_get(MigrationParameters *out)
{
    g_mutex_lock(&options_lock);
    *out = params;
    g_mutex_unlock(&options_lock);
}

static bool params_check(const MigrationParametersUpdate *u, GError **errp)
{
    if (u->has_max_bandwidth && u->p.max_bandwidth > INT64_MAX) {
        g_set_error(errp, MIG_ERROR, 0,
                    "Parameter 'max-bandwidth' expects an integer in the range "
                    "of 0 to %" G_GINT64_FORMAT " bytes/second", (gint64)INT64_MAX);
        return false;
    }
    if (u->has_downtime_limit && u->p.downtime_limit > MIG_MAX_DOWNTIME_LIMIT) {
        g_set_error(errp, MIG_ERROR, 0,
                    "Parameter 'downtime-limit' expects an integer in the range "
                    "of 0 to %d milliseconds", MIG_MAX_DOWNTIME_LIMIT);
        return false;
    }
    if (u->has_dirty_granularity) {
        uint64_t g = u->p.dirty_granularity;
        if (g < MIN_DIRTY_GRANULARITY || g > MAX_DIRTY_GRANULARITY || (g & (g - 1))) {
            g_set_error(errp, MIG_ERROR, 0,
                        "Parameter 'dirty-granularity' expects a power of two "
                        "in the range of %d to %d bytes",
                        MIN_DIRTY_GRANULARITY, MAX_DIRTY_GRANULARITY);
            return false;
        }
    }
    return true;
}

bool mig_params_apply(const MigrationParametersUpdate *u, GError **errp)
{
    if (!params_check(u, errp)) {
        return false;
    }
    g_mutex_lock(&options_lock);
    if (u->has_max_bandwidth) {
        params.max_bandwidth = u->p.max_bandwidth;
    }
    if (u->has_downtime_limit) {
        params.downtime_limit = u->p.downtime_limit;
    }
    if (u->has_dirty_granularity) {
        params.dirty_granularity = u->p.dirty_granularity;
    }
    g_mutex_unlock(&options_lock);
    return true;
}
