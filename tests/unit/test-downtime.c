/* migration/downtime.c: the expected downtime of a switchover adds the
 * fixed costs (the destination's quickest flush, the round trip, the last
 * overrun, fading while the migration waits on it) to the time to move
 * what is left and write it back, and is unknown until the destination's
 * flush was measured. */
#include <glib.h>

#include "../../migration/migration-internal.h"

#define MIB (UINT64_C(1) << 20)

/* Nothing left to move: the fixed costs alone, rounded up to ms. */
static void test_fixed_only(void)
{
    DowntimeInputs in = { .bandwidth = 128 * MIB, .flush_us = 400000, .rtt_us = 1500,
                          .overrun_ms = 20 };
    DowntimeEstimate e;

    downtime_estimate(&in, &e);
    g_assert_true(e.known);
    g_assert_cmpuint(e.data_ms, ==, 0);
    g_assert_cmpuint(e.flush_ms, ==, 400);
    g_assert_cmpuint(e.fixed_ms, ==, 400 + 2 + 20);
    g_assert_cmpuint(e.total_ms, ==, 422);
}

/* The slower of sending what is left and the destination making it and
 * what it holds unflushed durable. */
static void test_data(void)
{
    DowntimeInputs in = { .to_send = 64 * MIB, .not_durable = 32 * MIB,
                          .bandwidth = 128 * MIB, .flush_us = 30000 };
    DowntimeEstimate e;

    downtime_estimate(&in, &e);
    g_assert_cmpuint(e.data_ms, ==, 500 + 250);     /* no destination rate: in turn */
    in.dest_rate = 256 * MIB;
    downtime_estimate(&in, &e);
    g_assert_cmpuint(e.data_ms, ==, 500);           /* sending is slower */
    in.dest_rate = 64 * MIB;
    downtime_estimate(&in, &e);
    g_assert_cmpuint(e.data_ms, ==, 1500);          /* the destination is */
    g_assert_cmpuint(e.total_ms, ==, 1500 + 30);
}

/* The final flush writes back all that is not durable yet at the rate of
 * the recent flushes, never quicker than the quickest of them. */
static void test_flush_rate(void)
{
    DowntimeInputs in = { .to_send = 0, .not_durable = 32 * MIB, .bandwidth = 128 * MIB,
                          .dest_rate = 128 * MIB, .flush_us = 50000, .flush_rate = 64 * MIB };
    DowntimeEstimate e;

    downtime_estimate(&in, &e);
    g_assert_cmpuint(e.flush_ms, ==, 500);
    g_assert_cmpuint(e.fixed_ms, ==, 50);
    g_assert_cmpuint(e.data_ms, ==, 250 + 450);
    in.not_durable = MIB;
    downtime_estimate(&in, &e);
    g_assert_cmpuint(e.flush_ms, ==, 50);
    g_assert_cmpuint(e.total_ms, ==, 8 + 50);
}

/* A destination that reports its flushes but has not yet: unknown, and
 * so is anything to move without a measured bandwidth. */
static void test_unknown(void)
{
    DowntimeInputs in = { .bandwidth = 128 * MIB, .await_flush_report = true };
    DowntimeEstimate e;

    downtime_estimate(&in, &e);
    g_assert_false(e.known);
    in = (DowntimeInputs){ .to_send = MIB };
    downtime_estimate(&in, &e);
    g_assert_false(e.known);
    in.to_send = 0;
    downtime_estimate(&in, &e);
    g_assert_true(e.known);
    g_assert_cmpuint(e.total_ms, ==, 0);
}

/* The last switchover's overrun counts in full until the migration has
 * waited on it for DOWNTIME_OVERRUN_HALVING_S, then halves every as long:
 * a 2 s stall keeps a 300 ms limit from being met for 6 s, not forever. */
static void test_overrun_fades(void)
{
    static const struct {
        uint64_t waited_ms, counted_ms;
    } steps[] = { { 0, 2000 }, { 1999, 2000 }, { 2000, 1000 }, { 5999, 500 },
                  { 6000, 250 }, { 3600 * 1000, 0 } };
    DowntimeInputs in = { .bandwidth = 128 * MIB, .flush_us = 10000, .overrun_ms = 2000 };
    DowntimeEstimate e;

    g_assert_cmpint(DOWNTIME_OVERRUN_HALVING_S, ==, 2);
    for (size_t i = 0; i < G_N_ELEMENTS(steps); i++) {
        in.overrun_waited_us = steps[i].waited_ms * 1000;
        downtime_estimate(&in, &e);
        g_assert_cmpuint(e.overrun_ms, ==, steps[i].counted_ms);
        g_assert_cmpuint(e.fixed_ms, ==, 10 + steps[i].counted_ms);
        g_assert_cmpuint(e.total_ms, ==, 10 + steps[i].counted_ms);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/downtime/fixed-only", test_fixed_only);
    g_test_add_func("/downtime/data", test_data);
    g_test_add_func("/downtime/flush-rate", test_flush_rate);
    g_test_add_func("/downtime/unknown", test_unknown);
    g_test_add_func("/downtime/overrun-fades", test_overrun_fades);
    return g_test_run();
}
