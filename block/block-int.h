/* Private to block/: the node structure shared by the generic layer, the
 * drivers and the dirty bitmaps, and the calls between block/ files. */
#ifndef BLOCK_BLOCK_INT_H
#define BLOCK_BLOCK_INT_H

#include "block/block-driver.h"

/* Alignment of offsets, lengths and buffers for O_DIRECT (cache=none).
 * 4 KiB covers every logical block size in use. */
#define BDRV_DIRECT_ALIGN 4096

/* How deep a backing chain may be before it is taken for a loop or an
 * attack. */
#define BDRV_MAX_BACKING_DEPTH 64

struct BlockDriverState {
    /* Copies of the options; opts' strings point at these.  id is NULL for
     * the anonymous nodes below a drive. */
    char *id;
    char *filename;
    char *format;
    char *tls_creds;        /* opts.tls_creds, owned */
    BlockOptions opts;

    const BlockDriver *drv;
    void *opaque;
    uint64_t size;          /* fixed at open */
    size_t align;           /* request alignment: 1, or BDRV_DIRECT_ALIGN
                             * for a cache=none protocol node */
    size_t buf_align;       /* largest align down the file chain */
    /* A protocol node under a format that allocates at its end (qcow2):
     * requests may go past the size, reads there give zeroes. */
    bool growable;
    bool probed;            /* format=auto chose the driver */

    BlockDriverState *file;     /* protocol node under a format node */
    BlockDriverState *backing;  /* backing node (read-only), or NULL */
    BlockDriverState *parent;   /* the node whose backing this is */

    /* cache=none: writes hold it shared, read-modify-write cycles hold it
     * exclusive, so no write lands between an RMW's read and its write. */
    GRWLock rmw_lock;

    GRWLock bitmaps_lock;   /* protects dirty_bitmaps (the list) */
    GList *dirty_bitmaps;   /* of DirtyBitmap */

    GRWLock notifiers_lock; /* held shared while notifiers run */
    GList *write_notifiers; /* of BdrvWriteNotifier (write-notifier.c) */

    BdrvCreatedFile created;    /* create.c: the file this drive's open made */

    /* drain.c: requests in flight on a drive, and chain changes waiting
     * for them (atomics; the lock and cond only for the slow path). */
    gint in_flight;
    gint quiesce;
    GMutex gate_lock;
    GCond gate_cond;
};

extern const BlockDriver bdrv_file;     /* file-posix.c: the protocol */
extern const BlockDriver bdrv_raw;      /* raw-format.c */
extern const BlockDriver bdrv_qcow2;    /* qcow2.c */
extern const BlockDriver bdrv_nbd;      /* nbd.c: NBD client (libnbd) */
extern const BlockDriver bdrv_vmdk;     /* vmdk.c: read-only */

/* nbd.c: is FILENAME an NBD URI (nbd://, nbd+unix://, nbds://, ...),
 * opened by bdrv_nbd rather than as a local file? */
bool bdrv_is_nbd_uri(const char *filename);
/* node.c: the formats users may name (format=), in probing order. */
extern const BlockDriver *const bdrv_formats[];
extern const size_t bdrv_n_formats;

/* block-status.c: the status of BS's own layer (the driver's answer). */
int bdrv_layer_status(BlockDriverState *bs, uint64_t off, uint64_t len,
                      uint64_t *pnum, BdrvStatus *status);

/* node.c: open a node chain (format over protocol, backing below) for
 * OPTS without registering it; close one and everything under it. */
BlockDriverState *bdrv_open_node(const BlockOptions *opts, BlockDriverState *parent,
                                 GError **errp);
void bdrv_close_node(BlockDriverState *bs);
/* node.c: FILENAME, a backing image named by IMAGE, as QEMU resolves it:
 * relative to IMAGE's directory (g_free the result). */
char *bdrv_backing_path(const char *image, const char *filename);

/* probe.c: the driver format=auto picks for an image starting with BUF;
 * NULL with an error naming a format blkmig knows but cannot open. */
const BlockDriver *bdrv_probe_format(const uint8_t *buf, size_t len, const char *filename,
                                     GError **errp);
/* probe.c: the name of the non-raw format BUF looks like, or NULL. */
const char *bdrv_probe_non_raw(const uint8_t *buf, size_t len);

/* create.c: a failed open removes the file its create made (if it made
 * one) and forgets it. */
void bdrv_create_undo(const char *path, BdrvCreatedFile *made);

/* drain.c: every public request on a node counts itself in flight on a
 * drive (a no-op below drives) and waits while the drive is drained;
 * nested requests of one thread on the same drive never wait. */
void bdrv_gate_enter(BlockDriverState *bs);
void bdrv_gate_leave(BlockDriverState *bs);
/* drain.c: hold new requests on drive BS back and wait until none is in
 * flight / let them go again.  Not from inside a request on BS. */
void bdrv_drain_begin(BlockDriverState *bs);
void bdrv_drain_end(BlockDriverState *bs);

/* copy-on-read.c: a read of a copy-on-read drive (with a backing node):
 * what comes from the backing chain is also written into BS. */
int bdrv_cor_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len);

/* dirty-bitmap.c: mark [off, off+len) in every enabled bitmap of BS. */
void bdrv_dirty_bitmaps_mark(BlockDriverState *bs, uint64_t off, uint64_t len);
/* dirty-bitmap.c: release every bitmap still attached (drive closing). */
void bdrv_release_all_dirty_bitmaps(BlockDriverState *bs);
/* write-notifier.c: a write to [off, off+len) of BS succeeded: mark the
 * dirty bitmaps, then run the write notifiers. */
void bdrv_write_done(BlockDriverState *bs, uint64_t off, uint64_t len);

#endif
