/* Multifd, source side: the extra connections of a migration.  Each
 * channel has a thread writing the records of the chunk jobs queued for it
 * (chunk index mod N, so a channel carries a chunk's versions in order),
 * then, at switchover, its end marker. */
#include <stdatomic.h>
#include <string.h>

#include "block-internal.h"

/* How often a wait for the end markers re-checks the main stream. */
#define FINISH_SLICE_US (50 * 1000)

typedef struct SendChannel {
    struct MultifdSend *m;
    unsigned index;
    MigStream *f;
    GAsyncQueue *queue;         /* BlkChunkJob *, or the markers below */
    _Atomic int64_t queued;     /* wire bytes of the jobs queued */
    GThread *thread;
    bool ended;                 /* end marker written; m->lock */
} SendChannel;

struct MultifdSend {
    unsigned n;
    SendChannel *ch;
    MultifdSentFn sent;
    void *opaque;
    GMutex lock;
    GCond cond;                 /* a channel ended or failed */
    char *error;                /* the first channel failure */
};

/* Queue markers: write the end marker / exit the thread. */
static BlkChunkJob end_marker, stop_marker;

static void channel_failed(SendChannel *ch)
{
    MultifdSend *m = ch->m;

    g_mutex_lock(&m->lock);
    if (!m->error) {
        m->error = g_strdup_printf("multifd channel %u: writing the migration stream "
                                   "failed: %s", ch->index, mig_stream_error_msg(ch->f));
    }
    g_cond_broadcast(&m->cond);
    g_mutex_unlock(&m->lock);
}

/* A mirrored guest write waits for its records: they go out at once. */
static void send_job(SendChannel *ch, BlkChunkJob *job)
{
    uint64_t start = mig_stream_bytes(ch->f);

    for (guint i = 0; i < job->records->len && !mig_stream_error(ch->f); i++) {
        blk_record_put(ch->f, job->id, &g_array_index(job->records, BlkRecord, i));
    }
    if (job->mirrored) {
        mig_stream_flush(ch->f);
    }
    if (mig_stream_error(ch->f)) {
        channel_failed(ch);
        ch->m->sent(job, false, 0, ch->m->opaque);
        return;
    }
    ch->m->sent(job, true, mig_stream_bytes(ch->f) - start, ch->m->opaque);
}

static void send_end_marker(SendChannel *ch)
{
    mig_put_be64(ch->f, BLK_MIG_FLAG_EOS);
    if (mig_stream_flush(ch->f) < 0) {
        channel_failed(ch);
        return;
    }
    g_mutex_lock(&ch->m->lock);
    ch->ended = true;
    g_cond_broadcast(&ch->m->cond);
    g_mutex_unlock(&ch->m->lock);
}

static gpointer channel_thread(gpointer opaque)
{
    SendChannel *ch = opaque;

    for (;;) {
        BlkChunkJob *job = g_async_queue_try_pop(ch->queue);

        if (!job) {
            /* Nothing queued: what is buffered should not wait. */
            mig_stream_flush(ch->f);
            job = g_async_queue_pop(ch->queue);
        }
        if (job == &stop_marker) {
            break;
        } else if (job == &end_marker) {
            send_end_marker(ch);
            continue;
        }
        atomic_fetch_sub(&ch->queued, (int64_t)job->wire_bytes);
        if (mig_stream_error(ch->f)) {
            ch->m->sent(job, false, 0, ch->m->opaque);
        } else {
            send_job(ch, job);
        }
    }
    return NULL;
}

/* be32 magic, be32 version, be32 index, be32 count, 16-byte id. */
static void put_handshake(MigStream *f, unsigned index, unsigned n, const uint8_t *id)
{
    mig_put_be32(f, BLK_MIG_MULTIFD_MAGIC);
    mig_put_be32(f, BLK_MIG_MULTIFD_VERSION);
    mig_put_be32(f, index);
    mig_put_be32(f, n);
    mig_put_buffer(f, id, BLK_MIG_MULTIFD_ID_LEN);
}

