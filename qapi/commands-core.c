/* Protocol-level commands: qmp_capabilities, query-version,
 * query-commands. */
#include "qmp-internal.h"

/* No optional protocol capability is offered, so "enable" may only be
 * empty.  (The session becomes negotiated in dispatch.c on success.) */
static JsonNode *qmp_capabilities(JsonObject *args, GError **errp)
{
    if (!qmp_args_only(args, errp, "enable", NULL)) {
        return NULL;
    }
    JsonNode *enable = json_object_get_member(args, "enable");
    if (!enable) {
        return NULL;
    }
    if (!JSON_NODE_HOLDS_ARRAY(enable)) {
        qmp_set_error(errp, QMP_ERR_GENERIC, "Parameter 'enable' expects an array");
        return NULL;
    }
    JsonArray *caps = json_node_get_array(enable);
    if (json_array_get_length(caps) > 0) {
        JsonNode *first = json_array_get_element(caps, 0);
        const char *name = JSON_NODE_HOLDS_VALUE(first) &&
            json_node_get_value_type(first) == G_TYPE_STRING
            ? json_node_get_string(first) : "?";
        qmp_set_error(errp, QMP_ERR_GENERIC, "Capability '%s' not available", name);
    }
    return NULL;
}

static JsonNode *query_version(JsonObject *args, GError **errp)
{
    if (!qmp_args_only(args, errp, NULL)) {
        return NULL;
    }
    return qmp_version_node();
}

static JsonNode *query_commands(JsonObject *args, GError **errp)
{
    if (!qmp_args_only(args, errp, NULL)) {
        return NULL;
    }
    JsonArray *list = json_array_new();
    GList *names = qmp_command_names();
    for (GList *n = names; n; n = n->next) {
        JsonObject *entry = json_object_new();
        json_object_set_string_member(entry, "name", n->data);
        json_array_add_object_element(list, entry);
    }
    g_list_free(names);
    return qmp_node_take_array(list);
}

void qmp_register_core_commands(void)
{
    qmp_register_command("qmp_capabilities", qmp_capabilities);
    qmp_register_command("query-version", query_version);
    qmp_register_command("query-commands", query_commands);
}
