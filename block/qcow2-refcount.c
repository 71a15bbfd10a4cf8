/* qcow2 refcounts: reading and changing the refcount of host clusters
 * (entries of 1 to 64 bits), finding free clusters for new data and
 * metadata, creating refcount blocks on demand and growing the refcount
 * table when the image outgrows it.  A new refcount block or table is
 * written and synced before anything points at it; see qcow2-flush.c for
 * the ordering rule as a whole.  Everything here runs under s->lock. */
#include <errno.h>
#include <inttypes.h>

#include "qcow2.h"

/* ---- Entries ---- */

static uint64_t rb_get(Qcow2State *s, const uint8_t *rb, uint64_t i)
{
    unsigned order = s->h.refcount_order;

    if (order < 3) {
        unsigned bits = 1u << order, shift = (unsigned)(i * bits % 8);
        return (rb[i * bits / 8] >> shift) & ((1u << bits) - 1);
    }
    switch (order) {
    case 3:
        return rb[i];
    case 4: { uint16_t v; memcpy(&v, rb + i * 2, 2); return GUINT16_FROM_BE(v); }
    case 5: { uint32_t v; memcpy(&v, rb + i * 4, 4); return GUINT32_FROM_BE(v); }
    default: { uint64_t v; memcpy(&v, rb + i * 8, 8); return GUINT64_FROM_BE(v); }
    }
}

static void rb_set(Qcow2State *s, uint8_t *rb, uint64_t i, uint64_t val)
{
    unsigned order = s->h.refcount_order;

    if (order < 3) {
        unsigned bits = 1u << order, shift = (unsigned)(i * bits % 8);
        uint8_t mask = (uint8_t)(((1u << bits) - 1) << shift);
        rb[i * bits / 8] = (uint8_t)((rb[i * bits / 8] & ~mask) | ((val << shift) & mask));
        return;
    }
    switch (order) {
    case 3: rb[i] = (uint8_t)val; break;
    case 4: { uint16_t v = GUINT16_TO_BE((uint16_t)val); memcpy(rb + i * 2, &v, 2); break; }
    case 5: { uint32_t v = GUINT32_TO_BE((uint32_t)val); memcpy(rb + i * 4, &v, 4); break; }
    default: { uint64_t v = GUINT64_TO_BE(val); memcpy(rb + i * 8, &v, 8); break; }
    }
}

/* Dirty byte range of entry I. */
static void rb_dirty(Qcow2State *s, Qcow2Table *t, uint64_t i)
{
    uint32_t lo = (uint32_t)((i << s->h.refcount_order) / 8);
    qcow2_cache_dirty(t, lo, lo + MAX(1u, s->refcount_bits / 8));
}

/* The refcount block for table index RT, pinned; NULL when there is none. */
static int get_refblock(Qcow2State *s, uint64_t rt, Qcow2Table **t)
{
    *t = NULL;
    if (rt >= s->reftable_size || !s->reftable[rt]) {
        return 0;
    }
    return qcow2_cache_get(s->rb_cache, s->reftable[rt], t);
}

int qcow2_get_refcount(Qcow2State *s, uint64_t cluster, uint64_t *rc)
{
    Qcow2Table *t;
    int ret = get_refblock(s, cluster >> s->rb_bits, &t);

    *rc = 0;
    if (ret == 0 && t) {
        *rc = rb_get(s, t->data, cluster & ((1ULL << s->rb_bits) - 1));
        qcow2_cache_put(s->rb_cache, t);
    }
    return ret;
}

/* ---- New refcount blocks and tables ---- */

static void note_allocated(Qcow2State *s, uint64_t end)
{
    s->file_end = MAX(s->file_end, end);
    s->fresh_from = MAX(s->fresh_from, end);
}

static int grow_reftable(Qcow2State *s, uint64_t min_entries);

/* Table index RT gets a refcount block, in the first cluster it covers
 * (free: without a block all its refcounts are zero). */
static int ensure_refblock(Qcow2State *s, uint64_t rt)
{
    int ret = rt >= s->reftable_size ? grow_reftable(s, rt + 1) : 0;
    if (ret < 0 || s->reftable[rt]) {
        return ret;
    }
    uint64_t off = (rt << s->rb_bits) << s->cluster_bits;
    if (off >= QCOW2_MAX_HOST_OFFSET) {
        return -ENOSPC;
    }
    if (qcow2_overlaps_metadata(s, off, s->cluster_size)) {
        return qcow2_signal_corruption(s, "cluster %#" PRIx64 " is metadata but its "
                                       "refcount is zero", off);
    }
    Qcow2Table *t;
    ret = qcow2_cache_get_empty(s->rb_cache, off, &t);
    if (ret < 0) {
        return ret;
    }
    rb_set(s, t->data, 0, 1);
    qcow2_cache_dirty(t, 0, (uint32_t)s->cluster_size);
    qcow2_cache_put(s->rb_cache, t);
    uint64_t be = GUINT64_TO_BE(off);
    ret = qcow2_cache_writeback(s->rb_cache);
    ret = ret < 0 ? ret : qcow2_sync(s);
    ret = ret < 0 ? ret : bdrv_pwrite(s->file, s->h.refcount_table_offset + rt * 8, &be, 8, 0);
    if (ret == 0) {
        s->reftable[rt] = off;
        g_hash_table_add(s->meta, GSIZE_TO_POINTER((gsize)off));
        note_allocated(s, off + s->cluster_size);
    }
    return ret;
}

