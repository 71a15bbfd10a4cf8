/* The passes over the disks of an outgoing migration: pass 1 is the bulk
 * copy, then each walk over the dirty bitmaps is one more (walks that
 * begin less than a second after the pass did count as the same pass, so
 * a migration with little left dirty does not count thousands), and the
 * bytes per second the guest wrote during each.  The caller serialises
 * (save.c: its lock) and announces a new pass (MIGRATION_PASS). */
#include "block-internal.h"

#define MIN_PASS_US G_USEC_PER_SEC

void blk_passes_start(BlkPasses *p, uint64_t written)
{
    gint64 now = g_get_monotonic_time();

    *p = (BlkPasses){ .pass = 1, .start_us = now, .pass_start_us = now,
                      .written_at_start = written };
}

bool blk_passes_walk(BlkPasses *p, uint64_t written, bool force)
{
    gint64 now = g_get_monotonic_time();
    gint64 elapsed = now - p->pass_start_us;

    if (!force && elapsed < MIN_PASS_US) {
        return false;
    }
    if (elapsed > 0) {
        p->dirty_rate = (written - p->written_at_start) * (double)G_USEC_PER_SEC / elapsed;
        p->rate_known = true;
    }
    p->pass++;
    p->pass_start_us = now;
    p->written_at_start = written;
    return true;
}

uint64_t blk_passes_dirty_rate(const BlkPasses *p, uint64_t written)
{
    gint64 elapsed = g_get_monotonic_time() - p->start_us;

    if (p->rate_known) {
        return p->dirty_rate;
    }
    return elapsed > 0 ? written * (double)G_USEC_PER_SEC / elapsed : 0;
}
