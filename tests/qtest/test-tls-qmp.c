/* Whole daemons with TLS objects (--object, object-add, object-del) and
 * QMP served over TLS on TCP: clients with the right credentials are
 * served; a client without a certificate, with one from another CA, one
 * tls-authz refuses, or a wrong PSK key is refused with a message on both
 * sides, while the monitor keeps serving everyone else.  Credentials are
 * made by certtool and psktool in the scratch directory. */
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../lib/tls-certs.h"
#include "libqtest.h"
#include "qapi/qmp-client.h"
#include "util/tls.h"

static char *dir_of(const char *name)
{
    return qtest_path(name);
}

static char *tcp_uri(int port)
{
    return g_strdup_printf("tcp:127.0.0.1:%d", port);
}

/* Client credentials from the scratch directory NAME. */
static TlsCreds *client_x509(const char *name)
{
    g_autofree char *dir = dir_of(name);
    GError *err = NULL;
    TlsCreds *c = tls_creds_new_x509(dir, TLS_ENDPOINT_CLIENT, true, &err);

    g_assert_no_error(err);
    return c;
}

static TlsCreds *client_psk(const char *name, const char *user)
{
    g_autofree char *dir = dir_of(name);
    GError *err = NULL;
    TlsCreds *c = tls_creds_new_psk(dir, TLS_ENDPOINT_CLIENT, user, &err);

    g_assert_no_error(err);
    return c;
}

static void assert_contains(const char *text, const char *part)
{
    if (!strstr(text, part)) {
        g_error("'%s' lacks '%s'", text, part);
    }
}

/* A TLS client that must be served: query-status answers. */
static QmpClient *open_ok(const char *uri, TlsCreds *creds)
{
    GError *err = NULL;
    QmpClient *c = qmp_client_open_tls(uri, creds, NULL, &err);

    g_assert_no_error(err);
    JsonNode *ret = qmp_client_execute(c, "query-status", NULL, NULL, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(qtest_json_str(ret, "status"), ==, "running");
    json_node_unref(ret);
    return c;
}

/* A client that must be refused: its error says CLIENT_PART, and within
 * a few seconds the daemon's log says DAEMON_PART. */
static void open_refused(QTestDaemon *d, const char *uri, TlsCreds *creds,
                         const char *client_part, const char *daemon_part)
{
    GError *err = NULL;
    gint64 start = g_get_monotonic_time();
    QmpClient *c = qmp_client_open_tls(uri, creds, NULL, &err);

    g_assert_null(c);
    g_test_message("client: %s", err->message);
    assert_contains(err->message, client_part);
    g_assert_cmpint(g_get_monotonic_time() - start, <, 5 * G_USEC_PER_SEC);
    g_clear_error(&err);
    for (int i = 0;; i++) {
        g_autofree char *log = NULL;
        g_file_get_contents(qtest_daemon_log(d), &log, NULL, NULL);
        if (log && strstr(log, daemon_part)) {
            break;
        }
        if (i == 50) {
            g_error("daemon log lacks '%s':\n%s", daemon_part, log ? log : "");
        }
        g_usleep(100 * 1000);
    }
}

static QTestDaemon *start_x509(int port, const char *extra)
{
    g_autofree char *srv = dir_of("srv");
    return qtest_daemon_start("tls", "--object tls-creds-x509,id=tls0,dir=%s,endpoint=server "
                              "--qmp tcp:127.0.0.1:%d,tls-creds=tls0%s", srv, port, extra);
}

/* A TCP connection that never starts its handshake. */
static int silent_connection(int port)
{
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_assert_cmpint(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), ==, 0);
    return fd;
}