/* Where a grown table goes: NB refcount blocks at cluster FIRST covering
 * themselves and the NT table clusters after them. */
typedef struct GrowPlan {
    uint64_t first;          /* cluster index */
    uint64_t first_rb, nb;   /* table indexes of the new blocks */
    uint64_t entries, nt;
} GrowPlan;

static bool plan_growth(Qcow2State *s, uint64_t min_entries, GrowPlan *p)
{
    uint64_t per_cluster = s->cluster_size / 8;

    p->first = MAX(s->reftable_size << s->rb_bits, s->file_end >> s->cluster_bits);
    p->first_rb = p->first >> s->rb_bits;
    p->entries = MAX(min_entries, s->reftable_size + s->reftable_size / 2);
    p->nb = 1;
    for (int i = 0; i < 64; i++) {
        p->entries = MAX(p->entries, p->first_rb + p->nb);
        p->entries = (p->entries + per_cluster - 1) / per_cluster * per_cluster;
        p->nt = p->entries / per_cluster;
        uint64_t last_rb = (p->first + p->nb + p->nt - 1) >> s->rb_bits;
        if (last_rb - p->first_rb + 1 == p->nb && p->entries > last_rb) {
            return p->nt * s->cluster_size <= QCOW2_MAX_REFTABLE_BYTES;
        }
        p->nb = last_rb - p->first_rb + 1;
    }
    return false;
}

/* Writes the plan's refcount blocks and table. */
static int write_growth(Qcow2State *s, const GrowPlan *p, uint64_t *table)
{
    uint64_t cs = s->cluster_size, end = p->first + p->nb + p->nt;
    uint8_t *rb = bdrv_buf_alloc(s->file, cs);
    int ret = 0;

    for (uint64_t j = 0; j < p->nb && ret == 0; j++) {
        uint64_t base = (p->first_rb + j) << s->rb_bits;
        memset(rb, 0, cs);
        for (uint64_t c = MAX(base, p->first); c < MIN(end, base + (1ULL << s->rb_bits)); c++) {
            rb_set(s, rb, c - base, 1);
        }
        table[p->first_rb + j] = GUINT64_TO_BE((p->first + j) * cs);
        ret = bdrv_pwrite(s->file, (p->first + j) * cs, rb, cs, 0);
    }
    bdrv_buf_free(rb);
    return ret < 0 ? ret : bdrv_pwrite(s->file, (p->first + p->nb) * cs, table, p->nt * cs, 0);
}

/* Switches to the grown table: header, memory, then the old table's
 * clusters go (nothing points at them once the header is durable). */
static int switch_reftable(Qcow2State *s, const GrowPlan *p, uint64_t *table)
{
    uint64_t old_off = s->h.refcount_table_offset, old_clusters = s->h.refcount_table_clusters;
    uint64_t cs = s->cluster_size;

    s->h.refcount_table_offset = (p->first + p->nb) * cs;
    s->h.refcount_table_clusters = (uint32_t)p->nt;
    int ret = qcow2_write_reftable_location(s);
    ret = ret < 0 ? ret : qcow2_sync(s);
    if (ret < 0) {
        s->h.refcount_table_offset = old_off;
        s->h.refcount_table_clusters = (uint32_t)old_clusters;
        return ret;
    }
    for (uint64_t i = 0; i < p->entries; i++) {
        table[i] = GUINT64_FROM_BE(table[i]);
    }
    g_free(s->reftable);
    s->reftable = table;
    s->reftable_size = p->entries;
    for (uint64_t j = 0; j < p->nb; j++) {
        g_hash_table_add(s->meta, GSIZE_TO_POINTER((gsize)((p->first + j) * cs)));
    }
    note_allocated(s, (p->first + p->nb + p->nt) * cs);
    return qcow2_update_refcount(s, old_off, old_clusters * cs, -1);
}

static int grow_reftable(Qcow2State *s, uint64_t min_entries)
{
    GrowPlan p;

    if (!plan_growth(s, min_entries, &p) ||
        ((p.first + p.nb + p.nt) << s->cluster_bits) > QCOW2_MAX_HOST_OFFSET) {
        return -EFBIG;
    }
    uint64_t *table = g_malloc0(p.entries * 8);
    for (uint64_t i = 0; i < s->reftable_size; i++) {
        table[i] = GUINT64_TO_BE(s->reftable[i]);
    }
    int ret = write_growth(s, &p, table);
    ret = ret < 0 ? ret : qcow2_sync(s);
    ret = ret < 0 ? ret : switch_reftable(s, &p, table);
    if (ret < 0 && s->reftable != table) {
        g_free(table);
    }
    return ret;
}

