/* qcow2 requests in flight: guest clusters being allocated (so two writers
 * never allocate one cluster, and zeroing waits for a write to finish),
 * host ranges being read or written outside the lock (slots), and host
 * clusters whose last reference went away.  Such a cluster goes back to
 * the allocator (refcount decremented, host range punched) only when the
 * L2 change that dropped it is durable and no slot overlaps it, so no late
 * transfer lands in a cluster reused for other data and a crash never
 * leaves an L2 entry pointing at a free cluster. */
#include <errno.h>

#include "qcow2.h"

/* ---- Deferred frees ---- */

void qcow2_free_later(Qcow2State *s, uint64_t offset, uint64_t bytes)
{
    Qcow2Free f = { offset, bytes, ++s->unlink_seq };
    g_array_append_val(s->frees, f);
}

void qcow2_free_entry_later(Qcow2State *s, uint64_t entry)
{
    uint64_t off, len;

    switch (qcow2_entry_type(s, entry)) {
    case QCOW2_CLUSTER_NORMAL:
    case QCOW2_CLUSTER_ZERO_ALLOC:
        qcow2_free_later(s, entry & QCOW2_OFFSET_MASK, s->cluster_size);
        break;
    case QCOW2_CLUSTER_COMPRESSED:
        qcow2_compressed_range(s, entry, &off, &len);
        qcow2_free_later(s, off, len);
        break;
    default:
        break;
    }
}

static bool slots_overlap(Qcow2State *s, uint64_t off, uint64_t bytes)
{
    for (unsigned i = 0; i < QCOW2_SLOTS; i++) {
        uint64_t end = __atomic_load_n(&s->slots[i].end, __ATOMIC_ACQUIRE);
        if (end && s->slots[i].start < off + bytes && off < end) {
            return true;
        }
    }
    return false;
}

/* Clusters of [off, off+bytes) whose refcount reached zero lose their host
 * space too, so a freed cluster costs nothing on the file system; a table
 * there (an L2 table a snapshot no longer shares) stops being metadata. */
static void punch_unused(Qcow2State *s, uint64_t off, uint64_t bytes)
{
    uint64_t cs = s->cluster_size;

    for (uint64_t c = off & ~(cs - 1); c < off + bytes; c += cs) {
        uint64_t rc;
        if (qcow2_get_refcount(s, c >> s->cluster_bits, &rc) == 0 && rc == 0) {
            bdrv_discard(s->file, c, cs);
            g_hash_table_remove(s->meta, GSIZE_TO_POINTER((gsize)c));
        }
    }
}

static bool releasable(Qcow2State *s, const Qcow2Free *f)
{
    return f->seq <= s->durable_seq && !slots_overlap(s, f->offset, f->bytes);
}

int qcow2_release_frees(Qcow2State *s)
{
    guint kept = 0;
    int ret = 0;

    for (guint i = 0; i < s->frees->len; i++) {
        Qcow2Free f = g_array_index(s->frees, Qcow2Free, i);
        if (ret < 0 || !releasable(s, &f)) {
            g_array_index(s->frees, Qcow2Free, kept++) = f;
            continue;
        }
        ret = qcow2_update_refcount(s, f.offset, f.bytes, -1);
        if (ret == 0) {
            punch_unused(s, f.offset, f.bytes);
        }
    }
    g_array_set_size(s->frees, kept);
    return ret;
}

/* ---- Slots ---- */

static int find_slot(Qcow2State *s)
{
    for (unsigned n = 0; n < QCOW2_SLOTS; n++) {
        unsigned i = (s->slots_hint + n) % QCOW2_SLOTS;
        if (!__atomic_load_n(&s->slots[i].end, __ATOMIC_ACQUIRE)) {
            s->slots_hint = i + 1;
            return (int)i;
        }
    }
    return -1;
}

int qcow2_slot_take(Qcow2State *s, uint64_t start, uint64_t end)
{
    int i;

    while ((i = find_slot(s)) < 0) {
        /* QCOW2_SLOTS transfers at once: wait for one without a lost
         * wake-up (releases do not take the lock). */
        g_mutex_unlock(&s->lock);
        g_usleep(100);
        g_mutex_lock(&s->lock);
    }
    s->slots[i].start = start;
    __atomic_store_n(&s->slots[i].end, end, __ATOMIC_RELEASE);
    return i;
}

void qcow2_slot_release(Qcow2State *s, int slot)
{
    __atomic_store_n(&s->slots[slot].end, 0, __ATOMIC_RELEASE);
}

/* ---- Allocations in flight ---- */

static bool allocs_overlap(Qcow2State *s, uint64_t first, uint64_t end)
{
    for (guint i = 0; i < s->allocs->len; i++) {
        Qcow2Alloc *a = s->allocs->pdata[i];
        if (a->first < end && first < a->end) {
            return true;
        }
    }
    return false;
}

bool qcow2_wait_allocs(Qcow2State *s, uint64_t off, uint64_t len)
{
    uint64_t first = off >> s->cluster_bits;
    uint64_t end = (off + len + s->cluster_size - 1) >> s->cluster_bits;
    bool waited = false;

    while (allocs_overlap(s, first, end)) {
        g_cond_wait(&s->cond, &s->lock);
        waited = true;
    }
    return waited;
}

void qcow2_alloc_begin(Qcow2State *s, Qcow2Alloc *a, uint64_t off, uint64_t len)
{
    a->first = off >> s->cluster_bits;
    a->end = (off + len + s->cluster_size - 1) >> s->cluster_bits;
    g_ptr_array_add(s->allocs, a);
}

void qcow2_alloc_end(Qcow2State *s, Qcow2Alloc *a)
{
    g_ptr_array_remove_fast(s->allocs, a);
    g_cond_broadcast(&s->cond);
}
