/* Test credentials made with certtool and psktool (see tls-certs.h). */
#include "tls-certs.h"

#include <glib.h>
#include <glib/gstdio.h>

/* Run ARGV (NULL-terminated); the test fails with the tool's output if
 * it does not succeed. */
static void run(const char *const *argv)
{
    g_autofree char *out = NULL, *err_text = NULL;
    GError *err = NULL;
    int status = 0;

    if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out,
                      &err_text, &status, &err) ||
        !g_spawn_check_wait_status(status, &err)) {
        g_error("%s failed: %s\n%s%s", argv[0], err->message, out ? out : "",
                err_text ? err_text : "");
    }
}

static char *path_in(const char *dir, const char *name)
{
    return g_build_filename(dir, name, NULL);
}

static void make_key(const char *path)
{
    const char *argv[] = { "certtool", "--generate-privkey", "--key-type=ecdsa",
                           "--outfile", path, NULL };
    run(argv);
}

static char *write_template(const char *dir, const char *name, const char *text)
{
    char *path = path_in(dir, name);
    GError *err = NULL;

    if (!g_file_set_contents(path, text, -1, &err)) {
        g_error("%s: %s", path, err->message);
    }
    return path;
}

void tt_make_ca(const char *ca_dir, const char *cn)
{
    g_autofree char *key = path_in(ca_dir, "ca-key.pem");
    g_autofree char *cert = path_in(ca_dir, "ca-cert.pem");
    g_autofree char *text = g_strdup_printf("cn = %s\nca\ncert_signing_key\n"
                                            "expiration_days = 2\n", cn);
    g_autofree char *tmpl = NULL;

    g_mkdir_with_parents(ca_dir, 0700);
    tmpl = write_template(ca_dir, "ca.info", text);
    make_key(key);
    const char *argv[] = { "certtool", "--generate-self-signed", "--load-privkey", key,
                           "--template", tmpl, "--outfile", cert, NULL };
    run(argv);
}

static char *cert_template(const char *endpoint, const char *cn, bool expired)
{
    bool server = g_str_equal(endpoint, "server");

    return g_strdup_printf("cn = %s\norganization = blkmig\n%s%s\nsigning_key\n"
                           "encryption_key\n%s", cn,
                           server ? "dns_name = localhost\nip_address = 127.0.0.1\n" : "",
                           server ? "tls_www_server" : "tls_www_client",
                           expired ? "activation_date = \"2020-01-01 00:00:00 UTC\"\n"
                                     "expiration_date = \"2020-01-02 00:00:00 UTC\"\n"
                                   : "expiration_days = 2\n");
}

void tt_make_cert(const char *dir, const char *ca_dir, const char *endpoint, const char *cn,
                  bool expired)
{
    g_autofree char *key_name = g_strdup_printf("%s-key.pem", endpoint);
    g_autofree char *cert_name = g_strdup_printf("%s-cert.pem", endpoint);
    g_autofree char *key = path_in(dir, key_name), *cert = path_in(dir, cert_name);
    g_autofree char *ca_cert = path_in(ca_dir, "ca-cert.pem");
    g_autofree char *ca_key = path_in(ca_dir, "ca-key.pem");
    g_autofree char *ca_copy = path_in(dir, "ca-cert.pem");
    g_autofree char *text = cert_template(endpoint, cn, expired);
    g_autofree char *tmpl = NULL;

    g_mkdir_with_parents(dir, 0700);
    tmpl = write_template(dir, "cert.info", text);
    make_key(key);
    const char *argv[] = { "certtool", "--generate-certificate", "--load-privkey", key,
                           "--load-ca-certificate", ca_cert, "--load-ca-privkey", ca_key,
                           "--template", tmpl, "--outfile", cert, NULL };
    run(argv);
    tt_copy(ca_cert, ca_copy);
}

void tt_make_psk(const char *dir, const char *user)
{
    g_autofree char *file = path_in(dir, "keys.psk");

    g_mkdir_with_parents(dir, 0700);
    const char *argv[] = { "psktool", "-u", user, "-p", file, NULL };
    run(argv);
}

void tt_copy(const char *src, const char *dst)
{
    g_autofree char *data = NULL;
    gsize len = 0;
    GError *err = NULL;

    if (!g_file_get_contents(src, &data, &len, &err) ||
        !g_file_set_contents(dst, data, (gssize)len, &err)) {
        g_error("copy %s to %s: %s", src, dst, err->message);
    }
}
