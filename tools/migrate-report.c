/* What blkmig migrate shows (see migrate-report.h).  Every update says
 * the part of the disks copied once (bulk-copied: it only grows, so the
 * bar never goes back), what was sent and what is left (which grows
 * again while the guest writes faster than the link), the wire rate, the
 * guest's dirty rate, the time left at the rate at which what is left
 * has been falling lately ("?" while it does not fall) and the pass. */
#include "migrate-report.h"

#include <stdio.h>

#include "blkmig-internal.h"
#include "progress.h"

/* Rates over the last few updates (half a second apart). */
#define SAMPLES 6

typedef struct Sample {
    gint64 us;
    gint64 transferred;
    gint64 remaining;
} Sample;

struct MigrateReport {
    bool json;
    Progress *view;
    gint64 start_us;
    Sample samples[SAMPLES];
    unsigned n;                 /* samples taken */
};

typedef struct Figures {
    double seconds;
    const char *status;
    gint64 total, remaining, transferred, bulk_copied, dirty_rate, pass, throttle;
    double percent;
    double rate;                /* wire bytes/s */
    double falling;             /* bytes/s by which what is left falls */
} Figures;

MigrateReport *migrate_report_new(bool json)
{
    MigrateReport *r = g_new0(MigrateReport, 1);

    r->json = json;
    r->start_us = g_get_monotonic_time();
    if (!json) {
        r->view = progress_new(stdout, "migrate");
    }
    return r;
}

/* The rates between the oldest sample kept and NOW. */
static void rates(MigrateReport *r, const Sample *now, Figures *f)
{
    const Sample *old = &r->samples[r->n >= SAMPLES ? r->n % SAMPLES : 0];
    double dt = (now->us - old->us) / 1e6;

    if (r->n > 0 && dt > 0) {
        f->rate = (now->transferred - old->transferred) / dt;
        f->falling = (old->remaining - now->remaining) / dt;
    }
    r->samples[r->n % SAMPLES] = *now;
    r->n++;
}

/* Seconds left at the rate what is left falls; < 0: unknown. */
static double eta_seconds(const Figures *f)
{
    if (f->remaining == 0) {
        return 0;
    }
    return f->falling > 0 ? f->remaining / f->falling : -1;
}

static void figures(MigrateReport *r, JsonNode *info, Figures *f)
{
    Sample s = { g_get_monotonic_time(), jint(info, "disk.transferred"),
                 jint(info, "disk.remaining") };

    *f = (Figures){
        .seconds = (s.us - r->start_us) / 1e6,
        .status = jstr(info, "status") ? jstr(info, "status") : "?",
        .total = jint(info, "disk.total"),
        .remaining = s.remaining,
        .transferred = s.transferred,
        .bulk_copied = jint(info, "disk.bulk-copied"),
        .dirty_rate = jint(info, "disk.dirty-rate"),
        .pass = jint(info, "disk.pass"),
        .throttle = jint(info, "cpu-throttle-percentage"),
    };
    f->percent = f->total > 0 ? 100.0 * f->bulk_copied / f->total : 0;
    rates(r, &s, f);
}

static char *view_text(const Figures *f)
{
    g_autofree char *eta = f->remaining == 0 ? g_strdup("0m00s")
                                             : progress_eta_text(f->remaining, f->falling);
    g_autofree char *throttle = f->throttle ? g_strdup_printf("  throttle %" G_GINT64_FORMAT "%%",
                                                              f->throttle) : g_strdup("");

    return g_strdup_printf("%-9s %5.1f%%  sent %8.1f MiB  left %7.1f MiB  %6.1f MiB/s  "
                           "dirty %6.1f MiB/s  eta %s  pass %" G_GINT64_FORMAT "%s", f->status,
                           f->percent, mib(f->transferred), mib(f->remaining),
                           f->rate / (1 << 20), mib(f->dirty_rate), eta, f->pass, throttle);
}

