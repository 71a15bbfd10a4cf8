/* Handing ready units to the wire: pipeline jobs (bulk and dirty passes)
 * and mirrored guest writes, each only once it is first of its chunk
 * (order.c), on the main stream or on the chunk's multifd channel.
 *
 * Mirrored writes go first: a guest waits for each of them, the
 * background copy (bulk walk, dirty passes) waits for nobody.  The link is
 * shared by bytes so that the background copy still keeps a quarter of it
 * while both kinds wait (the balance below): a guest writing as fast as
 * it can does not starve it and the migration ends.  When only one kind
 * waits it gets everything.  max-bandwidth, on the streams, bounds both
 * together.
 *
 * A mirrored write should not wait for a whole job or the pipeline: on
 * the main stream mirrored units go out between the records of a
 * background job (which stays first of its chunk until its last record
 * is written, so a unit of the same chunk still waits for all of it), and
 * while the rate limit holds a background record back the thread serves
 * the mirrored writes that come meanwhile instead of sleeping behind it;
 * in write-blocking mode records are short (save.c) and a multifd
 * channel holds only a little queued ahead. */
#include "block-internal.h"

/* How far one kind may get ahead of the other, in weighted bytes. */
#define BALANCE_MAX (256 * 1024)
/* While both wait, mirrored writes get this many bytes for each byte of
 * the background copy: 3, the background keeps a quarter of the link. */
#define MIRROR_WEIGHT 3
/* Longest sleep while a background record waits for the rate limit:
 * mirrored writes that become ready wake the thread anyway. */
#define YIELD_SLICE_US (5 * 1000)
/* Write-blocking with multifd: wire bytes a channel may have queued
 * before it takes another background job. */
#define CHANNEL_DEPTH (256 * 1024)

static unsigned channel_of(BlkSender *s, const BlkChunkJob *job)
{
    return (job->chunk / BLK_CHUNK) % multifd_send_channels(s->multifd);
}

static void account_balance(BlkSender *s, int64_t mirrored_bytes)
{
    s->balance = CLAMP(s->balance + mirrored_bytes, -BALANCE_MAX, BALANCE_MAX);
}

static void account_background(BlkSender *s, uint64_t bytes)
{
    account_balance(s, -(int64_t)bytes * MIRROR_WEIGHT);
}

/* A unit that failed to read: its error becomes the sender's. */
static void fail_unit(BlkSender *s, BlkChunkJob *job)
{
    if (!s->error) {
        s->error = g_strdup(job->error);
    }
    s->sent(job, false, 0, NULL);
}

/* The next pipeline job when it is read and first of its chunk (it
 * leaves the chunk's order once handed on): one a mirrored write waits
 * for, or the oldest. */
static BlkChunkJob *take_background(BlkSender *s)
{
    BlkChunkJob *job = blk_mirror_blocker(s->mirror);

    /* A job a guest write waits for goes first (it is first of its
     * chunk, and only this thread takes pipeline jobs). */
    if (job && !s->multifd && blk_pipeline_take(s->pipeline, job)) {
        return job;
    }
    job = blk_pipeline_peek_ready(s->pipeline);

    if (!job) {
        return NULL;
    }
    if (s->multifd && blk_mirror_is_active(s->mirror) &&
        multifd_send_queued_bytes(s->multifd, channel_of(s, job)) > CHANNEL_DEPTH) {
        return NULL;
    }
    if (!blk_order_is_first(s->order, job)) {
        return NULL;
    }
    return blk_pipeline_pop_ready(s->pipeline);
}

/* The kind that is behind goes first. */
static BlkChunkJob *take_next(BlkSender *s)
{
    BlkChunkJob *job;

    if (s->balance <= 0) {
        job = blk_mirror_take(s->mirror);
        return job ? job : take_background(s);
    }
    job = take_background(s);
    return job ? job : blk_mirror_take(s->mirror);
}

static void put_records(MigStream *f, const BlkChunkJob *job)
{
    for (guint i = 0; i < job->records->len; i++) {
        blk_record_put(f, job->id, &g_array_index(job->records, BlkRecord, i));
    }
}

/* The mirrored units written on the main stream go out now, and their
 * writes complete. */
