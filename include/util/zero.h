/* Zero detection for buffers of any alignment and length. */
#ifndef UTIL_ZERO_H
#define UTIL_ZERO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when all LEN bytes at BUF are zero (LEN 0 is zero).  Uses the
 * fastest implementation this CPU supports, chosen once on first use. */
bool buffer_is_zero(const void *buf, size_t len);

/* The leading run of BUF (LEN bytes, lying at offset OFF of a disk) made
 * of blocks that are all zero, or all not zero: blocks are GRAIN bytes
 * (a power of two) aligned to the disk, so the first and last may be
 * partial.  Returns the run's length (> 0 when LEN > 0) and sets *ZERO.
 * Copies split what they read into such runs: data to write, zeroes to
 * punch. */
size_t buffer_zero_run(const void *buf, size_t len, uint64_t off, size_t grain, bool *zero);

/* Byte-at-a-time reference used by tests to check buffer_is_zero. */
bool buffer_is_zero_plain(const void *buf, size_t len);

/* One implementation of buffer_is_zero, same contract. */
typedef bool (*ZeroFn)(const void *buf, size_t len);

/* Name of the implementation buffer_is_zero uses: "avx2", "sse2" or
 * "word" (the portable one). */
const char *buffer_is_zero_impl_name(void);

/* The implementation called NAME ("word", "sse2", "avx2"), or NULL when
 * this build or this CPU lacks it.  For tests and speed measurements. */
ZeroFn buffer_is_zero_variant(const char *name);

/* NULL-terminated list of every implementation name this build knows,
 * portable first; some may be unsupported by the CPU (variant NULL). */
const char *const *buffer_is_zero_variant_names(void);

#endif
