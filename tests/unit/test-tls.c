/* TLS sessions over real sockets with real credentials made by certtool
 * and psktool: handshakes that succeed (x509 with verify-peer, PSK) and
 * each way one fails (wrong CA, expired certificate, no client
 * certificate, host name, tls-authz, PSK mismatch, unknown PSK user, a
 * silent peer, a peer that is not TLS), each with a clear message on both
 * sides and within the handshake timeout; then data: partial reads, large
 * and gathered writes, both directions at once, the end of the stream,
 * a send into a full socket. */
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/tls-certs.h"
#include "util/sockets.h"
#include "util/tls.h"
#include "util/user-object.h"

#define TIMEOUT_MS 5000

static char *tmp;

static char *dir_of(const char *name)
{
    return g_build_filename(tmp, name, NULL);
}

/* Credentials registered as ID from "key=value,..." pairs after the type. */
static TlsCreds *creds(const char *id, const char *type, const char *dir, const char *endpoint,
                       const char *extra)
{
    JsonObject *props = json_object_new();
    g_autofree char *path = dir_of(dir);
    GError *err = NULL;
    TlsCreds *c;

    json_object_set_string_member(props, "qom-type", type);
    json_object_set_string_member(props, "id", id);
    json_object_set_string_member(props, "dir", path);
    json_object_set_string_member(props, "endpoint", endpoint);
    if (extra) {
        g_auto(GStrv) kv = g_strsplit(extra, "=", 2);
        json_object_set_string_member(props, kv[0], kv[1]);
    }
    user_object_del(id, NULL);
    g_assert_true(user_object_add(props, &err));
    g_assert_no_error(err);
    json_object_unref(props);
    c = tls_creds_lookup(id, g_str_equal(endpoint, "server") ? TLS_ENDPOINT_SERVER
                                                             : TLS_ENDPOINT_CLIENT, &err);
    g_assert_no_error(err);
    return c;
}

/* ---- one side of a connection ---- */

typedef struct Side {
    TlsCreds *creds;
    const char *hostname;
    const char *authz;
    int fd;
    TlsSession *s;
    bool ok;                    /* handshake and the ping/pong exchange */
    GError *err;
    char *identity;
    char *cipher;
} Side;

static void side_clear(Side *sd)
{
    tls_session_free(sd->s);
    tls_creds_unref(sd->creds);
    g_clear_error(&sd->err);
    g_free(sd->identity);
    g_free(sd->cipher);
    if (sd->fd >= 0) {
        close(sd->fd);
    }
}

static bool exchange(Side *sd, const char *say, const char *expect)
{
    char buf[16] = "";
    size_t got = 0;

    if (!tls_session_write_all(sd->s, say, strlen(say), TIMEOUT_MS, &sd->err)) {
        return false;
    }
    while (got < strlen(expect)) {
        ssize_t n = tls_session_read(sd->s, buf + got, strlen(expect) - got, TIMEOUT_MS,
                                     &sd->err);
        if (n <= 0) {
            if (n == 0) {
                g_set_error(&sd->err, TLS_ERROR, TLS_ERR_IO, "end of stream");
            }
            return false;
        }
        got += (size_t)n;
    }
    g_assert_cmpstr(buf, ==, expect);
    return true;
}

/* Handshake, then the client says ping and the server pong.  A side that
 * fails shuts its socket, as a real user would close it. */
static void run_side(Side *sd, bool server)
{
    sd->s = tls_session_new(sd->creds, sd->fd, sd->hostname, sd->authz, &sd->err);
    sd->ok = sd->s && tls_session_handshake(sd->s, TIMEOUT_MS, &sd->err) &&
             exchange(sd, server ? "pong" : "ping", server ? "ping" : "pong");
    if (sd->ok) {
        sd->identity = g_strdup(tls_session_peer_identity(sd->s));
        sd->cipher = g_strdup(tls_session_cipher(sd->s));
    } else {
        socket_shutdown_drain(sd->fd, TIMEOUT_MS);
    }
}

