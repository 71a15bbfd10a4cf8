/* qcow2 reads: each run of guest clusters is mapped under the lock, then
 * read without it: data clusters from the image (holding a slot so the
 * cluster cannot be reused meanwhile), compressed clusters inflated, zero
 * clusters as zeroes, unallocated ones from the backing chain (zeroes past
 * its end, or without one). */
#include <errno.h>
#include <inttypes.h>

#include "qcow2.h"

/* Messages about unreadable data per image (the rest are counted only). */
#define MAX_DATA_REPORTS 8

int qcow2_read_backing(Qcow2State *s, uint64_t off, uint8_t *buf, uint64_t len)
{
    BlockDriverState *b = s->bs->backing;
    uint64_t below = b ? (uint64_t)bdrv_getlength(b) : 0;
    uint64_t n = off < below ? MIN(len, below - off) : 0;
    int ret = n ? bdrv_pread(b, off, buf, n) : 0;

    memset(buf + n, 0, len - n);
    return ret;
}

int qcow2_read_compressed(Qcow2State *s, uint64_t entry, uint8_t *cluster)
{
    uint64_t off, len;
    qcow2_compressed_range(s, entry, &off, &len);
    uint8_t *src = g_malloc(len);
    int ret = bdrv_pread(s->file, off, src, len);

    if (ret == 0) {
        ret = qcow2_decompress(s, src, len, cluster);
    }
    if (ret == -EIO && g_atomic_int_add(&s->data_reports, 1) < MAX_DATA_REPORTS) {
        g_warning("qcow2 image '%s': the compressed cluster at host offset %#" PRIx64
                  " does not inflate to a cluster", s->bs->filename, off);
    }
    g_free(src);
    return ret;
}

/* Part of one compressed cluster, starting IN_CLUSTER bytes into it. */
static int read_compressed_part(Qcow2State *s, uint64_t entry, uint64_t in_cluster,
                                uint8_t *buf, uint64_t len)
{
    uint8_t *cluster = g_malloc(s->cluster_size);
    int ret = qcow2_read_compressed(s, entry, cluster);

    if (ret == 0) {
        memcpy(buf, cluster + in_cluster, len);
    }
    g_free(cluster);
    return ret;
}

/* Reads the mapped run M at OFF; called with the lock held, returns
 * without it. */
static int read_mapped(Qcow2State *s, const Qcow2Mapping *m, uint64_t off, uint8_t *buf)
{
    uint64_t coff, clen;
    int slot, ret;

    switch (m->type) {
    case QCOW2_CLUSTER_NORMAL:
        slot = qcow2_slot_take(s, m->host, m->host + m->bytes);
        g_mutex_unlock(&s->lock);
        ret = bdrv_pread(s->file, m->host, buf, m->bytes);
        qcow2_slot_release(s, slot);
        return ret;
    case QCOW2_CLUSTER_COMPRESSED:
        qcow2_compressed_range(s, m->entry, &coff, &clen);
        slot = qcow2_slot_take(s, coff, coff + clen);
        g_mutex_unlock(&s->lock);
        ret = read_compressed_part(s, m->entry, off & (s->cluster_size - 1), buf, m->bytes);
        qcow2_slot_release(s, slot);
        return ret;
    case QCOW2_CLUSTER_UNALLOCATED:
        g_mutex_unlock(&s->lock);
        return qcow2_read_backing(s, off, buf, m->bytes);
    default:
        g_mutex_unlock(&s->lock);
        memset(buf, 0, m->bytes);
        return 0;
    }
}

int qcow2_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len)
{
    Qcow2State *s = bdrv_opaque(bs);
    uint8_t *p = buf;

    while (len > 0) {
        Qcow2Mapping m;
        g_mutex_lock(&s->lock);
        int ret = qcow2_map(s, off, len, true, &m);
        if (ret < 0) {
            g_mutex_unlock(&s->lock);
            return ret;
        }
        ret = read_mapped(s, &m, off, p);
        if (ret < 0) {
            return ret;
        }
        off += m.bytes;
        p += m.bytes;
        len -= m.bytes;
    }
    return 0;
}
