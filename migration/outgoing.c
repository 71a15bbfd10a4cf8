/* Outgoing migration: the state machine and the thread that drives the
 * savevm handlers from setup through switchover to the destination's
 * acknowledgement. */
#include <errno.h>
#include <unistd.h>

#include "migration/migration.h"
#include "migration/options.h"
#include "migration/savevm.h"
#include "migration-internal.h"

/* Payload per iteration when unlimited: keeps each round short enough to
 * re-check the switchover condition often. */
#define UNLIMITED_ROUND_BYTES (16u << 20)
/* Long enough that filling socket buffers and read pipelines does not
 * pass for throughput. */
#define BANDWIDTH_WINDOW_US (250 * 1000)
/* The destination reports durable bytes every 32 MiB flushed. */
#define DEST_RATE_WINDOW_US (1000 * 1000)
/* How long after the bulk phase the switchover waits for a blkmig
 * destination's first flush report (it flushes 50 ms after the data stops
 * coming); one that does not report by then is taken not to. */
#define FIRST_FLUSH_REPORT_US (3 * G_USEC_PER_SEC)
/* Dirty-phase windows measured before the estimate is trusted. */
#define BANDWIDTH_TRUSTED_WINDOWS 2
#define ACK_TIMEOUT_US (60 * G_USEC_PER_SEC)
/* After a write error, how long the destination gets to explain it. */
#define DEST_ERROR_GRACE_US (2 * G_USEC_PER_SEC)
/* How long a cancel may take to reach a section boundary, tell a blkmig
 * destination and hear its answer, before the connections just close. */
#define CANCEL_GRACE_US (2 * G_USEC_PER_SEC)

typedef struct Outgoing {
    GMutex lock;
    bool started;               /* a migration was ever started */
    MigrationStatus status;
    char *error_desc;
    gint64 start_us;
    int64_t setup_ms;
    int64_t total_ms;           /* once finished */
    int64_t downtime_ms;        /* once completed */
    int64_t expected_downtime_ms;
    /* The last estimate did not fit downtime-limit while there was data
     * to move (auto-converge throttles harder then). */
    bool waits_for_data;
    /* What the last completed switchover of this process took beyond its
     * estimate: counted in the next ones' estimates, fading while they
     * wait on it (downtime.c). */
    uint64_t overrun_ms;
    bool cancel_requested;
    /* A cancel is announced on the stream (to a blkmig destination over a
     * socket) by cancel_deadline_us, unless it came once the guest was
     * stopping for the switchover. */
    bool announce_cancel;
    bool switching_over;
    gint64 cancel_deadline_us;
    /* The whole stream reached the destination, which may start the guest
     * at any moment: cancelling or resuming here could run it twice. */
    bool handed_over;
    MigStream *f;               /* while the thread runs; for cancel */
    /* block-resume: the new connection migration_resume hands the paused
     * thread (cond wakes it, and a cancel). */
    MigStream *resume_f;
    GCond cond;
    ReturnPath *rp;             /* while the thread runs; for query */
    uint64_t verified;          /* the destination's last VERIFIED count */
    char *uri;                  /* of the last migration started */
    GThread *thread;            /* joined by the next start or shutdown */
} Outgoing;

static Outgoing out;

/* What the migration thread owns. */
typedef struct MigrationRun {
    MigStream *f;
    ReturnPath *rp;
    MigChannelKind kind;
    uint64_t bandwidth;         /* disk bytes processed per second */
    uint64_t last_rate;         /* ...in the last window */
    uint64_t dest_rate;         /* disk bytes made durable per second, or 0 */
    gint64 dest_window_start_us;
    uint64_t dest_window_start_durable;
    unsigned dirty_windows;     /* windows measured in the dirty phase */
    bool bandwidth_measured;    /* ...enough of them */
    bool in_dirty_phase;
    gint64 dirty_phase_us;      /* when it began */
    gint64 window_start_us;
    uint64_t window_start_processed;
    MigLimits limits;
    uint64_t switchover_bytes;  /* as the last round saw it */
    DowntimeEstimate estimate;  /* ...and what moving them would cost */
    bool warned_fixed;          /* said that the fixed costs alone are too long */
    /* When the estimate without the last switchover's overrun first fit
     * downtime-limit (0: not yet): the overrun fades from then on. */
    gint64 overrun_wait_us;
    bool vm_stopped;
    bool was_running;
    gint64 stop_us;
    /* Progress when the last resume began: the destination's DURABLE
     * counts start from zero on each connection. */
    uint64_t durable_base;
} MigrationRun;

static bool status_is_active(MigrationStatus s)
{
    return s == MIG_STATUS_SETUP || s == MIG_STATUS_ACTIVE || s == MIG_STATUS_CANCELLING ||
           s == MIG_STATUS_PAUSED;
}

