/* copy_run: checks the parameters against the sides, then runs the passes
 * (the copy or the delta, the target's flush, the verify), each with its
 * pool of worker threads, while this thread reports progress and takes
 * the caller's cancel.  The first failure stops everything and is what
 * copy_run reports. */
#include <errno.h>
#include <stdarg.h>
#include <string.h>

#include "copy-int.h"
#include "util/size.h"

#define PROGRESS_INTERVAL_US (100 * 1000)

void copy_side_free(CopySide *side)
{
    if (side) {
        side->ops->free(side);
    }
}

uint64_t copy_side_size(CopySide *side)
{
    return side->size;
}

void copy_count(uint64_t *counter, uint64_t n)
{
    __atomic_add_fetch(counter, n, __ATOMIC_RELAXED);
}

static uint64_t counted(const uint64_t *counter)
{
    return __atomic_load_n(counter, __ATOMIC_RELAXED);
}

bool copy_stopped(Copy *c)
{
    return g_atomic_int_get(&c->stop);
}

void copy_stop(Copy *c)
{
    g_atomic_int_set(&c->stop, 1);
    if (c->in_pass) {
        plan_stop(&c->plan);
    }
    c->src->ops->abort(c->src);
    c->dst->ops->abort(c->dst);
    if (c->base) {
        c->base->ops->abort(c->base);
    }
}

/* A failure after a stop is the stop's echo (a stream woken by it), not
 * news: the first cause is what is reported. */
void copy_fail(Copy *c, GError *err)
{
    g_mutex_lock(&c->lock);
    if (c->error || copy_stopped(c)) {
        g_error_free(err);
    } else {
        c->error = err;
    }
    g_mutex_unlock(&c->lock);
    copy_stop(c);
}

void copy_note_mismatch(Copy *c, uint64_t off, uint64_t len)
{
    g_mutex_lock(&c->lock);
    if (!c->mismatches || off < c->mismatch_off) {
        c->mismatch_off = off;
        c->mismatch_len = len;
    }
    c->mismatches++;
    c->mismatch_bytes += len;
    g_mutex_unlock(&c->lock);
}

/* After the verify pass: the differences, the first one named. */
static void report_mismatches(Copy *c)
{
    if (c->mismatches) {
        copy_fail(c, g_error_new(G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "verify: the target "
                                 "differs from the source in bytes %" G_GUINT64_FORMAT "..%"
                                 G_GUINT64_FORMAT " (XXH3 of that range differs), and in %"
                                 G_GUINT64_FORMAT " bytes in all (%" G_GUINT64_FORMAT
                                 " ranges)", c->mismatch_off,
                                 c->mismatch_off + c->mismatch_len - 1, c->mismatch_bytes,
                                 c->mismatches));
    }
}

/* ---- Parameters ---- */

static bool invalid(GError **errp, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static bool invalid(GError **errp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, msg);
    return false;
}

static bool check_sizes(const Copy *c, bool pairs, GError **errp)
{
    uint64_t buffers = (uint64_t)c->requests * c->request_size * (pairs ? 2 : 1);

    if (c->requests < 1 || c->requests > COPY_MAX_REQUESTS) {
        return invalid(errp, "requests in flight must be 1..%d, not %u", COPY_MAX_REQUESTS,
                       c->requests);
    }
    if (c->request_size % COPY_MIN_REQUEST_SIZE || c->request_size < COPY_MIN_REQUEST_SIZE ||
        c->request_size > COPY_MAX_REQUEST_SIZE) {
        return invalid(errp, "the request size must be a multiple of 4 KiB from 4 KiB to "
                       "32 MiB, not %" G_GUINT64_FORMAT, c->request_size);
    }
    if (buffers > COPY_MAX_BUFFER_BYTES) {
        return invalid(errp, "%u requests of %" G_GUINT64_FORMAT " bytes need more than "
                       "1 GiB of buffers", c->requests, c->request_size);
    }
    if (c->dst->size < c->src->size) {
        return invalid(errp, "the target (%" G_GUINT64_FORMAT " bytes) is smaller than the "
                       "source (%" G_GUINT64_FORMAT " bytes)", c->dst->size, c->src->size);
    }
    return true;
}

/* Streams hold nothing to compare with and cannot be read twice. */
static bool check_sides(const Copy *c, const CopyParams *p, GError **errp)
{
    bool stream_dst = c->dst->bs == NULL;

    if (c->base && (!c->base->bs || stream_dst)) {
        return invalid(errp, "a base needs a drive as the base and as the target (the "
                       "target holds the base's contents), not a stream");
    }
    if (c->base && p->target_is_zero) {
        return invalid(errp, "a target that holds a base does not read as zeroes");
    }
    if (stream_dst && p->target_is_zero) {
        return invalid(errp, "a stream target gets every byte: it cannot be taken as zero");
    }
    if (p->verify && (!c->src->bs || stream_dst)) {
        return invalid(errp, "verify reads both sides again after the copy: a stream "
                       "cannot be read twice");
    }
    return true;
}

