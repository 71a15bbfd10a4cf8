/* TLS credentials: what both kinds (x509, PSK) share.  Reference
 * counting, the common properties (dir, endpoint, priority), the lookup
 * by id in the object registry, and the optional Diffie-Hellman
 * parameters file of a server. */
#include "tls-internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

G_DEFINE_QUARK(blkmig-tls-error-quark, tls_error)

static const char *const endpoint_names[] = { "client", "server" };

void tls_error(GError **errp, TlsErrorCode code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error_literal(errp, TLS_ERROR, code, msg);
    g_free(msg);
}

TlsCreds *tls_creds_alloc(TlsCredsKind kind, const TlsCredsSpec *spec, const char *id)
{
    TlsCreds *c = g_new0(TlsCreds, 1);
    const char *kind_name = kind == TLS_CREDS_X509 ? "x509" : "psk";

    c->refs = 1;
    c->kind = kind;
    c->endpoint = spec->endpoint;
    c->dir = g_strdup(spec->dir);
    c->verify_peer = spec->verify_peer;
    c->name = id ? g_strdup_printf("tls-creds-%s '%s'", kind_name, id)
                 : g_strdup_printf("%s credentials in %s", kind_name, spec->dir);
    c->priority = g_strconcat(spec->priority ? spec->priority : TLS_DEFAULT_PRIORITY,
                              kind == TLS_CREDS_PSK ? TLS_PSK_PRIORITY_EXTRA : "", NULL);
    return c;
}

TlsCreds *tls_creds_ref(TlsCreds *c)
{
    g_atomic_int_inc(&c->refs);
    return c;
}

static void creds_free(TlsCreds *c)
{
    if (c->x509) {
        gnutls_certificate_free_credentials(c->x509);
    }
    if (c->psk_server) {
        gnutls_psk_free_server_credentials(c->psk_server);
    }
    if (c->psk_client) {
        gnutls_psk_free_client_credentials(c->psk_client);
    }
    if (c->dh) {
        gnutls_dh_params_deinit(c->dh);
    }
    if (c->prio) {
        gnutls_priority_deinit(c->prio);
    }
    g_clear_pointer(&c->psk_keys, g_hash_table_unref);
    g_free(c->name);
    g_free(c->username);
    g_free(c->dir);
    g_free(c->priority);
    g_free(c);
}

void tls_creds_unref(TlsCreds *c)
{
    if (c && g_atomic_int_dec_and_test(&c->refs)) {
        creds_free(c);
    }
}

TlsEndpoint tls_creds_endpoint(const TlsCreds *c)
{
    return c->endpoint;
}

const char *tls_creds_name(const TlsCreds *c)
{
    return c->name;
}

void tls_creds_files(const TlsCreds *c, TlsCredsFiles *out)
{
    out->psk = c->kind == TLS_CREDS_PSK;
    out->dir = c->dir;
    out->username = c->username ? c->username : TLS_PSK_DEFAULT_USER;
    out->verify_peer = c->kind == TLS_CREDS_PSK || c->verify_peer;
}

char *tls_creds_path(const TlsCreds *c, const char *name)
{
    return g_build_filename(c->dir, name, NULL);
}

static bool parse_endpoint(const UserObjectProps *p, TlsEndpoint *out, GError **errp)
{
    GError *err = NULL;
    const char *value = user_object_str(p, "endpoint", false, &err);

    if (err) {
        g_propagate_error(errp, err);
        return false;
    }
    for (unsigned i = 0; value && i < G_N_ELEMENTS(endpoint_names); i++) {
        if (strcmp(value, endpoint_names[i]) == 0) {
            *out = (TlsEndpoint)i;
            return true;
        }
    }
    if (value) {
        user_object_error(errp, p, "endpoint must be client or server, not '%s'", value);
        return false;
    }
    *out = TLS_ENDPOINT_CLIENT;     /* QEMU's default */
    return true;
}

bool tls_creds_parse_common(const UserObjectProps *p, TlsCredsSpec *spec, GError **errp)
{
    GError *err = NULL;

    memset(spec, 0, sizeof(*spec));
    spec->verify_peer = spec->sanity_check = true;
    spec->dir = user_object_str(p, "dir", true, &err);
    if (!err) {
        spec->priority = user_object_str(p, "priority", false, &err);
    }
    if (err) {
        g_propagate_error(errp, err);
        return false;
    }
    if (!*spec->dir) {
        user_object_error(errp, p, "'dir' is empty");
        return false;
    }
    return parse_endpoint(p, &spec->endpoint, errp);
}

