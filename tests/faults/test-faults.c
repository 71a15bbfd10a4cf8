/* Fault injection: live migrations between two blkmigd daemons in
 * network namespaces of their own, with faults injected while they run:
 * the link down and up, packet loss, delay, reordering, duplication and
 * corruption, tbf rate limits, SIGKILL and SIGSTOP of either daemon, a
 * destination file system that fills up; the source guest's workload
 * writes all along.  Every run must end completed with identical disks,
 * or failed with a truthful status on both sides, the source guest
 * running and the destination guest never started (or, with
 * block-resume, resumed and identical).  A table counts the outcomes per
 * fault kind.
 *
 * `make check` runs the quick subset (one run of six kinds, under a
 * minute); `make faults` runs `-m slow`: rounds of every scenario until
 * at least FAULTS_TARGET faults were injected into running migrations
 * (FAULT_SEED varies the runs, FAULT_ROUNDS fixes their number,
 * FAULT_ONLY picks kinds, see wanted()).  Needs
 * root (ip netns, tc, mount); skips otherwise.  Scratch files go to
 * /dev/shm unless TMPDIR is set. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "faults.h"

#define FAULTS_TARGET 200
#define MAX_ROUNDS 10

/* kind, injections per run, hold (ms), strength (see fault-run.c) */
static const Scenario full[] = {
    { FAULT_LINK_DOWN, 2, 1000, 0, false },     /* under link-timeout: must complete */
    { FAULT_LINK_DOWN, 1, 6000, 0, false },     /* over it: both fail */
    { FAULT_LOSS, 3, 1500, 0.05, false },
    { FAULT_LOSS, 2, 2000, 0.30, false },
    { FAULT_DELAY, 3, 1500, 100, false },
    { FAULT_DELAY, 2, 2000, 400, false },
    { FAULT_REORDER, 3, 1500, 0.20, false },
    { FAULT_DUPLICATE, 3, 1500, 0.20, false },
    { FAULT_DUPLICATE, 3, 1500, 0.50, false },
    { FAULT_CORRUPT, 3, 1500, 0.05, false },
    { FAULT_CORRUPT, 3, 1500, 0.20, false },
    { FAULT_CORRUPT_PAYLOAD, 2, 1000, 0.01, false },
    { FAULT_RATE, 3, 1500, 8000, false },
    { FAULT_RATE, 2, 2000, 800, false },
    { FAULT_KILL_SRC, 1, 0, 0, false },
    { FAULT_KILL_DST, 1, 0, 0, false },
    { FAULT_STOP_SRC, 2, 1000, 0, false },
    { FAULT_STOP_SRC, 1, 6000, 0, false },
    { FAULT_STOP_DST, 2, 1000, 0, false },
    { FAULT_STOP_DST, 1, 6000, 0, false },
    { FAULT_DISK_FULL, 1, 0, 0.3, false },
    { FAULT_DISK_FULL, 1, 0, 0.8, false },
    { FAULT_DISK_FULL, 1, 0, 1.5, false },      /* room enough: must complete */
    /* At switchover: the guest handed over, the acknowledgement due. */
    { FAULT_LINK_DOWN, 1, 6000, 0, true },
    { FAULT_KILL_SRC, 1, 0, 0, true },
    { FAULT_KILL_DST, 1, 0, 0, true },
    { FAULT_STOP_SRC, 1, 6000, 0, true },
    { FAULT_STOP_DST, 1, 6000, 0, true },
};

static const Scenario quick[] = {
    { FAULT_LINK_DOWN, 1, 1000, 0, false },
    { FAULT_DUPLICATE, 1, 1000, 0.20, false },
    { FAULT_KILL_DST, 1, 0, 0, false },
    { FAULT_STOP_SRC, 1, 1000, 0, false },
    { FAULT_DISK_FULL, 1, 0, 0.3, false },
    { FAULT_CORRUPT_PAYLOAD, 1, 1000, 0.01, false },
};

static FaultNet *net;
static Tally tally;

/* Payload corruption that TCP cannot see is only caught by end-to-end
 * checksums (issue 13, block-checksum): until the daemon has them such a
 * run could only end in a wrong disk. */