static gpointer server_thread(gpointer data)
{
    run_side(data, true);
    return NULL;
}

/* Both sides over a socketpair; returns the seconds it took. */
static double connect_pair(Side *srv, Side *cli)
{
    int sv[2];
    gint64 start = g_get_monotonic_time();

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), ==, 0);
    srv->fd = sv[0];
    cli->fd = sv[1];
    GThread *t = g_thread_new("tls-server", server_thread, srv);
    run_side(cli, false);
    g_thread_join(t);
    return (g_get_monotonic_time() - start) / 1e6;
}

static void assert_msg(GError *err, const char *part)
{
    g_assert_nonnull(err);
    if (!strstr(err->message, part)) {
        g_error("message '%s' lacks '%s'", err->message, part);
    }
}

/* Both sides fail, quickly, each saying PART. */
static void expect_refusal(Side *srv, Side *cli, const char *srv_part, const char *cli_part)
{
    double secs = connect_pair(srv, cli);

    g_test_message("server: %s", srv->err ? srv->err->message : "ok");
    g_test_message("client: %s", cli->err ? cli->err->message : "ok");
    g_assert_false(srv->ok);
    g_assert_false(cli->ok);
    assert_msg(srv->err, srv_part);
    assert_msg(cli->err, cli_part);
    g_assert_cmpfloat(secs, <, 3.0);
    side_clear(srv);
    side_clear(cli);
}

/* ---- handshakes ---- */

static void test_x509_ok(void)
{
    Side srv = { .creds = creds("s", "tls-creds-x509", "srv", "server", NULL) };
    Side cli = { .creds = creds("c", "tls-creds-x509", "cli", "client", NULL),
                 .hostname = "localhost" };

    connect_pair(&srv, &cli);
    g_assert_no_error(srv.err);
    g_assert_no_error(cli.err);
    g_assert_true(srv.ok && cli.ok);
    g_assert_cmpstr(srv.identity, ==, "O=blkmig,CN=client1");
    g_assert_cmpstr(cli.identity, ==, "O=blkmig,CN=localhost");
    g_test_message("cipher: %s", cli.cipher);
    /* The default priority: TLS 1.3 with AES-128-GCM (NORMAL would pick
     * AES-256-GCM, which costs more CPU on every byte of a migration). */
    g_assert_nonnull(strstr(cli.cipher, "(TLS1.3)"));
    g_assert_nonnull(strstr(cli.cipher, "(AES-128-GCM)"));
    g_assert_cmpstr(srv.cipher, ==, cli.cipher);
    side_clear(&srv);
    side_clear(&cli);
}

/* A peer on GnuTLS's plain NORMAL (QEMU's default), either side: still
 * TLS 1.3 with AES-GCM, whichever order the initiating client asks for. */
static void check_normal_peer(bool normal_server)
{
    const char *prio = "priority=NORMAL";
    Side srv = { .creds = creds("s", "tls-creds-x509", "srv", "server",
                                normal_server ? prio : NULL) };
    Side cli = { .creds = creds("c", "tls-creds-x509", "cli", "client",
                                normal_server ? NULL : prio),
                 .hostname = "localhost" };

    connect_pair(&srv, &cli);
    g_assert_no_error(srv.err);
    g_assert_no_error(cli.err);
    g_assert_true(srv.ok && cli.ok);
    g_test_message("NORMAL %s: %s", normal_server ? "server" : "client", cli.cipher);
    g_assert_nonnull(strstr(cli.cipher, "(TLS1.3)"));
    g_assert_nonnull(strstr(cli.cipher, "-GCM)"));
    side_clear(&srv);
    side_clear(&cli);
}

static void test_x509_normal_peer(void)
{
    check_normal_peer(true);
    check_normal_peer(false);
}