static bool copy_init(Copy *c, CopySide *src, CopySide *dst, const CopyParams *p,
                      GError **errp)
{
    *c = (Copy){ .src = src, .dst = dst, .base = p->base,
                 .requests = p->requests ? p->requests : COPY_DEFAULT_REQUESTS,
                 .request_size = p->request_size ? p->request_size : COPY_DEFAULT_REQUEST_SIZE,
                 .target_zero = p->target_is_zero, .flush_interval = p->flush_interval,
                 .seed = ((uint64_t)g_random_int() << 32) | g_random_int() };
    if (!check_sizes(c, p->base || p->verify, errp) || !check_sides(c, p, errp)) {
        return false;
    }
    g_mutex_init(&c->lock);
    g_cond_init(&c->cond);
    c->zeroes = bdrv_buf_alloc(NULL, c->request_size);
    memset(c->zeroes, 0, c->request_size);
    return true;
}

static void copy_destroy(Copy *c)
{
    g_clear_error(&c->error);
    bdrv_buf_free(c->zeroes);
    g_mutex_clear(&c->lock);
    g_cond_clear(&c->cond);
}

/* ---- Progress ---- */

static void get_stats(Copy *c, const CopyParams *p, CopyStats *s)
{
    *s = (CopyStats){ .size = c->src->size, .work = c->src->size * (p->verify ? 2 : 1),
                      .done = counted(&c->done), .read = counted(&c->read),
                      .written = counted(&c->written), .zeroed = counted(&c->zeroed),
                      .skipped = counted(&c->skipped), .verified = counted(&c->verified) };
}

/* The caller's answer: false to cancel. */
static bool report(Copy *c, const CopyParams *p)
{
    CopyStats s;

    if (!p->progress) {
        return true;
    }
    get_stats(c, p, &s);
    return p->progress(&s, p->opaque);
}

/* ---- Passes ---- */

/* Until every worker ended, reporting progress meanwhile; a cancel from
 * the callback stops the pass.  Called and returns with c->lock held. */
static void wait_workers(Copy *c, const CopyParams *p, bool *cancelled)
{
    while (c->running > 0) {
        gint64 deadline = g_get_monotonic_time() + PROGRESS_INTERVAL_US;
        while (c->running > 0 && g_cond_wait_until(&c->cond, &c->lock, deadline)) {
        }
        if (c->running == 0) {
            break;
        }
        g_mutex_unlock(&c->lock);
        if (!report(c, p) && !*cancelled) {
            *cancelled = true;
            copy_stop(c);
        }
        g_mutex_lock(&c->lock);
    }
}

static void run_pass(Copy *c, const CopyParams *p, CopyPlanMode mode, CopySide *b, int depth,
                     bool *cancelled)
{
    GThread *threads[COPY_MAX_REQUESTS];

    plan_init(&c->plan, mode, c->src, b, c->src->size, c->request_size, c->target_zero, depth);
    c->in_pass = true;
    c->running = c->requests;
    for (unsigned i = 0; i < c->requests; i++) {
        threads[i] = g_thread_new("copy", copy_worker, c);
    }
    g_mutex_lock(&c->lock);
    wait_workers(c, p, cancelled);
    g_mutex_unlock(&c->lock);
    for (unsigned i = 0; i < c->requests; i++) {
        g_thread_join(threads[i]);
    }
    c->in_pass = false;
    plan_destroy(&c->plan);
}

static void flush_target(Copy *c)
{
    GError *err = NULL;

    if (c->dst->ops->flush(c->dst, &err) < 0) {
        g_prefix_error(&err, "flushing the target: ");
        copy_fail(c, err);
    }
}

/* The copy pass: a delta when the base is in the source's chain, a
 * compare when there is another base, else the whole source. */
static void copy_pass(Copy *c, const CopyParams *p, bool *cancelled)
{
    int depth = c->base ? copy_base_depth(c->src, c->base) : 0;
    CopyPlanMode mode = !c->base ? PLAN_COPY : depth ? PLAN_DELTA : PLAN_COMPARE;

    run_pass(c, p, mode, c->base ? c->base : c->dst, depth, cancelled);
}

CopyOutcome copy_run(CopySide *src, CopySide *dst, const CopyParams *p, CopyStats *stats,
                     GError **errp)
{
    static const CopyParams defaults;
    bool cancelled = false;
    Copy c;

    p = p ? p : &defaults;
    if (!copy_init(&c, src, dst, p, errp)) {
        return COPY_FAILED;
    }
    copy_pass(&c, p, &cancelled);
    if (!copy_stopped(&c)) {
        flush_target(&c);
    }
    if (!copy_stopped(&c) && p->verify) {
        run_pass(&c, p, PLAN_VERIFY, dst, 0, &cancelled);
        report_mismatches(&c);
    }
    if (!copy_stopped(&c)) {
        report(&c, p);          /* the last word: all is done, a cancel comes too late */
    }
    if (stats) {
        get_stats(&c, p, stats);
    }
    CopyOutcome out = c.error ? COPY_FAILED : cancelled ? COPY_CANCELLED : COPY_DONE;
    if (c.error) {
        g_propagate_error(errp, g_steal_pointer(&c.error));
    } else if (cancelled) {
        g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_CANCELLED, "the copy was cancelled");
    }
    copy_destroy(&c);
    return out;
}
