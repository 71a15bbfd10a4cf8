/* blkmig: command-line client for blkmigd.
 *
 *   blkmig qmp SOCKET COMMAND [ARGUMENTS-JSON]
 *   blkmig migrate --src SOCKET [--dst SOCKET] --uri URI [options]
 *
 * Everything goes through QMP (qapi/qmp-client), exactly as a management
 * layer would drive the daemons. */
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qapi/qmp-client.h"
#include "qapi/qmp.h"
#include "util/size.h"
#include "tls-opts.h"

#define EXIT_USAGE 2
#define PROGRESS_INTERVAL_US (500 * 1000)
#define DST_WAIT_TIMEOUT_US (60 * G_USEC_PER_SEC)

static const char main_help[] =
    "Usage: blkmig COMMAND [OPTIONS...]\n"
    "\n"
    "Command-line client for blkmigd, speaking QMP.\n"
    "\n"
    "Commands:\n"
    "  qmp SOCKET COMMAND [ARGUMENTS-JSON]\n"
    "                 run one QMP command and print its result as JSON\n"
    "  migrate --src SOCKET --uri URI [--dst SOCKET] [OPTIONS]\n"
    "                 run a live block migration and show its progress\n"
    "\n"
    "SOCKET is unix:PATH, tcp:HOST:PORT, or a bare path (a unix socket).\n"
    "Both commands reach a QMP socket served over TLS with --tls-creds DIR\n"
    "(x509) or --tls-psk DIR (pre-shared key); see their --help.\n"
    "\n"
    "Options:\n"
    "  -h, --help     show this help (blkmig COMMAND --help for a command)\n"
    "  -V, --version  show the version\n";

static const char qmp_help[] =
    "Usage: blkmig qmp [OPTIONS] SOCKET COMMAND [ARGUMENTS-JSON]\n"
    "\n"
    "Connect to the QMP socket SOCKET (unix:PATH, tcp:HOST:PORT or a bare\n"
    "path), negotiate capabilities, run COMMAND with the arguments object\n"
    "ARGUMENTS-JSON (default: none) and print the reply's \"return\" value as\n"
    "JSON on standard output.\n"
    "\n"
    "Example:\n"
    "  blkmig qmp /tmp/src.qmp migrate-set-parameters '{\"max-bandwidth\": 0}'\n"
    "\n"
    "Options:\n"
    TLS_OPTIONS_HELP
    "  -h, --help             show this help\n"
    "\n"
    "Exit status: 0 on success; 1 when the command fails (the error class and\n"
    "description are printed on standard error) or the daemon cannot be\n"
    "reached; 2 on a usage error.\n";

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
    "destination guest runs); 1 otherwise; 2 on a usage error.\n";

static void usage_error(const char *help, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void usage_error(const char *help, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "blkmig: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n\n%s", help);
    va_end(ap);
    exit(EXIT_USAGE);
}

static QmpClient *open_or_die(const char *socket)
{
    GError *err = NULL;
    QmpClient *c = qmp_client_open_tls(socket, tls_opts_creds(), tls_opts_hostname(), &err);
    if (!c) {
        fprintf(stderr, "blkmig: cannot connect to %s: %s\n", socket, err->message);
        exit(EXIT_FAILURE);
    }
    return c;
}

/* Run COMMAND with ARGS (may be NULL); on error print it and exit 1. */
static JsonNode *execute_or_die(QmpClient *c, const char *command, JsonObject *args)
{
    GError *err = NULL;
    g_autofree char *cls = NULL;
    JsonNode *ret = qmp_client_execute(c, command, args, &cls, &err);
    if (!ret) {
        fprintf(stderr, "blkmig: %s: %s%s%s\n", command, cls ? cls : "",
                cls ? ": " : "", err->message);
        exit(EXIT_FAILURE);
    }
    return ret;
}

/* ---- blkmig qmp ---- */

static JsonObject *parse_arguments(const char *text)
{
    GError *err = NULL;
    JsonNode *node = json_from_string(text, &err);
    if (!node || !JSON_NODE_HOLDS_OBJECT(node)) {
        usage_error(qmp_help, "ARGUMENTS-JSON must be a JSON object: %s",
                    err ? err->message : text);
    }
    JsonObject *obj = json_object_ref(json_node_get_object(node));
    json_node_unref(node);
    return obj;
}

