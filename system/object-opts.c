/* --object TYPE,id=ID,KEY=VALUE... (or a JSON object, as QEMU also
 * accepts): user-creatable objects on the command line, turned into the
 * property objects util/user-object takes.  The syntax is checked while
 * the command line is parsed; the objects are created first at start-up,
 * before the sockets that refer to them. */
#include <string.h>

#include "system-internal.h"
#include "util/user-object.h"

#define OPT "--object"

static JsonObject *props_from_json(const char *arg, GError **errp)
{
    GError *err = NULL;
    JsonNode *node = json_from_string(arg, &err);
    JsonObject *obj = NULL;

    if (node && JSON_NODE_HOLDS_OBJECT(node)) {
        obj = json_object_ref(json_node_get_object(node));
    } else {
        g_set_error(errp, BLKMIGD_ERROR, 0, OPT ": not a JSON object: %s",
                    err ? err->message : arg);
    }
    g_clear_error(&err);
    if (node) {
        json_node_unref(node);
    }
    return obj;
}

/* QEMU's implied key: a first item without '=' is the type. */
static char *with_type_key(const char *arg)
{
    size_t first = strcspn(arg, ",");

    if (memchr(arg, '=', first)) {
        return g_strdup(arg);
    }
    return g_strconcat("qom-type=", arg, NULL);
}

static JsonObject *props_from_keyval(const char *arg, GError **errp)
{
    g_autofree char *full = with_type_key(arg);
    GPtrArray *items = keyval_parse(OPT, full, errp);
    JsonObject *obj;

    if (!items) {
        return NULL;
    }
    obj = json_object_new();
    for (guint i = 0; i < items->len; i++) {
        const KeyValue *kv = items->pdata[i];
        json_object_set_string_member(obj, kv->key, kv->value);
    }
    g_ptr_array_unref(items);
    return obj;
}

static JsonObject *object_props(const char *arg, GError **errp)
{
    return arg[0] == '{' ? props_from_json(arg, errp) : props_from_keyval(arg, errp);
}

typedef bool (*ObjectFn)(JsonObject *props, GError **errp);

/* Apply FN to ARG's properties, prefixing "--object: " to its errors. */
static bool apply(const char *arg, ObjectFn fn, GError **errp)
{
    GError *err = NULL;
    JsonObject *props = object_props(arg, errp);
    bool ok;

    if (!props) {
        return false;
    }
    ok = fn(props, &err);
    json_object_unref(props);
    if (!ok) {
        g_set_error(errp, BLKMIGD_ERROR, 0, OPT ": %s", err->message);
        g_error_free(err);
    }
    return ok;
}

bool object_option_check(const char *arg, GError **errp)
{
    return apply(arg, user_object_check, errp);
}

bool object_option_add(const char *arg, GError **errp)
{
    return apply(arg, user_object_add, errp);
}
