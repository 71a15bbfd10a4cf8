/* Block layer, the users' API: named drives, their I/O, and what each byte
 * of a drive is made of (block status).
 *
 * A drive is a chain of nodes (QEMU's BlockDriverState model, simplified):
 * a format node (raw, qcow2) over a protocol node (the file), with an
 * optional backing node below it, opened read-only.  Users see only the
 * drive, i.e. the root node, registered under its id; the nodes below it
 * are anonymous.  Drivers implement include/block/block-driver.h.
 *
 * All I/O functions are thread-safe and may be called concurrently from the
 * guest (workload, NBD), the migration thread and the main loop.  They
 * return 0 on success or a negative errno.  Every successful pwrite /
 * pwrite_zeroes / discard marks every enabled dirty bitmap of the drive
 * *after* the data reached the driver, so a reader that clears dirty bits
 * before reading never misses a write; then it runs the drive's write
 * notifiers (below) before it returns. */
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
    /* "raw" (default), "qcow2", or "auto": probe the header (a probed raw
     * image refuses guest writes that would make it look like another
     * format). */
    const char *format;
    uint64_t size;           /* with create: size of the new image; 0 = unset;
                              * without: must match the image when set */
    bool create;             /* make a new image: a new file, or an existing
                              * empty one (block/create.c has the rule) */
    bool overwrite;          /* with create: erase an existing non-empty file */
    bool cache_none;         /* O_DIRECT; buffers must be bdrv_buf_align()ed */
    /* Files without cache_none: each write starts its own writeback at
     * once, and past a window the writer waits for the oldest to reach
     * the disk (block/write-behind.h), so the disk works while more is
     * written and a flush at the end finds little left: for bulk copies. */
    bool write_behind;
    bool aio_native;         /* libaio instead of plain pread/pwrite */
    bool read_only;
    /* qcow2: the backing image.  With create it is recorded in the new
     * image; without, it replaces the one the header names.  Relative
     * names are relative to the image's directory, as in QEMU. */
    const char *backing;
    const char *backing_format;   /* "raw", "qcow2"; NULL: header, else probe */
    uint32_t cluster_size;   /* qcow2 create: 512 .. 2 MiB, power of two;
                              * 0 = 64 KiB */
    /* NBD (a filename nbd://, nbd+unix://, ...): seconds a connect or a
     * request may take before it fails with EIO; 0 = the driver's default
     * (block/nbd-int.h).  A backing node inherits it. */
    uint32_t timeout;
    /* NBD: the id of a tls-creds-x509 or tls-creds-psk object (endpoint
     * client) whose files TLS uses; the URI must then be nbds:// or
     * nbds+unix://.  NULL: an nbds:// URI uses libnbd's defaults.  A
     * backing node inherits it. */
    const char *tls_creds;
    /* Data a read gets from the backing chain is also written into the
     * drive's own layer (whole clusters, only where it is still
     * unallocated); needs a writable drive. */
    bool copy_on_read;
    /* NBD: connections to a server that allows several (multi-conn),
     * 1 .. 16; 0 = the driver's default (4).  A backing node inherits it. */
    uint32_t connections;
} BlockOptions;

/* Open a drive and register it under opts->id.  Fails if the id is taken,
 * the format is unknown or the image (or its backing chain) cannot be
 * opened/created.  With create, an existing file is used only when it is
 * empty (0 bytes) or overwrite is set; a file the open made is removed
 * again if it fails. */
BlockDriverState *bdrv_open(const BlockOptions *opts, GError **errp);
/* Unregister and close; releases its dirty bitmaps and its backing chain. */
void bdrv_close(BlockDriverState *bs);
void bdrv_close_all(void);

