/* tls-creds-psk: pre-shared keys from DIR/keys.psk, one "USERNAME:HEXKEY"
 * line per user as psktool writes them.  The file is parsed here rather
 * than by GnuTLS so that a bad line is reported, with its number, when
 * the object is created; a server then knows exactly the users the file
 * had at that time. */
#include "tls-internal.h"

#include <string.h>

#define PSK_FILE "keys.psk"

static void key_free(gpointer p)
{
    gnutls_datum_t *key = p;

    explicit_bzero(key->data, key->size);
    g_free(key->data);
    g_free(key);
}

static gnutls_datum_t *key_from_hex(const char *hex)
{
    size_t len = strlen(hex);
    gnutls_datum_t *key;

    if (len == 0 || len % 2) {
        return NULL;
    }
    key = g_new0(gnutls_datum_t, 1);
    key->size = len / 2;
    key->data = g_malloc(key->size);
    for (size_t i = 0; i < key->size; i++) {
        int hi = g_ascii_xdigit_value(hex[2 * i]), lo = g_ascii_xdigit_value(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            key_free(key);
            return NULL;
        }
        key->data[i] = (unsigned char)(hi << 4 | lo);
    }
    return key;
}

static bool parse_line(const TlsCreds *c, const char *path, unsigned lineno, char *line,
                       GHashTable *keys, GError **errp)
{
    char *colon = strchr(g_strstrip(line), ':');
    gnutls_datum_t *key;

    if (!*line || *line == '#') {
        return true;
    }
    if (!colon || colon == line) {
        tls_error(errp, TLS_ERR_CONFIG, "%s: %s line %u: expected USERNAME:HEXKEY",
                  c->name, path, lineno);
        return false;
    }
    *colon = '\0';
    if (g_hash_table_contains(keys, line)) {
        tls_error(errp, TLS_ERR_CONFIG, "%s: %s line %u: user '%s' appears twice", c->name,
                  path, lineno, line);
        return false;
    }
    key = key_from_hex(colon + 1);
    if (!key) {
        tls_error(errp, TLS_ERR_CONFIG, "%s: %s line %u: the key of user '%s' is not an "
                  "even number of hexadecimal digits", c->name, path, lineno, line);
        return false;
    }
    g_hash_table_insert(keys, g_strdup(line), key);
    return true;
}

static bool parse_text(const TlsCreds *c, const char *path, char *text, GHashTable *keys,
                       GError **errp)
{
    char **lines = g_strsplit(text, "\n", -1);
    bool ok = true;

    for (unsigned i = 0; ok && lines[i]; i++) {
        ok = parse_line(c, path, i + 1, lines[i], keys, errp);
    }
    for (unsigned i = 0; lines[i]; i++) {
        explicit_bzero(lines[i], strlen(lines[i]));
    }
    g_strfreev(lines);
    if (ok && g_hash_table_size(keys) == 0) {
        tls_error(errp, TLS_ERR_CONFIG, "%s: %s holds no key", c->name, path);
        ok = false;
    }
    return ok;
}

static GHashTable *read_keys(const TlsCreds *c, GError **errp)
{
    g_autofree char *path = tls_creds_path(c, PSK_FILE);
    GHashTable *keys = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, key_free);
    gsize len = 0;
    char *text = tls_creds_read_file(c, path, "PSK file", &len, errp);
    bool ok;

    if (!text) {
        g_hash_table_unref(keys);
        return NULL;
    }
    ok = parse_text(c, path, text, keys, errp);
    explicit_bzero(text, len);
    g_free(text);
    if (!ok) {
        g_clear_pointer(&keys, g_hash_table_unref);
    }
    return keys;
}

int tls_psk_server_key_cb(gnutls_session_t handle, const char *username, gnutls_datum_t *key)
{
    TlsSession *s = gnutls_session_get_ptr(handle);
    const gnutls_datum_t *found = g_hash_table_lookup(s->creds->psk_keys, username);

    if (!found) {
        g_free(s->refusal);
        s->refusal = g_strdup_printf("unknown PSK user '%s' (not in %s/" PSK_FILE ")",
                                     username, s->creds->dir);
        s->refusal_alert = GNUTLS_A_UNKNOWN_PSK_IDENTITY;
        return -1;
    }
    key->data = gnutls_malloc(found->size);
    if (!key->data) {
        return -1;
    }
    memcpy(key->data, found->data, found->size);
    key->size = found->size;
    return 0;
}

