/* The pieces every libFuzzer target here uses (see harness.h). */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

static char *scratch;

static void use_tmpfs(void)
{
    if (!g_getenv("TMPDIR") && g_file_test("/dev/shm", G_FILE_TEST_IS_DIR)) {
        g_setenv("TMPDIR", "/dev/shm", TRUE);
    }
}

static void trap_to_abort(int sig)
{
    abort();
}

/* Warnings about hostile input are expected by the thousand: dropped.
 * Criticals (a GLib precondition that failed) are bugs: fatal. */
static GLogWriterOutput quiet_writer(GLogLevelFlags level, const GLogField *fields,
                                     gsize n_fields, gpointer unused)
{
    if (!(level & (G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL))) {
        return G_LOG_WRITER_HANDLED;
    }
    return g_log_writer_standard_streams(level, fields, n_fields, NULL);
}

void fuzz_init(void)
{
    signal(SIGTRAP, trap_to_abort);
    g_log_set_always_fatal(G_LOG_LEVEL_ERROR | G_LOG_LEVEL_CRITICAL);
    if (!g_getenv("FUZZ_VERBOSE")) {
        g_log_set_writer_func(quiet_writer, NULL, NULL);
    }
    use_tmpfs();
}


static void remove_tree(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        g_autofree char *path = g_build_filename(dir, name, NULL);
        if (g_file_test(path, G_FILE_TEST_IS_DIR) && !g_file_test(path, G_FILE_TEST_IS_SYMLINK)) {
            remove_tree(path);
        } else {
            g_unlink(path);
        }
    }
    if (d) {
        g_dir_close(d);
    }
    g_rmdir(dir);
}

static void remove_scratch_dir(void)
{
    if (scratch) {
        remove_tree(scratch);
    }
}

const char *fuzz_scratch_dir(void)
{
    if (!scratch) {
        GError *err = NULL;
        scratch = g_dir_make_tmp("blkmig-libfuzzer-XXXXXX", &err);
        g_assert_no_error(err);
        atexit(remove_scratch_dir);
    }
    return scratch;
}

char *fuzz_scratch_path(const char *name)
{
    return g_build_filename(fuzz_scratch_dir(), name, NULL);
}

void fuzz_write_file(const char *path, const void *data, size_t len)
{
    GError *err = NULL;

    g_file_set_contents(path, data, (gssize)len, &err);
    g_assert_no_error(err);
}

void fuzz_mem_stream_writer(FuzzMemStream *m)
{
    m->fd = memfd_create("fuzz-stream", MFD_CLOEXEC);
    g_assert_cmpint(m->fd, >=, 0);
    m->f = mig_stream_new_writer(dup(m->fd));
}

GBytes *fuzz_mem_stream_take(FuzzMemStream *m)
{
    off_t len;
    uint8_t *buf;

    g_assert_cmpint(mig_stream_flush(m->f), ==, 0);
    mig_stream_close(m->f);
    len = lseek(m->fd, 0, SEEK_END);
    g_assert_cmpint(len, >=, 0);
    buf = g_malloc(len);
    g_assert_cmpint(pread(m->fd, buf, len, 0), ==, len);
    close(m->fd);
    return g_bytes_new_take(buf, len);
}

void fuzz_write_seed(const char *dir, const char *name, GBytes *bytes)
{
    g_autofree char *path = g_build_filename(dir, name, NULL);
    gsize len;
    const void *data = g_bytes_get_data(bytes, &len);

    g_mkdir_with_parents(dir, 0755);
    fuzz_write_file(path, data, len);
    fprintf(stderr, "seed %s: %zu bytes\n", path, (size_t)len);
}

void fuzz_socketpair(int fds[2])
{
    g_assert_cmpint(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), ==, 0);
}

/* ---- one conversation ---- */

typedef struct Conversation {
    int fd;
    const uint8_t *data;
    size_t len, sent;
    size_t received;
    bool write_shut, peer_closed;
} Conversation;

static void send_some(Conversation *c)
{
    ssize_t n;

    if (c->sent < c->len) {
        n = send(c->fd, c->data + c->sent, c->len - c->sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->sent += n;
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
            c->sent = c->len;       /* the server hung up: the rest is moot */
        }
    }
    if (c->sent == c->len && !c->write_shut) {
        shutdown(c->fd, SHUT_WR);
        c->write_shut = true;
    }
}

static void receive_some(Conversation *c)
{
    char buf[64 * 1024];
    ssize_t n;

    while ((n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
        c->received += n;
    }
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
        c->peer_closed = true;
    }
}

size_t fuzz_converse(int fd, const uint8_t *data, size_t len, void (*pump)(void),
                     int timeout_ms)
{
    Conversation c = { .fd = fd, .data = data, .len = len };
    gint64 deadline = g_get_monotonic_time() + timeout_ms * (gint64)1000;

    while (!c.peer_closed) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };

        if (!c.write_shut) {
            pfd.events |= POLLOUT;
        }
        if (g_get_monotonic_time() > deadline) {
            fprintf(stderr, "the server neither answered nor hung up within %d ms "
                    "(%zu of %zu input bytes taken)\n", timeout_ms, c.sent, len);
            abort();
        }
        if (pump) {
            pump();
        }
        poll(&pfd, 1, pump ? 0 : 100);
        send_some(&c);
        receive_some(&c);
    }
    close(fd);
    return c.received;
}
