/* The return path: the destination's verdict travelling back to the source
 * on the migration socket (be16 type, be16 len, payload). */
#include <string.h>

#include "migration-internal.h"
#include "util/bswap.h"

#define RP_MAX_PAYLOAD 0xffff
/* A resume map bigger than this is refused (4 bytes per MiB of disk:
 * 64 MiB covers 16 TiB of drives). */
#define RP_MAX_RESUME_MAP (64u << 20)
/* FLUSHED reports kept: the quickest of them is the flush's fixed cost,
 * so one slow flush on a busy host does not hold a migration back. */
#define RP_FLUSHES_KEPT 4

struct ReturnPath {
    MigStream *in;              /* reader on a dup of the socket; owned */
    MigStream *main;            /* the outgoing stream; not owned */
    GThread *thread;
    GMutex lock;
    GCond cond;
    bool ended;                 /* the reader thread has returned */
    bool got_shut;
    uint32_t shut_status;
    char *dest_error;           /* text of an ERROR message */
    bool has_durable;
    uint64_t durable;           /* the last DURABLE count */
    GByteArray *resume_map;     /* RESUME_MAP payloads so far */
    bool resume_end;            /* RESUME_END came */
    bool resume_too_big;
    uint64_t verified;          /* the last VERIFIED count */
    gint64 verified_us;         /* when it came (0: never) */
    /* The last flushes: how long each took (FLUSHED) and how many bytes
     * it made durable (the DURABLE after it, less the one before). */
    uint64_t flush_us[RP_FLUSHES_KEPT];
    uint64_t flush_bytes[RP_FLUSHES_KEPT];
    unsigned flushes;           /* FLUSHED reports so far */
};

/* A piece of the destination's resume map, or its end. */
static void add_resume_map(ReturnPath *rp, bool end, const uint8_t *payload, uint16_t len)
{
    g_mutex_lock(&rp->lock);
    if (!rp->resume_map) {
        rp->resume_map = g_byte_array_new();
    }
    if (rp->resume_map->len + len > RP_MAX_RESUME_MAP) {
        rp->resume_too_big = true;
    } else {
        g_byte_array_append(rp->resume_map, payload, len);
    }
    rp->resume_end |= end;
    g_cond_broadcast(&rp->cond);
    g_mutex_unlock(&rp->lock);
}

/* rp->lock held: a DURABLE count, which the flush reported just before
 * it (if any) made durable. */
static void note_durable_locked(ReturnPath *rp, uint64_t durable)
{
    if (rp->flushes) {
        rp->flush_bytes[(rp->flushes - 1) % RP_FLUSHES_KEPT] =
            durable > rp->durable ? durable - rp->durable : 0;
    }
    rp->has_durable = true;
    rp->durable = durable;
}

/* Returns false when the reader should stop (SHUT, end or error). */
static bool handle_message(ReturnPath *rp, uint16_t type, const uint8_t *payload,
                           uint16_t len)
{
    switch (type) {
    case MIG_RP_MSG_SHUT:
        g_mutex_lock(&rp->lock);
        rp->got_shut = true;
        rp->shut_status = len == 4 ? ld_be32(payload) : UINT32_MAX;
        g_mutex_unlock(&rp->lock);
        return false;
    case MIG_RP_MSG_ERROR:
        g_mutex_lock(&rp->lock);
        if (!rp->dest_error) {
            rp->dest_error = g_utf8_make_valid((const char *)payload, len);
        }
        g_mutex_unlock(&rp->lock);
        /* The destination gave up: stop the sender rather than let it
         * push data nobody reads. */
        mig_stream_shutdown(rp->main);
        return true;
    case MIG_RP_MSG_VERIFIED:
        if (len == 8) {
            g_mutex_lock(&rp->lock);
            rp->verified = ld_be64(payload);
            rp->verified_us = g_get_monotonic_time();
            g_cond_broadcast(&rp->cond);     /* the ack wait starts again */
            g_mutex_unlock(&rp->lock);
        }
        return true;
    case MIG_RP_MSG_FLUSHED:
        if (len == 8) {
            g_mutex_lock(&rp->lock);
            rp->flush_bytes[rp->flushes % RP_FLUSHES_KEPT] = 0;
            rp->flush_us[rp->flushes++ % RP_FLUSHES_KEPT] = ld_be64(payload);
            g_mutex_unlock(&rp->lock);
        }
        return true;
    case MIG_RP_MSG_DURABLE:
        if (len == 8) {
            g_mutex_lock(&rp->lock);
            note_durable_locked(rp, ld_be64(payload));
            g_mutex_unlock(&rp->lock);
        }
        return true;
    case MIG_RP_MSG_RESUME_MAP:
    case MIG_RP_MSG_RESUME_END:
        add_resume_map(rp, type == MIG_RP_MSG_RESUME_END, payload, len);
        return true;
    default:
        /* Unknown messages are skipped so newer destinations can add
         * some. */
        return true;
    }
}

