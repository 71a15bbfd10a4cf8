/* The "block" savevm section: copies drives in 1 MiB chunks.
 *
 * Record: be64 (byte_offset | flags); byte_offset is a multiple of 512, so
 * the flags live in the low 9 bits.
 *
 *   0x01 DEVICE_BLOCK  u8 len + drive id, then 1 MiB of data unless
 *                      ZERO_BLOCK.  The chunk at byte_offset is applied for
 *                      the part inside the destination drive (the last
 *                      chunk of a drive is still 1 MiB on the wire).
 *   0x02 EOS           ends the section part (may be combined with a record)
 *   0x04 PROGRESS      offset field = percent; nothing follows
 *   0x08 ZERO_BLOCK    with DEVICE_BLOCK: the range reads as zeroes; no data
 *
 * With the qemu-compat capability only the records above are sent (1 MiB
 * DEVICE_BLOCK / ZERO_BLOCK records, PROGRESS, EOS): the section is byte
 * for byte what QEMU 7.2 sends.  Otherwise (the default) blkmig's
 * extensions below may appear.  0x100, the last flag bit, is the OPTION
 * record: extensions that change what the stream means are options, so
 * that a destination that does not know one refuses the stream (one from
 * before OPTION fails on the flag with "unknown flags 0x100").
 *
 *   0x10 DEVICE_SIZE   setup part only: u8 len + drive id, be64 size in
 *                      bytes.  A destination drive smaller than that fails
 *                      the migration at once, naming both sizes.
 *   0x20 SPAN          with DEVICE_BLOCK: after u8 len + drive id comes
 *                      be32 span length L, a multiple of 512 from 512 to
 *                      1 MiB; [byte_offset, byte_offset + L) must lie
 *                      inside one 1 MiB-aligned chunk, byte_offset below
 *                      the destination drive's size S and byte_offset + L
 *                      at most S rounded up to 512 (a drive whose size is
 *                      no multiple of 512 ends in a partial sector, sent
 *                      whole; only the part inside the drive is applied).
 *                      Then L bytes of data unless ZERO_BLOCK (a zero
 *                      span).  Bulk chunks that are partly used travel as
 *                      spans (data extents; holes and all-zero 4 KiB
 *                      blocks as zero spans when zero-blocks is on); dirty
 *                      passes send the runs of dirty-granularity blocks
 *                      that changed as spans.  A span or chunk made only
 *                      of zeroes without zero-blocks travels as data.
 *   0x40 COMPRESSED    with DEVICE_BLOCK, never with ZERO_BLOCK: after the
 *                      drive id (and the span length with SPAN): u8
 *                      algorithm (1 = zlib RFC 1950, 2 = one zstd frame),
 *                      be32 compressed length C with 1 <= C <= U + 1024
 *                      where U is the uncompressed length (L, or 1 MiB
 *                      without SPAN), then C bytes that must be exactly
 *                      one compressed unit decompressing to exactly U
 *                      bytes.  Capability compress; each record is
 *                      compressed on its own and sent so only when C < U.
 *   0x80 CHANNELS      setup part, at most once, never with other flags
 *                      (except EOS), offset field 0: be32 channel count N
 *                      (1..16), 16-byte migration id (random per
 *                      migration).  Announces that N multifd channels
 *                      carry the block records (below); the destination
 *                      refuses it unless it listens on a socket.
 *   0x100 OPTION       setup part only, before any DEVICE_SIZE record,
 *                      never with other flags, offset field 0: be32 option
 *                      code, be32 payload length P (at most 4096), P bytes.
 *                      A destination refuses a code it does not know
 *                      ("unknown stream option N"), so a source sends an
 *                      option only when the records mean something else
 *                      with it.  Codes:
 *                      1 INCREMENTAL, P = 0 (parameter block-incremental):
 *                      every drive travels top layer only.  Ranges its top
 *                      layer does not hold get no record in the bulk phase
 *                      (the destination's backing image has them; a source
 *                      drive without a backing image sends them as zero
 *                      spans, its top layer being all there is); zero
 *                      clusters of the top layer come as zero spans, which
 *                      the destination applies so that they read as zero
 *                      over whatever its backing image holds; dirty passes
 *                      send what the guest changed, as always.  Every drive
 *                      that a DEVICE_SIZE record names must have a backing
 *                      image at the destination (an overlay on the same
 *                      base as the source's), else the migration fails at
 *                      once naming the drive.
 *                      2 RESUME, P = 17 (capability block-resume, both
 *                      sides): 16-byte migration id (random, chosen when
 *                      the migration starts) and u8 mode: 0 a new
 *                      migration (the destination counts, per 1 MiB chunk
 *                      of each drive, the DEVICE_BLOCK records it applied,
 *                      and keeps the counts of what it flushed in a
 *                      journal beside each drive file,
 *                      FILE.blkmig-resume); 1 the same migration resumed
 *                      on a new connection after the old one was lost.
 *                      With mode 1 the destination flushes, then answers
 *                      on the return path with its resume map (below) in
 *                      RESUME_MAP messages and RESUME_END before it loads
 *                      anything else; the source waits for it and marks
 *                      dirty every chunk below its bulk cursor whose count
 *                      differs from the records it sent, or that had a
 *                      unit in flight.  A chunk's records travel in order
 *                      on one connection, so equal counts mean the
 *                      destination holds its latest contents.  A
 *                      destination without block-resume refuses the
 *                      option; block-resume is refused with multifd and
 *                      qemu-compat.
 *                      3 CHECKSUM, P = 0 (capability block-checksum):
 *                      every DEVICE_BLOCK record without ZERO_BLOCK
 *                      carries 16 more bytes right after its drive id
 *                      (and span length with SPAN), before the COMPRESSED
 *                      fields: the XXH3-128 digest (util/checksum,
 *                      canonical big-endian) seeded with the record's
 *                      byte offset, over the U uncompressed bytes of its
 *                      payload (U as for COMPRESSED; the zero padding of
 *                      a drive's last sector included).  The destination
 *                      checks it before anything of the record is queued
 *                      for writing and fails the migration naming the
 *                      drive and the offset when it differs.  Zero
 *                      records carry none: they have no payload, and a
 *                      header damaged in flight either breaks the
 *                      framing or misplaces a zero range, which the
 *                      switchover comparison (include/migration/
 *                      disk-verify.h) catches.  Multifd channels carry
 *                      the same records, checksums included.
 *
 * Resume map (return path, block-resume): u8 version 1, u8 resumed (1:
 * counts follow; 0: the destination holds nothing it can vouch for, e.g.
 * its journal did not match: the source sends everything again), be16
 * length R + R bytes saying why not (UTF-8, R = 0 when resumed), be32
 * drive count D, then per drive u8 len + drive id, be64 chunk count N,
 * N x be32 records applied and flushed per 1 MiB chunk.
 *
 * With qemu-compat no OPTION is sent, and block-incremental is QEMU 7.2's:
 * a bulk chunk of which the top layer holds nothing (no data, no zero
 * cluster) is not sent, any other goes whole as the guest reads it; the
 * destination is not told, so it must already be an overlay on the same
 * base (QEMU's rule), and cannot check that.
 *
 * Records with no flag bit, drive ids holding a NUL byte, and DEVICE_SIZE,
 * CHANNELS or OPTION records after the setup part are rejected.
 *
 * Multifd channels (capability multifd, socket URIs only).  The main
 * connection carries the savevm container as always.  N more connections
 * to the same URI each start with a handshake:
 *
 *   be32 0x424d4644 ("BMFD")  be32 version 1  be32 channel index (0..N-1)
 *   be32 channel count N      16-byte migration id (as in CHANNELS)
 *
 * then block records exactly as above but only DEVICE_BLOCK records (with
 * SPAN, ZERO_BLOCK, COMPRESSED as needed), and finally one EOS record as
 * the channel's end marker; nothing follows it.  The source sends every
 * record of the 1 MiB chunk with index i (byte_offset / 1 MiB, per drive)
 * on channel i mod N, so a channel's order is the chunks' version order;
 * it writes every channel's end marker before the END section on the main
 * connection.  The destination tells connections apart by their first
 * four bytes ("QEVM" main, "BMFD" channel), starts applying channel
 * records once the main connection's setup part has loaded, and loads the
 * end of the stream (flush, acknowledgement) only after every channel's
 * end marker and everything before it was applied. */
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
#define BLK_MIG_FLAG_SPAN         0x20
#define BLK_MIG_FLAG_COMPRESSED   0x40
#define BLK_MIG_FLAG_CHANNELS     0x80
#define BLK_MIG_FLAG_OPTION       0x100
#define BLK_MIG_FLAGS_MASK        0x1ff   /* low bits that are never offset */

