/* Incoming migration over a socket: accept connections until no more are
 * expected, and sort each by its first four bytes: "QEVM" is the main
 * connection (the savevm stream); the magic of a registered channel
 * handler (the block handler's "BMFD" multifd channels) hands the
 * connection to that handler, on the connection's own thread.  Anything
 * else fails the migration.  With tls-creds set, every connection first
 * completes a TLS handshake on its thread, and a refused one fails the
 * migration as well. */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migration/savevm.h"
#include "migration-internal.h"
#include "util/bswap.h"
#include "util/sockets.h"

#define WAIT_SLICE_US (100 * 1000)

typedef struct Conn {
    struct MigListener *l;
    MigStream *f;
    GThread *thread;
} Conn;

struct MigListener {
    GMutex lock;
    GCond cond;                 /* the main connection arrived, or an error */
    int listen_fd;              /* -1 once the acceptor closed it */
    bool stop_accepting;
    bool shut;
    GThread *acceptor;
    GPtrArray *conns;           /* Conn * */
    MigStream *main;
    GError *error;              /* accepting failed */
};

static void conn_fail(Conn *c, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static void conn_fail(Conn *c, const char *fmt, ...)
{
    va_list ap;
    char *msg;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    migration_incoming_fail(g_error_new(MIG_ERROR, 0, "incoming migration: %s", msg));
    g_free(msg);
    g_mutex_lock(&c->l->lock);
    g_cond_broadcast(&c->l->cond);
    g_mutex_unlock(&c->l->lock);
}

static bool shut_down(MigListener *l)
{
    bool shut;

    g_mutex_lock(&l->lock);
    shut = l->shut;
    g_mutex_unlock(&l->lock);
    return shut;
}

/* The main connection, unless one came already. */
static bool claim_main(Conn *c)
{
    bool first;

    g_mutex_lock(&c->l->lock);
    first = !c->l->main;
    if (first) {
        c->l->main = c->f;
        g_cond_broadcast(&c->l->cond);
    }
    g_mutex_unlock(&c->l->lock);
    return first;
}

/* A connection that is neither the main one nor a registered channel. */
/* A TLS record header (handshake, TLS 1.0 or later): a source with
 * tls-creds set, to a destination without. */
static bool is_tls_hello(uint32_t magic)
{
    return (magic >> 24) == 0x16 && ((magic >> 16) & 0xff) == 0x03;
}

static void conn_unknown(Conn *c, uint32_t magic)
{
    g_autofree char *channels = savevm_channels_describe();
    const char *hint = is_tls_hello(magic) ? " (a TLS handshake: the source uses TLS, "
                       "set tls-creds here too)" : "";

    if (channels) {
        conn_fail(c, "a connection started with 0x%08x, neither a migration stream "
                  "(QEVM) nor %s%s", magic, channels, hint);
    } else {
        conn_fail(c, "a connection started with 0x%08x, not a migration stream (QEVM)%s",
                  magic, hint);
    }
}

static gpointer conn_thread(gpointer opaque)
{
    Conn *c = opaque;
    SaveVMChannelOps ops;
    void *ops_opaque;
    uint8_t b[4];
    uint32_t magic;
    GError *err = NULL;

    if (!mig_channel_secure_incoming(c->f, &err)) {
        if (!shut_down(c->l)) {
            conn_fail(c, "%s", err->message);
        }
        g_error_free(err);
        return NULL;
    }
    if (!mig_stream_peek(c->f, b, sizeof(b))) {
        if (!shut_down(c->l)) {
            conn_fail(c, "a connection ended before it said what it is: %s",
                      mig_stream_error_msg(c->f));
        }
        return NULL;
    }
    magic = ld_be32(b);
    if (magic == QEMU_VM_FILE_MAGIC) {
        if (!claim_main(c)) {
            conn_fail(c, "a second migration stream (QEVM) connection arrived");
        }
    } else if (savevm_channel_find(magic, &ops, &ops_opaque)) {
        ops.run(ops_opaque, c->f);
    } else {
        conn_unknown(c, magic);
    }
    return NULL;
}

/* false once accepting ended. */
static bool accept_one(MigListener *l)
{
    int fd = socket_accept(l->listen_fd);
    int saved = errno;
    Conn *c;

    g_mutex_lock(&l->lock);
    if (fd < 0 || l->stop_accepting || l->shut) {
        if (fd < 0 && !l->stop_accepting && !l->shut && !l->error) {
            g_set_error(&l->error, MIG_ERROR, 0,
                        "accepting the incoming migration connection failed: %s",
                        g_strerror(saved));
            g_cond_broadcast(&l->cond);
        }
        g_mutex_unlock(&l->lock);
        if (fd >= 0) {
            close(fd);
        }
        return false;
    }
    socket_tune_bulk(fd);
    c = g_new0(Conn, 1);
    c->l = l;
    c->f = mig_channel_stream_new(fd, false);
    /* Only the migration as a whole stalls: a multifd channel may rightly
     * be quiet while others carry the data. */
    if (l->conns->len > 0) {
        mig_stream_share_arrivals(c->f, ((Conn *)l->conns->pdata[0])->f);
    }
    c->thread = g_thread_new("mig-connection", conn_thread, c);
    g_ptr_array_add(l->conns, c);
    g_mutex_unlock(&l->lock);
    return true;
}

static gpointer acceptor_thread(gpointer opaque)
{
    MigListener *l = opaque;
    int fd;

    while (accept_one(l)) {
    }
    g_mutex_lock(&l->lock);
    fd = l->listen_fd;
    l->listen_fd = -1;
    g_mutex_unlock(&l->lock);
    close(fd);
    return NULL;
}

MigListener *mig_listener_start(int listen_fd)
{
    MigListener *l = g_new0(MigListener, 1);

    g_mutex_init(&l->lock);
    g_cond_init(&l->cond);
    l->listen_fd = listen_fd;
    l->conns = g_ptr_array_new();
    l->acceptor = g_thread_new("mig-listener", acceptor_thread, l);
    return l;
}

/* Whether waiting for the main connection is over.  The incoming
 * migration's lock is taken before ours elsewhere, so it is not taken
 * while ours is held. */
static bool main_wait_over(MigListener *l)
{
    bool over;

    g_mutex_lock(&l->lock);
    over = l->main || l->error || l->shut;
    g_mutex_unlock(&l->lock);
    return over || migration_incoming_failed(NULL);
}

MigStream *mig_listener_wait_main(MigListener *l, GError **errp)
{
    MigStream *main;
    GError *error = NULL;

    while (!main_wait_over(l)) {
        g_mutex_lock(&l->lock);
        if (!l->main && !l->error && !l->shut) {
            g_cond_wait_until(&l->cond, &l->lock, g_get_monotonic_time() + WAIT_SLICE_US);
        }
        g_mutex_unlock(&l->lock);
    }
    g_mutex_lock(&l->lock);
    main = l->main;
    if (l->error) {
        error = g_error_copy(l->error);
    }
    g_mutex_unlock(&l->lock);
    if (main) {
        g_clear_error(&error);
    } else if (error) {
        g_propagate_error(errp, error);
    } else if (!migration_incoming_failed(errp)) {
        g_set_error(errp, MIG_ERROR, 0, "incoming migration stopped before a connection "
                    "arrived");
    }
    return main;
}

/* l->lock held. */
static void stop_accepting_locked(MigListener *l)
{
    if (!l->stop_accepting) {
        l->stop_accepting = true;
        /* Wakes the acceptor blocked in accept(); it closes the socket. */
        if (l->listen_fd >= 0) {
            shutdown(l->listen_fd, SHUT_RDWR);
        }
    }
}

void mig_listener_stop_accepting(MigListener *l)
{
    g_mutex_lock(&l->lock);
    stop_accepting_locked(l);
    g_mutex_unlock(&l->lock);
}

void mig_listener_shutdown(MigListener *l)
{
    g_mutex_lock(&l->lock);
    l->shut = true;
    stop_accepting_locked(l);
    for (guint i = 0; i < l->conns->len; i++) {
        Conn *c = l->conns->pdata[i];
        mig_stream_shutdown(c->f);
    }
    g_cond_broadcast(&l->cond);
    g_mutex_unlock(&l->lock);
}

void mig_listener_free(MigListener *l)
{
    if (!l) {
        return;
    }
    mig_listener_shutdown(l);
    g_thread_join(l->acceptor);
    /* No connection is added any more. */
    for (guint i = 0; i < l->conns->len; i++) {
        Conn *c = l->conns->pdata[i];
        g_thread_join(c->thread);
        mig_stream_close(c->f);
        g_free(c);
    }
    g_ptr_array_unref(l->conns);
    g_clear_error(&l->error);
    g_cond_clear(&l->cond);
    g_mutex_clear(&l->lock);
    g_free(l);
}