static void test_x509(void)
{
    int port = qtest_free_port();
    g_autofree char *uri = tcp_uri(port);
    QTestDaemon *d = start_x509(port, "");
    TlsCreds *good = client_x509("cli"), *nocert = client_x509("cli-nocert");
    TlsCreds *other = client_x509("cli-other-ca");
    int silent = silent_connection(port);

    /* Served while another connection sits in its handshake. */
    QmpClient *c = open_ok(uri, good);
    open_refused(d, uri, nocert, "it requires a client certificate signed by its CA",
                 "QMP: refused TLS client 127.0.0.1:");
    open_refused(d, uri, nocert, "Certificate is required", "the client sent no "
                 "certificate signed by our CA, and verify-peer is on");
    open_refused(d, uri, other, "the server's certificate (O=blkmig,CN=localhost) is "
                 "refused: The certificate is NOT trusted. The certificate issuer is unknown.",
                 "the client refused it with alert 'CA is unknown'");
    /* The first client and new ones are still served. */
    JsonNode *ret = qmp_client_execute(c, "query-commands", NULL, NULL, NULL);
    g_autofree char *text = qmp_json_to_string(ret, false);
    assert_contains(text, "\"object-add\"");
    assert_contains(text, "\"object-del\"");
    json_node_unref(ret);
    qmp_client_close(open_ok(uri, good));
    g_autofree char *log = NULL;
    g_file_get_contents(qtest_daemon_log(d), &log, NULL, NULL);
    assert_contains(log, "QMP: TLS client 127.0.0.1:");
    assert_contains(log, " connected as 'O=blkmig,CN=client1'");
    qmp_client_close(c);
    close(silent);
    tls_creds_unref(good);
    tls_creds_unref(nocert);
    tls_creds_unref(other);
    qtest_daemon_quit(d);
}

static void test_authz(void)
{
    int port = qtest_free_port();
    g_autofree char *uri = tcp_uri(port);
    /* The ',' inside the distinguished name is written ',,'. */
    QTestDaemon *d = start_x509(port, ",tls-authz=auth0 --object authz-simple,id=auth0,"
                                "identity=O=blkmig,,CN=client1");
    TlsCreds *good = client_x509("cli"), *intruder = client_x509("cli-intruder");

    qmp_client_close(open_ok(uri, good));
    open_refused(d, uri, intruder, "our certificate's identity is not in its tls-authz list",
                 "the client's identity 'O=blkmig,CN=intruder' is not allowed by tls-authz");
    tls_creds_unref(good);
    tls_creds_unref(intruder);
    qtest_daemon_quit(d);
}

static void test_psk(void)
{
    int port = qtest_free_port();
    g_autofree char *uri = tcp_uri(port);
    g_autofree char *psk = dir_of("psk-srv");
    QTestDaemon *d = qtest_daemon_start("tls-psk", "--object tls-creds-psk,id=k,dir=%s,"
                                        "endpoint=server --qmp tcp:127.0.0.1:%d,tls-creds=k",
                                        psk, port);
    TlsCreds *good = client_psk("psk-cli", "alice"), *bad = client_psk("psk-bad", "alice");

    qmp_client_close(open_ok(uri, good));
    open_refused(d, uri, bad, "the PSK keys most likely differ",
                 "TLS handshake failed: An illegal parameter has been received. (the PSK "
                 "keys most likely differ)");
    tls_creds_unref(good);
    tls_creds_unref(bad);
    qtest_daemon_quit(d);
}