bool migration_is_active(void)
{
    bool active;

    g_mutex_lock(&out.lock);
    active = status_is_active(out.status);
    g_mutex_unlock(&out.lock);
    return active;
}

/* Move from FROM to TO unless a cancel (or anything else) got there
 * first. */
static void status_transition(MigrationStatus from, MigrationStatus to)
{
    bool changed = false;

    g_mutex_lock(&out.lock);
    if (out.status == from) {
        out.status = to;
        changed = true;
    }
    g_mutex_unlock(&out.lock);
    if (changed) {
        migration_notify_status(to);
    }
}

static bool cancel_requested(void)
{
    bool cancel;

    g_mutex_lock(&out.lock);
    cancel = out.cancel_requested;
    g_mutex_unlock(&out.lock);
    return cancel;
}

static bool set_cancelled_error(GError **errp)
{
    g_set_error(errp, MIG_ERROR, MIG_ERROR_CANCELLED, "migration cancelled");
    return false;
}

/* From here a cancel is no longer announced but cuts the connection: the
 * guest is stopping and the stream is mid-section until the end.  False
 * when a cancel came first. */
static bool begin_switchover(void)
{
    bool cancel;

    g_mutex_lock(&out.lock);
    cancel = out.cancel_requested;
    out.switching_over = !cancel;
    g_mutex_unlock(&out.lock);
    return !cancel;
}

/* ---- the phases of the thread ---- */

static bool start_return_path(MigrationRun *run, GError **errp);

static bool run_setup(MigrationRun *run, GError **errp)
{
    g_autofree char *uri = migration_outgoing_uri();

    /* TLS first (the handshake is bounded by the link-timeout, and a
     * cancel shuts it down), then the return path reads through it. */
    if (!mig_channel_secure_outgoing(run->f, uri, errp) || !start_return_path(run, errp)) {
        return false;
    }
    /* The destination acts on the setup part (sizes, multifd channels)
     * before the bulk data: it goes out at once. */
    if (savevm_state_header(run->f, errp) < 0 ||
        savevm_state_setup(run->f, errp) < 0 ||
        mig_stream_flush(run->f) < 0) {
        if (errp && !*errp) {
            g_set_error(errp, MIG_ERROR, MIG_ERROR_IO, "writing the migration stream "
                        "failed: %s", mig_stream_error_msg(run->f));
        }
        return false;
    }
    g_mutex_lock(&out.lock);
    out.setup_ms = (g_get_monotonic_time() - out.start_us) / 1000;
    g_mutex_unlock(&out.lock);
    status_transition(MIG_STATUS_SETUP, MIG_STATUS_ACTIVE);
    return true;
}

static void start_bandwidth_window(MigrationRun *run)
{
    run->window_start_us = g_get_monotonic_time();
    run->window_start_processed = savevm_state_progress();
}

/* Disk bytes walked per second: the slower of the last two windows of at
 * least BANDWIDTH_WINDOW_US, since an estimate too high makes the
 * downtime too long.  The bulk phase's rate counts holes, which cost
 * almost nothing, so the dirty phase starts measuring afresh before it
 * trusts the estimate.  A window without progress while something is
 * pending (the destination fell behind) counts as zero. */
static void update_bandwidth(MigrationRun *run, bool bulk_done)
{
    gint64 elapsed = g_get_monotonic_time() - run->window_start_us;
    uint64_t processed, rate;

    if (bulk_done && !run->in_dirty_phase) {
        run->in_dirty_phase = true;
        run->dirty_phase_us = g_get_monotonic_time();
        run->last_rate = 0;
        start_bandwidth_window(run);
        return;
    }
    if (elapsed < BANDWIDTH_WINDOW_US) {
        return;
    }
    processed = savevm_state_progress();
    if (processed == run->window_start_processed && savevm_state_pending() == 0) {
        start_bandwidth_window(run);
        return;
    }
    rate = (processed - run->window_start_processed) * (double)G_USEC_PER_SEC / elapsed;
    run->bandwidth = run->last_rate ? MIN(rate, run->last_rate) : rate;
    run->last_rate = rate;
    if (run->in_dirty_phase) {
        run->dirty_windows++;
        run->bandwidth_measured = run->dirty_windows >= BANDWIDTH_TRUSTED_WINDOWS;
    }
    start_bandwidth_window(run);
}

/* Disk bytes the destination has made durable, as it reports them. */
static bool dest_durable(MigrationRun *run, uint64_t *durable)
{
    if (!run->rp || !return_path_durable(run->rp, durable)) {
        return false;
    }
    *durable += run->durable_base;
    return true;
}

/* The destination's durable bytes per second over windows of at least
 * DEST_RATE_WINDOW_US (it reports after each flush, so shorter windows
 * would mostly see none). */
