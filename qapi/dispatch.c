/* One request, start to reply: parse, check the request's members, enforce
 * capabilities negotiation, run the handler, and shape the reply with the
 * request's "id".  Error texts and classes are QEMU's. */
#include "qmp-internal.h"

#include <string.h>

#define CAPABILITIES_COMMAND "qmp_capabilities"

static JsonNode *parse_text(const char *text, size_t len, GError **errp)
{
    JsonParser *parser = json_parser_new();
    GError *perr = NULL;
    JsonNode *root = NULL;

    if (!json_parser_load_from_data(parser, text, (gssize)len, &perr)) {
        /* json-glib names the input "<data>": say only where, not what. */
        const char *msg = perr->message;
        if (g_str_has_prefix(msg, "<data>:")) {
            msg += strlen("<data>:");
        }
        qmp_set_error(errp, QMP_ERR_GENERIC, "JSON parse error, %s", msg);
        g_error_free(perr);
    } else if (!(root = json_parser_steal_root(parser))) {
        qmp_set_error(errp, QMP_ERR_GENERIC, "JSON parse error, empty input");
    }
    g_object_unref(parser);
    return root;
}

static bool is_string(JsonNode *node)
{
    return JSON_NODE_HOLDS_VALUE(node) && json_node_get_value_type(node) == G_TYPE_STRING;
}

/* Checks one member of the request; records "execute". */
static bool check_member(JsonObject *req, const char *member, const char **command, GError **errp)
{
    JsonNode *value = json_object_get_member(req, member);

    if (strcmp(member, "execute") == 0) {
        if (!is_string(value)) {
            qmp_set_error(errp, QMP_ERR_GENERIC, "QMP input member 'execute' must be a string");
            return false;
        }
        *command = json_node_get_string(value);
    } else if (strcmp(member, "arguments") == 0) {
        if (!JSON_NODE_HOLDS_OBJECT(value)) {
            qmp_set_error(errp, QMP_ERR_GENERIC,
                          "QMP input member 'arguments' must be an object");
            return false;
        }
    } else if (strcmp(member, "id") != 0) {
        qmp_set_error(errp, QMP_ERR_GENERIC, "QMP input member '%s' is unexpected", member);
        return false;
    }
    return true;
}

/* The command name, or NULL with *errp set when the request is malformed. */
static const char *check_request(JsonObject *req, GError **errp)
{
    const char *command = NULL;
    GList *members = json_object_get_members(req);
    bool ok = true;

    for (GList *m = members; m && ok; m = m->next) {
        ok = check_member(req, m->data, &command, errp);
    }
    g_list_free(members);
    if (ok && !command) {
        qmp_set_error(errp, QMP_ERR_GENERIC, "QMP input lacks member 'execute'");
    }
    return ok ? command : NULL;
}

/* Until qmp_capabilities succeeded only it may run, and then never again. */
static bool negotiation_allows(const QmpSession *session, const char *command, GError **errp)
{
    bool is_caps = strcmp(command, CAPABILITIES_COMMAND) == 0;

    if (!session->negotiated && !is_caps) {
        qmp_set_error(errp, QMP_ERR_COMMAND_NOT_FOUND,
                      "Expecting capabilities negotiation with 'qmp_capabilities'");
        return false;
    }
    if (session->negotiated && is_caps) {
        qmp_set_error(errp, QMP_ERR_COMMAND_NOT_FOUND,
                      "Capabilities negotiation is already complete, command ignored");
        return false;
    }
    return true;
}

/* Returns the "return" value (never NULL on success). */
static JsonNode *run_command(QmpSession *session, const char *command, JsonObject *req,
                             GError **errp)
{
    if (!negotiation_allows(session, command, errp)) {
        return NULL;
    }
    QmpCommandFn fn = qmp_find_command(command);
    if (!fn) {
        qmp_set_error(errp, QMP_ERR_COMMAND_NOT_FOUND, "The command %s has not been found",
                      command);
        return NULL;
    }

    JsonObject *args = json_object_has_member(req, "arguments")
        ? json_object_ref(json_object_get_object_member(req, "arguments"))
        : json_object_new();
    GError *err = NULL;
    JsonNode *ret = fn(args, &err);
    json_object_unref(args);

    if (err) {
        g_propagate_error(errp, err);
        g_clear_pointer(&ret, json_node_unref);
        return NULL;
    }
    if (strcmp(command, CAPABILITIES_COMMAND) == 0) {
        session->negotiated = true;
    }
    if (!ret) {
        ret = qmp_node_take_object(json_object_new());
    }
    return ret;
}

static JsonNode *success_reply(JsonNode *ret, JsonNode *id)
{
    JsonObject *reply = json_object_new();
    json_object_set_member(reply, "return", ret);
    if (id) {
        json_object_set_member(reply, "id", json_node_copy(id));
    }
    return qmp_node_take_object(reply);
}

static JsonNode *dispatch_request(QmpSession *session, JsonNode *request)
{
    GError *err = NULL;

    if (!JSON_NODE_HOLDS_OBJECT(request)) {
        qmp_set_error(&err, QMP_ERR_GENERIC, "QMP input must be a JSON object");
        JsonNode *reply = qmp_error_reply(err, NULL);
        g_error_free(err);
        return reply;
    }

    JsonObject *req = json_node_get_object(request);
    JsonNode *id = json_object_get_member(req, "id");
    const char *command = check_request(req, &err);
    JsonNode *ret = command ? run_command(session, command, req, &err) : NULL;
    if (err) {
        JsonNode *reply = qmp_error_reply(err, id);
        g_error_free(err);
        return reply;
    }
    return success_reply(ret, id);
}

char *qmp_dispatch_text(QmpSession *session, const char *text, size_t len)
{
    GError *err = NULL;
    JsonNode *request = parse_text(text, len, &err);
    JsonNode *reply;

    if (request) {
        reply = dispatch_request(session, request);
        json_node_unref(request);
    } else {
        reply = qmp_error_reply(err, NULL);
        g_error_free(err);
    }
    char *line = qmp_message_to_line(reply);
    json_node_unref(reply);
    return line;
}

char *qmp_framing_error_line(const char *desc)
{
    GError *err = NULL;
    qmp_set_error(&err, QMP_ERR_GENERIC, "%s", desc);
    JsonNode *reply = qmp_error_reply(err, NULL);
    g_error_free(err);
    char *line = qmp_message_to_line(reply);
    json_node_unref(reply);
    return line;
}
