/* The suite's network: a namespace for the source and one for the
 * destination, joined by a veth pair (the direct link: taken down and up,
 * rate-limited with tbf) and by a pair of tun devices with the packet
 * relay between them (the packet path: loss, delay, reordering,
 * duplication, corruption).  Where the kernel has netem, the packet
 * faults are netem's on the veth pair instead and there is no relay.
 *
 *   ns[0] blkmig-fault-PID-src         ns[1] blkmig-fault-PID-dst
 *     veth 10.0.0.1/24  <--------------->  veth 10.0.0.2/24
 *     fr0  10.0.1.1 <-- relay thread --> fr0  10.0.1.2
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "faults.h"

#define NS_PREFIX "blkmig-fault-"
#define TUN_NAME "fr0"

static const char *const side_name[2] = { "src", "dst" };

/* A tun device NAME made inside namespace NS (this thread visits it);
 * its fd, or -1. */
static int tun_in_namespace(const char *ns, const char *name)
{
    g_autofree char *path = g_strdup_printf("/var/run/netns/%s", ns);
    int target = open(path, O_RDONLY | O_CLOEXEC);
    int self = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC);
    struct ifreq ifr = { .ifr_flags = IFF_TUN | IFF_NO_PI };
    int fd = -1;

    g_strlcpy(ifr.ifr_name, name, IFNAMSIZ);
    if (target >= 0 && self >= 0 && setns(target, CLONE_NEWNET) == 0) {
        fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
        if (fd >= 0 && ioctl(fd, TUNSETIFF, &ifr) < 0) {
            g_test_message("TUNSETIFF %s in %s: %s", name, ns, g_strerror(errno));
            close(fd);
            fd = -1;
        }
        g_assert_cmpint(setns(self, CLONE_NEWNET), ==, 0);
    }
    if (target >= 0) {
        close(target);
    }
    if (self >= 0) {
        close(self);
    }
    return fd;
}

static bool make_namespaces(FaultNet *n)
{
    for (int i = 0; i < 2; i++) {
        if (!qtest_sh("ip netns add %s", n->ns[i]) ||
            !qtest_sh("ip -n %s link set lo up", n->ns[i])) {
            return false;
        }
    }
    return true;
}

static bool make_veth(FaultNet *n)
{
    if (!qtest_sh("ip link add %s netns %s type veth peer name %s netns %s", n->veth[0],
                  n->ns[0], n->veth[1], n->ns[1])) {
        return false;
    }
    for (int i = 0; i < 2; i++) {
        if (!qtest_sh("ip -n %s addr add %s/24 dev %s", n->ns[i], n->veth_addr[i],
                      n->veth[i]) ||
            !fault_net_link(n, i, true)) {
            return false;
        }
    }
    return true;
}

/* The tun pair and the relay between them. */
static bool make_packet_path(FaultNet *n)
{
    int fd[2];

    for (int i = 0; i < 2; i++) {
        fd[i] = tun_in_namespace(n->ns[i], TUN_NAME);
        if (fd[i] < 0 ||
            !qtest_sh("ip -n %s addr add %s peer %s dev %s", n->ns[i], n->tun_addr[i],
                      n->tun_addr[!i], TUN_NAME) ||
            !qtest_sh("ip -n %s link set %s up", n->ns[i], TUN_NAME)) {
            if (i == 1 && fd[0] >= 0) {
                close(fd[0]);
            }
            return false;
        }
    }
    n->relay = relay_start(fd[0], fd[1], (uint32_t)getpid());
    return true;
}

static bool probe_netem(FaultNet *n)
{
    bool have = qtest_sh("ip netns exec %s tc qdisc add dev %s root netem", n->ns[0],
                         n->veth[0]);

    if (have) {
        qtest_sh("ip netns exec %s tc qdisc del dev %s root", n->ns[0], n->veth[0]);
    }
    g_test_message("netem: %s", have ? "present, packet faults use it"
                                     : "missing, packet faults go through the relay");
    return have;
}