static void test_x509_ip_hostname(void)
{
    Side srv = { .creds = creds("s", "tls-creds-x509", "srv", "server", NULL) };
    Side cli = { .creds = creds("c", "tls-creds-x509", "cli", "client", NULL),
                 .hostname = "127.0.0.1" };

    connect_pair(&srv, &cli);
    g_assert_no_error(cli.err);
    g_assert_true(srv.ok && cli.ok);
    side_clear(&srv);
    side_clear(&cli);
}

static void test_x509_wrong_ca(void)
{
    /* The client trusts another CA than the one that signed the server. */
    Side srv = { .creds = creds("s", "tls-creds-x509", "srv", "server", NULL) };
    Side cli = { .creds = creds("c", "tls-creds-x509", "cli-other-ca", "client", NULL),
                 .hostname = "localhost" };

    expect_refusal(&srv, &cli, "it does not trust the CA that signed our certificate",
                   "the server's certificate "
                   "(O=blkmig,CN=localhost) is refused: The certificate is NOT trusted. "
                   "The certificate issuer is unknown.");
}

static void test_x509_client_of_other_ca(void)
{
    /* A client certificate the server's CA did not sign. */
    Side srv = { .creds = creds("s", "tls-creds-x509", "srv", "server", NULL) };
    Side cli = { .creds = creds("c", "tls-creds-x509", "cli-foreign", "client",
                                "sanity-check=off"), .hostname = "localhost" };

    /* GnuTLS sends only a certificate the server's CA list names: none. */
    expect_refusal(&srv, &cli, "the client sent no certificate signed by our CA",
                   "it requires a client certificate signed by its CA");
}

static void test_x509_expired_peer(void)
{
    Side srv = { .creds = creds("s", "tls-creds-x509", "srv", "server", NULL) };
    Side cli = { .creds = creds("c", "tls-creds-x509", "cli-expired", "client",
                                "sanity-check=off"), .hostname = "localhost" };

    expect_refusal(&srv, &cli, "the client's certificate (O=blkmig,CN=old) is refused: "
                   "The certificate is NOT trusted. The certificate chain uses expired "
                   "certificate.", "by its clock our certificate expired");
}

static void test_x509_no_client_cert(void)
{
    Side srv = { .creds = creds("s", "tls-creds-x509", "srv", "server", NULL) };
    Side cli = { .creds = creds("c", "tls-creds-x509", "cli-nocert", "client", NULL),
                 .hostname = "localhost" };

    expect_refusal(&srv, &cli, "the client sent no certificate signed by our CA, and "
                   "verify-peer is on", "it requires a client certificate");
}

static void test_x509_no_client_cert_unverified(void)
{
    /* verify-peer=off on the server: a client without a certificate is
     * served, and shows no identity. */
    Side srv = { .creds = creds("s", "tls-creds-x509", "srv", "server", "verify-peer=off") };
    Side cli = { .creds = creds("c", "tls-creds-x509", "cli-nocert", "client", NULL),
                 .hostname = "localhost" };

    connect_pair(&srv, &cli);
    g_assert_no_error(srv.err);
    g_assert_true(srv.ok && cli.ok);
    g_assert_null(srv.identity);
    side_clear(&srv);
    side_clear(&cli);
}

static void test_x509_hostname(void)
{
    Side srv = { .creds = creds("s", "tls-creds-x509", "srv", "server", NULL) };
    Side cli = { .creds = creds("c", "tls-creds-x509", "cli", "client", NULL),
                 .hostname = "dst.example.com" };

    expect_refusal(&srv, &cli, "the client refused it", "The name in the certificate does "
                   "not match the expected.");
}

static void add_authz(const char *json)
{
    JsonNode *node = json_from_string(json, NULL);
    GError *err = NULL;

    user_object_del(json_object_get_string_member(json_node_get_object(node), "id"), NULL);
    g_assert_true(user_object_add(json_node_get_object(node), &err));
    g_assert_no_error(err);
    json_node_unref(node);
}

