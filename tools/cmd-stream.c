/* blkmig stream: pull a drive's backing chain (a template on an NBD
 * server, say) into the drive with QMP block-stream, and with --wait
 * follow the job to its end: progress while it runs, the outcome in the
 * exit code, Ctrl-C cancelling it. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blkmig-internal.h"
#include "progress.h"
#include "qapi/qmp.h"
#include "tls-opts.h"
#include "util/size.h"

#define POLL_INTERVAL_MS 500
/* Events are looked at this often (and Ctrl-C noticed). */
#define EVENT_WAIT_MS 100

static const char stream_help[] =
    "Usage: blkmig stream --qmp SOCKET --device ID [--speed BYTES] [--wait]\n"
    "\n"
    "Start QMP block-stream on drive ID of the blkmigd whose QMP socket is\n"
    "SOCKET: a background job copies into the drive everything its backing\n"
    "chain holds (a template served over NBD, say) while the guest runs;\n"
    "when it completes, the drive's image names no backing file any more.\n"
    "The job's id is the drive's id.\n"
    "\n"
    "Options:\n"
    "  --qmp SOCKET           QMP socket of the daemon (required)\n"
    "  --device ID            the drive (required)\n"
    "  --speed BYTES          limit in bytes/s (suffixes k, M, G allowed;\n"
    "                         0 = unlimited, the default)\n"
    "  --wait                 follow the job until it ends: progress (offset\n"
    "                         of len, rate, time left) every 0.5 s, a bar on a\n"
    "                         terminal; Ctrl-C cancels the job\n"
    TLS_OPTIONS_HELP
    "  -h, --help             show this help\n"
    "\n"
    "Exit status: 0 once the job started (with --wait: once it completed);\n"
    "1 if it could not start or failed; 2 if it was cancelled (Ctrl-C or\n"
    "block-job-cancel); 64 on a usage error.\n";

typedef struct StreamArgs {
    const char *qmp;
    const char *device;
    bool has_speed;
    uint64_t speed;
    bool wait;
} StreamArgs;

enum { OPT_QMP = 256, OPT_DEVICE, OPT_SPEED, OPT_WAIT };

static void take_option(int ch, StreamArgs *a)
{
    GError *err = NULL;

    switch (ch) {
    case OPT_QMP: a->qmp = optarg; break;
    case OPT_DEVICE: a->device = optarg; break;
    case OPT_WAIT: a->wait = true; break;
    case OPT_SPEED:
        if (!size_parse(optarg, &a->speed, &err) || a->speed > G_MAXINT64) {
            usage_error(stream_help, "--speed: %s", err ? err->message : "too large");
        }
        a->has_speed = true;
        break;
    case 'h':
        fputs(stream_help, stdout);
        exit(EXIT_DONE);
    default:
        if (!tls_opts_take(ch, optarg)) {
            usage_error(stream_help, "unknown option");
        }
    }
}

static void parse_stream_args(int argc, char **argv, StreamArgs *a)
{
    static const struct option opts[] = {
        { "qmp", required_argument, NULL, OPT_QMP },
        { "device", required_argument, NULL, OPT_DEVICE },
        { "speed", required_argument, NULL, OPT_SPEED },
        { "wait", no_argument, NULL, OPT_WAIT },
        { "help", no_argument, NULL, 'h' },
        TLS_LONG_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        take_option(ch, a);
    }
    if (optind != argc) {
        usage_error(stream_help, "unexpected argument '%s'", argv[optind]);
    }
    if (!a->qmp || !a->device) {
        usage_error(stream_help, "--qmp and --device are required");
    }
}

static void start_stream(QmpClient *c, const StreamArgs *a)
{
    JsonObject *args = json_object_new();
    json_object_set_string_member(args, "device", a->device);
    if (a->has_speed) {
        json_object_set_int_member(args, "speed", (gint64)a->speed);
    }
    json_node_unref(execute_or_die(c, "block-stream", args));
    json_object_unref(args);
}

/* ---- Following the job ---- */

/* Event EV about job ID: returned when it ends the job; a stop caused by
 * an error (on-error=stop) is reported; anything else is dropped. */
