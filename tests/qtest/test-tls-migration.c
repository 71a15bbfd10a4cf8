/* Live migration over TLS between two real blkmigd daemons: the
 * tls-creds, tls-hostname and tls-authz parameters (QEMU's), x509 and
 * PSK, the main stream, its return path and every multifd channel
 * encrypted.  A source whose certificate is from another CA, expired,
 * not allowed by tls-authz, or whose PSK key differs, and a peer that
 * does not speak TLS at all, are refused with a clear message on both
 * sides while the source guest keeps running.  Credentials are made by
 * certtool and psktool in the scratch directory. */
#include <string.h>

#include "../lib/tls-certs.h"
#include "migration-framework.h"

#define DISK_SIZE (64 * MIB)

static char *pki(const char *name)
{
    return qtest_path(name);
}

/* CA "ca" with server credentials "srv" (CN localhost) and client
 * credentials "cli" (CN src); "other-ca" signs "cli-other" (which trusts
 * "ca") and "srv-other"; "cli-old" expired in 2020; "psk-a" and "psk-b"
 * hold different keys for "qemu". */
static void make_credentials(void)
{
    static bool made;
    g_autofree char *ca = pki("ca"), *other = pki("other-ca");
    g_autofree char *srv = pki("srv"), *cli = pki("cli"), *cli_other = pki("cli-other");
    g_autofree char *srv_other = pki("srv-other");
    g_autofree char *cli_old = pki("cli-old"), *psk_a = pki("psk-a"), *psk_b = pki("psk-b");

    if (made) {
        return;
    }
    made = true;
    tt_make_ca(ca, "blkmig test CA");
    tt_make_ca(other, "another CA");
    tt_make_cert(srv, ca, "server", "localhost", false);
    tt_make_cert(cli, ca, "client", "src", false);
    tt_make_cert(cli_other, other, "client", "src", false);
    tt_make_cert(srv_other, other, "server", "localhost", false);
    {
        /* cli-other trusts our CA, so only the destination refuses. */
        g_autofree char *ca_cert = g_build_filename(ca, "ca-cert.pem", NULL);
        g_autofree char *copy = g_build_filename(cli_other, "ca-cert.pem", NULL);
        tt_copy(ca_cert, copy);
    }
    tt_make_cert(cli_old, ca, "client", "src", true);
    tt_make_psk(psk_a, "qemu");
    tt_make_psk(psk_b, "qemu");
}

/* --object for credentials directory NAME. */
static char *x509_object(const char *name, const char *endpoint, const char *extra)
{
    g_autofree char *dir = pki(name);
    return g_strdup_printf("--object tls-creds-x509,id=tls0,dir=%s,endpoint=%s%s", dir,
                           endpoint, extra ? extra : "");
}

static char *psk_object(const char *name, const char *endpoint)
{
    g_autofree char *dir = pki(name);
    return g_strdup_printf("--object tls-creds-psk,id=tls0,dir=%s,endpoint=%s", dir, endpoint);
}

/* Both daemons with these objects (and tls-creds=tls0 set on each side
 * that has one), a disk with data on the source. */
static void start_pair(Migration *m, const char *src_obj, const char *dst_obj,
                       const char *src_extra)
{
    g_autofree char *src_args = NULL, *dst_args = NULL;

    make_credentials();
    mf_make_src_disk(m, DISK_SIZE, 7, 40, 256 * KIB);
    src_args = g_strdup_printf("--drive id=" MF_DRIVE_ID ",file=%s %s %s", m->src_disk,
                               src_obj ? src_obj : "", src_extra ? src_extra : "");
    dst_args = g_strdup_printf("--drive id=" MF_DRIVE_ID ",file=%s,size=%" G_GUINT64_FORMAT
                               ",create=on %s", m->dst_disk, DISK_SIZE,
                               dst_obj ? dst_obj : "");
    mf_start_daemons(m, src_args, dst_args);
    qtest_set_params(m->src, "\"link-timeout\": 5");
    qtest_set_params(m->dst, "\"link-timeout\": 5");
    if (src_obj) {
        qtest_set_params(m->src, "\"tls-creds\": \"tls0\"");
    }
    if (dst_obj) {
        qtest_set_params(m->dst, "\"tls-creds\": \"tls0\"");
    }
    qtest_set_caps(m->src, "block", "zero-blocks", NULL);
}

static void migrate_ok(Migration *m)
{
    qtest_migrate_start(m->src, m->uri);
    json_node_unref(mf_wait_completed(m));
    mf_assert_identical(m->src_disk, m->dst_disk);
}

/* A destination whose migration failed before a source got through
 * listens again after a pause: retry while the connection is refused. */