static void update_dest_rate(MigrationRun *run)
{
    gint64 now = g_get_monotonic_time();
    uint64_t durable;

    if (!dest_durable(run, &durable)) {
        return;
    }
    if (!run->dest_window_start_us) {
        run->dest_window_start_us = now;
        run->dest_window_start_durable = durable;
        return;
    }
    if (now - run->dest_window_start_us < DEST_RATE_WINDOW_US) {
        return;
    }
    run->dest_rate = (durable - run->dest_window_start_durable) * (double)G_USEC_PER_SEC /
                     (now - run->dest_window_start_us);
    run->dest_window_start_us = now;
    run->dest_window_start_durable = durable;
}

/* Whether the destination should tell us how long its flushes take: a
 * blkmig destination (one that gets DEVICE_SIZE records, so not with
 * qemu-compat) over a return path, once it has data to flush; until
 * FIRST_FLUSH_REPORT_US into the dirty phase. */
static bool dest_reports_flushes(MigrationRun *run)
{
    return run->rp && !mig_cap_enabled(MIG_CAP_QEMU_COMPAT) && savevm_state_progress() > 0 &&
           (!run->in_dirty_phase ||
            g_get_monotonic_time() - run->dirty_phase_us < FIRST_FLUSH_REPORT_US);
}

/* What the switchover would have to move if the guest stopped now: what
 * is still to send, and what was sent but is not durable at the
 * destination yet (or at least what the kernel still holds for it). */
static void switchover_inputs(MigrationRun *run, DowntimeInputs *in)
{
    uint64_t durable, processed = savevm_state_progress();
    bool reported = dest_durable(run, &durable);
    bool reports_flushes = dest_reports_flushes(run);
    uint64_t flush_us = 0, flush_rate = 0;
    bool flush_known = run->rp && return_path_flush_cost(run->rp, &flush_us, &flush_rate);

    in->to_send = savevm_state_pending();
    if (reported) {
        in->not_durable = processed > durable ? processed - durable : 0;
    } else if (reports_flushes) {
        in->not_durable = processed;
    } else {
        in->not_durable = mig_stream_unsent_bytes(run->f);
    }
    in->bandwidth = run->bandwidth;
    in->dest_rate = run->dest_rate;
    /* A destination that sent DURABLE without FLUSHED predates it. */
    in->flush_us = flush_known ? flush_us : 0;
    in->flush_rate = flush_rate;
    in->await_flush_report = !flush_known && !reported && reports_flushes;
    in->rtt_us = run->kind == MIG_CHANNEL_SOCKET ? mig_channel_rtt_us(mig_stream_fd(run->f)) : 0;
    g_mutex_lock(&out.lock);
    in->overrun_ms = out.overrun_ms;
    g_mutex_unlock(&out.lock);
    in->overrun_waited_us = run->overrun_wait_us ? g_get_monotonic_time() - run->overrun_wait_us
                                                 : 0;
}

/* Say once why the migration waits although nothing is left to move. */
static void warn_fixed_costs(MigrationRun *run, uint64_t downtime_limit_ms)
{
    const DowntimeEstimate *e = &run->estimate;

    if (run->warned_fixed || e->data_ms || !e->known || e->fixed_ms <= downtime_limit_ms) {
        return;
    }
    run->warned_fixed = true;
    if (e->fixed_ms - e->overrun_ms <= downtime_limit_ms) {
        g_message("migration: the last switchover's overrun (%" G_GUINT64_FORMAT " ms) alone "
                  "keeps the expected downtime above downtime-limit (%" G_GUINT64_FORMAT " ms): "
                  "waiting while it halves every %d s", e->overrun_ms, downtime_limit_ms,
                  DOWNTIME_OVERRUN_HALVING_S);
        return;
    }
    g_message("migration: the switchover's fixed costs alone (%" G_GUINT64_FORMAT " ms, of "
              "which the destination's flush %" G_GUINT64_FORMAT " ms) exceed downtime-limit "
              "(%" G_GUINT64_FORMAT " ms): waiting; raise downtime-limit to finish",
              e->fixed_ms, e->flush_ms, downtime_limit_ms);
}

/* Whether the switchover may go ahead if its expected downtime is MS:
 * the bulk phase is over, the estimate is known and trusted, and MS fits
 * the limit. */
static bool estimate_fits(const MigrationRun *run, bool bulk_done, uint64_t ms,
                          uint64_t downtime_limit_ms)
{
    return bulk_done && run->estimate.known && ms <= downtime_limit_ms &&
           (run->switchover_bytes == 0 || run->bandwidth_measured);
}

/* True once the handlers' bulk phase is over and the switchover's whole
 * expected downtime, data and fixed costs, fits the limit. */
