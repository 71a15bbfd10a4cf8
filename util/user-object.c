/* The registry of user-created objects (--object, object-add) by id, the
 * table of their types, and typed access to their properties. */
#include "util/user-object.h"

#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#include "util/id.h"
#include "util/tls.h"

#define OBJECT_ERROR g_quark_from_static_string("blkmig-object-error")

typedef struct UserObjectType {
    const char *name;
    bool (*check)(const UserObjectProps *p, GError **errp);
    void *(*create)(const UserObjectProps *p, GError **errp);
    void *(*ref)(void *obj);
    void (*unref)(void *obj);
} UserObjectType;

typedef struct Entry {
    const UserObjectType *type;
    void *obj;
} Entry;

static void *creds_ref(void *obj) { return tls_creds_ref(obj); }
static void creds_unref(void *obj) { tls_creds_unref(obj); }
static void *authz_ref(void *obj) { return tls_authz_ref(obj); }
static void authz_unref(void *obj) { tls_authz_unref(obj); }

static const UserObjectType types[] = {
    { "tls-creds-x509", tls_creds_x509_check, tls_creds_x509_create, creds_ref, creds_unref },
    { "tls-creds-psk", tls_creds_psk_check, tls_creds_psk_create, creds_ref, creds_unref },
    { "authz-simple", tls_authz_simple_check, tls_authz_simple_create, authz_ref, authz_unref },
    { "authz-list", tls_authz_list_check, tls_authz_list_create, authz_ref, authz_unref },
};

static GMutex lock;
static GHashTable *registry;    /* id -> Entry * */

/* ---- properties ---- */

void user_object_error(GError **errp, const UserObjectProps *p, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(errp, OBJECT_ERROR, 0, "%s '%s': %s", p->type, p->id, msg);
}

static const char *member_str(JsonObject *props, const char *key)
{
    JsonNode *n = json_object_get_member(props, key);

    return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING
           ? json_node_get_string(n) : NULL;
}

const char *user_object_str(const UserObjectProps *p, const char *key, bool required,
                            GError **errp)
{
    JsonNode *n = json_object_get_member(p->props, key);

    if (!n) {
        if (required) {
            user_object_error(errp, p, "'%s' is missing", key);
        }
        return NULL;
    }
    if (!member_str(p->props, key)) {
        user_object_error(errp, p, "'%s' must be a string", key);
    }
    return member_str(p->props, key);
}

bool user_object_bool(const UserObjectProps *p, const char *key, bool *out, GError **errp)
{
    static const char *const yes[] = { "on", "yes", "true" };
    static const char *const no[] = { "off", "no", "false" };
    JsonNode *n = json_object_get_member(p->props, key);
    const char *s = member_str(p->props, key);

    if (!n) {
        return true;
    }
    if (JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_BOOLEAN) {
        *out = json_node_get_boolean(n);
        return true;
    }
    for (unsigned i = 0; s && i < G_N_ELEMENTS(yes); i++) {
        if (strcmp(s, yes[i]) == 0 || strcmp(s, no[i]) == 0) {
            *out = strcmp(s, yes[i]) == 0;
            return true;
        }
    }
    user_object_error(errp, p, "'%s' must be on or off, not '%s'", key, s ? s : "(not a "
                      "string)");
    return false;
}

static bool in_list(const char *key, const char *const *keys)
{
    for (; *keys; keys++) {
        if (strcmp(key, *keys) == 0) {
            return true;
        }
    }
    return false;
}

bool user_object_only(const UserObjectProps *p, const char *const *keys, GError **errp)
{
    static const char *const always[] = { "qom-type", "id", NULL };
    GList *members = json_object_get_members(p->props);
    bool ok = true;

    for (GList *m = members; m && ok; m = m->next) {
        if (!in_list(m->data, always) && !in_list(m->data, keys)) {
            g_autofree char *known = g_strjoinv(", ", (char **)keys);
            user_object_error(errp, p, "unknown property '%s' (known: %s)",
                              (const char *)m->data, known);
            ok = false;
        }
    }
    g_list_free(members);
    return ok;
}

/* ---- type and id ---- */

