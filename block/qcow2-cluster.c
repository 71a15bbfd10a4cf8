/* qcow2 cluster mapping: guest offset -> L1 -> L2 entry -> host cluster.
 * Looking up runs of clusters (checking each entry it hands out), getting
 * an L2 table ready for a change (a new table, or a private copy of one a
 * snapshot shares), and pointing guest clusters at new host clusters.
 * Everything here runs under s->lock. */
#include <errno.h>
#include <inttypes.h>

#include "qcow2.h"

Qcow2ClusterType qcow2_entry_type(Qcow2State *s, uint64_t e)
{
    if (e & QCOW2_OFLAG_COMPRESSED) {
        return QCOW2_CLUSTER_COMPRESSED;
    }
    if (s->h.version >= 3 && (e & QCOW2_OFLAG_ZERO)) {
        return e & QCOW2_OFFSET_MASK ? QCOW2_CLUSTER_ZERO_ALLOC : QCOW2_CLUSTER_ZERO_PLAIN;
    }
    return e & QCOW2_OFFSET_MASK ? QCOW2_CLUSTER_NORMAL : QCOW2_CLUSTER_UNALLOCATED;
}

void qcow2_compressed_range(Qcow2State *s, uint64_t e, uint64_t *off, uint64_t *len)
{
    unsigned x = 62 - (s->cluster_bits - 8);
    uint64_t sectors = ((e >> x) & ((1ULL << (s->cluster_bits - 8)) - 1)) + 1;

    *off = e & ((1ULL << x) - 1);
    *len = sectors * 512 - (*off & 511);
}

/* What is wrong with L2 entry E, or NULL. */
static const char *entry_problem(Qcow2State *s, uint64_t e)
{
    uint64_t off, len;

    if (e & QCOW2_OFLAG_COMPRESSED) {
        qcow2_compressed_range(s, e, &off, &len);
        if (off < s->cluster_size || off >= s->file_end) {
            return "compressed data outside the image";
        }
        return qcow2_overlaps_metadata(s, off, len) ? "compressed data on metadata" : NULL;
    }
    off = e & QCOW2_OFFSET_MASK;
    if (e & QCOW2_L2E_RESERVED || (s->h.version < 3 && (e & QCOW2_OFLAG_ZERO))) {
        return "reserved bits set";
    }
    if (!off) {
        return e & QCOW2_OFLAG_COPIED ? "COPIED flag without an offset" : NULL;
    }
    if (off % s->cluster_size) {
        return "a misaligned offset";
    }
    if (off >= s->file_end) {
        return "an offset past the end of the image";
    }
    return qcow2_overlaps_metadata(s, off, s->cluster_size) ? "an offset on metadata" : NULL;
}

static int check_entry(Qcow2State *s, uint64_t e, uint64_t guest_off)
{
    const char *problem = entry_problem(s, e);
    if (!problem) {
        return 0;
    }
    return qcow2_signal_corruption(s, "L2 entry for guest offset %#" PRIx64 " (%#" PRIx64
                                   ") has %s", guest_off, e, problem);
}

/* Does entry E continue a run that started with E0, K clusters before? */
static bool same_run(Qcow2State *s, uint64_t e0, uint64_t e, uint64_t k, bool contiguous)
{
    Qcow2ClusterType type = qcow2_entry_type(s, e0);

    if (qcow2_entry_type(s, e) != type || type == QCOW2_CLUSTER_COMPRESSED ||
        entry_problem(s, e)) {
        return false;
    }
    if (type != QCOW2_CLUSTER_NORMAL || !contiguous) {
        return true;
    }
    return (e & QCOW2_OFFSET_MASK) == (e0 & QCOW2_OFFSET_MASK) + k * s->cluster_size &&
           (e & QCOW2_OFLAG_COPIED) == (e0 & QCOW2_OFLAG_COPIED);
}

/* Run of entries from index I of table T covering up to N clusters. */
static int map_in_table(Qcow2State *s, Qcow2Table *t, uint64_t i, uint64_t n,
                        uint64_t off, bool contiguous, Qcow2Mapping *m, uint64_t *count)
{
    uint64_t e0 = qcow2_table_get(t, i);
    int ret = check_entry(s, e0, off);

    if (ret < 0) {
        return ret;
    }
    *count = 1;
    while (*count < n && same_run(s, e0, qcow2_table_get(t, i + *count), *count, contiguous)) {
        (*count)++;
    }
    m->entry = e0;
    m->type = qcow2_entry_type(s, e0);
    return 0;
}