static void print_json(JsonObject *obj)
{
    JsonNode *node = json_node_new(JSON_NODE_OBJECT);
    json_node_take_object(node, obj);
    g_autofree char *line = json_to_string(node, FALSE);
    json_node_unref(node);
    printf("%s\n", line);
    fflush(stdout);
}

static JsonObject *json_progress(const Figures *f)
{
    JsonObject *o = json_object_new();

    json_object_set_string_member(o, "type", "progress");
    json_object_set_double_member(o, "time", f->seconds);
    json_object_set_string_member(o, "status", f->status);
    json_object_set_double_member(o, "percent", f->percent);
    json_object_set_int_member(o, "total", f->total);
    json_object_set_int_member(o, "remaining", f->remaining);
    json_object_set_int_member(o, "transferred", f->transferred);
    json_object_set_int_member(o, "rate", (gint64)f->rate);
    json_object_set_int_member(o, "dirty-rate", f->dirty_rate);
    json_object_set_int_member(o, "pass", f->pass);
    json_object_set_int_member(o, "cpu-throttle-percentage", f->throttle);
    if (eta_seconds(f) >= 0) {
        json_object_set_double_member(o, "eta", eta_seconds(f));
    } else {
        json_object_set_null_member(o, "eta");
    }
    return o;
}

void migrate_report_progress(MigrateReport *r, JsonNode *info)
{
    Figures f;

    figures(r, info, &f);
    if (r->json) {
        print_json(json_progress(&f));
        return;
    }
    g_autofree char *text = view_text(&f);
    progress_show(r->view, f.percent / 100, text);
}

void migrate_report_note(MigrateReport *r, const char *text)
{
    if (r->json) {
        JsonObject *o = json_object_new();
        json_object_set_string_member(o, "type", "note");
        json_object_set_string_member(o, "text", text);
        print_json(o);
    } else {
        fprintf(stderr, "\nblkmig: %s\n", text);
    }
}

/* "LABEL N ms" when query-migrate reported PATH (times depend on status). */
static void print_ms(const char *label, JsonNode *info, const char *path)
{
    if (jpath(info, path)) {
        printf("%-18s%" G_GINT64_FORMAT " ms\n", label, jint(info, path));
    }
}

static void print_summary(JsonNode *info, const char *destination)
{
    g_autofree char *json = json_to_string(info, FALSE);

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
    if (jint(info, "disk.verified")) {
        printf("disk verified:    %" G_GINT64_FORMAT " bytes (compared at switchover)\n",
               jint(info, "disk.verified"));
    }
    printf("records:          %" G_GINT64_FORMAT " zero, %" G_GINT64_FORMAT " data\n",
           jint(info, "disk.zero-blocks"), jint(info, "disk.data-blocks"));
    printf("passes:           %" G_GINT64_FORMAT " (dirty rate %.1f MiB/s)\n",
           jint(info, "disk.pass"), mib(jint(info, "disk.dirty-rate")));
    printf("throughput:       %.1f Mbit/s\n", jdouble(info, "disk.mbps"));
    printf("query-migrate:    %s\n", json);
    if (destination) {
        printf("destination:      %s\n", destination);
    }
}

static void json_result(JsonNode *info, int code, const char *destination)
{
    JsonObject *o = json_object_new();

    json_object_set_string_member(o, "type", "result");
    json_object_set_string_member(o, "status", jstr(info, "status") ? jstr(info, "status") : "?");
    json_object_set_int_member(o, "exit", code);
    if (jstr(info, "error-desc")) {
        json_object_set_string_member(o, "error", jstr(info, "error-desc"));
    }
    if (destination) {
        json_object_set_string_member(o, "destination", destination);
    }
    json_object_set_member(o, "query-migrate", json_node_copy(info));
    print_json(o);
}

void migrate_report_finish(MigrateReport *r, JsonNode *info, int code, const char *destination)
{
    if (r->json) {
        json_result(info, code, destination);
    } else {
        progress_finish(r->view);
        print_summary(info, destination);
    }
    g_free(r);
}
