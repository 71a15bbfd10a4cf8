/* Plain (not thread-safe) bit arrays of unsigned long words. */
#ifndef UTIL_BITMAP_H
#define UTIL_BITMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BITS_PER_LONG (sizeof(unsigned long) * 8)
#define BITMAP_WORDS(nbits) (((nbits) + BITS_PER_LONG - 1) / BITS_PER_LONG)

unsigned long *bitmap_new(uint64_t nbits);          /* zeroed; g_free it */
void bitmap_set_range(unsigned long *map, uint64_t start, uint64_t count);
void bitmap_clear_range(unsigned long *map, uint64_t start, uint64_t count);
bool bitmap_test(const unsigned long *map, uint64_t bit);
/* Any bit set in [start, start+count)? */
bool bitmap_test_range(const unsigned long *map, uint64_t start, uint64_t count);
/* First set bit >= start and < nbits, or nbits when none. */
uint64_t bitmap_find_next_set(const unsigned long *map, uint64_t nbits, uint64_t start);
uint64_t bitmap_count(const unsigned long *map, uint64_t nbits);

#endif
