/* Human sizes: "4G", "512k", "1M", "123" (bytes). */
#ifndef UTIL_SIZE_H
#define UTIL_SIZE_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#define KiB (UINT64_C(1) << 10)
#define MiB (UINT64_C(1) << 20)
#define GiB (UINT64_C(1) << 30)
#define TiB (UINT64_C(1) << 40)

/* X rounded down / up to a multiple of A (any A > 0, not only powers of
 * two); X and A are evaluated more than once. */
#define ROUND_DOWN(x, a) ((x) / (a) * (a))
#define ROUND_UP(x, a) ROUND_DOWN((x) + (a) - 1, (a))

/* Parse a non-negative size with an optional binary suffix (b, k/K, m/M,
 * g/G, t/T; "KiB" style also accepted).  Rejects overflow, negatives,
 * empty strings and trailing garbage with a message naming STR. */
bool size_parse(const char *str, uint64_t *out, GError **errp);

/* "1.5 GiB" style rendering for messages; caller frees. */
char *size_to_str(uint64_t bytes);

#endif
