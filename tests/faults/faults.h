/* The fault-injection suite (tests/faults): what its files share.
 *
 *   test-faults.c   the scenarios, the loop over them, the verdict
 *   fault-net.c     the two network namespaces, the veth pair between
 *                   them, the tun pair behind the packet relay, tc
 *   fault-relay.c   the packet relay: IP packets between the tun pair,
 *                   dropped, delayed, reordered, duplicated or corrupted
 *   fault-run.c     one run: daemons, a migration, the faults injected
 *                   into it, how both sides ended and what that means
 *   fault-table.c   the outcomes counted per fault kind, and the table */
#ifndef TESTS_FAULTS_H
#define TESTS_FAULTS_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "../qtest/migration-framework.h"

/* ---- the packet relay (fault-relay.c) ---- */

/* What the relay does to each packet, in both directions.  Probabilities
 * are per packet, 0..1. */
typedef struct RelayFaults {
    double loss;            /* dropped */
    double duplicate;       /* sent twice */
    double reorder;         /* held back by reorder_ms, so later ones pass it */
    double corrupt;         /* one bit flipped in the TCP header or payload
                             * (TCP's checksum catches it: a loss to TCP) */
    double corrupt_payload; /* one payload bit flipped and the TCP checksum
                             * fixed: the corruption reaches the peer */
    unsigned delay_ms;      /* every packet, plus up to jitter_ms */
    unsigned jitter_ms;
    unsigned reorder_ms;
    bool blackhole;         /* every packet dropped */
} RelayFaults;

typedef struct RelayStats {
    uint64_t forwarded, dropped, duplicated, reordered, corrupted;
} RelayStats;

typedef struct Relay Relay;

/* Relay packets between the two tun devices FD_A and FD_B (IFF_TUN |
 * IFF_NO_PI) on a thread of its own, faithfully until told otherwise. */
Relay *relay_start(int fd_a, int fd_b, uint32_t seed);
void relay_set_faults(Relay *r, const RelayFaults *f);
RelayStats relay_stats(Relay *r);
/* Stops the thread and closes both fds (the tun devices go with them). */
void relay_stop(Relay *r);

/* ---- the network (fault-net.c) ---- */

typedef struct FaultNet {
    char *ns[2];            /* [0] the source's namespace, [1] the destination's */
    char *prefix[2];        /* "ip netns exec NS" */
    char *veth[2];          /* the veth pair's ends, [0] in ns[0] */
    char *veth_addr[2];
    char *tun_addr[2];      /* the tun pair's addresses: through the relay */
    bool have_netem;        /* the kernel has netem: packet faults use it */
    Relay *relay;           /* without netem: the packet path */
} FaultNet;

/* NULL after a TAP skip saying why (not root, no ip(8), no tun). */
FaultNet *fault_net_new(void);
void fault_net_free(FaultNet *n);
/* The veth pair's end on SIDE (0 source, 1 destination) up or down. */
bool fault_net_link(FaultNet *n, int side, bool up);
/* A tbf rate limit of RATE_KBIT on the egress of both veth ends; 0
 * removes it. */
bool fault_net_rate(FaultNet *n, unsigned rate_kbit);
/* Packet faults on the packet path (netem on the veth pair where the
 * kernel has it, else the relay); all zero heals it. */
bool fault_net_packets(FaultNet *n, const RelayFaults *f);
/* The address a destination listens on for a migration over the direct
 * veth link (PACKET false) or over the packet path (PACKET true). */
const char *fault_net_dst_addr(FaultNet *n, bool packet);

/* ---- one run (fault-run.c) ---- */

typedef enum FaultKind {
    FAULT_LINK_DOWN,
    FAULT_LOSS,
    FAULT_DELAY,
    FAULT_REORDER,
    FAULT_DUPLICATE,
    FAULT_CORRUPT,
    FAULT_CORRUPT_PAYLOAD,
    FAULT_RATE,
    FAULT_KILL_SRC,
    FAULT_KILL_DST,
    FAULT_STOP_SRC,
    FAULT_STOP_DST,
    FAULT_DISK_FULL,
    FAULT__MAX
} FaultKind;

const char *fault_kind_name(FaultKind k);
/* Where and how the kind is injected, for the table's legend. */
const char *fault_kind_level(FaultKind k, const FaultNet *n);

/* How a run ended.  The first three are what the suite accepts. */
typedef enum Outcome {
    OUT_COMPLETED,          /* completed on both sides, disks identical */
    OUT_FAILED_SAFE,        /* failed, said why on each side that lives;
                             * the source guest runs, the destination's
                             * never started */
    OUT_RESUMED,            /* paused, resumed, completed, identical
                             * (block-resume) */
    OUT_ACK_LOST,           /* everything sent, the acknowledgement lost:
                             * the source guest stays paused, as README
                             * says; the destination, if it runs, holds
                             * the source's disk */
    OUT_WRONG_DISK,         /* a destination guest runs on a disk that is
                             * not the source's */
    OUT_UNSAFE_START,       /* a destination guest runs while the source
                             * guest runs too, or without completing */
    OUT_UNTRUTHFUL,         /* a status that is not what happened */
    OUT_HUNG,               /* a side never ended its migration */
    OUT_CRASHED,            /* a daemon died that the run did not kill */
    OUT__MAX
} Outcome;

const char *outcome_name(Outcome o);
bool outcome_is_accepted(Outcome o);

typedef struct Scenario {
    FaultKind kind;
    unsigned injections;    /* faults injected into the one migration */
    unsigned hold_ms;       /* how long each lasts */
    double strength;        /* kind-specific: probability, delay, rate... */
    bool late;              /* at switchover (source guest stopped, the
                             * rest being sent and acknowledged), not in
                             * the bulk phase */
} Scenario;

typedef struct RunResult {
    Outcome outcome;
    unsigned injected;      /* faults that hit a running migration */
    unsigned missed;        /* faults that came after it ended */
    char *detail;           /* both sides' status and error, for the log */
} RunResult;

/* Migrate a live disk from a source in ns[0] to a destination in ns[1]
 * while injecting SC's faults; SEED varies disk, workload and timing. */
RunResult fault_run(FaultNet *n, const Scenario *sc, uint32_t seed);
void run_result_clear(RunResult *r);

/* ---- the table (fault-table.c) ---- */

typedef struct Tally {
    unsigned runs[FAULT__MAX];
    unsigned injected[FAULT__MAX];
    unsigned missed[FAULT__MAX];
    unsigned outcomes[FAULT__MAX][OUT__MAX];
    double seconds;
} Tally;

void tally_add(Tally *t, const Scenario *sc, const RunResult *r);
unsigned tally_total_injected(const Tally *t);
unsigned tally_count(const Tally *t, Outcome o);
/* The table as text lines (caller frees). */
char *tally_table(const Tally *t, const FaultNet *n);

#endif
