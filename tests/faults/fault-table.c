/* The names of fault kinds and outcomes, what each kind means at the
 * level it is injected, and the table that counts outcomes per kind. */
#include <string.h>

#include "faults.h"

static const char *const kind_names[FAULT__MAX] = {
    [FAULT_LINK_DOWN] = "link-down",
    [FAULT_LOSS] = "loss",
    [FAULT_DELAY] = "delay",
    [FAULT_REORDER] = "reorder",
    [FAULT_DUPLICATE] = "duplicate",
    [FAULT_CORRUPT] = "corrupt",
    [FAULT_CORRUPT_PAYLOAD] = "corrupt-payload",
    [FAULT_RATE] = "rate",
    [FAULT_KILL_SRC] = "kill-src",
    [FAULT_KILL_DST] = "kill-dst",
    [FAULT_STOP_SRC] = "stop-src",
    [FAULT_STOP_DST] = "stop-dst",
    [FAULT_DISK_FULL] = "disk-full",
};

/* Where each kind is injected and what it is there. */
static const char *const kind_levels[FAULT__MAX] = {
    [FAULT_LINK_DOWN] = "veth end taken down (ip link), then up",
    [FAULT_LOSS] = "IP packets dropped at random, both directions",
    [FAULT_DELAY] = "IP packets delayed, with jitter (which also reorders)",
    [FAULT_REORDER] = "IP packets held back 20 ms so later ones overtake them",
    [FAULT_DUPLICATE] = "IP packets sent twice",
    [FAULT_CORRUPT] = "a bit flipped in TCP header or payload; TCP's checksum drops it",
    [FAULT_CORRUPT_PAYLOAD] = "a payload bit flipped, TCP checksum fixed: reaches the peer",
    [FAULT_RATE] = "tbf rate limit on both veth ends (tc)",
    [FAULT_KILL_SRC] = "SIGKILL of the source blkmigd",
    [FAULT_KILL_DST] = "SIGKILL of the destination blkmigd",
    [FAULT_STOP_SRC] = "SIGSTOP of the source blkmigd, then SIGCONT",
    [FAULT_STOP_DST] = "SIGSTOP of the destination blkmigd, then SIGCONT",
    [FAULT_DISK_FULL] = "destination disk on a tmpfs smaller than the data (or not)",
};

static const char *const outcome_names[OUT__MAX] = {
    [OUT_COMPLETED] = "completed",
    [OUT_FAILED_SAFE] = "failed-safe",
    [OUT_RESUMED] = "resumed",
    [OUT_ACK_LOST] = "ack-lost",
    [OUT_WRONG_DISK] = "WRONG-DISK",
    [OUT_UNSAFE_START] = "UNSAFE-START",
    [OUT_UNTRUTHFUL] = "UNTRUTHFUL",
    [OUT_HUNG] = "HUNG",
    [OUT_CRASHED] = "CRASHED",
};

const char *fault_kind_name(FaultKind k)
{
    return kind_names[k];
}

const char *fault_kind_level(FaultKind k, const FaultNet *n)
{
    bool packet = k >= FAULT_LOSS && k <= FAULT_CORRUPT_PAYLOAD;

    if (packet && n->have_netem) {
        return "netem on both veth ends";
    }
    return kind_levels[k];
}

const char *outcome_name(Outcome o)
{
    return outcome_names[o];
}

/* ack-lost is accepted: README's "the destination may be running the
 * guest, so the source guest stays stopped" (the disks are checked). */
bool outcome_is_accepted(Outcome o)
{
    return o == OUT_COMPLETED || o == OUT_FAILED_SAFE || o == OUT_RESUMED ||
           o == OUT_ACK_LOST;
}

void tally_add(Tally *t, const Scenario *sc, const RunResult *r)
{
    t->runs[sc->kind]++;
    t->injected[sc->kind] += r->injected;
    t->missed[sc->kind] += r->missed;
    t->outcomes[sc->kind][r->outcome]++;
}

unsigned tally_total_injected(const Tally *t)
{
    unsigned n = 0;

    for (int k = 0; k < FAULT__MAX; k++) {
        n += t->injected[k];
    }
    return n;
}

unsigned tally_count(const Tally *t, Outcome o)
{
    unsigned n = 0;

    for (int k = 0; k < FAULT__MAX; k++) {
        n += t->outcomes[k][o];
    }
    return n;
}

static void table_row(GString *out, const char *name, unsigned runs, unsigned injected,
                      unsigned missed, const unsigned *outcomes)
{
    g_string_append_printf(out, "%-16s %5u %6u %6u", name, runs, injected, missed);
    for (int o = 0; o < OUT__MAX; o++) {
        g_string_append_printf(out, " %*u", (int)MAX(strlen(outcome_names[o]), 4),
                               outcomes[o]);
    }
    g_string_append_c(out, '\n');
}

char *tally_table(const Tally *t, const FaultNet *n)
{
    GString *out = g_string_new(NULL);
    unsigned total[OUT__MAX] = { 0 }, runs = 0, missed = 0;

    g_string_append_printf(out, "%-16s %5s %6s %6s", "fault", "runs", "faults", "missed");
    for (int o = 0; o < OUT__MAX; o++) {
        g_string_append_printf(out, " %4s", outcome_names[o]);
    }
    g_string_append_c(out, '\n');
    for (int k = 0; k < FAULT__MAX; k++) {
        if (t->runs[k]) {
            table_row(out, kind_names[k], t->runs[k], t->injected[k], t->missed[k],
                      t->outcomes[k]);
        }
        runs += t->runs[k];
        missed += t->missed[k];
        for (int o = 0; o < OUT__MAX; o++) {
            total[o] += t->outcomes[k][o];
        }
    }
    table_row(out, "total", runs, tally_total_injected(t), missed, total);
    g_string_append_printf(out, "%.0f s; faults: injected while the migration ran; "
                           "missed: it had ended first\n", t->seconds);
    for (int k = 0; k < FAULT__MAX; k++) {
        if (t->runs[k]) {
            g_string_append_printf(out, "  %-16s %s\n", kind_names[k], fault_kind_level(k, n));
        }
    }
    return g_string_free(out, FALSE);
}
