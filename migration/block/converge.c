/* Auto-converge (capability auto-converge, QEMU's parameters): a guest
 * that dirties the disks faster than the migration sends them is slowed
 * down until the migration can finish.  QEMU withholds a percentage of
 * the vCPUs' time; blkmig withholds that percentage of the guest's write
 * throughput: once throttled, guest writes (built-in workload, NBD, any
 * writer of a migrating drive) together get (100 - percent)% of the rate
 * they had when the throttle began, through a token bucket.
 *
 * QEMU's rule, checked once a period of at least a second is over (QEMU
 * checks at each sync of its dirty bitmap, at most once a second; a pass
 * over a disk takes far longer than one over RAM, so blkmig checks by the
 * clock, the bulk copy included): when the guest wrote more than
 * throttle-trigger-threshold percent of the bytes sent in the period, for
 * the second time, the throttle starts at cpu-throttle-initial or rises
 * by cpu-throttle-increment, up to max-cpu-throttle.  A period at whose
 * end the switchover still waited for less data to move (its expected
 * downtime, fixed costs included, did not fit downtime-limit) counts the
 * same, so the throttle keeps rising until the estimate fits.  It is
 * lifted when the guest stops for the switchover and when the migration
 * ends. */
#include "block-internal.h"
#include "migration/migration.h"
#include "migration/options.h"

#define PERIOD_US G_USEC_PER_SEC
/* The longest one write is held back, and the most a bucket owes: a
 * large write at a low rate must not stall the guest for minutes. */
#define MAX_HOLD_US G_USEC_PER_SEC
/* Bucket depth: a tenth of a second's worth. */
#define DEPTH_DIVISOR 10
/* The least rate the throttle leaves a guest. */
#define MIN_RATE 4096

struct BlkConverge {
    /* Migration thread only. */
    gint64 period_start_us;
    uint64_t period_written;    /* guest bytes written when the period began */
    uint64_t period_sent;       /* bytes sent when it began */
    unsigned high_count;        /* periods over the threshold, as QEMU counts */
    uint64_t base_rate;         /* guest bytes/s when the throttle began */
    /* Under lock: */
    GMutex lock;
    GCond cond;                 /* lifted */
    uint64_t percentage;        /* withheld; 0: not throttling */
    uint64_t rate;              /* allowed guest bytes/s while throttling */
    double tokens;
    gint64 refill_us;
    bool lifted;
};

BlkConverge *blk_converge_new(void)
{
    BlkConverge *c = g_new0(BlkConverge, 1);

    g_mutex_init(&c->lock);
    g_cond_init(&c->cond);
    return c;
}

void blk_converge_free(BlkConverge *c)
{
    if (c) {
        g_cond_clear(&c->cond);
        g_mutex_clear(&c->lock);
        g_free(c);
    }
}

/* Start or raise the throttle; GUEST_RATE is what the guest wrote per
 * second in the period just over. */
static void raise_throttle(BlkConverge *c, uint64_t guest_rate)
{
    MigrationParameters p;
    uint64_t percent, rate;

    mig_params_get(&p);
    g_mutex_lock(&c->lock);
    if (c->percentage == 0) {
        c->base_rate = MAX(guest_rate, MIN_RATE);
        c->tokens = 0;
        c->refill_us = g_get_monotonic_time();
        percent = MIN(p.cpu_throttle_initial, p.max_cpu_throttle);
    } else {
        percent = MIN(c->percentage + p.cpu_throttle_increment, p.max_cpu_throttle);
    }
    c->percentage = percent;
    c->rate = rate = MAX(c->base_rate * (100 - percent) / 100, MIN_RATE);
    g_mutex_unlock(&c->lock);
    g_message("auto-converge: guest writes throttled by %" G_GUINT64_FORMAT
              "%% (to %.1f MiB/s)", percent, rate / 1048576.0);
}

/* Over a period: the guest wrote DIRTIED bytes while SENT bytes went out. */
static void check_period(BlkConverge *c, uint64_t dirtied, uint64_t sent, gint64 elapsed_us)
{
    MigrationParameters p;
    bool high;

    mig_params_get(&p);
    high = dirtied > sent * p.throttle_trigger_threshold / 100 ||
           (dirtied > 0 && migration_switchover_waits_for_data());
    if (high && ++c->high_count >= 2) {
        c->high_count = 0;
        raise_throttle(c, dirtied * (double)G_USEC_PER_SEC / elapsed_us);
    }
}

void blk_converge_tick(BlkConverge *c, uint64_t written, uint64_t transferred)
{
    gint64 now = g_get_monotonic_time();
    gint64 elapsed = now - c->period_start_us;
    uint64_t dirtied = written - c->period_written;
    uint64_t sent = transferred - c->period_sent;
    bool lifted;

    if (c->period_start_us && elapsed < PERIOD_US) {
        return;
    }
    g_mutex_lock(&c->lock);
    lifted = c->lifted;
    g_mutex_unlock(&c->lock);
    if (c->period_start_us && !lifted && mig_cap_enabled(MIG_CAP_AUTO_CONVERGE)) {
        check_period(c, dirtied, sent, elapsed);
    }
    c->period_start_us = now;
    c->period_written = written;
    c->period_sent = transferred;
}

/* c->lock held: tokens earned since the last refill, at most a bucket. */
static void refill_locked(BlkConverge *c, gint64 now)
{
    double depth = (double)c->rate / DEPTH_DIVISOR;

    c->tokens = MIN(c->tokens + (double)(now - c->refill_us) * c->rate / G_USEC_PER_SEC, depth);
    c->refill_us = now;
}

void blk_converge_throttle(BlkConverge *c, uint64_t len)
{
    gint64 now = g_get_monotonic_time();
    gint64 deadline;

    g_mutex_lock(&c->lock);
    if (c->percentage == 0 || c->lifted) {
        g_mutex_unlock(&c->lock);
        return;
    }
    refill_locked(c, now);
    c->tokens = MAX(c->tokens - (double)len, -(double)c->rate * MAX_HOLD_US / G_USEC_PER_SEC);
    if (c->tokens < 0) {
        deadline = now + (gint64)(-c->tokens * G_USEC_PER_SEC / c->rate);
        while (!c->lifted && g_cond_wait_until(&c->cond, &c->lock, deadline)) {
        }
    }
    g_mutex_unlock(&c->lock);
}

void blk_converge_lift(BlkConverge *c)
{
    g_mutex_lock(&c->lock);
    c->lifted = true;
    c->percentage = 0;
    g_cond_broadcast(&c->cond);
    g_mutex_unlock(&c->lock);
}

uint64_t blk_converge_percentage(BlkConverge *c)
{
    uint64_t percent;

    g_mutex_lock(&c->lock);
    percent = c->percentage;
    g_mutex_unlock(&c->lock);
    return percent;
}
