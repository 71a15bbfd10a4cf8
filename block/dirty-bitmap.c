/* Dirty bitmaps: one bit per granule of a drive, each bitmap behind its own
 * mutex so guest writes and migration snapshots never see half an update. */
#include "block/dirty-bitmap.h"

#include <string.h>

#include "block-int.h"
#include "util/bitmap.h"

struct DirtyBitmap {
    BlockDriverState *bs;
    GMutex lock;            /* protects bits */
    uint32_t granularity;
    unsigned shift;         /* log2(granularity) */
    uint64_t size;          /* drive size in bytes */
    uint64_t nbits;
    unsigned long *bits;
    gint enabled;           /* atomic: marking checks it without the lock */
};

DirtyBitmap *bdrv_create_dirty_bitmap(BlockDriverState *bs, uint32_t granularity)
{
    if (granularity == 0) {
        granularity = DIRTY_GRANULARITY_DEFAULT;
    }
    g_return_val_if_fail(granularity >= 512 && (granularity & (granularity - 1)) == 0, NULL);

    DirtyBitmap *bm = g_new0(DirtyBitmap, 1);
    bm->bs = bs;
    g_mutex_init(&bm->lock);
    bm->granularity = granularity;
    bm->shift = (unsigned)__builtin_ctz(granularity);
    bm->size = (uint64_t)bdrv_getlength(bs);
    bm->nbits = (bm->size + granularity - 1) >> bm->shift;
    bm->bits = bitmap_new(bm->nbits);
    bm->enabled = 1;

    g_rw_lock_writer_lock(&bs->bitmaps_lock);
    bs->dirty_bitmaps = g_list_append(bs->dirty_bitmaps, bm);
    g_rw_lock_writer_unlock(&bs->bitmaps_lock);
    return bm;
}

static void dirty_bitmap_free(DirtyBitmap *bm)
{
    g_mutex_clear(&bm->lock);
    g_free(bm->bits);
    g_free(bm);
}

void bdrv_release_dirty_bitmap(DirtyBitmap *bm)
{
    if (!bm) {
        return;
    }
    BlockDriverState *bs = bm->bs;
    g_rw_lock_writer_lock(&bs->bitmaps_lock);
    bs->dirty_bitmaps = g_list_remove(bs->dirty_bitmaps, bm);
    g_rw_lock_writer_unlock(&bs->bitmaps_lock);
    dirty_bitmap_free(bm);
}

void bdrv_release_all_dirty_bitmaps(BlockDriverState *bs)
{
    g_rw_lock_writer_lock(&bs->bitmaps_lock);
    GList *list = bs->dirty_bitmaps;
    bs->dirty_bitmaps = NULL;
    g_rw_lock_writer_unlock(&bs->bitmaps_lock);
    g_list_free_full(list, (GDestroyNotify)dirty_bitmap_free);
}

void bdrv_dirty_bitmaps_mark(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    g_rw_lock_reader_lock(&bs->bitmaps_lock);
    for (GList *l = bs->dirty_bitmaps; l; l = l->next) {
        DirtyBitmap *bm = l->data;
        if (g_atomic_int_get(&bm->enabled)) {
            dirty_bitmap_mark(bm, off, len);
        }
    }
    g_rw_lock_reader_unlock(&bs->bitmaps_lock);
}

uint32_t dirty_bitmap_granularity(DirtyBitmap *bm)
{
    return bm->granularity;
}

void dirty_bitmap_set_enabled(DirtyBitmap *bm, bool enabled)
{
    g_atomic_int_set(&bm->enabled, enabled);
}

bool dirty_bitmap_is_enabled(DirtyBitmap *bm)
{
    return g_atomic_int_get(&bm->enabled);
}

/* Granules [*first, *first + *count) covering the byte range clipped to the
 * drive; false when nothing of it is inside. */
static bool granule_range(DirtyBitmap *bm, uint64_t off, uint64_t len,
                          uint64_t *first, uint64_t *count)
{
    if (len == 0 || off >= bm->size) {
        return false;
    }
    uint64_t end = len > bm->size - off ? bm->size : off + len;
    *first = off >> bm->shift;
    *count = ((end - 1) >> bm->shift) - *first + 1;
    return true;
}

