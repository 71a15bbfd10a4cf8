/* vmdk reads: grain tables (cached, direct-mapped, read outside the
 * lock), a grain's kind and place, reads of plain grains (runs of grains
 * that follow each other in the file in one request) and of compressed
 * ones (marker, then one zlib stream that must inflate to the grain),
 * and block status.  A bad entry fails the request that meets it with
 * EIO and a warning naming the guest offset and what is wrong. */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <zlib.h>

#include "vmdk.h"

static int bad_grain(VmdkState *s, uint64_t grain, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
static int bad_grain(VmdkState *s, uint64_t grain, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_warning("vmdk image '%s': guest offset %" PRIu64 " (grain %" PRIu64 "): %s",
              s->bs->filename, grain * s->grain_bytes, grain, msg);
    return -EIO;
}

static bool in_file(VmdkState *s, uint64_t off, uint64_t len)
{
    return off <= s->file_size && len <= s->file_size - off;
}

/* ---- Grain tables ---- */

static bool cached_entry(VmdkState *s, uint32_t gdi, uint32_t gti, uint32_t *entry)
{
    VmdkGtSlot *slot = &s->cache[gdi % VMDK_GT_CACHE_SLOTS];
    bool hit;

    g_mutex_lock(&s->lock);
    hit = slot->gd_index_plus1 == gdi + 1;
    if (hit) {
        *entry = slot->table[gti];
    }
    g_mutex_unlock(&s->lock);
    return hit;
}

static void cache_store(VmdkState *s, uint32_t gdi, uint32_t *table)
{
    VmdkGtSlot *slot = &s->cache[gdi % VMDK_GT_CACHE_SLOTS];

    g_mutex_lock(&s->lock);
    g_free(slot->table);
    slot->table = table;
    slot->gd_index_plus1 = gdi + 1;
    g_mutex_unlock(&s->lock);
}

static int load_table(VmdkState *s, uint64_t grain, uint32_t gdi, uint32_t **out)
{
    uint64_t off = (uint64_t)s->gd[gdi] * VMDK_SECTOR;
    size_t len = (size_t)s->gtes_per_gt * sizeof(uint32_t);

    if (!in_file(s, off, len)) {
        return bad_grain(s, grain, "its grain table (sector %" PRIu32 ") lies past the end "
                         "of the file", s->gd[gdi]);
    }
    uint32_t *table = g_malloc(len);
    int ret = bdrv_pread(s->file, off, table, len);
    if (ret < 0) {
        g_free(table);
        return ret;
    }
    for (uint32_t i = 0; i < s->gtes_per_gt; i++) {
        table[i] = GUINT32_FROM_LE(table[i]);
    }
    *out = table;
    return 0;
}

/* The grain table entry of GRAIN (0 when its table is not allocated). */
static int table_entry(VmdkState *s, uint64_t grain, uint32_t *entry)
{
    uint32_t gdi = (uint32_t)(grain / s->gtes_per_gt);
    uint32_t gti = (uint32_t)(grain % s->gtes_per_gt);
    uint32_t *table = NULL;

    if (s->gd[gdi] == 0) {
        *entry = 0;
        return 0;
    }
    if (cached_entry(s, gdi, gti, entry)) {
        return 0;
    }
    int ret = load_table(s, grain, gdi, &table);
    if (ret == 0) {
        *entry = table[gti];
        cache_store(s, gdi, table);
    }
    return ret;
}

void vmdk_cache_free(VmdkState *s)
{
    for (int i = 0; i < VMDK_GT_CACHE_SLOTS; i++) {
        g_clear_pointer(&s->cache[i].table, g_free);
        s->cache[i].gd_index_plus1 = 0;
    }
}

/* Bytes of GRAIN inside the disk (the last one may be cut short). */
static uint64_t grain_len(VmdkState *s, uint64_t grain)
{
    return MIN(s->grain_bytes, s->size - grain * s->grain_bytes);
}

int vmdk_grain(VmdkState *s, uint64_t grain, VmdkGrainKind *kind, uint64_t *sector)
{
    uint32_t entry = 0;
    int ret = table_entry(s, grain, &entry);

    if (ret < 0) {
        return ret;
    }
    *sector = entry;
    if (entry == 0 || (entry == VMDK_GTE_ZERO && s->zero_grain)) {
        *kind = entry ? VMDK_GRAIN_ZERO : VMDK_GRAIN_UNALLOCATED;
        return 0;
    }
    *kind = VMDK_GRAIN_DATA;
    /* Plain grains must lie in the file; a compressed one is checked when
     * its marker is read. */
    if (!s->compressed && !in_file(s, *sector * VMDK_SECTOR, grain_len(s, grain))) {
        return bad_grain(s, grain, "its data (sector %" PRIu64 ") lies past the end of the "
                         "file", *sector);
    }
    return 0;
}

/* ---- Compressed grains ---- */

static int inflate_grain(VmdkState *s, uint64_t grain, const uint8_t *src, uint32_t len,
                         uint8_t *dst)
{
    uLongf out = (uLongf)s->grain_bytes;
    int zr = uncompress(dst, &out, src, len);

    if (zr != Z_OK) {
        return bad_grain(s, grain, "its compressed data does not inflate (zlib error %d)", zr);
    }
    if (out < grain_len(s, grain)) {
        return bad_grain(s, grain, "its compressed data inflates to %lu bytes, short of the "
                         "grain", (unsigned long)out);
    }
    memset(dst + out, 0, s->grain_bytes - out);
    return 0;
}

/* The whole grain at SECTOR into DST (grain_bytes). */
static int read_compressed(VmdkState *s, uint64_t grain, uint64_t sector, uint8_t *dst)
{
    uint64_t off = sector * VMDK_SECTOR;
    VmdkMarker m;

    if (!in_file(s, off, sizeof(m))) {
        return bad_grain(s, grain, "its marker (sector %" PRIu64 ") lies past the end of the "
                         "file", sector);
    }
    int ret = bdrv_pread(s->file, off, &m, sizeof(m));
    uint32_t len = GUINT32_FROM_LE(m.size);
    if (ret < 0) {
        return ret;
    }
    if (GUINT64_FROM_LE(m.val) != grain * (s->grain_bytes / VMDK_SECTOR)) {
        return bad_grain(s, grain, "its marker names sector %" PRIu64, GUINT64_FROM_LE(m.val));
    }
    if (len == 0 || len > 2 * s->grain_bytes || !in_file(s, off + 12, len)) {
        return bad_grain(s, grain, "its marker says %" PRIu32 " bytes of compressed data "
                         "(1 to twice the grain, inside the file)", len);
    }
    g_autofree uint8_t *src = g_malloc(len);
    ret = bdrv_pread(s->file, off + 12, src, len);
    return ret < 0 ? ret : inflate_grain(s, grain, src, len, dst);
}

/* ---- Reads ---- */

/* A run of plain grains at consecutive sectors from GRAIN, up to LEN
 * bytes from IN (the offset inside the first grain): its byte count. */
static int plain_run(VmdkState *s, uint64_t grain, uint64_t sector, uint64_t in, uint64_t len,
                     uint64_t *run)
{
    uint64_t gs = s->grain_bytes / VMDK_SECTOR;

    *run = MIN(len, s->grain_bytes - in);
    while (*run < len) {
        VmdkGrainKind kind;
        uint64_t next;
        int ret = vmdk_grain(s, grain + 1, &kind, &next);
        if (ret < 0 || kind != VMDK_GRAIN_DATA || next != sector + gs) {
            break;
        }
        grain++;
        sector = next;
        *run += MIN(len - *run, s->grain_bytes);
    }
    return 0;
}

/* What lies at OFF (at most LEN bytes): read into BUF; *done gets how
 * much was handled. */
static int read_piece(VmdkState *s, uint64_t off, uint8_t *buf, uint64_t len, uint64_t *done)
{
    uint64_t grain = off / s->grain_bytes, in = off % s->grain_bytes, sector;
    VmdkGrainKind kind;
    int ret = vmdk_grain(s, grain, &kind, &sector);

    *done = MIN(len, s->grain_bytes - in);
    if (ret < 0 || kind != VMDK_GRAIN_DATA) {
        memset(buf, 0, *done);
        return ret;
    }
    if (s->compressed) {
        g_autofree uint8_t *g = g_malloc(s->grain_bytes);
        ret = read_compressed(s, grain, sector, g);
        memcpy(buf, g + in, *done);
        return ret;
    }
    plain_run(s, grain, sector, in, len, done);
    return bdrv_pread(s->file, sector * VMDK_SECTOR + in, buf, *done);
}

int vmdk_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len)
{
    VmdkState *s = bdrv_opaque(bs);
    uint8_t *p = buf;

    while (len > 0) {
        uint64_t done;
        int ret = read_piece(s, off, p, len, &done);
        if (ret < 0) {
            return ret;
        }
        off += done;
        p += done;
        len -= done;
    }
    return 0;
}