static void test_x509_authz(void)
{
    add_authz("{\"qom-type\": \"authz-simple\", \"id\": \"auth-ok\", "
              "\"identity\": \"O=blkmig,CN=client1\"}");
    add_authz("{\"qom-type\": \"authz-list\", \"id\": \"auth-no\", \"policy\": \"allow\", "
              "\"rules\": [{\"match\": \"*CN=client*\", \"policy\": \"deny\", "
              "\"format\": \"glob\"}]}");
    Side srv = { .creds = creds("s", "tls-creds-x509", "srv", "server", NULL),
                 .authz = "auth-ok" };
    Side cli = { .creds = creds("c", "tls-creds-x509", "cli", "client", NULL),
                 .hostname = "localhost" };

    connect_pair(&srv, &cli);
    g_assert_no_error(srv.err);
    g_assert_true(srv.ok && cli.ok);
    side_clear(&srv);
    side_clear(&cli);

    Side srv2 = { .creds = creds("s", "tls-creds-x509", "srv", "server", NULL),
                  .authz = "auth-no" };
    Side cli2 = { .creds = creds("c", "tls-creds-x509", "cli", "client", NULL),
                  .hostname = "localhost" };
    expect_refusal(&srv2, &cli2, "the client's identity 'O=blkmig,CN=client1' is not "
                   "allowed by tls-authz", "is not in its tls-authz list");
}

static void test_psk_ok(void)
{
    Side srv = { .creds = creds("s", "tls-creds-psk", "psk-srv", "server", NULL) };
    Side cli = { .creds = creds("c", "tls-creds-psk", "psk-cli", "client", "username=alice") };

    connect_pair(&srv, &cli);
    g_assert_no_error(srv.err);
    g_assert_no_error(cli.err);
    g_assert_cmpstr(srv.identity, ==, "alice");
    g_assert_cmpstr(cli.identity, ==, "alice");
    g_test_message("cipher: %s", cli.cipher);
    g_assert_nonnull(strstr(cli.cipher, "(AES-128-GCM)"));
    side_clear(&srv);
    side_clear(&cli);
}

static void test_psk_mismatch(void)
{
    Side srv = { .creds = creds("s", "tls-creds-psk", "psk-srv", "server", NULL) };
    Side cli = { .creds = creds("c", "tls-creds-psk", "psk-bad", "client", "username=alice") };

    expect_refusal(&srv, &cli, "the PSK keys most likely differ",
                   "the PSK keys most likely differ");
}

static void test_psk_unknown_user(void)
{
    Side srv = { .creds = creds("s", "tls-creds-psk", "psk-srv", "server", NULL) };
    Side cli = { .creds = creds("c", "tls-creds-psk", "psk-bad", "client", "username=carol") };

    expect_refusal(&srv, &cli, "unknown PSK user 'carol'", "does not know our PSK username");
}

static void test_psk_against_x509(void)
{
    Side srv = { .creds = creds("s", "tls-creds-x509", "srv", "server", NULL) };
    Side cli = { .creds = creds("c", "tls-creds-psk", "psk-cli", "client", "username=alice") };

    expect_refusal(&srv, &cli, "no common protocol or cipher (x509 against PSK",
                   "the peer uses another kind of credentials: x509 against PSK?");
}

/* A peer that connects and says nothing: the handshake ends at its
 * timeout, not later. */
static void test_silent_peer(void)
{
    TlsCreds *c = creds("s", "tls-creds-x509", "srv", "server", NULL);
    int sv[2];
    GError *err = NULL;

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
    TlsSession *s = tls_session_new(c, sv[0], NULL, NULL, &err);
    gint64 start = g_get_monotonic_time();
    g_assert_false(tls_session_handshake(s, 300, &err));
    gint64 took_ms = (g_get_monotonic_time() - start) / 1000;
    g_test_message("%s (after %" G_GINT64_FORMAT " ms)", err->message, took_ms);
    g_assert_error(err, TLS_ERROR, TLS_ERR_TIMEOUT);
    assert_msg(err, "TLS handshake timed out after 300 ms");
    g_assert_cmpint(took_ms, >=, 290);
    g_assert_cmpint(took_ms, <, 2000);
    g_error_free(err);
    tls_session_free(s);
    tls_creds_unref(c);
    close(sv[0]);
    close(sv[1]);
}

