/* The downtime a switchover would cost if the guest stopped now: the
 * figure the outgoing migration compares with downtime-limit before it
 * stops the guest, and the one query-migrate reports as
 * expected-downtime.
 *
 * Two parts.  Moving the data: what is left to send goes at the
 * migration's measured bandwidth, and the destination makes it and
 * whatever it has not made durable yet durable at its own measured rate
 * (the slower of the two counts); its final flush, which comes after the
 * last byte, then writes back everything not durable there yet, at the
 * rate its recent flushes did (as it reports them).  Fixed costs, which
 * no amount of waiting makes smaller: that flush takes at least as long
 * as the quickest of the recent ones, the acknowledgement takes a round
 * trip (the kernel's smoothed RTT of the connection), and the last
 * completed switchover of this process may have taken longer than its
 * own estimate (stopping the guest, the last scan of the dirty bitmaps,
 * whatever else was not foreseen).
 *
 * That overrun counts again, in full until everything else in the
 * estimate first fits downtime-limit; from then on, while the migration
 * waits on it, it halves every DOWNTIME_OVERRUN_HALVING_S seconds.
 * A cost that recurs still makes the next migration wait for less data
 * to be left, and its switchover measures the overrun afresh; a one-off
 * stall (a 2 s hiccup) delays the next migration by a few seconds
 * instead of holding every later one back for the daemon's life. */
#include "migration-internal.h"

/* ms to move BYTES at RATE bytes/s. */
static uint64_t ms_at(uint64_t bytes, uint64_t rate)
{
    return (uint64_t)((double)bytes * 1000 / rate + 0.999);
}

/* The quickest recent flush, which the final one takes at least. */
static uint64_t least_flush_ms(const DowntimeInputs *in)
{
    return (in->flush_us + 999) / 1000;
}

/* The last switchover's overrun, halved for every
 * DOWNTIME_OVERRUN_HALVING_S seconds waited on it. */
static uint64_t carried_overrun_ms(const DowntimeInputs *in)
{
    uint64_t halvings = in->overrun_waited_us / (DOWNTIME_OVERRUN_HALVING_S * G_USEC_PER_SEC);

    return halvings < 64 ? in->overrun_ms >> halvings : 0;
}

/* Sending what is left, and the destination making it all durable. */
static uint64_t data_ms(const DowntimeInputs *in)
{
    uint64_t ms = in->to_send ? ms_at(in->to_send, in->bandwidth) : 0;

    if (in->dest_rate) {
        ms = MAX(ms, ms_at(in->to_send + in->not_durable, in->dest_rate));
    } else if (in->not_durable) {
        ms += ms_at(in->not_durable, in->bandwidth);
    }
    return ms;
}

/* How much longer than its quickest flush the destination's final flush
 * takes to write back everything not durable there yet, at the rate its
 * recent flushes did. */
static uint64_t flush_extra_ms(const DowntimeInputs *in)
{
    uint64_t least = least_flush_ms(in);
    uint64_t unflushed = in->to_send + in->not_durable;
    uint64_t ms = in->flush_rate && unflushed ? ms_at(unflushed, in->flush_rate) : 0;

    return ms > least ? ms - least : 0;
}

void downtime_estimate(const DowntimeInputs *in, DowntimeEstimate *out)
{
    bool moving = in->to_send || in->not_durable;
    uint64_t least = least_flush_ms(in);

    *out = (DowntimeEstimate){ 0 };
    /* A destination that reports its flushes has not flushed yet: the
     * final flush's cost is unknown, and so is the downtime. */
    out->known = !(in->await_flush_report || (moving && !in->bandwidth));
    out->overrun_ms = carried_overrun_ms(in);
    out->fixed_ms = least + (in->rtt_us + 999) / 1000 + out->overrun_ms;
    if (out->known) {
        uint64_t extra = flush_extra_ms(in);

        out->data_ms = data_ms(in) + extra;
        out->flush_ms = least + extra;
    }
    out->total_ms = out->data_ms + out->fixed_ms;
}
