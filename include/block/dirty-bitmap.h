/* Dirty bitmaps: which parts of a drive the guest wrote since a point.
 * Thread-safe: marks come from guest I/O threads while the migration thread
 * takes snapshots. */
#ifndef BLOCK_DIRTY_BITMAP_H
#define BLOCK_DIRTY_BITMAP_H

#include "block/block.h"

#define DIRTY_GRANULARITY_DEFAULT (64 * 1024)

typedef struct DirtyBitmap DirtyBitmap;

/* New, enabled, all-clean bitmap attached to BS.  GRANULARITY is a power of
 * two >= 512; 0 selects DIRTY_GRANULARITY_DEFAULT. */
DirtyBitmap *bdrv_create_dirty_bitmap(BlockDriverState *bs, uint32_t granularity);
/* Detach and free. */
void bdrv_release_dirty_bitmap(DirtyBitmap *bm);

uint32_t dirty_bitmap_granularity(DirtyBitmap *bm);
/* Mark [off, off+len) (rounded out to granularity).  Called by the block
 * layer; exposed for tests. */
void dirty_bitmap_mark(DirtyBitmap *bm, uint64_t off, uint64_t len);
/* Number of dirty bytes (dirty bits x granularity, clipped to drive size). */
uint64_t dirty_bitmap_dirty_bytes(DirtyBitmap *bm);
bool dirty_bitmap_is_dirty(DirtyBitmap *bm, uint64_t off);
/* Atomically: report whether any bit in [off, off+len) is dirty and clear
 * them all. */
bool dirty_bitmap_test_and_clear(DirtyBitmap *bm, uint64_t off, uint64_t len);
/* Byte offset of the first dirty granule at or after OFF, or -1. */
int64_t dirty_bitmap_next_dirty(DirtyBitmap *bm, uint64_t off);
/* Atomically copy the bits covering [off, off+len) into OUT (one bit per
 * granule, bit 0 = the granule containing OFF) and clear them; returns the
 * number of bits copied.  OUT must hold BITMAP_WORDS(len/granularity+1). */
uint64_t dirty_bitmap_snapshot_and_clear(DirtyBitmap *bm, uint64_t off, uint64_t len,
                                         unsigned long *out);
/* Mark every granule dirty / clean. */
void dirty_bitmap_set_all(DirtyBitmap *bm);
void dirty_bitmap_clear_all(DirtyBitmap *bm);
/* A disabled bitmap keeps its bits but is not marked by writes (new bitmaps
 * are enabled). */
void dirty_bitmap_set_enabled(DirtyBitmap *bm, bool enabled);
bool dirty_bitmap_is_enabled(DirtyBitmap *bm);

#endif