/* A plain QMP server where a TLS one was expected. */
static void test_not_tls(void)
{
    TlsCreds *c = creds("c", "tls-creds-x509", "cli", "client", NULL);
    static const char greeting[] = "{\"QMP\": {\"version\": {}, \"capabilities\": []}}\r\n";
    int sv[2];
    GError *err = NULL;

    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), ==, 0);
    g_assert_cmpint(write(sv[1], greeting, strlen(greeting)), ==, (ssize_t)strlen(greeting));
    TlsSession *s = tls_session_new(c, sv[0], "localhost", NULL, &err);
    g_assert_false(tls_session_handshake(s, TIMEOUT_MS, &err));
    g_test_message("%s", err->message);
    assert_msg(err, "does not seem to speak TLS");
    g_error_free(err);
    tls_session_free(s);
    tls_creds_unref(c);
    close(sv[0]);
    close(sv[1]);
}

static void test_options(void)
{
    TlsCreds *c = creds("c", "tls-creds-x509", "cli", "client", NULL);
    TlsCreds *p = creds("p", "tls-creds-psk", "psk-srv", "server", NULL);
    GError *err = NULL;

    g_assert_null(tls_session_new(c, 0, NULL, NULL, &err));
    assert_msg(err, "checking the server's certificate needs the server's host name");
    g_clear_error(&err);
    g_assert_null(tls_session_new(p, 0, NULL, "auth-ok", &err));
    assert_msg(err, "tls-authz 'auth-ok' needs x509 credentials with endpoint=server");
    g_clear_error(&err);
    tls_creds_unref(c);
    tls_creds_unref(p);
}

/* ---- data ---- */

typedef struct Pair {
    Side srv, cli;
} Pair;

static void pair_open(Pair *p)
{
    memset(p, 0, sizeof(*p));
    p->srv.creds = creds("s", "tls-creds-x509", "srv", "server", NULL);
    p->cli.creds = creds("c", "tls-creds-x509", "cli", "client", NULL);
    p->cli.hostname = "localhost";
    connect_pair(&p->srv, &p->cli);
    g_assert_true(p->srv.ok && p->cli.ok);
}

static void pair_close(Pair *p)
{
    side_clear(&p->srv);
    side_clear(&p->cli);
}

static uint8_t *pattern(size_t len, unsigned seed)
{
    uint8_t *buf = g_malloc(len);
    GRand *r = g_rand_new_with_seed(seed);

    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)g_rand_int(r);
    }
    g_rand_free(r);
    return buf;
}

typedef struct Transfer {
    TlsSession *s;
    const uint8_t *data;
    size_t len;
    bool ok;
} Transfer;

static gpointer writer_thread(gpointer data)
{
    Transfer *t = data;
    GError *err = NULL;

    t->ok = tls_session_write_all(t->s, t->data, t->len, TIMEOUT_MS, &err);
    g_assert_no_error(err);
    return NULL;
}

/* Read exactly LEN bytes in reads of at most CHUNK, checking each read is
 * partial-friendly (returns at most what was asked). */
static uint8_t *read_exactly(TlsSession *s, size_t len, size_t chunk)
{
    uint8_t *buf = g_malloc(len);
    size_t got = 0;
    GError *err = NULL;

    while (got < len) {
        size_t want = MIN(chunk, len - got);
        ssize_t n = tls_session_read(s, buf + got, want, TIMEOUT_MS, &err);
        g_assert_no_error(err);
        g_assert_cmpint(n, >, 0);
        g_assert_cmpint(n, <=, (ssize_t)want);
        got += (size_t)n;
    }
    return buf;
}

