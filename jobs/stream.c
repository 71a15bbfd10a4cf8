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

typedef struct StreamJob {
    BlockDriverState *bs, *base;
    char *backing_file;
    uint8_t *buf;                /* max_copy bytes */
    uint64_t max_copy;
    uint64_t unit;               /* the drive's cluster size */
    int ignored;                 /* the first error on-error=ignore skipped */
} StreamJob;

static uint64_t cluster_unit(BlockDriverState *bs)
{
    uint32_t cs = bdrv_get_cluster_size(bs);
    return cs ? cs : 512;
}

/* One step at POS: 0 with *POS advanced, or an errno with *OPERATION. */
static int stream_step(Job *job, StreamJob *s, uint64_t *pos, const char **operation)
{
    uint64_t start, len;
    uint64_t max = job_rate_chunk(job, s->unit, s->max_copy);
    bool read_failed = true;
    int ret = bdrv_stream_next(s->bs, s->base, *pos, max, &start, &len);

    *operation = "read";
    if (ret == 0 && len > 0) {
        job_progress_set_offset(job, start);
        ret = bdrv_stream_copy(s->bs, start, len, s->buf, &read_failed);
        *operation = read_failed ? "read" : "write";
    }
    if (ret == 0) {
        job_rate_account(job, len);
        *pos = start + len;
    }
    return ret;
}

/* What on-error says about ERR at *POS: 0 to go on (*POS moved past
 * the range for ignore), or ERR to fail. */
static int stream_error(Job *job, StreamJob *s, uint64_t *pos, const char *operation, int err)
{
    switch (job_error_action(job, operation, err)) {
    case JOB_ACTION_STOP:
        return 0;
    case JOB_ACTION_IGNORE:
        s->ignored = s->ignored ? s->ignored : err;
        *pos += job_rate_chunk(job, s->unit, s->max_copy);
        return 0;
    default:
        return err;
    }
}

static int stream_run(Job *job, GError **errp)
{
    StreamJob *s = job_opaque(job);
    uint64_t size = (uint64_t)bdrv_getlength(s->bs), pos = 0;
    int ret = 0;

    job_progress_set_total(job, size);
    while (pos < size && ret == 0) {
        job_rate_wait(job);
        job_pause_point(job);
        if (job_is_cancelled(job)) {
            return -ECANCELED;
        }
        const char *operation;
        ret = stream_step(job, s, &pos, &operation);
        ret = ret < 0 ? stream_error(job, s, &pos, operation, ret) : 0;
        job_progress_set_offset(job, MIN(pos, size));
    }
    ret = ret < 0 ? ret : s->ignored;
    if (ret < 0) {
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
    bdrv_buf_free(s->buf);
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
    s->unit = cluster_unit(o->bs);
    s->max_copy = MAX((uint64_t)STREAM_MAX_COPY, s->unit);
    s->buf = bdrv_buf_alloc(o->bs, s->max_copy);
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
        ret = bdrv_stream_copy(bs, start, len, buf, &read_failed);
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
