/* Helpers for tests driving third-party tools; see interop.h. */
#include "interop.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../qtest/libqtest.h"

/* A tool hanging on a server bug fails the test instead of stalling it. */
#define TOOL_TIMEOUT "120"

bool interop_need(const char *prog)
{
    if (qtest_have_program(prog)) {
        return true;
    }
    g_autofree char *msg = g_strdup_printf("%s not installed (scripts/deps.sh installs it)", prog);
    g_test_skip(msg);
    return false;
}

static GPtrArray *collect_argv(const char *first, const char *prog, va_list ap)
{
    GPtrArray *argv = g_ptr_array_new();
    const char *arg;

    if (first) {
        g_ptr_array_add(argv, (char *)first);
    }
    g_ptr_array_add(argv, (char *)prog);
    while ((arg = va_arg(ap, const char *))) {
        g_ptr_array_add(argv, (char *)arg);
    }
    g_ptr_array_add(argv, NULL);
    return argv;
}

int interop_run(char **out, char **err, const char *prog, ...)
{
    g_autoptr(GError) gerr = NULL;
    g_autofree char *sout = NULL, *serr = NULL, *cmd = NULL;
    GPtrArray *argv;
    va_list ap;
    int status;

    va_start(ap, prog);
    argv = collect_argv(NULL, prog, ap);
    va_end(ap);
    /* timeout(1) first: kill -9 after TOOL_TIMEOUT seconds. */
    g_ptr_array_insert(argv, 0, "-s");
    g_ptr_array_insert(argv, 1, "KILL");
    g_ptr_array_insert(argv, 2, TOOL_TIMEOUT);
    g_ptr_array_insert(argv, 0, "timeout");
    cmd = g_strjoinv(" ", (char **)argv->pdata);
    g_test_message("run: %s", cmd);
    if (!g_spawn_sync(qtest_tmpdir(), (char **)argv->pdata, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL,
                      &sout, &serr, &status, &gerr)) {
        g_error("cannot run %s: %s", prog, gerr->message);
    }
    g_ptr_array_free(argv, TRUE);
    status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (status != 0) {
        g_test_message("%s exited with %d\nstdout: %s\nstderr: %s", prog, status, sout, serr);
    }
    if (out) {
        *out = g_steal_pointer(&sout);
    }
    if (err) {
        *err = g_steal_pointer(&serr);
    }
    return status;
}

static void child_setup(gpointer data)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
}

pid_t interop_spawnv(const char *log_path, char **argv)
{
    g_autoptr(GError) gerr = NULL;
    g_autofree char *cmd = g_strjoinv(" ", argv);
    GPid pid;
    int fd = -1;

    g_test_message("spawn: %s", cmd);
    if (log_path) {
        fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        g_assert_cmpint(fd, >=, 0);
    }
    /* Tools such as fio drop state files into their working directory. */
    if (!g_spawn_async_with_fds(qtest_tmpdir(), argv, NULL,
                                G_SPAWN_SEARCH_PATH | G_SPAWN_DO_NOT_REAP_CHILD,
                                child_setup, NULL, &pid, -1, fd, fd, &gerr)) {
        g_error("cannot start %s: %s", argv[0], gerr->message);
    }
    if (fd >= 0) {
        close(fd);
    }
    return pid;
}

pid_t interop_spawn(const char *log_path, const char *prog, ...)
{
    GPtrArray *argv;
    va_list ap;
    pid_t pid;

    va_start(ap, prog);
    argv = collect_argv(NULL, prog, ap);
    va_end(ap);
    pid = interop_spawnv(log_path, (char **)argv->pdata);
    g_ptr_array_free(argv, TRUE);
    return pid;
}

int interop_wait(pid_t pid, int timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    int status;

    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        }
        g_assert_true(r == 0 || errno == EINTR);
        if (g_get_monotonic_time() > deadline) {
            return -2;
        }
        g_usleep(10 * 1000);
    }
}

void interop_kill(pid_t pid)
{
    if (pid > 0 && kill(pid, SIGKILL) == 0) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
    }
}