static void test_io_large_and_partial(void)
{
    Pair p;
    size_t len = 8 * 1024 * 1024 + 123;
    g_autofree uint8_t *data = pattern(len, 1);

    pair_open(&p);
    Transfer t = { p.cli.s, data, len, false };
    GThread *w = g_thread_new("writer", writer_thread, &t);
    g_autofree uint8_t *got = read_exactly(p.srv.s, len, 1000);
    g_thread_join(w);
    g_assert_true(t.ok);
    g_assert_cmpmem(got, len, data, len);
    pair_close(&p);
}

static void test_io_writev(void)
{
    Pair p;
    uint8_t header[16];
    size_t payload_len = 3 * 16384 + 77;
    g_autofree uint8_t *payload = pattern(payload_len, 2);
    GError *err = NULL;

    memset(header, 0xab, sizeof(header));
    struct iovec iov[3] = {
        { header, sizeof(header) }, { payload, payload_len }, { header, 3 },
    };
    size_t total = sizeof(header) + payload_len + 3;
    pair_open(&p);
    g_assert_true(tls_session_writev_all(p.cli.s, iov, 3, TIMEOUT_MS, &err));
    g_assert_no_error(err);
    g_autofree uint8_t *got = read_exactly(p.srv.s, total, total);
    g_assert_cmpmem(got, sizeof(header), header, sizeof(header));
    g_assert_cmpmem(got + sizeof(header), payload_len, payload, payload_len);
    g_assert_cmpmem(got + sizeof(header) + payload_len, 3, header, 3);
    pair_close(&p);
}

/* Both directions at once on each session: one thread sends while
 * another receives (GnuTLS allows one of each). */
static void test_io_full_duplex(void)
{
    Pair p;
    size_t len = 4 * 1024 * 1024;
    g_autofree uint8_t *a = pattern(len, 3), *b = pattern(len, 4);

    pair_open(&p);
    Transfer ta = { p.cli.s, a, len, false }, tb = { p.srv.s, b, len, false };
    GThread *wa = g_thread_new("wa", writer_thread, &ta);
    GThread *wb = g_thread_new("wb", writer_thread, &tb);
    g_autofree uint8_t *got_a = read_exactly(p.srv.s, len, 65536);
    g_autofree uint8_t *got_b = read_exactly(p.cli.s, len, 65536);
    g_thread_join(wa);
    g_thread_join(wb);
    g_assert_cmpmem(got_a, len, a, len);
    g_assert_cmpmem(got_b, len, b, len);
    pair_close(&p);
}

static void test_io_end(void)
{
    Pair p;
    char buf[8];
    GError *err = NULL;

    pair_open(&p);
    /* close_notify: the reader sees the end; the other direction works on. */
    g_assert_true(tls_session_bye(p.cli.s, TIMEOUT_MS, &err));
    g_assert_cmpint(tls_session_read(p.srv.s, buf, sizeof(buf), TIMEOUT_MS, &err), ==, 0);
    g_assert_true(tls_session_write_all(p.srv.s, "late", 4, TIMEOUT_MS, &err));
    g_assert_cmpint(tls_session_read(p.cli.s, buf, sizeof(buf), TIMEOUT_MS, &err), ==, 4);
    g_assert_no_error(err);
    /* A socket closed without close_notify reads as the end too. */
    shutdown(p.cli.fd, SHUT_RDWR);
    g_assert_cmpint(tls_session_read(p.srv.s, buf, sizeof(buf), TIMEOUT_MS, &err), ==, 0);
    /* Writing to it fails with a message and errno, and no SIGPIPE. */
    gboolean ok = tls_session_write_all(p.srv.s, "x", 1, TIMEOUT_MS, &err);
    g_assert_false(ok);
    g_test_message("%s", err->message);
    g_assert_error(err, TLS_ERROR, TLS_ERR_IO);
    assert_msg(err, "TLS send failed: Broken pipe");
    g_clear_error(&err);
    pair_close(&p);
}

