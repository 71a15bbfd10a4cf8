/* Private to the qcow2 driver (block/qcow2*.c): the on-disk constants of
 * QEMU's docs/interop/qcow2.txt, the image state, and the calls between
 * its files.
 *
 * Locking: s->lock protects every piece of metadata (header fields, the L1
 * table, the refcount table, both table caches, the allocator, the lists
 * below).  Guest data moves outside it: a request maps its range under the
 * lock, then reads or writes host clusters with the lock released.  Two
 * mechanisms make that safe:
 *  - in-flight allocations (Qcow2Alloc): a write that must allocate
 *    registers the guest clusters it covers; any other request that would
 *    allocate, zero or discard an overlapping cluster waits, so two
 *    writers never both allocate one cluster and a guest write never loses
 *    to a concurrent one;
 *  - in-flight host ranges (slots): every data transfer to or from an
 *    existing host cluster holds a slot naming its host range; a cluster
 *    whose last reference went away is handed back to the allocator only
 *    when no slot overlaps it and the L2 change that dropped it is durable
 *    (Qcow2Free), so no transfer ever lands in a cluster reused for other
 *    data. */
#ifndef BLOCK_QCOW2_H
#define BLOCK_QCOW2_H

#include <string.h>

#include "block-int.h"

/* ---- On-disk format ---- */

#define QCOW2_MAGIC 0x514649fbU                 /* "QFI\xfb" */
#define QCOW2_V2_HEADER_LEN 72
#define QCOW2_V3_HEADER_LEN 104
#define QCOW2_CREATE_HEADER_LEN 112             /* with compression_type */
#define QCOW2_MIN_CLUSTER_BITS 9
#define QCOW2_MAX_CLUSTER_BITS 21
#define QCOW2_DEFAULT_CLUSTER_BITS 16
#define QCOW2_MAX_BACKING_NAME 1023
#define QCOW2_MAX_L1_BYTES (32u << 20)          /* QEMU's limits, which keep */
#define QCOW2_MAX_REFTABLE_BYTES (8u << 20)     /* hostile sizes in bounds */
#define QCOW2_MAX_SNAPSHOTS 65536
#define QCOW2_MAX_HOST_OFFSET (1ULL << 56)      /* L2 entries hold 56 bits */

#define QCOW2_OFFSET_MASK 0x00fffffffffffe00ULL /* L1 and L2 entries */
#define QCOW2_REFT_OFFSET_MASK 0xfffffffffffffe00ULL
#define QCOW2_L1E_RESERVED 0x7f000000000001ffULL
#define QCOW2_L2E_RESERVED 0x3f000000000001feULL
#define QCOW2_REFT_RESERVED 0x1ffULL
#define QCOW2_OFLAG_COPIED (1ULL << 63)         /* refcount is exactly one */
#define QCOW2_OFLAG_COMPRESSED (1ULL << 62)
#define QCOW2_OFLAG_ZERO 1ULL                   /* v3: reads as zeroes */

#define QCOW2_INCOMPAT_DIRTY (1ULL << 0)
#define QCOW2_INCOMPAT_CORRUPT (1ULL << 1)
#define QCOW2_INCOMPAT_DATA_FILE (1ULL << 2)
#define QCOW2_INCOMPAT_COMPRESSION (1ULL << 3)
#define QCOW2_INCOMPAT_EXTL2 (1ULL << 4)
/* What blkmig can open (dirty ones read-only). */
#define QCOW2_INCOMPAT_KNOWN (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT | \
                              QCOW2_INCOMPAT_COMPRESSION)

#define QCOW2_EXT_END 0
#define QCOW2_EXT_BACKING_FORMAT 0xe2792acaU
#define QCOW2_EXT_FEATURE_TABLE 0x6803f857U
#define QCOW2_FEATURE_NAME_LEN 46

#define QCOW2_COMPRESSION_ZLIB 0
#define QCOW2_COMPRESSION_ZSTD 1

/* The header: as it is on disk (big-endian) in the image, in host order
 * with the version 2 defaults filled in as s->h. */
