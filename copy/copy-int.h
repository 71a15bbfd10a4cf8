/* Private to copy/: the sides' interface, the plan that hands out work in
 * offset order, and the copy's shared state.
 *
 *   copy.c          copy_run: checks, the passes, workers, progress
 *   plan.c          the plan: block status walks turned into work items
 *   worker.c        one worker: read, split at 4 KiB, write; compare; verify
 *   base.c          where the base sits in the source's backing chain
 *   side-drive.c    a side on a drive of the block layer
 *   side-stream.c   a side on a byte stream (pipe, stdin, stdout)
 *   map-guard.c     a SIGBUS while scanning a mapped source: a read error
 *
 * Threads: copy_run's thread plans nothing itself; it starts the workers,
 * reports progress and waits.  Each worker takes the next item from the
 * plan (under the plan's lock, so items come out in offset order, which
 * stream sides rely on), does it, and counts it done.  The first failure
 * stops the plan and wakes stream sides that wait for their turn. */
#ifndef COPY_COPY_INT_H
#define COPY_COPY_INT_H

#include <gio/gio.h>

#include "copy/copy.h"

/* ---- Sides ---- */

typedef struct CopySideOps {
    /* 0, or a negative errno with *errp saying why (without the offset:
     * the caller adds where). */
    int (*read)(CopySide *s, uint64_t off, void *buf, size_t len, GError **errp);
    /* The bytes at [off, off+len) without a copy (a mapped local file), or
     * NULL: read them.  NULL ops: the side never maps. */
    const void *(*map)(CopySide *s, uint64_t off, size_t len);
    void (*unmap)(CopySide *s, const void *p, size_t len);
    int (*write)(CopySide *s, uint64_t off, const void *buf, size_t len, GError **errp);
    /* Make [off, off+len) read as zeroes, deallocating where it can. */
    int (*zero)(CopySide *s, uint64_t off, uint64_t len, GError **errp);
    int (*flush)(CopySide *s, GError **errp);
    /* The copy stops: wake and fail whatever waits for its turn. */
    void (*abort)(CopySide *s);
    void (*free)(CopySide *s);
} CopySideOps;

struct CopySide {
    const CopySideOps *ops;
    BlockDriverState *bs;       /* drive sides: block status; NULL: a stream */
    uint64_t size;
};

/* ---- Work items and the plan ---- */

typedef enum CopyItemKind {
    ITEM_COPY,                  /* read the source, write data and zero runs */
    ITEM_ZERO,                  /* the source reads as zeroes here */
    ITEM_COMPARE,               /* write only the blocks that differ from the base */
    ITEM_VERIFY,                /* hash the source and the target */
} CopyItemKind;

typedef struct CopyItem {
    CopyItemKind kind;
    uint64_t off, len;
    /* COMPARE and VERIFY: the first / second side reads as zeroes here
     * (block status), so it need not be read. */
    bool a_zero, b_zero;
} CopyItem;

typedef enum CopyPlanMode {
    PLAN_COPY,                  /* the whole source */
    PLAN_DELTA,                 /* what layers above the base allocate */
    PLAN_COMPARE,               /* source against base, block by block */
    PLAN_VERIFY,                /* source against target */
} CopyPlanMode;

/* Where a walk over one side stands. */
typedef struct PlanCursor {
    bool has_status;            /* a drive: walk its block status */
    BdrvWalk walk;
    BdrvExtent ext;             /* the current run */
    uint64_t left;              /* bytes of it not handed out yet */
    uint64_t end;
    uint64_t at;                /* a lazy cursor (cursor_seek): where it is */
} PlanCursor;

typedef struct CopyPlan {
    GMutex lock;
    CopyPlanMode mode;
    uint64_t pos, end;
    uint64_t max_item;          /* longest data item: the request size */
    bool target_zero;           /* zero ranges need no item */
    int base_depth;             /* PLAN_DELTA: the base's depth in the chain */
    uint64_t pair_end;          /* the second cursor's end (the base's size) */
    PlanCursor a;               /* the source */
    PlanCursor b;               /* the base or the target */
    /* PLAN_COPY onto a drive not known to read as zeroes: its status,
     * asked only at the source's zero runs, so that where it reads as
     * zeroes already nothing is written. */
    PlanCursor target;
    bool stopped;
} CopyPlan;

/* Plan MODE over [0, SIZE) of A; B is the base (DELTA: only its size
 * matters; COMPARE) or the target (COPY, VERIFY). */
void plan_init(CopyPlan *p, CopyPlanMode mode, CopySide *a, CopySide *b, uint64_t size,
               uint64_t max_item, bool target_zero, int base_depth);
void plan_destroy(CopyPlan *p);
/* The next item: true with *IT filled, false when the plan is done or
 * stopped.  Ranges that need no work are added to *SKIPPED. */
bool plan_next(CopyPlan *p, CopyItem *it, uint64_t *skipped);
void plan_stop(CopyPlan *p);

/* ---- The copy ---- */

typedef struct Copy {
    CopySide *src, *dst, *base;
    unsigned requests;
    uint64_t request_size;
    bool target_zero;
    uint64_t flush_interval;
    CopyPlan plan;
    bool in_pass;               /* the plan is set up (changed by copy_run's
                                 * thread only, while no worker runs) */
    uint8_t *zeroes;            /* request_size zero bytes */
    uint64_t seed;              /* of the verify hashes */

    GMutex lock;                /* error, running; cond */
    GCond cond;                 /* a worker ended */
    unsigned running;           /* workers of the current pass */
    GError *error;              /* the first failure */
    gint stop;                  /* atomic: a failure or a cancel */
    gint flushing;              /* atomic: a flush-behind runs */
    uint64_t unflushed;         /* atomic: data written since the last one */

    /* Verify: ranges that differ (under lock), the lowest of them. */
    uint64_t mismatches, mismatch_bytes, mismatch_off, mismatch_len;

    /* Atomic counters (CopyStats' meaning). */
    uint64_t done, read, written, zeroed, skipped, verified;
} Copy;

/* copy.c: the first failure wins; stops the plan and the sides. */
void copy_fail(Copy *c, GError *err);
/* copy.c: stop for another reason (cancel). */
void copy_stop(Copy *c);
bool copy_stopped(Copy *c);
void copy_count(uint64_t *counter, uint64_t n);
/* copy.c: verify found [off, off+len) different. */
void copy_note_mismatch(Copy *c, uint64_t off, uint64_t len);

/* worker.c: the body of a worker thread (DATA is the Copy). */
gpointer copy_worker(gpointer data);

/* map-guard.c: buffer_zero_run over P, bytes of a mapped source at OFF:
 * *RUN and *ZERO as it gives them, or false when touching P raised
 * SIGBUS (the mapped file shrank or cannot be read). */
bool copy_mapped_zero_run(const uint8_t *p, size_t len, uint64_t off, size_t *run, bool *zero);

/* base.c: the depth (1 = the source itself) at which the source's chain
 * holds the image BASE is, or 0 when it does not. */
int copy_base_depth(CopySide *src, CopySide *base);

#endif