/* Decrypted or read-ahead bytes wait inside the session, where poll()
 * cannot see them: pending says so, and a receive takes them at once. */
static void test_io_pending(void)
{
    Pair p;
    char buf[100];
    GError *err = NULL;

    pair_open(&p);
    g_assert_true(tls_session_write_all(p.cli.s, "0123456789", 10, TIMEOUT_MS, &err));
    g_assert_cmpint(tls_session_read(p.srv.s, buf, 4, TIMEOUT_MS, &err), ==, 4);
    g_assert_cmpuint(tls_session_pending(p.srv.s), >=, 6);
    g_assert_cmpint(tls_session_recv(p.srv.s, buf, sizeof(buf), &err), ==, 6);
    g_assert_cmpmem(buf, 6, "456789", 6);
    g_assert_cmpint(tls_session_recv(p.srv.s, buf, sizeof(buf), &err), ==, -1);
    g_assert_cmpint(errno, ==, EAGAIN);
    g_assert_no_error(err);
    pair_close(&p);
}

typedef struct Drain {
    TlsSession *s;
    size_t len;
    uint8_t *got;
} Drain;

static gpointer drain_thread(gpointer data)
{
    Drain *d = data;

    d->got = read_exactly(d->s, d->len, 65536);
    return NULL;
}

/* A send into a full socket says EAGAIN, and its retries with the same
 * bytes (once the peer reads) go on where it stopped, so that every byte
 * arrives once, in order. */
static void test_io_send_when_full(void)
{
    Pair p;
    size_t len = 4 * 1024 * 1024, sent = 0;
    g_autofree uint8_t *data = pattern(len, 6);
    GError *err = NULL;
    ssize_t n;

    pair_open(&p);
    while ((n = tls_session_send(p.cli.s, data + sent, len - sent, &err)) > 0) {
        sent += (size_t)n;
    }
    g_assert_cmpint(n, ==, -1);
    g_assert_cmpint(errno, ==, EAGAIN);
    g_assert_cmpuint(sent, <, len);
    Drain d = { p.srv.s, len, NULL };
    GThread *t = g_thread_new("drain", drain_thread, &d);
    while (sent < len) {
        struct pollfd pfd = { .fd = p.cli.fd, .events = POLLOUT };
        n = tls_session_send(p.cli.s, data + sent, len - sent, &err);
        g_assert_no_error(err);
        if (n < 0) {
            g_assert_cmpint(errno, ==, EAGAIN);
            g_assert_cmpint(poll(&pfd, 1, TIMEOUT_MS), ==, 1);
        }
        sent += n > 0 ? (size_t)n : 0;
    }
    g_thread_join(t);
    g_assert_cmpuint(sent, ==, len);
    g_assert_cmpmem(d.got, len, data, len);
    g_free(d.got);
    pair_close(&p);
}

static void test_io_timeout(void)
{
    Pair p;
    char buf[8];
    GError *err = NULL;

    pair_open(&p);
    g_assert_cmpint(tls_session_read(p.srv.s, buf, sizeof(buf), 200, &err), ==, -1);
    g_assert_error(err, TLS_ERROR, TLS_ERR_TIMEOUT);
    g_assert_cmpint(errno, ==, ETIMEDOUT);
    g_clear_error(&err);
    pair_close(&p);
}

/* ---- set-up: every credential the cases use ---- */

