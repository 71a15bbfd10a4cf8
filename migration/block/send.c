/* Handing ready units to the wire: pipeline jobs (bulk and dirty passes)
 * and mirrored guest writes, each only once it is first of its chunk
 * (order.c), on the main stream or on the chunk's multifd channel.
 *
 * The link is shared by bytes: while both kinds wait, mirrored writes get
 * at most half of it (the balance below), so a guest writing as fast as
 * it can still leaves the background copy its share and the migration
 * ends; when only one kind waits it gets everything.  max-bandwidth, on
 * the streams, bounds both together.
 *
 * A mirrored write should wait for about one record, not for a whole job
 * or the pipeline: on the main stream mirrored units go out between the
 * records of a background job (which stays first of its chunk until its
 * last record is written, so a unit of the same chunk still waits for
 * all of it); in write-blocking mode records are short (save.c) and a
 * multifd channel holds only a little queued ahead. */
#include "block-internal.h"

/* How far one kind may get ahead of the other, in bytes. */
#define BALANCE_MAX (256 * 1024)
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

/* A unit that failed to read: its error becomes the sender's. */
static void fail_unit(BlkSender *s, BlkChunkJob *job)
{
    if (!s->error) {
        s->error = g_strdup(job->error);
    }
    s->sent(job, false, 0, NULL);
}

/* The next pipeline job when it is read and first of its chunk (it
 * leaves the chunk's order once handed on). */
static BlkChunkJob *take_background(BlkSender *s)
{
    BlkChunkJob *job = blk_pipeline_peek_ready(s->pipeline);

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

/* A background job, taken: its records (on the main stream with mirrored
 * writes between them), then it leaves its chunk's order. */
static void hand_on_background(BlkSender *s, MigStream *f, BlkChunkJob *job, uint64_t *sent,
                               int *count)
{
    if (s->multifd) {
        /* Before the channel may send and free it; only this thread
         * hands units on, so none of its chunk can come in between. */
        blk_order_leave(s->order, job);
        account_balance(s, -(int64_t)job->wire_bytes);
        multifd_send_queue(s->multifd, channel_of(s, job), job);
        return;
    }
    for (guint i = 0; i < job->records->len; i++) {
        const BlkRecord *r = &g_array_index(job->records, BlkRecord, i);
        blk_record_put(f, job->id, r);
        account_balance(s, -(int64_t)blk_record_wire_size(job->id, r));
        if (i + 1 < job->records->len) {
            send_mirrored_between(s, f, sent, count);
        }
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
