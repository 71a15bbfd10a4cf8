/* qcow2 writes: a run of guest clusters that has a private data cluster is
 * written in place, outside the lock, holding a slot.  Any other run
 * (unallocated, zero, compressed, or shared with a snapshot) gets new
 * host clusters in one contiguous allocation: the allocation is registered
 * so no other request allocates or zeroes those guest clusters meanwhile,
 * the data and the copy-on-write fill of partly written clusters go to the
 * new clusters without the lock, and only then do the L2 entries point at
 * them (rule 3 of qcow2-flush.c); what they pointed at before is freed. */
#include <errno.h>

#include "qcow2.h"

/* A write into new host clusters. */
typedef struct WriteJob {
    Qcow2State *s;
    Qcow2Mapping old;        /* what the run held before */
    uint64_t first;          /* guest offset of the run's first cluster */
    uint64_t nclusters;
    uint64_t off, bytes;     /* the guest write inside the run */
    uint64_t host;           /* the new host clusters */
    bool fresh;              /* ... which read as zeroes */
    bool old_zero;           /* the run's old content reads as zeroes */
} WriteJob;

/* Does [off, off+len) of backing node B read as zeroes?  Its block status
 * says so (holes, zero clusters, unallocated; beyond its end); the chain
 * below is read-only, so the answer holds. */
static bool backing_is_zero(BlockDriverState *b, uint64_t off, uint64_t len)
{
    uint64_t below = (uint64_t)bdrv_getlength(b);
    BdrvWalk w;
    BdrvExtent e;
    int ret;

    if (off >= below) {
        return true;
    }
    bdrv_walk_init(&w, b, off, MIN(len, below - off), BDRV_WALK_GUEST,
                   BDRV_WALK_ERROR_AS_DATA);
    while ((ret = bdrv_walk_next(&w, &e)) > 0) {
        if (e.status == BDRV_STATUS_DATA) {
            return false;
        }
    }
    return ret == 0;
}

/* Does the old content of the run read as zeroes?  (Then its copy-on-write
 * needs no read, and nothing at all in fresh clusters.) */
static bool old_is_zero(const WriteJob *j)
{
    BlockDriverState *b = j->s->bs->backing;

    switch (j->old.type) {
    case QCOW2_CLUSTER_ZERO_PLAIN:
    case QCOW2_CLUSTER_ZERO_ALLOC:
        return true;
    case QCOW2_CLUSTER_UNALLOCATED:
        return !b || backing_is_zero(b, j->first, j->nclusters << j->s->cluster_bits);
    default:
        return false;
    }
}

/* Old content of guest [goff, goff+len) (inside the run) into BUF. */
static int read_old(const WriteJob *j, uint64_t goff, uint8_t *buf, uint64_t len)
{
    Qcow2State *s = j->s;
    uint64_t cs = s->cluster_size;

    switch (j->old.type) {
    case QCOW2_CLUSTER_UNALLOCATED:
        return qcow2_read_backing(s, goff, buf, len);
    case QCOW2_CLUSTER_NORMAL:
        return bdrv_pread(s->file, (j->old.entry & QCOW2_OFFSET_MASK) + (goff - j->first),
                          buf, len);
    case QCOW2_CLUSTER_COMPRESSED: {
        uint8_t *cluster = g_malloc(cs);
        int ret = qcow2_read_compressed(s, j->old.entry, cluster);
        if (ret == 0) {
            memcpy(buf, cluster + (goff & (cs - 1)), len);
        }
        g_free(cluster);
        return ret;
    }
    default:
        memset(buf, 0, len);
        return 0;
    }
}

/* Copy-on-write of guest [goff, goff+len) into the new clusters. */
static int fill(const WriteJob *j, uint64_t goff, uint64_t len)
{
    uint64_t host = j->host + (goff - j->first);

    if (j->old_zero) {
        return j->fresh ? 0 : bdrv_pwrite_zeroes(j->s->file, host, len, 0);
    }
    uint8_t *buf = bdrv_buf_alloc(j->s->file, len);
    int ret = read_old(j, goff, buf, len);
    ret = ret < 0 ? ret : bdrv_pwrite(j->s->file, host, buf, len, 0);
    bdrv_buf_free(buf);
    return ret;
}

