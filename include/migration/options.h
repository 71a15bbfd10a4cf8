/* Migration capabilities and parameters (QEMU names and units, plus
 * blkmig's own, documented in README). Thread-safe getters. */
#ifndef MIGRATION_OPTIONS_H
#define MIGRATION_OPTIONS_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum {
    MIG_CAP_BLOCK,          /* copy disk contents */
    MIG_CAP_ZERO_BLOCKS,    /* all-zero chunks as a flag */
    MIG_CAP_EVENTS,         /* MIGRATION events */
    MIG_CAP_RETURN_PATH,    /* destination acknowledges; blkmig default on */
    MIG_CAP_QEMU_COMPAT,    /* blkmig: only QEMU 7.2 records on the wire */
    MIG_CAP__MAX
} MigrationCapability;

const char *mig_cap_name(MigrationCapability cap);
/* -1 when NAME is unknown. */
int mig_cap_from_name(const char *name);
bool mig_cap_enabled(MigrationCapability cap);
void mig_cap_set(MigrationCapability cap, bool on);

typedef struct MigrationParameters {
    uint64_t max_bandwidth;     /* bytes/s; 0 = unlimited; default 128 MiB/s */
    uint64_t downtime_limit;    /* ms; default 300 */
    uint64_t dirty_granularity; /* blkmig: bytes, power of two 512..1 MiB; default 64 KiB */
} MigrationParameters;

#define MIG_DEFAULT_MAX_BANDWIDTH (128ULL << 20)
#define MIG_DEFAULT_DOWNTIME_LIMIT 300
#define MIG_MAX_DOWNTIME_LIMIT 2000000

void mig_params_get(MigrationParameters *out);
/* Validate-then-apply; on error nothing changes.  Only fields whose has_*
 * bit is set are applied. */
typedef struct MigrationParametersUpdate {
    bool has_max_bandwidth, has_downtime_limit, has_dirty_granularity;
    MigrationParameters p;
} MigrationParametersUpdate;
bool mig_params_apply(const MigrationParametersUpdate *u, GError **errp);

#endif
