/* What happens to a migration when its link dies or one side gives up,
 * between two real blkmigd daemons: the destination runs in a network
 * namespace of its own behind a veth pair that the test takes down, and
 * both sides must report `failed` within link-timeout, naming it; a cancel
 * must read as a cancel at the destination; a destination started with
 * --incoming URI must listen again after a failure. */
#include <string.h>
#include <unistd.h>

#include "migration-framework.h"

#define DISK_SIZE (32 * MIB)
/* Slow enough that the bulk phase is still running when the test acts. */
#define SLOW_BANDWIDTH (1 * MIB)
/* The link-timeout the tests set on both sides, in seconds. */
#define LINK_TIMEOUT 3
/* Beyond link-timeout: the source's 2 s wait for the destination's own
 * words, polling, and two shared cores under ASan. */
#define FAIL_MARGIN_S 8
#define NS_PREFIX "blkmig-link-"
#define NS_PORT 4444

/* ---- the network namespace ---- */

/* NS_PREFIX<pid>, joined to ours by a veth pair on 198.18.0.0/15 (the
 * range RFC 2544 sets aside for tests); the /30 is chosen by our pid. */
typedef struct NetNs {
    char *name;
    char *host_if;              /* the veth end in our namespace */
    char *ns_if;
    char *host_addr;
    char *ns_addr;
    char *prefix;               /* runs a command inside */
} NetNs;

static NetNs *netns;            /* set up by the first test that needs it */
static char *netns_skip;        /* why it cannot be, once known */

static NetNs *netns_new(void)
{
    NetNs *ns = g_new0(NetNs, 1);
    unsigned base = (198u << 24 | 18u << 16) + ((unsigned)getpid() & 0x7fff) * 4;

    ns->name = g_strdup_printf(NS_PREFIX "%d", (int)getpid());
    ns->host_if = g_strdup_printf("bml%dh", (int)getpid());
    ns->ns_if = g_strdup_printf("bml%dn", (int)getpid());
    ns->host_addr = g_strdup_printf("%u.%u.%u.%u", base >> 24, (base >> 16) & 255,
                                    (base >> 8) & 255, (base & 255) + 1);
    ns->ns_addr = g_strdup_printf("%u.%u.%u.%u", base >> 24, (base >> 16) & 255,
                                  (base >> 8) & 255, (base & 255) + 2);
    ns->prefix = g_strdup_printf("ip netns exec %s", ns->name);
    return ns;
}

static void netns_free(NetNs *ns)
{
    qtest_sh("ip netns del %s", ns->name);     /* takes the veth pair with it */
    g_free(ns->name);
    g_free(ns->host_if);
    g_free(ns->ns_if);
    g_free(ns->host_addr);
    g_free(ns->ns_addr);
    g_free(ns->prefix);
    g_free(ns);
}

static bool netns_create(NetNs *ns)
{
    return qtest_sh("ip netns add %s", ns->name) &&
           qtest_sh("ip link add %s type veth peer name %s", ns->host_if, ns->ns_if) &&
           qtest_sh("ip link set %s netns %s", ns->ns_if, ns->name) &&
           qtest_sh("ip addr add %s/30 dev %s", ns->host_addr, ns->host_if) &&
           qtest_sh("ip link set %s up", ns->host_if) &&
           qtest_sh("%s ip addr add %s/30 dev %s", ns->prefix, ns->ns_addr, ns->ns_if) &&
           qtest_sh("%s ip link set %s up", ns->prefix, ns->ns_if) &&
           qtest_sh("%s ip link set lo up", ns->prefix);
}

/* The namespace, or NULL after a TAP skip that says why there is none. */
static NetNs *need_netns(void)
{
    if (!netns && !netns_skip) {
        if (qtest_netns_unavailable()) {
            netns_skip = g_strdup(qtest_netns_unavailable());
        } else {
            qtest_netns_remove_stale(NS_PREFIX);
            netns = netns_new();
            if (!netns_create(netns)) {
                netns_free(g_steal_pointer(&netns));
                netns_skip = g_strdup("creating a network namespace with a veth pair "
                                      "failed (see the messages above)");
            }
        }
    }
    if (!netns) {
        g_test_skip(netns_skip);
    }
    return netns;
}

