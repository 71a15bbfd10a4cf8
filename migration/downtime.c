/* The downtime a switchover would cost if the guest stopped now: the
 * figure the outgoing migration compares with downtime-limit before it
 * stops the guest, and the one query-migrate reports as
 * expected-downtime.
 *
 * Two parts.  Moving the data: what is left to send goes at the
 * migration's measured bandwidth, and the destination makes it and
 * whatever it has not made durable yet durable at its own measured rate;
 * the slower of the two counts.  Fixed costs, which no amount of waiting
 * makes smaller: the destination's final flush, which comes after the
 * last byte (the quickest of its recent flushes, as it reports them), the
 * round trip until its acknowledgement (the kernel's smoothed RTT of the
 * connection), and what the last switchover of this process took beyond
 * its own estimate (stopping the guest, the last scan of the dirty
 * bitmaps, whatever else was not foreseen). */
#include "migration-internal.h"

/* ms to move BYTES at RATE bytes/s. */
static uint64_t ms_at(uint64_t bytes, uint64_t rate)
{
    return (uint64_t)((double)bytes * 1000 / rate + 0.999);
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

void downtime_estimate(const DowntimeInputs *in, DowntimeEstimate *out)
{
    bool moving = in->to_send || in->not_durable;

    *out = (DowntimeEstimate){ 0 };
    /* A destination that reports its flushes has not flushed yet: the
     * final flush's cost is unknown, and so is the downtime. */
    out->known = !(in->await_flush_report || (moving && !in->bandwidth));
    out->flush_ms = (in->flush_us + 999) / 1000;
    out->overrun_ms = in->overrun_ms;
    out->fixed_ms = out->flush_ms + (in->rtt_us + 999) / 1000 + in->overrun_ms;
    out->data_ms = out->known ? data_ms(in) : 0;
    out->total_ms = out->data_ms + out->fixed_ms;
}
