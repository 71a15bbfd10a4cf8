/* blkmig migrate: a live block migration driven over QMP, with progress
 * while it runs and the outcome in the exit code. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blkmig-internal.h"
#include "qapi/qmp.h"
#include "util/size.h"
#include "tls-opts.h"

#define PROGRESS_INTERVAL_US (500 * 1000)
#define DST_WAIT_TIMEOUT_US (60 * G_USEC_PER_SEC)

static const char migrate_help[] =
    "Usage: blkmig migrate --src SOCKET --uri URI [--dst SOCKET] [OPTIONS]\n"
    "\n"
    "Migrate the disks of the blkmigd whose QMP socket is SOCKET to URI while\n"
    "its guest keeps running.  Sets the capability block (and zero-blocks when\n"
    "asked), applies the given parameters, issues migrate, then prints a\n"
    "progress line every 0.5 s: percent of the disks copied once (it only\n"
    "grows; 100% means the dirty passes run), bytes transferred and left to\n"
    "send (this grows again while the guest writes faster than they go),\n"
    "zero and data chunks sent, throughput in MB/s and the number of dirty\n"
    "passes.  At the end it prints the final query-migrate summary.\n"
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
    "  --max-bandwidth BYTES  limit in bytes/s (suffixes k, M, G allowed;\n"
    "                         0 = unlimited); default: the daemon's setting\n"
    "  --downtime-limit MS    longest acceptable guest pause in ms; default:\n"
    "                         the daemon's setting\n"
    TLS_OPTIONS_HELP
    "                         (for both QMP sockets)\n"
    "  -h, --help             show this help\n"
    "\n"
    "Interrupting blkmig (Ctrl-C) cancels the migration (migrate_cancel).\n"
    "\n"
    "Exit status: 0 only if the migration completed (and, with --dst, the\n"
    "destination guest runs); 2 if it was cancelled (Ctrl-C or another\n"
    "client's migrate_cancel); 1 if it failed otherwise; 64 on a usage error.\n";

typedef struct MigrateOptions {
    const char *src;
    const char *dst;
    const char *uri;
    bool zero_blocks;
    bool has_max_bandwidth;
    uint64_t max_bandwidth;
    bool has_downtime_limit;
    uint64_t downtime_limit;
} MigrateOptions;

enum { OPT_SRC = 256, OPT_DST, OPT_URI, OPT_ZERO, OPT_BW, OPT_DOWNTIME };

static void parse_bandwidth(const char *arg, MigrateOptions *o)
{
    GError *err = NULL;

    if (!size_parse(arg, &o->max_bandwidth, &err)) {
        usage_error(migrate_help, "--max-bandwidth: %s", err->message);
    }
    o->has_max_bandwidth = true;
}

static void parse_downtime(const char *arg, MigrateOptions *o)
{
    GError *err = NULL;

    if (!g_ascii_string_to_unsigned(arg, 10, 0, G_MAXINT64, &o->downtime_limit, &err)) {
        usage_error(migrate_help, "--downtime-limit: %s", err->message);
    }
    o->has_downtime_limit = true;
}

static void parse_migrate_options(int argc, char **argv, MigrateOptions *o)
{
    static const struct option opts[] = {
        { "src", required_argument, NULL, OPT_SRC },
        { "dst", required_argument, NULL, OPT_DST },
        { "uri", required_argument, NULL, OPT_URI },
        { "zero-blocks", no_argument, NULL, OPT_ZERO },
        { "max-bandwidth", required_argument, NULL, OPT_BW },
        { "downtime-limit", required_argument, NULL, OPT_DOWNTIME },
        { "help", no_argument, NULL, 'h' },
        TLS_LONG_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (ch) {
        case OPT_SRC: o->src = optarg; break;
        case OPT_DST: o->dst = optarg; break;
        case OPT_URI: o->uri = optarg; break;
        case OPT_ZERO: o->zero_blocks = true; break;
        case OPT_BW: parse_bandwidth(optarg, o); break;
        case OPT_DOWNTIME: parse_downtime(optarg, o); break;
        case 'h':
            fputs(migrate_help, stdout);
            exit(EXIT_DONE);
        default:
            if (!tls_opts_take(ch, optarg)) {
                usage_error(migrate_help, "unknown option");
            }
        }
    }
    if (optind != argc) {
        usage_error(migrate_help, "unexpected argument '%s'", argv[optind]);
    }
    if (!o->src || !o->uri) {
        usage_error(migrate_help, "--src and --uri are required");
    }
}

static void add_capability(JsonArray *caps, const char *name, bool state)
{
    JsonObject *cap = json_object_new();
    json_object_set_string_member(cap, "capability", name);
    json_object_set_boolean_member(cap, "state", state);
    json_array_add_object_element(caps, cap);
}

static void configure_source(QmpClient *src, const MigrateOptions *o)
{
    JsonArray *caps = json_array_new();
    add_capability(caps, "block", true);
    add_capability(caps, "zero-blocks", o->zero_blocks);
    JsonObject *args = json_object_new();
    json_object_set_array_member(args, "capabilities", caps);
    json_node_unref(execute_or_die(src, "migrate-set-capabilities", args));
    json_object_unref(args);

    if (o->has_max_bandwidth || o->has_downtime_limit) {
        JsonObject *params = json_object_new();
        if (o->has_max_bandwidth) {
            json_object_set_int_member(params, "max-bandwidth", (gint64)o->max_bandwidth);
        }
        if (o->has_downtime_limit) {
            json_object_set_int_member(params, "downtime-limit", (gint64)o->downtime_limit);
        }
        json_node_unref(execute_or_die(src, "migrate-set-parameters", params));
        json_object_unref(params);
    }
}

static void print_progress(JsonNode *info, double elapsed)
{
    gint64 total = jint(info, "disk.total");
    gint64 remaining = jint(info, "disk.remaining");
    /* The first copy only grows; what is left may grow again. */
    double percent = total > 0 ? 100.0 * (double)jint(info, "disk.bulk-copied") / (double)total
                               : 0;
    printf("%7.2fs %-9s %5.1f%%  sent %9.1f MiB  left %9.1f MiB  zero %7" G_GINT64_FORMAT
           "  data %7" G_GINT64_FORMAT "  %7.1f MB/s  dirty passes %" G_GINT64_FORMAT "\n",
           elapsed, jstr(info, "status") ? jstr(info, "status") : "?",
           percent, mib(jint(info, "disk.transferred")), mib(remaining),
           jint(info, "disk.zero-blocks"), jint(info, "disk.data-blocks"),
           jdouble(info, "disk.mbps") / 8, jint(info, "disk.dirty-sync-count"));
    fflush(stdout);
}