/* object-add and object-del over QMP (the unix monitor libqtest uses). */
static void test_object_commands(void)
{
    QTestDaemon *d = qtest_daemon_start("tls-obj", "--paused");
    g_autofree char *srv = dir_of("srv"), *empty = dir_of("cli-nocert"), *desc = NULL;
    char *cls;

    json_node_unref(qtest_qmp_ok(d, "{\"execute\": \"object-add\", \"arguments\": "
                                 "{\"qom-type\": \"tls-creds-x509\", \"id\": \"tls1\", "
                                 "\"dir\": \"%s\", \"endpoint\": \"server\", "
                                 "\"verify-peer\": false}}", srv));
    cls = qtest_qmp_error(d, &desc, "{\"execute\": \"object-add\", \"arguments\": "
                          "{\"qom-type\": \"tls-creds-x509\", \"id\": \"tls1\", "
                          "\"dir\": \"%s\", \"endpoint\": \"server\"}}", srv);
    g_assert_cmpstr(cls, ==, "GenericError");
    assert_contains(desc, "an object with id 'tls1' already exists");
    g_free(cls);
    g_clear_pointer(&desc, g_free);
    cls = qtest_qmp_error(d, &desc, "{\"execute\": \"object-add\", \"arguments\": "
                          "{\"qom-type\": \"tls-creds-x509\", \"id\": \"tls2\", "
                          "\"dir\": \"%s\", \"endpoint\": \"server\"}}", empty);
    assert_contains(desc, "tls-creds-x509 'tls2': missing certificate ");
    assert_contains(desc, "cli-nocert/server-cert.pem");
    g_free(cls);
    g_clear_pointer(&desc, g_free);
    json_node_unref(qtest_qmp_ok(d, "{\"execute\": \"object-add\", \"arguments\": "
                                 "{\"qom-type\": \"authz-list\", \"id\": \"auth1\", "
                                 "\"rules\": [{\"match\": \"O=blkmig,CN=*\", "
                                 "\"policy\": \"allow\", \"format\": \"glob\"}]}}"));
    json_node_unref(qtest_qmp_ok(d, "{\"execute\": \"object-del\", \"arguments\": "
                                 "{\"id\": \"tls1\"}}"));
    json_node_unref(qtest_qmp_ok(d, "{\"execute\": \"object-del\", \"arguments\": "
                                 "{\"id\": \"auth1\"}}"));
    cls = qtest_qmp_error(d, &desc, "{\"execute\": \"object-del\", \"arguments\": "
                          "{\"id\": \"tls1\"}}");
    g_assert_cmpstr(desc, ==, "object 'tls1' not found");
    g_free(cls);
    qtest_daemon_quit(d);
}

/* Start-ups that must fail: exit CODE, PART on stderr. */
static void expect_start_fails(int code, const char *part, const char *object,
                               const char *qmp)
{
    g_autofree char *out = NULL;
    int rc = qtest_daemon_run(10000, &out, "--object", object, "--qmp", qmp, NULL);

    g_assert_cmpint(rc, ==, code);
    assert_contains(out, part);
}

static void test_command_line_errors(void)
{
    g_autofree char *srv = dir_of("srv"), *nocert = dir_of("cli-nocert");
    g_autofree char *sock = qtest_path("never.qmp");
    g_autofree char *unix_qmp = g_strdup_printf("unix:%s", sock);
    g_autofree char *good = g_strdup_printf("tls-creds-x509,id=t,dir=%s,endpoint=server", srv);
    g_autofree char *missing = g_strdup_printf("tls-creds-x509,id=t,dir=%s,endpoint=server",
                                               nocert);
    g_autofree char *tcp = g_strdup_printf("tcp:127.0.0.1:%d,tls-creds=t", qtest_free_port());
    g_autofree char *tcp_other = g_strdup_printf("tcp:127.0.0.1:%d,tls-creds=nope",
                                                 qtest_free_port());

    g_autofree char *help = NULL;
    g_assert_cmpint(qtest_daemon_run(5000, &help, "--help", NULL), ==, 0);
    assert_contains(help, "--object tls-creds-x509,id=ID,dir=DIR");
    assert_contains(help, "--object tls-creds-psk,id=ID,dir=DIR");
    assert_contains(help, "--object authz-simple,id=ID,identity=DN");
    assert_contains(help, "tcp:HOST:PORT[,tls-creds=ID[,tls-authz=ID]]");
    expect_start_fails(64, "--object: tls-creds-x509 't': 'dir' is missing",
                       "tls-creds-x509,id=t", unix_qmp);
    expect_start_fails(64, "--object: unknown object type 'tls-creds'",
                       "tls-creds,id=t,dir=/x", unix_qmp);
    expect_start_fails(64, "--object: tls-creds-x509 't': unknown property 'verify'",
                       "tls-creds-x509,id=t,dir=/x,verify=on", unix_qmp);
    g_autofree char *unix_tls = g_strdup_printf("%s,tls-creds=t", unix_qmp);
    expect_start_fails(64, "--qmp: TLS options need a tcp: address", good, unix_tls);
    expect_start_fails(1, "missing certificate ", missing, unix_qmp);
    expect_start_fails(1, "cli-nocert/server-cert.pem", missing, unix_qmp);
    expect_start_fails(1, "no TLS credentials with id 'nope'", good, tcp_other);
    g_autofree char *client = g_strdup_printf("tls-creds-x509,id=t,dir=%s", nocert);
    expect_start_fails(1, "tls-creds-x509 't' are for endpoint=client; a server needs "
                       "endpoint=server", client, tcp);
}