/* ---- Changing refcounts ---- */

/* Adds DELTA to clusters [c, c+n) that share one refcount block. */
static int update_in_block(Qcow2State *s, uint64_t c, uint64_t n, int delta)
{
    uint64_t mask = (1ULL << s->rb_bits) - 1;
    Qcow2Table *t;
    int ret = delta > 0 ? ensure_refblock(s, c >> s->rb_bits) : 0;

    ret = ret < 0 ? ret : get_refblock(s, c >> s->rb_bits, &t);
    if (ret < 0) {
        return ret;
    }
    for (uint64_t i = c & mask; i < (c & mask) + n && ret == 0; i++) {
        uint64_t v = t ? rb_get(s, t->data, i) : 0;
        if ((delta < 0 && v < (uint64_t)-delta) || (delta > 0 && v > s->refcount_max - delta)) {
            ret = qcow2_signal_corruption(s, "refcount of cluster %#" PRIx64 " (%" PRIu64
                                          ") cannot change by %d", (c + i - (c & mask)) <<
                                          s->cluster_bits, v, delta);
            break;
        }
        rb_set(s, t->data, i, v + delta);
        rb_dirty(s, t, i);
        if (v + delta == 0) {
            s->free_cluster_index = MIN(s->free_cluster_index, c + i - (c & mask));
        }
    }
    if (t) {
        qcow2_cache_put(s->rb_cache, t);
    }
    return ret;
}

int qcow2_update_refcount(Qcow2State *s, uint64_t off, uint64_t bytes, int delta)
{
    uint64_t c = off >> s->cluster_bits;
    uint64_t end = (off + bytes + s->cluster_size - 1) >> s->cluster_bits;

    while (c < end) {
        uint64_t block_end = ((c >> s->rb_bits) + 1) << s->rb_bits;
        uint64_t n = MIN(end, block_end) - c;
        int ret = update_in_block(s, c, n, delta);
        if (ret < 0) {
            return ret;
        }
        c += n;
    }
    return 0;
}

/* ---- Allocation ---- */

/* Moves *START to the first of N free clusters from it, making sure every
 * cluster scanned has a refcount block.  1 when found, 0 to rescan (a
 * block or table was just made), < 0 on errors. */
static int scan_free(Qcow2State *s, uint64_t *start, uint64_t n)
{
    uint64_t count = 0, mask = (1ULL << s->rb_bits) - 1;

    while (count < n) {
        uint64_t cur = *start + count, rt = cur >> s->rb_bits;
        Qcow2Table *t;
        if (rt >= s->reftable_size || !s->reftable[rt]) {
            return ensure_refblock(s, rt);
        }
        int ret = get_refblock(s, rt, &t);
        if (ret < 0) {
            return ret;
        }
        for (uint64_t i = cur & mask; i <= mask && count < n; i++) {
            if (!rb_get(s, t->data, i)) {
                count++;
                continue;
            }
            /* Nothing free before it: the next scan need not look there. */
            if (*start == s->free_cluster_index && count == 0) {
                s->free_cluster_index = (rt << s->rb_bits) + i + 1;
            }
            *start = (rt << s->rb_bits) + i + 1;
            count = 0;
        }
        qcow2_cache_put(s->rb_cache, t);
    }
    return 1;
}

int64_t qcow2_alloc_clusters(Qcow2State *s, uint64_t n, bool *fresh)
{
    uint64_t c = s->free_cluster_index;
    int ret;

    while ((ret = scan_free(s, &c, n)) == 0) {
    }
    uint64_t host = c << s->cluster_bits, bytes = n << s->cluster_bits;
    if (ret < 0 || host + bytes > QCOW2_MAX_HOST_OFFSET) {
        return ret < 0 ? ret : -ENOSPC;
    }
    if (qcow2_overlaps_metadata(s, host, bytes)) {
        return qcow2_signal_corruption(s, "cluster %#" PRIx64 " is metadata but its "
                                       "refcount is zero", host);
    }
    ret = qcow2_update_refcount(s, host, bytes, 1);
    if (ret < 0) {
        return ret;
    }
    if (c == s->free_cluster_index) {
        s->free_cluster_index = c + n;
    }
    *fresh = host >= s->fresh_from;
    note_allocated(s, host + bytes);
    return (int64_t)host;
}

int qcow2_refcounts_before_l2(Qcow2State *s)
{
    int ret = qcow2_cache_writeback(s->rb_cache);
    if (ret == 0 && s->refcounts_unsynced) {
        ret = qcow2_sync(s);
    }
    return ret;
}
