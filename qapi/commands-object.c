/* object-add and object-del: QMP's door to the object registry
 * (util/user-object), in QEMU's flat shape: {"qom-type": "tls-creds-x509",
 * "id": "tls0", "dir": "...", "endpoint": "server"}. */
#include "qmp-internal.h"

#include "util/user-object.h"

static void set_generic(GError **errp, GError *err)
{
    qmp_set_error(errp, QMP_ERR_GENERIC, "%s", err->message);
    g_error_free(err);
}

static JsonNode *object_add(JsonObject *args, GError **errp)
{
    GError *err = NULL;

    if (!user_object_add(args, &err)) {
        set_generic(errp, err);
    }
    return NULL;
}

static JsonNode *object_del(JsonObject *args, GError **errp)
{
    GError *err = NULL;
    const char *id;

    if (!qmp_args_only(args, errp, "id", NULL) || !(id = qmp_arg_str(args, "id", true, errp))) {
        return NULL;
    }
    if (!user_object_del(id, &err)) {
        set_generic(errp, err);
    }
    return NULL;
}

void qmp_register_object_commands(void)
{
    qmp_register_command("object-add", object_add);
    qmp_register_command("object-del", object_del);
}
