/* Endpoint URIs, and real listen/connect/accept over UNIX and TCP. */
#include <errno.h>
#include <gio/gio.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <fcntl.h>

#include "util/sockets.h"

#define ALL_KINDS ((1u << ENDPOINT_TCP) | (1u << ENDPOINT_UNIX) | \
                   (1u << ENDPOINT_FILE) | (1u << ENDPOINT_DEFER))
#define SOCKET_KINDS ((1u << ENDPOINT_TCP) | (1u << ENDPOINT_UNIX))

static void test_parse_good(void)
{
    static const struct {
        const char *uri;
        EndpointKind kind;
        const char *host, *port, *path, *canonical;
    } cases[] = {
        { "tcp:localhost:4444", ENDPOINT_TCP, "localhost", "4444", NULL, "tcp:localhost:4444" },
        { "tcp::4444", ENDPOINT_TCP, "", "4444", NULL, "tcp::4444" },
        { "tcp:0:0", ENDPOINT_TCP, "0", "0", NULL, "tcp:0:0" },
        { "tcp:127.0.0.1:65535", ENDPOINT_TCP, "127.0.0.1", "65535", NULL, "tcp:127.0.0.1:65535" },
        { "tcp:[::1]:80", ENDPOINT_TCP, "::1", "80", NULL, "tcp:[::1]:80" },
        { "unix:/tmp/x.sock", ENDPOINT_UNIX, NULL, NULL, "/tmp/x.sock", "unix:/tmp/x.sock" },
        { "unix:rel:with:colons", ENDPOINT_UNIX, NULL, NULL, "rel:with:colons", "unix:rel:with:colons" },
        { "file:/tmp/stream", ENDPOINT_FILE, NULL, NULL, "/tmp/stream", "file:/tmp/stream" },
        { "defer", ENDPOINT_DEFER, NULL, NULL, NULL, "defer" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        Endpoint ep;
        GError *err = NULL;
        g_assert_true(endpoint_parse(cases[i].uri, ALL_KINDS, &ep, &err));
        g_assert_no_error(err);
        g_assert_cmpint(ep.kind, ==, cases[i].kind);
        g_assert_cmpstr(ep.host, ==, cases[i].host);
        g_assert_cmpstr(ep.port, ==, cases[i].port);
        g_assert_cmpstr(ep.path, ==, cases[i].path);
        char *s = endpoint_to_str(&ep);
        g_assert_cmpstr(s, ==, cases[i].canonical);
        g_free(s);
        endpoint_clear(&ep);
    }
}

static void test_parse_bad(void)
{
    static const char *const cases[] = {
        "", "tcp", "tcp:", "tcp:host", "tcp:host:", "tcp:host:port", "tcp:host:65536",
        "tcp:host:-1", "tcp:::1:80", "tcp:[::1]80", "tcp:[::1", "unix:", "file:",
        "udp:host:1", "deferred", "TCP:host:1",
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        Endpoint ep;
        GError *err = NULL;
        g_assert_false(endpoint_parse(cases[i], ALL_KINDS, &ep, &err));
        g_assert_nonnull(err);
        g_assert_nonnull(strstr(err->message, "tcp:HOST:PORT"));
        g_assert_nonnull(strstr(err->message, "unix:PATH"));
        g_assert_null(ep.host);
        g_assert_null(ep.path);
        g_error_free(err);
    }
}

static void test_parse_not_allowed(void)
{
    Endpoint ep;
    GError *err = NULL;

    g_assert_false(endpoint_parse("file:/x", SOCKET_KINDS, &ep, &err));
    g_assert_nonnull(err);
    /* Only the accepted forms are listed. */
    g_assert_nonnull(strstr(err->message, "tcp:HOST:PORT or unix:PATH"));
    g_assert_null(strstr(err->message, "file:PATH"));
    g_clear_error(&err);
    g_assert_false(endpoint_parse("defer", SOCKET_KINDS, &ep, &err));
    g_clear_error(&err);
    g_assert_true(endpoint_parse("defer", 1u << ENDPOINT_DEFER, &ep, &err));
    endpoint_clear(&ep);
}

static void send_all(int fd, const void *buf, size_t len)
{
    g_assert_cmpint(send(fd, buf, len, MSG_NOSIGNAL), ==, (ssize_t)len);
}

static void recv_expect(int fd, const char *expect)
{
    size_t len = strlen(expect);
    char buf[64] = "";
    size_t got = 0;
    while (got < len) {
        ssize_t n = recv(fd, buf + got, len - got, 0);
        g_assert_cmpint(n, >, 0);
        got += (size_t)n;
    }
    g_assert_cmpmem(buf, len, expect, len);
}

static void assert_cloexec(int fd)
{
    g_assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
}

/* Connect to CONNECT_EP, accept on LFD, exchange bytes both ways; closes LFD. */
static void exchange_on(int lfd, const Endpoint *connect_ep)
{
    GError *err = NULL;
    assert_cloexec(lfd);

    int cfd = endpoint_connect(connect_ep, &err);
    g_assert_no_error(err);
    g_assert_cmpint(cfd, >=, 0);
    assert_cloexec(cfd);
    int afd = socket_accept(lfd);
    g_assert_cmpint(afd, >=, 0);
    assert_cloexec(afd);
    socket_tune_bulk(cfd);
    socket_tune_bulk(afd);

    send_all(cfd, "ping from client", 16);
    recv_expect(afd, "ping from client");
    send_all(afd, "pong from server", 16);
    recv_expect(cfd, "pong from server");

    int sndbuf = 0;
    socklen_t optlen = sizeof(sndbuf);
    g_assert_cmpint(getsockopt(cfd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &optlen), ==, 0);
    /* The kernel may cap it (wmem_max) but raises it above the default. */
    g_assert_cmpint(sndbuf, >, 256 * 1024);

    close(afd);
    close(cfd);
    close(lfd);
}

static void exchange(const Endpoint *listen_ep, const Endpoint *connect_ep)
{
    GError *err = NULL;
    int lfd = endpoint_listen(listen_ep, &err);
    g_assert_no_error(err);
    g_assert_cmpint(lfd, >=, 0);
    exchange_on(lfd, connect_ep);
}

static void test_unix(void)
{
    GError *err = NULL;
    char *dir = g_dir_make_tmp("test-sockets-XXXXXX", &err);
    g_assert_no_error(err);
    char *uri = g_strdup_printf("unix:%s/s.sock", dir);
    Endpoint ep;
    g_assert_true(endpoint_parse(uri, SOCKET_KINDS, &ep, &err));

    /* Mode 0600 even under umask 000 (DESIGN.md). */
    mode_t old_umask = umask(0);
    exchange(&ep, &ep);
    umask(old_umask);
    /* The socket file of the closed listener is still there: listening
     * again must replace it. */
    struct stat st;
    g_assert_cmpint(stat(ep.path, &st), ==, 0);
    g_assert_true(S_ISSOCK(st.st_mode));
    g_assert_cmpuint(st.st_mode & 07777, ==, 0600);
    exchange(&ep, &ep);

    /* A regular file in the way is not removed. */
    g_assert_cmpint(unlink(ep.path), ==, 0);
    g_assert_true(g_file_set_contents(ep.path, "data", -1, NULL));
    g_assert_cmpint(endpoint_listen(&ep, &err), ==, -1);
    g_assert_nonnull(err);
    g_assert_nonnull(strstr(err->message, ep.path));
    g_clear_error(&err);
    g_assert_true(g_file_test(ep.path, G_FILE_TEST_IS_REGULAR));
    g_unlink(ep.path);

    /* Nobody listening. */
    g_assert_cmpint(endpoint_connect(&ep, &err), ==, -1);
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_NOT_FOUND);
    g_clear_error(&err);

    endpoint_clear(&ep);
    g_free(uri);
    g_assert_cmpint(g_rmdir(dir), ==, 0);
    g_free(dir);
}