/* OPTION records: the codes and the largest payload. */
#define BLK_MIG_OPTION_INCREMENTAL 1
#define BLK_MIG_OPTION_RESUME      2
#define BLK_MIG_RESUME_ID_LEN      16
#define BLK_MIG_RESUME_MAP_VERSION 1
#define BLK_MIG_OPTION_CHECKSUM    3
#define BLK_MIG_OPTION_MAX_PAYLOAD 4096

/* COMPRESSED records: the algorithm byte and the slack allowed over the
 * uncompressed length. */
#define BLK_MIG_COMPRESS_ZLIB     1
#define BLK_MIG_COMPRESS_ZSTD     2
#define BLK_MIG_COMPRESS_SLACK    1024

/* Multifd channel handshake. */
#define BLK_MIG_MULTIFD_MAGIC     0x424d4644
#define BLK_MIG_MULTIFD_VERSION   1
#define BLK_MIG_MULTIFD_ID_LEN    16
#define BLK_MIG_MULTIFD_MAX_CHANNELS 16

/* Registers the "block" handler with savevm (version 1), and its multifd
 * channels ("BMFD") as a channel handler.  The emulator calls it once at
 * start-up, before storage_check_register. */
void block_migration_register(void);
/* Current statistics of the running/last migration. */
void block_migration_stats(MigrationDiskStats *out);

#endif
