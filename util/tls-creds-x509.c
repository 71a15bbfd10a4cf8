/* tls-creds-x509: a CA, a certificate and its key from a directory, named
 * as QEMU names them.  Everything is checked when the object is created
 * (unless sanity-check=off), so that a wrong file is reported at start-up
 * with its name and its problem, not as a failed handshake later. */
#include "tls-internal.h"

#include <gnutls/x509.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct X509Files {
    char *ca;           /* required */
    char *crl;          /* optional: NULL when absent */
    char *cert;         /* NULL for a client without a certificate */
    char *key;
} X509Files;

/* A file's whole content. */
typedef struct FileData {
    gchar *text;
    gsize len;
} FileData;

static const char *role(const TlsCreds *c)
{
    return c->endpoint == TLS_ENDPOINT_SERVER ? "server" : "client";
}

static void files_clear(X509Files *f)
{
    g_free(f->ca);
    g_free(f->crl);
    g_free(f->cert);
    g_free(f->key);
}

static char *existing(const TlsCreds *c, const char *name)
{
    char *path = tls_creds_path(c, name);

    if (access(path, F_OK) != 0) {
        g_free(path);
        return NULL;
    }
    return path;
}

/* A server needs its certificate and key; a client may have neither. */
static bool find_own_pair(const TlsCreds *c, X509Files *f, GError **errp)
{
    g_autofree char *cert_name = g_strdup_printf("%s-cert.pem", role(c));
    g_autofree char *key_name = g_strdup_printf("%s-key.pem", role(c));

    f->cert = existing(c, cert_name);
    f->key = existing(c, key_name);
    if (!f->cert && !f->key && c->endpoint == TLS_ENDPOINT_CLIENT) {
        return true;
    }
    if (!f->cert || !f->key) {
        g_autofree char *missing = tls_creds_path(c, f->cert ? key_name : cert_name);
        tls_error(errp, TLS_ERR_CONFIG, "%s: missing %s %s%s", c->name,
                  f->cert ? "private key" : "certificate", missing,
                  c->endpoint == TLS_ENDPOINT_SERVER ? " (a server needs its certificate "
                  "and key)" : " (a client certificate needs its key and the reverse)");
        return false;
    }
    return true;
}

static bool find_files(const TlsCreds *c, X509Files *f, GError **errp)
{
    f->ca = existing(c, "ca-cert.pem");
    if (!f->ca) {
        g_autofree char *path = tls_creds_path(c, "ca-cert.pem");
        tls_error(errp, TLS_ERR_CONFIG, "%s: missing CA certificate %s (both endpoints "
                  "need the CA that signed the peer's certificate)", c->name, path);
        return false;
    }
    f->crl = existing(c, "ca-crl.pem");
    return find_own_pair(c, f, errp);
}

static bool read_file(const TlsCreds *c, const char *path, const char *what, FileData *out,
                      GError **errp)
{
    out->text = tls_creds_read_file(c, path, what, &out->len, errp);
    return out->text != NULL;
}

static gnutls_datum_t datum(const FileData *d)
{
    return (gnutls_datum_t){ (unsigned char *)d->text, (unsigned)d->len };
}

/* ---- sanity checks (QEMU's, without its RSA-only key-encipherment rule) ---- */

static char *format_time(time_t t)
{
    struct tm tm;
    char buf[64];

    gmtime_r(&t, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm);
    return g_strdup(buf);
}

static bool check_times(const TlsCreds *c, gnutls_x509_crt_t crt, const char *what,
                        const char *path, GError **errp)
{
    time_t now = time(NULL);
    time_t end = gnutls_x509_crt_get_expiration_time(crt);
    time_t start = gnutls_x509_crt_get_activation_time(crt);

    if (end < now || start > now) {
        g_autofree char *when = format_time(end < now ? end : start);
        tls_error(errp, TLS_ERR_CONFIG, "%s: the %s %s %s %s", c->name, what, path,
                  end < now ? "expired on" : "is not valid before", when);
        return false;
    }
    return true;
}

static bool check_is_ca(const TlsCreds *c, gnutls_x509_crt_t crt, const char *path,
                        bool want_ca, GError **errp)
{
    unsigned critical = 0;
    int is_ca = gnutls_x509_crt_get_basic_constraints(crt, &critical, NULL, NULL);

    if (is_ca == GNUTLS_E_REQUESTED_DATA_NOT_AVAILABLE) {
        is_ca = 0;
    }
    if (want_ca && is_ca <= 0) {
        tls_error(errp, TLS_ERR_CONFIG, "%s: %s is not a CA certificate (its basic "
                  "constraints do not say CA)", c->name, path);
        return false;
    }
    if (!want_ca && is_ca > 0) {
        tls_error(errp, TLS_ERR_CONFIG, "%s: %s is a CA certificate, not a %s certificate",
                  c->name, path, role(c));
        return false;
    }
    return true;
}

