/* Incoming migration: take the main connection from the listener (or open
 * a file), load the stream (multifd channels load alongside), start the
 * guest on success, tell the source the outcome, and (for blkmigd
 * --incoming URI) listen again after a failure. */
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migration/migration.h"
#include "migration/options.h"
#include "migration/savevm.h"
#include "migration-internal.h"
#include "util/sockets.h"

/* How long a failed destination keeps reading what the source still sends,
 * so its error message arrives instead of a connection reset. */
#define DRAIN_TIMEOUT_MS 5000
#define DRAIN_BUF_SIZE (64 * 1024)
/* Before listening again after a failure that came before any source
 * connected (accepting failed): no busy loop. */
#define RELISTEN_PAUSE_US G_USEC_PER_SEC

typedef struct Incoming {
    GMutex lock;
    MigrationStatus status;
    char *error_desc;
    bool busy;                  /* listening or loading */
    bool shutting_down;
    MigListener *listener;      /* socket migrations, until the end */
    MigStream *f;               /* while loading */
    /* Socket loads: the writer of the return path (another fd on the
     * socket, through its TLS session) and whether the load's progress
     * reports may use it; rp_lock serialises its users. */
    GMutex rp_lock;
    MigStream *rp;
    bool rp_reporting;
    GError *failure;            /* the first failure of the migration */
    bool failure_closed;        /* its load ended: later failures are echoes */
    GThread *thread;            /* joined by the next start or shutdown */
} Incoming;

static Incoming in;

