/* Copying a whole disk image from a source to a target: the engine behind
 * `blkmig copy`, kept apart from the tool so that another tool or a block
 * job can run the same copy.
 *
 * A side is a drive of the block layer (any format over a file or an NBD
 * export) or a raw byte stream (a pipe, stdin/stdout).  The copy walks the
 * source's block status: holes and zero runs are never read or written as
 * data; what is read is split again at 4 KiB so that zero blocks inside
 * data become write-zeroes (or nothing, on a target known to read as
 * zeroes).  Several requests run at once, each read and then written by
 * its own worker thread, so reads and writes overlap; the NBD driver
 * spreads them over its connections.  A source that can map its bytes
 * (a raw image on a local file: bdrv_map_read) is not read into a buffer
 * at all: its page cache is checked for zeroes and written from.
 *
 * With a base, the target already holds the base's contents and only the
 * ranges where the source differs are written: when the base is in the
 * source's backing chain, block status says which without reading;
 * otherwise both are read and compared block by block.  With verify, both
 * sides are hashed chunk by chunk (XXH3) after the copy.
 *
 * Nothing claims more than was done: the target is flushed before
 * copy_run reports COPY_DONE, and a failure names the range that failed.
 * What becomes of a partly written target is the caller's decision
 * (blkmig copy writes new files under a temporary name). */
#ifndef COPY_COPY_H
#define COPY_COPY_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"

/* Defaults and limits of CopyParams. */
#define COPY_DEFAULT_REQUESTS 16
/* What a caller gives between two local files: there every byte is
 * copied by a CPU (page cache to buffer to page cache), and more workers
 * than a small host's cores only contend (for the CPUs, and for the
 * target's inode lock, which each buffered write takes); two overlap one
 * worker's read with the other's write.  Measured on 2 cores, 4 GiB of
 * data: 16 workers 2.64 s, 2 workers 2.31 s, 1 worker 2.67 s. */
#define COPY_DEFAULT_LOCAL_REQUESTS 2
/* What a caller gives from an NBD server into a local file: the server
 * reads ahead on its own threads, and the local writes are CPU copies as
 * above.  nbdkit's file plugin into a new file, 2 cores, 4 GiB of data,
 * pairs of runs: 16 requests 3.26/3.41 s, 8 3.01/3.20 s, 4 3.43/3.53 s. */
#define COPY_DEFAULT_NBD_SOURCE_REQUESTS 8
#define COPY_MAX_REQUESTS 64
#define COPY_DEFAULT_REQUEST_SIZE (1u << 20)
/* What a caller gives for writes to an NBD server.  qemu-nbd 7.2 spends
 * far more CPU per byte on writes above 256 KiB (--cache=writeback, 4 GiB
 * of data: its CPU time 19.1 s with 1 MiB writes, 8.3 s with 256 KiB;
 * the copy 14.7 s against 7.7 s), and on a small host that CPU is the
 * limit.  nbdcopy writes 256 KiB too. */
#define COPY_DEFAULT_NBD_WRITE_SIZE (256u << 10)
#define COPY_MIN_REQUEST_SIZE (4u << 10)
#define COPY_MAX_REQUEST_SIZE (32u << 20)
/* Requests x request size: the copy's buffers (twice that with a base or
 * verify) stay under this. */
#define COPY_MAX_BUFFER_BYTES (1ull << 30)
/* Blocks of this size are checked for zeroes (and compared with a base). */
#define COPY_ZERO_GRAIN 4096

typedef struct CopySide CopySide;

/* A side on drive BS (borrowed: close it after copy_side_free). */
CopySide *copy_side_drive(BlockDriverState *bs);
/* A side on the byte stream FD (borrowed): a source is read front to back
 * and must hold SIZE bytes, no fewer and no more; a target is written
 * front to back, zeroes included, except that a regular file left empty
 * past its current offset gets holes instead (lseek) and its size set
 * at the end.  NAME ("stdin") is for messages. */
CopySide *copy_side_stream(int fd, uint64_t size, bool is_target, const char *name);
void copy_side_free(CopySide *side);
uint64_t copy_side_size(CopySide *side);

typedef struct CopyStats {
    uint64_t size;          /* bytes to copy: the source's size */
    uint64_t work;          /* size, twice with verify */
    uint64_t done;          /* of work: copied, skipped or verified */
    uint64_t read;          /* bytes read from the source (and the base) */
    uint64_t written;       /* bytes written to the target as data */
    uint64_t zeroed;        /* bytes the target got as write-zeroes */
    uint64_t skipped;       /* bytes left alone: zero on a zero target, or
                             * the same as the base */
    uint64_t verified;      /* bytes found equal by verify */
} CopyStats;

/* Called about every 100 ms, and once at the end, on the thread running
 * copy_run; returning false cancels the copy. */
typedef bool (*CopyProgressFn)(const CopyStats *stats, void *opaque);

typedef struct CopyParams {
    unsigned requests;          /* in flight; 0: COPY_DEFAULT_REQUESTS */
    uint64_t request_size;      /* multiple of 4 KiB; 0: the default */
    /* The target reads as zeroes already (a new image, a pre-zeroed
     * volume): zero ranges of the source cost nothing. */
    bool target_is_zero;
    /* The target holds BASE's contents: write only where the source
     * differs from it.  A drive side; NULL without. */
    CopySide *base;
    bool verify;                /* hash both sides after the copy */
    /* Flush the target after every that many bytes of data (0: at the
     * end only): a server that caches writes (qemu-nbd, writeback) then
     * writes them to its disk while the copy goes on, not all at the end. */
    uint64_t flush_interval;
    CopyProgressFn progress;    /* may be NULL */
    void *opaque;
} CopyParams;

typedef enum CopyOutcome {
    COPY_DONE,                  /* every byte is on the target, flushed */
    COPY_FAILED,                /* *errp names the range and the cause */
    COPY_CANCELLED,             /* the progress callback said stop */
} CopyOutcome;

/* Copy SRC to DST (whose size must be at least SRC's) with P (NULL: the
 * defaults); blocks until done.  *STATS (may be NULL) gets the final
 * figures.  Parameters out of range fail at once, touching nothing and
 * leaving *STATS alone. */
CopyOutcome copy_run(CopySide *src, CopySide *dst, const CopyParams *p, CopyStats *stats,
                     GError **errp);

#endif
