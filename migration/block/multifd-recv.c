/* Multifd, destination side: the extra connections of an incoming
 * migration.  Each channel's thread reads its handshake, waits until the
 * main connection has announced the channels (CHANNELS record) and loaded
 * its setup part, checks the handshake against the announcement, then
 * decodes and applies block records until its end marker.  It is the
 * channel handler the core hands "BMFD" connections to.  The first
 * failure anywhere fails the whole migration (the core's first-failure
 * slot, which shuts the main connection down so its thread stops at
 * once, and tells us so our waits end). */
#include <stdatomic.h>
#include <string.h>

#include "migration/options.h"
#include "block-internal.h"

#define WAIT_SLICE_US (100 * 1000)

typedef struct MultifdRecv {
    GMutex lock;
    GCond cond;
    bool active;                /* a socket incoming migration is running */
    bool aborting;
    bool failed;                /* the incoming migration failed (kept from
                                 * channels_failed, which may come before
                                 * channels_begin, to channels_end) */
    void (*all_arrived)(void *opaque);
    void *all_arrived_opaque;
    bool arrival_reported;
    /* The announcement (CHANNELS record). */
    bool announced;
    unsigned n;
    uint8_t id[BLK_MIG_MULTIFD_ID_LEN];
    bool setup_done;            /* channels may apply records */
    /* The channels. */
    unsigned arrived;           /* handshakes read */
    bool registered[BLK_MIG_MULTIFD_MAX_CHANNELS];
    bool finished[BLK_MIG_MULTIFD_MAX_CHANNELS];    /* end marker applied */
    unsigned ended;             /* how many finished */
    GPtrArray *streams;         /* of the running channel threads */
    unsigned running;           /* channel threads inside channel_run */
    _Atomic gint64 progress_us; /* last record applied by any channel */
} MultifdRecv;

static MultifdRecv mr;

typedef struct Handshake {
    uint32_t magic;
    uint32_t version;
    uint32_t index;
    uint32_t count;
    uint8_t id[BLK_MIG_MULTIFD_ID_LEN];
} Handshake;

/* ---- life cycle ---- */

static void channels_begin(void *unused, void (*all_arrived)(void *opaque), void *opaque)
{
    g_mutex_lock(&mr.lock);
    g_clear_pointer(&mr.streams, g_ptr_array_unref);
    mr.active = true;
    mr.aborting = false;
    mr.all_arrived = all_arrived;
    mr.all_arrived_opaque = opaque;
    mr.arrival_reported = false;
    mr.announced = false;
    mr.n = 0;
    mr.setup_done = false;
    mr.arrived = 0;
    memset(mr.registered, 0, sizeof(mr.registered));
    memset(mr.finished, 0, sizeof(mr.finished));
    mr.ended = 0;
    mr.streams = g_ptr_array_new();
    mr.running = 0;
    g_mutex_unlock(&mr.lock);
}

static void channels_end(void *unused)
{
    g_mutex_lock(&mr.lock);
    g_assert(mr.running == 0);
    mr.active = false;
    mr.failed = false;
    g_clear_pointer(&mr.streams, g_ptr_array_unref);
    g_mutex_unlock(&mr.lock);
}

/* mr.lock held: no more connections are expected; tell the listener once
 * (it only stops accepting, so the lock may stay held). */
static void report_arrival_locked(void)
{
    bool all = mr.setup_done ? !mr.announced || mr.arrived >= mr.n
                             : mr.announced && mr.arrived >= mr.n;

    if (all && !mr.arrival_reported && mr.all_arrived) {
        mr.arrival_reported = true;
        mr.all_arrived(mr.all_arrived_opaque);
    }
}

/* ---- failures ---- */

/* Fail the incoming migration with ERR (taken), unless it is a channel
 * failing because we stopped it: aborting is set before any channel is
 * shut down, so such a failure always sees it. */
static void forward_failure(GError *err)
{
    bool aborting;

    g_mutex_lock(&mr.lock);
    aborting = mr.aborting;
    g_mutex_unlock(&mr.lock);
    if (aborting) {
        g_error_free(err);
    } else {
        migration_incoming_fail(err);
    }
}

/* The core recorded the migration's first failure (ours or not). */
static void channels_failed(void *unused)
{
    g_mutex_lock(&mr.lock);
    mr.failed = true;
    g_cond_broadcast(&mr.cond);
    g_mutex_unlock(&mr.lock);
}

