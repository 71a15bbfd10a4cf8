/* A TCP proxy for whole-daemon tests: a source migrates to the proxy's
 * port, the proxy forwards every connection to the real destination and
 * can flip bits of one byte that a connection carries towards the
 * destination, as a faulty link or middlebox would after TCP's own
 * checksum (so the daemons see the damaged byte).  Unlike the fault
 * suite's packet relay (tests/faults, network namespaces, root) it runs
 * anywhere and hits an exact stream offset. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "libqtest-internal.h"

#define PROXY_BUF (64 * 1024)
#define PROXY_POLL_MS 100

struct QTestProxy {
    int listen_fd;
    int target_port;
    char *uri;
    GThread *acceptor;
    GPtrArray *pumps;           /* GThread *, one per connection */
    GMutex lock;
    gint stopping;
    unsigned accepted;
    /* The corruption: connection index, byte offset, XOR mask (0: none). */
    unsigned corrupt_conn;
    uint64_t corrupt_offset;
    uint8_t corrupt_mask;
    gint corrupted;
};

typedef struct ProxyConn {
    QTestProxy *p;
    unsigned index;
    int client, server;
    uint64_t forwarded;         /* client to server bytes so far */
    uint64_t corrupt_offset;    /* copied from the proxy when accepted */
    uint8_t corrupt_mask;       /* 0: none for this connection */
} ProxyConn;

static int connect_port(int port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* Flip the chosen byte if it lies in BUF (the LEN bytes from the client
 * at the connection's offset c->forwarded). */
static void maybe_corrupt(ProxyConn *c, uint8_t *buf, size_t len)
{
    if (c->corrupt_mask && c->corrupt_offset >= c->forwarded &&
        c->corrupt_offset < c->forwarded + len) {
        buf[c->corrupt_offset - c->forwarded] ^= c->corrupt_mask;
        g_atomic_int_set(&c->p->corrupted, 1);
    }
}

/* Move what FROM has to TO; false at the end of either. */
static bool forward(ProxyConn *c, int from, int to)
{
    uint8_t buf[PROXY_BUF];
    ssize_t n = read(from, buf, sizeof(buf));

    if (n <= 0) {
        return false;
    }
    if (from == c->client) {
        maybe_corrupt(c, buf, n);
        c->forwarded += n;
    }
    for (ssize_t done = 0, w; done < n; done += w) {
        w = write(to, buf + done, n - done);
        if (w <= 0) {
            return false;
        }
    }
    return true;
}

static gpointer pump_thread(gpointer opaque)
{
    ProxyConn *c = opaque;
    bool open = true;

    while (open && !g_atomic_int_get(&c->p->stopping)) {
        struct pollfd fds[2] = { { .fd = c->client, .events = POLLIN },
                                 { .fd = c->server, .events = POLLIN } };
        if (poll(fds, 2, PROXY_POLL_MS) < 0 && errno != EINTR) {
            break;
        }
        if (fds[0].revents) {
            open = forward(c, c->client, c->server);
        }
        if (open && fds[1].revents) {
            open = forward(c, c->server, c->client);
        }
    }
    close(c->client);
    close(c->server);
    g_free(c);
    return NULL;
}

static void start_pump(QTestProxy *p, int client)
{
    ProxyConn *c = g_new0(ProxyConn, 1);

    c->p = p;
    c->client = client;
    c->server = connect_port(p->target_port);
    if (c->server < 0) {
        close(client);
        g_free(c);
        return;
    }
    g_mutex_lock(&p->lock);
    c->index = p->accepted++;
    if (c->index == p->corrupt_conn) {
        c->corrupt_offset = p->corrupt_offset;
        c->corrupt_mask = p->corrupt_mask;
    }
    g_ptr_array_add(p->pumps, g_thread_new("qtest-proxy-pump", pump_thread, c));
    g_mutex_unlock(&p->lock);
}

static gpointer accept_thread(gpointer opaque)
{
    QTestProxy *p = opaque;

    while (!g_atomic_int_get(&p->stopping)) {
        struct pollfd pfd = { .fd = p->listen_fd, .events = POLLIN };
        int fd;

        if (poll(&pfd, 1, PROXY_POLL_MS) <= 0) {
            continue;
        }
        fd = accept4(p->listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0) {
            start_pump(p, fd);
        }
    }
    return NULL;
}

static int listen_any_port(int *port)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof(a);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 16) < 0 ||
        getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
        qtest_fail("proxy: cannot listen: %s", g_strerror(errno));
    }
    *port = ntohs(a.sin_port);
    return fd;
}

QTestProxy *qtest_proxy_start(const char *target_uri)
{
    QTestProxy *p = g_new0(QTestProxy, 1);
    const char *colon = strrchr(target_uri, ':');
    int port;

    if (!g_str_has_prefix(target_uri, "tcp:") || !colon) {
        qtest_fail("proxy: target '%s' is not tcp:HOST:PORT", target_uri);
    }
    p->target_port = atoi(colon + 1);
    p->listen_fd = listen_any_port(&port);
    p->uri = g_strdup_printf("tcp:127.0.0.1:%d", port);
    p->pumps = g_ptr_array_new();
    g_mutex_init(&p->lock);
    p->acceptor = g_thread_new("qtest-proxy", accept_thread, p);
    return p;
}

const char *qtest_proxy_uri(QTestProxy *p)
{
    return p->uri;
}

void qtest_proxy_corrupt(QTestProxy *p, unsigned conn, uint64_t offset, uint8_t mask)
{
    g_mutex_lock(&p->lock);
    p->corrupt_conn = conn;
    p->corrupt_offset = offset;
    p->corrupt_mask = mask;
    g_mutex_unlock(&p->lock);
}

bool qtest_proxy_corrupted(QTestProxy *p)
{
    return g_atomic_int_get(&p->corrupted);
}

void qtest_proxy_stop(QTestProxy *p)
{
    g_atomic_int_set(&p->stopping, 1);
    g_thread_join(p->acceptor);
    for (guint i = 0; i < p->pumps->len; i++) {
        g_thread_join(p->pumps->pdata[i]);
    }
    g_ptr_array_unref(p->pumps);
    close(p->listen_fd);
    g_mutex_clear(&p->lock);
    g_free(p->uri);
    g_free(p);
}
