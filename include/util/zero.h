/* Zero detection for buffers of any alignment and length. */
#ifndef UTIL_ZERO_H
#define UTIL_ZERO_H

#include <stdbool.h>
#include <stddef.h>

/* True when all LEN bytes at BUF are zero (LEN 0 is zero). */
bool buffer_is_zero(const void *buf, size_t len);

/* Byte-at-a-time reference used by tests to check buffer_is_zero. */
bool buffer_is_zero_plain(const void *buf, size_t len);

#endif