typedef struct __attribute__((packed)) Qcow2Header {
    uint32_t magic;
    uint32_t version;
    uint64_t backing_file_offset;
    uint32_t backing_file_size;
    uint32_t cluster_bits;
    uint64_t size;
    uint32_t crypt_method;
    uint32_t l1_size;
    uint64_t l1_table_offset;
    uint64_t refcount_table_offset;
    uint32_t refcount_table_clusters;
    uint32_t nb_snapshots;
    uint64_t snapshots_offset;
    /* version 3 */
    uint64_t incompatible_features;
    uint64_t compatible_features;
    uint64_t autoclear_features;
    uint32_t refcount_order;
    uint32_t header_length;
    uint8_t compression_type;
    uint8_t padding[7];
} Qcow2Header;

/* ---- In memory ---- */

typedef struct Qcow2Cache Qcow2Cache;

/* A cached table (L2 table or refcount block), as on disk (big-endian). */
typedef struct Qcow2Table {
    Qcow2Cache *owner;
    uint64_t offset;         /* host offset; 0: the slot is empty */
    uint8_t *data;
    uint64_t lru;
    uint32_t pins;           /* in use under the lock: not evicted */
    bool dirty;
    uint32_t dirty_lo, dirty_hi;   /* byte range to write back */
} Qcow2Table;

typedef enum Qcow2ClusterType {
    QCOW2_CLUSTER_UNALLOCATED,
    QCOW2_CLUSTER_ZERO_PLAIN,    /* zero flag, no host cluster */
    QCOW2_CLUSTER_ZERO_ALLOC,    /* zero flag over a preallocated cluster */
    QCOW2_CLUSTER_NORMAL,
    QCOW2_CLUSTER_COMPRESSED,
} Qcow2ClusterType;

/* Where a run of guest bytes lives: qcow2_map's answer. */
typedef struct Qcow2Mapping {
    Qcow2ClusterType type;
    uint64_t entry;          /* L2 entry of the run's first cluster */
    uint64_t host;           /* NORMAL: host offset of the first byte */
    uint64_t bytes;          /* run length, inside one L2 table */
} Qcow2Mapping;

/* A write allocating guest clusters [first, end) (cluster indexes). */
typedef struct Qcow2Alloc {
    uint64_t first, end;
} Qcow2Alloc;

/* A host range whose references went away, waiting to be released. */
typedef struct Qcow2Free {
    uint64_t offset, bytes;
    uint64_t seq;            /* s->unlink_seq when it was unlinked */
} Qcow2Free;

#define QCOW2_SLOTS 256

typedef struct Qcow2Slot {
    uint64_t start, end;     /* end == 0: free (atomic) */
} Qcow2Slot;

typedef struct Qcow2State {
    BlockDriverState *bs;
    BlockDriverState *file;
    Qcow2Header h;
    char *backing_file;      /* as the header names it (or the override) */
    char *backing_format;
    GHashTable *feature_names;   /* "type:bit" -> name, from the table */

    uint32_t cluster_bits;
    uint64_t cluster_size;
    uint32_t l2_bits;            /* log2(entries per L2 table) */
    uint32_t refcount_bits;
    uint32_t rb_bits;            /* log2(entries per refcount block) */
    uint64_t refcount_max;

    GMutex lock;
    GCond cond;                  /* allocations and slots finishing */
    bool read_only;
    bool corrupt;                /* found inconsistent: no more writes */
    unsigned corrupt_reports;
    gint data_reports;           /* atomic: unreadable data messages */

    uint64_t *l1;                /* host order; l1_size entries */
    uint64_t *reftable;          /* host order; reftable_size entries */
    uint64_t reftable_size;
    GHashTable *meta;            /* host cluster offsets of L2 tables and
                                  * refcount blocks (overlap checks) */
    Qcow2Cache *l2_cache;
    Qcow2Cache *rb_cache;

    uint64_t free_cluster_index; /* no free cluster below it */
    uint64_t file_end;           /* no metadata points at or past it */
    uint64_t fresh_from;         /* host clusters past it read as zero */
    bool refcounts_unsynced;     /* refcount writes since the last sync */

    GPtrArray *allocs;           /* of Qcow2Alloc, in flight */
    GArray *frees;               /* of Qcow2Free */
    uint64_t unlink_seq;         /* counts unlinks */
    uint64_t durable_seq;        /* unlinks up to it are on stable storage */
    Qcow2Slot slots[QCOW2_SLOTS];
    unsigned slots_hint;
} Qcow2State;

