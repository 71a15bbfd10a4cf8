/* blkmigd's NBD export over TLS (NBD_OPT_STARTTLS) with real clients:
 * nbdinfo --map and nbdcopy with nbds:// URIs and --tls-certificates (or
 * a PSK file), qemu-img with a tls-creds object, and blkmigd's own NBD
 * client driver (--drive file=nbds://...,tls-creds=ID).  With tls-creds
 * the export requires TLS by default (plain clients are refused), tls=on
 * makes it optional, and a client whose certificate the CA did not sign is
 * refused with a reason in blkmigd's log. */
#include <json-glib/json-glib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/tls-certs.h"
#include "../qtest/libqtest.h"
#include "interop.h"

#define MiB (1024 * 1024)

typedef struct Export {
    QTestDaemon *d;
    char *img;
    int port;
    char *uri;          /* nbds://127.0.0.1:PORT/disk0 */
} Export;

static char *scratch(const char *name)
{
    return qtest_path(name);
}

/* "srv" and "cli" from one CA; "stranger" from another (trusting ours);
 * "psk" keys. */
static void make_credentials(void)
{
    static bool made;
    g_autofree char *ca = scratch("ca"), *other = scratch("other-ca");
    g_autofree char *srv = scratch("srv"), *cli = scratch("cli");
    g_autofree char *stranger = scratch("stranger"), *psk = scratch("psk");

    if (made) {
        return;
    }
    made = true;
    tt_make_ca(ca, "nbd CA");
    tt_make_ca(other, "other CA");
    tt_make_cert(srv, ca, "server", "localhost", false);
    tt_make_cert(cli, ca, "client", "reader", false);
    tt_make_cert(stranger, other, "client", "stranger", false);
    {
        /* It trusts our server: only the server refuses. */
        g_autofree char *ca_cert = g_build_filename(ca, "ca-cert.pem", NULL);
        g_autofree char *copy = g_build_filename(stranger, "ca-cert.pem", NULL);
        tt_copy(ca_cert, copy);
    }
    tt_make_psk(psk, "qemu");
}

/* A sparse disk exported on TCP with OBJECT and NBD_OPTS (after the
 * address), guest running. */
static void export_start(Export *e, const char *object, const char *nbd_opts)
{
    make_credentials();
    e->img = scratch("tls-export.img");
    qtest_disk_create(e->img, 64 * MiB);
    qtest_disk_scatter(e->img, 3, 10, 4096);
    qtest_disk_scatter(e->img, 4, 4, MiB);
    e->port = qtest_free_port();
    e->uri = g_strdup_printf("nbds://127.0.0.1:%d/disk0", e->port);
    e->d = qtest_daemon_start("exp", "--drive id=disk0,file=%s %s --nbd "
                              "tcp:127.0.0.1:%d,%s", e->img, object, e->port, nbd_opts);
    qtest_wait_runstate(e->d, "running", 10000);
}

static void export_stop(Export *e)
{
    qtest_daemon_quit(e->d);
    unlink(e->img);
    g_free(e->img);
    g_free(e->uri);
}

static char *x509_server(void)
{
    g_autofree char *srv = scratch("srv");
    return g_strdup_printf("--object tls-creds-x509,id=tls0,dir=%s,endpoint=server", srv);
}

static char *tls_uri(const Export *e, const char *creds_dir)
{
    g_autofree char *dir = scratch(creds_dir);
    return g_strdup_printf("%s?tls-certificates=%s", e->uri, dir);
}

/* nbdinfo --map over TLS reports exactly the file's data and holes. */
static void test_nbdinfo_map(void)
{
    g_autofree char *server = NULL, *uri = NULL;
    g_autoptr(GArray) want = NULL, got = NULL;
    Export e;

    if (!interop_need("nbdinfo")) {
        return;
    }
    server = x509_server();
    export_start(&e, server, "tls-creds=tls0");
    want = interop_file_extents(e.img);
    uri = tls_uri(&e, "cli");
    got = interop_nbdinfo_map(uri);
    interop_assert_extents_equal(want, got, "nbdinfo --map over TLS");
    g_autofree char *log = qtest_daemon_log_tail(e.d);
    g_assert_nonnull(strstr(log, "TLS client O=blkmig,CN=reader"));
    export_stop(&e);
}

/* The default with tls-creds: nothing in the clear; a certificate from
 * another CA is refused too, and the log says why. */
static void test_required(void)
{
    g_autofree char *server = NULL, *plain = NULL, *stranger = NULL, *err = NULL;
    Export e;

    if (!interop_need("nbdinfo")) {
        return;
    }
    server = x509_server();
    export_start(&e, server, "tls-creds=tls0");
    plain = g_strdup_printf("nbd://127.0.0.1:%d/disk0", e.port);
    g_assert_cmpint(interop_run(NULL, &err, "nbdinfo", "--map", plain, NULL), !=, 0);
    g_assert_nonnull(strstr(err, "requires TLS"));
    stranger = tls_uri(&e, "stranger");
    g_clear_pointer(&err, g_free);
    g_assert_cmpint(interop_run(NULL, &err, "nbdinfo", stranger, NULL), !=, 0);
    g_autofree char *log = qtest_daemon_log_tail(e.d);
    g_assert_nonnull(strstr(log, "refused TLS client"));
    export_stop(&e);
}

