/* The stream job: from the start of the drive to its end, find the next
 * range the drive's own layer lacks that a layer above the base holds,
 * wait for the rate limit, copy it (block/stream-copy.c: reads of the
 * read-only chain, writes only where still unallocated), and count it.
 * An error goes through on-error: a stop retries the same range after
 * block-job-resume; an ignored error skips the range but still fails the
 * job at the end, so the backing file is never dropped while something
 * is missing.  Once everything is copied, prepare makes the base the
 * drive's backing node (header first), closing the rest of the chain.
 * Ranges copied before a failure or a cancel stay copied: a later
 * block-stream finds them allocated and goes on from there. */
#include "jobs/stream.h"

#include <errno.h>
#include <gio/gio.h>

#include "job-internal.h"

/* Copies in flight at once: reading the base, writing the image and its
 * syncs overlap. */
#define STREAM_DEPTH 4
/* How far one plan (a round of status calls) reaches at most. */
#define STREAM_PLAN_MAX (64u << 20)

typedef struct StreamJob {
    BlockDriverState *bs, *base;
    char *backing_file;
    uint64_t size;
    uint64_t max_copy;
    uint64_t unit;               /* the drive's cluster size */
    StreamCopier *copier;
    uint64_t pos;                /* everything before it is handed out */
    uint64_t run_end;            /* [pos, run_end) is planned: the chain holds it */
    StreamCopyResult failure;    /* the lowest failed copy (ret < 0), to handle */
    int ignored;                 /* the first error on-error=ignore skipped */
} StreamJob;

static uint64_t cluster_unit(BlockDriverState *bs)
{
    uint32_t cs = bdrv_get_cluster_size(bs);
    return cs ? cs : 512;
}

/* Remember R when it failed (the lowest failure counts). */
static void note_result(StreamJob *s, const StreamCopyResult *r)
{
    if (r->ret < 0 && (s->failure.ret == 0 || r->start < s->failure.start)) {
        s->failure = *r;
    }
}

static void collect_one(StreamJob *s)
{
    StreamCopyResult r;
    stream_copier_collect(s->copier, &r);
    note_result(s, &r);
}

static void drain_copies(StreamJob *s)
{
    while (stream_copier_in_flight(s->copier)) {
        collect_one(s);
    }
}

/* A failed copy (or plan), once nothing is in flight: on-error decides.
 * 0 to go on (from the failed range for stop, past it for ignore), or
 * the error to fail the job. */
static int handle_failure(Job *job, StreamJob *s)
{
    drain_copies(s);
    StreamCopyResult f = s->failure;
    s->failure.ret = 0;
    s->pos = f.start;
    switch (job_error_action(job, f.operation, f.ret)) {
    case JOB_ACTION_STOP:
        return 0;
    case JOB_ACTION_IGNORE:
        s->ignored = s->ignored ? s->ignored : f.ret;
        s->pos = f.start + f.len;
        return 0;
    default:
        return f.ret;
    }
}

/* The next run to copy at or after s->pos, as [s->pos, s->run_end);
 * false when there is none (or planning failed: s->failure). */
static bool plan_run(StreamJob *s)
{
    uint64_t start, len;
    int ret = bdrv_stream_next(s->bs, s->base, s->pos, STREAM_PLAN_MAX, &start, &len);

    if (ret < 0) {
        s->failure = (StreamCopyResult){ .start = s->pos, .len = s->unit, .ret = ret,
                                         .operation = "read" };
        return false;
    }
    s->pos = start;
    s->run_end = start + len;
    return len > 0;
}

/* Start copying the next slice of the planned run (planning the next run
 * when this one is done: one round of status calls per run, not per
 * slice). */
static void submit_next(Job *job, StreamJob *s)
{
    if (s->pos >= s->run_end && !plan_run(s)) {
        return;
    }
    uint64_t len = MIN(job_rate_chunk(job, s->unit, s->max_copy), s->run_end - s->pos);
    job_rate_account(job, len);
    stream_copier_submit(s->copier, s->pos, len);
    s->pos += len;
}

/* One turn of the job's loop: handle a failure, collect a copy, stop for
 * a pause or cancel with nothing in flight, or start the next copy. */