static void link_set(NetNs *ns, bool up)
{
    g_assert_true(qtest_sh("ip link set %s %s", ns->host_if, up ? "up" : "down"));
}

/* ---- daemons and migrations ---- */

/* A source disk full of data and an empty destination disk; the source
 * daemon runs its guest. */
static void migration_init(Migration *m)
{
    mf_make_src_disk(m, DISK_SIZE, 8, DISK_SIZE / MIB, MIB);
    m->src = mf_start_src(m, "");
}

/* The destination, inside NS when given, listening on INCOMING. */
static void start_dst(Migration *m, NetNs *ns, const char *incoming)
{
    m->dst = mf_start_dst_at(m, ns ? ns->prefix : NULL, "dst", DISK_SIZE, incoming);
}

static void set_link_timeout(QTestDaemon *d, unsigned seconds)
{
    qtest_set_params(d, "\"link-timeout\": %u", seconds);
}

/* Start a slow migration and wait until data flows. */
static void start_slow_migration(Migration *m)
{
    qtest_set_caps(m->src, "block", NULL);
    qtest_set_params(m->src, "\"max-bandwidth\": %" G_GUINT64_FORMAT, SLOW_BANDWIDTH);
    qtest_migrate_start(m->src, m->uri);
    json_node_unref(qtest_migrate_wait_status(m->src, "active", MF_STATE_TIMEOUT_MS));
    json_node_unref(qtest_migrate_wait_status(m->dst, "active", MF_STATE_TIMEOUT_MS));
    for (gint64 transferred = 0; transferred < 2 * (gint64)MIB;) {
        JsonNode *info = qtest_query_migrate(m->src);
        g_assert_cmpstr(qtest_json_str(info, "status"), ==, "active");
        transferred = qtest_json_int(info, "disk.transferred");
        json_node_unref(info);
        g_usleep(MF_POLL_US);
    }
}

/* ---- outcomes ---- */

static void assert_stall_reported(const MfOutcome *o)
{
    g_autofree char *limit = g_strdup_printf("%d s", LINK_TIMEOUT);

    g_assert_cmpstr(o->status, ==, "failed");
    mf_assert_contains(o->error_desc, "link stalled");
    mf_assert_contains(o->error_desc, "link-timeout");
    mf_assert_contains(o->error_desc, limit);
}

/* The source guest runs on; the destination guest never started. */
static void assert_guests_safe(Migration *m)
{
    g_autofree char *src = qtest_runstate(m->src), *dst = qtest_runstate(m->dst);

    g_assert_cmpstr(src, ==, "running");
    g_assert_cmpstr(dst, ==, "inmigrate");
}

/* ---- a dead link ---- */

static bool dead_link_setup(Migration *m, bool multifd)
{
    NetNs *ns = need_netns();

    if (!ns) {
        return false;
    }
    link_set(ns, true);
    m->uri = g_strdup_printf("tcp:%s:%d", ns->ns_addr, NS_PORT);
    migration_init(m);
    start_dst(m, ns, m->uri);
    set_link_timeout(m->src, LINK_TIMEOUT);
    set_link_timeout(m->dst, LINK_TIMEOUT);
    if (multifd) {
        qtest_set_caps(m->src, "multifd", NULL);
    }
    start_slow_migration(m);
    return true;
}

/* The link dies mid-migration: both sides fail within link-timeout and
 * say so; neither guest is lost.  With multifd, every channel too. */
