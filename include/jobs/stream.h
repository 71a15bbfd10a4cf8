/* Streaming a drive's backing chain into the drive (QEMU's block-stream):
 * a job that copies, range by range, what the drive's own layer lacks and
 * the layers above a base hold, while the guest reads and writes (its
 * writes always win over a copy); when it completes, the drive's header
 * names the base (or no backing file) and the layers above it are closed.
 * Also one range at a time, for managers that pace the work themselves. */
#ifndef JOBS_STREAM_H
#define JOBS_STREAM_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"
#include "jobs/job.h"

/* The most one copy takes: 1 MiB, or one cluster where that is larger. */
#define STREAM_MAX_COPY (1u << 20)

typedef struct StreamOptions {
    const char *job_id;          /* NULL: the drive's id */
    BlockDriverState *bs;        /* the drive */
    BlockDriverState *base;      /* in bs's chain; NULL: all of it */
    const char *backing_file;    /* base's name in the header; NULL: its file name */
    int64_t speed;               /* bytes/s, 0 = unlimited */
    JobOnError on_error;
} StreamOptions;

/* Create and start the job.  Fails (nothing started) for a read-only
 * drive, a taken job id, a drive another job uses, a negative speed. */
bool stream_start(const StreamOptions *opts, GError **errp);

/* Copy the next range at or after OFFSET that BS lacks from its whole
 * chain (at most STREAM_MAX_COPY, or one cluster); *NEXT gets the offset
 * to continue from (BS's size when nothing is left).  The backing file
 * stays named: a block-stream afterwards finds nothing to copy and drops
 * it. */
bool stream_range(BlockDriverState *bs, uint64_t offset, uint64_t *next, GError **errp);

#endif
