/* One fault run: a source blkmigd in ns[0] whose built-in workload
 * writes its disk, a destination in ns[1] waiting on an empty disk, a
 * migration between them (over the veth pair, or over the packet path
 * for packet faults), the scenario's faults injected while it runs, and
 * then how both sides ended and whether that is acceptable: completed
 * with identical disks; failed, truthfully, with the source guest
 * running and the destination's never started; or (block-resume)
 * paused, resumed and identical.  Anything else is a verdict against
 * blkmig: a wrong disk, a destination guest started on incomplete data
 * or beside a running source, an untruthful status, a hang. */
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "faults.h"
#include "qapi/qmp-client.h"

#define DISK_SIZE (32 * MIB)
#define PORT 4444
/* Short, so that a dead link fails a run in seconds, not minutes. */
#define LINK_TIMEOUT_S 3
/* Slow enough that the faults meet a running migration. */
#define BANDWIDTH (8 * MIB)
#define WORKLOAD_MIBS 2
/* Beyond any fault's hold plus link-timeout: a run that has not ended
 * by then hangs. */
#define END_TIMEOUT_S 120
/* block-resume: how long a paused source waits for the resume. */
#define RESUME_TIMEOUT_S 5
/* ...and how often the suite tries to reconnect it meanwhile (the link
 * may still be down). */
#define RESUME_RETRY_US (500 * 1000)
/* A destination that has not heard of the migration when the source
 * gave up is given this long to hear of it. */
#define DST_GRACE_US (2 * G_USEC_PER_SEC)
#define POLL_US (100 * 1000)
/* The switchover lasts about downtime-limit (300 ms): look often. */
#define SWITCHOVER_POLL_US (2 * 1000)

/* How one side ended. */
typedef struct SideEnd {
    bool alive;
    char *status;           /* "none" before any migration */
    char *error;            /* "" when none */
    char *runstate;
} SideEnd;

typedef struct Run {
    FaultNet *net;
    const Scenario *sc;
    GRand *rng;
    Migration m;
    bool dead[2];           /* [0] source, [1] destination: killed by the run */
    char *small_fs;         /* disk-full: the tmpfs the destination writes to */
    bool resume;            /* both sides offer block-resume */
    bool resumed;
    RunResult res;
} Run;

static QTestDaemon *side(Run *r, int i)
{
    return i ? r->m.dst : r->m.src;
}

/* ---- set-up ---- */

static bool packet_kind(FaultKind k)
{
    return k == FAULT_LOSS || k == FAULT_DELAY || k == FAULT_REORDER ||
           k == FAULT_DUPLICATE || k == FAULT_CORRUPT || k == FAULT_CORRUPT_PAYLOAD;
}

/* About half the disk in data, in runs of 256 KiB. */
static void make_disks(Run *r, uint32_t seed)
{
    r->m.src_disk = qtest_path("src.raw");
    qtest_disk_create(r->m.src_disk, DISK_SIZE);
    qtest_disk_scatter(r->m.src_disk, seed, DISK_SIZE / MIB * 2, 256 * KIB);
    r->m.dst_disk = r->small_fs ? g_build_filename(r->small_fs, "dst.raw", NULL)
                                : qtest_path("dst.raw");
    unlink(r->m.dst_disk);
}

/* Disk full: the destination's file system holds STRENGTH times the
 * source's data (less than 1: it fills up mid-way). */
static void mount_small_fs(Run *r, uint64_t data_bytes)
{
    uint64_t kib = (uint64_t)(data_bytes * r->sc->strength) / KIB;

    r->small_fs = qtest_path("small-fs");
    mkdir(r->small_fs, 0700);
    g_autofree char *opts = g_strdup_printf("size=%" G_GUINT64_FORMAT "k", MAX(kib, 64));
    if (mount("tmpfs", r->small_fs, "tmpfs", 0, opts) < 0) {
        g_error("mount tmpfs on %s: %s", r->small_fs, g_strerror(errno));
    }
}

