/* Block layer: named drives over pluggable BlockDrivers.
 *
 * All I/O functions are thread-safe and may be called concurrently from the
 * guest (workload, NBD), the migration thread and the main loop.  They
 * return 0 on success or a negative errno.  Every successful pwrite /
 * pwrite_zeroes / discard marks every enabled dirty bitmap of the drive
 * *after* the data reached the driver, so a reader that clears dirty bits
 * before reading never misses a write. */
#ifndef BLOCK_BLOCK_H
#define BLOCK_BLOCK_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct BlockDriverState BlockDriverState;

/* Request flags */
#define BDRV_REQ_MAY_UNMAP 0x1   /* write-zeroes may deallocate (punch hole) */
#define BDRV_REQ_FUA       0x2   /* write is durable on return */
#define BDRV_REQ_NO_FALLBACK 0x4 /* write-zeroes must be fast or fail -ENOTSUP */

typedef struct BlockOptions {
    const char *id;          /* drive name, unique */
    const char *filename;
    const char *format;      /* "raw" (default) */
    uint64_t size;           /* with create: size of the new file; 0 = unset */
    bool create;             /* a new file of size (block/create.c has the rule) */
    bool overwrite;          /* with create: erase an existing non-empty file */
    bool cache_none;         /* O_DIRECT; buffers must be bdrv_buf_align()ed */
    bool aio_native;         /* libaio instead of plain pread/pwrite */
    bool read_only;
} BlockOptions;

/* The interface a format driver implements.  Offsets/lengths are already
 * checked against the size by the generic layer. */
typedef struct BlockDriver {
    const char *format_name;
    size_t instance_size;
    int (*open)(BlockDriverState *bs, const BlockOptions *opts, GError **errp);
    void (*close)(BlockDriverState *bs);
    int64_t (*getlength)(BlockDriverState *bs);
    int (*pread)(BlockDriverState *bs, uint64_t off, void *buf, size_t len);
    int (*pwrite)(BlockDriverState *bs, uint64_t off, const void *buf, size_t len, int flags);
    int (*flush)(BlockDriverState *bs);
    int (*pwrite_zeroes)(BlockDriverState *bs, uint64_t off, uint64_t len, int flags);
    int (*discard)(BlockDriverState *bs, uint64_t off, uint64_t len);
    /* Status of the run starting at OFF, at most LEN long: sets *pnum to the
     * run length (> 0) and *is_data to whether it is allocated data. */
    int (*block_status)(BlockDriverState *bs, uint64_t off, uint64_t len,
                        uint64_t *pnum, bool *is_data);
    /* Bytes actually allocated on the host (st_blocks * 512 for files). */
    int64_t (*allocated_bytes)(BlockDriverState *bs);
} BlockDriver;

/* Open a drive and register it under opts->id.  Fails if the id is taken,
 * the format is unknown or the file cannot be opened/created.  With
 * create, an existing file is used only when it is empty (0 bytes) or
 * overwrite is set; a file the open made is removed again if it fails. */
BlockDriverState *bdrv_open(const BlockOptions *opts, GError **errp);
/* Unregister and close; releases its dirty bitmaps. */
void bdrv_close(BlockDriverState *bs);
void bdrv_close_all(void);

BlockDriverState *bdrv_find(const char *id);
/* Drives in the order they were opened; the list is owned by the caller
 * (g_list_free), the elements are not. */
GList *bdrv_list(void);

const char *bdrv_get_id(BlockDriverState *bs);
const char *bdrv_get_filename(BlockDriverState *bs);
const char *bdrv_get_format(BlockDriverState *bs);
bool bdrv_is_read_only(BlockDriverState *bs);
bool bdrv_is_cache_none(BlockDriverState *bs);
bool bdrv_is_aio_native(BlockDriverState *bs);
int64_t bdrv_getlength(BlockDriverState *bs);
int64_t bdrv_allocated_bytes(BlockDriverState *bs);

/* Buffer alignment the drive needs (4096 for cache=none, else 1) and an
 * allocator honouring it (free with bdrv_buf_free). */
size_t bdrv_buf_align(BlockDriverState *bs);
void *bdrv_buf_alloc(BlockDriverState *bs, size_t len);
void bdrv_buf_free(void *buf);

/* Requests past the end fail with -EINVAL (reads of the tail beyond EOF are
 * not allowed either).  cache=none drives accept unaligned requests; the
 * generic layer bounces them through an aligned buffer. */
int bdrv_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len);
int bdrv_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, size_t len, int flags);
int bdrv_flush(BlockDriverState *bs);
/* Writes zeroes; with BDRV_REQ_MAY_UNMAP the range becomes a hole where the
 * host file system can (PUNCH_HOLE, then ZERO_RANGE, then plain zeros). */
int bdrv_pwrite_zeroes(BlockDriverState *bs, uint64_t off, uint64_t len, int flags);
/* Advisory deallocation; data reads back as zeroes for the raw driver. */
int bdrv_discard(BlockDriverState *bs, uint64_t off, uint64_t len);
int bdrv_block_status(BlockDriverState *bs, uint64_t off, uint64_t len,
                      uint64_t *pnum, bool *is_data);

/* Which file on the host (st_dev, st_ino). */
typedef struct BdrvFileId {
    uint64_t dev;
    uint64_t ino;
} BdrvFileId;
/* Whether opening BS made a new file (create on a path that did not exist;
 * not when it grew an empty file or erased one); its identity goes to *ID
 * so a failed start-up can remove exactly that file later. */
bool bdrv_created_file(BlockDriverState *bs, BdrvFileId *id);
/* Remove PATH if it still is the file ID: never a file put there since. */
void bdrv_remove_created_file(const char *path, const BdrvFileId *id);

/* Driver registry (raw is built in). */
void bdrv_register_driver(const BlockDriver *drv);
/* Driver-private state of BS (instance_size bytes, zeroed at open). */
void *bdrv_opaque(BlockDriverState *bs);

#endif
