/* The object registry and the TLS objects' properties and files: every
 * way a definition can be wrong is refused with a message that names the
 * object, the property or the file, and what is wrong; nothing is
 * registered then.  Files are real, made by certtool and psktool. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../lib/tls-certs.h"
#include "util/tls.h"
#include "util/user-object.h"

static char *tmp;

static char *dir_of(const char *name)
{
    return g_build_filename(tmp, name, NULL);
}

/* PROPS as JSON text with DIR substituted for "@" (a directory name under
 * the scratch directory). */
static JsonObject *props(const char *json, const char *dir)
{
    g_autofree char *path = dir ? dir_of(dir) : NULL;
    g_autofree char *text = NULL;
    JsonNode *node;
    JsonObject *obj;

    if (path) {
        g_auto(GStrv) parts = g_strsplit(json, "@", -1);
        text = g_strjoinv(path, parts);
    } else {
        text = g_strdup(json);
    }
    node = json_from_string(text, NULL);
    g_assert_nonnull(node);
    obj = json_object_ref(json_node_get_object(node));
    json_node_unref(node);
    return obj;
}

static void assert_msg(GError *err, const char *part)
{
    g_assert_nonnull(err);
    if (!strstr(err->message, part)) {
        g_error("message '%s' lacks '%s'", err->message, part);
    }
}

/* Adding JSON fails with PART in the message, and leaves no object. */
static void add_fails(const char *json, const char *dir, const char *part)
{
    JsonObject *p = props(json, dir);
    GError *err = NULL;

    g_assert_false(user_object_add(p, &err));
    g_test_message("%s", err->message);
    assert_msg(err, part);
    g_clear_error(&err);
    if (json_object_has_member(p, "id")) {
        g_assert_false(user_object_del(json_object_get_string_member(p, "id"), NULL));
    }
    json_object_unref(p);
}

static void add_ok(const char *json, const char *dir)
{
    JsonObject *p = props(json, dir);
    GError *err = NULL;

    g_assert_true(user_object_add(p, &err));
    g_assert_no_error(err);
    json_object_unref(p);
}

static void del_ok(const char *id)
{
    GError *err = NULL;

    g_assert_true(user_object_del(id, &err));
    g_assert_no_error(err);
}

/* ---- properties (no file is read) ---- */

static void check_fails(const char *json, const char *part)
{
    JsonObject *p = props(json, NULL);
    GError *err = NULL;

    g_assert_false(user_object_check(p, &err));
    g_test_message("%s", err->message);
    assert_msg(err, part);
    g_clear_error(&err);
    json_object_unref(p);
}

static void test_properties(void)
{
    check_fails("{\"id\": \"t\"}", "Parameter 'qom-type' is missing");
    check_fails("{\"qom-type\": \"tls-creds-anon\", \"id\": \"t\"}",
                "unknown object type 'tls-creds-anon' (known: tls-creds-x509, tls-creds-psk");
    check_fails("{\"qom-type\": \"tls-creds-x509\", \"dir\": \"/x\"}",
                "tls-creds-x509: Parameter 'id' is missing");
    check_fails("{\"qom-type\": \"tls-creds-x509\", \"id\": \"0t\", \"dir\": \"/x\"}",
                "invalid id '0t'");
    check_fails("{\"qom-type\": \"tls-creds-x509\", \"id\": \"t\"}",
                "tls-creds-x509 't': 'dir' is missing");
    check_fails("{\"qom-type\": \"tls-creds-x509\", \"id\": \"t\", \"dir\": \"/x\", "
                "\"endpoint\": \"both\"}", "endpoint must be client or server, not 'both'");
    check_fails("{\"qom-type\": \"tls-creds-x509\", \"id\": \"t\", \"dir\": \"/x\", "
                "\"verify-peer\": \"maybe\"}", "'verify-peer' must be on or off, not 'maybe'");
    check_fails("{\"qom-type\": \"tls-creds-x509\", \"id\": \"t\", \"dir\": \"/x\", "
                "\"verify\": \"on\"}", "unknown property 'verify' (known: dir, endpoint, "
                "verify-peer, sanity-check, priority)");
    check_fails("{\"qom-type\": \"tls-creds-x509\", \"id\": \"t\", \"dir\": 3}",
                "'dir' must be a string");
    check_fails("{\"qom-type\": \"tls-creds-psk\", \"id\": \"t\", \"dir\": \"/x\", "
                "\"endpoint\": \"server\", \"username\": \"a\"}",
                "username is for endpoint=client");
    check_fails("{\"qom-type\": \"authz-simple\", \"id\": \"a\"}",
                "authz-simple 'a': 'identity' is missing");
    check_fails("{\"qom-type\": \"authz-list\", \"id\": \"a\", \"rules\": \"CN=x\"}",
                "'rules' must be a list of rules");
    check_fails("{\"qom-type\": \"authz-list\", \"id\": \"a\", \"rules\": "
                "[{\"match\": \"CN=x\", \"policy\": \"maybe\"}]}",
                "rules[0]: 'policy' must be allow or deny, not 'maybe'");
    check_fails("{\"qom-type\": \"authz-list\", \"id\": \"a\", \"rules\": "
                "[{\"match\": \"CN=x\", \"policy\": \"allow\", \"format\": \"regex\"}]}",
                "rules[0]: 'format' must be exact or glob, not 'regex'");
}