static JsonNode *take_event(JsonNode *ev, const char *id)
{
    const char *name = jstr(ev, "event");

    if (g_strcmp0(jstr(ev, "data.device"), id) == 0) {
        if (!strcmp(name, "BLOCK_JOB_COMPLETED") || !strcmp(name, "BLOCK_JOB_CANCELLED")) {
            return ev;
        }
        if (!strcmp(name, "BLOCK_JOB_ERROR")) {
            fprintf(stderr, "blkmig: stream: %s error, action %s%s\n",
                    jstr(ev, "data.operation"), jstr(ev, "data.action"),
                    g_strcmp0(jstr(ev, "data.action"), "stop") == 0
                        ? " (block-job-resume goes on)" : "");
        }
    }
    json_node_unref(ev);
    return NULL;
}

/* The next event, waiting up to TIMEOUT_MS; NULL when none came. */
static JsonNode *next_event(QmpClient *c, int timeout_ms)
{
    g_autoptr(GError) err = NULL;
    JsonNode *ev = qmp_client_event_wait(c, NULL, timeout_ms, &err);

    if (!ev && !g_error_matches(err, QMP_CLIENT_ERROR, QMP_CLIENT_ERR_TIMEOUT)) {
        fprintf(stderr, "blkmig: stream: %s\n", err->message);
        exit(EXIT_FAILED);
    }
    return ev;
}

/* The job's entry of query-block-jobs, shown as progress. */
static void show_progress(QmpClient *c, const char *id, Progress *p)
{
    JsonNode *jobs = execute_or_die(c, "query-block-jobs", NULL);
    JsonArray *list = JSON_NODE_HOLDS_ARRAY(jobs) ? json_node_get_array(jobs) : NULL;

    for (guint i = 0; list && i < json_array_get_length(list); i++) {
        JsonNode *j = json_array_get_element(list, i);
        if (g_strcmp0(jstr(j, "device"), id) == 0) {
            g_autofree char *detail = g_strdup_printf("%s%s", jstr(j, "status"),
                                                      jint(j, "speed") ? ", rate-limited" : "");
            progress_update(p, (uint64_t)jint(j, "offset"), (uint64_t)jint(j, "len"), detail);
            break;
        }
    }
    json_node_unref(jobs);
}

static void cancel_job(QmpClient *c, const char *id)
{
    fprintf(stderr, "blkmig: interrupted, cancelling the stream job\n");
    JsonObject *args = json_object_new();
    json_object_set_string_member(args, "device", id);
    json_node_unref(execute_or_die(c, "block-job-cancel", args));
    json_object_unref(args);
}

/* Until the job's final event (returned); Ctrl-C cancels the job once. */
static JsonNode *follow_job(QmpClient *c, const char *id)
{
    Progress *p = progress_new(stdout, "stream");
    gint64 next_show = 0;
    bool cancel_sent = false;
    JsonNode *ev = NULL;

    while (!ev) {
        if (blkmig_interrupted && !cancel_sent) {
            cancel_job(c, id);
            cancel_sent = true;
        }
        if (g_get_monotonic_time() >= next_show) {
            show_progress(c, id, p);
            next_show = g_get_monotonic_time() + POLL_INTERVAL_MS * 1000;
        }
        JsonNode *any = next_event(c, EVENT_WAIT_MS);
        ev = any ? take_event(any, id) : NULL;
    }
    progress_finish(p);
    return ev;
}

static int outcome(JsonNode *ev)
{
    const char *error = jstr(ev, "data.error");

    if (g_strcmp0(jstr(ev, "event"), "BLOCK_JOB_CANCELLED") == 0) {
        printf("stream: cancelled at %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT " bytes\n",
               jint(ev, "data.offset"), jint(ev, "data.len"));
        return EXIT_CANCELLED;
    }
    if (error) {
        fprintf(stderr, "blkmig: stream failed at %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT
                " bytes: %s\n", jint(ev, "data.offset"), jint(ev, "data.len"), error);
        return EXIT_FAILED;
    }
    printf("stream: completed, %" G_GINT64_FORMAT " bytes; the image no longer needs its "
           "backing file\n", jint(ev, "data.len"));
    return EXIT_DONE;
}

int cmd_stream(int argc, char **argv)
{
    StreamArgs a = { 0 };
    parse_stream_args(argc, argv, &a);

    QmpClient *c = open_or_die(a.qmp);
    if (a.wait) {
        catch_interrupts();
    }
    start_stream(c, &a);
    int code = EXIT_DONE;
    if (a.wait) {
        JsonNode *ev = follow_job(c, a.device);
        code = outcome(ev);
        json_node_unref(ev);
    } else {
        printf("stream: job '%s' started\n", a.device);
    }
    qmp_client_close(c);
    return code;
}