static int stream_turn(Job *job, StreamJob *s)
{
    if (s->failure.ret < 0) {
        return handle_failure(job, s);
    }
    if (s->pos >= s->size || stream_copier_full(s->copier)) {
        collect_one(s);
        return 0;
    }
    if (job_interrupted(job)) {
        drain_copies(s);
        job_pause_point(job);
        return job_is_cancelled(job) ? -ECANCELED : 0;
    }
    job_rate_wait(job);
    if (!job_interrupted(job)) {
        submit_next(job, s);
    }
    return 0;
}

/* Before copying: the image's metadata for every range to copy (L2
 * tables), made while nothing is dirty yet, so that its syncs are cheap
 * and the copies' allocations never wait for one (each would flush
 * everything copied so far).  Failures are left to the copies. */
static void prepare_image(Job *job, StreamJob *s)
{
    uint64_t pos = 0, start, len;

    while (pos < s->size && !job_is_cancelled(job) &&
           bdrv_stream_next(s->bs, s->base, pos, STREAM_PLAN_MAX, &start, &len) == 0 &&
           len > 0 && bdrv_prepare_write(s->bs, start, len) == 0) {
        pos = start + len;
    }
}

static int stream_run(Job *job, GError **errp)
{
    StreamJob *s = job_opaque(job);
    int ret = 0;

    prepare_image(job, s);
    while (ret == 0 && (s->pos < s->size || stream_copier_in_flight(s->copier) ||
                        s->failure.ret < 0)) {
        ret = stream_turn(job, s);
        job_progress_set_offset(job, stream_copier_low_mark(s->copier, MIN(s->pos, s->size)));
    }
    drain_copies(s);
    g_clear_pointer(&s->copier, stream_copier_free);
    ret = ret < 0 ? ret : s->ignored;
    if (ret < 0 && ret != -ECANCELED) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-ret), "%s", g_strerror(-ret));
    }
    return ret;
}

static int stream_prepare(Job *job, GError **errp)
{
    StreamJob *s = job_opaque(job);
    return bdrv_change_backing(s->bs, s->base, s->backing_file, errp);
}

static void stream_job_free(StreamJob *s)
{
    stream_copier_free(s->copier);
    g_free(s->backing_file);
    g_free(s);
}

static void stream_clean(Job *job)
{
    stream_job_free(job_opaque(job));
}

static const JobDriver stream_driver = {
    .type = "stream",
    .run = stream_run,
    .prepare = stream_prepare,
    .clean = stream_clean,
};

static StreamJob *stream_job_new(const StreamOptions *o)
{
    StreamJob *s = g_new0(StreamJob, 1);

    s->bs = o->bs;
    s->base = o->base;
    s->backing_file = g_strdup(o->backing_file);
    s->size = (uint64_t)bdrv_getlength(o->bs);
    s->unit = cluster_unit(o->bs);
    s->max_copy = MAX((uint64_t)STREAM_MAX_COPY, s->unit);
    s->copier = stream_copier_new(o->bs, STREAM_DEPTH, s->max_copy, o->base == NULL);
    return s;
}

bool stream_start(const StreamOptions *o, GError **errp)
{
    const char *device = bdrv_get_id(o->bs);

    if (bdrv_is_read_only(o->bs)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_READ_ONLY,
                    "Block node '%s' is read-only: streaming writes into it", device);
        return false;
    }
    StreamJob *s = stream_job_new(o);
    Job *job = job_create(o->job_id ? o->job_id : device, &stream_driver, device, o->speed,
                          o->on_error, s, errp);
    if (!job) {
        stream_job_free(s);
        return false;
    }
    /* Known before block-stream returns: a query-block-jobs right after it
     * sees the whole length, as QEMU's does. */
    job_progress_set_total(job, s->size);
    job_start(job);
    return true;
}

bool stream_range(BlockDriverState *bs, uint64_t offset, uint64_t *next, GError **errp)
{
    uint64_t unit = cluster_unit(bs), start, len;
    int ret = bdrv_stream_next(bs, NULL, offset, MAX((uint64_t)STREAM_MAX_COPY, unit),
                               &start, &len);
    bool read_failed = true;

    if (ret == 0 && len > 0) {
        uint8_t *buf = bdrv_buf_alloc(bs, len);
        ret = bdrv_stream_copy(bs, start, len, buf, true, &read_failed);
        bdrv_buf_free(buf);
    }
    if (ret < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-ret),
                    "Could not copy from the backing chain of '%s' (%s): %s",
                    bdrv_get_id(bs), read_failed ? "read" : "write", g_strerror(-ret));
        return false;
    }
    *next = start + len;
    return true;
}