static bool ready_to_switch(MigrationRun *run, bool bulk_done, uint64_t downtime_limit_ms)
{
    DowntimeInputs in;
    DowntimeEstimate *e = &run->estimate;
    bool fits;

    update_dest_rate(run);
    switchover_inputs(run, &in);
    downtime_estimate(&in, e);
    run->switchover_bytes = in.to_send + in.not_durable;
    fits = estimate_fits(run, bulk_done, e->total_ms, downtime_limit_ms);
    if (!run->overrun_wait_us &&
        estimate_fits(run, bulk_done, e->total_ms - e->overrun_ms, downtime_limit_ms)) {
        run->overrun_wait_us = g_get_monotonic_time();
    }
    g_mutex_lock(&out.lock);
    out.expected_downtime_ms = e->known ? e->total_ms : 0;
    out.waits_for_data = bulk_done && !fits && e->data_ms > 0;
    g_mutex_unlock(&out.lock);
    if (bulk_done) {
        warn_fixed_costs(run, downtime_limit_ms);
    }
    return fits;
}

bool migration_switchover_waits_for_data(void)
{
    bool waits;

    g_mutex_lock(&out.lock);
    waits = out.waits_for_data;
    g_mutex_unlock(&out.lock);
    return waits;
}

/* False once a cancel came, which lifted the limit for good. */
static bool set_rate_limit(MigrationRun *run, uint64_t bytes_per_sec)
{
    bool cancel;

    g_mutex_lock(&out.lock);
    cancel = out.cancel_requested;
    if (!cancel) {
        mig_stream_set_rate_limit(run->f, bytes_per_sec);
    }
    g_mutex_unlock(&out.lock);
    return !cancel;
}

/* Each round ends with a flushed section part, an empty one (a bare EOS
 * record, which QEMU 7.2's block loader accepts too) when there is nothing
 * to send: that is what tells the destination the link is alive while the
 * source waits for dirty data or for the destination's DURABLE reports. */
static bool run_iterations(MigrationRun *run, GError **errp)
{
    MigrationParameters params;

    mig_params_get(&params);
    run->bandwidth = params.max_bandwidth;
    start_bandwidth_window(run);
    mig_limits_start(&run->limits);
    for (;;) {
        uint64_t max_bytes;
        int ret;

        /* Re-read every round: QMP may change the limit at any time. */
        mig_params_get(&params);
        if (!set_rate_limit(run, params.max_bandwidth)) {
            return set_cancelled_error(errp);
        }
        max_bytes = params.max_bandwidth ? MAX(params.max_bandwidth / 10, 1)
                                         : UNLIMITED_ROUND_BYTES;
        ret = savevm_state_iterate(run->f, max_bytes, errp);
        if (ret < 0) {
            return false;
        }
        update_bandwidth(run, ret == 1);
        if (ready_to_switch(run, ret == 1, params.downtime_limit)) {
            return true;
        }
        if (!mig_limits_check(&run->limits, run->switchover_bytes,
                              MIN(run->bandwidth, run->dest_rate ? run->dest_rate : UINT64_MAX),
                              errp)) {
            return false;
        }
    }
}

static bool run_switchover(MigrationRun *run, GError **errp)
{
    MigrationVmOps ops = migration_get_vm_ops();

    if (!begin_switchover()) {
        return set_cancelled_error(errp);
    }
    run->was_running = ops.guest_is_running && ops.guest_is_running(ops.opaque);
    g_message("migration: stopping the guest, expected downtime %" G_GUINT64_FORMAT " ms "
              "(%" G_GUINT64_FORMAT " ms to move %.1f MiB, %" G_GUINT64_FORMAT " ms fixed)",
              run->estimate.total_ms, run->estimate.data_ms, run->switchover_bytes / 1048576.0,
              run->estimate.fixed_ms);
    /* The downtime starts with the stop (as QEMU counts it): waiting for
     * the guest's writes in flight is part of it. */
    run->stop_us = g_get_monotonic_time();
    /* Guest writes must not wait for this thread while it stops them. */
    savevm_state_stopping();
    if (ops.stop_for_switchover) {
        ops.stop_for_switchover(ops.opaque);
    }
    run->vm_stopped = true;
    if (run->kind == MIG_CHANNEL_SOCKET) {
        mig_channel_set_nodelay(mig_stream_fd(run->f));
    }
    if (savevm_state_complete(run->f, errp) < 0) {
        return false;
    }

    if (run->rp && mig_stream_flush(run->f) == 0) {
        g_mutex_lock(&out.lock);
        out.handed_over = true;
        g_mutex_unlock(&out.lock);
    }
    if (run->kind == MIG_CHANNEL_FILE && mig_stream_fsync(run->f) < 0) {
        g_set_error(errp, MIG_ERROR, 0, "saving the migration stream failed: %s",
                    mig_stream_error_msg(run->f));
        return false;
    }
    if (run->rp) {
        return return_path_wait_ack(run->rp, ACK_TIMEOUT_US, errp);
    }
    return true;
}

/* ---- ending ---- */

/* The error to report: the destination's own words when it sent any,
 * waiting a little for them when our writes failed (it probably hung up
 * because it failed). */
