/* blkmig migrate --resume and --retries: the QMP calls that continue a
 * paused migration (block-resume): the destination listens again
 * (migrate-recover), the source reconnects (migrate with resume). */
#include <string.h>

#include "blkmig-internal.h"
#include "migrate-resume.h"

void migrate_resume_enable(QmpClient *c)
{
    JsonArray *caps = json_array_new();
    JsonObject *cap = json_object_new();
    JsonObject *args = json_object_new();

    json_object_set_string_member(cap, "capability", "block-resume");
    json_object_set_boolean_member(cap, "state", true);
    json_array_add_object_element(caps, cap);
    json_object_set_array_member(args, "capabilities", caps);
    json_node_unref(execute_or_die(c, "migrate-set-capabilities", args));
    json_object_unref(args);
}

bool migrate_resume_is_paused(QmpClient *d)
{
    JsonNode *info = execute_or_die(d, "query-migrate", NULL);
    const char *status = jstr(info, "status");
    bool paused = status && !strcmp(status, "paused");

    json_node_unref(info);
    return paused;
}

/* COMMAND with ARGS; false with *errp when the daemon refused. */
static bool try_execute(QmpClient *c, const char *command, JsonObject *args, GError **errp)
{
    JsonNode *ret = qmp_client_execute(c, command, args, NULL, errp);

    if (ret) {
        json_node_unref(ret);
    }
    return ret != NULL;
}

bool migrate_resume(QmpClient *src, QmpClient *dst, const char *uri, GError **errp)
{
    JsonObject *args = json_object_new();
    bool ok;

    json_object_set_string_member(args, "uri", uri);
    ok = !dst || try_execute(dst, "migrate-recover", args, errp);
    json_object_set_boolean_member(args, "resume", true);
    ok = ok && try_execute(src, "migrate", args, errp);
    json_object_unref(args);
    return ok;
}
