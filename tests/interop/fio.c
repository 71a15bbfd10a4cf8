/* fio as the guest in interop tests (see fio.h). */
#include "fio.h"

#include <json-glib/json-glib.h>
#include <stdarg.h>
#include <string.h>

#include "../qtest/libqtest.h"
#include "interop.h"

GPtrArray *fio_verified_args(const char *uri, unsigned jobs, unsigned ios, unsigned size_mib)
{
    GPtrArray *a = g_ptr_array_new_with_free_func(g_free);

    g_ptr_array_add(a, g_strdup("--name=migrating"));
    g_ptr_array_add(a, g_strdup("--ioengine=nbd"));
    g_ptr_array_add(a, g_strdup_printf("--uri=%s", uri));
    g_ptr_array_add(a, g_strdup("--rw=randwrite"));
    g_ptr_array_add(a, g_strdup("--bs=4k"));
    g_ptr_array_add(a, g_strdup("--iodepth=4"));
    g_ptr_array_add(a, g_strdup_printf("--numjobs=%u", jobs));
    g_ptr_array_add(a, g_strdup_printf("--size=%uM", size_mib));
    g_ptr_array_add(a, g_strdup_printf("--offset_increment=%uM", size_mib));
    g_ptr_array_add(a, g_strdup_printf("--number_ios=%u", ios));
    g_ptr_array_add(a, g_strdup("--verify=crc32c"));
    g_ptr_array_add(a, g_strdup("--group_reporting"));
    return a;
}

pid_t fio_spawn(const char *log, GPtrArray *args, ...)
{
    g_autoptr(GPtrArray) argv = g_ptr_array_new();
    const char *arg;
    va_list ap;

    g_ptr_array_add(argv, "fio");
    for (guint i = 0; i < args->len; i++) {
        g_ptr_array_add(argv, args->pdata[i]);
    }
    va_start(ap, args);
    while ((arg = va_arg(ap, const char *))) {
        g_ptr_array_add(argv, (char *)arg);
    }
    va_end(ap);
    g_ptr_array_add(argv, NULL);
    return interop_spawnv(log, (char **)argv->pdata);
}

char *fio_read_log(const char *path)
{
    char *text = NULL;

    if (!path || !g_file_get_contents(path, &text, NULL, NULL)) {
        text = g_strdup("(no output)");
    }
    return text;
}

void fio_wait_ok(pid_t pid, const char *log, int timeout_ms, const char *what)
{
    int status = interop_wait(pid, timeout_ms);

    if (status != 0) {
        g_autofree char *text = fio_read_log(log);
        g_test_message("%s: fio status %d, output:\n%s", what, status, text);
        if (status == -2) {
            interop_kill(pid);
        }
    }
    g_assert_cmpint(status, ==, 0);
}

gint64 fio_read_bytes(const char *json_path)
{
    g_autofree char *text = fio_read_log(json_path);
    JsonParser *parser = json_parser_new();
    /* fio prints "connected" notices before its JSON on stdout. */
    size_t start = strcspn(text, "{");
    GError *err = NULL;
    JsonArray *jobs;
    gint64 bytes;

    if (!json_parser_load_from_data(parser, text + start, -1, &err)) {
        g_error("fio JSON: %s", err->message);
    }
    jobs = json_object_get_array_member(json_node_get_object(json_parser_get_root(parser)),
                                        "jobs");
    g_assert_cmpuint(json_array_get_length(jobs), ==, 1);
    bytes = qtest_json_int(json_array_get_element(jobs, 0), "read.io_bytes");
    g_object_unref(parser);
    return bytes;
}