static gpointer return_path_thread(gpointer opaque)
{
    ReturnPath *rp = opaque;
    uint8_t *payload = g_malloc(RP_MAX_PAYLOAD);
    bool more = true;

    while (more) {
        uint16_t type = mig_get_be16(rp->in);
        uint16_t len = mig_get_be16(rp->in);

        if (mig_get_buffer(rp->in, payload, len) != len || mig_stream_error(rp->in)) {
            break;
        }
        more = handle_message(rp, type, payload, len);
    }
    g_free(payload);
    g_mutex_lock(&rp->lock);
    if (mig_stream_refused(rp->in) && !rp->dest_error) {
        /* Its TLS refused ours: as good as its error message. */
        rp->dest_error = g_strdup(mig_stream_error_msg(rp->in));
        mig_stream_shutdown(rp->main);
    }
    rp->ended = true;
    g_cond_broadcast(&rp->cond);
    g_mutex_unlock(&rp->lock);
    return NULL;
}

ReturnPath *return_path_start(int fd, MigStream *main)
{
    ReturnPath *rp = g_new0(ReturnPath, 1);

    rp->in = mig_stream_new_reader(fd);
    mig_stream_share_tls(rp->in, main);
    rp->main = main;
    g_mutex_init(&rp->lock);
    g_cond_init(&rp->cond);
    rp->thread = g_thread_new("mig-return-path", return_path_thread, rp);
    return rp;
}

/* Wait (rp->lock held) until DONE says so, the reader ended, or DEADLINE. */
static void wait_locked(ReturnPath *rp, gint64 deadline, bool (*done)(ReturnPath *))
{
    while (!rp->ended && !done(rp)) {
        if (!g_cond_wait_until(&rp->cond, &rp->lock, deadline)) {
            break;
        }
    }
}

static bool has_verdict(ReturnPath *rp)
{
    return rp->got_shut || rp->dest_error;
}

static bool has_error(ReturnPath *rp)
{
    return rp->dest_error != NULL;
}

/* rp->lock held: wait for the verdict until TIMEOUT_US passed since the
 * start or since the last VERIFIED message, whichever is later. */
static void wait_verdict_locked(ReturnPath *rp, gint64 timeout_us)
{
    gint64 start = g_get_monotonic_time();

    while (!rp->ended && !has_verdict(rp)) {
        gint64 deadline = MAX(start, rp->verified_us) + timeout_us;
        if (!g_cond_wait_until(&rp->cond, &rp->lock, deadline) &&
            g_get_monotonic_time() >= MAX(start, rp->verified_us) + timeout_us) {
            break;
        }
    }
}

bool return_path_wait_ack(ReturnPath *rp, gint64 timeout_us, GError **errp)
{
    bool ok = false;

    g_mutex_lock(&rp->lock);
    wait_verdict_locked(rp, timeout_us);
    if (rp->dest_error) {
        g_set_error(errp, MIG_ERROR, 0, "destination failed: %s", rp->dest_error);
    } else if (rp->got_shut && rp->shut_status == 0) {
        ok = true;
    } else if (rp->got_shut) {
        g_set_error(errp, MIG_ERROR, 0,
                    "destination failed to load the migration (status %u)",
                    rp->shut_status);
    } else if (rp->ended && !mig_stream_ended(rp->in)) {
        /* Timed out, reset, unreachable: not a destination that hung up. */
        g_set_error(errp, MIG_ERROR, 0, "lost the connection to the destination before it "
                    "confirmed the migration: %s", mig_stream_error_msg(rp->in));
    } else if (rp->ended) {
        g_set_error(errp, MIG_ERROR, 0,
                    "destination closed the connection without confirming the migration");
    } else {
        g_set_error(errp, MIG_ERROR, 0,
                    "destination did not confirm the migration within %" G_GINT64_FORMAT " s",
                    timeout_us / G_USEC_PER_SEC);
    }
    g_mutex_unlock(&rp->lock);
    return ok;
}

static bool has_resume_map(ReturnPath *rp)
{
    return rp->resume_end || rp->dest_error;
}

GByteArray *return_path_wait_resume_map(ReturnPath *rp, gint64 timeout_us, GError **errp)
{
    GByteArray *map = NULL;

    g_mutex_lock(&rp->lock);
    wait_locked(rp, g_get_monotonic_time() + timeout_us, has_resume_map);
    if (rp->dest_error) {
        g_set_error(errp, MIG_ERROR, 0, "destination failed: %s", rp->dest_error);
    } else if (rp->resume_too_big) {
        g_set_error(errp, MIG_ERROR, 0, "the destination's resume map is larger than %u bytes",
                    RP_MAX_RESUME_MAP);
    } else if (rp->resume_end) {
        map = g_steal_pointer(&rp->resume_map);
        map = map ? map : g_byte_array_new();
    } else {
        g_set_error(errp, MIG_ERROR, MIG_ERROR_IO, "the destination sent no resume map "
                    "within %" G_GINT64_FORMAT " s%s%s", timeout_us / G_USEC_PER_SEC,
                    rp->ended ? ": " : "", rp->ended ? mig_stream_error_msg(rp->in) : "");
    }
    g_mutex_unlock(&rp->lock);
    return map;
}

