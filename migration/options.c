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
    [MIG_CAP_MULTIFD] = "multifd",
    [MIG_CAP_COMPRESS] = "compress",
    [MIG_CAP_AUTO_CONVERGE] = "auto-converge",
    [MIG_CAP_BLOCK_RESUME] = "block-resume",
    [MIG_CAP_BLOCK_CHECKSUM] = "block-checksum",
};

static const char *const copy_mode_names[MIG_COPY_MODE__MAX] = {
    [MIG_COPY_MODE_BACKGROUND] = "background",
    [MIG_COPY_MODE_WRITE_BLOCKING] = "write-blocking",
};

static const char *const timeout_action_names[MIG_TIMEOUT_ACTION__MAX] = {
    [MIG_TIMEOUT_ACTION_CANCEL] = "cancel",
    [MIG_TIMEOUT_ACTION_WRITE_BLOCKING] = "write-blocking",
};

static const char *const compress_algorithm_names[MIG_COMPRESS__MAX] = {
    [MIG_COMPRESS_ZSTD] = "zstd",
    [MIG_COMPRESS_ZLIB] = "zlib",
};

static GMutex options_lock;
static bool caps[MIG_CAP__MAX] = {
    [MIG_CAP_RETURN_PATH] = true,
};
static MigrationParameters params = {
    .max_bandwidth = MIG_DEFAULT_MAX_BANDWIDTH,
    .downtime_limit = MIG_DEFAULT_DOWNTIME_LIMIT,
    .dirty_granularity = MIG_DEFAULT_DIRTY_GRANULARITY,
    .multifd_channels = MIG_DEFAULT_MULTIFD_CHANNELS,
    .compress_level = MIG_DEFAULT_COMPRESS_LEVEL,
    .compress_zstd_level = MIG_DEFAULT_COMPRESS_ZSTD_LEVEL,
    .compress_algorithm = MIG_COMPRESS_ZSTD,
    .max_inflight = MIG_DEFAULT_MAX_INFLIGHT,
    .link_timeout = MIG_DEFAULT_LINK_TIMEOUT,
    .resume_timeout = MIG_DEFAULT_RESUME_TIMEOUT,
    .block_copy_mode = MIG_COPY_MODE_BACKGROUND,
    .timeout_action = MIG_TIMEOUT_ACTION_CANCEL,
    .cpu_throttle_initial = MIG_DEFAULT_CPU_THROTTLE_INITIAL,
    .cpu_throttle_increment = MIG_DEFAULT_CPU_THROTTLE_INCREMENT,
    .max_cpu_throttle = MIG_DEFAULT_MAX_CPU_THROTTLE,
    .throttle_trigger_threshold = MIG_DEFAULT_THROTTLE_TRIGGER_THRESHOLD,
};

/* The TLS parameters, "" when unset; options_lock. */
static char *tls_param[3];
/* NAMES[i] for I below N, else NULL; the index of NAME, else -1. */
static const char *enum_name(const char *const *names, int n, int i)
{
    return i >= 0 && i < n ? names[i] : NULL;
}

static int enum_from_name(const char *const *names, int n, const char *name)
{
    for (int i = 0; i < n; i++) {
        if (strcmp(name, names[i]) == 0) {
            return i;
        }
    }
    return -1;
}

const char *mig_copy_mode_name(MigrationCopyMode mode)
{
    return enum_name(copy_mode_names, MIG_COPY_MODE__MAX, mode);
}

int mig_copy_mode_from_name(const char *name)
{
    return enum_from_name(copy_mode_names, MIG_COPY_MODE__MAX, name);
}

const char *mig_timeout_action_name(MigrationTimeoutAction action)
{
    return enum_name(timeout_action_names, MIG_TIMEOUT_ACTION__MAX, action);
}

int mig_timeout_action_from_name(const char *name)
{
    return enum_from_name(timeout_action_names, MIG_TIMEOUT_ACTION__MAX, name);
}

const char *mig_compress_algorithm_name(MigrationCompressAlgorithm algo)
{
    return enum_name(compress_algorithm_names, MIG_COMPRESS__MAX, algo);
}

int mig_compress_algorithm_from_name(const char *name)
{
    return enum_from_name(compress_algorithm_names, MIG_COMPRESS__MAX, name);
}

const char *mig_cap_name(MigrationCapability cap)
{
    return enum_name(cap_names, MIG_CAP__MAX, cap);
}

int mig_cap_from_name(const char *name)
{
    return enum_from_name(cap_names, MIG_CAP__MAX, name);
}

/* Set while the block capability / block-incremental is on for one
 * migration only. */
static gint block_cap_temporary;
static gint incremental_temporary;