/* A critical extended key usage must allow our role. */
static bool check_purpose(const TlsCreds *c, gnutls_x509_crt_t crt, const char *path,
                          GError **errp)
{
    const char *want = c->endpoint == TLS_ENDPOINT_SERVER ? GNUTLS_KP_TLS_WWW_SERVER
                                                          : GNUTLS_KP_TLS_WWW_CLIENT;
    bool any = false, critical_seen = false;

    for (unsigned i = 0;; i++) {
        char oid[128];
        size_t size = sizeof(oid);
        unsigned critical = 0;
        int ret = gnutls_x509_crt_get_key_purpose_oid(crt, i, oid, &size, &critical);
        if (ret < 0) {
            break;
        }
        critical_seen |= critical != 0;
        any |= strcmp(oid, want) == 0 || strcmp(oid, GNUTLS_KP_ANY) == 0;
    }
    if (critical_seen && !any) {
        tls_error(errp, TLS_ERR_CONFIG, "%s: the purpose of certificate %s does not allow "
                  "a TLS %s", c->name, path, role(c));
        return false;
    }
    return true;
}

static bool check_signed_by(const TlsCreds *c, gnutls_x509_crt_t crt, const char *path,
                            gnutls_x509_crt_t *cas, unsigned n, const char *ca_path,
                            GError **errp)
{
    unsigned status = 0;
    gnutls_datum_t text = { NULL, 0 };

    if (gnutls_x509_crt_list_verify(&crt, 1, cas, n, NULL, 0, 0, &status) >= 0 &&
        status == 0) {
        return true;
    }
    gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0);
    tls_error(errp, TLS_ERR_CONFIG, "%s: %s certificate %s does not verify against the "
              "CA certificate %s: %s", c->name, role(c), path, ca_path,
              text.data ? g_strstrip((char *)text.data) : "verification failed");
    gnutls_free(text.data);
    return false;
}

static bool check_ca_list(const TlsCreds *c, gnutls_x509_crt_t *cas, unsigned n,
                          const char *path, GError **errp)
{
    for (unsigned i = 0; i < n; i++) {
        if (!check_times(c, cas[i], "CA certificate", path, errp) ||
            !check_is_ca(c, cas[i], path, true, errp)) {
            return false;
        }
    }
    return true;
}

static gnutls_x509_crt_t import_cert(const TlsCreds *c, const FileData *d, const char *path,
                                     GError **errp)
{
    gnutls_x509_crt_t crt;
    gnutls_datum_t data = datum(d);
    int ret = gnutls_x509_crt_init(&crt);

    if (ret >= 0 && (ret = gnutls_x509_crt_import(crt, &data, GNUTLS_X509_FMT_PEM)) < 0) {
        gnutls_x509_crt_deinit(crt);
    }
    if (ret < 0) {
        tls_error(errp, TLS_ERR_CONFIG, "%s: %s is not a PEM certificate: %s", c->name,
                  path, gnutls_strerror(ret));
        return NULL;
    }
    return crt;
}

static bool check_own_cert(const TlsCreds *c, const X509Files *f, gnutls_x509_crt_t *cas,
                           unsigned n, GError **errp)
{
    FileData d = { 0 };
    g_autofree char *what = g_strdup_printf("%s certificate", role(c));
    gnutls_x509_crt_t crt = NULL;
    bool ok = read_file(c, f->cert, what, &d, errp) &&
              (crt = import_cert(c, &d, f->cert, errp)) != NULL &&
              check_times(c, crt, what, f->cert, errp) &&
              check_is_ca(c, crt, f->cert, false, errp) &&
              check_purpose(c, crt, f->cert, errp) &&
              check_signed_by(c, crt, f->cert, cas, n, f->ca, errp);

    if (crt) {
        gnutls_x509_crt_deinit(crt);
    }
    g_free(d.text);
    return ok;
}

static bool sanity_check(const TlsCreds *c, const X509Files *f, const FileData *ca,
                         GError **errp)
{
    gnutls_x509_crt_t *cas = NULL;
    unsigned n = 0;
    gnutls_datum_t data = datum(ca);
    int ret = gnutls_x509_crt_list_import2(&cas, &n, &data, GNUTLS_X509_FMT_PEM, 0);
    bool ok;

    if (ret < 0 || n == 0) {
        tls_error(errp, TLS_ERR_CONFIG, "%s: CA certificate %s holds no PEM certificate: %s",
                  c->name, f->ca, ret < 0 ? gnutls_strerror(ret) : "empty");
        return false;
    }
    ok = check_ca_list(c, cas, n, f->ca, errp) &&
         (!f->cert || check_own_cert(c, f, cas, n, errp));
    for (unsigned i = 0; i < n; i++) {
        gnutls_x509_crt_deinit(cas[i]);
    }
    gnutls_free(cas);
    return ok;
}

/* ---- loading into GnuTLS ---- */

