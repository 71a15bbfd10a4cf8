/* Whole-daemon harness: members of QMP replies by dotted path. */
#include "libqtest-internal.h"

JsonNode *qtest_json_get(JsonNode *obj, const char *path)
{
    char **parts = g_strsplit(path, ".", -1);
    JsonNode *node = obj;
    for (char **p = parts; node && *p; p++) {
        node = JSON_NODE_HOLDS_OBJECT(node)
            ? json_object_get_member(json_node_get_object(node), *p) : NULL;
    }
    g_strfreev(parts);
    return node;
}

static JsonNode *json_need(JsonNode *obj, const char *path, GType type)
{
    JsonNode *node = qtest_json_get(obj, path);
    if (!node || !JSON_NODE_HOLDS_VALUE(node) || json_node_get_value_type(node) != type) {
        g_autofree char *text = qmp_json_to_string(obj, false);
        qtest_fail("expected %s member '%s' in %s", g_type_name(type), path, text);
    }
    return node;
}

gint64 qtest_json_int(JsonNode *obj, const char *path)
{
    return json_node_get_int(json_need(obj, path, G_TYPE_INT64));
}

const char *qtest_json_str(JsonNode *obj, const char *path)
{
    return json_node_get_string(json_need(obj, path, G_TYPE_STRING));
}

bool qtest_json_bool(JsonNode *obj, const char *path)
{
    return json_node_get_boolean(json_need(obj, path, G_TYPE_BOOLEAN));
}
