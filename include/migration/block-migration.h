/* The "block" savevm section: copies drives in 1 MiB chunks.
 *
 * Record: be64 (byte_offset | flags), flags in the low bits:
 *   0x01 DEVICE_BLOCK  u8 len + drive id, then 1 MiB of data unless ZERO_BLOCK
 *   0x02 EOS           ends the section part
 *   0x04 PROGRESS      offset field = percent
 *   0x08 ZERO_BLOCK
 * blkmig extensions (never sent with the qemu-compat capability):
 *   0x10 DEVICE_SIZE   u8 len + drive id, be64 size in bytes (setup part) */
#ifndef MIGRATION_BLOCK_MIGRATION_H
#define MIGRATION_BLOCK_MIGRATION_H

#include <stdint.h>
#include "migration/migration.h"

#define BLK_MIG_CHUNK_SIZE    (1u << 20)
#define BLK_MIG_SECTOR_SIZE   512
#define BLK_MIG_FLAG_DEVICE_BLOCK 0x01
#define BLK_MIG_FLAG_EOS          0x02
#define BLK_MIG_FLAG_PROGRESS     0x04
#define BLK_MIG_FLAG_ZERO_BLOCK   0x08
#define BLK_MIG_FLAG_DEVICE_SIZE  0x10
#define BLK_MIG_FLAGS_KNOWN       0x1f
#define BLK_MIG_FLAGS_MASK        0x1ff   /* low bits that are never offset */

/* Registers the "block" handler with savevm (version 1). */
void block_migration_register(void);
/* Current statistics of the running/last migration. */
void block_migration_stats(MigrationDiskStats *out);

#endif