/* tls=on: TLS is offered, the clear still served. */
static void test_optional(void)
{
    g_autofree char *server = NULL, *plain = NULL, *uri = NULL;
    Export e;

    if (!interop_need("nbdinfo")) {
        return;
    }
    server = x509_server();
    export_start(&e, server, "tls-creds=tls0,tls=on");
    plain = g_strdup_printf("nbd://127.0.0.1:%d/disk0", e.port);
    uri = tls_uri(&e, "cli");
    g_assert_cmpint(interop_run(NULL, NULL, "nbdinfo", "--size", plain, NULL), ==, 0);
    g_assert_cmpint(interop_run(NULL, NULL, "nbdinfo", "--size", uri, NULL), ==, 0);
    export_stop(&e);
}

/* nbdcopy with PSK, qemu-img with a tls-creds object: the same bytes. */
static void test_copy_psk_and_qemu_img(void)
{
    g_autofree char *psk = scratch("psk"), *server = NULL;
    g_autofree char *copy = scratch("tls-copy.img"), *keys = NULL, *uri = NULL;
    g_autofree char *obj = NULL, *opts = NULL, *out = NULL;
    Export e;

    if (!interop_need("nbdcopy") || !interop_need("qemu-img")) {
        return;
    }
    make_credentials();
    server = g_strdup_printf("--object tls-creds-psk,id=tls0,dir=%s,endpoint=server", psk);
    export_start(&e, server, "tls-creds=tls0");
    keys = g_build_filename(psk, "keys.psk", NULL);
    /* libnbd takes the PSK username from the URI's user part. */
    uri = g_strdup_printf("nbds://qemu@127.0.0.1:%d/disk0?tls-psk-file=%s", e.port, keys);
    g_assert_cmpint(interop_run(NULL, NULL, "nbdcopy", uri, copy, NULL), ==, 0);
    g_assert_true(qtest_files_equal(e.img, copy, NULL));
    obj = g_strdup_printf("tls-creds-psk,id=c0,dir=%s,endpoint=client,username=qemu", psk);
    opts = g_strdup_printf("driver=nbd,server.type=inet,server.host=127.0.0.1,"
                           "server.port=%d,export=disk0,tls-creds=c0", e.port);
    g_assert_cmpint(interop_run(&out, NULL, "qemu-img", "info", "--object", obj,
                                "--image-opts", opts, NULL), ==, 0);
    g_assert_nonnull(strstr(out, "67108864 bytes"));
    unlink(copy);
    export_stop(&e);
}

/* blkmigd's own NBD client: a drive on the TLS export, re-exported in
 * the clear on a unix socket, reads the same bytes; without tls-creds,
 * or with an nbd:// URI, it is refused. */
static void test_blkmigd_client(void)
{
    g_autofree char *server = NULL, *cli = scratch("cli"), *sock = scratch("relay.nbd");
    g_autofree char *copy = scratch("relay-copy.img"), *relay_uri = NULL, *out = NULL;
    QTestDaemon *relay;
    Export e;

    if (!interop_need("nbdcopy")) {
        return;
    }
    server = x509_server();
    export_start(&e, server, "tls-creds=tls0");
    relay = qtest_daemon_start("relay", "--object tls-creds-x509,id=c0,dir=%s,endpoint=client "
                               "--drive id=r0,file=%s,tls-creds=c0 --nbd unix:%s", cli,
                               e.uri, sock);
    relay_uri = interop_nbd_uri(sock, "r0");
    g_assert_cmpint(interop_run(NULL, NULL, "nbdcopy", relay_uri, copy, NULL), ==, 0);
    g_assert_true(qtest_files_equal(e.img, copy, NULL));
    qtest_daemon_quit(relay);
    g_autofree char *plain = g_strdup_printf("id=r0,file=nbd://127.0.0.1:%d/disk0,"
                                             "tls-creds=c0", e.port);
    g_autofree char *object = g_strdup_printf("tls-creds-x509,id=c0,dir=%s,endpoint=client",
                                              cli);
    g_assert_cmpint(qtest_daemon_run(10000, &out, "--object", object, "--drive", plain,
                                     "--nbd", "unix:/nonexistent/x", NULL), ==, 1);
    g_assert_nonnull(strstr(out, "needs an nbds://"));
    unlink(copy);
    export_stop(&e);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    if (!qtest_have_program("certtool") || !qtest_have_program("psktool")) {
        g_test_skip("certtool/psktool (gnutls-bin) not installed");
        return g_test_run();
    }
    g_test_add_func("/nbd-tls/nbdinfo-map", test_nbdinfo_map);
    g_test_add_func("/nbd-tls/required", test_required);
    g_test_add_func("/nbd-tls/optional", test_optional);
    g_test_add_func("/nbd-tls/copy-psk-and-qemu-img", test_copy_psk_and_qemu_img);
    g_test_add_func("/nbd-tls/blkmigd-client", test_blkmigd_client);
    return g_test_run();
}