static bool connect_channel(SendChannel *ch, const char *uri, unsigned n, const uint8_t *id,
                            MigStream *main, GError **errp)
{
    GError *local = NULL;

    ch->f = migration_connect_extra(uri, &local);
    if (!ch->f) {
        g_set_error(errp, MIG_ERROR, 0, "multifd channel %u: %s", ch->index, local->message);
        g_error_free(local);
        return false;
    }
    mig_stream_share_rate_limit(ch->f, main);
    put_handshake(ch->f, ch->index, n, id);
    if (mig_stream_flush(ch->f) < 0) {
        g_set_error(errp, MIG_ERROR, 0, "multifd channel %u: sending the handshake failed: %s",
                    ch->index, mig_stream_error_msg(ch->f));
        return false;
    }
    return true;
}

MultifdSend *multifd_send_start(const char *uri, unsigned n, const uint8_t *id,
                                MigStream *main, MultifdSentFn sent, void *opaque,
                                GError **errp)
{
    MultifdSend *m = g_new0(MultifdSend, 1);

    m->n = n;
    m->sent = sent;
    m->opaque = opaque;
    g_mutex_init(&m->lock);
    g_cond_init(&m->cond);
    m->ch = g_new0(SendChannel, n);
    for (unsigned i = 0; i < n; i++) {
        m->ch[i].m = m;
        m->ch[i].index = i;
        m->ch[i].queue = g_async_queue_new();
    }
    for (unsigned i = 0; i < n; i++) {
        SendChannel *ch = &m->ch[i];
        if (!connect_channel(ch, uri, n, id, main, errp)) {
            multifd_send_free(m);
            return NULL;
        }
        ch->thread = g_thread_new("mig-multifd", channel_thread, ch);
    }
    return m;
}

uint64_t multifd_send_unsent_bytes(MultifdSend *m)
{
    uint64_t unsent = 0;

    for (unsigned i = 0; i < m->n; i++) {
        if (m->ch[i].f) {
            unsent += mig_stream_unsent_bytes(m->ch[i].f);
        }
    }
    return unsent;
}

unsigned multifd_send_channels(MultifdSend *m)
{
    return m->n;
}

void multifd_send_queue(MultifdSend *m, unsigned channel, BlkChunkJob *job)
{
    atomic_fetch_add(&m->ch[channel].queued, (int64_t)job->wire_bytes);
    g_async_queue_push(m->ch[channel].queue, job);
}

uint64_t multifd_send_queued_bytes(MultifdSend *m, unsigned channel)
{
    int64_t queued = atomic_load(&m->ch[channel].queued);

    return queued > 0 ? (uint64_t)queued : 0;
}

bool multifd_send_failed(MultifdSend *m, GError **errp)
{
    bool failed;

    g_mutex_lock(&m->lock);
    failed = m->error != NULL;
    if (failed) {
        g_set_error_literal(errp, MIG_ERROR, MIG_ERROR_IO, m->error);
    }
    g_mutex_unlock(&m->lock);
    return failed;
}

static bool all_ended_locked(MultifdSend *m)
{
    for (unsigned i = 0; i < m->n; i++) {
        if (!m->ch[i].ended) {
            return false;
        }
    }
    return true;
}

bool multifd_send_finish(MultifdSend *m, MigStream *main, GError **errp)
{
    bool ended;

    for (unsigned i = 0; i < m->n; i++) {
        g_async_queue_push(m->ch[i].queue, &end_marker);
    }
    g_mutex_lock(&m->lock);
    while (!(ended = all_ended_locked(m)) && !m->error && !mig_stream_error(main)) {
        g_cond_wait_until(&m->cond, &m->lock, g_get_monotonic_time() + FINISH_SLICE_US);
    }
    g_mutex_unlock(&m->lock);
    if (multifd_send_failed(m, errp)) {
        return false;
    }
    if (!ended) {
        g_set_error(errp, MIG_ERROR, 0, "writing the migration stream failed: %s",
                    mig_stream_error_msg(main));
    }
    return ended;
}

void multifd_send_free(MultifdSend *m)
{
    if (!m) {
        return;
    }
    for (unsigned i = 0; i < m->n; i++) {
        SendChannel *ch = &m->ch[i];
        if (ch->f) {
            mig_stream_shutdown(ch->f);
        }
        if (ch->thread) {
            /* The thread drops what is still queued, then exits. */
            g_async_queue_push(ch->queue, &stop_marker);
            g_thread_join(ch->thread);
        }
        mig_stream_close(ch->f);
        g_async_queue_unref(ch->queue);
    }
    g_free(m->ch);
    g_free(m->error);
    g_cond_clear(&m->cond);
    g_mutex_clear(&m->lock);
    g_free(m);
}