bool return_path_dest_refused(ReturnPath *rp)
{
    bool refused;

    g_mutex_lock(&rp->lock);
    refused = rp->dest_error || (rp->got_shut && rp->shut_status != 0);
    g_mutex_unlock(&rp->lock);
    return refused;
}

bool return_path_durable(ReturnPath *rp, uint64_t *bytes)
{
    bool has;

    g_mutex_lock(&rp->lock);
    has = rp->has_durable;
    *bytes = rp->durable;
    g_mutex_unlock(&rp->lock);
    return has;
}

uint64_t return_path_verified(ReturnPath *rp)
{
    uint64_t bytes;

    g_mutex_lock(&rp->lock);
    bytes = rp->verified;
    g_mutex_unlock(&rp->lock);
    return bytes;
}

bool return_path_flush_cost(ReturnPath *rp, uint64_t *min_us, uint64_t *rate)
{
    uint64_t bytes = 0, us = 0;
    unsigned kept;

    g_mutex_lock(&rp->lock);
    kept = MIN(rp->flushes, RP_FLUSHES_KEPT);
    *min_us = UINT64_MAX;
    for (unsigned i = 0; i < kept; i++) {
        *min_us = MIN(*min_us, rp->flush_us[i]);
        bytes += rp->flush_bytes[i];
        us += rp->flush_us[i];
    }
    g_mutex_unlock(&rp->lock);
    *rate = bytes && us ? (uint64_t)((double)bytes * G_USEC_PER_SEC / us) : 0;
    return kept > 0;
}

char *return_path_wait_error(ReturnPath *rp, gint64 timeout_us)
{
    char *text;

    g_mutex_lock(&rp->lock);
    wait_locked(rp, g_get_monotonic_time() + timeout_us, has_error);
    text = g_strdup(rp->dest_error);
    g_mutex_unlock(&rp->lock);
    return text;
}

void return_path_free(ReturnPath *rp)
{
    if (!rp) {
        return;
    }
    mig_stream_shutdown(rp->in);
    g_thread_join(rp->thread);
    mig_stream_close(rp->in);
    g_free(rp->dest_error);
    if (rp->resume_map) {
        g_byte_array_unref(rp->resume_map);
    }
    g_cond_clear(&rp->cond);
    g_mutex_clear(&rp->lock);
    g_free(rp);
}

void return_path_send_shut(MigStream *out, uint32_t status)
{
    mig_put_be16(out, MIG_RP_MSG_SHUT);
    mig_put_be16(out, 4);
    mig_put_be32(out, status);
    mig_stream_flush(out);
}

void return_path_send_error(MigStream *out, const char *text)
{
    size_t len = strlen(text);

    if (len > RP_MAX_PAYLOAD) {
        /* Cut at a character boundary so the text stays valid UTF-8. */
        len = RP_MAX_PAYLOAD;
        while (len > 0 && ((unsigned char)text[len] & 0xc0) == 0x80) {
            len--;
        }
    }
    mig_put_be16(out, MIG_RP_MSG_ERROR);
    mig_put_be16(out, len);
    mig_put_buffer(out, text, len);
    mig_stream_flush(out);
}

static void send_count(MigStream *out, uint16_t type, uint64_t bytes)
{
    mig_put_be16(out, type);
    mig_put_be16(out, 8);
    mig_put_be64(out, bytes);
    mig_stream_flush(out);
}

void return_path_send_resume_map(MigStream *out, const uint8_t *map, size_t len)
{
    for (size_t off = 0; off < len; off += RP_MAX_PAYLOAD) {
        size_t n = MIN(len - off, RP_MAX_PAYLOAD);

        mig_put_be16(out, MIG_RP_MSG_RESUME_MAP);
        mig_put_be16(out, n);
        mig_put_buffer(out, map + off, n);
    }
    mig_put_be16(out, MIG_RP_MSG_RESUME_END);
    mig_put_be16(out, 0);
    mig_stream_flush(out);
}

void return_path_send_durable(MigStream *out, uint64_t bytes)
{
    send_count(out, MIG_RP_MSG_DURABLE, bytes);
}

void return_path_send_verified(MigStream *out, uint64_t bytes)
{
    send_count(out, MIG_RP_MSG_VERIFIED, bytes);
}

void return_path_send_flushed(MigStream *out, uint64_t us)
{
    send_count(out, MIG_RP_MSG_FLUSHED, us);
}
