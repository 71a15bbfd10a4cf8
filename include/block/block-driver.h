/* Block layer, the drivers' side: the BlockDriver interface a format or
 * protocol driver implements, and what a driver may ask of the generic
 * layer (its state, its children, opening a backing image).
 *
 * A protocol driver ("file") opens opts->filename itself.  A format driver
 * (raw, qcow2) finds its image through bdrv_file_child(bs), a protocol node
 * the generic layer opened for it, and reads and writes it with the users'
 * bdrv_pread / bdrv_pwrite / bdrv_flush of block.h, which bounce unaligned
 * requests for cache=none.  Users never include this header. */
#ifndef BLOCK_BLOCK_DRIVER_H
#define BLOCK_BLOCK_DRIVER_H

#include "block/block.h"

/* Bytes a prober sees: the first sector of the image. */
#define BDRV_PROBE_BUF_SIZE 512

/* Details a driver reports about its image (bdrv_get_* in block.h). */
typedef struct BlockDriverInfo {
    uint32_t cluster_size;       /* 0: the format has no allocation unit */
    const char *backing_file;    /* as the image names it; NULL without */
} BlockDriverInfo;

/* Offsets/lengths reaching a driver are already checked against the size
 * by the generic layer; a read-only node gets no write requests. */
typedef struct BlockDriver {
    const char *format_name;
    size_t instance_size;
    bool is_protocol;            /* opens opts->filename itself */
    /* How sure (0..100) the driver is that BUF, the first LEN bytes of an
     * image, is its format; NULL for drivers format=auto never picks. */
    int (*probe)(const uint8_t *buf, size_t len);
    /* create=on: make the image at opts->filename before it is opened,
     * in the file bdrv_create_file hands out (recording in *MADE whether
     * it made a new one, so a failed open can remove it). */
    int (*create)(const BlockOptions *opts, BdrvCreatedFile *made, GError **errp);
    int (*open)(BlockDriverState *bs, const BlockOptions *opts, GError **errp);
    void (*close)(BlockDriverState *bs);
    int64_t (*getlength)(BlockDriverState *bs);
    int (*pread)(BlockDriverState *bs, uint64_t off, void *buf, size_t len);
    /* bdrv_map_read / bdrv_unmap_read; NULL: this node cannot map. */
    const void *(*map_read)(BlockDriverState *bs, uint64_t off, size_t len);
    void (*unmap_read)(BlockDriverState *bs, const void *p, size_t len);
    int (*pwrite)(BlockDriverState *bs, uint64_t off, const void *buf, size_t len, int flags);
    int (*flush)(BlockDriverState *bs);
    int (*pwrite_zeroes)(BlockDriverState *bs, uint64_t off, uint64_t len, int flags);
    int (*discard)(BlockDriverState *bs, uint64_t off, uint64_t len);
    /* Status of the run starting at OFF in this node's own layer, at most
     * LEN long: *pnum gets the run length (> 0), *status DATA, ZERO, or
     * BACKING for "not allocated here" (the generic layer looks below, or
     * answers UNALLOCATED).  NULL: everything is DATA. */
    int (*block_status)(BlockDriverState *bs, uint64_t off, uint64_t len,
                        uint64_t *pnum, BdrvStatus *status);
    /* Bytes actually allocated on the host (st_blocks * 512 for files). */
    int64_t (*allocated_bytes)(BlockDriverState *bs);
    void (*get_info)(BlockDriverState *bs, BlockDriverInfo *info);
    /* Write only where this layer is unallocated at the moment the write
     * lands (bdrv_pwrite_unallocated): the check and the allocation must
     * be one step under the driver's allocation serialisation, so that a
     * concurrent guest write always wins.  NULL: not supported. */
    int (*pwrite_unallocated)(BlockDriverState *bs, uint64_t off, const void *buf, size_t len);
    /* Make the image header name NAME (format FORMAT) as its backing file,
     * or none when NAME is NULL, crash-safely: after everything written
     * so far is durable, and such that a crash leaves the old header or
     * the new one.  Requests are drained meanwhile.  NULL: the format
     * names no backing files. */
    int (*change_backing_file)(BlockDriverState *bs, const char *name, const char *format);
    /* Create the metadata writes to [off, off+len) will need (qcow2: the
     * L2 tables), so those writes allocate data only.  NULL: nothing to
     * prepare. */
    int (*prepare_write)(BlockDriverState *bs, uint64_t off, uint64_t len);
} BlockDriver;

/* Driver-private state of BS (instance_size bytes, zeroed at open). */
void *bdrv_opaque(BlockDriverState *bs);

/* The protocol node under a format node (NULL for a protocol node). */
BlockDriverState *bdrv_file_child(BlockDriverState *bs);

/* Open FILENAME read-only as BS's backing node (format FORMAT, NULL to
 * probe; cache and aio modes inherited from BS), after checking that the
 * chain does not loop.  A relative FILENAME is relative to the directory of
 * BS's image.  Returns the backing node, which bdrv_close(BS) closes. */
BlockDriverState *bdrv_open_backing(BlockDriverState *bs, const char *filename,
                                    const char *format, GError **errp);

/* create=on: the file a driver's create builds its image in, under the
 * rule every format shares (block/create.c): a path that does not exist
 * becomes a new file (recorded in *MADE); an existing empty one is taken
 * as it is; an existing non-empty one is refused, or erased to 0 bytes
 * with opts->overwrite.  Returns an O_RDWR fd the driver fills and then
 * closes, or -1 with errp set (nothing touched). */
int bdrv_create_file(const BlockOptions *opts, BdrvCreatedFile *made, GError **errp);

#endif