static const UserObjectType *find_type(const char *name, GError **errp)
{
    GString *known = g_string_new(NULL);

    for (unsigned i = 0; i < G_N_ELEMENTS(types); i++) {
        if (name && strcmp(name, types[i].name) == 0) {
            g_string_free(known, TRUE);
            return &types[i];
        }
        g_string_append_printf(known, "%s%s", i ? ", " : "", types[i].name);
    }
    if (!name) {
        g_set_error(errp, OBJECT_ERROR, 0, "Parameter 'qom-type' is missing (one of: %s)",
                    known->str);
    } else {
        g_set_error(errp, OBJECT_ERROR, 0, "unknown object type '%s' (known: %s)", name,
                    known->str);
    }
    g_string_free(known, TRUE);
    return NULL;
}

/* Type and id of PROPS, checked. */
static const UserObjectType *parse_header(JsonObject *props, UserObjectProps *p,
                                          GError **errp)
{
    const UserObjectType *type = find_type(member_str(props, "qom-type"), errp);

    if (!type) {
        return NULL;
    }
    p->type = type->name;
    p->id = member_str(props, "id");
    p->props = props;
    if (!p->id) {
        g_set_error(errp, OBJECT_ERROR, 0, "%s: Parameter 'id' is missing", type->name);
        return NULL;
    }
    if (!id_wellformed(p->id, SIZE_MAX)) {
        g_set_error(errp, OBJECT_ERROR, 0, "%s: invalid id '%s' (a letter, then letters, "
                    "digits, '-', '.', '_')", type->name, p->id);
        return NULL;
    }
    return type;
}

bool user_object_check(JsonObject *props, GError **errp)
{
    UserObjectProps p;
    const UserObjectType *type = parse_header(props, &p, errp);

    return type && type->check(&p, errp);
}

/* ---- registry ---- */

static void entry_free(gpointer data)
{
    Entry *e = data;

    e->type->unref(e->obj);
    g_free(e);
}

static bool id_taken(const char *id, GError **errp)
{
    if (registry && g_hash_table_contains(registry, id)) {
        g_set_error(errp, OBJECT_ERROR, 0, "an object with id '%s' already exists", id);
        return true;
    }
    return false;
}

/* Register OBJ as P->id unless another add won the id meanwhile. */
static bool insert(const UserObjectType *type, const UserObjectProps *p, void *obj,
                   GError **errp)
{
    bool ok;
    Entry *e;

    g_mutex_lock(&lock);
    ok = !id_taken(p->id, errp);
    if (ok) {
        if (!registry) {
            registry = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, entry_free);
        }
        e = g_new0(Entry, 1);
        e->type = type;
        e->obj = obj;
        g_hash_table_insert(registry, g_strdup(p->id), e);
    }
    g_mutex_unlock(&lock);
    if (!ok) {
        type->unref(obj);
    }
    return ok;
}

bool user_object_add(JsonObject *props, GError **errp)
{
    UserObjectProps p;
    const UserObjectType *type = parse_header(props, &p, errp);
    void *obj;
    bool taken;

    if (!type) {
        return false;
    }
    g_mutex_lock(&lock);
    taken = id_taken(p.id, errp);
    g_mutex_unlock(&lock);
    if (taken || !(obj = type->create(&p, errp))) {    /* loads files: not under the lock */
        return false;
    }
    return insert(type, &p, obj, errp);
}

bool user_object_del(const char *id, GError **errp)
{
    gpointer key = NULL, value = NULL;
    bool found;

    g_mutex_lock(&lock);
    found = registry && g_hash_table_steal_extended(registry, id, &key, &value);
    g_mutex_unlock(&lock);
    if (!found) {
        g_set_error(errp, OBJECT_ERROR, 0, "object '%s' not found", id);
        return false;
    }
    g_free(key);
    entry_free(value);
    return true;
}

void user_objects_clear(void)
{
    GHashTable *old;

    g_mutex_lock(&lock);
    old = registry;
    registry = NULL;
    g_mutex_unlock(&lock);
    if (old) {
        g_hash_table_unref(old);
    }
}

void *user_object_ref(const char *id, const char *type_prefix, const char **type,
                      GError **errp)
{
    Entry *e;
    void *obj = NULL;

    g_mutex_lock(&lock);
    e = registry ? g_hash_table_lookup(registry, id) : NULL;
    if (!e) {
        g_set_error(errp, OBJECT_ERROR, 0, "no object with id '%s'", id);
    } else if (!g_str_has_prefix(e->type->name, type_prefix)) {
        g_set_error(errp, OBJECT_ERROR, 0, "object '%s' is of type %s, not %s*", id,
                    e->type->name, type_prefix);
    } else {
        obj = e->type->ref(e->obj);
        if (type) {
            *type = e->type->name;
        }
    }
    g_mutex_unlock(&lock);
    return obj;
}