static char *failure_text(MigrationRun *run, GError *err)
{
    char *dest = NULL;

    if (run->rp) {
        bool io_failed = mig_stream_error(run->f) ||
                         (err && g_error_matches(err, MIG_ERROR, MIG_ERROR_IO));
        gint64 grace = io_failed ? DEST_ERROR_GRACE_US : 0;
        dest = return_path_wait_error(run->rp, grace);
    }
    if (dest) {
        char *text = g_strdup_printf("destination failed: %s", dest);
        g_free(dest);
        return text;
    }
    return g_strdup(err ? err->message : "migration failed");
}

static void release_channel(MigrationRun *run)
{
    MigStream *f;

    /* The return path uses the stream: it goes first. */
    g_mutex_lock(&out.lock);
    out.verified = run->rp ? return_path_verified(run->rp) : out.verified;
    out.rp = NULL;
    g_mutex_unlock(&out.lock);
    g_clear_pointer(&run->rp, return_path_free);
    g_mutex_lock(&out.lock);
    f = out.f;
    out.f = NULL;
    g_mutex_unlock(&out.lock);
    mig_stream_close(f);
}

/* After hand-over, only a destination that said it failed is known not to
 * run the guest; anything else (lost connection, no answer) leaves the
 * source guest stopped for the operator to decide. */
static bool may_resume_guest(MigrationRun *run)
{
    bool handed_over;

    g_mutex_lock(&out.lock);
    handed_over = out.handed_over;
    g_mutex_unlock(&out.lock);
    return !handed_over || (run->rp && return_path_dest_refused(run->rp));
}

static char *unsure_outcome_text(char *error_desc)
{
    char *text = g_strdup_printf("%s; the destination may be running the guest, "
                                 "so the source guest stays stopped", error_desc);
    g_free(error_desc);
    return text;
}

/* A cancel, or a limit that ran out, stopped the thread at a section
 * boundary (ERR says so): tell a blkmig destination, and give it until
 * the cancel deadline to answer, so that the multifd channels close only
 * after it read why. */
static void announce_cancel(MigrationRun *run, GError *err)
{
    bool timeout = g_error_matches(err, MIG_ERROR, MIG_ERROR_TIMEOUT);
    gint64 deadline;
    bool announce;

    g_mutex_lock(&out.lock);
    announce = out.announce_cancel;
    deadline = timeout ? g_get_monotonic_time() + CANCEL_GRACE_US : out.cancel_deadline_us;
    g_mutex_unlock(&out.lock);
    if (!announce || !(timeout || g_error_matches(err, MIG_ERROR, MIG_ERROR_CANCELLED)) ||
        savevm_state_cancel(run->f) < 0 || !run->rp) {
        return;
    }
    g_free(return_path_wait_error(run->rp, MAX(deadline - g_get_monotonic_time(), 0)));
}

static void run_finish(MigrationRun *run, bool ok, GError *err)
{
    MigrationVmOps ops = migration_get_vm_ops();
    bool cancelled = !ok && cancel_requested();
    char *error_desc = ok || cancelled ? NULL : failure_text(run, err);
    bool resume = run->vm_stopped && run->was_running;

    if (!ok && resume && !may_resume_guest(run)) {
        resume = false;
        error_desc = unsure_outcome_text(error_desc);
    }
    MigrationStatus final = ok ? MIG_STATUS_COMPLETED
                               : cancelled ? MIG_STATUS_CANCELLED : MIG_STATUS_FAILED;
    gint64 now = g_get_monotonic_time();

    if (error_desc) {
        g_warning("migration failed: %s", error_desc);
    }
    if (cancelled || g_error_matches(err, MIG_ERROR, MIG_ERROR_TIMEOUT)) {
        announce_cancel(run, err);
    }
    release_channel(run);
    savevm_state_cleanup();
    /* The runstate changes before the status does: whoever sees the final
     * status also sees the guest where it belongs. */
    if (ops.source_finished) {
        ops.source_finished(ops.opaque, ok, resume);
    }
    g_mutex_lock(&out.lock);
    out.status = final;
    out.error_desc = error_desc;
    out.total_ms = (now - out.start_us) / 1000;
    out.downtime_ms = ok ? (now - run->stop_us) / 1000 : 0;
    if (ok) {
        /* Against the estimate without what it counted of the last
         * overrun. */
        uint64_t foreseen = run->estimate.total_ms - run->estimate.overrun_ms;
        out.overrun_ms = (uint64_t)out.downtime_ms > foreseen ? out.downtime_ms - foreseen : 0;
    }
    out.expected_downtime_ms = 0;
    out.waits_for_data = false;
    g_mutex_unlock(&out.lock);
    migration_notify_status(final);
}

/* ---- block-resume: pausing and resuming ---- */