static bool has_capability(QTestDaemon *d, const char *name)
{
    JsonNode *caps = qtest_qmp_ok(d, "{\"execute\": \"query-migrate-capabilities\"}");
    JsonArray *a = json_node_get_array(caps);
    bool found = false;

    for (guint i = 0; i < json_array_get_length(a) && !found; i++) {
        JsonObject *c = json_array_get_object_element(a, i);
        found = !strcmp(json_object_get_string_member(c, "capability"), name);
    }
    json_node_unref(caps);
    return found;
}

static void start_daemons(Run *r, uint32_t seed)
{
    const char *addr = fault_net_dst_addr(r->net, packet_kind(r->sc->kind));

    r->m.uri = g_strdup_printf("tcp:%s:%d", addr, PORT);
    r->m.dst = mf_start_dst_at(&r->m, r->net->prefix[1], "dst", DISK_SIZE, NULL);
    r->m.src = qtest_daemon_start_prefixed(r->net->prefix[0], "src",
                                           "--drive id=" MF_DRIVE_ID ",file=%s --workload drive="
                                           MF_DRIVE_ID ",rate=%d,seed=%u", r->m.src_disk,
                                           WORKLOAD_MIBS, seed);
    for (int i = 0; i < 2; i++) {
        qtest_set_params(side(r, i), "\"link-timeout\": %d", LINK_TIMEOUT_S);
    }
    qtest_set_caps(r->m.src, "block", "zero-blocks", NULL);
    if (has_capability(r->m.src, "block-checksum")) {
        qtest_set_caps(r->m.src, "block-checksum", NULL);
    }
    /* A third of the runs use multifd, which block-resume refuses. */
    r->resume = seed % 3 != 0 && has_capability(r->m.src, "block-resume") &&
                has_capability(r->m.dst, "block-resume");
    if (r->resume) {
        qtest_set_caps(r->m.src, "block-resume", NULL);
        qtest_set_caps(r->m.dst, "block-resume", NULL);
        qtest_set_params(r->m.src, "\"resume-timeout\": %d", RESUME_TIMEOUT_S);
    } else if (seed % 3 == 0) {
        qtest_set_caps(r->m.src, "multifd", NULL);
    }
    qtest_set_params(r->m.src, "\"max-bandwidth\": %" G_GUINT64_FORMAT, BANDWIDTH);
}

/* ---- one side's state ---- */

static void side_end_clear(SideEnd *e)
{
    g_free(e->status);
    g_free(e->error);
    g_free(e->runstate);
    memset(e, 0, sizeof(*e));
}

static void read_side(Run *r, int i, SideEnd *e)
{
    QTestDaemon *d = side(r, i);

    side_end_clear(e);
    e->alive = !r->dead[i] && qtest_daemon_alive(d);
    if (!e->alive) {
        e->status = g_strdup(r->dead[i] ? "dead" : "crashed");
        e->error = g_strdup("");
        e->runstate = g_strdup("dead");
        return;
    }
    JsonNode *info = qtest_query_migrate(d);
    JsonNode *status = qtest_json_get(info, "status");
    JsonNode *error = qtest_json_get(info, "error-desc");
    e->status = g_strdup(status ? json_node_get_string(status) : "none");
    e->error = g_strdup(error ? json_node_get_string(error) : "");
    e->runstate = qtest_runstate(d);
    json_node_unref(info);
}

static bool is_final(const char *status)
{
    return !strcmp(status, "completed") || !strcmp(status, "failed") ||
           !strcmp(status, "cancelled") || !strcmp(status, "dead") ||
           !strcmp(status, "crashed");
}

static bool source_running_migration(Run *r)
{
    SideEnd s = { 0 };
    bool running;

    read_side(r, 0, &s);
    running = s.alive && !is_final(s.status) && strcmp(s.status, "paused");
    side_end_clear(&s);
    return running;
}

/* ---- faults ---- */