char *interop_nbd_uri(const char *sock, const char *export)
{
    return g_strdup_printf("nbd+unix:///%s?socket=%s", export, sock);
}

void interop_extent_add(GArray *extents, uint64_t offset, uint64_t length, bool data)
{
    InteropExtent *last = extents->len ? &g_array_index(extents, InteropExtent,
                                                        extents->len - 1) : NULL;
    InteropExtent e = { offset, length, data };

    if (length == 0) {
        return;
    }
    if (last && last->data == data && last->offset + last->length == offset) {
        last->length += length;
        return;
    }
    g_array_append_val(extents, e);
}

JsonNode *interop_parse_json(const char *text)
{
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) err = NULL;

    if (!json_parser_load_from_data(parser, text, -1, &err)) {
        g_error("bad JSON (%s): %s", err->message, text);
    }
    return json_node_copy(json_parser_get_root(parser));
}

GArray *interop_nbdinfo_map(const char *uri)
{
    GArray *got = g_array_new(FALSE, FALSE, sizeof(InteropExtent));
    g_autofree char *out = NULL;
    g_autoptr(JsonNode) root = NULL;
    JsonArray *map;

    g_assert_cmpint(interop_run(&out, NULL, "nbdinfo", "--json", "--map", uri, NULL), ==, 0);
    root = interop_parse_json(out);
    map = json_node_get_array(root);
    for (guint i = 0; i < json_array_get_length(map); i++) {
        JsonObject *e = json_array_get_object_element(map, i);
        gint64 type = json_object_get_int_member(e, "type");

        /* base:allocation: 3 (hole, zero) for holes, 0 for data */
        g_assert_true(type == 0 || type == 3);
        interop_extent_add(got, json_object_get_int_member(e, "offset"),
                           json_object_get_int_member(e, "length"), type == 0);
    }
    return got;
}

GArray *interop_file_extents(const char *path)
{
    GArray *ext = g_array_new(FALSE, FALSE, sizeof(InteropExtent));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    off_t off = 0;

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(fstat(fd, &st), ==, 0);
    while (off < st.st_size) {
        off_t data = lseek(fd, off, SEEK_DATA);
        off_t hole;

        if (data < 0) {
            g_assert_cmpint(errno, ==, ENXIO);
            data = st.st_size;
        }
        interop_extent_add(ext, off, data - off, false);
        if (data >= st.st_size) {
            break;
        }
        hole = lseek(fd, data, SEEK_HOLE);
        g_assert_cmpint(hole, >, data);
        interop_extent_add(ext, data, hole - data, true);
        off = hole;
    }
    close(fd);
    return ext;
}

static char *extents_str(GArray *ext)
{
    GString *s = g_string_new(NULL);

    for (guint i = 0; i < ext->len; i++) {
        InteropExtent *e = &g_array_index(ext, InteropExtent, i);
        g_string_append_printf(s, "  %12" G_GUINT64_FORMAT " +%12" G_GUINT64_FORMAT " %s\n",
                               e->offset, e->length, e->data ? "data" : "hole");
    }
    return g_string_free(s, FALSE);
}

void interop_assert_extents_equal(GArray *expected, GArray *actual, const char *what)
{
    bool same = expected->len == actual->len;

    for (guint i = 0; same && i < expected->len; i++) {
        InteropExtent *a = &g_array_index(expected, InteropExtent, i);
        InteropExtent *b = &g_array_index(actual, InteropExtent, i);
        same = a->offset == b->offset && a->length == b->length && a->data == b->data;
    }

    if (!same) {
        g_autofree char *a = extents_str(expected), *b = extents_str(actual);
        g_test_message("%s: layout differs\nexpected:\n%sactual:\n%s", what, a, b);
    }
    g_assert_true(same);
}

bool interop_file_has(const char *path, uint64_t off, uint64_t len, uint8_t byte)
{
    g_autofree uint8_t *buf = g_malloc(len);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    bool ok;

    g_assert_cmpint(fd, >=, 0);
    ok = pread(fd, buf, len, off) == (ssize_t)len;
    close(fd);
    for (uint64_t i = 0; ok && i < len; i++) {
        ok = buf[i] == byte;
    }
    return ok;
}
