/* The block status of a read-only export, remembered.  One
 * NBD_CMD_BLOCK_STATUS over a long range returns every extent in it for
 * little more than the cost of one, and a stream job asks for every run
 * of its template in turn: answering those from here saves a round trip
 * per run (over a loaded machine's loopback, most of the planning time).
 * Only exports the server marks read-only are remembered: nothing this
 * client does changes them, and a template behind a backing file must not
 * change under its users anyway.  The runs cover one range without gaps,
 * adjacent runs differ; a question outside the range is a miss. */
#include "nbd-int.h"

/* Bound on the runs kept (a reply's extents beyond it are dropped). */
#define MAX_RUNS 65536

void nbdc_cache_init(NbdStatusCache *c)
{
    g_mutex_init(&c->lock);
    c->runs = g_array_new(FALSE, FALSE, sizeof(NbdStatusRun));
}

void nbdc_cache_clear(NbdStatusCache *c)
{
    g_array_unref(c->runs);
    g_mutex_clear(&c->lock);
}

/* Index of the run holding OFF, or -1 (lock held). */
static gint find_run(NbdStatusCache *c, uint64_t off)
{
    gint lo = 0, hi = (gint)c->runs->len - 1;

    while (lo <= hi) {
        gint mid = (lo + hi) / 2;
        const NbdStatusRun *r = &g_array_index(c->runs, NbdStatusRun, mid);
        if (off < r->off) {
            hi = mid - 1;
        } else if (off >= r->off + r->len) {
            lo = mid + 1;
        } else {
            return mid;
        }
    }
    return -1;
}

bool nbdc_cache_lookup(NbdStatusCache *c, uint64_t off, uint64_t len, uint64_t *pnum,
                       BdrvStatus *status)
{
    g_mutex_lock(&c->lock);
    gint i = find_run(c, off);
    if (i >= 0) {
        const NbdStatusRun *r = &g_array_index(c->runs, NbdStatusRun, i);
        *pnum = MIN(len, r->off + r->len - off);
        *status = r->status;
    }
    g_mutex_unlock(&c->lock);
    return i >= 0;
}

void nbdc_cache_add(GArray *runs, uint64_t off, uint64_t len, BdrvStatus status)
{
    NbdStatusRun *last = runs->len ? &g_array_index(runs, NbdStatusRun, runs->len - 1) : NULL;

    if (len == 0 || runs->len >= MAX_RUNS) {
        return;
    }
    if (last && last->status == status && last->off + last->len == off) {
        last->len += len;
        return;
    }
    NbdStatusRun r = { off, len, status };
    g_array_append_val(runs, r);
}

void nbdc_cache_store(NbdStatusCache *c, GArray *runs)
{
    g_mutex_lock(&c->lock);
    g_array_unref(c->runs);
    c->runs = runs;
    g_mutex_unlock(&c->lock);
}