static FaultNet *fault_net_alloc(void)
{
    FaultNet *n = g_new0(FaultNet, 1);
    int pid = (int)getpid();

    for (int i = 0; i < 2; i++) {
        n->ns[i] = g_strdup_printf(NS_PREFIX "%d-%s", pid, side_name[i]);
        n->prefix[i] = g_strdup_printf("ip netns exec %s", n->ns[i]);
        n->veth[i] = g_strdup_printf("bmf%d%c", pid, side_name[i][0]);
        n->veth_addr[i] = g_strdup_printf("10.0.0.%d", i + 1);
        n->tun_addr[i] = g_strdup_printf("10.0.1.%d", i + 1);
    }
    return n;
}

FaultNet *fault_net_new(void)
{
    const char *why = qtest_netns_unavailable();
    FaultNet *n;

    if (!why && !g_file_test("/dev/net/tun", G_FILE_TEST_EXISTS)) {
        why = "the packet relay needs /dev/net/tun";
    }
    if (why) {
        g_test_skip(why);
        return NULL;
    }
    qtest_netns_remove_stale(NS_PREFIX);
    n = fault_net_alloc();
    if (!make_namespaces(n) || !make_veth(n)) {
        fault_net_free(n);
        g_test_skip("creating the namespaces and their veth pair failed (see above)");
        return NULL;
    }
    n->have_netem = probe_netem(n);
    if (!n->have_netem && !make_packet_path(n)) {
        fault_net_free(n);
        g_test_skip("creating the tun pair for the packet relay failed (see above)");
        return NULL;
    }
    return n;
}

void fault_net_free(FaultNet *n)
{
    if (!n) {
        return;
    }
    relay_stop(n->relay);
    for (int i = 0; i < 2; i++) {
        qtest_sh("ip netns del %s", n->ns[i]);     /* the veth pair goes with it */
        g_free(n->ns[i]);
        g_free(n->prefix[i]);
        g_free(n->veth[i]);
        g_free(n->veth_addr[i]);
        g_free(n->tun_addr[i]);
    }
    g_free(n);
}

bool fault_net_link(FaultNet *n, int side, bool up)
{
    return qtest_sh("ip -n %s link set %s %s", n->ns[side], n->veth[side], up ? "up" : "down");
}

/* Replace the root qdisc of both veth ends by QDISC ("" removes it). */
static bool veth_qdisc(FaultNet *n, const char *qdisc)
{
    bool ok = true;

    for (int i = 0; i < 2; i++) {
        if (*qdisc) {
            ok &= qtest_sh("ip netns exec %s tc qdisc replace dev %s root %s", n->ns[i],
                           n->veth[i], qdisc);
        } else {
            qtest_sh("ip netns exec %s tc qdisc del dev %s root", n->ns[i], n->veth[i]);
        }
    }
    return ok;
}

bool fault_net_rate(FaultNet *n, unsigned rate_kbit)
{
    g_autofree char *tbf = rate_kbit ? g_strdup_printf("tbf rate %ukbit burst 16kb latency "
                                                       "400ms", rate_kbit) : g_strdup("");
    return veth_qdisc(n, tbf);
}

/* netem's words for F. */
static char *netem_args(const RelayFaults *f)
{
    if (f->blackhole) {
        return g_strdup("netem loss 100%");
    }
    return g_strdup_printf("netem delay %ums %ums loss %.2f%% duplicate %.2f%% "
                           "corrupt %.2f%% reorder %.2f%%", f->delay_ms + f->reorder_ms,
                           f->jitter_ms, f->loss * 100, f->duplicate * 100,
                           f->corrupt * 100, f->reorder * 100);
}

bool fault_net_packets(FaultNet *n, const RelayFaults *f)
{
    static const RelayFaults none;

    if (!n->have_netem) {
        relay_set_faults(n->relay, f);
        return true;
    }
    if (memcmp(f, &none, sizeof(none)) == 0) {
        return veth_qdisc(n, "");
    }
    g_autofree char *args = netem_args(f);
    return veth_qdisc(n, args);
}

const char *fault_net_dst_addr(FaultNet *n, bool packet)
{
    return packet && !n->have_netem ? n->tun_addr[1] : n->veth_addr[1];
}