/* Parse the priority string once: a typo fails here, not at the first
 * connection. */
static bool creds_set_priority(TlsCreds *c, GError **errp)
{
    const char *where = NULL;
    int ret = gnutls_priority_init(&c->prio, c->priority, &where);

    if (ret < 0) {
        c->prio = NULL;
        tls_error(errp, TLS_ERR_CONFIG, "%s: invalid TLS priority '%s' (at '%s'): %s",
                  c->name, c->priority, where ? where : "?", gnutls_strerror(ret));
        return false;
    }
    return true;
}

/* Up to this much is read of one credentials file. */
#define MAX_FILE_SIZE (16 * 1024 * 1024)

static bool read_fd(int fd, GByteArray *out)
{
    uint8_t buf[65536];
    ssize_t n;

    while ((n = read(fd, buf, sizeof(buf))) != 0) {
        if (n < 0 && errno != EINTR) {
            return false;
        }
        if (n > 0) {
            g_byte_array_append(out, buf, (guint)n);
        }
        if (out->len > MAX_FILE_SIZE) {
            errno = EFBIG;
            return false;
        }
    }
    return true;
}

char *tls_creds_read_file(const TlsCreds *c, const char *path, const char *what, gsize *len,
                          GError **errp)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    GByteArray *data = g_byte_array_new();
    struct stat st;
    bool ok = fd >= 0 && fstat(fd, &st) == 0 &&
              (S_ISDIR(st.st_mode) ? (errno = EISDIR, false) : read_fd(fd, data));
    int err = errno;

    if (fd >= 0) {
        close(fd);
    }
    if (!ok) {
        tls_error(errp, TLS_ERR_CONFIG, "%s: cannot read %s %s: %s", c->name, what, path,
                  g_strerror(err));
        if (data->len) {
            explicit_bzero(data->data, data->len);
        }
        g_byte_array_unref(data);
        return NULL;
    }
    *len = data->len;
    g_byte_array_append(data, (const guint8 *)"", 1);      /* a C string too */
    return (char *)g_byte_array_free(data, FALSE);
}

static bool load_dh_file(TlsCreds *c, const char *path, GError **errp)
{
    gsize len = 0;
    g_autofree char *text = tls_creds_read_file(c, path, "Diffie-Hellman parameters", &len,
                                                errp);

    if (!text) {
        return false;
    }
    gnutls_datum_t data = { (unsigned char *)text, (unsigned)len };
    int ret = gnutls_dh_params_init(&c->dh);
    if (ret >= 0) {
        ret = gnutls_dh_params_import_pkcs3(c->dh, &data, GNUTLS_X509_FMT_PEM);
    }
    if (ret < 0) {
        tls_error(errp, TLS_ERR_CONFIG, "%s: %s holds no PEM Diffie-Hellman parameters: %s",
                  c->name, path, gnutls_strerror(ret));
        return false;
    }
    return true;
}

bool tls_creds_load_common(TlsCreds *c, GError **errp)
{
    g_autofree char *path = tls_creds_path(c, "dh-params.pem");

    if (!creds_set_priority(c, errp)) {
        return false;
    }
    if (c->endpoint != TLS_ENDPOINT_SERVER || access(path, F_OK) != 0) {
        return true;    /* GnuTLS then uses the RFC 7919 groups */
    }
    return load_dh_file(c, path, errp);
}

bool tls_creds_check_dir(const TlsCreds *c, GError **errp)
{
    struct stat st;

    if (stat(c->dir, &st) < 0) {
        tls_error(errp, TLS_ERR_CONFIG, "%s: directory %s: %s", c->name, c->dir,
                  g_strerror(errno));
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        tls_error(errp, TLS_ERR_CONFIG, "%s: dir %s is not a directory", c->name, c->dir);
        return false;
    }
    return true;
}

TlsCreds *tls_creds_lookup(const char *id, TlsEndpoint endpoint, GError **errp)
{
    GError *err = NULL;
    TlsCreds *c = user_object_ref(id, "tls-creds-", NULL, &err);

    if (!c) {
        tls_error(errp, TLS_ERR_CONFIG, "no TLS credentials with id '%s': %s (define them "
                  "with --object or object-add)", id, err->message);
        g_error_free(err);
        return NULL;
    }
    if (c->endpoint != endpoint) {
        tls_error(errp, TLS_ERR_CONFIG, "%s are for endpoint=%s; a %s needs endpoint=%s",
                  c->name, endpoint_names[c->endpoint], endpoint_names[endpoint],
                  endpoint_names[endpoint]);
        tls_creds_unref(c);
        return NULL;
    }
    return c;
}
