/* blkmig migrate: a live block migration driven over QMP, as an
 * operator's tool: the copy mode and the limits it must keep, progress
 * while it runs (migrate-report.c), the outcome in the exit code. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blkmig-internal.h"
#include "migrate-report.h"
#include "migrate-resume.h"
#include "qapi/qmp.h"
#include "util/size.h"
#include "tls-opts.h"

#define PROGRESS_INTERVAL_US (500 * 1000)
/* How often the source's status is asked: a migration of a small disk
 * ends well within one progress interval, and the command returns this
 * soon after it does. */
#define STATUS_POLL_US (50 * 1000)
#define DST_WAIT_TIMEOUT_US (60 * G_USEC_PER_SEC)
/* --retries: at most this many, and this long between two attempts. */
#define MAX_RETRIES 1000
#define RETRY_INTERVAL_US (2 * G_USEC_PER_SEC)
/* The daemon's limit for progress-timeout and completion-timeout. */
#define MAX_TIMEOUT_S (7 * 24 * 3600)

static const char migrate_help[] =
    "Usage: blkmig migrate --src SOCKET --uri URI [--dst SOCKET] [OPTIONS]\n"
    "\n"
    "Migrate the disks of the blkmigd whose QMP socket is SOCKET to URI while\n"
    "its guest keeps running.  Sets the capability block (and zero-blocks when\n"
    "asked) and the given parameters, issues migrate, then shows progress every\n"
    "0.5 s: a bar on a terminal, a plain line otherwise, with how much of the\n"
    "disks is in sync at the destination (it falls back while the guest writes\n"
    "faster than the link), the wire rate, what is left, the guest's dirty\n"
    "rate, the time left at the rate what is left has been falling (? while it\n"
    "does not fall) and the pass (1: the bulk copy).  At the end it prints the\n"
    "final query-migrate summary.\n"
    "\n"
    "Options:\n"
    "  --src SOCKET           QMP socket of the source daemon (required)\n"
    "  --uri URI              migration target: tcp:HOST:PORT, unix:PATH or\n"
    "                         file:PATH (required)\n"
    "  --dst SOCKET           QMP socket of the destination daemon; when given,\n"
    "                         also wait until the destination reports completed\n"
    "                         and its guest is running (up to 60 s)\n"
    "  --zero-blocks          send all-zero chunks as a flag only (capability\n"
    "                         zero-blocks); without it the capability is turned off\n"
    "  --bandwidth BYTES      limit in bytes/s for everything the migration sends\n"
    "                         (suffixes k, M, G; 0 = unlimited); alias\n"
    "                         --max-bandwidth\n"
    "  --downtime MS          longest acceptable guest pause in ms; alias\n"
    "                         --downtime-limit\n"
    "  --copy-mode MODE       background (guest writes are re-sent by dirty\n"
    "                         passes) or write-blocking (a guest write to a copied\n"
    "                         range is sent before it completes: always finishes)\n"
    "  --auto-converge        throttle guest writes while they outpace the link\n"
    "  --checksum             verify end to end (capability block-checksum):\n"
    "                         checksummed records, disks compared at switchover\n"
    "  --progress-timeout S   give up (see --on-timeout) when what is left to send\n"
    "                         has not fallen by a second's sending for S seconds\n"
    "  --completion-timeout-per-gib S\n"
    "                         give up after S seconds per GiB of the source's\n"
    "                         disks (KubeVirt's completionTimeoutPerGiB)\n"
    "  --on-timeout ACTION    cancel (the migration fails, the guest runs on) or\n"
    "                         write-blocking (switch --copy-mode and finish)\n"
    "  --resume               continue a paused migration (capability\n"
    "                         block-resume, its connection lost): migrate-recover\n"
    "                         URI on --dst when given, then migrate URI with\n"
    "                         resume on the source; capabilities stay as they are\n"
    "  --retries N            turn block-resume on at both sides (needs --dst) and,\n"
    "                         each time the connection is lost before the\n"
    "                         switchover, resume as --resume does, up to N times\n"
    "  --json                 one JSON object per line instead of the view:\n"
    "                         {\"type\": \"progress\", ...} then {\"type\": \"result\", ...}\n"
    TLS_OPTIONS_HELP
    "                         (for both QMP sockets)\n"
    "  -h, --help             show this help\n"
    "\n"
    "Options not given leave the daemon's settings as they are.  Interrupting\n"
    "blkmig (Ctrl-C) cancels the migration (migrate_cancel); the source guest\n"
    "keeps running.\n"
    "\n"
    "Exit status: 0 only if the migration completed (and, with --dst, the\n"
    "destination guest runs); 2 if it was cancelled (Ctrl-C or another\n"
    "client's migrate_cancel); 1 if it failed otherwise (a timeout too); 64 on\n"
    "a usage error.\n";

