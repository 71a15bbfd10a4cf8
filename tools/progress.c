/* Progress views for long blkmig commands (see progress.h). */
#include "progress.h"

#include <glib.h>
#include <unistd.h>

#define BAR_WIDTH 30
/* The rate is averaged over this long, so one slow update does not swing
 * the time left. */
#define RATE_WINDOW_US (3 * G_USEC_PER_SEC)

struct Progress {
    FILE *out;
    char *label;
    bool tty;
    gint64 start_us;
    gint64 window_us;           /* start of the rate window */
    uint64_t window_done;       /* done at its start */
    double rate;                /* bytes/s of the last full window */
    bool drawn;                 /* a bar line is on screen */
};

Progress *progress_new(FILE *out, const char *label)
{
    Progress *p = g_new0(Progress, 1);
    p->out = out;
    p->label = g_strdup(label);
    p->tty = isatty(fileno(out));
    p->start_us = p->window_us = g_get_monotonic_time();
    return p;
}

char *progress_eta_text(uint64_t left, double rate)
{
    if (rate <= 0) {
        return g_strdup("?");
    }
    uint64_t s = (uint64_t)(left / rate + 0.5);
    if (s >= 3600) {
        return g_strdup_printf("%" G_GUINT64_FORMAT "h%02um", s / 3600, (unsigned)(s % 3600 / 60));
    }
    return g_strdup_printf("%um%02us", (unsigned)(s / 60), (unsigned)(s % 60));
}

static void update_rate(Progress *p, uint64_t done)
{
    gint64 now = g_get_monotonic_time();
    if (done < p->window_done) {
        p->window_done = done;          /* the work restarted its count */
        p->window_us = now;
    } else if (now - p->window_us >= RATE_WINDOW_US || p->rate == 0) {
        if (now > p->window_us && done > p->window_done) {
            p->rate = (done - p->window_done) * (double)G_USEC_PER_SEC / (now - p->window_us);
        }
        if (now - p->window_us >= RATE_WINDOW_US) {
            p->window_us = now;
            p->window_done = done;
        }
    }
}

static void draw_bar(Progress *p, double frac, const char *text)
{
    int filled = (int)(frac * BAR_WIDTH + 0.5);
    fprintf(p->out, "\r\033[K%s [%.*s%*s] %s", p->label, filled,
            "##############################", BAR_WIDTH - filled, "", text);
    p->drawn = true;
}

void progress_show(Progress *p, double fraction, const char *text)
{
    if (p->tty) {
        draw_bar(p, CLAMP(fraction, 0.0, 1.0), text);
    } else {
        fprintf(p->out, "%s %7.2fs %s\n", p->label,
                (g_get_monotonic_time() - p->start_us) / 1e6, text);
    }
    fflush(p->out);
}

void progress_update(Progress *p, uint64_t done, uint64_t total, const char *detail)
{
    update_rate(p, done);
    double frac = total ? MIN(1.0, (double)done / (double)total) : 0;
    g_autofree char *eta = progress_eta_text(total > done ? total - done : 0, p->rate);
    g_autofree char *text = g_strdup_printf("%5.1f%%  %.1f MiB/s  eta %s%s%s", 100 * frac,
                                            p->rate / (1 << 20), eta, detail ? "  " : "",
                                            detail ? detail : "");
    progress_show(p, frac, text);
}

void progress_finish(Progress *p)
{
    if (p->drawn) {
        fputc('\n', p->out);
        fflush(p->out);
    }
    g_free(p->label);
    g_free(p);
}