static bool daemon_has_checksums(void)
{
    QTestDaemon *d = qtest_daemon_start("caps", "%s", "");
    JsonNode *caps = qtest_qmp_ok(d, "{\"execute\": \"query-migrate-capabilities\"}");
    g_autofree char *text = json_to_string(caps, FALSE);

    json_node_unref(caps);
    qtest_daemon_kill(d);
    return strstr(text, "\"block-checksum\"") != NULL;
}

/* FAULT_ONLY=KIND[,KIND...] (names as in the table; "late" for the
 * switchover scenarios) runs only those. */
static bool wanted(const Scenario *sc)
{
    const char *only = g_getenv("FAULT_ONLY");
    g_auto(GStrv) names = only ? g_strsplit(only, ",", -1) : NULL;

    return !only || g_strv_contains((const char *const *)names, fault_kind_name(sc->kind)) ||
           (sc->late && g_strv_contains((const char *const *)names, "late"));
}

static void run_one(const Scenario *sc, uint32_t seed)
{
    gint64 start = g_get_monotonic_time();
    RunResult r = fault_run(net, sc, seed);

    g_test_message("%-16s x%u%s seed %-5u %-12s %4.1f s  %s", fault_kind_name(sc->kind),
                   sc->injections, sc->late ? " late" : "     ", seed, outcome_name(r.outcome),
                   (g_get_monotonic_time() - start) / 1e6, r.detail);
    tally_add(&tally, sc, &r);
    run_result_clear(&r);
}

static void run_rounds(const Scenario *list, size_t n, unsigned rounds, unsigned target)
{
    uint32_t seed = (uint32_t)g_ascii_strtoull(g_getenv("FAULT_SEED") ?: "1", NULL, 10);
    bool checksums = daemon_has_checksums();

    for (unsigned round = 0; round < rounds; round++) {
        for (size_t i = 0; i < n; i++) {
            if ((list[i].kind == FAULT_CORRUPT_PAYLOAD && !checksums) || !wanted(&list[i])) {
                continue;
            }
            run_one(&list[i], seed++);
        }
        if (target && tally_total_injected(&tally) >= target) {
            break;
        }
    }
    if (!checksums) {
        g_test_message("corrupt-payload: not run, the daemon has no block-checksum");
    }
}

static void report(void)
{
    g_autofree char *table = tally_table(&tally, net);
    g_auto(GStrv) lines = g_strsplit(table, "\n", -1);

    for (char **l = lines; *l; l++) {
        if (**l) {
            g_test_message("%s", *l);
        }
    }
}

static void test_faults(void)
{
    const char *rounds_env = g_getenv("FAULT_ROUNDS");
    bool slow = g_test_slow();
    unsigned rounds = rounds_env ? (unsigned)atoi(rounds_env) : slow ? MAX_ROUNDS : 1;
    gint64 start = g_get_monotonic_time();

    net = fault_net_new();
    if (!net) {
        return;
    }
    if (slow) {
        run_rounds(full, G_N_ELEMENTS(full), rounds, rounds_env ? 0 : FAULTS_TARGET);
    } else {
        run_rounds(quick, G_N_ELEMENTS(quick), rounds, 0);
    }
    tally.seconds = (g_get_monotonic_time() - start) / 1e6;
    report();
    for (int o = 0; o < OUT__MAX; o++) {
        if (!outcome_is_accepted(o) && tally_count(&tally, o)) {
            g_error("%u runs ended %s (see the runs above)", tally_count(&tally, o),
                    outcome_name(o));
        }
    }
    if (slow && !rounds_env) {
        g_assert_cmpuint(tally_total_injected(&tally), >=, FAULTS_TARGET);
    }
}

int main(int argc, char **argv)
{
    int ret;

    if (!g_getenv("TMPDIR") && g_file_test("/dev/shm", G_FILE_TEST_IS_DIR)) {
        g_setenv("TMPDIR", "/dev/shm", TRUE);
    }
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/faults/migration", test_faults);
    ret = g_test_run();
    fault_net_free(net);
    return ret;
}
