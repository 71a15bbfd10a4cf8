/* qcow2 table cache: a bounded set of L2 tables or refcount blocks kept in
 * memory (as on disk, big-endian), looked up by host offset without a
 * system call, written back lazily.  Dirty tables reach the file only at a
 * flush or when evicted; an L2 cache first has the refcount blocks written
 * and synced (qcow2_refcounts_before_l2), the ordering rule of
 * qcow2-flush.c.  Everything here runs under s->lock. */
#include <errno.h>

#include "qcow2.h"

struct Qcow2Cache {
    Qcow2State *s;
    bool is_l2;
    unsigned n;
    Qcow2Table *tables;
    GHashTable *index;       /* host offset -> Qcow2Table * */
    uint64_t tick;
    unsigned ndirty;
};

/* Smallest write-back unit: a page, or the whole of a smaller table. */
#define WRITEBACK_ALIGN 4096u

Qcow2Cache *qcow2_cache_new(Qcow2State *s, unsigned ntables, bool is_l2)
{
    Qcow2Cache *c = g_new0(Qcow2Cache, 1);

    c->s = s;
    c->is_l2 = is_l2;
    c->n = MAX(ntables, 4u);
    c->tables = g_new0(Qcow2Table, c->n);
    for (unsigned i = 0; i < c->n; i++) {
        c->tables[i].owner = c;
    }
    c->index = g_hash_table_new(g_direct_hash, g_direct_equal);
    return c;
}

void qcow2_cache_free(Qcow2Cache *c)
{
    if (!c) {
        return;
    }
    for (unsigned i = 0; i < c->n; i++) {
        bdrv_buf_free(c->tables[i].data);
    }
    g_hash_table_destroy(c->index);
    g_free(c->tables);
    g_free(c);
}

static gpointer key(uint64_t offset)
{
    return GSIZE_TO_POINTER((gsize)offset);
}

static int write_table(Qcow2Cache *c, Qcow2Table *t)
{
    uint32_t cs = (uint32_t)c->s->cluster_size;
    uint32_t align = MIN(WRITEBACK_ALIGN, cs);
    uint32_t lo = t->dirty_lo / align * align;
    uint32_t hi = MIN((t->dirty_hi + align - 1) / align * align, cs);
    int ret = bdrv_pwrite(c->s->file, t->offset + lo, t->data + lo, hi - lo, 0);

    if (ret == 0) {
        t->dirty = false;
        c->ndirty--;
        c->s->refcounts_unsynced |= !c->is_l2;
    }
    return ret;
}

int qcow2_cache_writeback(Qcow2Cache *c)
{
    if (c->ndirty == 0) {
        return 0;
    }
    if (c->is_l2) {
        int ret = qcow2_refcounts_before_l2(c->s);
        if (ret < 0) {
            return ret;
        }
    }
    for (unsigned i = 0; i < c->n && c->ndirty; i++) {
        Qcow2Table *t = &c->tables[i];
        int ret = t->offset && t->dirty ? write_table(c, t) : 0;
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

/* An empty slot, else the least recently used clean unpinned table. */
static Qcow2Table *pick_victim(Qcow2Cache *c)
{
    Qcow2Table *best = NULL;

    for (unsigned i = 0; i < c->n; i++) {
        Qcow2Table *t = &c->tables[i];
        if (!t->offset) {
            return t;
        }
        if (!t->pins && !t->dirty && (!best || t->lru < best->lru)) {
            best = t;
        }
    }
    return best;
}

/* A slot for a new table; dirty tables are written back when every
 * candidate is dirty (one write-back pass frees many slots at once). */
static int free_slot(Qcow2Cache *c, Qcow2Table **slot)
{
    Qcow2Table *t = pick_victim(c);

    if (!t) {
        int ret = qcow2_cache_writeback(c);
        if (ret < 0) {
            return ret;
        }
        t = pick_victim(c);
    }
    if (!t) {
        return -ENOMEM;         /* every table pinned: a bug */
    }
    if (t->offset) {
        g_hash_table_remove(c->index, key(t->offset));
        t->offset = 0;
    }
    if (!t->data) {
        t->data = bdrv_buf_alloc(c->s->file, c->s->cluster_size);
    }
    *slot = t;
    return 0;
}

static Qcow2Table *lookup(Qcow2Cache *c, uint64_t offset)
{
    Qcow2Table *t = g_hash_table_lookup(c->index, key(offset));
    if (t) {
        t->lru = ++c->tick;
        t->pins++;
    }
    return t;
}

static void install(Qcow2Cache *c, Qcow2Table *t, uint64_t offset)
{
    t->offset = offset;
    t->lru = ++c->tick;
    t->pins = 1;
    t->dirty = false;
    g_hash_table_insert(c->index, key(offset), t);
}

int qcow2_cache_get(Qcow2Cache *c, uint64_t offset, Qcow2Table **tp)
{
    Qcow2Table *t = lookup(c, offset);

    if (t) {
        *tp = t;
        return 0;
    }
    int ret = free_slot(c, &t);
    if (ret == 0) {
        ret = bdrv_pread(c->s->file, offset, t->data, c->s->cluster_size);
    }
    if (ret < 0) {
        return ret;
    }
    install(c, t, offset);
    *tp = t;
    return 0;
}

int qcow2_cache_get_empty(Qcow2Cache *c, uint64_t offset, Qcow2Table **tp)
{
    Qcow2Table *t;
    int ret;

    qcow2_cache_drop(c, offset);
    ret = free_slot(c, &t);
    if (ret < 0) {
        return ret;
    }
    memset(t->data, 0, c->s->cluster_size);
    install(c, t, offset);
    *tp = t;
    return 0;
}

bool qcow2_cache_is_dirty(const Qcow2Cache *c)
{
    return c->ndirty > 0;
}

void qcow2_cache_put(Qcow2Cache *c, Qcow2Table *t)
{
    g_assert(t->pins > 0);
    t->pins--;
}

void qcow2_cache_dirty(Qcow2Table *t, uint32_t lo, uint32_t hi)
{
    if (!t->dirty) {
        t->dirty = true;
        t->dirty_lo = lo;
        t->dirty_hi = hi;
        t->owner->ndirty++;
        return;
    }
    t->dirty_lo = MIN(t->dirty_lo, lo);
    t->dirty_hi = MAX(t->dirty_hi, hi);
}

void qcow2_cache_drop(Qcow2Cache *c, uint64_t offset)
{
    Qcow2Table *t = g_hash_table_lookup(c->index, key(offset));

    if (t) {
        g_assert(t->pins == 0);
        c->ndirty -= t->dirty;
        t->dirty = false;
        g_hash_table_remove(c->index, key(offset));
        t->offset = 0;
    }
}