/* ---- qcow2-header.c ---- */
int qcow2_probe(const uint8_t *buf, size_t len);
/* Reads and checks the header and its extensions into S. */
int qcow2_read_header(Qcow2State *s, GError **errp);
/* Calls VISIT for each extension in C0 (the header cluster, C0_LEN bytes
 * of it read) from the end of the fixed header to the end marker or the
 * backing file name; one that runs past that area fails, naming it, and
 * VISIT returning false stops the walk with false. */
typedef bool (*Qcow2ExtensionVisit)(Qcow2State *s, uint32_t type, const uint8_t *data,
                                    uint32_t len, void *opaque, GError **errp);
bool qcow2_walk_extensions(Qcow2State *s, const uint8_t *c0, uint64_t c0_len,
                           Qcow2ExtensionVisit visit, void *opaque, GError **errp);
/* qcow2-backing.c: the header names NAME (format FORMAT), or no backing
 * file when NAME is NULL; crash-safe (qcow2-backing.c says how). */
int qcow2_change_backing_file(BlockDriverState *bs, const char *name, const char *format);
/* Rewrites the feature bit words of the on-disk header. */
int qcow2_write_features(Qcow2State *s);
/* Rewrites refcount_table_offset and refcount_table_clusters. */
int qcow2_write_reftable_location(Qcow2State *s);
/* Names of the incompatible features in BITS, for messages. */
char *qcow2_feature_list(Qcow2State *s, uint64_t bits);

/* ---- qcow2-create.c ---- */
int qcow2_create(const BlockOptions *opts, BdrvCreatedFile *made, GError **errp);

/* ---- qcow2-meta.c: loading and checking the top-level tables ---- */
int qcow2_load_tables(Qcow2State *s, GError **errp);
/* Does [off, off+len) touch metadata (header, L1, refcount table, L2
 * tables, refcount blocks, snapshot table)? */
bool qcow2_overlaps_metadata(Qcow2State *s, uint64_t off, uint64_t len);
/* Marks S corrupt: logs WHAT (the first few times), sets the corrupt bit
 * of a writable version 3 image; returns -EIO. */
