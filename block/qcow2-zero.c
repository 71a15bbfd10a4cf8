/* qcow2 write-zeroes and discard.  Whole clusters change only their L2
 * entries: deallocated where nothing below shows through, a version 3 zero
 * flag where a backing image would (or, to keep the allocation, a zero
 * flag over the same host cluster).  The host clusters let go are freed
 * (and punched) once that is durable.  Partial clusters are written with
 * zeroes; discard leaves them alone.  Version 2 has no zero flag: where a
 * backing image shows through, or the caller wants the space kept, the
 * zeroes are written as data. */
#include <errno.h>

#include "qcow2.h"

/* Zero-data buffer for the fallbacks. */
#define ZERO_CHUNK (256 * 1024)

typedef enum ZeroMode {
    ZERO_DISCARD,            /* advisory: may leave data where zeroing cannot */
    ZERO_UNMAP,              /* must read zero, may deallocate */
    ZERO_KEEP,               /* must read zero, keeps allocations */
} ZeroMode;

/* Does a backing image show through guest cluster OFF? */
static bool backing_covers(Qcow2State *s, uint64_t off)
{
    BlockDriverState *b = s->bs->backing;
    return b && off < (uint64_t)bdrv_getlength(b);
}

/* The new L2 entry for a cluster holding OLD. */
static uint64_t zeroed_entry(Qcow2State *s, uint64_t old, ZeroMode mode, bool covered)
{
    Qcow2ClusterType type = qcow2_entry_type(s, old);

    if (mode == ZERO_KEEP && type == QCOW2_CLUSTER_NORMAL && (old & QCOW2_OFLAG_COPIED)) {
        return old | QCOW2_OFLAG_ZERO;
    }
    if (mode == ZERO_KEEP && type == QCOW2_CLUSTER_ZERO_ALLOC) {
        return old;
    }
    if (!covered) {
        return 0;
    }
    return s->h.version >= 3 ? QCOW2_OFLAG_ZERO : old;
}

static void zero_entries(Qcow2State *s, Qcow2Table *t, uint64_t i, uint64_t off, uint64_t n,
                         ZeroMode mode)
{
    for (uint64_t j = 0; j < n; j++) {
        uint64_t old = qcow2_table_get(t, i + j);
        uint64_t new = zeroed_entry(s, old, mode, backing_covers(s, off + (j << s->cluster_bits)));
        if (new == old) {
            continue;
        }
        qcow2_table_set(t, i + j, new);
        if ((new & QCOW2_OFFSET_MASK) != (old & QCOW2_OFFSET_MASK) ||
            (old & QCOW2_OFLAG_COMPRESSED)) {
            qcow2_free_entry_later(s, old);
        }
    }
}

/* Whole clusters [off, off+len) inside one L2 table's range. */
static int zero_in_table(Qcow2State *s, uint64_t off, uint64_t len, ZeroMode mode)
{
    uint64_t idx = off >> (s->cluster_bits + s->l2_bits);
    Qcow2Table *t;
    uint64_t i;

    qcow2_wait_allocs(s, off, len);
    if (!(s->l1[idx] & QCOW2_OFFSET_MASK) &&
        (s->h.version < 3 || !backing_covers(s, off))) {
        return 0;            /* unallocated, and nothing shows through */
    }
    int ret = qcow2_l2_for_write(s, off, &t, &i);
    if (ret < 0) {
        return ret;
    }
    zero_entries(s, t, i, off, len >> s->cluster_bits, mode);
    qcow2_cache_put(s->l2_cache, t);
    return 0;
}

static int zero_clusters(Qcow2State *s, uint64_t off, uint64_t len, ZeroMode mode)
{
    uint64_t span = s->cluster_size << s->l2_bits;
    int ret = 0;

    g_mutex_lock(&s->lock);
    if (s->corrupt) {
        ret = -EIO;
    }
    while (ret == 0 && len > 0) {
        uint64_t n = MIN(len, span - (off & (span - 1)));
        ret = zero_in_table(s, off, n, mode);
        off += n;
        len -= n;
    }
    ret = ret < 0 ? ret : qcow2_bound_frees(s);
    g_mutex_unlock(&s->lock);
    return ret;
}

/* ---- Partial clusters and fallbacks ---- */

static int write_zero_data(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    uint8_t *zero = g_malloc0(MIN(len, (uint64_t)ZERO_CHUNK));
    int ret = 0;

    while (ret == 0 && len > 0) {
        uint64_t n = MIN(len, (uint64_t)ZERO_CHUNK);
        ret = qcow2_pwrite(bs, off, zero, n, 0);
        off += n;
        len -= n;
    }
    g_free(zero);
    return ret;
}

/* Does guest [off, off+len) (one cluster at most) read as zero already? */
static bool reads_zero(Qcow2State *s, uint64_t off, uint64_t len)
{
    Qcow2Mapping m;

    g_mutex_lock(&s->lock);
    bool zero = qcow2_map(s, off, len, false, &m) == 0 && m.bytes == len &&
                (m.type == QCOW2_CLUSTER_ZERO_PLAIN || m.type == QCOW2_CLUSTER_ZERO_ALLOC ||
                 (m.type == QCOW2_CLUSTER_UNALLOCATED && !backing_covers(s, off)));
    g_mutex_unlock(&s->lock);
    return zero;
}

static int zero_partial(BlockDriverState *bs, uint64_t off, uint64_t len, int flags)
{
    if (len == 0 || reads_zero(bdrv_opaque(bs), off, len)) {
        return 0;
    }
    return flags & BDRV_REQ_NO_FALLBACK ? -ENOTSUP : write_zero_data(bs, off, len);
}

/* Clusters are whole up to the end of the disk: the last one may reach
 * past the virtual size. */
static uint64_t cluster_end(Qcow2State *s, uint64_t end)
{
    uint64_t cs = s->cluster_size;
    return end == s->bs->size ? (end + cs - 1) & ~(cs - 1) : end;
}

int qcow2_pwrite_zeroes(BlockDriverState *bs, uint64_t off, uint64_t len, int flags)
{
    Qcow2State *s = bdrv_opaque(bs);
    uint64_t cs = s->cluster_size, end = off + len, vend = cluster_end(s, end);
    uint64_t a = MIN((off + cs - 1) & ~(cs - 1), vend), b = MAX(vend & ~(cs - 1), a);
    bool unmap = flags & BDRV_REQ_MAY_UNMAP;

    if (s->h.version < 3 && (!unmap || backing_covers(s, off))) {
        return flags & BDRV_REQ_NO_FALLBACK ? -ENOTSUP : write_zero_data(bs, off, len);
    }
    int ret = zero_partial(bs, off, MIN(a, end) - off, flags);
    ret = ret < 0 || b >= end ? ret : zero_partial(bs, b, end - b, flags);
    ret = ret < 0 || b == a ? ret : zero_clusters(s, a, b - a, unmap ? ZERO_UNMAP : ZERO_KEEP);
    return ret == 0 && (flags & BDRV_REQ_FUA) ? qcow2_flush(bs) : ret;
}

int qcow2_discard(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    Qcow2State *s = bdrv_opaque(bs);
    uint64_t cs = s->cluster_size;
    uint64_t a = (off + cs - 1) & ~(cs - 1), b = cluster_end(s, off + len) & ~(cs - 1);

    return a < b ? zero_clusters(s, a, b - a, ZERO_DISCARD) : 0;
}