/* One cluster: old content and new data merged, one write. */
static int write_one_cluster(const WriteJob *j, const uint8_t *data)
{
    uint64_t cs = j->s->cluster_size;
    uint8_t *buf = bdrv_buf_alloc(j->s->file, cs);
    int ret = read_old(j, j->first, buf, cs);

    if (ret == 0) {
        memcpy(buf + (j->off - j->first), data, j->bytes);
        ret = bdrv_pwrite(j->s->file, j->host, buf, cs, 0);
    }
    bdrv_buf_free(buf);
    return ret;
}

static int write_new_clusters(WriteJob *j, const uint8_t *data)
{
    uint64_t head = j->off - j->first;
    uint64_t end = j->off + j->bytes;
    uint64_t tail = (j->nclusters << j->s->cluster_bits) - (end - j->first);
    int ret = 0;

    j->old_zero = (head || tail) && old_is_zero(j);
    if ((head || tail) && !(j->fresh && j->old_zero)) {
        if (j->nclusters == 1) {
            return write_one_cluster(j, data);
        }
        ret = head ? fill(j, j->first, head) : 0;
        ret = ret < 0 || !tail ? ret : fill(j, end, tail);
    }
    return ret < 0 ? ret : bdrv_pwrite(j->s->file, j->host + head, data, j->bytes, 0);
}

/* ---- One run ---- */

/* A new refcount block sits in the first cluster of the range it covers,
 * so free runs are shorter than a block's range: ask for no more. */
static void clamp_allocation(Qcow2State *s, uint64_t off, Qcow2Mapping *m)
{
    uint64_t cs = s->cluster_size, first = off & ~(cs - 1);
    uint64_t max_end = first + (((1ULL << s->rb_bits) - 1) << s->cluster_bits);

    m->bytes = MIN(m->bytes, max_end - off);
}

/* Maps [off, off+len) for a write, waiting for allocations in flight
 * when the run needs one itself. */
static int map_for_write(Qcow2State *s, uint64_t off, uint64_t len, Qcow2Mapping *m)
{
    for (;;) {
        if (s->corrupt) {
            return -EIO;
        }
        int ret = qcow2_map(s, off, len, true, m);
        if (ret < 0) {
            return ret;
        }
        if (m->type == QCOW2_CLUSTER_NORMAL && (m->entry & QCOW2_OFLAG_COPIED)) {
            return 0;
        }
        clamp_allocation(s, off, m);
        if (!qcow2_wait_allocs(s, off, m->bytes)) {
            return 0;
        }
    }
}

/* Lock held on entry, released on return. */
static int write_in_place(Qcow2State *s, const Qcow2Mapping *m, const uint8_t *data)
{
    int slot = qcow2_slot_take(s, m->host, m->host + m->bytes);
    g_mutex_unlock(&s->lock);
    int ret = bdrv_pwrite(s->file, m->host, data, m->bytes, 0);
    qcow2_slot_release(s, slot);
    return ret;
}

/* Lock held on entry, released on return. */
static int write_allocating(Qcow2State *s, const Qcow2Mapping *m, uint64_t off,
                            const uint8_t *data)
{
    uint64_t cs = s->cluster_size;
    WriteJob j = { .s = s, .old = *m, .first = off & ~(cs - 1), .off = off, .bytes = m->bytes };
    Qcow2Alloc a;

    j.nclusters = (off + m->bytes - j.first + cs - 1) >> s->cluster_bits;
    qcow2_alloc_begin(s, &a, j.first, j.nclusters * cs);
    int64_t host = qcow2_alloc_clusters(s, j.nclusters, &j.fresh);
    int ret = host < 0 ? (int)host : 0;
    if (ret == 0) {
        j.host = (uint64_t)host;
        g_mutex_unlock(&s->lock);
        ret = write_new_clusters(&j, data);
        g_mutex_lock(&s->lock);
        ret = ret < 0 ? ret : qcow2_link_clusters(s, j.first, j.nclusters, j.host);
        if (ret < 0) {
            qcow2_update_refcount(s, j.host, j.nclusters * cs, -1);
        }
    }
    qcow2_alloc_end(s, &a);
    ret = ret < 0 ? ret : qcow2_bound_frees(s);
    g_mutex_unlock(&s->lock);
    return ret;
}