typedef struct MigrateOptions {
    const char *src;
    const char *dst;
    const char *uri;
    bool zero_blocks;
    bool auto_converge;
    bool checksum;
    bool json;
    bool resume;
    uint64_t retries;
    bool has_max_bandwidth, has_downtime_limit, has_progress_timeout, has_per_gib;
    uint64_t max_bandwidth, downtime_limit, progress_timeout, per_gib;
    const char *copy_mode;
    const char *on_timeout;
} MigrateOptions;

enum {
    OPT_SRC = 256, OPT_DST, OPT_URI, OPT_ZERO, OPT_BW, OPT_DOWNTIME, OPT_COPY_MODE,
    OPT_AUTO_CONVERGE, OPT_PROGRESS_TIMEOUT, OPT_PER_GIB, OPT_ON_TIMEOUT, OPT_JSON,
    OPT_RESUME, OPT_RETRIES, OPT_CHECKSUM
};

static void parse_bandwidth(const char *arg, MigrateOptions *o)
{
    GError *err = NULL;

    if (!size_parse(arg, &o->max_bandwidth, &err)) {
        usage_error(migrate_help, "--bandwidth: %s", err->message);
    }
    o->has_max_bandwidth = true;
}

/* A whole number from 0 (or 1) to MAX for option NAME. */
static uint64_t parse_number(const char *name, const char *arg, uint64_t min, uint64_t max)
{
    GError *err = NULL;
    guint64 v = 0;

    if (!g_ascii_string_to_unsigned(arg, 10, min, max, &v, &err)) {
        usage_error(migrate_help, "%s: %s", name, err->message);
    }
    return v;
}

/* VALUE must be one of the two words A and B. */
static const char *parse_word(const char *name, const char *value, const char *a, const char *b)
{
    if (strcmp(value, a) && strcmp(value, b)) {
        usage_error(migrate_help, "%s: '%s' is neither %s nor %s", name, value, a, b);
    }
    return value;
}

static void take_option(int ch, MigrateOptions *o)
{
    switch (ch) {
    case OPT_SRC: o->src = optarg; break;
    case OPT_DST: o->dst = optarg; break;
    case OPT_URI: o->uri = optarg; break;
    case OPT_ZERO: o->zero_blocks = true; break;
    case OPT_BW: parse_bandwidth(optarg, o); break;
    case OPT_DOWNTIME:
        o->downtime_limit = parse_number("--downtime", optarg, 0, G_MAXINT64);
        o->has_downtime_limit = true;
        break;
    case OPT_COPY_MODE:
        o->copy_mode = parse_word("--copy-mode", optarg, "background", "write-blocking");
        break;
    case OPT_AUTO_CONVERGE: o->auto_converge = true; break;
    case OPT_CHECKSUM: o->checksum = true; break;
    case OPT_PROGRESS_TIMEOUT:
        o->progress_timeout = parse_number("--progress-timeout", optarg, 0, MAX_TIMEOUT_S);
        o->has_progress_timeout = true;
        break;
    case OPT_PER_GIB:
        o->per_gib = parse_number("--completion-timeout-per-gib", optarg, 1, MAX_TIMEOUT_S);
        o->has_per_gib = true;
        break;
    case OPT_ON_TIMEOUT:
        o->on_timeout = parse_word("--on-timeout", optarg, "cancel", "write-blocking");
        break;
    case OPT_JSON: o->json = true; break;
    case OPT_RESUME: o->resume = true; break;
    case OPT_RETRIES: o->retries = parse_number("--retries", optarg, 0, MAX_RETRIES); break;
    case 'h':
        fputs(migrate_help, stdout);
        exit(EXIT_DONE);
    default:
        if (!tls_opts_take(ch, optarg)) {
            usage_error(migrate_help, "unknown option");
        }
    }
}

static void parse_migrate_options(int argc, char **argv, MigrateOptions *o)
{
    static const struct option opts[] = {
        { "src", required_argument, NULL, OPT_SRC },
        { "dst", required_argument, NULL, OPT_DST },
        { "uri", required_argument, NULL, OPT_URI },
        { "zero-blocks", no_argument, NULL, OPT_ZERO },
        { "bandwidth", required_argument, NULL, OPT_BW },
        { "max-bandwidth", required_argument, NULL, OPT_BW },
        { "downtime", required_argument, NULL, OPT_DOWNTIME },
        { "downtime-limit", required_argument, NULL, OPT_DOWNTIME },
        { "copy-mode", required_argument, NULL, OPT_COPY_MODE },
        { "auto-converge", no_argument, NULL, OPT_AUTO_CONVERGE },
        { "checksum", no_argument, NULL, OPT_CHECKSUM },
        { "progress-timeout", required_argument, NULL, OPT_PROGRESS_TIMEOUT },
        { "completion-timeout-per-gib", required_argument, NULL, OPT_PER_GIB },
        { "on-timeout", required_argument, NULL, OPT_ON_TIMEOUT },
        { "json", no_argument, NULL, OPT_JSON },
        { "resume", no_argument, NULL, OPT_RESUME },
        { "retries", required_argument, NULL, OPT_RETRIES },
        { "help", no_argument, NULL, 'h' },
        TLS_LONG_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    int ch;

    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        take_option(ch, o);
    }
    if (optind != argc) {
        usage_error(migrate_help, "unexpected argument '%s'", argv[optind]);
    }
    if (!o->src || !o->uri) {
        usage_error(migrate_help, "--src and --uri are required");
    }
    if (o->retries && !o->dst) {
        usage_error(migrate_help, "--retries needs --dst (the destination listens again)");
    }
}