/* ---- Block status ---- */

static BdrvStatus grain_status(VmdkGrainKind kind)
{
    return kind == VMDK_GRAIN_DATA ? BDRV_STATUS_DATA
         : kind == VMDK_GRAIN_ZERO ? BDRV_STATUS_ZERO : BDRV_STATUS_BACKING;
}

/* Grains from GRAIN that one answer covers: the rest of its grain table
 * when the directory has none (a large empty disk is walked quickly),
 * else the grain itself. */
static uint64_t grains_covered(VmdkState *s, uint64_t grain)
{
    return s->gd[grain / s->gtes_per_gt] ? 1 : s->gtes_per_gt - grain % s->gtes_per_gt;
}

int vmdk_block_status(BlockDriverState *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                      BdrvStatus *status)
{
    VmdkState *s = bdrv_opaque(bs);
    uint64_t grain = off / s->grain_bytes, sector;
    VmdkGrainKind kind;
    int ret = vmdk_grain(s, grain, &kind, &sector);

    if (ret < 0) {
        return ret;
    }
    *status = grain_status(kind);
    *pnum = grains_covered(s, grain) * s->grain_bytes - off % s->grain_bytes;
    grain += grains_covered(s, grain);
    while (*pnum < len) {
        VmdkGrainKind next;
        if (vmdk_grain(s, grain, &next, &sector) < 0 || grain_status(next) != *status) {
            break;
        }
        *pnum += grains_covered(s, grain) * s->grain_bytes;
        grain += grains_covered(s, grain);
    }
    *pnum = MIN(*pnum, len);
    return 0;
}