void mig_cap_block_for_one_migration(void)
{
    mig_cap_set(MIG_CAP_BLOCK, true);
    g_atomic_int_set(&block_cap_temporary, 1);
}

void mig_block_incremental_for_one_migration(void)
{
    g_mutex_lock(&options_lock);
    if (!params.block_incremental) {
        params.block_incremental = true;
        g_atomic_int_set(&incremental_temporary, 1);
    }
    g_mutex_unlock(&options_lock);
}

void mig_cap_restore_temporary(void)
{
    if (g_atomic_int_compare_and_exchange(&block_cap_temporary, 1, 0)) {
        mig_cap_set(MIG_CAP_BLOCK, false);
    }
    if (g_atomic_int_compare_and_exchange(&incremental_temporary, 1, 0)) {
        g_mutex_lock(&options_lock);
        params.block_incremental = false;
        g_mutex_unlock(&options_lock);
    }
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

void mig_tls_params_get(MigrationTlsParameters *out)
{
    g_mutex_lock(&options_lock);
    out->creds = g_strdup(tls_param[0] ? tls_param[0] : "");
    out->hostname = g_strdup(tls_param[1] ? tls_param[1] : "");
    out->authz = g_strdup(tls_param[2] ? tls_param[2] : "");
    g_mutex_unlock(&options_lock);
}

void mig_tls_params_clear(MigrationTlsParameters *p)
{
    g_clear_pointer(&p->creds, g_free);
    g_clear_pointer(&p->hostname, g_free);
    g_clear_pointer(&p->authz, g_free);
}

/* options_lock held. */
static void tls_params_apply_locked(const MigrationParametersUpdate *u)
{
    const char *values[3] = { u->tls_creds, u->tls_hostname, u->tls_authz };

    for (int i = 0; i < 3; i++) {
        if (values[i]) {
            g_free(tls_param[i]);
            tls_param[i] = g_strdup(values[i]);
        }
    }
}

/* An integer parameter outside [MIN, MAX]: QEMU's wording. */
static bool range_error(GError **errp, const char *name, uint64_t min, uint64_t max,
                        const char *unit)
{
    g_set_error(errp, MIG_ERROR, 0,
                "Parameter '%s' expects an integer in the range of %" G_GUINT64_FORMAT
                " to %" G_GUINT64_FORMAT "%s", name, min, max, unit);
    return false;
}

/* The parameters QEMU lacks or that steer the engine's extensions. */
static bool params_check_engine(const MigrationParametersUpdate *u, GError **errp)
{
    if (u->has_multifd_channels &&
        (u->p.multifd_channels < 1 || u->p.multifd_channels > MIG_MAX_MULTIFD_CHANNELS)) {
        return range_error(errp, "multifd-channels", 1, MIG_MAX_MULTIFD_CHANNELS, "");
    }
    if (u->has_compress_level && u->p.compress_level > MIG_MAX_COMPRESS_LEVEL) {
        return range_error(errp, "compress-level", 0, MIG_MAX_COMPRESS_LEVEL, "");
    }
    if (u->has_compress_zstd_level &&
        (u->p.compress_zstd_level < 1 ||
         u->p.compress_zstd_level > MIG_MAX_COMPRESS_ZSTD_LEVEL)) {
        return range_error(errp, "compress-zstd-level", 1, MIG_MAX_COMPRESS_ZSTD_LEVEL, "");
    }
    if (u->has_compress_algorithm &&
        (unsigned)u->p.compress_algorithm >= MIG_COMPRESS__MAX) {
        g_set_error(errp, MIG_ERROR, 0,
                    "Parameter 'compress-algorithm' expects 'zstd' or 'zlib'");
        return false;
    }
    if (u->has_max_inflight &&
        (u->p.max_inflight < MIG_MIN_MAX_INFLIGHT || u->p.max_inflight > MIG_MAX_MAX_INFLIGHT)) {
        return range_error(errp, "max-inflight", MIG_MIN_MAX_INFLIGHT, MIG_MAX_MAX_INFLIGHT,
                           " bytes");
    }
    if (u->has_link_timeout &&
        (u->p.link_timeout < 1 || u->p.link_timeout > MIG_MAX_LINK_TIMEOUT)) {
        return range_error(errp, "link-timeout", 1, MIG_MAX_LINK_TIMEOUT, " seconds");
    }
    if (u->has_resume_timeout &&
        (u->p.resume_timeout < 1 || u->p.resume_timeout > MIG_MAX_TIMEOUT)) {
        return range_error(errp, "resume-timeout", 1, MIG_MAX_TIMEOUT, " seconds");
    }
    return true;
}

/* What makes a migration finish: copy mode, timeouts, auto-converge. */
static bool params_check_convergence(const MigrationParametersUpdate *u, GError **errp)
{
    const struct {
        bool has;
        uint64_t value, min, max;
        const char *name, *unit;
    } ranges[] = {
        { u->has_progress_timeout, u->p.progress_timeout, 0, MIG_MAX_TIMEOUT,
          "progress-timeout", " seconds" },
        { u->has_completion_timeout, u->p.completion_timeout, 0, MIG_MAX_TIMEOUT,
          "completion-timeout", " seconds" },
        { u->has_cpu_throttle_initial, u->p.cpu_throttle_initial, 1, 99,
          "cpu-throttle-initial", "" },
        { u->has_cpu_throttle_increment, u->p.cpu_throttle_increment, 1, 99,
          "cpu-throttle-increment", "" },
        { u->has_max_cpu_throttle, u->p.max_cpu_throttle, 1, 99, "max-cpu-throttle", "" },
        { u->has_throttle_trigger_threshold, u->p.throttle_trigger_threshold, 1, 100,
          "throttle-trigger-threshold", "" },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(ranges); i++) {
        if (ranges[i].has && (ranges[i].value < ranges[i].min || ranges[i].value > ranges[i].max)) {
            return range_error(errp, ranges[i].name, ranges[i].min, ranges[i].max, ranges[i].unit);
        }
    }
    if (u->has_block_copy_mode && (unsigned)u->p.block_copy_mode >= MIG_COPY_MODE__MAX) {
        g_set_error(errp, MIG_ERROR, 0,
                    "Parameter 'block-copy-mode' expects 'background' or 'write-blocking'");
        return false;
    }
    if (u->has_timeout_action && (unsigned)u->p.timeout_action >= MIG_TIMEOUT_ACTION__MAX) {
        g_set_error(errp, MIG_ERROR, 0,
                    "Parameter 'timeout-action' expects 'cancel' or 'write-blocking'");
        return false;
    }
    return true;
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
    return params_check_engine(u, errp) && params_check_convergence(u, errp);
}

/* options_lock held: QEMU's own parameters and the engine's. */
static void apply_engine_locked(const MigrationParametersUpdate *u)
{
    if (u->has_max_bandwidth) {
        params.max_bandwidth = u->p.max_bandwidth;
    }
    if (u->has_downtime_limit) {
        params.downtime_limit = u->p.downtime_limit;
    }
    if (u->has_dirty_granularity) {
        params.dirty_granularity = u->p.dirty_granularity;
    }
    if (u->has_multifd_channels) {
        params.multifd_channels = u->p.multifd_channels;
    }
    if (u->has_compress_level) {
        params.compress_level = u->p.compress_level;
    }
    if (u->has_compress_zstd_level) {
        params.compress_zstd_level = u->p.compress_zstd_level;
    }
    if (u->has_compress_algorithm) {
        params.compress_algorithm = u->p.compress_algorithm;
    }
    if (u->has_max_inflight) {
        params.max_inflight = u->p.max_inflight;
    }
    if (u->has_link_timeout) {
        params.link_timeout = u->p.link_timeout;
    }
    if (u->has_resume_timeout) {
        params.resume_timeout = u->p.resume_timeout;
    }
    if (u->has_block_incremental) {
        params.block_incremental = u->p.block_incremental;
    }
    tls_params_apply_locked(u);
}

/* options_lock held: what makes a migration finish. */
static void apply_convergence_locked(const MigrationParametersUpdate *u)
{
    if (u->has_block_copy_mode) {
        params.block_copy_mode = u->p.block_copy_mode;
    }
    if (u->has_progress_timeout) {
        params.progress_timeout = u->p.progress_timeout;
    }
    if (u->has_completion_timeout) {
        params.completion_timeout = u->p.completion_timeout;
    }
    if (u->has_timeout_action) {
        params.timeout_action = u->p.timeout_action;
    }
    if (u->has_cpu_throttle_initial) {
        params.cpu_throttle_initial = u->p.cpu_throttle_initial;
    }
    if (u->has_cpu_throttle_increment) {
        params.cpu_throttle_increment = u->p.cpu_throttle_increment;
    }
    if (u->has_max_cpu_throttle) {
        params.max_cpu_throttle = u->p.max_cpu_throttle;
    }
    if (u->has_throttle_trigger_threshold) {
        params.throttle_trigger_threshold = u->p.throttle_trigger_threshold;
    }
}

bool mig_params_apply(const MigrationParametersUpdate *u, GError **errp)
{
    if (!params_check(u, errp)) {
        return false;
    }
    g_mutex_lock(&options_lock);
    apply_engine_locked(u);
    apply_convergence_locked(u);
    g_mutex_unlock(&options_lock);
    return true;
}
