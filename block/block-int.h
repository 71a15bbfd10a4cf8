/* Private to block/: the drive structure shared by the generic layer, the
 * drivers and the dirty bitmaps. */
#ifndef BLOCK_BLOCK_INT_H
#define BLOCK_BLOCK_INT_H

#include "block/block.h"

/* Alignment of offsets, lengths and buffers for O_DIRECT (cache=none).
 * 4 KiB covers every logical block size in use. */
#define BDRV_DIRECT_ALIGN 4096

struct BlockDriverState {
    /* Copies of the options; opts' strings point at these. */
    char *id;
    char *filename;
    char *format;
    BlockOptions opts;

    const BlockDriver *drv;
    void *opaque;
    uint64_t size;          /* fixed at open */
    size_t align;           /* 1, or BDRV_DIRECT_ALIGN for cache=none */

    /* cache=none: writes hold it shared, read-modify-write cycles hold it
     * exclusive, so no write lands between an RMW's read and its write. */
    GRWLock rmw_lock;

    GRWLock bitmaps_lock;   /* protects dirty_bitmaps (the list) */
    GList *dirty_bitmaps;   /* of DirtyBitmap */

    bool created;           /* create.c: this open made the file ... */
    BdrvFileId created_id;  /* ... which is this one */
};

extern const BlockDriver bdrv_raw;

/* create.c: the file a driver's create path builds its image in, under
 * the rule every format shares: a path that does not exist becomes a new
 * file (remembered in BS); an existing empty one is taken as it is; an
 * existing non-empty one is refused, or erased to 0 bytes with
 * opts->overwrite.  Returns an O_RDWR fd the driver sizes and fills and
 * then closes, or -1 with errp set (nothing touched). */
int bdrv_create_file(BlockDriverState *bs, const BlockOptions *opts, GError **errp);
/* create.c: a failed open removes the file it made (if it made one). */
void bdrv_create_undo(BlockDriverState *bs);

/* dirty-bitmap.c: mark [off, off+len) in every enabled bitmap of BS. */
void bdrv_dirty_bitmaps_mark(BlockDriverState *bs, uint64_t off, uint64_t len);
/* dirty-bitmap.c: release every bitmap still attached (drive closing). */
void bdrv_release_all_dirty_bitmaps(BlockDriverState *bs);

#endif