void dirty_bitmap_mark(DirtyBitmap *bm, uint64_t off, uint64_t len)
{
    uint64_t first, count;

    if (granule_range(bm, off, len, &first, &count)) {
        g_mutex_lock(&bm->lock);
        bitmap_set_range(bm->bits, first, count);
        g_mutex_unlock(&bm->lock);
    }
}

uint64_t dirty_bitmap_dirty_bytes(DirtyBitmap *bm)
{
    g_mutex_lock(&bm->lock);
    uint64_t nset = bitmap_count(bm->bits, bm->nbits);
    bool last_set = bm->nbits && bitmap_test(bm->bits, bm->nbits - 1);
    g_mutex_unlock(&bm->lock);

    uint64_t bytes = nset << bm->shift;
    uint64_t partial = bm->size & (bm->granularity - 1);
    if (last_set && partial) {
        bytes -= bm->granularity - partial;
    }
    return bytes;
}

bool dirty_bitmap_is_dirty(DirtyBitmap *bm, uint64_t off)
{
    if (off >= bm->size) {
        return false;
    }
    g_mutex_lock(&bm->lock);
    bool dirty = bitmap_test(bm->bits, off >> bm->shift);
    g_mutex_unlock(&bm->lock);
    return dirty;
}

bool dirty_bitmap_test_and_clear(DirtyBitmap *bm, uint64_t off, uint64_t len)
{
    uint64_t first, count;

    if (!granule_range(bm, off, len, &first, &count)) {
        return false;
    }
    g_mutex_lock(&bm->lock);
    bool dirty = bitmap_test_range(bm->bits, first, count);
    if (dirty) {
        bitmap_clear_range(bm->bits, first, count);
    }
    g_mutex_unlock(&bm->lock);
    return dirty;
}

int64_t dirty_bitmap_next_dirty(DirtyBitmap *bm, uint64_t off)
{
    if (off >= bm->size) {
        return -1;
    }
    g_mutex_lock(&bm->lock);
    uint64_t bit = bitmap_find_next_set(bm->bits, bm->nbits, off >> bm->shift);
    g_mutex_unlock(&bm->lock);
    return bit < bm->nbits ? (int64_t)(bit << bm->shift) : -1;
}

/* Copy bits [first, first+count) of SRC to bits [0, count) of DST, whose
 * words the caller zeroed. */
static void copy_bits(unsigned long *dst, const unsigned long *src,
                      uint64_t first, uint64_t count)
{
    uint64_t end = first + count;
    for (uint64_t b = bitmap_find_next_set(src, end, first); b < end;
         b = bitmap_find_next_set(src, end, b + 1)) {
        dst[(b - first) / BITS_PER_LONG] |= 1UL << ((b - first) % BITS_PER_LONG);
    }
}

uint64_t dirty_bitmap_snapshot_and_clear(DirtyBitmap *bm, uint64_t off, uint64_t len,
                                         unsigned long *out)
{
    uint64_t first, count;

    if (!granule_range(bm, off, len, &first, &count)) {
        return 0;
    }
    memset(out, 0, BITMAP_WORDS(count) * sizeof(unsigned long));
    g_mutex_lock(&bm->lock);
    copy_bits(out, bm->bits, first, count);
    bitmap_clear_range(bm->bits, first, count);
    g_mutex_unlock(&bm->lock);
    return count;
}

void dirty_bitmap_set_all(DirtyBitmap *bm)
{
    g_mutex_lock(&bm->lock);
    bitmap_set_range(bm->bits, 0, bm->nbits);
    g_mutex_unlock(&bm->lock);
}

void dirty_bitmap_clear_all(DirtyBitmap *bm)
{
    g_mutex_lock(&bm->lock);
    bitmap_clear_range(bm->bits, 0, bm->nbits);
    g_mutex_unlock(&bm->lock);
}