static bool load_trust(TlsCreds *c, const X509Files *f, const FileData *ca, GError **errp)
{
    gnutls_datum_t data = datum(ca);
    int ret = gnutls_certificate_set_x509_trust_mem(c->x509, &data, GNUTLS_X509_FMT_PEM);
    FileData crl = { 0 };

    if (ret <= 0) {
        tls_error(errp, TLS_ERR_CONFIG, "%s: CA certificate %s holds no PEM certificate: %s",
                  c->name, f->ca, ret < 0 ? gnutls_strerror(ret) : "empty");
        return false;
    }
    if (!f->crl) {
        return true;
    }
    if (!read_file(c, f->crl, "CA revocation list", &crl, errp)) {
        return false;
    }
    data = datum(&crl);
    ret = gnutls_certificate_set_x509_crl_mem(c->x509, &data, GNUTLS_X509_FMT_PEM);
    g_free(crl.text);
    if (ret < 0) {
        tls_error(errp, TLS_ERR_CONFIG, "%s: %s is not a PEM revocation list: %s", c->name,
                  f->crl, gnutls_strerror(ret));
        return false;
    }
    return true;
}

static bool load_pair(TlsCreds *c, const X509Files *f, GError **errp)
{
    FileData cert = { 0 }, key = { 0 };
    bool ok = false;

    if (read_file(c, f->cert, "certificate", &cert, errp) &&
        read_file(c, f->key, "private key", &key, errp)) {
        gnutls_datum_t cd = datum(&cert), kd = datum(&key);
        int ret = gnutls_certificate_set_x509_key_mem2(c->x509, &cd, &kd,
                                                       GNUTLS_X509_FMT_PEM, NULL, 0);
        ok = ret >= 0;
        if (!ok) {
            tls_error(errp, TLS_ERR_CONFIG, "%s: cannot use private key %s with certificate "
                      "%s: %s", c->name, f->key, f->cert, gnutls_strerror(ret));
        }
    }
    if (key.text) {
        explicit_bzero(key.text, key.len);
    }
    g_free(key.text);
    g_free(cert.text);
    return ok;
}

static bool load_files(TlsCreds *c, const X509Files *f, bool sanity, GError **errp)
{
    FileData ca = { 0 };
    bool ok = read_file(c, f->ca, "CA certificate", &ca, errp) &&
              (!sanity || sanity_check(c, f, &ca, errp));

    if (ok) {
        int ret = gnutls_certificate_allocate_credentials(&c->x509);
        if (ret < 0) {
            c->x509 = NULL;
            tls_error(errp, TLS_ERR_CONFIG, "%s: %s", c->name, gnutls_strerror(ret));
            ok = false;
        }
    }
    ok = ok && load_trust(c, f, &ca, errp) && (!f->cert || load_pair(c, f, errp));
    g_free(ca.text);
    return ok;
}

bool tls_creds_x509_load(TlsCreds *c, bool sanity_check, GError **errp)
{
    X509Files f = { 0 };
    bool ok = tls_creds_check_dir(c, errp) && find_files(c, &f, errp) &&
              load_files(c, &f, sanity_check, errp) && tls_creds_load_common(c, errp);

    if (ok && c->endpoint == TLS_ENDPOINT_SERVER) {
        if (c->dh) {
            gnutls_certificate_set_dh_params(c->x509, c->dh);
        } else {
            gnutls_certificate_set_known_dh_params(c->x509, GNUTLS_SEC_PARAM_MEDIUM);
        }
    }
    files_clear(&f);
    return ok;
}

/* ---- the object type ---- */

static const char *const x509_keys[] = {
    "dir", "endpoint", "verify-peer", "sanity-check", "priority", NULL,
};

static bool x509_parse(const UserObjectProps *p, TlsCredsSpec *spec, GError **errp)
{
    return user_object_only(p, x509_keys, errp) && tls_creds_parse_common(p, spec, errp) &&
           user_object_bool(p, "verify-peer", &spec->verify_peer, errp) &&
           user_object_bool(p, "sanity-check", &spec->sanity_check, errp);
}

static TlsCreds *x509_new(const TlsCredsSpec *spec, const char *id, GError **errp)
{
    TlsCreds *c = tls_creds_alloc(TLS_CREDS_X509, spec, id);

    if (!tls_creds_x509_load(c, spec->sanity_check, errp)) {
        tls_creds_unref(c);
        return NULL;
    }
    return c;
}

bool tls_creds_x509_check(const UserObjectProps *p, GError **errp)
{
    TlsCredsSpec spec;
    return x509_parse(p, &spec, errp);
}

void *tls_creds_x509_create(const UserObjectProps *p, GError **errp)
{
    TlsCredsSpec spec;
    return x509_parse(p, &spec, errp) ? x509_new(&spec, p->id, errp) : NULL;
}

TlsCreds *tls_creds_new_x509(const char *dir, TlsEndpoint endpoint, bool verify_peer,
                             GError **errp)
{
    TlsCredsSpec spec = {
        .dir = dir, .endpoint = endpoint, .verify_peer = verify_peer, .sanity_check = true,
    };
    return x509_new(&spec, NULL, errp);
}