/* ---- Writes only where unallocated (copies from the backing chain) ----
 *
 * Streaming and copy-on-read copy data the backing chain holds into this
 * layer while the guest keeps writing.  The copy must never replace what
 * the guest wrote meanwhile, so a run is written only if its clusters are
 * still unallocated here at the moment they are linked, and the check is
 * the allocation's own: map_for_fill finds the run unallocated with no
 * allocation in flight over it, and write_allocating registers the
 * run's allocation (qcow2_alloc_begin) before s->lock is released, all
 * under one hold of the lock.  From then until the L2 entries point at the
 * copy, every other request that would allocate, zero or discard one of
 * those clusters waits in qcow2_wait_allocs.  So either
 *  - the guest's write registered its allocation first: map_for_fill
 *    waits for it, maps again, finds the cluster allocated and skips it;
 *  - or the copy registered first: the guest's write waits for the copy,
 *    maps again, finds the cluster allocated and overwrites the copy in
 *    place (or write-zeroes/discard changes its entry): the guest's data
 *    is what stays.
 * A write to a cluster that is already allocated never allocates, and
 * nothing makes an allocated cluster unallocated again while a backing
 * node covers it (zeroing leaves a zero flag), so a copy, whose data comes
 * from the read-only chain below and is never stale there, cannot land on
 * guest data.  The copy itself is an ordinary allocating write, so it
 * keeps the crash-safe order of qcow2-flush.c (data, then refcounts, then
 * the L2 entry). */

/* Maps [off, off+len) for a fill: an unallocated run is returned only
 * when no allocation in flight overlaps it (lock held). */
static int map_for_fill(Qcow2State *s, uint64_t off, uint64_t len, Qcow2Mapping *m)
{
    for (;;) {
        if (s->corrupt) {
            return -EIO;
        }
        int ret = qcow2_map(s, off, len, true, m);
        if (ret < 0 || m->type != QCOW2_CLUSTER_UNALLOCATED) {
            return ret;
        }
        clamp_allocation(s, off, m);
        if (!qcow2_wait_allocs(s, off, m->bytes)) {
            return 0;
        }
    }
}

int qcow2_pwrite_unallocated(BlockDriverState *bs, uint64_t off, const void *buf, size_t len)
{
    Qcow2State *s = bdrv_opaque(bs);
    const uint8_t *p = buf;

    while (len > 0) {
        Qcow2Mapping m;
        g_mutex_lock(&s->lock);
        int ret = map_for_fill(s, off, len, &m);
        if (ret == 0 && m.type == QCOW2_CLUSTER_UNALLOCATED) {
            ret = write_allocating(s, &m, off, p);
        } else {
            g_mutex_unlock(&s->lock);
        }
        if (ret < 0) {
            return ret;
        }
        off += m.bytes;
        p += m.bytes;
        len -= m.bytes;
    }
    return 0;
}

int qcow2_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, size_t len, int flags)
{
    Qcow2State *s = bdrv_opaque(bs);
    const uint8_t *p = buf;

    while (len > 0) {
        Qcow2Mapping m;
        g_mutex_lock(&s->lock);
        int ret = map_for_write(s, off, len, &m);
        if (ret < 0) {
            g_mutex_unlock(&s->lock);
            return ret;
        }
        if (m.type == QCOW2_CLUSTER_NORMAL && (m.entry & QCOW2_OFLAG_COPIED)) {
            ret = write_in_place(s, &m, p);
        } else {
            ret = write_allocating(s, &m, off, p);
        }
        if (ret < 0) {
            return ret;
        }
        off += m.bytes;
        p += m.bytes;
        len -= m.bytes;
    }
    return flags & BDRV_REQ_FUA ? qcow2_flush(bs) : 0;
}
