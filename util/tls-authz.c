/* Authorization of a TLS client's identity (its certificate's
 * distinguished name), QEMU's authz-simple and authz-list objects: which
 * sources may migrate into this destination (tls-authz), which clients
 * may use a TLS socket.  A rule list is evaluated in order; the first
 * rule that matches decides. */
#include "tls-internal.h"

#include <fnmatch.h>
#include <string.h>

typedef struct AuthzRule {
    char *match;
    bool glob;
    bool allow;
} AuthzRule;

struct TlsAuthz {
    gint refs;
    GPtrArray *rules;           /* AuthzRule * */
    bool default_allow;
};

static void rule_free(gpointer p)
{
    AuthzRule *r = p;

    g_free(r->match);
    g_free(r);
}

static TlsAuthz *authz_new(void)
{
    TlsAuthz *a = g_new0(TlsAuthz, 1);

    a->refs = 1;
    a->rules = g_ptr_array_new_with_free_func(rule_free);
    return a;
}

static void add_rule(TlsAuthz *a, const char *match, bool glob, bool allow)
{
    AuthzRule *r = g_new0(AuthzRule, 1);

    r->match = g_strdup(match);
    r->glob = glob;
    r->allow = allow;
    g_ptr_array_add(a->rules, r);
}

TlsAuthz *tls_authz_ref(TlsAuthz *a)
{
    g_atomic_int_inc(&a->refs);
    return a;
}

void tls_authz_unref(TlsAuthz *a)
{
    if (a && g_atomic_int_dec_and_test(&a->refs)) {
        g_ptr_array_unref(a->rules);
        g_free(a);
    }
}

bool tls_authz_is_allowed(const TlsAuthz *a, const char *identity)
{
    for (guint i = 0; identity && i < a->rules->len; i++) {
        const AuthzRule *r = a->rules->pdata[i];
        if (r->glob ? fnmatch(r->match, identity, 0) == 0 : strcmp(r->match, identity) == 0) {
            return r->allow;
        }
    }
    return a->default_allow;
}

TlsAuthz *tls_authz_lookup(const char *id, GError **errp)
{
    GError *err = NULL;
    TlsAuthz *a = user_object_ref(id, "authz-", NULL, &err);

    if (!a) {
        tls_error(errp, TLS_ERR_CONFIG, "no authorization object with id '%s': %s (define "
                  "it with --object authz-simple,id=%s,identity=DN or object-add)", id,
                  err->message, id);
        g_error_free(err);
    }
    return a;
}

/* ---- authz-simple ---- */

static const char *const simple_keys[] = { "identity", NULL };

bool tls_authz_simple_check(const UserObjectProps *p, GError **errp)
{
    return user_object_only(p, simple_keys, errp) &&
           user_object_str(p, "identity", true, errp) != NULL;
}

void *tls_authz_simple_create(const UserObjectProps *p, GError **errp)
{
    TlsAuthz *a;

    if (!tls_authz_simple_check(p, errp)) {
        return NULL;
    }
    a = authz_new();
    add_rule(a, user_object_str(p, "identity", true, NULL), false, true);
    return a;
}

/* ---- authz-list ---- */

static const char *const list_keys[] = { "policy", "rules", NULL };

static bool parse_policy(const UserObjectProps *p, const char *where, const char *value,
                         bool *allow, GError **errp)
{
    if (g_strcmp0(value, "allow") != 0 && g_strcmp0(value, "deny") != 0) {
        user_object_error(errp, p, "%s'policy' must be allow or deny, not '%s'", where,
                          value ? value : "(missing)");
        return false;
    }
    *allow = strcmp(value, "allow") == 0;
    return true;
}

static const char *rule_member(JsonObject *rule, const char *key)
{
    JsonNode *n = json_object_get_member(rule, key);

    return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING
           ? json_node_get_string(n) : NULL;
}

static bool parse_rule(const UserObjectProps *p, guint i, JsonNode *node, TlsAuthz *a,
                       GError **errp)
{
    g_autofree char *where = g_strdup_printf("rules[%u]: ", i);
    JsonObject *rule = JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : NULL;
    const char *match = rule ? rule_member(rule, "match") : NULL;
    const char *format = rule ? rule_member(rule, "format") : NULL;
    bool allow;

    if (!match) {
        user_object_error(errp, p, "%sexpected an object with a string 'match'", where);
        return false;
    }
    if (format && strcmp(format, "exact") != 0 && strcmp(format, "glob") != 0) {
        user_object_error(errp, p, "%s'format' must be exact or glob, not '%s'", where,
                          format);
        return false;
    }
    if (!parse_policy(p, where, rule_member(rule, "policy"), &allow, errp)) {
        return false;
    }
    if (a) {
        add_rule(a, match, format && strcmp(format, "glob") == 0, allow);
    }
    return true;
}

static bool parse_default(const UserObjectProps *p, bool *allow, GError **errp)
{
    GError *err = NULL;
    const char *policy = user_object_str(p, "policy", false, &err);

    if (err) {
        g_propagate_error(errp, err);
        return false;
    }
    *allow = false;
    return !policy || parse_policy(p, "", policy, allow, errp);
}

/* Parse P; with A, fill it in. */
static bool parse_list(const UserObjectProps *p, TlsAuthz *a, GError **errp)
{
    JsonNode *rules = json_object_get_member(p->props, "rules");
    JsonArray *list;
    bool allow;

    if (!user_object_only(p, list_keys, errp) || !parse_default(p, &allow, errp)) {
        return false;
    }
    if (rules && !JSON_NODE_HOLDS_ARRAY(rules)) {
        user_object_error(errp, p, "'rules' must be a list of rules (use the JSON form)");
        return false;
    }
    list = rules ? json_node_get_array(rules) : NULL;
    for (guint i = 0; list && i < json_array_get_length(list); i++) {
        if (!parse_rule(p, i, json_array_get_element(list, i), a, errp)) {
            return false;
        }
    }
    if (a) {
        a->default_allow = allow;
    }
    return true;
}

bool tls_authz_list_check(const UserObjectProps *p, GError **errp)
{
    return parse_list(p, NULL, errp);
}

void *tls_authz_list_create(const UserObjectProps *p, GError **errp)
{
    TlsAuthz *a = authz_new();

    if (!parse_list(p, a, errp)) {
        tls_authz_unref(a);
        return NULL;
    }
    return a;
}
