/* The limits an outgoing migration keeps (blkmig's parameters
 * progress-timeout, completion-timeout and timeout-action): a migration
 * that made no progress for progress-timeout seconds, or that is still
 * running after completion-timeout seconds, either fails saying which
 * limit ran out and how far it got (cancel, the default; the source guest
 * keeps running), or turns block-copy-mode to write-blocking and goes on
 * (write-blocking), after which the limits no longer apply: that mode
 * finishes whatever the guest does.
 *
 * Progress is the amount the switchover would have to move (left to send,
 * and sent but not yet durable at the destination) falling to a new low,
 * by at least what the migration moves in a second: with a guest that
 * writes faster than the link, what is left swings by tens of MiB as the
 * guest's own speed varies, and such a swing is no progress. */
#include "migration/options.h"
#include "migration-internal.h"

#define MIB (1024.0 * 1024.0)

void mig_limits_start(MigLimits *l)
{
    *l = (MigLimits){ .start_us = g_get_monotonic_time() };
}

/* PENDING is progress when it is MARGIN below the last low. */
static void note_pending(MigLimits *l, uint64_t pending, uint64_t margin, gint64 now)
{
    if (!l->have_least || pending + margin < l->least || pending == 0) {
        l->least = pending;
        l->least_us = now;
        l->have_least = true;
    }
}

/* Which limit ran out ("progress-timeout", "completion-timeout"), or NULL. */
static const char *limit_reached(const MigLimits *l, const MigrationParameters *p, gint64 now)
{
    if (p->progress_timeout && now - l->least_us >= (gint64)p->progress_timeout * G_USEC_PER_SEC) {
        return "progress-timeout";
    }
    if (p->completion_timeout &&
        now - l->start_us >= (gint64)p->completion_timeout * G_USEC_PER_SEC) {
        return "completion-timeout";
    }
    return NULL;
}

/* The figures an operator needs to decide what to change. */
static char *figures(const MigLimits *l, uint64_t pending, gint64 now)
{
    MigrationInfo info = { .status = MIG_STATUS_ACTIVE,
                           .total_time = (now - l->start_us) / 1000 };
    char *text;

    savevm_state_query(&info);
    text = g_strdup_printf("%.1f MiB left of %.1f MiB, the guest writes %.1f MiB/s, "
                           "the migration sends %.1f MiB/s", pending / MIB,
                           info.disk.total / MIB, info.disk.dirty_rate / MIB,
                           info.disk.mbps * 1e6 / 8 / MIB);
    migration_info_clear(&info);
    return text;
}

static bool fail(const MigLimits *l, const char *which, const MigrationParameters *p,
                 uint64_t pending, gint64 now, GError **errp)
{
    g_autofree char *numbers = figures(l, pending, now);

    if (g_str_equal(which, "progress-timeout")) {
        g_set_error(errp, MIG_ERROR, MIG_ERROR_TIMEOUT,
                    "migration made no progress for %" G_GUINT64_FORMAT " s (progress-timeout): "
                    "what is left to move has not fallen a second's sending below the "
                    "%.1f MiB of %.1f s ago; now %s",
                    p->progress_timeout, l->least / MIB, (now - l->least_us) / 1e6, numbers);
    } else {
        g_set_error(errp, MIG_ERROR, MIG_ERROR_TIMEOUT,
                    "migration did not complete within %" G_GUINT64_FORMAT
                    " s (completion-timeout): %s", p->completion_timeout, numbers);
    }
    return false;
}

/* timeout-action write-blocking: switch once; the limits end there. */
static void switch_to_write_blocking(MigLimits *l, const char *which)
{
    MigrationParametersUpdate u = { .has_block_copy_mode = true };

    u.p.block_copy_mode = MIG_COPY_MODE_WRITE_BLOCKING;
    mig_params_apply(&u, NULL);
    l->switched = true;
    g_message("migration: %s ran out: block-copy-mode is write-blocking now", which);
}

bool mig_limits_check(MigLimits *l, uint64_t pending, uint64_t rate, GError **errp)
{
    gint64 now = g_get_monotonic_time();
    MigrationParameters p;
    const char *which;

    note_pending(l, pending, rate, now);
    mig_params_get(&p);
    if (l->switched || !(which = limit_reached(l, &p, now))) {
        return true;
    }
    if (p.timeout_action == MIG_TIMEOUT_ACTION_CANCEL) {
        return fail(l, which, &p, pending, now, errp);
    }
    if (p.block_copy_mode != MIG_COPY_MODE_WRITE_BLOCKING) {
        switch_to_write_blocking(l, which);
    } else {
        l->switched = true;
    }
    return true;
}
