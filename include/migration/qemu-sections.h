/* The sections a QEMU 7.2 source sends besides "block", which a blkmigd
 * destination understands or skips by their known layout (load only:
 * blkmigd never sends them):
 *
 *   "ram" version 4      records be64 (address | flags), flags in the low
 *                        12 bits (4 KiB target pages), until EOS:
 *     0x04 MEM_SIZE      address = total bytes; then per RAM block u8 len
 *                        + id, be64 length, until the lengths add up
 *     0x02 ZERO          a page: u8 fill byte
 *     0x08 PAGE          a page: 4096 bytes
 *     0x40 XBZRLE        a page: u8 encoding (1), be16 length <= 4096, data
 *     0x100 COMPRESS_PAGE a page: be32 length <= 4110, zlib data
 *     0x20 CONTINUE      with a page: same RAM block as the last page;
 *                        without it u8 len + block id comes first
 *     0x10 EOS           ends the section part
 *   Pages must name a block MEM_SIZE listed and lie inside it; anything
 *   else (RDMA hooks 0x80, unknown flags) fails.  Nothing is kept: blkmigd
 *   has no guest RAM.
 *   "timer" version 2    be64 cpu_ticks_offset, 8 unused bytes, be64
 *                        cpu_clock_offset (version 1: without the last)
 *   "globalstate" v1     be32 size, 100 bytes: the source's runstate,
 *                        NUL-terminated ("running", "paused", ...)
 *
 * A subsection in timer or globalstate (icount) fails naming it. */
#ifndef MIGRATION_QEMU_SECTIONS_H
#define MIGRATION_QEMU_SECTIONS_H

#include <stdbool.h>

/* Called when a load succeeded, before the guest may start, with the
 * source's runstate from its globalstate section (QEMU's name), or NULL
 * when the stream had none (a blkmig source's). */
typedef void (*QemuRunstateListener)(const char *runstate, void *opaque);

/* Registers the "ram", "timer" and "globalstate" handlers (load only).
 * The emulator calls it once at start-up. */
void qemu_sections_register(QemuRunstateListener runstate, void *opaque);

#endif
