/* Block status of an NBD export: one NBD_CMD_BLOCK_STATUS for the
 * contexts the server negotiated.  base:allocation decides DATA or ZERO:
 * only the zero bit makes a run ZERO, since NBD says a hole without it
 * may read as anything.  qemu:allocation-depth (qemu-nbd -A) adds what
 * no layer of a remote chain allocates (depth 0): this node answers
 * BACKING there, which the block layer, finding no backing node below,
 * reports as UNALLOCATED.  A reply's runs are kept (nbd-status-cache.c),
 * so a walk asks once per reply, not once per run. */
#include "nbd-int.h"

#include <errno.h>
#include <string.h>

/* Runs of one reply kept for the cache: plenty for a walk, bounded
 * whatever the server sends. */
#define STATUS_MAX_RUNS 4096

/* One context's runs. */
typedef struct ContextRuns {
    bool seen;
    GArray *runs;               /* NbdStatusRun */
} ContextRuns;

typedef struct StatusReply {
    uint64_t off, want;         /* the request */
    ContextRuns alloc, depth;
} StatusReply;

static BdrvStatus alloc_status(uint32_t flags)
{
    return flags & LIBNBD_STATE_ZERO ? BDRV_STATUS_ZERO : BDRV_STATUS_DATA;
}

static BdrvStatus depth_status(uint32_t depth)
{
    return depth == 0 ? BDRV_STATUS_BACKING : BDRV_STATUS_DATA;
}

/* Append [.., END) with STATUS, merged into the last run when alike. */
static void add_run(GArray *runs, uint64_t end, BdrvStatus status)
{
    NbdStatusRun *last = runs->len ? &g_array_index(runs, NbdStatusRun, runs->len - 1) : NULL;

    if (last && last->status == status) {
        last->end = end;
    } else {
        NbdStatusRun r = { end, status };
        g_array_append_val(runs, r);
    }
}

/* The ENTRIES (length, flags pairs) from the request's offset, clipped to
 * what was asked; a zero length (a broken server) ends them. */
static void collect(ContextRuns *cr, const StatusReply *r, const uint32_t *entries, size_t nr,
                    BdrvStatus (*map)(uint32_t))
{
    uint64_t pos = r->off, end = r->off + r->want;

    cr->seen = true;
    g_array_set_size(cr->runs, 0);
    for (size_t i = 0; i + 1 < nr && pos < end && entries[i]; i += 2) {
        if (cr->runs->len == STATUS_MAX_RUNS) {
            break;
        }
        pos = MIN(pos + entries[i], end);
        add_run(cr->runs, pos, map(entries[i + 1]));
    }
}

static int extent_cb(void *opaque, const char *context, uint64_t off, uint32_t *entries,
                     size_t nr, int *error)
{
    StatusReply *r = opaque;

    if (strcmp(context, LIBNBD_CONTEXT_BASE_ALLOCATION) == 0) {
        collect(&r->alloc, r, entries, nr, alloc_status);
    } else if (strcmp(context, NBD_CTX_DEPTH) == 0) {
        collect(&r->depth, r, entries, nr, depth_status);
    }
    return 0;
}

static int64_t submit_status(struct nbd_handle *h, uint64_t off, uint64_t len, void *buf,
                             nbd_completion_callback cb, void *opaque)
{
    nbd_extent_callback ecb = { .callback = extent_cb, .user_data = opaque };
    return nbd_aio_block_status(h, len, off, ecb, cb, 0);
}

static NbdStatusRun run_at(const ContextRuns *cr, guint i)
{
    return g_array_index(cr->runs, NbdStatusRun, i);
}

/* base:allocation's runs, cut where the depth's runs change and marked
 * BACKING where no layer allocates; into OUT. */
static int combine(const StatusReply *r, GArray *out)
{
    guint i = 0, j = 0;

    if (!r->alloc.seen || r->alloc.runs->len == 0) {
        return -EIO;            /* the server left out the context it agreed to */
    }
    if (!r->depth.seen || r->depth.runs->len == 0) {
        g_array_append_vals(out, r->alloc.runs->data, r->alloc.runs->len);
        return 0;
    }
    while (i < r->alloc.runs->len && j < r->depth.runs->len) {
        NbdStatusRun a = run_at(&r->alloc, i), d = run_at(&r->depth, j);
        uint64_t end = MIN(a.end, d.end);
        add_run(out, end, d.status == BDRV_STATUS_BACKING ? BDRV_STATUS_BACKING : a.status);
        i += a.end == end;
        j += d.end == end;
    }
    return 0;
}

/* Ask the server about [off, off+len); all the runs into RUNS. */
static int ask_server(NbdClient *c, uint64_t off, uint64_t len, GArray *runs)
{
    StatusReply r = { .off = off, .want = MIN(len, (uint64_t)NBD_MAX_EFFECT),
                      .alloc.runs = g_array_new(FALSE, FALSE, sizeof(NbdStatusRun)),
                      .depth.runs = g_array_new(FALSE, FALSE, sizeof(NbdStatusRun)) };
    int ret = nbdc_request(c, off, r.want, NULL, r.want, submit_status, &r);

    if (ret == 0) {
        ret = combine(&r, runs);
    }
    g_array_unref(r.alloc.runs);
    g_array_unref(r.depth.runs);
    return ret;
}

int nbdc_status(NbdClient *c, uint64_t off, uint64_t len, uint64_t *pnum, BdrvStatus *status)
{
    uint64_t gen;

    if (!c->exp.has_allocation) {
        *pnum = len;
        *status = BDRV_STATUS_DATA;
        return 0;
    }
    if (nbdc_cache_lookup(&c->status_cache, off, len, pnum, status, &gen)) {
        return 0;
    }
    GArray *runs = g_array_new(FALSE, FALSE, sizeof(NbdStatusRun));
    int ret = ask_server(c, off, len, runs);
    if (ret == 0) {
        NbdStatusRun first = g_array_index(runs, NbdStatusRun, 0);
        *pnum = MIN(first.end - off, len);
        *status = first.status;
        nbdc_cache_store(&c->status_cache, gen, off, runs);
    }
    g_array_unref(runs);
    return ret;
}
