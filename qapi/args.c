/* Typed access to a command's "arguments" object, with QEMU's wording for
 * missing, mistyped and unexpected parameters. */
#include "qmp-internal.h"

#include <stdarg.h>
#include <string.h>

static bool holds(JsonNode *node, GType type)
{
    return JSON_NODE_HOLDS_VALUE(node) && json_node_get_value_type(node) == type;
}

const char *qmp_arg_str(JsonObject *args, const char *name, bool required, GError **errp)
{
    JsonNode *node = json_object_get_member(args, name);

    if (!node) {
        if (required) {
            qmp_set_error(errp, QMP_ERR_GENERIC, "Parameter '%s' is missing", name);
        }
        return NULL;
    }
    if (!holds(node, G_TYPE_STRING)) {
        qmp_set_error(errp, QMP_ERR_GENERIC, "Parameter '%s' expects a string", name);
        return NULL;
    }
    return json_node_get_string(node);
}

bool qmp_arg_bool(JsonObject *args, const char *name, bool *out, GError **errp)
{
    JsonNode *node = json_object_get_member(args, name);

    if (!node) {
        return true;
    }
    if (!holds(node, G_TYPE_BOOLEAN)) {
        qmp_set_error(errp, QMP_ERR_GENERIC, "Parameter '%s' expects a boolean", name);
        return false;
    }
    *out = json_node_get_boolean(node);
    return true;
}

bool qmp_arg_int(JsonObject *args, const char *name, bool *has, int64_t *out, GError **errp)
{
    JsonNode *node = json_object_get_member(args, name);

    if (has) {
        *has = node != NULL;
    }
    if (!node) {
        return true;
    }
    if (!holds(node, G_TYPE_INT64)) {
        qmp_set_error(errp, QMP_ERR_GENERIC, "Parameter '%s' expects an integer", name);
        return false;
    }
    *out = json_node_get_int(node);
    return true;
}

static bool name_in_list(const char *member, va_list names)
{
    const char *name;
    while ((name = va_arg(names, const char *))) {
        if (strcmp(name, member) == 0) {
            return true;
        }
    }
    return false;
}

bool qmp_args_only(JsonObject *args, GError **errp, ...)
{
    GList *members = json_object_get_members(args);
    bool ok = true;

    for (GList *m = members; m && ok; m = m->next) {
        va_list names;
        va_start(names, errp);
        ok = name_in_list(m->data, names);
        va_end(names);
        if (!ok) {
            qmp_set_error(errp, QMP_ERR_GENERIC, "Parameter '%s' is unexpected",
                          (const char *)m->data);
        }
    }
    g_list_free(members);
    return ok;
}