static void G_GNUC_PRINTF(1, 2) fail(const char *fmt, ...)
{
    va_list ap;
    char *msg;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    forward_failure(g_error_new_literal(MIG_ERROR, 0, msg));
    g_free(msg);
}

static void channels_abort(void *unused)
{
    multifd_recv_abort();
}

void multifd_recv_abort(void)
{
    g_mutex_lock(&mr.lock);
    if (mr.active) {
        mr.aborting = true;
        for (guint i = 0; i < mr.streams->len; i++) {
            mig_stream_shutdown(mr.streams->pdata[i]);
        }
        g_cond_broadcast(&mr.cond);
        while (mr.running > 0) {
            g_cond_wait(&mr.cond, &mr.lock);
        }
    }
    g_mutex_unlock(&mr.lock);
}

/* ---- the main connection's side ---- */

bool multifd_recv_expect(unsigned n, const uint8_t *id, GError **errp)
{
    bool ok = false;

    g_mutex_lock(&mr.lock);
    if (!mr.active) {
        g_set_error(errp, MIG_ERROR, 0, "multifd channels are announced, but this incoming "
                    "migration cannot accept connections (it is not a socket)");
    } else if (mr.announced) {
        g_set_error(errp, MIG_ERROR, 0, "multifd channels were announced already");
    } else if (n < 1 || n > BLK_MIG_MULTIFD_MAX_CHANNELS) {
        g_set_error(errp, MIG_ERROR, 0, "multifd channel count %u is not between 1 and %d",
                    n, BLK_MIG_MULTIFD_MAX_CHANNELS);
    } else {
        mr.announced = true;
        mr.n = n;
        memcpy(mr.id, id, sizeof(mr.id));
        report_arrival_locked();
        ok = true;
    }
    g_mutex_unlock(&mr.lock);
    return ok;
}

bool multifd_recv_setup_done(GError **errp)
{
    bool ok = true;

    g_mutex_lock(&mr.lock);
    if (mr.active) {
        mr.setup_done = true;
        atomic_store(&mr.progress_us, g_get_monotonic_time());
        if (!mr.announced && mr.arrived > 0) {
            g_set_error(errp, MIG_ERROR, 0, "a multifd channel connected, but the migration "
                        "stream announced no multifd channels");
            ok = false;
        }
        report_arrival_locked();
        g_cond_broadcast(&mr.cond);
    }
    g_mutex_unlock(&mr.lock);
    return ok;
}

/* mr.lock held: the lowest channel index that has not ended. */
static unsigned first_unfinished_locked(bool *connected)
{
    unsigned i = 0;

    while (i < mr.n && mr.finished[i]) {
        i++;
    }
    *connected = i < mr.n && mr.registered[i];
    return i;
}

/* A channel that makes no progress for link-timeout while the main
 * connection waits for it is lost (one that connected fails by itself
 * sooner: its reads stall). */
bool multifd_recv_wait_all(GError **errp)
{
    MigrationParameters params;
    bool ok = true, failed;

    mig_params_get(&params);
    g_mutex_lock(&mr.lock);
    while (mr.active && mr.announced && mr.ended < mr.n && !mr.failed && !mr.aborting) {
        gint64 now = g_get_monotonic_time();
        if (now - atomic_load(&mr.progress_us) > (gint64)params.link_timeout * G_USEC_PER_SEC) {
            bool connected;
            unsigned i = first_unfinished_locked(&connected);
            g_set_error(errp, MIG_ERROR, 0, "multifd channel %u of %u %s within %d s "
                        "(link-timeout)", i, mr.n,
                        connected ? "made no progress" : "did not connect",
                        (int)params.link_timeout);
            ok = false;
            break;
        }
        g_cond_wait_until(&mr.cond, &mr.lock, now + WAIT_SLICE_US);
    }
    failed = ok && mr.failed;
    if (ok && !failed && mr.aborting) {
        g_set_error(errp, MIG_ERROR, 0, "incoming migration stopped");
        ok = false;
    }
    g_mutex_unlock(&mr.lock);
    /* The core's lock is never taken under ours. */
    if (failed) {
        migration_incoming_failed(errp);
        ok = false;
    }
    return ok;
}

/* ---- a channel's thread ---- */