static void test_boolean_forms(void)
{
    const char *forms[] = { "\"on\"", "\"off\"", "\"yes\"", "\"no\"", "true", "false" };

    for (unsigned i = 0; i < G_N_ELEMENTS(forms); i++) {
        g_autofree char *json = g_strdup_printf("{\"qom-type\": \"tls-creds-x509\", "
                                                "\"id\": \"t\", \"dir\": \"/x\", "
                                                "\"verify-peer\": %s}", forms[i]);
        JsonObject *p = props(json, NULL);
        GError *err = NULL;
        g_assert_true(user_object_check(p, &err));
        g_assert_no_error(err);
        json_object_unref(p);
    }
}

/* ---- files ---- */

#define X509_SERVER "{\"qom-type\": \"tls-creds-x509\", \"id\": \"t\", \"dir\": \"@\", " \
                    "\"endpoint\": \"server\"}"
#define X509_CLIENT "{\"qom-type\": \"tls-creds-x509\", \"id\": \"t\", \"dir\": \"@\", " \
                    "\"endpoint\": \"client\"}"
#define PSK_CLIENT "{\"qom-type\": \"tls-creds-psk\", \"id\": \"t\", \"dir\": \"@\", " \
                   "\"endpoint\": \"client\", \"username\": \"alice\"}"

static void test_x509_files(void)
{
    add_fails(X509_SERVER, "nowhere", "tls-creds-x509 't': directory ");
    add_fails(X509_SERVER, "empty", "missing CA certificate ");
    add_fails(X509_SERVER, "no-key", "missing private key ");
    add_fails(X509_SERVER, "no-key", "no-key/server-key.pem (a server needs its certificate "
              "and key)");
    add_fails(X509_CLIENT, "half-client", "missing private key ");
    add_fails(X509_SERVER, "key-is-dir", "cannot read private key ");
    add_fails(X509_SERVER, "key-is-dir", "key-is-dir/server-key.pem: Is a directory");
    add_fails(X509_SERVER, "key-garbage", "cannot use private key ");
    add_fails(X509_SERVER, "key-other", "cannot use private key ");
    add_fails(X509_SERVER, "ca-garbage", "CA certificate ");
    add_fails(X509_SERVER, "ca-garbage", "ca-garbage/ca-cert.pem holds no PEM certificate");
    add_fails(X509_SERVER, "ca-not-ca", "ca-not-ca/ca-cert.pem is not a CA certificate");
    add_fails(X509_CLIENT, "expired", "the client certificate ");
    add_fails(X509_CLIENT, "expired", "expired/client-cert.pem expired on 2020-01-02 00:00:00 "
              "UTC");
    add_fails(X509_CLIENT, "other-ca", "does not verify against the CA certificate");
    add_fails("{\"qom-type\": \"tls-creds-x509\", \"id\": \"t\", \"dir\": \"@\", "
              "\"endpoint\": \"client\", \"priority\": \"NORMAL:+NOTHING\"}", "client",
              "invalid TLS priority 'NORMAL:+NOTHING'");
    /* The same files load for the right endpoint. */
    add_ok(X509_SERVER, "server");
    del_ok("t");
    add_ok(X509_CLIENT, "client");
    del_ok("t");
    /* An expired certificate loads only with the check off. */
    add_ok("{\"qom-type\": \"tls-creds-x509\", \"id\": \"t\", \"dir\": \"@\", "
           "\"endpoint\": \"client\", \"sanity-check\": \"off\"}", "expired");
    del_ok("t");
}

