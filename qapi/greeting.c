/* The server's identity: the greeting each client receives on connect and
 * the version that query-version reports. */
#include "qmp-internal.h"

JsonNode *qmp_version_node(void)
{
    JsonBuilder *b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "qemu");
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "micro");
    json_builder_add_int_value(b, BLKMIG_VERSION_MICRO);
    json_builder_set_member_name(b, "minor");
    json_builder_add_int_value(b, BLKMIG_VERSION_MINOR);
    json_builder_set_member_name(b, "major");
    json_builder_add_int_value(b, BLKMIG_VERSION_MAJOR);
    json_builder_end_object(b);
    json_builder_set_member_name(b, "package");
    json_builder_add_string_value(b, "blkmig");
    json_builder_end_object(b);
    JsonNode *node = json_builder_get_root(b);
    g_object_unref(b);
    return node;
}

/* {"QMP": {"version": ..., "capabilities": []}}: no optional protocol
 * capabilities (such as QEMU's "oob") are offered. */
char *qmp_greeting_line(void)
{
    JsonObject *qmp = json_object_new();
    json_object_set_member(qmp, "version", qmp_version_node());
    json_object_set_array_member(qmp, "capabilities", json_array_new());

    JsonObject *greeting = json_object_new();
    json_object_set_object_member(greeting, "QMP", qmp);
    JsonNode *node = qmp_node_take_object(greeting);

    char *line = qmp_message_to_line(node);
    json_node_unref(node);
    return line;
}