static RelayFaults relay_faults(const Scenario *sc)
{
    RelayFaults f = { 0 };

    switch (sc->kind) {
    case FAULT_LOSS: f.loss = sc->strength; break;
    case FAULT_DELAY: f.delay_ms = (unsigned)sc->strength; f.jitter_ms = f.delay_ms / 2; break;
    case FAULT_REORDER: f.reorder = sc->strength; f.reorder_ms = 20; break;
    case FAULT_DUPLICATE: f.duplicate = sc->strength; break;
    case FAULT_CORRUPT: f.corrupt = sc->strength; break;
    case FAULT_CORRUPT_PAYLOAD: f.corrupt_payload = sc->strength; break;
    default: break;
    }
    return f;
}

static void signal_side(Run *r, int i, int sig)
{
    g_assert_cmpint(kill(qtest_daemon_pid(side(r, i)), sig), ==, 0);
}

/* Start (ON) or end the fault; kills have no end. */
static void apply(Run *r, bool on, int which)
{
    const Scenario *sc = r->sc;
    static const RelayFaults healed;
    RelayFaults f = relay_faults(sc);

    switch (sc->kind) {
    case FAULT_LINK_DOWN: g_assert_true(fault_net_link(r->net, which, !on)); break;
    case FAULT_RATE: g_assert_true(fault_net_rate(r->net, on ? (unsigned)sc->strength : 0));
        break;
    case FAULT_KILL_SRC: case FAULT_KILL_DST:
        if (on) {
            signal_side(r, sc->kind == FAULT_KILL_DST, SIGKILL);
            r->dead[sc->kind == FAULT_KILL_DST] = true;
        }
        break;
    case FAULT_STOP_SRC: case FAULT_STOP_DST:
        signal_side(r, sc->kind == FAULT_STOP_DST, on ? SIGSTOP : SIGCONT);
        break;
    case FAULT_DISK_FULL: break;
    default: g_assert_true(fault_net_packets(r->net, on ? &f : &healed)); break;
    }
}

static void sleep_ms(unsigned ms)
{
    g_usleep((gulong)ms * 1000);
}

/* Late faults: wait for the switchover (the source's runstate is
 * finish-migrate while the rest is sent and acknowledged); false when
 * the migration ended first. */
static bool await_switchover(Run *r)
{
    gint64 deadline = g_get_monotonic_time() + END_TIMEOUT_S * G_USEC_PER_SEC;

    while (g_get_monotonic_time() < deadline) {
        g_autofree char *state = qtest_runstate(r->m.src);
        if (!strcmp(state, "finish-migrate")) {
            return true;
        }
        if (!source_running_migration(r)) {
            return false;
        }
        g_usleep(SWITCHOVER_POLL_US);
    }
    return false;
}

/* Each injection comes 100..700 ms into the migration or after the last
 * one healed (late ones: at switchover), and holds for the scenario's
 * time (+-50%). */
static void inject_all(Run *r)
{
    for (unsigned i = 0; i < r->sc->injections; i++) {
        bool ready = r->sc->late ? await_switchover(r)
                                 : (sleep_ms(g_rand_int_range(r->rng, 100, 700)),
                                    source_running_migration(r));
        if (!ready) {
            r->res.missed += r->sc->injections - i;
            return;
        }
        int which = g_rand_int_range(r->rng, 0, 2);
        unsigned hold = r->sc->hold_ms / 2 + g_rand_int_range(r->rng, 0, r->sc->hold_ms + 1);
        apply(r, true, which);
        r->res.injected++;
        sleep_ms(hold);
        apply(r, false, which);
        if (r->dead[0] || r->dead[1]) {
            r->res.missed += r->sc->injections - i - 1;
            return;
        }
    }
}

/* ---- the end ---- */

/* Until the source ended (paused counts: resume may follow) and the
 * destination ended too, or never heard of it.  False on a hang. */