static void test_psk_files(void)
{
    add_fails(PSK_CLIENT, "empty", "cannot read PSK file ");
    add_fails(PSK_CLIENT, "empty", "empty/keys.psk: No such file or directory");
    add_fails(PSK_CLIENT, "psk-bad-line", "psk-bad-line/keys.psk line 2: expected "
              "USERNAME:HEXKEY");
    add_fails(PSK_CLIENT, "psk-bad-hex", "psk-bad-hex/keys.psk line 1: the key of user "
              "'alice' is not an even number of hexadecimal digits");
    add_fails(PSK_CLIENT, "psk-twice", "line 2: user 'alice' appears twice");
    add_fails(PSK_CLIENT, "psk-blank", "holds no key");
    add_fails("{\"qom-type\": \"tls-creds-psk\", \"id\": \"t\", \"dir\": \"@\", "
              "\"endpoint\": \"client\", \"username\": \"zed\"}", "psk",
              "user 'zed' not found in ");
    add_fails("{\"qom-type\": \"tls-creds-psk\", \"id\": \"t\", \"dir\": \"@\", "
              "\"endpoint\": \"client\"}", "psk", "user 'qemu' not found in ");
    add_ok(PSK_CLIENT, "psk");
    del_ok("t");
}

/* ---- the registry ---- */

static void test_registry(void)
{
    GError *err = NULL;

    add_ok(X509_SERVER, "server");
    JsonObject *again = props(X509_CLIENT, "client");
    g_assert_false(user_object_add(again, &err));
    assert_msg(err, "an object with id 't' already exists");
    g_clear_error(&err);
    json_object_unref(again);
    /* The first one is still there, for its endpoint. */
    TlsCreds *first = tls_creds_lookup("t", TLS_ENDPOINT_SERVER, &err);
    g_assert_no_error(err);
    tls_creds_unref(first);

    g_assert_null(tls_creds_lookup("t", TLS_ENDPOINT_CLIENT, &err));
    assert_msg(err, "tls-creds-x509 't' are for endpoint=server; a client needs "
               "endpoint=client");
    g_clear_error(&err);
    g_assert_null(tls_creds_lookup("nope", TLS_ENDPOINT_SERVER, &err));
    assert_msg(err, "no TLS credentials with id 'nope'");
    g_clear_error(&err);
    add_ok("{\"qom-type\": \"authz-simple\", \"id\": \"a\", \"identity\": \"CN=x\"}", NULL);
    g_assert_null(tls_creds_lookup("a", TLS_ENDPOINT_SERVER, &err));
    assert_msg(err, "object 'a' is of type authz-simple, not tls-creds-*");
    g_clear_error(&err);
    g_assert_null(tls_authz_lookup("t", &err));
    assert_msg(err, "no authorization object with id 't'");
    g_clear_error(&err);

    /* Deleting unregisters; a holder keeps its reference. */
    TlsCreds *held = tls_creds_lookup("t", TLS_ENDPOINT_SERVER, &err);
    g_assert_nonnull(held);
    del_ok("t");
    g_assert_false(user_object_del("t", &err));
    assert_msg(err, "object 't' not found");
    g_clear_error(&err);
    g_assert_cmpstr(tls_creds_name(held), ==, "tls-creds-x509 't'");
    tls_creds_unref(held);
    del_ok("a");
}

static void test_authz_rules(void)
{
    GError *err = NULL;
    TlsAuthz *a;

    add_ok("{\"qom-type\": \"authz-simple\", \"id\": \"s\", \"identity\": \"O=blkmig,CN=a\"}",
           NULL);
    a = tls_authz_lookup("s", &err);
    g_assert_true(tls_authz_is_allowed(a, "O=blkmig,CN=a"));
    g_assert_false(tls_authz_is_allowed(a, "O=blkmig,CN=ab"));
    g_assert_false(tls_authz_is_allowed(a, NULL));
    tls_authz_unref(a);
    del_ok("s");

    add_ok("{\"qom-type\": \"authz-list\", \"id\": \"l\", \"rules\": ["
           "{\"match\": \"O=blkmig,CN=bad\", \"policy\": \"deny\"},"
           "{\"match\": \"O=blkmig,CN=*\", \"policy\": \"allow\", \"format\": \"glob\"}]}",
           NULL);
    a = tls_authz_lookup("l", &err);
    g_assert_no_error(err);
    g_assert_true(tls_authz_is_allowed(a, "O=blkmig,CN=src1"));
    g_assert_false(tls_authz_is_allowed(a, "O=blkmig,CN=bad"));
    g_assert_false(tls_authz_is_allowed(a, "O=other,CN=src1"));     /* default: deny */
    tls_authz_unref(a);
    del_ok("l");
}

/* ---- set-up ---- */

