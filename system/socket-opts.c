/* Socket addresses with options after them, "URI[,KEY=VALUE...]", as in
 * --qmp tcp:HOST:PORT,tls-creds=ID or --nbd unix:PATH,tls-creds=ID: the
 * address ends at the first single comma (",," stands for a comma inside
 * it, e.g. in a unix path), the rest is key=value items. */
#include <string.h>

#include "nbd/server.h"
#include "qapi/qmp.h"
#include "system-internal.h"
#include "util/sockets.h"

#define SOCKET_KINDS ((1u << ENDPOINT_TCP) | (1u << ENDPOINT_UNIX))

typedef struct SocketSpec {
    char *uri;
    const char *tls_creds;      /* borrowed from items */
    const char *tls_authz;
    const char *tls_mode;       /* --nbd only: off, on, require */
    GPtrArray *items;           /* KeyValue *, or NULL */
} SocketSpec;

static bool is_nbd(const char *option)
{
    return strcmp(option, "--nbd") == 0;
}

static void spec_clear(SocketSpec *s)
{
    g_free(s->uri);
    if (s->items) {
        g_ptr_array_unref(s->items);
    }
    memset(s, 0, sizeof(*s));
}

/* The address part of ARG, unescaped; *REST points after its comma. */
static char *split_uri(const char *arg, const char **rest)
{
    GString *uri = g_string_new(NULL);
    const char *p = arg;

    for (; *p; p++) {
        if (p[0] == ',' && p[1] == ',') {
            g_string_append_c(uri, ',');
            p++;
        } else if (*p == ',') {
            p++;
            break;
        } else {
            g_string_append_c(uri, *p);
        }
    }
    *rest = p;
    return g_string_free(uri, FALSE);
}

static bool take_item(const char *option, SocketSpec *s, const KeyValue *kv, GError **errp)
{
    if (strcmp(kv->key, "tls-creds") == 0) {
        s->tls_creds = kv->value;
    } else if (strcmp(kv->key, "tls-authz") == 0) {
        s->tls_authz = kv->value;
    } else if (strcmp(kv->key, "tls") == 0 && is_nbd(option)) {
        s->tls_mode = kv->value;
    } else {
        g_set_error(errp, BLKMIGD_ERROR, 0, "%s: unknown option '%s' (known: tls-creds, "
                    "tls-authz%s)", option, kv->key, is_nbd(option) ? ", tls" : "");
        return false;
    }
    return true;
}

/* --nbd ...,tls=off|on|require: off without tls-creds, the others with
 * (require is the default with them). */
static bool check_tls_mode(const char *option, const SocketSpec *s, GError **errp)
{
    const char *mode = s->tls_mode;

    if (mode && strcmp(mode, "off") != 0 && strcmp(mode, "on") != 0 &&
        strcmp(mode, "require") != 0) {
        g_set_error(errp, BLKMIGD_ERROR, 0, "%s: tls=%s: expected off, on or require",
                    option, mode);
        return false;
    }
    if (mode && strcmp(mode, "off") == 0 && s->tls_creds) {
        g_set_error(errp, BLKMIGD_ERROR, 0, "%s: tls=off contradicts tls-creds", option);
        return false;
    }
    if (mode && strcmp(mode, "off") != 0 && !s->tls_creds) {
        g_set_error(errp, BLKMIGD_ERROR, 0, "%s: tls=%s needs tls-creds", option, mode);
        return false;
    }
    return true;
}

static bool check_tls(const char *option, const SocketSpec *s, GError **errp)
{
    Endpoint ep;
    GError *err = NULL;
    bool tcp;

    if (!endpoint_parse(s->uri, SOCKET_KINDS, &ep, &err)) {
        g_set_error(errp, BLKMIGD_ERROR, 0, "%s: %s", option, err->message);
        g_error_free(err);
        return false;
    }
    tcp = ep.kind == ENDPOINT_TCP;
    endpoint_clear(&ep);
    if ((s->tls_creds || s->tls_authz) && !tcp && !is_nbd(option)) {
        g_set_error(errp, BLKMIGD_ERROR, 0, "%s: TLS options need a tcp: address", option);
        return false;
    }
    if (s->tls_authz && !s->tls_creds) {
        g_set_error(errp, BLKMIGD_ERROR, 0, "%s: tls-authz needs tls-creds", option);
        return false;
    }
    return true;
}

static bool spec_parse(const char *option, const char *arg, SocketSpec *s, GError **errp)
{
    const char *rest;

    memset(s, 0, sizeof(*s));
    s->uri = split_uri(arg, &rest);
    if (*rest && !(s->items = keyval_parse(option, rest, errp))) {
        return false;
    }
    for (guint i = 0; s->items && i < s->items->len; i++) {
        if (!take_item(option, s, s->items->pdata[i], errp)) {
            return false;
        }
    }
    return check_tls(option, s, errp) && check_tls_mode(option, s, errp);
}

bool qmp_option_check(const char *arg, GError **errp)
{
    SocketSpec s;
    bool ok = spec_parse("--qmp", arg, &s, errp);

    spec_clear(&s);
    return ok;
}

bool qmp_option_start(const char *arg, GError **errp)
{
    SocketSpec s;
    bool ok = spec_parse("--qmp", arg, &s, errp) &&
              qmp_server_start_tls(s.uri, s.tls_creds, s.tls_authz, errp);

    spec_clear(&s);
    return ok;
}

bool nbd_option_check(const char *arg, GError **errp)
{
    SocketSpec s;
    bool ok = spec_parse("--nbd", arg, &s, errp);

    spec_clear(&s);
    return ok;
}

bool nbd_option_start(const char *arg, GError **errp)
{
    SocketSpec s;
    bool ok = spec_parse("--nbd", arg, &s, errp);
    NbdServerTls tls = {
        .creds = s.tls_creds,
        .authz = s.tls_authz,
        .require = !s.tls_mode || strcmp(s.tls_mode, "require") == 0,
    };

    ok = ok && guest_nbd_start(s.uri, &tls, errp);
    spec_clear(&s);
    return ok;
}
