/* Drives for in-process tests: open a fresh sparse raw drive through the
 * block layer and put known data on it. */
#ifndef TESTS_DRIVES_H
#define TESTS_DRIVES_H

#include <stddef.h>
#include <stdint.h>

#include "block/block.h"

/* Create PATH as a sparse raw file of SIZE, replacing whatever is there,
 * and open it as drive ID (the test fails if that is not possible). */
BlockDriverState *td_open_drive(const char *id, const char *path, uint64_t size);
/* A never-zero byte pattern that depends on SEED and the position. */
void td_fill(uint8_t *buf, size_t len, uint8_t seed);
/* td_fill LEN bytes at OFF of BS, then flush. */
void td_write_drive(BlockDriverState *bs, uint64_t off, size_t len, uint8_t seed);
/* Scattered data on a drive of SIZE: small writes, a whole 1 MiB chunk,
 * explicitly written zeros (allocated but zero: must arrive as a hole),
 * data in the last sector, and past 16 MiB an unaligned run. */
void td_populate(BlockDriverState *bs, uint64_t size, uint8_t seed);

#endif
