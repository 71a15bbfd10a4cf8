/* Migration capabilities and parameters: migrate-set-capabilities,
 * query-migrate-capabilities, migrate-set-parameters,
 * query-migrate-parameters. */
#include "qmp-internal.h"

#include "migration/migration.h"
#include "migration/options.h"

typedef struct CapChange {
    MigrationCapability cap;
    bool state;
} CapChange;

/* {"capability": NAME, "state": BOOL} */
static bool parse_cap_entry(JsonNode *node, unsigned index, CapChange *out, GError **errp)
{
    if (!JSON_NODE_HOLDS_OBJECT(node)) {
        qmp_set_error(errp, QMP_ERR_GENERIC, "Parameter 'capabilities[%u]' expects an object",
                      index);
        return false;
    }
    JsonObject *entry = json_node_get_object(node);
    if (!qmp_args_only(entry, errp, "capability", "state", NULL)) {
        return false;
    }
    const char *name = qmp_arg_str(entry, "capability", true, errp);
    if (!name) {
        return false;
    }
    int cap = mig_cap_from_name(name);
    if (cap < 0) {
        qmp_set_error(errp, QMP_ERR_GENERIC,
                      "Parameter 'capability' does not accept value '%s'", name);
        return false;
    }
    if (!json_object_has_member(entry, "state")) {
        qmp_set_error(errp, QMP_ERR_GENERIC, "Parameter 'state' is missing");
        return false;
    }
    out->cap = (MigrationCapability)cap;
    return qmp_arg_bool(entry, "state", &out->state, errp);
}

/* Every entry is checked before any is applied: a bad list changes
 * nothing. */
static JsonNode *migrate_set_capabilities(JsonObject *args, GError **errp)
{
    if (!qmp_args_only(args, errp, "capabilities", NULL)) {
        return NULL;
    }
    JsonNode *list = json_object_get_member(args, "capabilities");
    if (!list) {
        qmp_set_error(errp, QMP_ERR_GENERIC, "Parameter 'capabilities' is missing");
        return NULL;
    }
    if (!JSON_NODE_HOLDS_ARRAY(list)) {
        qmp_set_error(errp, QMP_ERR_GENERIC, "Parameter 'capabilities' expects an array");
        return NULL;
    }
    JsonArray *arr = json_node_get_array(list);
    guint n = json_array_get_length(arr);
    CapChange *changes = g_new0(CapChange, n ? n : 1);
    bool ok = true;
    for (guint i = 0; i < n && ok; i++) {
        ok = parse_cap_entry(json_array_get_element(arr, i), i, &changes[i], errp);
    }
    if (ok && migration_is_active()) {
        qmp_set_error(errp, QMP_ERR_GENERIC, "There's a migration process in progress");
        ok = false;
    }
    for (guint i = 0; i < n && ok; i++) {
        mig_cap_set(changes[i].cap, changes[i].state);
    }
    g_free(changes);
    return NULL;
}

static JsonNode *query_migrate_capabilities(JsonObject *args, GError **errp)
{
    if (!qmp_args_only(args, errp, NULL)) {
        return NULL;
    }
    JsonArray *list = json_array_new();
    for (int cap = 0; cap < MIG_CAP__MAX; cap++) {
        JsonObject *entry = json_object_new();
        json_object_set_string_member(entry, "capability", mig_cap_name(cap));
        json_object_set_boolean_member(entry, "state", mig_cap_enabled(cap));
        json_array_add_object_element(list, entry);
    }
    return qmp_node_take_array(list);
}

/* A present member must be a non-negative integer. */
static bool param_u64(JsonObject *args, const char *name, bool *has, uint64_t *out,
                      GError **errp)
{
    JsonNode *node = json_object_get_member(args, name);
    if (!node) {
        return true;
    }
    if (!JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_INT64 ||
        json_node_get_int(node) < 0) {
        qmp_set_error(errp, QMP_ERR_GENERIC, "Parameter '%s' expects uint64", name);
        return false;
    }
    *has = true;
    *out = (uint64_t)json_node_get_int(node);
    return true;
}

/* A present member NAME must be a string FROM_NAME knows (else the error
 * says it expects EXPECTED). */
static bool param_enum(JsonObject *args, const char *name, int (*from_name)(const char *),
                       const char *expected, bool *has, int *out, GError **errp)
{
    JsonNode *node = json_object_get_member(args, name);
    if (!node) {
        return true;
    }
    int value = JSON_NODE_HOLDS_VALUE(node) &&
                json_node_get_value_type(node) == G_TYPE_STRING
                ? from_name(json_node_get_string(node)) : -1;
    if (value < 0) {
        qmp_set_error(errp, QMP_ERR_GENERIC, "Parameter '%s' expects %s", name, expected);
        return false;
    }
    *has = true;
    *out = value;
    return true;
}

