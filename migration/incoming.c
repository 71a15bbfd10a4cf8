/* Incoming migration: accept one connection (or open a file), load the
 * stream, start the guest on success, and tell the source the outcome. */
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migration/migration.h"
#include "migration/savevm.h"
#include "migration-internal.h"
#include "util/sockets.h"

/* How long a failed destination keeps reading what the source still sends,
 * so its error message arrives instead of a connection reset. */
#define DRAIN_TIMEOUT_MS 5000
#define DRAIN_BUF_SIZE (64 * 1024)

typedef struct Incoming {
    GMutex lock;
    MigrationStatus status;
    char *error_desc;
    bool busy;                  /* listening or loading */
    bool shutting_down;
    int listen_fd;              /* while accepting; -1 otherwise */
    MigStream *f;               /* while loading */
    GThread *thread;            /* joined by the next start or shutdown */
} Incoming;

static Incoming in = { .listen_fd = -1 };

typedef struct IncomingRun {
    MigChannelKind kind;
    int fd;                     /* listening socket, or the file */
} IncomingRun;

static void set_status(MigrationStatus status, const char *error_desc)
{
    g_mutex_lock(&in.lock);
    in.status = status;
    g_free(in.error_desc);
    in.error_desc = g_strdup(error_desc);
    g_mutex_unlock(&in.lock);
    migration_notify_status(status);
}

bool incoming_is_busy(void)
{
    bool busy;

    g_mutex_lock(&in.lock);
    busy = in.busy;
    g_mutex_unlock(&in.lock);
    return busy;
}

bool migration_incoming_pending(void)
{
    return incoming_is_busy();
}

void incoming_query(MigrationInfo *info)
{
    g_mutex_lock(&in.lock);
    info->status = in.status;
    info->error_desc = g_strdup(in.error_desc);
    g_mutex_unlock(&in.lock);
}

/* ---- the thread ---- */

/* The one connection of this migration; the listener closes after it. */
static int accept_connection(IncomingRun *run, GError **errp)
{
    int fd = socket_accept(run->fd);
    int saved = errno;

    g_mutex_lock(&in.lock);
    in.listen_fd = -1;
    g_mutex_unlock(&in.lock);
    close(run->fd);
    if (fd < 0) {
        g_set_error(errp, MIG_ERROR, 0,
                    "accepting the incoming migration connection failed: %s",
                    g_strerror(saved));
        return -1;
    }
    socket_tune_bulk(fd);
    return fd;
}

static int load(MigStream *f, GError **errp)
{
    bool stop;

    g_mutex_lock(&in.lock);
    in.f = f;
    stop = in.shutting_down;
    g_mutex_unlock(&in.lock);
    if (stop) {
        mig_stream_shutdown(f);
    }
    set_status(MIG_STATUS_ACTIVE, NULL);
    return savevm_load(f, errp);
}

/* Read and discard until the source hangs up (or DRAIN_TIMEOUT_MS). */
static void drain(int fd)
{
    gint64 deadline = g_get_monotonic_time() + DRAIN_TIMEOUT_MS * 1000;
    char *buf = g_malloc(DRAIN_BUF_SIZE);

    for (;;) {
        gint64 left_ms = (deadline - g_get_monotonic_time()) / 1000;
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        ssize_t n;

        if (left_ms <= 0 || poll(&pfd, 1, left_ms) <= 0) {
            break;
        }
        n = read(fd, buf, DRAIN_BUF_SIZE);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
            break;
        }
    }
    g_free(buf);
}

/* Tell the source how it went, on a writer of its own over the socket. */
static void reply_to_source(MigStream *f, const char *error)
{
    int fd = dup(mig_stream_fd(f));
    MigStream *rp;

    if (fd < 0) {
        g_warning("incoming migration: cannot answer the source: %s", g_strerror(errno));
        return;
    }
    rp = mig_stream_new_writer(fd);
    if (error) {
        return_path_send_error(rp, error);
        return_path_send_shut(rp, 1);
        mig_stream_close(rp);
        shutdown(mig_stream_fd(f), SHUT_WR);
        drain(mig_stream_fd(f));
    } else {
        return_path_send_shut(rp, 0);
        mig_stream_close(rp);
    }
}

static void finish(MigStream *f, bool is_socket, GError *err)
{
    MigrationVmOps ops = migration_get_vm_ops();
    bool ok = err == NULL;

    if (!ok) {
        g_warning("incoming migration failed: %s", err->message);
    }
    /* Guest state first, so whoever sees the final status sees it too. */
    if (ops.incoming_finished) {
        ops.incoming_finished(ops.opaque, ok);
    }
    set_status(ok ? MIG_STATUS_COMPLETED : MIG_STATUS_FAILED, ok ? NULL : err->message);
    if (f && is_socket) {
        reply_to_source(f, ok ? NULL : err->message);
    }
}

static gpointer incoming_thread(gpointer opaque)
{
    IncomingRun *run = opaque;
    GError *err = NULL;
    MigStream *f = NULL;
    int fd = run->kind == MIG_CHANNEL_SOCKET ? accept_connection(run, &err) : run->fd;

    if (fd >= 0) {
        f = mig_stream_new_reader(fd);
        load(f, &err);
    }
    finish(f, run->kind == MIG_CHANNEL_SOCKET, err);
    g_mutex_lock(&in.lock);
    in.f = NULL;
    in.busy = false;
    g_mutex_unlock(&in.lock);
    mig_stream_close(f);
    g_clear_error(&err);
    g_free(run);
    return NULL;
}

/* ---- entry points ---- */

static void join_previous_thread(void)
{
    GThread *thread;

    g_mutex_lock(&in.lock);
    thread = in.thread;
    in.thread = NULL;
    g_mutex_unlock(&in.lock);
    if (thread) {
        g_thread_join(thread);
    }
}

bool migration_incoming_start(const char *uri, GError **errp)
{
    IncomingRun *run;
    GThread *thread;

    if (incoming_is_busy()) {
        g_set_error(errp, MIG_ERROR, 0, "The incoming migration has already been started");
        return false;
    }
    if (migration_is_active()) {
        g_set_error(errp, MIG_ERROR, 0, "There's a migration process in progress");
        return false;
    }
    join_previous_thread();
    run = g_new0(IncomingRun, 1);
    run->fd = mig_channel_open_incoming(uri, &run->kind, errp);
    if (run->fd < 0) {
        g_free(run);
        return false;
    }
    g_mutex_lock(&in.lock);
    in.busy = true;
    in.shutting_down = false;
    in.status = MIG_STATUS_SETUP;
    g_clear_pointer(&in.error_desc, g_free);
    in.listen_fd = run->kind == MIG_CHANNEL_SOCKET ? run->fd : -1;
    g_mutex_unlock(&in.lock);
    /* Announce setup before the thread can announce anything later. */
    migration_notify_status(MIG_STATUS_SETUP);
    thread = g_thread_new("mig-incoming", incoming_thread, run);
    g_mutex_lock(&in.lock);
    in.thread = thread;
    g_mutex_unlock(&in.lock);
    return true;
}

void incoming_shutdown(void)
{
    g_mutex_lock(&in.lock);
    in.shutting_down = true;
    if (in.listen_fd >= 0) {
        /* Wakes the thread blocked in accept(). */
        shutdown(in.listen_fd, SHUT_RDWR);
    }
    if (in.f) {
        mig_stream_shutdown(in.f);
    }
    g_mutex_unlock(&in.lock);
    join_previous_thread();
}