static void add_capability(JsonArray *caps, const char *name, bool state)
{
    JsonObject *cap = json_object_new();
    json_object_set_string_member(cap, "capability", name);
    json_object_set_boolean_member(cap, "state", state);
    json_array_add_object_element(caps, cap);
}

static void set_capabilities(QmpClient *src, const MigrateOptions *o)
{
    JsonArray *caps = json_array_new();
    JsonObject *args = json_object_new();

    add_capability(caps, "block", true);
    add_capability(caps, "zero-blocks", o->zero_blocks);
    if (o->auto_converge) {
        add_capability(caps, "auto-converge", true);
    }
    if (o->checksum) {
        add_capability(caps, "block-checksum", true);
    }
    json_object_set_array_member(args, "capabilities", caps);
    json_node_unref(execute_or_die(src, "migrate-set-capabilities", args));
    json_object_unref(args);
}

/* The bytes of the source's drives (query-block). */
static uint64_t disks_size(QmpClient *src)
{
    JsonNode *list = execute_or_die(src, "query-block", NULL);
    JsonArray *arr = JSON_NODE_HOLDS_ARRAY(list) ? json_node_get_array(list) : NULL;
    uint64_t total = 0;

    for (guint i = 0; arr && i < json_array_get_length(arr); i++) {
        total += jint(json_array_get_element(arr, i), "inserted.image.virtual-size");
    }
    json_node_unref(list);
    return total;
}

/* KubeVirt's policy: the completion timeout grows with the disks. */
static uint64_t completion_timeout(QmpClient *src, uint64_t per_gib)
{
    double seconds = ceil(per_gib * (double)disks_size(src) / (1 << 30));

    return (uint64_t)CLAMP(seconds, 1, MAX_TIMEOUT_S);
}

static void set_parameters(QmpClient *src, const MigrateOptions *o)
{
    JsonObject *params = json_object_new();

    if (o->has_max_bandwidth) {
        json_object_set_int_member(params, "max-bandwidth", (gint64)o->max_bandwidth);
    }
    if (o->has_downtime_limit) {
        json_object_set_int_member(params, "downtime-limit", (gint64)o->downtime_limit);
    }
    if (o->copy_mode) {
        json_object_set_string_member(params, "block-copy-mode", o->copy_mode);
    }
    if (o->has_progress_timeout) {
        json_object_set_int_member(params, "progress-timeout", (gint64)o->progress_timeout);
    }
    if (o->has_per_gib) {
        json_object_set_int_member(params, "completion-timeout",
                                   (gint64)completion_timeout(src, o->per_gib));
    }
    if (o->on_timeout) {
        json_object_set_string_member(params, "timeout-action", o->on_timeout);
    }
    if (json_object_get_size(params)) {
        json_node_unref(execute_or_die(src, "migrate-set-parameters", params));
    }
    json_object_unref(params);
}

static bool is_final(const char *status)
{
    return status && (!strcmp(status, "completed") || !strcmp(status, "failed") ||
                      !strcmp(status, "cancelled"));
}

/* What --retries has left, and when it may try again. */
typedef struct Retries {
    QmpClient *dst;
    const char *uri;
    uint64_t left, done;
    gint64 next_us;
} Retries;

/* The source paused: once the destination did too, resume (one retry). */
static void retry_paused(QmpClient *src, Retries *r, MigrateReport *report)
{
    GError *err = NULL;
    g_autofree char *note = NULL;

    if (!r->left || g_get_monotonic_time() < r->next_us || !migrate_resume_is_paused(r->dst)) {
        return;
    }
    r->left--;
    r->done++;
    r->next_us = g_get_monotonic_time() + RETRY_INTERVAL_US;
    if (migrate_resume(src, r->dst, r->uri, &err)) {
        note = g_strdup_printf("connection lost; resumed (retry %" G_GUINT64_FORMAT ")",
                               r->done);
    } else {
        note = g_strdup_printf("connection lost; resuming failed (retry %" G_GUINT64_FORMAT
                               "): %s", r->done, err->message);
        g_error_free(err);
    }
    migrate_report_note(report, note);
}

