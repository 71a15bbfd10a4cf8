/* Block status of an NBD export: NBD_CMD_BLOCK_STATUS for the contexts
 * the server negotiated, asking for one extent, or, for a read-only
 * export, for every extent of a long range, which nbd-status-cache.c keeps
 * to answer the next questions.  base:allocation decides DATA or ZERO:
 * only the zero bit makes a run ZERO, since NBD says a hole without it
 * may read as anything.  qemu:allocation-depth (qemu-nbd -A) adds what
 * no layer of a remote chain allocates (depth 0): this node answers
 * BACKING there, which the block layer, finding no backing node below,
 * reports as UNALLOCATED. */
#include "nbd-int.h"

#include <errno.h>
#include <string.h>

/* The first run of one context's reply. */
typedef struct StatusRun {
    bool seen;
    uint64_t len;
    BdrvStatus status;
} StatusRun;

typedef struct StatusReply {
    uint64_t want;              /* the request's length */
    bool remember;              /* keep every extent (read-only export) */
    StatusRun alloc, depth;
    GArray *alloc_all, *depth_all;  /* remember: (length, flags) pairs */
} StatusReply;

static BdrvStatus alloc_status(uint32_t flags)
{
    return flags & LIBNBD_STATE_ZERO ? BDRV_STATUS_ZERO : BDRV_STATUS_DATA;
}

static BdrvStatus depth_status(uint32_t depth)
{
    return depth == 0 ? BDRV_STATUS_BACKING : BDRV_STATUS_DATA;
}

/* Merge the leading ENTRIES (length, flags pairs) that map to the same
 * status, up to WANT bytes. */
static void first_run(StatusRun *run, const uint32_t *entries, size_t nr, uint64_t want,
                      BdrvStatus (*map)(uint32_t))
{
    run->seen = true;
    run->len = 0;
    if (nr < 2) {
        return;
    }
    run->status = map(entries[1]);
    for (size_t i = 0; i + 1 < nr && run->len < want; i += 2) {
        if (map(entries[i + 1]) != run->status) {
            break;
        }
        run->len += entries[i];
    }
    run->len = MIN(run->len, want);
}

static void keep_entries(GArray **all, const uint32_t *entries, size_t nr)
{
    if (!*all) {
        *all = g_array_new(FALSE, FALSE, sizeof(uint32_t));
    }
    g_array_append_vals(*all, entries, (guint)(nr & ~(size_t)1));
}

static int extent_cb(void *opaque, const char *context, uint64_t off, uint32_t *entries,
                     size_t nr, int *error)
{
    StatusReply *r = opaque;
    bool alloc = strcmp(context, LIBNBD_CONTEXT_BASE_ALLOCATION) == 0;

    if (!alloc && strcmp(context, NBD_CTX_DEPTH) != 0) {
        return 0;
    }
    if (r->remember) {
        keep_entries(alloc ? &r->alloc_all : &r->depth_all, entries, nr);
    } else if (alloc) {
        first_run(&r->alloc, entries, nr, r->want, alloc_status);
    } else {
        first_run(&r->depth, entries, nr, r->want, depth_status);
    }
    return 0;
}

/* One extent (REQ_ONE: the server stops there; a full list of a long
 * range costs it far more), or every extent (to be remembered). */
static int64_t submit_status(struct nbd_handle *h, uint64_t off, uint64_t len, void *buf,
                             nbd_completion_callback cb, void *opaque)
{
    StatusReply *r = opaque;
    nbd_extent_callback ecb = { .callback = extent_cb, .user_data = opaque };
    return nbd_aio_block_status(h, len, off, ecb, cb,
                                r->remember ? 0 : LIBNBD_CMD_FLAG_REQ_ONE);
}

/* base:allocation's run, shortened and marked BACKING by the depth's. */
static int combine(const StatusReply *r, uint64_t *pnum, BdrvStatus *status)
{
    if (!r->alloc.seen || r->alloc.len == 0) {
        return -EIO;            /* the server left out the context it agreed to */
    }
    *pnum = r->alloc.len;
    *status = r->alloc.status;
    if (r->depth.seen && r->depth.len > 0) {
        *pnum = MIN(*pnum, r->depth.len);
        if (r->depth.status == BDRV_STATUS_BACKING) {
            *status = BDRV_STATUS_BACKING;
        }
    }
    return 0;
}

/* ---- Every extent of a read-only export, remembered ---- */

/* The length of the extent after *I of ENTRIES, or 0 past the end. */
static uint64_t next_extent(const GArray *entries, guint *i)
{
    return ++*i < entries->len / 2 ? g_array_index(entries, uint32_t, 2 * *i) : 0;
}

/* The runs of R's extents from OFF: base:allocation's status, BACKING
 * where qemu:allocation-depth says no layer has the data. */
static GArray *all_runs(const StatusReply *r, uint64_t off)
{
    GArray *runs = g_array_new(FALSE, FALSE, sizeof(NbdStatusRun));
    const GArray *a = r->alloc_all, *d = r->depth_all;
    guint ia = 0, id = 0;
    uint64_t la = a->len >= 2 ? g_array_index(a, uint32_t, 0) : 0;
    uint64_t ld = !d ? UINT64_MAX : d->len >= 2 ? g_array_index(d, uint32_t, 0) : 0;

    while (la > 0 && ld > 0) {
        uint64_t n = MIN(la, ld);
        bool unallocated = d && g_array_index(d, uint32_t, 2 * id + 1) == 0;
        BdrvStatus st = alloc_status(g_array_index(a, uint32_t, 2 * ia + 1));
        nbdc_cache_add(runs, off, n, unallocated ? BDRV_STATUS_BACKING : st);
        off += n;
        la = la > n ? la - n : next_extent(a, &ia);
        ld = !d ? UINT64_MAX : ld > n ? ld - n : next_extent(d, &id);
    }
    return runs;
}

static void free_lists(StatusReply *r)
{
    if (r->alloc_all) {
        g_array_unref(r->alloc_all);
    }
    if (r->depth_all) {
        g_array_unref(r->depth_all);
    }
}

static int remembered_status(NbdClient *c, uint64_t off, uint64_t len, uint64_t *pnum,
                             BdrvStatus *status)
{
    if (nbdc_cache_lookup(&c->cache, off, len, pnum, status)) {
        return 0;
    }
    StatusReply r = { .want = MIN(c->exp.size - off, (uint64_t)NBD_MAX_EFFECT),
                      .remember = true };
    int ret = nbdc_request(c, off, r.want, NULL, r.want, submit_status, &r);
    if (ret == 0 && r.alloc_all) {
        nbdc_cache_store(&c->cache, all_runs(&r, off));
    }
    free_lists(&r);
    if (ret == 0 && !nbdc_cache_lookup(&c->cache, off, len, pnum, status)) {
        ret = -EIO;             /* the server left out the context it agreed to */
    }
    return ret;
}

int nbdc_status(NbdClient *c, uint64_t off, uint64_t len, uint64_t *pnum, BdrvStatus *status)
{
    StatusReply r = { .want = MIN(len, (uint64_t)NBD_MAX_EFFECT) };

    if (!c->exp.has_allocation) {
        *pnum = len;
        *status = BDRV_STATUS_DATA;
        return 0;
    }
    if (c->exp.read_only) {
        return remembered_status(c, off, len, pnum, status);
    }
    int ret = nbdc_request(c, off, r.want, NULL, r.want, submit_status, &r);
    return ret < 0 ? ret : combine(&r, pnum, status);
}