/* The blkmig tool with --tls-creds / --tls-psk. */
static int run_tool(char **err_out, const char *const *args)
{
    GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
    int status = 0;
    GError *err = NULL;

    g_ptr_array_add(argv, qtest_tool_path());
    for (; *args; args++) {
        g_ptr_array_add(argv, g_strdup(*args));
    }
    g_ptr_array_add(argv, NULL);
    g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_STDOUT_TO_DEV_NULL, NULL, NULL,
                 NULL, err_out, &status, &err);
    g_assert_no_error(err);
    g_ptr_array_free(argv, TRUE);
    g_test_message("blkmig: exit %d: %s", WEXITSTATUS(status), *err_out);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_tool(void)
{
    int port = qtest_free_port();
    g_autofree char *uri = tcp_uri(port), *cli = dir_of("cli"), *nocert = dir_of("cli-nocert");
    g_autofree char *err = NULL;
    QTestDaemon *d = start_x509(port, "");
    const char *ok[] = { "qmp", "--tls-creds", cli, uri, "query-status", NULL };
    const char *refused[] = { "qmp", "--tls-creds", nocert, uri, "query-status", NULL };
    const char *missing[] = { "qmp", "--tls-creds", "/nonexistent", uri, "query-status", NULL };

    g_assert_cmpint(run_tool(&err, ok), ==, 0);
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(run_tool(&err, refused), ==, 1);
    assert_contains(err, "it requires a client certificate");
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(run_tool(&err, missing), ==, 1);
    assert_contains(err, "blkmig: --tls-creds: x509 credentials in /nonexistent: directory "
                    "/nonexistent: No such file or directory");
    qtest_daemon_quit(d);
}

static void make_credentials(void)
{
    g_autofree char *ca = dir_of("ca"), *ca2 = dir_of("ca2"), *srv = dir_of("srv");
    g_autofree char *cli = dir_of("cli"), *other = dir_of("cli-other-ca");
    g_autofree char *intruder = dir_of("cli-intruder"), *nocert = dir_of("cli-nocert");
    g_autofree char *psk_srv = dir_of("psk-srv"), *psk_cli = dir_of("psk-cli");
    g_autofree char *psk_bad = dir_of("psk-bad");
    g_autofree char *ca_cert = g_build_filename(ca, "ca-cert.pem", NULL);
    g_autofree char *nocert_ca = g_build_filename(nocert, "ca-cert.pem", NULL);
    g_autofree char *psk_from = g_build_filename(psk_srv, "keys.psk", NULL);
    g_autofree char *psk_to = g_build_filename(psk_cli, "keys.psk", NULL);

    tt_make_ca(ca, "qtest CA");
    tt_make_ca(ca2, "other CA");
    tt_make_cert(srv, ca, "server", "localhost", false);
    tt_make_cert(cli, ca, "client", "client1", false);
    tt_make_cert(intruder, ca, "client", "intruder", false);
    tt_make_cert(other, ca2, "client", "client1", false);
    g_mkdir_with_parents(nocert, 0700);
    tt_copy(ca_cert, nocert_ca);
    tt_make_psk(psk_srv, "alice");
    g_mkdir_with_parents(psk_cli, 0700);
    tt_copy(psk_from, psk_to);
    tt_make_psk(psk_bad, "alice");
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    make_credentials();
    g_test_add_func("/tls-qmp/x509", test_x509);
    g_test_add_func("/tls-qmp/authz", test_authz);
    g_test_add_func("/tls-qmp/psk", test_psk);
    g_test_add_func("/tls-qmp/object-commands", test_object_commands);
    g_test_add_func("/tls-qmp/command-line-errors", test_command_line_errors);
    g_test_add_func("/tls-qmp/tool", test_tool);
    return g_test_run();
}
