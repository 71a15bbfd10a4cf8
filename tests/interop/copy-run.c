/* Helpers of the blkmig copy interop tests (see copy-run.h). */
#include "copy-run.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

#include "../lib/files.h"
#include "../lib/qemu-tools.h"
#include "../qtest/libqtest.h"

#define MiB (UINT64_C(1) << 20)

char *copy_tool_path(void)
{
    g_autofree char *tool = qtest_tool_path();
    return g_canonicalize_filename(tool, NULL);
}

static CopyRun run_argv(char **argv, char **envp)
{
    CopyRun r = { 0 };
    int wait_status = 0;
    GError *err = NULL;
    g_autofree char *cmd = g_strjoinv(" ", argv);

    if (!g_spawn_sync(qtest_tmpdir(), argv, envp, G_SPAWN_SEARCH_PATH, NULL, NULL, &r.out,
                      &r.err, &wait_status, &err)) {
        g_error("cannot run %s: %s", cmd, err->message);
    }
    r.status = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1;
    g_test_message("$ %s -> %d\n%s%s", cmd, r.status, r.err, r.status ? r.out : "");
    return r;
}

CopyRun copy_toolv(const char *const *args)
{
    GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);

    g_ptr_array_add(argv, g_strdup("timeout"));
    g_ptr_array_add(argv, g_strdup("120"));
    g_ptr_array_add(argv, copy_tool_path());
    g_ptr_array_add(argv, g_strdup("copy"));
    for (const char *const *a = args; *a; a++) {
        g_ptr_array_add(argv, g_strdup(*a));
    }
    g_ptr_array_add(argv, NULL);
    CopyRun r = run_argv((char **)argv->pdata, NULL);
    g_ptr_array_free(argv, TRUE);
    return r;
}

CopyRun copy_tool(const char *first, ...)
{
    GPtrArray *args = g_ptr_array_new();
    va_list ap;

    va_start(ap, first);
    for (const char *a = first; a; a = va_arg(ap, const char *)) {
        g_ptr_array_add(args, (char *)a);
    }
    va_end(ap);
    g_ptr_array_add(args, NULL);
    CopyRun r = copy_toolv((const char *const *)args->pdata);
    g_ptr_array_free(args, TRUE);
    return r;
}

CopyRun copy_shell(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *script = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_autofree char *tool = copy_tool_path();
    char *argv[] = { "timeout", "120", "sh", "-c", script, NULL };
    g_auto(GStrv) env = g_environ_setenv(g_get_environ(), "BLKMIG", tool, TRUE);
    return run_argv(argv, env);
}

void copy_run_clear(CopyRun *r)
{
    g_free(r->out);
    g_free(r->err);
    *r = (CopyRun){ 0 };
}

void copy_expect(const CopyRun *r, int status, const char *needle)
{
    g_assert_cmpint(r->status, ==, status);
    if (needle && !strstr(r->err, needle)) {
        g_error("stderr '%s' does not say '%s'", r->err, needle);
    }
}

char *copy_make_raw(const char *name, uint64_t size)
{
    char *path = qtest_path(name);

    g_free(qt_run("qemu-img create -q -f raw %s %" G_GUINT64_FORMAT, path, size));
    g_free(qt_run("qemu-io -f raw -c 'write -P 0x11 0 1M' -c 'write -P 0x22 3M 64k' "
                  "-c 'write -z 4M 1M' -c 'write -P 0 6M 512k' -c 'write -P 0x33 7M 4k' "
                  "-c 'write -P 0x44 %" G_GUINT64_FORMAT " 1M' %s", size - MiB, path));
    return path;
}

void copy_assert_thin(const char *copy, const char *orig)
{
    int64_t a = tf_allocated_bytes(copy), b = tf_allocated_bytes(orig);
    int64_t slack = b / 100 + (int64_t)MiB;

    g_test_message("allocated: %s %" G_GINT64_FORMAT ", %s %" G_GINT64_FORMAT, copy, a,
                   orig, b);
    g_assert_cmpint(a, <=, b + slack);
}

void copy_assert_progress(const char *text)
{
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    int last = -1, n = 0;

    for (char **l = lines; *l; l++) {
        int p;
        if (**l == '\0') {
            continue;
        }
        g_assert_cmpint(sscanf(*l, "Progress: %d", &p), ==, 1);
        g_assert_cmpint(p, >, last);
        g_assert_cmpint(p, <=, 100);
        last = p;
        n++;
    }
    g_assert_cmpint(n, >=, 1);
    g_assert_cmpint(last, ==, 100);
}