static void test_dead_link(gconstpointer multifd)
{
    Migration m = { 0 };
    MfOutcome src = { 0 }, dst = { 0 };

    if (!dead_link_setup(&m, multifd != NULL)) {
        return;
    }
    link_set(netns, false);
    mf_wait_both_ended(&m, LINK_TIMEOUT + FAIL_MARGIN_S, &src, &dst);
    assert_stall_reported(&src);
    assert_stall_reported(&dst);
    assert_guests_safe(&m);
    link_set(netns, true);
    mf_outcome_clear(&src);
    mf_outcome_clear(&dst);
    mf_free(&m);
}

/* Cancelled while the link is dead: the source at once, the destination
 * (which cannot hear of it) within link-timeout. */
static void test_dead_link_cancel(void)
{
    Migration m = { 0 };
    MfOutcome src = { 0 }, dst = { 0 };

    if (!dead_link_setup(&m, false)) {
        return;
    }
    link_set(netns, false);
    g_usleep(G_USEC_PER_SEC);
    json_node_unref(qtest_qmp_ok(m.src, "{\"execute\": \"migrate_cancel\"}"));
    mf_wait_both_ended(&m, LINK_TIMEOUT + FAIL_MARGIN_S, &src, &dst);
    g_assert_cmpstr(src.status, ==, "cancelled");
    g_assert_cmpfloat(src.seconds, <, 5);
    assert_stall_reported(&dst);
    assert_guests_safe(&m);
    link_set(netns, true);
    mf_outcome_clear(&src);
    mf_outcome_clear(&dst);
    mf_free(&m);
}

/* ---- cancels and hang-ups, as the destination tells them ---- */

static void loopback_setup(Migration *m, const char *incoming)
{
    m->uri = qtest_tcp_uri();
    migration_init(m);
    start_dst(m, NULL, incoming ? incoming : m->uri);
}

/* A deliberate cancel: the destination says the source cancelled (with
 * multifd too, whose channels must not close first). */
static void test_cancel_announced(gconstpointer multifd)
{
    Migration m = { 0 };
    MfOutcome src = { 0 }, dst = { 0 };

    loopback_setup(&m, NULL);
    if (multifd) {
        qtest_set_caps(m.src, "multifd", NULL);
    }
    start_slow_migration(&m);
    json_node_unref(qtest_qmp_ok(m.src, "{\"execute\": \"migrate_cancel\"}"));
    mf_wait_both_ended(&m, 10, &src, &dst);
    g_assert_cmpstr(src.status, ==, "cancelled");
    g_assert_cmpstr(dst.status, ==, "failed");
    mf_assert_contains(dst.error_desc, "the source cancelled the migration");
    assert_guests_safe(&m);
    mf_outcome_clear(&src);
    mf_outcome_clear(&dst);
    mf_free(&m);
}

/* With qemu-compat nothing but QEMU 7.2's records is sent, so the stream
 * just ends: the destination says the source hung up, not how the parser
 * met the end. */
static void test_closed_mid_stream(void)
{
    Migration m = { 0 };
    MfOutcome src = { 0 }, dst = { 0 };

    loopback_setup(&m, NULL);
    qtest_set_caps(m.src, "qemu-compat", NULL);
    start_slow_migration(&m);
    json_node_unref(qtest_qmp_ok(m.src, "{\"execute\": \"migrate_cancel\"}"));
    mf_wait_both_ended(&m, 10, &src, &dst);
    g_assert_cmpstr(src.status, ==, "cancelled");
    g_assert_cmpstr(dst.status, ==, "failed");
    mf_assert_contains(dst.error_desc, "the source closed the connection mid-stream");
    g_assert_null(strstr(dst.error_desc, "cancelled"));
    assert_guests_safe(&m);
    mf_outcome_clear(&src);
    mf_outcome_clear(&dst);
    mf_free(&m);
}

/* ---- the destination listens again ---- */

/* "migrate" until the destination accepts the connection. */
static void migrate_when_listening(QTestDaemon *src, const char *uri)
{
    gint64 deadline = g_get_monotonic_time() + MF_STATE_TIMEOUT_MS * 1000LL;

    for (;;) {
        JsonNode *reply = qtest_qmp(src, "{\"execute\": \"migrate\", \"arguments\":"
                                    " {\"uri\": \"%s\"}}", uri);
        bool ok = json_object_has_member(json_node_get_object(reply), "return");
        json_node_unref(reply);
        if (ok) {
            return;
        }
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(MF_POLL_US);
    }
}