static void migrate_again(Migration *m)
{
    for (int i = 0;; i++) {
        g_autofree char *desc = NULL;
        JsonNode *r = qtest_qmp(m->src, "{\"execute\": \"migrate\", \"arguments\": "
                                "{\"uri\": \"%s\"}}", m->uri);
        JsonNode *err = qtest_json_get(r, "error");
        if (err) {
            desc = g_strdup(qtest_json_str(err, "desc"));
        }
        json_node_unref(r);
        if (!desc) {
            break;
        }
        g_assert_true(strstr(desc, "Connection refused") && i < 100);
        g_usleep(MF_POLL_US);
    }
    json_node_unref(mf_wait_completed(m));
    mf_assert_identical(m->src_disk, m->dst_disk);
}

/* ---- accepted ---- */

/* x509 with multifd: the destination logs one TLS connection per channel
 * from the source's certificate name; query-migrate-parameters says. */
static void test_x509_multifd(void)
{
    Migration m = { 0 };
    g_autofree char *src_obj = x509_object("cli", "client", NULL);
    g_autofree char *dst_obj = x509_object("srv", "server", NULL);

    start_pair(&m, src_obj, dst_obj, "--workload drive=" MF_DRIVE_ID ",rate=4,seed=3");
    qtest_set_caps(m.src, "multifd", NULL);
    JsonNode *p = qtest_qmp_ok(m.src, "{\"execute\": \"query-migrate-parameters\"}");
    g_assert_cmpstr(qtest_json_str(p, "tls-creds"), ==, "tls0");
    g_assert_cmpstr(qtest_json_str(p, "tls-hostname"), ==, "");
    json_node_unref(p);
    migrate_ok(&m);
    g_autofree char *log = qtest_daemon_log_tail(m.dst);
    mf_assert_contains(log, "TLS connection from O=blkmig,CN=src");
    mf_free(&m);
}

static void test_psk(void)
{
    Migration m = { 0 };
    g_autofree char *src_obj = psk_object("psk-a", "client");
    g_autofree char *dst_obj = psk_object("psk-a", "server");

    start_pair(&m, src_obj, dst_obj, NULL);
    migrate_ok(&m);
    mf_free(&m);
}

/* tls-hostname replaces the URI's host: the certificate names localhost,
 * the URI 127.0.0.1 (which it also names), and a wrong name fails. */
static void test_hostname(void)
{
    Migration m = { 0 };
    g_autofree char *src_obj = x509_object("cli", "client", NULL);
    g_autofree char *dst_obj = x509_object("srv", "server", NULL);
    MfOutcome so, dout;

    start_pair(&m, src_obj, dst_obj, NULL);
    qtest_set_params(m.src, "\"tls-hostname\": \"elsewhere.example\"");
    qtest_migrate_start(m.src, m.uri);
    mf_wait_both_ended(&m, 30, &so, &dout);
    g_assert_cmpstr(so.status, ==, "failed");
    mf_assert_contains(so.error_desc, "elsewhere.example");
    mf_assert_runstate(m.src, "running");
    mf_outcome_clear(&so);
    mf_outcome_clear(&dout);
    qtest_set_params(m.src, "\"tls-hostname\": \"localhost\"");
    migrate_again(&m);
    mf_free(&m);
}

/* ---- refused ---- */

/* The migration fails on both sides, each saying SRC_WHY / DST_WHY; the
 * source guest keeps running, the destination's never started. */
static void expect_refused(Migration *m, const char *src_why, const char *dst_why)
{
    MfOutcome so, dout;

    qtest_migrate_start(m->src, m->uri);
    mf_wait_both_ended(m, 60, &so, &dout);
    g_test_message("source: %s; destination: %s", so.error_desc, dout.error_desc);
    g_assert_cmpstr(so.status, ==, "failed");
    g_assert_cmpstr(dout.status, ==, "failed");
    mf_assert_contains(so.error_desc, src_why);
    mf_assert_contains(dout.error_desc, dst_why);
    mf_assert_runstate(m->src, "running");
    mf_assert_runstate(m->dst, "inmigrate");
    mf_outcome_clear(&so);
    mf_outcome_clear(&dout);
}

/* The source's certificate is from a CA the destination does not know,
 * then the destination's from one the source does not know. */
static void test_wrong_ca(void)
{
    Migration m = { 0 };
    /* Loading it would refuse the mismatch already: QEMU's sanity-check. */
    g_autofree char *src_obj = x509_object("cli-other", "client", ",sanity-check=off");
    g_autofree char *dst_obj = x509_object("srv", "server", NULL);
    g_autofree char *good_src = x509_object("cli", "client", NULL);
    g_autofree char *other_dst = x509_object("srv-other", "server", NULL);

    start_pair(&m, src_obj, dst_obj, "--workload drive=" MF_DRIVE_ID ",rate=2");
    /* GnuTLS sends no certificate the server's CA did not sign. */
    expect_refused(&m, "requires a client certificate signed by its CA",
                   "no certificate signed by our CA");
    mf_free(&m);

    memset(&m, 0, sizeof(m));
    start_pair(&m, good_src, other_dst, NULL);
    expect_refused(&m, "issuer is unknown", "does not trust the CA");
    mf_free(&m);
}