static bool wait_end(Run *r, SideEnd *s, SideEnd *d)
{
    gint64 deadline = g_get_monotonic_time() + END_TIMEOUT_S * G_USEC_PER_SEC;
    gint64 src_end = 0;

    for (;;) {
        read_side(r, 0, s);
        read_side(r, 1, d);
        bool src_done = is_final(s->status) || !strcmp(s->status, "paused");
        src_end = src_done ? (src_end ? src_end : g_get_monotonic_time()) : 0;
        /* "setup": listening (again, after migrate-recover), no source came. */
        bool dst_quiet = (!strcmp(d->status, "none") || !strcmp(d->status, "setup")) &&
                         g_get_monotonic_time() - src_end > DST_GRACE_US;
        if (src_done && (is_final(d->status) || dst_quiet || !strcmp(d->status, "paused"))) {
            return true;
        }
        if (g_get_monotonic_time() > deadline) {
            return false;
        }
        g_usleep(POLL_US);
    }
}

/* block-resume after a SIGKILL: the destination starts again on the
 * disk it had (no create=on), listening. */
static void restart_destination(Run *r)
{
    qtest_daemon_kill(g_steal_pointer(&r->m.dst));
    r->m.dst = qtest_daemon_start_prefixed(r->net->prefix[1], "dst2",
                                           "--drive id=" MF_DRIVE_ID ",file=%s --incoming %s",
                                           r->m.dst_disk, r->m.uri);
    r->dead[1] = false;
    qtest_set_params(r->m.dst, "\"link-timeout\": %d", LINK_TIMEOUT_S);
    qtest_set_caps(r->m.dst, "block-resume", NULL);
}

/* COMMAND on D; false (logged) when it refused. */
static bool try_qmp(QTestDaemon *d, const char *command)
{
    JsonNode *reply = qtest_qmp(d, "%s", command);
    const char *cls, *desc;
    bool refused = qmp_reply_is_error(reply, &cls, &desc);

    if (refused) {
        g_test_message("%s refused: %s", command, desc);
    }
    json_node_unref(reply);
    return !refused;
}

static bool source_paused(Run *r)
{
    SideEnd s = { 0 };
    bool paused;

    read_side(r, 0, &s);
    paused = s.alive && !strcmp(s.status, "paused");
    side_end_clear(&s);
    return paused;
}

/* block-resume, the source paused: a destination that paused listens
 * again (one that was killed starts again) and the source reconnects,
 * as often as it takes while it stays paused.  A destination that
 * failed cannot be resumed: the source gives up after resume-timeout. */
static void resume(Run *r, const SideEnd *d)
{
    g_autofree char *recover = g_strdup_printf("{\"execute\": \"migrate-recover\", "
                                               "\"arguments\": {\"uri\": \"%s\"}}", r->m.uri);
    g_autofree char *migrate = g_strdup_printf("{\"execute\": \"migrate\", \"arguments\": "
                                               "{\"uri\": \"%s\", \"resume\": true}}",
                                               r->m.uri);

    if (r->dead[1]) {
        restart_destination(r);
    } else if (strcmp(d->status, "paused") || !try_qmp(r->m.dst, recover)) {
        return;
    }
    while (!(r->resumed = try_qmp(r->m.src, migrate)) && source_paused(r)) {
        g_usleep(RESUME_RETRY_US);
    }
}

/* Until the source left "paused" (resumed and ended, or gave up after
 * resume-timeout).  False on a hang. */
static bool wait_unpaused(Run *r, SideEnd *s, SideEnd *d)
{
    gint64 deadline = g_get_monotonic_time() + END_TIMEOUT_S * G_USEC_PER_SEC;

    while (wait_end(r, s, d) && !strcmp(s->status, "paused")) {
        if (g_get_monotonic_time() > deadline) {
            return false;
        }
        g_usleep(POLL_US);
    }
    return strcmp(s->status, "paused") != 0;
}

static bool disks_identical(Run *r)
{
    uint64_t diff;

    return qtest_files_equal(r->m.src_disk, r->m.dst_disk, &diff);
}