/* A lost connection before the switchover pauses the migration when
 * block-resume is on, every handler can pause, and the destination did
 * not say it failed (then it is not waiting to be resumed). */
static bool may_pause(MigrationRun *run, GError *err)
{
    char *dest;

    if (!mig_cap_enabled(MIG_CAP_BLOCK_RESUME) || run->kind != MIG_CHANNEL_SOCKET ||
        cancel_requested() || g_error_matches(err, MIG_ERROR, MIG_ERROR_CANCELLED) ||
        g_error_matches(err, MIG_ERROR, MIG_ERROR_TIMEOUT) || !savevm_state_can_pause()) {
        return false;
    }
    if (!g_error_matches(err, MIG_ERROR, MIG_ERROR_IO) && !(run->f && mig_stream_error(run->f))) {
        return false;
    }
    dest = run->rp ? return_path_wait_error(run->rp, DEST_ERROR_GRACE_US) : NULL;
    g_free(dest);
    return dest == NULL;
}

/* Close the connections, let the handlers keep what a resume needs, and
 * say why we are paused. */
static void pause_migration(MigrationRun *run, const char *why)
{
    release_channel(run);
    run->f = NULL;
    savevm_state_pause();
    g_mutex_lock(&out.lock);
    out.status = MIG_STATUS_PAUSED;
    out.announce_cancel = false;
    g_free(out.error_desc);
    out.error_desc = g_strdup_printf("paused: lost the connection to the destination: %s", why);
    out.expected_downtime_ms = 0;
    out.waits_for_data = false;
    g_mutex_unlock(&out.lock);
    g_warning("migration %s", out.error_desc);
    migration_notify_status(MIG_STATUS_PAUSED);
}

/* The new connection of migrate resume:true; NULL with *errp after a
 * cancel, or once resume-timeout passed. */
static MigStream *wait_for_resume(GError **errp)
{
    MigrationParameters params;
    MigStream *f;
    gint64 deadline;

    mig_params_get(&params);
    deadline = g_get_monotonic_time() + params.resume_timeout * G_USEC_PER_SEC;
    g_mutex_lock(&out.lock);
    while (!out.cancel_requested && !out.resume_f &&
           g_cond_wait_until(&out.cond, &out.lock, deadline)) {
    }
    f = g_steal_pointer(&out.resume_f);
    if (out.cancel_requested) {
        set_cancelled_error(errp);
        out.f = NULL;
        mig_stream_close(g_steal_pointer(&f));
    } else if (!f) {
        g_set_error(errp, MIG_ERROR, 0, "not resumed within resume-timeout (%" G_GUINT64_FORMAT
                    " s) after the migration %s", params.resume_timeout, out.error_desc);
    }
    g_mutex_unlock(&out.lock);
    return f;
}

/* The measurements start again: the new destination load counts from 0. */
static void reset_run(MigrationRun *run, MigStream *f)
{
    run->f = f;
    run->kind = MIG_CHANNEL_SOCKET;
    run->dest_rate = 0;
    run->dest_window_start_us = 0;
    run->dirty_windows = 0;
    run->bandwidth_measured = false;
    run->in_dirty_phase = false;
}

/* Header and the handlers' resume START sections, then the destination's
 * map of what it holds, which the handlers turn into what to send. */
static bool resume_setup(MigrationRun *run, GError **errp)
{
    g_autofree char *uri = migration_outgoing_uri();
    GByteArray *map;
    int ret;

    if (!mig_channel_secure_outgoing(run->f, uri, errp) || !start_return_path(run, errp)) {
        return false;
    }
    if (savevm_state_header(run->f, errp) < 0 || savevm_state_resume_setup(run->f, errp) < 0 ||
        mig_stream_flush(run->f) < 0) {
        if (errp && !*errp) {
            g_set_error(errp, MIG_ERROR, MIG_ERROR_IO, "writing the migration stream "
                        "failed: %s", mig_stream_error_msg(run->f));
        }
        return false;
    }
    map = return_path_wait_resume_map(run->rp, ACK_TIMEOUT_US, errp);
    if (!map) {
        return false;
    }
    ret = savevm_state_resume_map(map->data, map->len, errp);
    g_byte_array_unref(map);
    run->durable_base = savevm_state_progress();
    status_transition(MIG_STATUS_SETUP, MIG_STATUS_ACTIVE);
    return ret == 0;
}

static bool run_paused(MigrationRun *run, GError **errp)
{
    g_autofree char *why = g_strdup(*errp ? (*errp)->message : "connection lost");
    MigStream *f;

    g_clear_error(errp);
    pause_migration(run, why);
    f = wait_for_resume(errp);
    if (!f) {
        return false;
    }
    reset_run(run, f);
    g_message("migration: resuming");
    return resume_setup(run, errp);
}

