/* The NBD driver's block-status cache: a server answers a status request
 * with many runs, and a walk (a copy of a sparse export) would otherwise
 * ask again for each one, a round trip per run.  The runs of the last
 * reply are kept and answer later questions inside them.  Every write,
 * zero or trim this node sends drops them, before it goes and after it
 * is answered; a reply that raced with one is not kept (generation). */
#include "nbd-int.h"

void nbdc_cache_init(NbdStatusCache *sc)
{
    g_mutex_init(&sc->lock);
    sc->runs = g_array_new(FALSE, FALSE, sizeof(NbdStatusRun));
}

void nbdc_cache_destroy(NbdStatusCache *sc)
{
    g_array_unref(sc->runs);
    g_mutex_clear(&sc->lock);
}

/* The run holding OFF: binary search over the runs' ends. */
static const NbdStatusRun *find_run(const NbdStatusCache *sc, uint64_t off)
{
    guint lo = 0, hi = sc->runs->len;

    if (off < sc->start) {
        return NULL;
    }
    while (lo < hi) {
        guint mid = (lo + hi) / 2;
        if (g_array_index(sc->runs, NbdStatusRun, mid).end <= off) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo < sc->runs->len ? &g_array_index(sc->runs, NbdStatusRun, lo) : NULL;
}

bool nbdc_cache_lookup(NbdStatusCache *sc, uint64_t off, uint64_t len, uint64_t *pnum,
                       BdrvStatus *status, uint64_t *gen)
{
    g_mutex_lock(&sc->lock);
    const NbdStatusRun *r = find_run(sc, off);
    if (r) {
        *pnum = MIN(r->end - off, len);
        *status = r->status;
    }
    *gen = sc->gen;
    g_mutex_unlock(&sc->lock);
    return r != NULL;
}

void nbdc_cache_store(NbdStatusCache *sc, uint64_t gen, uint64_t start, GArray *runs)
{
    g_mutex_lock(&sc->lock);
    if (sc->gen == gen) {
        g_array_set_size(sc->runs, 0);
        g_array_append_vals(sc->runs, runs->data, runs->len);
        sc->start = start;
    }
    g_mutex_unlock(&sc->lock);
}

void nbdc_cache_forget(NbdStatusCache *sc)
{
    g_mutex_lock(&sc->lock);
    g_array_set_size(sc->runs, 0);
    sc->gen++;
    g_mutex_unlock(&sc->lock);
}
