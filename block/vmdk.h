/* Private to the vmdk driver (block/vmdk*.c): VMware's hosted sparse
 * extent ("KDMV", VMware Virtual Disk Format 1.1) as monolithicSparse and
 * streamOptimized images carry it, the image state, and the calls between
 * the driver's files.  blkmig only reads vmdk (imports): other vmdk kinds
 * (descriptor files with separate extents, ESX COWD and seSparse, delta
 * disks with a parent) are recognised and refused by name.
 *
 * An image is untrusted input: every offset the header, the grain
 * directory or a grain table gives is checked against the file before it
 * is used, every size has a bound, and compressed grains inflate into a
 * buffer of exactly one grain. */
#ifndef BLOCK_VMDK_H
#define BLOCK_VMDK_H

#include "block-int.h"

#define VMDK_SECTOR 512u
#define VMDK_MAGIC "KDMV"
#define VMDK_COWD_MAGIC "COWD"
#define VMDK_DESCRIPTOR_MAGIC "# Disk DescriptorFile"

#define VMDK_FLAG_NL_DETECT (1u << 0)     /* check_bytes hold "\n \r\n" */
#define VMDK_FLAG_ZERO_GRAIN (1u << 2)    /* a grain table entry of 1 is a zero grain */
#define VMDK_FLAG_COMPRESSED (1u << 16)
#define VMDK_FLAG_MARKERS (1u << 17)
#define VMDK_COMPRESS_NONE 0
#define VMDK_COMPRESS_DEFLATE 1
#define VMDK_GD_AT_END UINT64_C(0xffffffffffffffff)   /* streamOptimized: see the footer */
#define VMDK_GTE_ZERO 1u

#define VMDK_MARKER_EOS 0
#define VMDK_MARKER_FOOTER 3

/* Bounds that keep a hostile header's sizes sane (real images use 64 KiB
 * grains, 512 entries per grain table, and a few KiB of descriptor). */
#define VMDK_MAX_GRAIN_SECTORS 2048u       /* 1 MiB */
#define VMDK_MAX_GTES_PER_GT 512u
#define VMDK_MAX_GD_ENTRIES (32u << 20)    /* QEMU's bound: 128 MiB of directory */
#define VMDK_MAX_DESCRIPTOR_SECTORS 2048u  /* 1 MiB */
#define VMDK_GT_CACHE_SLOTS 64             /* grain tables kept (direct-mapped) */

/* The sparse extent header, little-endian on disk, 512 bytes. */
typedef struct __attribute__((packed)) VmdkHeader {
    char magic[4];
    uint32_t version;
    uint32_t flags;
    uint64_t capacity;              /* sectors */
    uint64_t grain_size;            /* sectors */
    uint64_t desc_offset;           /* sectors */
    uint64_t desc_size;             /* sectors */
    uint32_t gtes_per_gt;
    uint64_t rgd_offset;
    uint64_t gd_offset;             /* sectors, or VMDK_GD_AT_END */
    uint64_t overhead;              /* sectors before the first grain */
    uint8_t unclean_shutdown;
    char check_bytes[4];
    uint16_t compress_algorithm;
    uint8_t pad[433];
} VmdkHeader;

/* A streamOptimized marker: a compressed grain's (lba, size of the data
 * that follows), or a metadata marker (sectors, 0, type). */
typedef struct __attribute__((packed)) VmdkMarker {
    uint64_t val;
    uint32_t size;
    uint32_t type;
} VmdkMarker;

typedef struct VmdkGtSlot {
    uint32_t gd_index_plus1;        /* 0: empty */
    uint32_t *table;                /* gtes_per_gt entries, host order */
} VmdkGtSlot;

typedef struct VmdkState {
    BlockDriverState *bs;
    BlockDriverState *file;
    uint64_t file_size;
    uint64_t size;                  /* bytes */
    uint64_t grain_bytes;
    uint32_t gtes_per_gt;
    uint32_t gd_entries;
    uint32_t *gd;                   /* grain table sectors, host order */
    bool compressed;                /* deflate grains behind markers */
    bool zero_grain;                /* VMDK_FLAG_ZERO_GRAIN */
    GMutex lock;                    /* the cache */
    VmdkGtSlot cache[VMDK_GT_CACHE_SLOTS];
} VmdkState;

/* What a grain is. */
typedef enum VmdkGrainKind {
    VMDK_GRAIN_UNALLOCATED,
    VMDK_GRAIN_ZERO,
    VMDK_GRAIN_DATA,
} VmdkGrainKind;

/* vmdk-header.c: read and check the header (and footer, descriptor) of
 * S->file and fill S's geometry and grain directory. */
int vmdk_read_header(VmdkState *s, GError **errp);
/* vmdk-header.c: why a file starting with BUF (a COWD extent, a
 * descriptor file) cannot be opened; NULL for a sparse extent. */
char *vmdk_unsupported_kind(const uint8_t *buf, size_t len);

/* vmdk-read.c: the grain at INDEX: its kind and, for data, its sector. */
int vmdk_grain(VmdkState *s, uint64_t index, VmdkGrainKind *kind, uint64_t *sector);
/* vmdk-read.c: the driver's pread and block_status. */
int vmdk_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len);
int vmdk_block_status(BlockDriverState *bs, uint64_t off, uint64_t len, uint64_t *pnum,
                      BdrvStatus *status);
void vmdk_cache_free(VmdkState *s);

#endif