static void write_text(const char *dir, const char *name, const char *text)
{
    g_autofree char *d = dir_of(dir);
    g_autofree char *path = g_build_filename(d, name, NULL);

    g_mkdir_with_parents(d, 0700);
    g_assert_true(g_file_set_contents(path, text, -1, NULL));
}

static void copy_file(const char *from_dir, const char *name, const char *to_dir,
                      const char *to_name)
{
    g_autofree char *fd = dir_of(from_dir), *td = dir_of(to_dir);
    g_autofree char *from = g_build_filename(fd, name, NULL);
    g_autofree char *to = g_build_filename(td, to_name, NULL);

    g_mkdir_with_parents(td, 0700);
    tt_copy(from, to);
}

static void make_cert_dir(const char *name, const char *ca, const char *endpoint,
                          bool expired)
{
    g_autofree char *dir = dir_of(name), *ca_dir = dir_of(ca);
    tt_make_cert(dir, ca_dir, endpoint, name, expired);
}

static void make_files(void)
{
    g_autofree char *ca = dir_of("ca"), *ca2 = dir_of("ca2"), *empty = dir_of("empty");
    g_autofree char *key_dir = dir_of("key-is-dir/server-key.pem");

    tt_make_ca(ca, "objects CA");
    tt_make_ca(ca2, "other CA");
    g_mkdir_with_parents(empty, 0700);
    make_cert_dir("server", "ca", "server", false);
    make_cert_dir("client", "ca", "client", false);
    make_cert_dir("expired", "ca", "client", true);
    make_cert_dir("other-ca", "ca2", "client", false);
    copy_file("ca", "ca-cert.pem", "other-ca", "ca-cert.pem");
    make_cert_dir("no-key", "ca", "server", false);
    g_autofree char *nk = dir_of("no-key/server-key.pem");
    unlink(nk);
    copy_file("client", "ca-cert.pem", "half-client", "ca-cert.pem");
    copy_file("client", "client-cert.pem", "half-client", "client-cert.pem");
    copy_file("server", "ca-cert.pem", "key-is-dir", "ca-cert.pem");
    copy_file("server", "server-cert.pem", "key-is-dir", "server-cert.pem");
    g_mkdir_with_parents(key_dir, 0700);
    copy_file("server", "ca-cert.pem", "key-garbage", "ca-cert.pem");
    copy_file("server", "server-cert.pem", "key-garbage", "server-cert.pem");
    write_text("key-garbage", "server-key.pem", "-----BEGIN PRIVATE KEY-----\nAAAA\n");
    copy_file("server", "ca-cert.pem", "key-other", "ca-cert.pem");
    copy_file("server", "server-cert.pem", "key-other", "server-cert.pem");
    copy_file("client", "client-key.pem", "key-other", "server-key.pem");
    copy_file("server", "server-cert.pem", "ca-garbage", "server-cert.pem");
    copy_file("server", "server-key.pem", "ca-garbage", "server-key.pem");
    write_text("ca-garbage", "ca-cert.pem", "not a certificate\n");
    copy_file("server", "server-cert.pem", "ca-not-ca", "server-cert.pem");
    copy_file("server", "server-key.pem", "ca-not-ca", "server-key.pem");
    copy_file("client", "client-cert.pem", "ca-not-ca", "ca-cert.pem");
    g_autofree char *psk = dir_of("psk");
    tt_make_psk(psk, "alice");
    write_text("psk-bad-line", "keys.psk", "alice:00ff\nno colon here\n");
    write_text("psk-bad-hex", "keys.psk", "alice:0g\n");
    write_text("psk-twice", "keys.psk", "alice:00\nalice:11\n");
    write_text("psk-blank", "keys.psk", "\n# nothing\n\n");
}

int main(int argc, char **argv)
{
    int rc;

    g_test_init(&argc, &argv, NULL);
    tmp = g_dir_make_tmp("test-tls-objects-XXXXXX", NULL);
    make_files();
    g_test_add_func("/tls-objects/properties", test_properties);
    g_test_add_func("/tls-objects/boolean-forms", test_boolean_forms);
    g_test_add_func("/tls-objects/x509-files", test_x509_files);
    g_test_add_func("/tls-objects/psk-files", test_psk_files);
    g_test_add_func("/tls-objects/registry", test_registry);
    g_test_add_func("/tls-objects/authz-rules", test_authz_rules);
    rc = g_test_run();
    user_objects_clear();
    if (!g_getenv("KEEP_TMP")) {
        g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmp);
        rc |= system(cmd) != 0;
    }
    return rc;
}