/* Which file on the host (st_dev, st_ino). */
typedef struct BdrvFileId {
    uint64_t dev;
    uint64_t ino;
} BdrvFileId;
/* What create=on did to the file: made it new (identity ID), or not. */
typedef struct BdrvCreatedFile {
    bool made;
    BdrvFileId id;
} BdrvCreatedFile;
/* Whether opening BS made a new file (create on a path that did not exist;
 * not when it grew an empty file or erased one); its identity goes to *ID
 * so a failed start-up can remove exactly that file later. */
bool bdrv_created_file(BlockDriverState *bs, BdrvFileId *id);
/* Remove PATH if it still is the file ID: never a file put there since. */
void bdrv_remove_created_file(const char *path, const BdrvFileId *id);

BlockDriverState *bdrv_find(const char *id);
/* Drives in the order they were opened; the list is owned by the caller
 * (g_list_free), the elements are not. */
GList *bdrv_list(void);

const char *bdrv_get_id(BlockDriverState *bs);        /* NULL below a drive */
const char *bdrv_get_filename(BlockDriverState *bs);
const char *bdrv_get_format(BlockDriverState *bs);    /* "raw", "qcow2" */
bool bdrv_is_read_only(BlockDriverState *bs);
bool bdrv_is_cache_none(BlockDriverState *bs);
bool bdrv_is_aio_native(BlockDriverState *bs);
int64_t bdrv_getlength(BlockDriverState *bs);
/* Bytes the image file occupies on its file system (st_blocks * 512). */
int64_t bdrv_allocated_bytes(BlockDriverState *bs);

/* The backing chain: BS's backing node (NULL at the bottom), its depth
 * (0 for an image without backing), the backing file name as the image
 * names it (NULL without), and the format's allocation unit (the cluster
 * size for qcow2; 0 when the format has none). */
BlockDriverState *bdrv_get_backing(BlockDriverState *bs);
int bdrv_get_backing_depth(BlockDriverState *bs);
const char *bdrv_get_backing_filename(BlockDriverState *bs);
uint32_t bdrv_get_cluster_size(BlockDriverState *bs);

/* Buffer alignment the drive needs (4096 for cache=none, else 1) and an
 * allocator honouring it (free with bdrv_buf_free). */
size_t bdrv_buf_align(BlockDriverState *bs);
void *bdrv_buf_alloc(BlockDriverState *bs, size_t len);
void bdrv_buf_free(void *buf);

/* Requests past the end fail with -EINVAL (reads of the tail beyond EOF are
 * not allowed either).  cache=none drives accept unaligned requests; the
 * generic layer bounces them through an aligned buffer. */
int bdrv_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len);
/* [off, off+len) of a raw image on a local file (not cache=none), mapped
 * read-only with every page read in: a read without a copy out of the
 * page cache, for bulk readers (blkmig copy).  NULL when the drive cannot
 * map (another format, NBD, cache=none, copy-on-read) or a page cannot be
 * read: bdrv_pread then says why.  Should the file shrink while mapped,
 * touching a page past its new end raises SIGBUS (copy/map-guard.c turns
 * that into a read error).  Give every mapping back with bdrv_unmap_read. */
const void *bdrv_map_read(BlockDriverState *bs, uint64_t off, size_t len);
void bdrv_unmap_read(BlockDriverState *bs, const void *p, size_t len);
int bdrv_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, size_t len, int flags);
int bdrv_flush(BlockDriverState *bs);
/* Writes zeroes; with BDRV_REQ_MAY_UNMAP the range becomes a hole where the
 * host file system (or the format) can. */
int bdrv_pwrite_zeroes(BlockDriverState *bs, uint64_t off, uint64_t len, int flags);
/* Advisory deallocation; discarded ranges read back as zeroes for raw and
 * qcow2 (qcow2 discards whole clusters only). */
int bdrv_discard(BlockDriverState *bs, uint64_t off, uint64_t len);
/* Writes [off, off+len) only into the parts of BS's own layer that are
 * still unallocated (where a read goes to the backing chain) at the moment
 * of writing; what the layer holds already, a guest write that got there
 * first above all, is left alone.  For copies of data that BS's backing
 * chain holds: no dirty bitmap is marked.  -ENOTSUP for formats without
 * allocation (raw). */