int qcow2_signal_corruption(Qcow2State *s, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* ---- qcow2-cache.c ---- */
Qcow2Cache *qcow2_cache_new(Qcow2State *s, unsigned ntables, bool is_l2);
void qcow2_cache_free(Qcow2Cache *c);
/* The table at OFFSET, pinned until qcow2_cache_put; read on a miss. */
int qcow2_cache_get(Qcow2Cache *c, uint64_t offset, Qcow2Table **t);
/* The same for a table that is new: zeroes, no read. */
int qcow2_cache_get_empty(Qcow2Cache *c, uint64_t offset, Qcow2Table **t);
void qcow2_cache_put(Qcow2Cache *c, Qcow2Table *t);
/* Bytes [lo, hi) of table T changed. */
void qcow2_cache_dirty(Qcow2Table *t, uint32_t lo, uint32_t hi);
/* Writes every dirty table (after the dependencies of an L2 cache). */
int qcow2_cache_writeback(Qcow2Cache *c);
/* Does the cache hold a table not yet written back? */
bool qcow2_cache_is_dirty(const Qcow2Cache *c);
/* Forgets the table at OFFSET (freed), dirty or not. */
void qcow2_cache_drop(Qcow2Cache *c, uint64_t offset);

static inline uint64_t qcow2_table_get(const Qcow2Table *t, uint64_t i)
{
    uint64_t v;
    memcpy(&v, t->data + i * 8, 8);
    return GUINT64_FROM_BE(v);
}

static inline void qcow2_table_set(Qcow2Table *t, uint64_t i, uint64_t v)
{
    v = GUINT64_TO_BE(v);
    memcpy(t->data + i * 8, &v, 8);
    qcow2_cache_dirty(t, (uint32_t)(i * 8), (uint32_t)(i * 8 + 8));
}

/* ---- qcow2-refcount.c ---- */
int qcow2_get_refcount(Qcow2State *s, uint64_t cluster, uint64_t *rc);
/* Adds DELTA to the refcount of every cluster touching [off, off+bytes). */
int qcow2_update_refcount(Qcow2State *s, uint64_t off, uint64_t bytes, int delta);
/* N contiguous free clusters, their refcount set to one: host offset, or a
 * negative errno.  *FRESH: they have never held data (read as zero). */
int64_t qcow2_alloc_clusters(Qcow2State *s, uint64_t n, bool *fresh);
/* Writes dirty refcount blocks and syncs when L2 tables are about to be
 * written that may point at clusters they count. */
int qcow2_refcounts_before_l2(Qcow2State *s);

/* ---- qcow2-free.c: deferred release of host clusters ---- */
/* A reference to host [offset, offset+bytes) went away / the one an L2
 * ENTRY held: release it once that is durable and nothing is in flight. */
void qcow2_free_later(Qcow2State *s, uint64_t offset, uint64_t bytes);
void qcow2_free_entry_later(Qcow2State *s, uint64_t entry);
/* Releases whatever is durable and no longer in flight. */
int qcow2_release_frees(Qcow2State *s);
/* A slot for a transfer to [start, end) of the host file. */
int qcow2_slot_take(Qcow2State *s, uint64_t start, uint64_t end);
void qcow2_slot_release(Qcow2State *s, int slot);
/* Waits (lock held) until no allocation overlaps guest [off, off+len);
 * true if it had to wait (the caller then maps again). */
bool qcow2_wait_allocs(Qcow2State *s, uint64_t off, uint64_t len);
void qcow2_alloc_begin(Qcow2State *s, Qcow2Alloc *a, uint64_t off, uint64_t len);
void qcow2_alloc_end(Qcow2State *s, Qcow2Alloc *a);

/* ---- qcow2-cluster.c ---- */
int qcow2_map(Qcow2State *s, uint64_t off, uint64_t len, bool contiguous, Qcow2Mapping *m);
/* The L2 table covering guest OFF, ready to be changed (allocated or
 * copied when shared), pinned; *INDEX its entry for OFF. */
int qcow2_l2_for_write(Qcow2State *s, uint64_t off, Qcow2Table **t, uint64_t *index);
/* The L2 tables covering [off, off+len), made now (bdrv_prepare_write). */
int qcow2_prepare_write(BlockDriverState *bs, uint64_t off, uint64_t len);
/* Points N guest clusters from OFF at host clusters HOST.. (fresh data). */
int qcow2_link_clusters(Qcow2State *s, uint64_t off, uint64_t n, uint64_t host);
Qcow2ClusterType qcow2_entry_type(Qcow2State *s, uint64_t entry);
/* Host offset and length of a compressed cluster's data. */
void qcow2_compressed_range(Qcow2State *s, uint64_t entry, uint64_t *off, uint64_t *len);

/* ---- qcow2-flush.c ---- */
/* Writes all dirty metadata in order; SYNC: and makes it durable. */
int qcow2_metadata_flush(Qcow2State *s, bool sync);
int qcow2_sync(Qcow2State *s);
/* Flushes when too many frees are pending (lock held). */
int qcow2_bound_frees(Qcow2State *s);
int qcow2_flush(BlockDriverState *bs);

/* ---- qcow2-read.c, qcow2-write.c, qcow2-zero.c ---- */
int qcow2_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len);
/* Guest bytes [off, off+len) of the layers below (zeroes past them). */
int qcow2_read_backing(Qcow2State *s, uint64_t off, uint8_t *buf, uint64_t len);
/* The guest cluster a compressed L2 ENTRY describes, into CLUSTER. */
int qcow2_read_compressed(Qcow2State *s, uint64_t entry, uint8_t *cluster);

/* ---- qcow2-compress.c ---- */
/* Inflates SRC into exactly s->cluster_size bytes at DST. */
int qcow2_decompress(Qcow2State *s, const uint8_t *src, size_t len, uint8_t *dst);
int qcow2_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, size_t len, int flags);
/* Writes only the clusters that are still unallocated (qcow2-write.c says
 * why a guest write always wins against it). */
int qcow2_pwrite_unallocated(BlockDriverState *bs, uint64_t off, const void *buf, size_t len);
int qcow2_pwrite_zeroes(BlockDriverState *bs, uint64_t off, uint64_t len, int flags);
int qcow2_discard(BlockDriverState *bs, uint64_t off, uint64_t len);

#endif