static void make_credentials(void)
{
    g_autofree char *ca = dir_of("ca"), *ca2 = dir_of("ca2");
    g_autofree char *srv = dir_of("srv"), *cli = dir_of("cli");
    g_autofree char *other = dir_of("cli-other-ca"), *foreign = dir_of("cli-foreign");
    g_autofree char *expired = dir_of("cli-expired"), *nocert = dir_of("cli-nocert");
    g_autofree char *psk_srv = dir_of("psk-srv"), *psk_cli = dir_of("psk-cli");
    g_autofree char *psk_bad = dir_of("psk-bad");
    g_autofree char *ca_cert = g_build_filename(ca, "ca-cert.pem", NULL);

    tt_make_ca(ca, "blkmig test CA");
    tt_make_ca(ca2, "another CA");
    tt_make_cert(srv, ca, "server", "localhost", false);
    tt_make_cert(cli, ca, "client", "client1", false);
    tt_make_cert(other, ca2, "client", "client1", false);
    tt_make_cert(foreign, ca2, "client", "intruder", false);
    tt_make_cert(expired, ca, "client", "old", true);
    g_autofree char *foreign_ca = g_build_filename(foreign, "ca-cert.pem", NULL);
    tt_copy(ca_cert, foreign_ca);           /* trusts the right CA, signed by another */
    g_mkdir_with_parents(nocert, 0700);
    g_autofree char *nocert_ca = g_build_filename(nocert, "ca-cert.pem", NULL);
    tt_copy(ca_cert, nocert_ca);
    tt_make_psk(psk_srv, "alice");
    tt_make_psk(psk_srv, "bob");
    g_mkdir_with_parents(psk_cli, 0700);
    g_autofree char *from = g_build_filename(psk_srv, "keys.psk", NULL);
    g_autofree char *to = g_build_filename(psk_cli, "keys.psk", NULL);
    tt_copy(from, to);
    tt_make_psk(psk_bad, "alice");          /* same user, another key */
    tt_make_psk(psk_bad, "carol");
}

static void remove_tmp(void)
{
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmp);
    if (!g_getenv("KEEP_TMP") && system(cmd) != 0) {
        g_printerr("cannot remove %s\n", tmp);
    }
}

int main(int argc, char **argv)
{
    int rc;

    g_test_init(&argc, &argv, NULL);
    tmp = g_dir_make_tmp("test-tls-XXXXXX", NULL);
    make_credentials();
    g_test_add_func("/tls/x509/ok", test_x509_ok);
    g_test_add_func("/tls/x509/normal-peer", test_x509_normal_peer);
    g_test_add_func("/tls/x509/ip-hostname", test_x509_ip_hostname);
    g_test_add_func("/tls/x509/wrong-ca", test_x509_wrong_ca);
    g_test_add_func("/tls/x509/client-of-other-ca", test_x509_client_of_other_ca);
    g_test_add_func("/tls/x509/expired-peer", test_x509_expired_peer);
    g_test_add_func("/tls/x509/no-client-cert", test_x509_no_client_cert);
    g_test_add_func("/tls/x509/no-client-cert-unverified", test_x509_no_client_cert_unverified);
    g_test_add_func("/tls/x509/hostname", test_x509_hostname);
    g_test_add_func("/tls/x509/authz", test_x509_authz);
    g_test_add_func("/tls/psk/ok", test_psk_ok);
    g_test_add_func("/tls/psk/mismatch", test_psk_mismatch);
    g_test_add_func("/tls/psk/unknown-user", test_psk_unknown_user);
    g_test_add_func("/tls/psk/against-x509", test_psk_against_x509);
    g_test_add_func("/tls/handshake/silent-peer", test_silent_peer);
    g_test_add_func("/tls/handshake/not-tls", test_not_tls);
    g_test_add_func("/tls/handshake/options", test_options);
    g_test_add_func("/tls/io/large-and-partial", test_io_large_and_partial);
    g_test_add_func("/tls/io/writev", test_io_writev);
    g_test_add_func("/tls/io/full-duplex", test_io_full_duplex);
    g_test_add_func("/tls/io/end", test_io_end);
    g_test_add_func("/tls/io/pending", test_io_pending);
    g_test_add_func("/tls/io/timeout", test_io_timeout);
    g_test_add_func("/tls/io/send-when-full", test_io_send_when_full);
    rc = g_test_run();
    user_objects_clear();
    remove_tmp();
    return rc;
}