int bdrv_pwrite_unallocated(BlockDriverState *bs, uint64_t off, const void *buf, size_t len);
/* Create now the metadata that writes to [off, off+len) will need (qcow2:
 * L2 tables, each made durable with a sync), e.g. before a stream job's
 * copies, whose syncs would otherwise flush everything copied so far
 * while the image's allocations wait.  Changes nothing a guest sees. */
int bdrv_prepare_write(BlockDriverState *bs, uint64_t off, uint64_t len);

/* ---- Write notifiers ---- */

/* Called after each successful write (pwrite, pwrite_zeroes, discard) of
 * [off, off+len) to the node it was added to, once the dirty bitmaps are
 * marked, on the writer's thread; the write returns to its caller only
 * after every notifier returned, so a notifier may hold it back (migration
 * sends it to the destination first, or throttles the guest).  It must
 * not write to the node itself. */
typedef void (*BdrvWriteNotifyFn)(void *opaque, uint64_t off, uint64_t len);
typedef struct BdrvWriteNotifier BdrvWriteNotifier;
BdrvWriteNotifier *bdrv_add_write_notifier(BlockDriverState *bs, BdrvWriteNotifyFn fn,
                                           void *opaque);
/* Returns once no call of N runs any more (the caller makes sure running
 * calls end); N is freed.  NULL is fine. */
void bdrv_remove_write_notifier(BdrvWriteNotifier *n);

/* ---- Block status ---- */

/* What a range is made of, in one layer or in the whole chain. */
typedef enum BdrvStatus {
    BDRV_STATUS_DATA,        /* allocated in the layer: holds data */
    BDRV_STATUS_ZERO,        /* reads as zero, decided by the layer (a hole
                              * of a raw file, a qcow2 zero cluster) */
    BDRV_STATUS_BACKING,     /* not allocated in the layer: read from below */
    BDRV_STATUS_UNALLOCATED, /* nowhere in the chain: reads as zero */
} BdrvStatus;

/* Guest-visible status of the run starting at OFF, at most LEN long (the
 * whole chain): *pnum gets the run length (> 0) and *is_data whether it
 * holds data anywhere in the chain (false: reads as zero).  -EINVAL for an
 * empty or out-of-range request. */
int bdrv_block_status(BlockDriverState *bs, uint64_t off, uint64_t len,
                      uint64_t *pnum, bool *is_data);

/* bdrv_block_status_ext flags */
#define BDRV_STATUS_TOP_ONLY 0x1 /* answer for BS's own layer: DATA, ZERO,
                                  * BACKING (a backing node covers OFF) or
                                  * UNALLOCATED */

/* The four-state answer for the run at OFF.  Without BDRV_STATUS_TOP_ONLY
 * the chain is walked: the answer is DATA or ZERO from the layer that
 * decides the run, whose depth (1 = BS itself, 2 = its backing, ...) goes
 * to *depth, or UNALLOCATED with *depth 0; BACKING never comes back.  With
 * it, *depth is 1 for DATA and ZERO and 0 otherwise.  DEPTH may be NULL. */
int bdrv_block_status_ext(BlockDriverState *bs, uint64_t off, uint64_t len, int flags,
                          uint64_t *pnum, BdrvStatus *status, int *depth);

/* ---- Block-status walks ---- */

/* One run of a walk. */
typedef struct BdrvExtent {
    uint64_t off, len;
    BdrvStatus status;
    int depth;               /* as bdrv_block_status_ext */
} BdrvExtent;