static int cmd_qmp(int argc, char **argv)
{
    static const struct option opts[] = {
        { "help", no_argument, NULL, 'h' },
        TLS_LONG_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        if (ch == 'h') {
            fputs(qmp_help, stdout);
            return EXIT_SUCCESS;
        }
        if (!tls_opts_take(ch, optarg)) {
            usage_error(qmp_help, "unknown option");
        }
    }
    int nargs = argc - optind;
    if (nargs < 2 || nargs > 3) {
        usage_error(qmp_help, "expected SOCKET COMMAND [ARGUMENTS-JSON]");
    }
    const char *socket = argv[optind], *command = argv[optind + 1];
    JsonObject *args = nargs == 3 ? parse_arguments(argv[optind + 2]) : NULL;

    QmpClient *c = open_or_die(socket);
    JsonNode *ret = execute_or_die(c, command, args);
    g_autofree char *text = qmp_json_to_string(ret, true);
    printf("%s\n", text);
    json_node_unref(ret);
    if (args) {
        json_object_unref(args);
    }
    qmp_client_close(c);
    return EXIT_SUCCESS;
}

/* ---- blkmig migrate ---- */

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
            exit(EXIT_SUCCESS);
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

/* Member at dotted PATH, or NULL. */
static JsonNode *jpath(JsonNode *node, const char *path)
{
    char **parts = g_strsplit(path, ".", -1);
    for (char **p = parts; node && *p; p++) {
        node = JSON_NODE_HOLDS_OBJECT(node)
            ? json_object_get_member(json_node_get_object(node), *p) : NULL;
    }
    g_strfreev(parts);
    return node;
}

static gint64 jint(JsonNode *node, const char *path)
{
    JsonNode *n = jpath(node, path);
    return n && JSON_NODE_HOLDS_VALUE(n) ? json_node_get_int(n) : 0;
}

static double jdouble(JsonNode *node, const char *path)
{
    JsonNode *n = jpath(node, path);
    return n && JSON_NODE_HOLDS_VALUE(n) ? json_node_get_double(n) : 0;
}

static const char *jstr(JsonNode *node, const char *path)
{
    JsonNode *n = jpath(node, path);
    return n && json_node_get_value_type(n) == G_TYPE_STRING ? json_node_get_string(n) : NULL;
}

static double mib(gint64 bytes)
{
    return bytes / (double)(1 << 20);
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

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig)
{
    interrupted = 1;
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
        if (interrupted && !cancel_sent) {
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

static int cmd_migrate(int argc, char **argv)
{
    MigrateOptions o = { 0 };
    parse_migrate_options(argc, argv, &o);

    QmpClient *src = open_or_die(o.src);
    QmpClient *dst = o.dst ? open_or_die(o.dst) : NULL;
    configure_source(src, &o);

    struct sigaction sa = { .sa_handler = on_interrupt };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    JsonObject *args = json_object_new();
    json_object_set_string_member(args, "uri", o.uri);
    json_node_unref(execute_or_die(src, "migrate", args));
    json_object_unref(args);

    JsonNode *final = follow_migration(src);
    print_summary(final);
    bool ok = !strcmp(jstr(final, "status"), "completed");
    json_node_unref(final);
    if (ok && dst) {
        ok = wait_destination(dst);
    }
    qmp_client_close(dst);
    qmp_client_close(src);
    return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage_error(main_help, "missing command");
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(main_help, stdout);
        return EXIT_SUCCESS;
    }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) {
        printf("blkmig %d.%d.%d\n", BLKMIG_VERSION_MAJOR, BLKMIG_VERSION_MINOR,
               BLKMIG_VERSION_MICRO);
        return EXIT_SUCCESS;
    }
    if (!strcmp(cmd, "qmp")) {
        return cmd_qmp(argc - 1, argv + 1);
    }
    if (!strcmp(cmd, "migrate")) {
        return cmd_migrate(argc - 1, argv + 1);
    }
    usage_error(main_help, "unknown command '%s'", cmd);
}