static void test_expired(void)
{
    Migration m = { 0 };
    /* Loading it would already refuse the expired certificate. */
    g_autofree char *src_obj = x509_object("cli-old", "client", ",sanity-check=off");
    g_autofree char *dst_obj = x509_object("srv", "server", NULL);

    start_pair(&m, src_obj, dst_obj, NULL);
    expect_refused(&m, "expired", "expired");
    mf_free(&m);
}

static void test_psk_mismatch(void)
{
    Migration m = { 0 };
    g_autofree char *src_obj = psk_object("psk-a", "client");
    g_autofree char *dst_obj = psk_object("psk-b", "server");

    start_pair(&m, src_obj, dst_obj, NULL);
    expect_refused(&m, "PSK keys most likely differ", "TLS with the source");
    mf_free(&m);
}

static void test_authz_denies(void)
{
    Migration m = { 0 };
    g_autofree char *src_obj = x509_object("cli", "client", NULL);
    g_autofree char *dst_obj = x509_object("srv", "server",
                                           " --object authz-simple,id=az0,"
                                           "identity=O=blkmig,,CN=someone-else");

    start_pair(&m, src_obj, dst_obj, NULL);
    qtest_set_params(m.dst, "\"tls-authz\": \"az0\"");
    expect_refused(&m, "tls-authz", "O=blkmig,CN=src");
    mf_free(&m);
}

/* A source in the clear to a TLS destination, and the other way round. */
static void test_one_side_only(void)
{
    Migration m = { 0 };
    g_autofree char *dst_obj = x509_object("srv", "server", NULL);
    g_autofree char *src_obj = x509_object("cli", "client", NULL);

    start_pair(&m, NULL, dst_obj, NULL);
    expect_refused(&m, "destination failed: this destination requires TLS",
                   "set tls-creds on the source too");
    mf_free(&m);

    memset(&m, 0, sizeof(m));
    start_pair(&m, src_obj, NULL, NULL);
    expect_refused(&m, "", "set tls-creds here too");
    mf_free(&m);
}

/* Refused at once: unknown credentials, the wrong endpoint, a file:. */
static void test_bad_parameters(void)
{
    Migration m = { 0 };
    g_autofree char *src_obj = x509_object("srv", "server", NULL);
    g_autofree char *file = qtest_path("tls-stream.bin");
    g_autofree char *uri = g_strdup_printf("\"file:%s\"", file);
    g_autofree char *desc = NULL;

    start_pair(&m, src_obj, NULL, NULL);
    g_free(qtest_qmp_error(m.src, &desc, "{\"execute\": \"migrate\", \"arguments\": "
                           "{\"uri\": \"%s\"}}", m.uri));
    mf_assert_contains(desc, "endpoint=client");
    g_clear_pointer(&desc, g_free);
    qtest_set_params(m.src, "\"tls-creds\": \"nosuch\"");
    g_free(qtest_qmp_error(m.src, &desc, "{\"execute\": \"migrate\", \"arguments\": "
                           "{\"uri\": \"%s\"}}", m.uri));
    mf_assert_contains(desc, "nosuch");
    g_clear_pointer(&desc, g_free);
    g_free(qtest_qmp_error(m.src, &desc, "{\"execute\": \"migrate\", \"arguments\": "
                           "{\"uri\": %s}}", uri));
    mf_assert_contains(desc, "cannot be encrypted");
    mf_assert_runstate(m.src, "running");
    mf_free(&m);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    if (!qtest_have_program("certtool") || !qtest_have_program("psktool")) {
        g_test_skip("certtool/psktool (gnutls-bin) not installed");
        return g_test_run();
    }
    g_test_add_func("/tls-migration/x509-multifd", test_x509_multifd);
    g_test_add_func("/tls-migration/psk", test_psk);
    g_test_add_func("/tls-migration/hostname", test_hostname);
    g_test_add_func("/tls-migration/wrong-ca", test_wrong_ca);
    g_test_add_func("/tls-migration/expired", test_expired);
    g_test_add_func("/tls-migration/psk-mismatch", test_psk_mismatch);
    g_test_add_func("/tls-migration/authz-denies", test_authz_denies);
    g_test_add_func("/tls-migration/one-side-only", test_one_side_only);
    g_test_add_func("/tls-migration/bad-parameters", test_bad_parameters);
    return g_test_run();
}