static gpointer migration_thread(gpointer opaque)
{
    MigrationRun *run = opaque;
    GError *err = NULL;
    bool ok = run_setup(run, &err) && run_iterations(run, &err);

    while (!ok && may_pause(run, err)) {
        ok = run_paused(run, &err) && run_iterations(run, &err);
    }
    ok = ok && run_switchover(run, &err);

    run_finish(run, ok, err);
    g_clear_error(&err);
    g_free(run);
    return NULL;
}

/* ---- public entry points ---- */

static bool check_idle(GError **errp)
{
    bool busy = migration_is_active() || incoming_is_busy();

    if (busy) {
        g_set_error(errp, MIG_ERROR, 0, "There's a migration process in progress");
    }
    return !busy;
}

/* The reader of the return path gets its own fd so each stream owns one. */
static bool start_return_path(MigrationRun *run, GError **errp)
{
    int fd;

    if (run->kind != MIG_CHANNEL_SOCKET || !mig_cap_enabled(MIG_CAP_RETURN_PATH)) {
        return true;
    }
    fd = dup(mig_stream_fd(run->f));
    if (fd < 0) {
        g_set_error(errp, MIG_ERROR, 0, "cannot open the return path: %s",
                    g_strerror(errno));
        return false;
    }
    run->rp = return_path_start(fd, run->f);
    g_mutex_lock(&out.lock);
    out.rp = run->rp;
    g_mutex_unlock(&out.lock);
    return true;
}

/* Capabilities that cannot work together, or not with URI. */
static bool check_capabilities(const char *uri, GError **errp)
{
    static const MigrationCapability extensions[] = { MIG_CAP_MULTIFD, MIG_CAP_COMPRESS };

    for (size_t i = 0; i < G_N_ELEMENTS(extensions); i++) {
        if (mig_cap_enabled(MIG_CAP_QEMU_COMPAT) && mig_cap_enabled(extensions[i])) {
            g_set_error(errp, MIG_ERROR, 0,
                        "Capability '%s' cannot be combined with 'qemu-compat': "
                        "QEMU 7.2's block migration stream has no such records",
                        mig_cap_name(extensions[i]));
            return false;
        }
    }
    if (mig_cap_enabled(MIG_CAP_BLOCK_RESUME) &&
        (mig_cap_enabled(MIG_CAP_QEMU_COMPAT) || !mig_cap_enabled(MIG_CAP_RETURN_PATH))) {
        g_set_error(errp, MIG_ERROR, 0, "Capability 'block-resume' needs 'return-path' and "
                    "cannot be combined with 'qemu-compat'");
        return false;
    }
    if (mig_cap_enabled(MIG_CAP_BLOCK_RESUME) && mig_cap_enabled(MIG_CAP_MULTIFD)) {
        g_set_error(errp, MIG_ERROR, 0, "Capability 'block-resume' cannot be combined with "
                    "'multifd' yet");
        return false;
    }
    if (mig_cap_enabled(MIG_CAP_MULTIFD) && g_str_has_prefix(uri, "file:")) {
        g_set_error(errp, MIG_ERROR, 0,
                    "Capability 'multifd' is not supported with a file: URI "
                    "(its channels need a destination listening on a socket)");
        return false;
    }
    return true;
}

char *migration_outgoing_uri(void)
{
    char *uri;

    g_mutex_lock(&out.lock);
    uri = g_strdup(out.uri);
    g_mutex_unlock(&out.lock);
    return uri;
}

bool migration_start(const char *uri, GError **errp)
{
    MigrationRun *run;
    GThread *thread;
    int fd;

    if (!check_idle(errp) || !migration_check_blockers(errp) ||
        !check_capabilities(uri, errp) || !mig_channel_tls_check(uri, true, errp)) {
        return false;
    }
    migration_join_thread(&out.lock, &out.thread);
    run = g_new0(MigrationRun, 1);
    fd = mig_channel_open_outgoing(uri, &run->kind, errp);
    if (fd < 0) {
        g_free(run);
        return false;
    }
    run->f = mig_channel_stream_new(fd, true);
    savevm_state_select();
    g_mutex_lock(&out.lock);
    out.started = true;
    out.status = MIG_STATUS_SETUP;
    g_clear_pointer(&out.error_desc, g_free);
    out.start_us = g_get_monotonic_time();
    out.setup_ms = out.total_ms = out.downtime_ms = out.expected_downtime_ms = 0;
    out.cancel_requested = false;
    out.announce_cancel = run->kind == MIG_CHANNEL_SOCKET &&
                          !mig_cap_enabled(MIG_CAP_QEMU_COMPAT);
    out.switching_over = false;
    out.handed_over = false;
    out.verified = 0;
    out.f = run->f;
    g_free(out.uri);
    out.uri = g_strdup(uri);
    g_mutex_unlock(&out.lock);
    /* Announce setup before the thread can announce anything later. */
    migration_notify_status(MIG_STATUS_SETUP);
    thread = g_thread_new("migration", migration_thread, run);
    g_mutex_lock(&out.lock);
    out.thread = thread;
    g_mutex_unlock(&out.lock);
    return true;
}

