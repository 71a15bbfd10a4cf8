/* Disk verification: blkmig's own savevm section that, with the
 * `block-checksum` capability, compares the whole of every disk at
 * switchover, so that the destination guest never starts on a disk that
 * differs from the source's by a single byte, whatever the cause (a
 * record damaged past its checksum, a write lost, the destination file
 * changed behind the migration's back).
 *
 * With `block` and `block-checksum` on and `qemu-compat` off, the source
 * sends at switchover (guest stopped, after the END section of "block")
 * one FULL section, idstr "blkmig-disk-verify", instance 0, version 1:
 *
 *   be64 salt                 random per migration, the digests' seed
 *   be32 drive count N        every drive of the source
 *   N times:
 *     u8 len + drive id
 *     be64 size S             the drive's size in bytes
 *     ceil(S / 1 MiB) times:  16 bytes, the XXH3-128 digest (util/checksum,
 *                             big-endian) seeded with the salt of one
 *                             1 MiB chunk, in order: over each 4 KiB
 *                             block of the chunk (counted from its start;
 *                             the last one of the drive may be shorter,
 *                             nothing beyond S) whose guest-visible bytes
 *                             are not all zero, its be64 drive offset and
 *                             then its bytes
 *
 * Zero blocks feed nothing, so zeroes hash alike however either side
 * stores them (a hole, a zero cluster, written zeroes), and holes cost
 * no read: block status finds them, and a chunk that reads as zero takes
 * the digest of nothing, computed once.  The source flushes the digests
 * every 32 chunks and the destination compares each as it comes, so both
 * sides hash at the same time.
 *
 * The destination reports what it has compared and found equal on the
 * return path (VERIFIED, every 32 chunks and at the end: the source's
 * disk.verified; while these come the source keeps waiting for its
 * acknowledgement, however long the comparison takes).
 *
 * The destination first waits until every block record (main connection
 * and multifd channels) is written, then hashes the same chunks of its
 * drive of that id (which may be larger) and fails the load at the first
 * run of chunks that differ, naming the drive and the byte range
 * ("disk verification: drive 'disk0': 1048576 bytes at offset 3145728
 * differ from the source's"); the error reaches the source on the return
 * path and its guest keeps running.  A drive missing, or smaller than the
 * source's, fails the same way.
 *
 * Cost: both sides read every byte of data of every drive once, inside
 * the downtime (README, "Capabilities and parameters", has the figures).
 * With qemu-compat the section is not sent. */
#ifndef MIGRATION_DISK_VERIFY_H
#define MIGRATION_DISK_VERIFY_H

#define DISK_VERIFY_IDSTR   "blkmig-disk-verify"
#define DISK_VERIFY_VERSION 1

/* Registers the section with savevm (after the block handler, whose
 * query-migrate part it completes with disk.verified). */
void disk_verify_register(void);

#endif