typedef struct IncomingRun {
    MigChannelKind kind;
    int fd;                     /* listening socket, or the file */
    char *relisten_uri;         /* after a failure listen here again; or NULL */
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

/* ---- the first failure ---- */

void migration_incoming_fail(GError *err)
{
    bool recorded = false;

    g_mutex_lock(&in.lock);
    if (!in.failure && !in.failure_closed) {
        in.failure = g_steal_pointer(&err);
        recorded = true;
        if (in.f) {
            /* The load stops; the reply to the source still goes out. */
            mig_stream_shutdown_read(in.f);
        }
    }
    g_mutex_unlock(&in.lock);
    g_clear_error(&err);
    if (recorded) {
        savevm_channels_failed();
    }
}

bool migration_incoming_failed(GError **errp)
{
    bool failed;

    g_mutex_lock(&in.lock);
    failed = in.failure != NULL;
    if (failed) {
        g_propagate_error(errp, g_error_copy(in.failure));
    }
    g_mutex_unlock(&in.lock);
    return failed;
}

/* A new migration starts with no failure (OPEN), or its load ended: what
 * fails from now on (channels being stopped) only echoes the end. */
static void set_failure_open(bool open)
{
    g_mutex_lock(&in.lock);
    if (open) {
        g_clear_error(&in.failure);
    }
    in.failure_closed = !open;
    g_mutex_unlock(&in.lock);
}

/* ---- the thread ---- */

/* Every channel of the migration arrived (or none was announced). */
static void stop_accepting(void *opaque)
{
    mig_listener_stop_accepting(opaque);
}

/* Listen for the migration's connections; returns the main one. */
static MigStream *start_listener(IncomingRun *run, GError **errp)
{
    bool stop, channels;
    MigListener *l;
    MigStream *main;

    set_failure_open(true);
    l = mig_listener_start(run->fd);
    channels = savevm_channels_begin(stop_accepting, l);
    g_mutex_lock(&in.lock);
    in.listener = l;
    stop = in.shutting_down;
    g_mutex_unlock(&in.lock);
    if (stop) {
        mig_listener_shutdown(l);
    }
    main = mig_listener_wait_main(l, errp);
    if (main && !channels) {
        /* No handler takes extra connections. */
        mig_listener_stop_accepting(l);
    }
    return main;
}

/* The source's progress reports, through the load's handlers. */
static void report_durable(void *opaque, uint64_t bytes)
{
    g_mutex_lock(&in.rp_lock);
    if (in.rp && in.rp_reporting) {
        return_path_send_durable(in.rp, bytes);
    }
    g_mutex_unlock(&in.rp_lock);
}

/* block-resume: the handler's map of what we hold, before the resumed
 * stream goes on. */
static bool send_resume_map(void *opaque, const uint8_t *map, size_t len)
{
    bool sent;

    g_mutex_lock(&in.rp_lock);
    sent = in.rp != NULL;
    if (sent) {
        return_path_send_resume_map(in.rp, map, len);
    }
    g_mutex_unlock(&in.rp_lock);
    return sent;
}

static void report_verified(void *opaque, uint64_t bytes)
{
    g_mutex_lock(&in.rp_lock);
    if (in.rp && in.rp_reporting) {
        return_path_send_verified(in.rp, bytes);
    }
    g_mutex_unlock(&in.rp_lock);
}

static void report_flushed(void *opaque, uint64_t us)
{
    g_mutex_lock(&in.rp_lock);
    if (in.rp && in.rp_reporting) {
        return_path_send_flushed(in.rp, us);
    }
    g_mutex_unlock(&in.rp_lock);
}

static const SaveVMLoadContext load_context = { .report_durable = report_durable,
                                                .send_resume_map = send_resume_map,
                                                .report_verified = report_verified,
                                                .report_flushed = report_flushed };

/* A writer on F's socket for the return path (NULL if none can be had). */
static MigStream *return_path_writer(MigStream *f)
{
    int fd = dup(mig_stream_fd(f));
    MigStream *rp;

    if (fd < 0) {
        g_warning("incoming migration: cannot answer the source: %s", g_strerror(errno));
        return NULL;
    }
    rp = mig_channel_stream_new(fd, true);
    mig_stream_share_tls(rp, f);
    return rp;
}

static void set_reporting(bool on)
{
    g_mutex_lock(&in.rp_lock);
    in.rp_reporting = on;
    g_mutex_unlock(&in.rp_lock);
}

static int load(MigStream *f, bool is_socket, GError **errp)
{
    bool stop;
    int ret;

    g_mutex_lock(&in.lock);
    in.f = f;
    /* A channel may have failed before the main connection loads. */
    stop = in.shutting_down || in.failure;
    g_mutex_unlock(&in.lock);
    if (stop) {
        mig_stream_shutdown_read(f);
    }
    if (is_socket) {
        /* All we send on it are small return-path messages, and the
         * last one ends the downtime. */
        mig_channel_set_nodelay(mig_stream_fd(f));
        g_mutex_lock(&in.rp_lock);
        in.rp = return_path_writer(f);
        g_mutex_unlock(&in.rp_lock);
        set_reporting(true);
    }
    set_status(MIG_STATUS_ACTIVE, NULL);
    ret = savevm_load(f, &load_context, errp);
    /* The handlers' reporters have stopped. */
    set_reporting(false);
    return ret;
}

void migration_explain_link_error(MigStream *f, const char *where, GError **err)
{
    char *why;

    if (!*err) {
        return;
    }
    if (mig_stream_ended(f)) {
        why = g_strdup_printf("%sthe source closed the connection mid-stream (after %"
                              G_GUINT64_FORMAT " bytes)", where, mig_stream_bytes(f));
    } else if (mig_stream_stalled(f)) {
        why = g_strdup_printf("%s%s", where, mig_stream_error_msg(f));
    } else {
        return;
    }
    g_error_free(*err);
    *err = g_error_new_literal(MIG_ERROR, 0, why);
    g_free(why);
}

/* When a channel (or the listener) failed first, the main stream's error
 * is only the consequence of its shutdown: report the first failure. */
static void prefer_first_failure(GError **err)
{
    GError *first = NULL;

    if (*err && migration_incoming_failed(&first)) {
        g_error_free(*err);
        *err = first;
    }
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

/* Tell the source how it went, on the return path's writer (which goes). */
static void reply_to_source(MigStream *f, const char *error)
{
    MigStream *rp;

    g_mutex_lock(&in.rp_lock);
    rp = in.rp;
    in.rp = NULL;
    g_mutex_unlock(&in.rp_lock);
    if (!rp) {
        return;
    }
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

/* block-resume: the load failed only because its connection was lost,
 * and a handler keeps what it received for a resumed load. */
static bool pauses(MigStream *f, bool is_socket, GError *err)
{
    return err && f && is_socket && mig_cap_enabled(MIG_CAP_BLOCK_RESUME) &&
           mig_stream_error(f) && !migration_incoming_failed(NULL) && savevm_load_resumable();
}

static bool incoming_paused(void)
{
    bool paused;

    g_mutex_lock(&in.lock);
    paused = in.status == MIG_STATUS_PAUSED;
    g_mutex_unlock(&in.lock);
    return paused;
}

static void finish(MigStream *f, bool is_socket, GError *err)
{
    MigrationVmOps ops = migration_get_vm_ops();
    bool ok = err == NULL;

    if (pauses(f, is_socket, err)) {
        /* The guest waits; migrate-recover listens again. */
        g_warning("incoming migration paused: %s", err->message);
        set_status(MIG_STATUS_PAUSED, err->message);
        return;
    }

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

/* One socket migration; false when it failed. */
static bool socket_incoming(IncomingRun *run, bool *connected)
{
    GError *err = NULL;
    MigStream *f = start_listener(run, &err);
    MigListener *l;
    bool ok;

    if (f) {
        load(f, true, &err);
        migration_explain_link_error(f, "", &err);
        prefer_first_failure(&err);
    }
    set_failure_open(false);
    /* Nothing applies records any more once this returns. */
    savevm_channels_abort();
    g_mutex_lock(&in.lock);
    l = in.listener;
    g_mutex_unlock(&in.lock);
    mig_listener_stop_accepting(l);
    finish(f, true, err);
    g_mutex_lock(&in.lock);
    in.f = NULL;
    in.listener = NULL;
    g_mutex_unlock(&in.lock);
    mig_listener_free(l);
    savevm_channels_end();
    ok = !err;
    *connected = f != NULL;
    g_clear_error(&err);
    return ok;
}

static void file_incoming(IncomingRun *run)
{
    GError *err = NULL;
    MigStream *f = mig_stream_new_reader(run->fd);

    set_failure_open(true);
    load(f, false, &err);
    finish(f, false, err);
    g_mutex_lock(&in.lock);
    in.f = NULL;
    g_mutex_unlock(&in.lock);
    mig_stream_close(f);
    g_clear_error(&err);
}

/* After a failed socket migration, when RUN says so: listen on the same
 * URI again, the guest still waiting.  query-migrate keeps saying what
 * failed until the next source connects. */
static bool listen_again(IncomingRun *run, bool source_connected)
{
    GError *err = NULL;
    bool stop;

    if (!run->relisten_uri) {
        return false;
    }
    if (!source_connected) {
        g_usleep(RELISTEN_PAUSE_US);
    }
    g_mutex_lock(&in.lock);
    stop = in.shutting_down;
    g_mutex_unlock(&in.lock);
    if (stop) {
        return false;
    }
    run->fd = mig_channel_open_incoming(run->relisten_uri, &run->kind, &err);
    if (run->fd < 0) {
        g_warning("incoming migration: cannot listen again: %s", err->message);
        g_error_free(err);
        return false;
    }
    g_message("incoming migration: listening again on %s", run->relisten_uri);
    return true;
}

static gpointer incoming_thread(gpointer opaque)
{
    IncomingRun *run = opaque;
    bool connected = false;

    if (run->kind == MIG_CHANNEL_SOCKET) {
        while (!socket_incoming(run, &connected) && !incoming_paused() &&
               listen_again(run, connected)) {
        }
    } else {
        file_incoming(run);
    }
    g_mutex_lock(&in.lock);
    in.busy = false;
    g_mutex_unlock(&in.lock);
    g_free(run->relisten_uri);
    g_free(run);
    return NULL;
}

/* ---- entry points ---- */

static bool incoming_start(const char *uri, bool relisten, GError **errp)
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
    if (!mig_channel_tls_check(uri, false, errp)) {
        return false;
    }
    migration_join_thread(&in.lock, &in.thread);
    run = g_new0(IncomingRun, 1);
    run->fd = mig_channel_open_incoming(uri, &run->kind, errp);
    if (run->fd < 0) {
        g_free(run);
        return false;
    }
    if (relisten && run->kind == MIG_CHANNEL_SOCKET) {
        run->relisten_uri = mig_channel_bound_uri(uri, run->fd);
    }
    g_mutex_lock(&in.lock);
    in.busy = true;
    in.shutting_down = false;
    in.status = MIG_STATUS_SETUP;
    g_clear_pointer(&in.error_desc, g_free);
    g_mutex_unlock(&in.lock);
    /* Announce setup before the thread can announce anything later. */
    migration_notify_status(MIG_STATUS_SETUP);
    thread = g_thread_new("mig-incoming", incoming_thread, run);
    g_mutex_lock(&in.lock);
    in.thread = thread;
    g_mutex_unlock(&in.lock);
    return true;
}

bool migration_incoming_start(const char *uri, GError **errp)
{
    return incoming_start(uri, false, errp);
}

bool migration_incoming_recover(const char *uri, GError **errp)
{
    bool paused;

    g_mutex_lock(&in.lock);
    paused = in.status == MIG_STATUS_PAUSED && !in.busy;
    g_mutex_unlock(&in.lock);
    if (!paused) {
        g_set_error(errp, MIG_ERROR, 0,
                    "Migrate recover can only be run when the incoming migration is paused");
        return false;
    }
    return incoming_start(uri, false, errp);
}

bool migration_incoming_start_relistening(const char *uri, GError **errp)
{
    return incoming_start(uri, true, errp);
}

void incoming_shutdown(void)
{
    g_mutex_lock(&in.lock);
    in.shutting_down = true;
    if (in.listener) {
        /* Wakes the threads blocked in accept() and on connections. */
        mig_listener_shutdown(in.listener);
    }
    if (in.f) {
        mig_stream_shutdown(in.f);
    }
    g_mutex_unlock(&in.lock);
    migration_join_thread(&in.lock, &in.thread);
}