bool migration_start_with_block(const char *uri, bool incremental, GError **errp)
{
    if (!mig_cap_enabled(MIG_CAP_BLOCK)) {
        mig_cap_block_for_one_migration();
    }
    if (incremental) {
        mig_block_incremental_for_one_migration();
    }
    if (!migration_start(uri, errp)) {
        mig_cap_restore_temporary();
        return false;
    }
    return true;
}

/* Hand the paused thread STREAM to URI; false when it is not paused (any
 * more) or a resume is already under way. */
static bool hand_over_resume(const char *uri, MigStream *stream)
{
    bool paused;

    g_mutex_lock(&out.lock);
    paused = out.status == MIG_STATUS_PAUSED && !out.resume_f && !out.cancel_requested;
    if (paused) {
        out.resume_f = stream;
        out.f = stream;
        out.status = MIG_STATUS_SETUP;
        out.announce_cancel = true;
        g_free(out.uri);
        out.uri = g_strdup(uri);
        g_cond_broadcast(&out.cond);
    }
    g_mutex_unlock(&out.lock);
    return paused;
}

bool migration_resume(const char *uri, GError **errp)
{
    MigChannelKind kind;
    MigrationStatus status;
    int fd;

    g_mutex_lock(&out.lock);
    status = out.status;
    g_mutex_unlock(&out.lock);
    if (status != MIG_STATUS_PAUSED) {
        g_set_error(errp, MIG_ERROR, 0, "Cannot resume if there is no paused migration");
        return false;
    }
    if (g_str_has_prefix(uri, "file:") || !mig_channel_tls_check(uri, true, errp)) {
        if (errp && !*errp) {
            g_set_error(errp, MIG_ERROR, 0, "A migration can only resume over a socket");
        }
        return false;
    }
    fd = mig_channel_open_outgoing(uri, &kind, errp);
    if (fd < 0) {
        return false;
    }
    MigStream *f = mig_channel_stream_new(fd, true);
    if (!hand_over_resume(uri, f)) {
        mig_stream_close(f);
        g_set_error(errp, MIG_ERROR, 0, "Cannot resume if there is no paused migration");
        return false;
    }
    migration_notify_status(MIG_STATUS_SETUP);
    return true;
}

/* out.lock held.  When the cancel is to be announced, the migration
 * thread gets CANCEL_GRACE_US, unthrottled, to reach a section boundary
 * and say so; the stream is shut down then (or at once otherwise). */
static void stop_stream_locked(void)
{
    if (!out.f) {
        return;
    }
    if (out.announce_cancel && !out.switching_over) {
        out.cancel_deadline_us = g_get_monotonic_time() + CANCEL_GRACE_US;
        mig_stream_set_rate_limit(out.f, 0);
        mig_stream_shutdown_at(out.f, out.cancel_deadline_us);
    } else {
        out.announce_cancel = false;
        mig_stream_shutdown(out.f);
    }
}

void migration_cancel(void)
{
    bool changed = false;

    g_mutex_lock(&out.lock);
    if (out.handed_over) {
        g_message("migrate_cancel ignored: the destination has the whole stream "
                  "and is about to confirm");
    } else if (out.status == MIG_STATUS_SETUP || out.status == MIG_STATUS_ACTIVE ||
               out.status == MIG_STATUS_PAUSED) {
        out.status = MIG_STATUS_CANCELLING;
        out.cancel_requested = true;
        changed = true;
        stop_stream_locked();
        g_cond_broadcast(&out.cond);
    }
    g_mutex_unlock(&out.lock);
    if (changed) {
        migration_notify_status(MIG_STATUS_CANCELLING);
    }
}

bool outgoing_query(MigrationInfo *info)
{
    uint64_t verified;

    g_mutex_lock(&out.lock);
    if (!out.started) {
        g_mutex_unlock(&out.lock);
        return false;
    }
    info->status = out.status;
    info->error_desc = g_strdup(out.error_desc);
    info->has_times = true;
    info->setup_time = out.setup_ms;
    info->total_time = status_is_active(out.status)
                       ? (g_get_monotonic_time() - out.start_us) / 1000 : out.total_ms;
    info->downtime = out.downtime_ms;
    info->expected_downtime = out.expected_downtime_ms;
    verified = out.rp ? return_path_verified(out.rp) : out.verified;
    g_mutex_unlock(&out.lock);
    /* The handlers' parts ("disk"), outside our lock. */
    savevm_state_query(info);
    if (info->has_disk) {
        info->disk.verified = verified;
    }
    return true;
}

void outgoing_shutdown(void)
{
    migration_cancel();
    migration_join_thread(&out.lock, &out.thread);
}