/* compress-algorithm: "zstd" or "zlib". */
static bool param_algorithm(JsonObject *args, MigrationParametersUpdate *u, GError **errp)
{
    int algo = 0;

    if (!param_enum(args, "compress-algorithm", mig_compress_algorithm_from_name,
                    "'zstd' or 'zlib'", &u->has_compress_algorithm, &algo, errp)) {
        return false;
    }
    u->p.compress_algorithm = (MigrationCompressAlgorithm)algo;
    return true;
}

/* tls-creds, tls-hostname, tls-authz: a string, or null for "" (QEMU's
 * StrOrNull). */
static bool param_str(JsonObject *args, const char *name, const char **out, GError **errp)
{
    JsonNode *node = json_object_get_member(args, name);

    if (!node) {
        return true;
    }
    if (JSON_NODE_HOLDS_NULL(node)) {
        *out = "";
        return true;
    }
    if (!JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != G_TYPE_STRING) {
        qmp_set_error(errp, QMP_ERR_GENERIC, "Parameter '%s' expects a string or null", name);
        return false;
    }
    *out = json_node_get_string(node);
    return true;
}

static bool parse_tls_params(JsonObject *args, MigrationParametersUpdate *u, GError **errp)
{
    return param_str(args, "tls-creds", &u->tls_creds, errp) &&
           param_str(args, "tls-hostname", &u->tls_hostname, errp) &&
           param_str(args, "tls-authz", &u->tls_authz, errp);
}

/* block-copy-mode and timeout-action. */
static bool param_modes(JsonObject *args, MigrationParametersUpdate *u, GError **errp)
{
    int mode = 0, action = 0;

    if (!param_enum(args, "block-copy-mode", mig_copy_mode_from_name,
                    "'background' or 'write-blocking'", &u->has_block_copy_mode, &mode, errp) ||
        !param_enum(args, "timeout-action", mig_timeout_action_from_name,
                    "'cancel' or 'write-blocking'", &u->has_timeout_action, &action, errp)) {
        return false;
    }
    u->p.block_copy_mode = (MigrationCopyMode)mode;
    u->p.timeout_action = (MigrationTimeoutAction)action;
    return true;
}

/* What makes a migration finish: copy mode, timeouts, auto-converge. */
static bool parse_convergence_params(JsonObject *args, MigrationParametersUpdate *u,
                                     GError **errp)
{
    return param_modes(args, u, errp) &&
           param_u64(args, "progress-timeout", &u->has_progress_timeout,
                     &u->p.progress_timeout, errp) &&
           param_u64(args, "completion-timeout", &u->has_completion_timeout,
                     &u->p.completion_timeout, errp) &&
           param_u64(args, "cpu-throttle-initial", &u->has_cpu_throttle_initial,
                     &u->p.cpu_throttle_initial, errp) &&
           param_u64(args, "cpu-throttle-increment", &u->has_cpu_throttle_increment,
                     &u->p.cpu_throttle_increment, errp) &&
           param_u64(args, "max-cpu-throttle", &u->has_max_cpu_throttle,
                     &u->p.max_cpu_throttle, errp) &&
           param_u64(args, "throttle-trigger-threshold", &u->has_throttle_trigger_threshold,
                     &u->p.throttle_trigger_threshold, errp);
}

/* The migration engine's parameters (multifd, compression, read pipeline,
 * link timeout). */
static bool parse_engine_params(JsonObject *args, MigrationParametersUpdate *u, GError **errp)
{
    return param_u64(args, "multifd-channels", &u->has_multifd_channels,
                     &u->p.multifd_channels, errp) &&
           param_u64(args, "compress-level", &u->has_compress_level,
                     &u->p.compress_level, errp) &&
           param_u64(args, "compress-zstd-level", &u->has_compress_zstd_level,
                     &u->p.compress_zstd_level, errp) &&
           param_u64(args, "max-inflight", &u->has_max_inflight, &u->p.max_inflight, errp) &&
           param_u64(args, "link-timeout", &u->has_link_timeout, &u->p.link_timeout, errp) &&
           param_u64(args, "resume-timeout", &u->has_resume_timeout, &u->p.resume_timeout,
                     errp) &&
           param_algorithm(args, u, errp);
}

/* A present member must be a boolean. */
static bool param_bool(JsonObject *args, const char *name, bool *has, bool *out,
                       GError **errp)
{
    *has = json_object_has_member(args, name);
    return qmp_arg_bool(args, name, out, errp);
}

