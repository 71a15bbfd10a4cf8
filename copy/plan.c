/* The copy's plan: the block status of the source (and of the base or the
 * target, walked in step) turned into work items, handed out in offset
 * order under one lock.  Holes and zero runs become zero items, or
 * nothing at all where the target reads as zeroes already (all of it,
 * or what the target's own block status says, asked at those runs only:
 * a sparse NBD export or -n file gets no write-zeroes over its holes);
 * ranges that need no work (the same as the base, zero on both sides)
 * are only counted.  A side without block status (a stream) is one data run. */
#include "copy-int.h"

/* The longest zero item: one write-zeroes call, and a progress step. */
#define PLAN_MAX_ZERO_ITEM (1ull << 30)

static void cursor_init(PlanCursor *c, CopySide *side, uint64_t len, BdrvWalkMode mode)
{
    *c = (PlanCursor){ .has_status = side && side->bs, .end = len };
    if (c->has_status) {
        bdrv_walk_init(&c->walk, side->bs, 0, len, mode, BDRV_WALK_ERROR_AS_DATA);
    }
}

/* The run at the cursor and how much of it is left.  A failing status
 * call made the rest one DATA run (BDRV_WALK_ERROR_AS_DATA): data is never
 * wrong, the read then says what is broken. */
static uint64_t cursor_run(PlanCursor *c, uint64_t pos, BdrvExtent *e)
{
    if (c->left == 0) {
        if (!c->has_status || bdrv_walk_next(&c->walk, &c->ext) <= 0) {
            c->ext = (BdrvExtent){ .off = pos, .len = c->end - pos,
                                   .status = BDRV_STATUS_DATA, .depth = 1 };
        }
        c->left = c->ext.len;
    }
    *e = c->ext;
    return c->left;
}

/* The run of lazy cursor C at POS (at or past where it is): its walk
 * goes forward over what lies between, and the length left from POS is
 * returned. */
static uint64_t cursor_seek(PlanCursor *c, uint64_t pos, BdrvExtent *e)
{
    for (;;) {
        uint64_t n = cursor_run(c, c->at, e);
        if (c->at + n > pos) {
            c->left -= pos - c->at;
            n -= pos - c->at;
            c->at = pos;
            return n;
        }
        c->at += n;
        c->left = 0;
    }
}

void plan_init(CopyPlan *p, CopyPlanMode mode, CopySide *a, CopySide *b, uint64_t size,
               uint64_t max_item, bool target_zero, int base_depth)
{
    *p = (CopyPlan){ .mode = mode, .end = size, .max_item = max_item,
                     .target_zero = target_zero, .base_depth = base_depth };
    g_mutex_init(&p->lock);
    cursor_init(&p->a, a, size, mode == PLAN_DELTA ? BDRV_WALK_DEPTH : BDRV_WALK_GUEST);
    p->pair_end = b && mode != PLAN_COPY ? MIN(size, b->size) : size;
    if (mode == PLAN_COMPARE || mode == PLAN_VERIFY) {
        cursor_init(&p->b, b, p->pair_end, BDRV_WALK_GUEST);
    }
    if (mode == PLAN_COPY && !target_zero) {
        cursor_init(&p->target, b, size, BDRV_WALK_GUEST);
    }
}

void plan_destroy(CopyPlan *p)
{
    g_mutex_clear(&p->lock);
}

/* Hand out N bytes of the source cursor (and of the second one). */
static void take(CopyPlan *p, uint64_t n, bool both)
{
    p->a.left -= n;
    if (both) {
        p->b.left -= n;
    }
    p->pos += n;
}

/* In a delta, a run the base (or a layer below it) decides, or that no
 * layer allocates, reads the same as the base: the target has it. */
static bool same_as_base(const CopyPlan *p, const BdrvExtent *e)
{
    return p->mode == PLAN_DELTA && p->pos < p->pair_end &&
           (e->depth == 0 || e->depth >= p->base_depth);
}

/* At a zero run of the source at p->pos, N long: does the target read as
 * zeroes there already?  N is cut at the end of the target's run. */
static bool target_reads_zero(CopyPlan *p, uint64_t *n)
{
    BdrvExtent t;

    if (p->target_zero) {
        return true;
    }
    if (!p->target.has_status) {
        return false;
    }
    *n = MIN(*n, cursor_seek(&p->target, p->pos, &t));
    return t.status != BDRV_STATUS_DATA;
}

/* Copy and delta items, and what follows the base's end in a compare. */
static bool next_copy(CopyPlan *p, CopyItem *it, uint64_t *skipped)
{
    while (p->pos < p->end) {
        BdrvExtent e;
        uint64_t n = cursor_run(&p->a, p->pos, &e);
        bool data = e.status == BDRV_STATUS_DATA;

        if (p->mode == PLAN_DELTA && p->pos < p->pair_end) {
            n = MIN(n, p->pair_end - p->pos);
        }
        if (same_as_base(p, &e) || (!data && target_reads_zero(p, &n))) {
            take(p, n, false);
            *skipped += n;
            continue;
        }
        n = MIN(n, data ? p->max_item : PLAN_MAX_ZERO_ITEM);
        *it = (CopyItem){ .kind = data ? ITEM_COPY : ITEM_ZERO, .off = p->pos, .len = n };
        take(p, n, false);
        return true;
    }
    return false;
}

/* Compare and verify items: both sides walked in step; where both read
 * as zeroes there is nothing to do. */
static bool next_pair(CopyPlan *p, CopyItem *it, uint64_t *skipped)
{
    while (p->pos < p->pair_end) {
        BdrvExtent ea, eb;
        uint64_t n = MIN(cursor_run(&p->a, p->pos, &ea), cursor_run(&p->b, p->pos, &eb));
        bool a_zero = ea.status != BDRV_STATUS_DATA;
        bool b_zero = eb.status != BDRV_STATUS_DATA;

        if (a_zero && b_zero) {
            take(p, n, true);
            *skipped += n;
            continue;
        }
        n = MIN(n, p->max_item);
        *it = (CopyItem){ .kind = p->mode == PLAN_VERIFY ? ITEM_VERIFY : ITEM_COMPARE,
                          .off = p->pos, .len = n, .a_zero = a_zero, .b_zero = b_zero };
        take(p, n, true);
        return true;
    }
    /* Past the base's end the target's contents are unknown: a plain
     * copy, zeroes included.  (A verify never gets here: the target is
     * at least as long as the source.) */
    return next_copy(p, it, skipped);
}

bool plan_next(CopyPlan *p, CopyItem *it, uint64_t *skipped)
{
    bool ok = false;

    g_mutex_lock(&p->lock);
    if (!p->stopped) {
        bool pair = p->mode == PLAN_COMPARE || p->mode == PLAN_VERIFY;
        ok = pair ? next_pair(p, it, skipped) : next_copy(p, it, skipped);
    }
    g_mutex_unlock(&p->lock);
    return ok;
}

void plan_stop(CopyPlan *p)
{
    g_mutex_lock(&p->lock);
    p->stopped = true;
    g_mutex_unlock(&p->lock);
}