/* Listen on LISTEN_HOST with an ephemeral port, connect to CONNECT_HOST. */
static void tcp_case(const char *listen_host, const char *connect_host)
{
    GError *err = NULL;
    Endpoint lep = { .kind = ENDPOINT_TCP, .host = g_strdup(listen_host), .port = g_strdup("0") };
    int lfd = endpoint_listen(&lep, &err);
    if (lfd < 0 && strchr(listen_host, ':')) {
        g_test_skip(err->message);      /* no IPv6 on this machine */
        g_clear_error(&err);
        endpoint_clear(&lep);
        return;
    }
    g_assert_no_error(err);
    int port = socket_local_port(lfd);
    g_assert_cmpint(port, >, 0);

    Endpoint cep = { .kind = ENDPOINT_TCP, .host = g_strdup(connect_host),
                     .port = g_strdup_printf("%d", port) };
    exchange_on(lfd, &cep);
    endpoint_clear(&lep);
    endpoint_clear(&cep);
}

static void test_tcp_ipv4(void)
{
    tcp_case("127.0.0.1", "127.0.0.1");
}

static void test_tcp_any(void)
{
    tcp_case("", "127.0.0.1");
    tcp_case("0", "localhost");
}

static void test_tcp_ipv6(void)
{
    tcp_case("::1", "::1");
}

static void test_tcp_errors(void)
{
    GError *err = NULL;
    Endpoint ep;

    g_assert_true(endpoint_parse("tcp:127.0.0.1:0", SOCKET_KINDS, &ep, &err));
    int lfd = endpoint_listen(&ep, &err);
    g_assert_cmpint(lfd, >=, 0);
    char *port = g_strdup_printf("%d", socket_local_port(lfd));
    g_free(ep.port);
    ep.port = port;
    /* The port is taken. */
    g_assert_cmpint(endpoint_listen(&ep, &err), ==, -1);
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_ADDRESS_IN_USE);
    g_assert_nonnull(strstr(err->message, port));
    g_clear_error(&err);
    close(lfd);
    /* Nothing listens any more: refused. */
    g_assert_cmpint(endpoint_connect(&ep, &err), ==, -1);
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_CONNECTION_REFUSED);
    g_clear_error(&err);
    endpoint_clear(&ep);

    g_assert_true(endpoint_parse("file:/nonexistent", ALL_KINDS, &ep, &err));
    g_assert_cmpint(endpoint_listen(&ep, &err), ==, -1);
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED);
    g_clear_error(&err);
    endpoint_clear(&ep);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/sockets/parse-good", test_parse_good);
    g_test_add_func("/sockets/parse-bad", test_parse_bad);
    g_test_add_func("/sockets/parse-not-allowed", test_parse_not_allowed);
    g_test_add_func("/sockets/unix", test_unix);
    g_test_add_func("/sockets/tcp-ipv4", test_tcp_ipv4);
    g_test_add_func("/sockets/tcp-any", test_tcp_any);
    g_test_add_func("/sockets/tcp-ipv6", test_tcp_ipv6);
    g_test_add_func("/sockets/tcp-errors", test_tcp_errors);
    return g_test_run();
}