static JsonNode *migrate_set_parameters(JsonObject *args, GError **errp)
{
    MigrationParametersUpdate u = { 0 };

    if (!qmp_args_only(args, errp, "max-bandwidth", "downtime-limit", "dirty-granularity",
                       "block-incremental", "multifd-channels", "compress-level",
                       "compress-zstd-level", "compress-algorithm", "max-inflight",
                       "link-timeout", "resume-timeout", "tls-creds", "tls-hostname", "tls-authz",
                       "block-copy-mode", "progress-timeout", "completion-timeout",
                       "timeout-action", "cpu-throttle-initial", "cpu-throttle-increment",
                       "max-cpu-throttle", "throttle-trigger-threshold", NULL) ||
        !param_u64(args, "max-bandwidth", &u.has_max_bandwidth, &u.p.max_bandwidth, errp) ||
        !param_u64(args, "downtime-limit", &u.has_downtime_limit, &u.p.downtime_limit, errp) ||
        !param_u64(args, "dirty-granularity", &u.has_dirty_granularity,
                   &u.p.dirty_granularity, errp) ||
        !param_bool(args, "block-incremental", &u.has_block_incremental,
                    &u.p.block_incremental, errp) ||
        !parse_engine_params(args, &u, errp) || !parse_tls_params(args, &u, errp) ||
        !parse_convergence_params(args, &u, errp)) {
        return NULL;
    }
    mig_params_apply(&u, errp);
    return NULL;
}

static void add_convergence_params(JsonObject *obj, const MigrationParameters *p)
{
    json_object_set_string_member(obj, "block-copy-mode", mig_copy_mode_name(p->block_copy_mode));
    json_object_set_int_member(obj, "progress-timeout", (gint64)p->progress_timeout);
    json_object_set_int_member(obj, "completion-timeout", (gint64)p->completion_timeout);
    json_object_set_string_member(obj, "timeout-action",
                                  mig_timeout_action_name(p->timeout_action));
    json_object_set_int_member(obj, "cpu-throttle-initial", (gint64)p->cpu_throttle_initial);
    json_object_set_int_member(obj, "cpu-throttle-increment",
                               (gint64)p->cpu_throttle_increment);
    json_object_set_int_member(obj, "max-cpu-throttle", (gint64)p->max_cpu_throttle);
    json_object_set_int_member(obj, "throttle-trigger-threshold",
                               (gint64)p->throttle_trigger_threshold);
}

static JsonNode *query_migrate_parameters(JsonObject *args, GError **errp)
{
    if (!qmp_args_only(args, errp, NULL)) {
        return NULL;
    }
    MigrationParameters p;
    mig_params_get(&p);
    JsonObject *obj = json_object_new();
    json_object_set_int_member(obj, "max-bandwidth", (gint64)p.max_bandwidth);
    json_object_set_int_member(obj, "downtime-limit", (gint64)p.downtime_limit);
    json_object_set_int_member(obj, "dirty-granularity", (gint64)p.dirty_granularity);
    json_object_set_boolean_member(obj, "block-incremental", p.block_incremental);
    json_object_set_int_member(obj, "multifd-channels", (gint64)p.multifd_channels);
    json_object_set_int_member(obj, "compress-level", (gint64)p.compress_level);
    json_object_set_int_member(obj, "compress-zstd-level", (gint64)p.compress_zstd_level);
    json_object_set_string_member(obj, "compress-algorithm",
                                  mig_compress_algorithm_name(p.compress_algorithm));
    json_object_set_int_member(obj, "max-inflight", (gint64)p.max_inflight);
    json_object_set_int_member(obj, "link-timeout", (gint64)p.link_timeout);
    json_object_set_int_member(obj, "resume-timeout", (gint64)p.resume_timeout);
    MigrationTlsParameters tls;
    mig_tls_params_get(&tls);
    json_object_set_string_member(obj, "tls-creds", tls.creds);
    json_object_set_string_member(obj, "tls-hostname", tls.hostname);
    json_object_set_string_member(obj, "tls-authz", tls.authz);
    mig_tls_params_clear(&tls);
    add_convergence_params(obj, &p);
    return qmp_node_take_object(obj);
}

void qmp_register_migration_option_commands(void)
{
    qmp_register_command("migrate-set-capabilities", migrate_set_capabilities);
    qmp_register_command("query-migrate-capabilities", query_migrate_capabilities);
    qmp_register_command("migrate-set-parameters", migrate_set_parameters);
    qmp_register_command("query-migrate-parameters", query_migrate_parameters);
}
