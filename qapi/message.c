/* Wire form of QMP messages: compact JSON lines and error replies. */
#include "qmp-internal.h"

G_DEFINE_QUARK(qmp-error-quark, qmp_error)

char *qmp_message_to_line(JsonNode *node)
{
    JsonGenerator *gen = json_generator_new();
    json_generator_set_root(gen, node);
    gsize len = 0;
    char *json = json_generator_to_data(gen, &len);
    g_object_unref(gen);
    /* Every message ends with CRLF, as QEMU's monitor does. */
    char *line = g_strconcat(json, "\r\n", NULL);
    g_free(json);
    return line;
}

static const char *error_class(const GError *err)
{
    if (err->domain == QMP_ERROR) {
        switch ((QmpErrorCode)err->code) {
        case QMP_ERR_COMMAND_NOT_FOUND:
            return QMP_ERROR_COMMAND_NOT_FOUND;
        case QMP_ERR_DEVICE_NOT_FOUND:
            return QMP_ERROR_DEVICE_NOT_FOUND;
        case QMP_ERR_DEVICE_NOT_ACTIVE:
            return QMP_ERROR_DEVICE_NOT_ACTIVE;
        case QMP_ERR_GENERIC:
            break;
        }
    }
    return QMP_ERROR_GENERIC;
}

JsonNode *qmp_error_reply(const GError *err, JsonNode *id)
{
    JsonObject *error = json_object_new();
    json_object_set_string_member(error, "class", error_class(err));
    json_object_set_string_member(error, "desc", err->message);

    JsonObject *reply = json_object_new();
    json_object_set_object_member(reply, "error", error);
    if (id) {
        json_object_set_member(reply, "id", json_node_copy(id));
    }
    return qmp_node_take_object(reply);
}

void qmp_set_error(GError **errp, QmpErrorCode code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error_literal(errp, QMP_ERROR, code, msg);
    g_free(msg);
}

JsonNode *qmp_node_take_object(JsonObject *obj)
{
    JsonNode *node = json_node_new(JSON_NODE_OBJECT);
    json_node_take_object(node, obj);
    return node;
}

JsonNode *qmp_node_take_array(JsonArray *arr)
{
    JsonNode *node = json_node_new(JSON_NODE_ARRAY);
    json_node_take_array(node, arr);
    return node;
}