int qcow2_map(Qcow2State *s, uint64_t off, uint64_t len, bool contiguous, Qcow2Mapping *m)
{
    uint64_t cs = s->cluster_size, in_cluster = off & (cs - 1);
    uint64_t span_bits = s->cluster_bits + s->l2_bits;
    uint64_t l1_idx = off >> span_bits;
    uint64_t l2_off = l1_idx < s->h.l1_size ? s->l1[l1_idx] & QCOW2_OFFSET_MASK : 0;
    uint64_t count = 1;
    Qcow2Table *t;

    len = MIN(len, ((l1_idx + 1) << span_bits) - off);
    *m = (Qcow2Mapping){ .type = QCOW2_CLUSTER_UNALLOCATED, .bytes = len };
    if (!l2_off) {
        return 0;
    }
    int ret = qcow2_cache_get(s->l2_cache, l2_off, &t);
    if (ret < 0) {
        return ret;
    }
    ret = map_in_table(s, t, (off >> s->cluster_bits) & ((1ULL << s->l2_bits) - 1),
                       (in_cluster + len + cs - 1) >> s->cluster_bits, off, contiguous, m, &count);
    qcow2_cache_put(s->l2_cache, t);
    m->bytes = MIN(len, count * cs - in_cluster);
    if (m->type == QCOW2_CLUSTER_NORMAL) {
        m->host = (m->entry & QCOW2_OFFSET_MASK) + in_cluster;
    }
    return ret;
}

/* ---- Changing L2 tables ---- */

static int write_l1_entry(Qcow2State *s, uint64_t idx, uint64_t entry)
{
    uint64_t be = GUINT64_TO_BE(entry);
    int ret = bdrv_pwrite(s->file, s->h.l1_table_offset + idx * 8, &be, 8, 0);

    if (ret == 0) {
        s->l1[idx] = entry;
    }
    return ret;
}

/* A new L2 table for L1 entry IDX: zeroes (or a copy of OLD, shared with a
 * snapshot), durable with its refcount before the L1 entry points at it. */
static int new_l2_table(Qcow2State *s, uint64_t idx, uint64_t old)
{
    bool fresh;
    int64_t off = qcow2_alloc_clusters(s, 1, &fresh);
    Qcow2Table *t = NULL, *src = NULL;
    int ret = off < 0 ? (int)off : qcow2_cache_get_empty(s->l2_cache, (uint64_t)off, &t);

    if (ret < 0) {
        return ret;
    }
    ret = old ? qcow2_cache_get(s->l2_cache, old, &src) : 0;
    if (ret == 0 && src) {
        memcpy(t->data, src->data, s->cluster_size);
        qcow2_cache_put(s->l2_cache, src);
    }
    g_hash_table_add(s->meta, GSIZE_TO_POINTER((gsize)off));
    /* The refcounts (its own, and those of what a copy points at) and the
     * table itself, then one sync for all of them. */
    ret = ret < 0 ? ret : qcow2_cache_writeback(s->rb_cache);
    if (ret == 0) {
        /* Written even when the cluster reads as zero already: qemu-img
         * check calls a table past the end of the file corrupt. */
        ret = bdrv_pwrite(s->file, (uint64_t)off, t->data, s->cluster_size, 0);
    }
    qcow2_cache_put(s->l2_cache, t);
    ret = ret < 0 ? ret : qcow2_sync(s);
    ret = ret < 0 ? ret : write_l1_entry(s, idx, (uint64_t)off | QCOW2_OFLAG_COPIED);
    if (ret == 0 && old) {
        qcow2_cache_drop(s->l2_cache, old);
        qcow2_free_later(s, old, s->cluster_size);
    }
    return ret;
}

int qcow2_l2_for_write(Qcow2State *s, uint64_t off, Qcow2Table **t, uint64_t *index)
{
    uint64_t idx = off >> (s->cluster_bits + s->l2_bits);
    uint64_t e = s->l1[idx];
    int ret = 0;

    if (!(e & QCOW2_OFFSET_MASK) || !(e & QCOW2_OFLAG_COPIED)) {
        ret = new_l2_table(s, idx, e & QCOW2_OFFSET_MASK);
    }
    *index = (off >> s->cluster_bits) & ((1ULL << s->l2_bits) - 1);
    return ret < 0 ? ret : qcow2_cache_get(s->l2_cache, s->l1[idx] & QCOW2_OFFSET_MASK, t);
}

int qcow2_link_clusters(Qcow2State *s, uint64_t off, uint64_t n, uint64_t host)
{
    while (n > 0) {
        Qcow2Table *t;
        uint64_t i;
        int ret = qcow2_l2_for_write(s, off, &t, &i);
        if (ret < 0) {
            return ret;
        }
        uint64_t k = MIN(n, (1ULL << s->l2_bits) - i);
        for (uint64_t j = 0; j < k; j++) {
            uint64_t old = qcow2_table_get(t, i + j);
            qcow2_table_set(t, i + j, (host + j * s->cluster_size) | QCOW2_OFLAG_COPIED);
            qcow2_free_entry_later(s, old);
        }
        qcow2_cache_put(s->l2_cache, t);
        off += k << s->cluster_bits;
        host += k << s->cluster_bits;
        n -= k;
    }
    return 0;
}

int qcow2_prepare_write(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    Qcow2State *s = bdrv_opaque(bs);
    uint64_t span = s->cluster_size << s->l2_bits;
    int ret = 0;

    g_mutex_lock(&s->lock);
    for (uint64_t a = off & ~(span - 1); ret == 0 && a < off + len; a += span) {
        Qcow2Table *t;
        uint64_t i;
        ret = s->corrupt ? -EIO : qcow2_l2_for_write(s, a, &t, &i);
        if (ret == 0) {
            qcow2_cache_put(s->l2_cache, t);
        }
    }
    g_mutex_unlock(&s->lock);
    return ret;
}