/* "LABEL N ms" when query-migrate reported PATH (times depend on status). */
static void print_ms(const char *label, JsonNode *info, const char *path)
{
    if (jpath(info, path)) {
        printf("%-18s%" G_GINT64_FORMAT " ms\n", label, jint(info, path));
    }
}

static void print_summary(JsonNode *info)
{
    g_autofree char *json = qmp_json_to_string(info, false);
    printf("status:           %s\n", jstr(info, "status") ? jstr(info, "status") : "?");
    if (jstr(info, "error-desc")) {
        printf("error:            %s\n", jstr(info, "error-desc"));
    }
    print_ms("total time:", info, "total-time");
    print_ms("setup time:", info, "setup-time");
    print_ms("downtime:", info, "downtime");
    printf("disk total:       %" G_GINT64_FORMAT " bytes (%.1f MiB)\n",
           jint(info, "disk.total"), mib(jint(info, "disk.total")));
    printf("disk transferred: %" G_GINT64_FORMAT " bytes (%.1f MiB)\n",
           jint(info, "disk.transferred"), mib(jint(info, "disk.transferred")));
    printf("disk remaining:   %" G_GINT64_FORMAT " bytes\n", jint(info, "disk.remaining"));
    printf("records:          %" G_GINT64_FORMAT " zero, %" G_GINT64_FORMAT " data\n",
           jint(info, "disk.zero-blocks"), jint(info, "disk.data-blocks"));
    printf("dirty passes:     %" G_GINT64_FORMAT "\n", jint(info, "disk.dirty-sync-count"));
    printf("throughput:       %.1f Mbit/s\n", jdouble(info, "disk.mbps"));
    printf("query-migrate:    %s\n", json);
}

static bool is_final(const char *status)
{
    return status && (!strcmp(status, "completed") || !strcmp(status, "failed") ||
                      !strcmp(status, "cancelled"));
}

/* Poll the source until the migration ends; returns the last query-migrate. */
static JsonNode *follow_migration(QmpClient *src)
{
    gint64 start = g_get_monotonic_time();
    bool cancel_sent = false;
    for (;;) {
        JsonNode *info = execute_or_die(src, "query-migrate", NULL);
        print_progress(info, (g_get_monotonic_time() - start) / 1e6);
        if (is_final(jstr(info, "status"))) {
            return info;
        }
        json_node_unref(info);
        if (blkmig_interrupted && !cancel_sent) {
            fprintf(stderr, "blkmig: interrupted, cancelling the migration\n");
            json_node_unref(execute_or_die(src, "migrate_cancel", NULL));
            cancel_sent = true;
        }
        g_usleep(PROGRESS_INTERVAL_US);
    }
}

/* With --dst: wait for the destination to report completed and run. */
static bool wait_destination(QmpClient *dst)
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
            printf("destination:      completed, guest running\n");
            return true;
        }
        if (is_final(status) && strcmp(status, "completed")) {
            fprintf(stderr, "blkmig: destination migration %s: %s\n", status,
                    error ? error : "(no error given)");
            return false;
        }
        if (g_get_monotonic_time() > deadline) {
            fprintf(stderr, "blkmig: destination still '%s' (runstate '%s') after 60 s\n",
                    status ? status : "?", run ? run : "?");
            return false;
        }
        g_usleep(100 * 1000);
    }
}

int cmd_migrate(int argc, char **argv)
{
    MigrateOptions o = { 0 };
    parse_migrate_options(argc, argv, &o);

    QmpClient *src = open_or_die(o.src);
    QmpClient *dst = o.dst ? open_or_die(o.dst) : NULL;
    configure_source(src, &o);

    catch_interrupts();

    JsonObject *args = json_object_new();
    json_object_set_string_member(args, "uri", o.uri);
    json_node_unref(execute_or_die(src, "migrate", args));
    json_object_unref(args);

    JsonNode *final = follow_migration(src);
    print_summary(final);
    const char *status = jstr(final, "status");
    int code = !strcmp(status, "completed") ? EXIT_DONE
             : !strcmp(status, "cancelled") ? EXIT_CANCELLED : EXIT_FAILED;
    json_node_unref(final);
    if (code == EXIT_DONE && dst && !wait_destination(dst)) {
        code = EXIT_FAILED;
    }
    qmp_client_close(dst);
    qmp_client_close(src);
    return code;
}

