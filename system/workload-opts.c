/* --workload: parse "drive=ID[,pattern=..][,bs=..][,rate=..][,seed=..]
 * [,zero-frac=..]" into WorkloadOptions. */
#include "system/workload.h"

#include <math.h>
#include <string.h>

#include "system-internal.h"
#include "util/size.h"

#define OPT "--workload"
#define MAX_BS (64 * MiB)

static const char *const pattern_names[] = {
    [WL_RANDWRITE] = "randwrite",
    [WL_SEQWRITE] = "seqwrite",
    [WL_RANDRW] = "randrw",
};

static bool parse_pattern(const char *value, WorkloadPattern *out, GError **errp)
{
    for (unsigned i = 0; i < G_N_ELEMENTS(pattern_names); i++) {
        if (strcmp(value, pattern_names[i]) == 0) {
            *out = (WorkloadPattern)i;
            return true;
        }
    }
    g_set_error(errp, BLKMIGD_ERROR, 0, OPT ": pattern must be randwrite, seqwrite or "
                "randrw, not '%s'", value);
    return false;
}

static bool parse_bs(const char *value, uint64_t *out, GError **errp)
{
    if (!size_parse(value, out, NULL) || *out < 512 || *out % 512 || *out > MAX_BS) {
        g_set_error(errp, BLKMIGD_ERROR, 0, OPT ": bs must be a multiple of 512 from 512 "
                    "to 64M, not '%s'", value);
        return false;
    }
    return true;
}

/* A finite number in [MIN, MAX] with nothing after it. */
static bool parse_double(const char *key, const char *value, double min, double max,
                         double *out, GError **errp)
{
    char *end = NULL;
    double d = *value ? g_ascii_strtod(value, &end) : NAN;
    if (!end || *end || !isfinite(d) || d < min || d > max) {
        char *range = max == HUGE_VAL ? g_strdup_printf("of at least %g", min)
                                      : g_strdup_printf("from %g to %g", min, max);
        g_set_error(errp, BLKMIGD_ERROR, 0, OPT ": %s must be a number %s, not '%s'", key,
                    range, value);
        g_free(range);
        return false;
    }
    *out = d;
    return true;
}

static bool parse_seed(const char *value, uint64_t *out, GError **errp)
{
    guint64 n;
    if (!g_ascii_string_to_unsigned(value, 10, 0, G_MAXUINT64, &n, NULL)) {
        g_set_error(errp, BLKMIGD_ERROR, 0, OPT ": seed must be a non-negative integer, "
                    "not '%s'", value);
        return false;
    }
    *out = n;
    return true;
}

static bool parse_key(const KeyValue *kv, WorkloadOptions *o, GError **errp)
{
    const char *k = kv->key, *v = kv->value;

    if (strcmp(k, "drive") == 0) {
        g_free(o->drive);
        o->drive = g_strdup(v);
        return true;
    } else if (strcmp(k, "pattern") == 0) {
        return parse_pattern(v, &o->pattern, errp);
    } else if (strcmp(k, "bs") == 0) {
        return parse_bs(v, &o->bs, errp);
    } else if (strcmp(k, "rate") == 0) {
        return parse_double(k, v, 0, HUGE_VAL, &o->rate_mibs, errp);
    } else if (strcmp(k, "seed") == 0) {
        return parse_seed(v, &o->seed, errp);
    } else if (strcmp(k, "zero-frac") == 0) {
        return parse_double(k, v, 0, 1, &o->zero_frac, errp);
    }
    g_set_error(errp, BLKMIGD_ERROR, 0, OPT ": unknown option '%s'", k);
    return false;
}

bool workload_parse(const char *optstr, WorkloadOptions *out, GError **errp)
{
    *out = (WorkloadOptions){
        .pattern = WL_RANDWRITE, .bs = 4 * KiB, .rate_mibs = 10, .seed = 1, .zero_frac = 0,
    };
    GPtrArray *items = keyval_parse(OPT, optstr, errp);
    bool ok = items != NULL;
    for (guint i = 0; ok && i < items->len; i++) {
        ok = parse_key(items->pdata[i], out, errp);
    }
    if (items) {
        g_ptr_array_unref(items);
    }
    if (ok && (!out->drive || !*out->drive)) {
        g_set_error(errp, BLKMIGD_ERROR, 0, OPT ": 'drive' is required");
        ok = false;
    }
    if (!ok) {
        workload_options_clear(out);
    }
    return ok;
}

void workload_options_clear(WorkloadOptions *opts)
{
    g_clear_pointer(&opts->drive, g_free);
}
