/* Running qemu-img and qemu-io from tests. */
#include "qemu-tools.h"

#include <stdarg.h>
#include <string.h>

static int run_argv(const char *cmdline, char **out)
{
    gchar **argv = NULL, *err = NULL;
    GError *error = NULL;
    int status = -1;

    g_assert_true(g_shell_parse_argv(cmdline, NULL, &argv, NULL));
    if (!g_spawn_sync(NULL, argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, out, &err,
                      &status, &error)) {
        g_error("cannot run '%s': %s", cmdline, error->message);
    }
    if (err && *err) {
        g_test_message("%s: %.300s%s", argv[0], err, strlen(err) > 300 ? "..." : "");
    }
    g_strfreev(argv);
    g_free(err);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Runs the formatted command line (kept in *CMDLINE); its status. */
static int vrun(char **out, char **cmdline, const char *fmt, va_list ap)
{
    *cmdline = g_strdup_vprintf(fmt, ap);
    int status = run_argv(*cmdline, out);

    g_test_message("$ %s -> %d", *cmdline, status);
    return status;
}

int qt_run_status(char **out, const char *fmt, ...)
{
    va_list ap;
    char *output = NULL, *cmdline;
    va_start(ap, fmt);
    int status = vrun(&output, &cmdline, fmt, ap);
    va_end(ap);

    g_free(cmdline);
    if (out) {
        *out = output;
    } else {
        g_free(output);
    }
    return status;
}

char *qt_run(const char *fmt, ...)
{
    va_list ap;
    char *output = NULL, *cmdline;
    va_start(ap, fmt);
    int status = vrun(&output, &cmdline, fmt, ap);
    va_end(ap);

    if (status != 0) {
        g_error("'%s' exited with %d: %s", cmdline, status, output);
    }
    g_free(cmdline);
    return output;
}

static JsonNode *parse(const char *text)
{
    GError *err = NULL;
    JsonNode *node = json_from_string(text, &err);
    g_assert_no_error(err);
    return node;
}

int64_t qt_check(const char *path)
{
    char *out = NULL;
    int status = qt_run_status(&out, "qemu-img check --output=json -f qcow2 %s", path);
    JsonNode *node = parse(out);
    JsonObject *o = json_node_get_object(node);
    int64_t corruptions = json_object_get_int_member_with_default(o, "corruptions", 0);
    int64_t leaks = json_object_get_int_member_with_default(o, "leaks", 0);
    int64_t errors = json_object_get_int_member_with_default(o, "check-errors", 0);

    if (corruptions || errors || (status != 0 && status != 3)) {
        g_error("qemu-img check %s: status %d, %" G_GINT64_FORMAT " corruptions, %"
                G_GINT64_FORMAT " check errors: %s", path, status, corruptions, errors, out);
    }
    json_node_unref(node);
    g_free(out);
    return leaks;
}

bool qt_compare(const char *a, const char *fa, const char *b, const char *fb)
{
    char *out = NULL;
    int status = qt_run_status(&out, "qemu-img compare -f %s -F %s %s %s", fa, fb, a, b);
    if (status != 0) {
        g_test_message("qemu-img compare: %s", out);
    }
    g_assert_cmpint(status, <=, 1);        /* 0 same, 1 different */
    g_free(out);
    return status == 0;
}

JsonNode *qt_map(const char *path, const char *format)
{
    char *out = qt_run("qemu-img map --output=json -f %s %s", format, path);
    JsonNode *node = parse(out);
    g_free(out);
    return node;
}

GArray *qt_map_extents(const char *path, const char *format)
{
    JsonNode *map = qt_map(path, format);
    JsonArray *list = json_node_get_array(map);
    GArray *out = g_array_new(false, false, sizeof(QtExtent));

    for (guint i = 0; i < json_array_get_length(list); i++) {
        JsonObject *o = json_array_get_object_element(list, i);
        QtExtent e = {
            .start = json_object_get_int_member(o, "start"),
            .length = json_object_get_int_member(o, "length"),
            .depth = json_object_get_int_member(o, "depth"),
            .zero = json_object_get_boolean_member(o, "zero"),
            .data = json_object_get_boolean_member(o, "data"),
        };
        g_array_append_val(out, e);
    }
    json_node_unref(map);
    return out;
}

uint64_t qt_data_bytes(const char *path, const char *format, bool top_only)
{
    GArray *map = qt_map_extents(path, format);
    uint64_t bytes = 0;

    for (guint i = 0; i < map->len; i++) {
        QtExtent *e = &g_array_index(map, QtExtent, i);
        if (e->data && (!top_only || e->depth == 0)) {
            bytes += e->length;
        }
    }
    g_array_unref(map);
    return bytes;
}

JsonNode *qt_info(const char *path)
{
    char *out = qt_run("qemu-img info --output=json %s", path);
    JsonNode *node = parse(out);
    g_free(out);
    return node;
}
