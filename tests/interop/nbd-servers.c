/* Real NBD servers for client tests; see nbd-servers.h. */
#include "nbd-servers.h"

#include <glib.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "../qtest/libqtest.h"
#include "interop.h"

#define LISTEN_TIMEOUT_MS 10000
#define READ_CHUNK (1024 * 1024)

/* Is a socket bound at PATH listening?  /proc/net/unix marks listening
 * sockets with __SO_ACCEPTCON (flags 00010000); a connect to probe would
 * count as a client, and qemu-nbd exits after its last one without -t. */
static bool listening(const char *path)
{
    g_autofree char *text = NULL;
    bool found = false;

    if (!g_file_get_contents("/proc/net/unix", &text, NULL, NULL)) {
        return false;
    }
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    for (char **l = lines; *l && !found; l++) {
        found = g_str_has_suffix(*l, path) && strstr(*l, " 00010000 ") != NULL;
    }
    return found;
}

static void start(NbdServer *s)
{
    gint64 deadline = g_get_monotonic_time() + LISTEN_TIMEOUT_MS * 1000;

    unlink(s->sock);
    s->pid = interop_spawnv(s->log, s->argv);
    while (!listening(s->sock)) {
        if (interop_wait(s->pid, 0) != -2) {
            g_autofree char *log = NULL;
            g_file_get_contents(s->log, &log, NULL, NULL);
            g_error("%s exited before listening: %s", s->argv[0], log ? log : "");
        }
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(10 * 1000);
    }
}

static NbdServer *server_new(const char *name, const char *prog, const char *sock_opt,
                             const char *args)
{
    NbdServer *s = g_new0(NbdServer, 1);
    g_autofree char *sock_name = g_strdup_printf("%s.sock", name);
    g_autofree char *log_name = g_strdup_printf("%s.log", name);
    g_auto(GStrv) extra = NULL;
    g_autoptr(GError) err = NULL;

    s->sock = qtest_path(sock_name);
    s->log = qtest_path(log_name);
    s->uri = g_strdup_printf("nbd+unix:///?socket=%s", s->sock);
    if (!g_shell_parse_argv(args, NULL, &extra, &err)) {
        g_error("bad server arguments '%s': %s", args, err->message);
    }
    GPtrArray *argv = g_ptr_array_new();
    g_ptr_array_add(argv, g_strdup(prog));
    g_auto(GStrv) opts = g_strsplit(sock_opt, " ", -1);
    for (char **o = opts; *o; o++) {
        g_ptr_array_add(argv, g_strdup(strcmp(*o, "SOCK") == 0 ? s->sock : *o));
    }
    for (char **a = extra; *a; a++) {
        g_ptr_array_add(argv, g_strdup(*a));
    }
    g_ptr_array_add(argv, NULL);
    s->argv = (char **)g_ptr_array_free(argv, FALSE);
    start(s);
    return s;
}

NbdServer *ns_qemu_nbd(const char *name, const char *args)
{
    return server_new(name, "qemu-nbd", "-t -k SOCK", args);
}

NbdServer *ns_nbdkit(const char *name, const char *args)
{
    return server_new(name, "nbdkit", "-f --exit-with-parent -U SOCK", args);
}

void ns_kill(NbdServer *s)
{
    if (s->pid) {
        interop_kill(s->pid);
        s->pid = 0;
    }
}

void ns_restart(NbdServer *s)
{
    ns_kill(s);
    start(s);
}

void ns_freeze(NbdServer *s, bool frozen)
{
    g_assert_cmpint(kill(s->pid, frozen ? SIGSTOP : SIGCONT), ==, 0);
}

void ns_free(NbdServer *s)
{
    if (!s) {
        return;
    }
    if (s->pid) {
        kill(s->pid, SIGCONT);
    }
    ns_kill(s);
    unlink(s->sock);
    g_strfreev(s->argv);
    g_free(s->sock);
    g_free(s->uri);
    g_free(s->log);
    g_free(s);
}

/* ---- The block layer as client ---- */

BlockDriverState *ns_open(const char *id, const char *uri, const char *format,
                          uint32_t timeout, GError **errp)
{
    BlockOptions opts = { .id = id, .filename = uri, .format = format, .timeout = timeout };
    return bdrv_open(&opts, errp);
}

uint8_t *ns_read_all(BlockDriverState *bs)
{
    uint64_t size = (uint64_t)bdrv_getlength(bs);
    uint8_t *buf = g_malloc(size);

    for (uint64_t off = 0; off < size; off += READ_CHUNK) {
        size_t n = (size_t)MIN((uint64_t)READ_CHUNK, size - off);
        g_assert_cmpint(bdrv_pread(bs, off, buf + off, n), ==, 0);
    }
    return buf;
}

void ns_assert_same(const uint8_t *a, const uint8_t *b, size_t len, const char *what)
{
    if (memcmp(a, b, len) == 0) {
        return;
    }
    size_t i = 0;
    while (a[i] == b[i]) {
        i++;
    }
    g_error("%s: first difference at byte %zu (0x%02x, expected 0x%02x)", what, i, b[i], a[i]);
}