static bool read_handshake(MigStream *f, Handshake *h)
{
    h->magic = mig_get_be32(f);
    h->version = mig_get_be32(f);
    h->index = mig_get_be32(f);
    h->count = mig_get_be32(f);
    mig_get_buffer(f, h->id, sizeof(h->id));
    if (mig_stream_error(f)) {
        fail("multifd channel: reading the handshake failed: %s", mig_stream_error_msg(f));
        return false;
    }
    if (h->version != BLK_MIG_MULTIFD_VERSION) {
        fail("multifd channel: unsupported handshake version %u (expected %d)",
             h->version, BLK_MIG_MULTIFD_VERSION);
        return false;
    }
    if (h->count < 1 || h->count > BLK_MIG_MULTIFD_MAX_CHANNELS || h->index >= h->count) {
        fail("multifd channel: handshake names channel %u of %u, not one of 1 to %d channels",
             h->index, h->count, BLK_MIG_MULTIFD_MAX_CHANNELS);
        return false;
    }
    return true;
}

/* Count the channel in; false (failed) if its index came before. */
static bool register_channel(const Handshake *h)
{
    bool ok;

    g_mutex_lock(&mr.lock);
    ok = !mr.registered[h->index];
    if (ok) {
        mr.registered[h->index] = true;
        mr.arrived++;
        report_arrival_locked();
    }
    g_mutex_unlock(&mr.lock);
    if (!ok) {
        fail("multifd channel %u connected twice", h->index);
    }
    return ok;
}

/* Wait for the setup part, then check the handshake against the
 * announcement; false when the channel must stop. */
static bool wait_for_setup(const Handshake *h)
{
    const char *mismatch = NULL;

    g_mutex_lock(&mr.lock);
    while (!mr.setup_done && !mr.aborting && !mr.failed) {
        g_cond_wait(&mr.cond, &mr.lock);
    }
    if (mr.aborting || mr.failed) {
        g_mutex_unlock(&mr.lock);
        return false;
    }
    if (!mr.announced) {
        /* The same words as multifd_recv_setup_done's: which of the two
         * sees it depends only on whether this channel registered before
         * the setup part finished loading. */
        g_mutex_unlock(&mr.lock);
        fail("a multifd channel connected, but the migration stream announced no multifd "
             "channels");
        return false;
    }
    if (h->count != mr.n) {
        mismatch = "its channel count differs from the announced one";
    } else if (memcmp(h->id, mr.id, sizeof(mr.id)) != 0) {
        mismatch = "its migration id differs from the announced one";
    }
    g_mutex_unlock(&mr.lock);
    if (mismatch) {
        fail("multifd channel %u (of %u): %s", h->index, h->count, mismatch);
    }
    return !mismatch;
}

static void channel_records(const Handshake *h, MigStream *f)
{
    BlkLoader *l = block_load_channel_new(h->index);
    GError *err = NULL;
    bool end = false;

    while (!end) {
        if (!block_load_channel_next(l, f, &end, &err)) {
            g_autofree char *where = g_strdup_printf("multifd channel %u: ", h->index);
            migration_explain_link_error(f, where, &err);
            forward_failure(err);
            break;
        }
        atomic_store(&mr.progress_us, g_get_monotonic_time());
    }
    block_load_channel_free(l);
    if (end) {
        g_mutex_lock(&mr.lock);
        mr.finished[h->index] = true;
        mr.ended++;
        g_cond_broadcast(&mr.cond);
        g_mutex_unlock(&mr.lock);
    }
}

static void channel_run(void *unused, MigStream *f)
{
    Handshake h;

    g_mutex_lock(&mr.lock);
    if (!mr.active || mr.aborting) {
        g_mutex_unlock(&mr.lock);
        return;
    }
    mr.running++;
    g_ptr_array_add(mr.streams, f);
    g_mutex_unlock(&mr.lock);

    if (read_handshake(f, &h) && register_channel(&h) && wait_for_setup(&h)) {
        channel_records(&h, f);
    }

    g_mutex_lock(&mr.lock);
    g_ptr_array_remove_fast(mr.streams, f);
    mr.running--;
    g_cond_broadcast(&mr.cond);
    g_mutex_unlock(&mr.lock);
}

static const SaveVMChannelOps channel_ops = {
    .begin = channels_begin,
    .run = channel_run,
    .failed = channels_failed,
    .abort = channels_abort,
    .end = channels_end,
};

void multifd_recv_register(void)
{
    savevm_register_channel(BLK_MIG_MULTIFD_MAGIC, "a multifd channel (BMFD)", &channel_ops,
                            NULL);
}
