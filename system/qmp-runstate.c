/* QMP commands about the guest's runstate: query-status, stop, cont,
 * quit. */
#include "qapi/qmp.h"
#include "system/runstate.h"
#include "system-internal.h"

static JsonNode *query_status(JsonObject *args, GError **errp)
{
    if (!qmp_args_only(args, errp, NULL)) {
        return NULL;
    }
    RunState state = runstate_get();
    JsonBuilder *b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "running");
    json_builder_add_boolean_value(b, state == RUN_STATE_RUNNING);
    json_builder_set_member_name(b, "singlestep");
    json_builder_add_boolean_value(b, FALSE);
    json_builder_set_member_name(b, "status");
    json_builder_add_string_value(b, runstate_name(state));
    json_builder_end_object(b);
    JsonNode *ret = json_builder_get_root(b);
    g_object_unref(b);
    return ret;
}

/* As in QEMU: "stop" while an incoming migration is awaited means "stay
 * paused once it arrives"; stopping a stopped guest changes nothing. */
static JsonNode *stop(JsonObject *args, GError **errp)
{
    if (!qmp_args_only(args, errp, NULL)) {
        return NULL;
    }
    RunState state = runstate_get();
    if (state == RUN_STATE_INMIGRATE) {
        vm_ops_set_autostart(false);
    } else if (state == RUN_STATE_RUNNING) {
        vm_stop(RUN_STATE_PAUSED);
    }
    return NULL;
}

static JsonNode *cont(JsonObject *args, GError **errp)
{
    const char *why = NULL;
    if (qmp_args_only(args, errp, NULL) && !vm_start(&why)) {
        g_set_error_literal(errp, QMP_ERROR, QMP_ERR_GENERIC, why);
    }
    return NULL;
}

static gboolean quit_after_reply(gpointer unused)
{
    system_shutdown_request("host-qmp-quit");
    return G_SOURCE_REMOVE;
}

/* The reply goes out first; the SHUTDOWN event and the exit follow from
 * the main loop. */
static JsonNode *quit(JsonObject *args, GError **errp)
{
    if (qmp_args_only(args, errp, NULL)) {
        g_idle_add(quit_after_reply, NULL);
    }
    return NULL;
}

void qmp_register_runstate_commands(void)
{
    qmp_register_command("query-status", query_status);
    qmp_register_command("stop", stop);
    qmp_register_command("cont", cont);
    qmp_register_command("quit", quit);
}