/* A verdict on what both sides say and hold (the checks of the header). */
static Outcome judge(Run *r, const SideEnd *s, const SideEnd *d)
{
    bool src_runs = s->alive && !strcmp(s->runstate, "running");
    bool dst_runs = d->alive && !strcmp(d->runstate, "running");
    bool src_done = s->alive && !strcmp(s->status, "completed");

    if (!strcmp(s->status, "crashed") || !strcmp(d->status, "crashed")) {
        return OUT_CRASHED;
    }
    if ((s->alive && !strcmp(s->status, "failed") && !*s->error) ||
        (d->alive && !strcmp(d->status, "failed") && !*d->error)) {
        return OUT_UNTRUTHFUL;              /* failed without saying why */
    }
    if (dst_runs && (src_runs || strcmp(d->status, "completed"))) {
        return OUT_UNSAFE_START;
    }
    if ((dst_runs || (src_done && !d->alive)) && !disks_identical(r)) {
        return OUT_WRONG_DISK;
    }
    if (src_done) {
        return d->alive && !dst_runs ? OUT_UNTRUTHFUL
             : strcmp(s->runstate, "postmigrate") ? OUT_UNTRUTHFUL
             : r->resumed ? OUT_RESUMED : OUT_COMPLETED;
    }
    if (!s->alive || src_runs) {
        return dst_runs ? OUT_COMPLETED : OUT_FAILED_SAFE;
    }
    if (!strcmp(s->runstate, "paused") && strstr(s->error, "may be running the guest")) {
        return OUT_ACK_LOST;
    }
    return OUT_UNTRUTHFUL;                  /* failed, guest neither runs nor said why */
}

static char *describe(const SideEnd *s, const SideEnd *d)
{
    return g_strdup_printf("source %s (%s)%s%s; destination %s (%s)%s%s", s->status,
                           s->runstate, *s->error ? ": " : "", s->error, d->status,
                           d->runstate, *d->error ? ": " : "", d->error);
}

static void finish(Run *r)
{
    SideEnd s = { 0 }, d = { 0 };
    bool ended = wait_end(r, &s, &d);

    if (ended && r->resume && !strcmp(s.status, "paused")) {
        resume(r, &d);
        ended = wait_unpaused(r, &s, &d);
    }
    r->res.outcome = ended ? judge(r, &s, &d) : OUT_HUNG;
    r->res.detail = describe(&s, &d);
    side_end_clear(&s);
    side_end_clear(&d);
}

/* ---- a run ---- */

static void cleanup(Run *r)
{
    /* A stopped daemon is killed all the same (SIGKILL needs no SIGCONT). */
    mf_free(&r->m);
    if (r->sc->kind == FAULT_RATE || packet_kind(r->sc->kind)) {
        apply(r, false, 0);
    }
    for (int i = 0; i < 2; i++) {
        fault_net_link(r->net, i, true);
    }
    if (r->small_fs) {
        umount2(r->small_fs, MNT_DETACH);
        rmdir(r->small_fs);
        g_free(r->small_fs);
    }
    g_rand_free(r->rng);
}

RunResult fault_run(FaultNet *n, const Scenario *sc, uint32_t seed)
{
    Run r = { .net = n, .sc = sc, .rng = g_rand_new_with_seed(seed) };

    if (sc->kind == FAULT_DISK_FULL) {
        mount_small_fs(&r, DISK_SIZE / 2);
    }
    make_disks(&r, seed);
    start_daemons(&r, seed);
    qtest_migrate_start(r.m.src, r.m.uri);
    if (sc->kind == FAULT_DISK_FULL) {
        r.res.injected = 1;                 /* the small file system itself */
    } else {
        inject_all(&r);
    }
    finish(&r);
    if (r.res.outcome != OUT_COMPLETED && r.res.outcome != OUT_FAILED_SAFE) {
        g_autofree char *st = qtest_daemon_log_tail(r.m.src);
        g_autofree char *dt = qtest_daemon_log_tail(r.m.dst);
        g_test_message("source log:\n%s\ndestination log:\n%s", st, dt);
    }
    cleanup(&r);
    return r.res;
}

void run_result_clear(RunResult *r)
{
    g_free(r->detail);
}
