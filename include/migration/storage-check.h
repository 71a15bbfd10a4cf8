/* The storage check: blkmig's own savevm section that keeps a migration
 * without the `block` capability from starting the destination guest on
 * disks that are not the source's.
 *
 * QEMU's meaning of `block` off is "the disks are on shared storage": the
 * stream carries no disk contents.  blkmig trusts that only after it has
 * looked.  The source sends, at switchover (guest stopped, every drive
 * flushed), one FULL section, idstr "blkmig-storage-check", instance 0,
 * version 1:
 *
 *   be64 salt                 random per migration, the digest's seed
 *   be32 drive count N        every drive of the source
 *   N times:
 *     u8 len + drive id
 *     be64 size               the drive's size in bytes
 *     be32 range count R      0..STORAGE_CHECK_MAX_RANGES
 *     R times: be64 offset, be32 length
 *                             1..STORAGE_CHECK_RANGE_LEN bytes, inside the
 *                             drive; ranges may overlap
 *     16 bytes digest         XXH3-128 (util/checksum, big-endian) seeded
 *                             with the salt, over, for each range in
 *                             order: be64 offset, be64 length, the bytes
 *
 * Ranges: STORAGE_CHECK_EVEN_RANGES spread evenly over the drive (the
 * first at offset 0), and STORAGE_CHECK_DATA_RANGES at random places moved
 * forward to the next data extent (block status; wrapping round to the
 * start), so a source holding a little data among holes never matches an
 * empty destination by luck.  The salt and the random places change with
 * every migration, so no digest can be prepared in advance.  Cost per
 * drive and side: at most 64 reads of 64 KiB (4 MiB), inside the
 * downtime, plus the source's flush.
 *
 * The destination reads the same ranges of its drive of that id and
 * fails the migration when the drive is missing, appears twice, or its
 * size or digest differs ("the disks differ: enable the 'block'
 * capability ... or use shared storage"); the error reaches the source on
 * the return path and its guest keeps running.
 *
 * At the end of every load a blkmigd destination also requires each of
 * its drives to have got either block records (DEVICE_SIZE or
 * DEVICE_BLOCK) or a passing check; a drive that got neither (a drive
 * the source does not have, or a QEMU or qemu-compat stream without
 * `block`) fails the load before the guest can start.
 *
 * With qemu-compat the section is not sent (QEMU 7.2 rejects unknown
 * sections), so such a stream without `block` is refused by a blkmigd
 * destination: use `block` there. */
#ifndef MIGRATION_STORAGE_CHECK_H
#define MIGRATION_STORAGE_CHECK_H

#define STORAGE_CHECK_IDSTR       "blkmig-storage-check"
#define STORAGE_CHECK_VERSION     1
#define STORAGE_CHECK_EVEN_RANGES 32
#define STORAGE_CHECK_DATA_RANGES 32
#define STORAGE_CHECK_MAX_RANGES  (STORAGE_CHECK_EVEN_RANGES + STORAGE_CHECK_DATA_RANGES)
#define STORAGE_CHECK_RANGE_LEN   (64 * 1024)

/* Registers the section with savevm (after the block handler). */
void storage_check_register(void);

#endif