static bool load_server(TlsCreds *c, GError **errp)
{
    if (gnutls_psk_allocate_server_credentials(&c->psk_server) < 0) {
        c->psk_server = NULL;
        tls_error(errp, TLS_ERR_CONFIG, "%s: out of memory", c->name);
        return false;
    }
    gnutls_psk_set_server_credentials_function(c->psk_server, tls_psk_server_key_cb);
    if (c->dh) {
        gnutls_psk_set_server_dh_params(c->psk_server, c->dh);
    } else {
        gnutls_psk_set_server_known_dh_params(c->psk_server, GNUTLS_SEC_PARAM_MEDIUM);
    }
    return true;
}

static bool load_client(TlsCreds *c, const char *username, GError **errp)
{
    const gnutls_datum_t *key = g_hash_table_lookup(c->psk_keys, username);
    int ret;

    if (!key) {
        tls_error(errp, TLS_ERR_CONFIG, "%s: user '%s' not found in %s/" PSK_FILE, c->name,
                  username, c->dir);
        return false;
    }
    ret = gnutls_psk_allocate_client_credentials(&c->psk_client);
    if (ret >= 0) {
        ret = gnutls_psk_set_client_credentials(c->psk_client, username, key,
                                                GNUTLS_PSK_KEY_RAW);
    }
    if (ret < 0) {
        tls_error(errp, TLS_ERR_CONFIG, "%s: cannot use the key of '%s': %s", c->name,
                  username, gnutls_strerror(ret));
        return false;
    }
    /* A client keeps only its own key, inside GnuTLS. */
    g_clear_pointer(&c->psk_keys, g_hash_table_unref);
    c->username = g_strdup(username);
    return true;
}

bool tls_creds_psk_load(TlsCreds *c, const char *username, GError **errp)
{
    if (!tls_creds_check_dir(c, errp) || !(c->psk_keys = read_keys(c, errp)) ||
        !tls_creds_load_common(c, errp)) {
        return false;
    }
    if (c->endpoint == TLS_ENDPOINT_SERVER) {
        return load_server(c, errp);
    }
    return load_client(c, username ? username : TLS_PSK_DEFAULT_USER, errp);
}

/* ---- the object type ---- */

static const char *const psk_keys[] = { "dir", "endpoint", "username", "priority", NULL };

static bool psk_parse(const UserObjectProps *p, TlsCredsSpec *spec, GError **errp)
{
    GError *err = NULL;

    if (!user_object_only(p, psk_keys, errp) || !tls_creds_parse_common(p, spec, errp)) {
        return false;
    }
    spec->username = user_object_str(p, "username", false, &err);
    if (err) {
        g_propagate_error(errp, err);
        return false;
    }
    if (spec->username && spec->endpoint == TLS_ENDPOINT_SERVER) {
        user_object_error(errp, p, "username is for endpoint=client (a server accepts "
                          "every user of " PSK_FILE ")");
        return false;
    }
    return true;
}

static TlsCreds *psk_new(const TlsCredsSpec *spec, const char *id, GError **errp)
{
    TlsCreds *c = tls_creds_alloc(TLS_CREDS_PSK, spec, id);

    if (!tls_creds_psk_load(c, spec->username, errp)) {
        tls_creds_unref(c);
        return NULL;
    }
    return c;
}

bool tls_creds_psk_check(const UserObjectProps *p, GError **errp)
{
    TlsCredsSpec spec;
    return psk_parse(p, &spec, errp);
}

void *tls_creds_psk_create(const UserObjectProps *p, GError **errp)
{
    TlsCredsSpec spec;
    return psk_parse(p, &spec, errp) ? psk_new(&spec, p->id, errp) : NULL;
}

TlsCreds *tls_creds_new_psk(const char *dir, TlsEndpoint endpoint, const char *username,
                            GError **errp)
{
    TlsCredsSpec spec = { .dir = dir, .endpoint = endpoint, .username = username };
    return psk_new(&spec, NULL, errp);
}