static void finish_flushed(BlkSender *s, MigStream *f, GPtrArray *flushed)
{
    bool ok;

    if (flushed->len == 0) {
        return;
    }
    ok = mig_stream_flush(f) == 0;
    for (guint i = 0; i < flushed->len; i++) {
        s->sent(flushed->pdata[i], ok, 0, NULL);
    }
    g_ptr_array_set_size(flushed, 0);
}

/* A mirrored unit, taken: on the main stream it is done once flushed
 * (it joins FLUSHED). */
static void hand_on_mirrored(BlkSender *s, MigStream *f, BlkChunkJob *job, GPtrArray *flushed)
{
    account_balance(s, job->wire_bytes);
    if (s->multifd) {
        multifd_send_queue(s->multifd, channel_of(s, job), job);
    } else {
        put_records(f, job);
        g_ptr_array_add(flushed, job);
    }
}

/* Main stream, between two records of a background job: the mirrored
 * writes that are ready, while they are behind. */
static void send_mirrored_between(BlkSender *s, MigStream *f, uint64_t *sent, int *count)
{
    g_autoptr(GPtrArray) flushed = g_ptr_array_new();
    BlkChunkJob *job;

    while (s->balance <= 0 && !s->error && (job = blk_mirror_take(s->mirror))) {
        if (job->error) {
            fail_unit(s, job);
            break;
        }
        *sent += job->wire_bytes;
        (*count)++;
        hand_on_mirrored(s, f, job, flushed);
    }
    finish_flushed(s, f, flushed);
}

/* Main stream, before a background record of BYTES: the mirrored writes
 * that are ready, and while the rate limit would hold the record back
 * anyway, those that become ready meanwhile. */
static void yield_to_mirrored(BlkSender *s, MigStream *f, uint64_t bytes, uint64_t *sent,
                              int *count)
{
    for (;;) {
        gint64 delay;

        send_mirrored_between(s, f, sent, count);
        delay = mig_stream_rate_delay_us(f, bytes);
        if (delay <= 0 || s->error || mig_stream_error(f) || !blk_mirror_is_active(s->mirror)) {
            return;
        }
        /* Catch up with the pipeline's events: a unit made ready from now
         * on wakes the wait. */
        blk_pipeline_peek_ready(s->pipeline);
        blk_pipeline_wait(s->pipeline, MIN(delay, YIELD_SLICE_US));
    }
}

/* A background job, taken: its records (on the main stream with mirrored
 * writes between them), then it leaves its chunk's order. */
static void hand_on_background(BlkSender *s, MigStream *f, BlkChunkJob *job, uint64_t *sent,
                               int *count)
{
    if (s->multifd) {
        /* Before the channel may send and free it; only this thread
         * hands units on, so none of its chunk can come in between. */
        blk_order_leave(s->order, job);
        account_background(s, job->wire_bytes);
        multifd_send_queue(s->multifd, channel_of(s, job), job);
        return;
    }
    for (guint i = 0; i < job->records->len; i++) {
        const BlkRecord *r = &g_array_index(job->records, BlkRecord, i);
        uint64_t size = blk_record_wire_size(job->id, r);

        yield_to_mirrored(s, f, size, sent, count);
        blk_record_put(f, job->id, r);
        account_background(s, size);
    }
    blk_order_leave(s->order, job);
    s->sent(job, mig_stream_error(f) == 0, 0, NULL);
}

int blk_send_ready(BlkSender *s, MigStream *f, uint64_t *sent, uint64_t max_bytes,
                   GError **errp)
{
    g_autoptr(GPtrArray) flushed = g_ptr_array_new();
    BlkChunkJob *job;
    int count = 0;

    while (*sent < max_bytes && !s->error && (job = take_next(s))) {
        if (job->error) {
            fail_unit(s, job);
            break;
        }
        *sent += job->wire_bytes;
        count++;
        if (job->mirrored) {
            hand_on_mirrored(s, f, job, flushed);
            continue;
        }
        /* Mirrored writes waiting do not wait for this one too. */
        finish_flushed(s, f, flushed);
        hand_on_background(s, f, job, sent, &count);
    }
    finish_flushed(s, f, flushed);
    if (s->error) {
        g_set_error_literal(errp, MIG_ERROR, 0, s->error);
        g_clear_pointer(&s->error, g_free);
        return -1;
    }
    return count;
}