typedef enum BdrvWalkMode {
    /* Guest view: DATA (data somewhere in the chain) or ZERO (reads as
     * zero: holes, zero clusters, unallocated); depth is not reported. */
    BDRV_WALK_GUEST,
    /* Whole chain, four states with the depth of the deciding layer (for
     * NBD's qemu:allocation-depth). */
    BDRV_WALK_DEPTH,
    /* BS's own layer only (for migrating the top layer of a chain). */
    BDRV_WALK_TOP,
} BdrvWalkMode;

/* bdrv_walk_init flags */
#define BDRV_WALK_ERROR_AS_DATA 0x1  /* a failing status call makes the rest
                                      * of the range one DATA run */

/* Walks [off, off+len) in runs: adjacent runs that look the same in the
 * walk's mode are merged, runs never cross the range's ends.  Cheap to
 * set up on the stack; no resources to free. */
typedef struct BdrvWalk {
    BlockDriverState *bs;
    uint64_t pos, end;
    BdrvWalkMode mode;
    int flags;
    bool have_next;          /* a run read ahead that did not merge */
    BdrvExtent next;
} BdrvWalk;

void bdrv_walk_init(BdrvWalk *w, BlockDriverState *bs, uint64_t off, uint64_t len,
                    BdrvWalkMode mode, int flags);
/* The next run: 1 with *ext filled, 0 at the end of the range, or a
 * negative errno (the walk then stays where it failed: a caller may stop,
 * or report the rest its own way). */
int bdrv_walk_next(BdrvWalk *w, BdrvExtent *ext);

/* ---- Backing chains: holding, streaming, shortening ---- */

/* Keep drive BS's backing chain as it is (no node closed or replaced)
 * until the release, e.g. while walking it with bdrv_get_backing.  Cheap;
 * a chain change waits for it. */
void bdrv_chain_hold(BlockDriverState *bs);
void bdrv_chain_release(BlockDriverState *bs);

/* The node of BS's backing chain (below BS) named NAME: its file name as
 * opened, or as the image above it names it; NULL when none is. */
BlockDriverState *bdrv_find_backing_image(BlockDriverState *bs, const char *name);
/* Is BASE (NULL: the end of the chain) below BS in its backing chain? */
bool bdrv_chain_contains(BlockDriverState *bs, BlockDriverState *base);

/* Streaming: the first run at or after OFF that BS's own layer lacks and
 * the layers of its backing chain above BASE (NULL: all of them) hold,
 * widened to whole clusters of BS and cut at MAX bytes: *start and *len,
 * or *start = the size of BS when nothing is left.  Data is what needs
 * copying; where the chain reads as zero, only a BASE that would show
 * through needs zeroes copied. */
int bdrv_stream_next(BlockDriverState *bs, BlockDriverState *base, uint64_t off, uint64_t max,
                     uint64_t *start, uint64_t *len);
/* Copy [off, off+len) of what BS's backing chain reads into BS's own
 * layer, where that is still unallocated (bdrv_pwrite_unallocated), using
 * BUF (LEN bytes, bdrv_buf_alloc'ed), which holds what the chain read
 * afterwards.  SKIP_ZERO: clusters that read as zero are not written
 * (right when no base stays below, since the unallocated layer then reads
 * as zero too).  On failure *READ_FAILED says whether reading the chain
 * failed (or writing BS). */
int bdrv_stream_copy(BlockDriverState *bs, uint64_t off, uint64_t len, void *buf,
                     bool skip_zero, bool *read_failed);

/* Make BASE (a node in BS's backing chain, or NULL) BS's backing node.
 * The caller has copied into BS whatever the layers above BASE held.  BS's
 * data is made durable, then its image header names BASE as
 * BACKING_NAME with BASE's format (or no backing file at all) in one
 * write, then requests on BS pause while the nodes above BASE leave the
 * chain; those are closed.  On failure nothing changed in memory (the
 * header may hold either name: both read the same). */
int bdrv_change_backing(BlockDriverState *bs, BlockDriverState *base, const char *backing_name,
                        GError **errp);

#endif