/* A destination started with --incoming URI listens again after a failed
 * migration, guest still not started, and the next migration completes. */
static void test_rearm(void)
{
    Migration m = { 0 };
    MfOutcome src = { 0 }, dst = { 0 };

    loopback_setup(&m, NULL);
    start_slow_migration(&m);
    json_node_unref(qtest_qmp_ok(m.src, "{\"execute\": \"migrate_cancel\"}"));
    mf_wait_both_ended(&m, 10, &src, &dst);
    g_assert_cmpstr(dst.status, ==, "failed");
    assert_guests_safe(&m);

    qtest_set_params(m.src, "\"max-bandwidth\": 0");
    migrate_when_listening(m.src, m.uri);
    json_node_unref(mf_wait_completed(&m));
    mf_assert_identical(m.src_disk, m.dst_disk);
    mf_outcome_clear(&src);
    mf_outcome_clear(&dst);
    mf_free(&m);
}

/* ---- a quiet link is not a stall ---- */

/* One chunk and two multifd channels: channel 1 carries nothing for the
 * whole migration, far longer than link-timeout, and that is fine. */
static void test_idle_channel(void)
{
    Migration m = { .uri = qtest_tcp_uri() };

    mf_make_src_disk(&m, MIB, 9, 1, MIB);
    m.src = mf_start_src(&m, "");
    start_dst(&m, NULL, NULL);
    set_link_timeout(m.src, 1);
    set_link_timeout(m.dst, 1);
    qtest_set_caps(m.src, "block", "multifd", NULL);
    qtest_set_params(m.src, "\"max-bandwidth\": %d", 256 * 1024);
    qtest_migrate_start(m.src, m.uri);
    JsonNode *info = mf_wait_completed(&m);
    g_assert_cmpint(qtest_json_int(info, "total-time"), >, 3000);
    json_node_unref(info);
    mf_free(&m);
}

/* ---- the parameter ---- */

static void test_parameter(void)
{
    QTestDaemon *d = qtest_daemon_start("src", "%s", "");
    JsonNode *p = qtest_qmp_ok(d, "{\"execute\": \"query-migrate-parameters\"}");
    static const char *const bad[] = { "0", "3601", "-1", "\"20\"" };

    g_assert_cmpint(qtest_json_int(p, "link-timeout"), ==, 20);
    json_node_unref(p);
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autofree char *desc = NULL;
        g_free(qtest_qmp_error(d, &desc, "{\"execute\": \"migrate-set-parameters\", "
                               "\"arguments\": {\"link-timeout\": %s}}", bad[i]));
        g_test_message("link-timeout %s: %s", bad[i], desc);
    }
    set_link_timeout(d, 3600);
    p = qtest_qmp_ok(d, "{\"execute\": \"query-migrate-parameters\"}");
    g_assert_cmpint(qtest_json_int(p, "link-timeout"), ==, 3600);
    json_node_unref(p);
    qtest_daemon_kill(d);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/link/parameter", test_parameter);
    g_test_add_data_func("/link/dead-link", NULL, test_dead_link);
    g_test_add_data_func("/link/dead-link-multifd", "multifd", test_dead_link);
    g_test_add_func("/link/dead-link-cancel", test_dead_link_cancel);
    g_test_add_data_func("/link/cancel-announced", NULL, test_cancel_announced);
    g_test_add_data_func("/link/cancel-announced-multifd", "multifd", test_cancel_announced);
    g_test_add_func("/link/closed-mid-stream", test_closed_mid_stream);
    g_test_add_func("/link/rearm", test_rearm);
    g_test_add_func("/link/idle-channel", test_idle_channel);
    ret = g_test_run();
    if (netns) {
        netns_free(netns);
    }
    return ret;
}