/* Poll the source until the migration ends; returns the last query-migrate.
 * Progress is shown every PROGRESS_INTERVAL_US, and the final status at once. */
static JsonNode *follow_migration(QmpClient *src, Retries *retries, MigrateReport *report)
{
    bool cancel_sent = false;
    gint64 next_report = 0;

    for (;;) {
        JsonNode *info = execute_or_die(src, "query-migrate", NULL);
        const char *status = jstr(info, "status");
        if (is_final(status) || g_get_monotonic_time() >= next_report) {
            migrate_report_progress(report, info);
            next_report = g_get_monotonic_time() + PROGRESS_INTERVAL_US;
        }
        if (is_final(status)) {
            return info;
        }
        if (status && !strcmp(status, "paused") && !cancel_sent) {
            retry_paused(src, retries, report);
        }
        json_node_unref(info);
        if (blkmig_interrupted && !cancel_sent) {
            migrate_report_note(report, "interrupted, cancelling the migration");
            json_node_unref(execute_or_die(src, "migrate_cancel", NULL));
            cancel_sent = true;
        }
        g_usleep(STATUS_POLL_US);
    }
}

/* With --dst: wait for the destination to report completed and run.
 * NULL when it did; otherwise what went wrong (caller frees). */
static char *wait_destination(QmpClient *dst)
{
    gint64 deadline = g_get_monotonic_time() + DST_WAIT_TIMEOUT_US;

    for (;;) {
        JsonNode *info = execute_or_die(dst, "query-migrate", NULL);
        JsonNode *st = execute_or_die(dst, "query-status", NULL);
        g_autofree char *status = g_strdup(jstr(info, "status"));
        g_autofree char *run = g_strdup(jstr(st, "status"));
        g_autofree char *error = g_strdup(jstr(info, "error-desc"));
        json_node_unref(info);
        json_node_unref(st);
        if (status && !strcmp(status, "completed") && run && !strcmp(run, "running")) {
            return NULL;
        }
        if (is_final(status) && strcmp(status, "completed")) {
            return g_strdup_printf("destination migration %s: %s", status,
                                   error ? error : "(no error given)");
        }
        if (g_get_monotonic_time() > deadline) {
            return g_strdup_printf("destination still '%s' (runstate '%s') after 60 s",
                                   status ? status : "?", run ? run : "?");
        }
        g_usleep(STATUS_POLL_US);
    }
}

static int exit_code(const char *status)
{
    return !strcmp(status, "completed") ? EXIT_DONE
         : !strcmp(status, "cancelled") ? EXIT_CANCELLED : EXIT_FAILED;
}

static void start_migration(QmpClient *src, const char *uri)
{
    JsonObject *args = json_object_new();

    json_object_set_string_member(args, "uri", uri);
    json_node_unref(execute_or_die(src, "migrate", args));
    json_object_unref(args);
}

/* --resume: continue the paused migration; or set up and start one. */
static void begin(QmpClient *src, QmpClient *dst, const MigrateOptions *o)
{
    GError *err = NULL;

    if (!o->resume) {
        set_capabilities(src, o);
        if (o->retries) {
            migrate_resume_enable(src);
            migrate_resume_enable(dst);
        }
    }
    set_parameters(src, o);
    catch_interrupts();
    if (!o->resume) {
        start_migration(src, o->uri);
    } else if (!migrate_resume(src, dst, o->uri, &err)) {
        fprintf(stderr, "blkmig: resume: %s\n", err->message);
        exit(EXIT_FAILED);
    }
}

int cmd_migrate(int argc, char **argv)
{
    MigrateOptions o = { 0 };
    parse_migrate_options(argc, argv, &o);

    QmpClient *src = open_or_die(o.src);
    QmpClient *dst = o.dst ? open_or_die(o.dst) : NULL;
    Retries retries = { .dst = dst, .uri = o.uri, .left = o.retries };
    begin(src, dst, &o);

    MigrateReport *report = migrate_report_new(o.json);
    JsonNode *final = follow_migration(src, &retries, report);
    int code = exit_code(jstr(final, "status"));
    g_autofree char *destination = NULL;
    if (code == EXIT_DONE && dst) {
        destination = wait_destination(dst);
        code = destination ? EXIT_FAILED : EXIT_DONE;
        if (destination && !o.json) {
            fprintf(stderr, "blkmig: %s\n", destination);
        }
    }
    if (code == EXIT_DONE && dst) {
        destination = g_strdup("completed, guest running");
    }
    migrate_report_finish(report, final, code, destination);
    json_node_unref(final);
    qmp_client_close(dst);
    qmp_client_close(src);
    return code;
}
