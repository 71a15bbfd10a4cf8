/* What the standalone benchmark helpers (mkimage.c, tcpcopy.c,
 * wirecount.c) share: dying with errno's text, and sizes with binary
 * suffixes.  Each helper is still built alone (`cc -O2 FILE.c` in run.sh,
 * copy.sh and converge.sh, which rebuild it when this header changes
 * too), so this is a header of static inline functions, not a library.
 * Define BENCH_PROG, the name messages start with, before including it. */
#ifndef TESTS_BENCH_UTIL_H
#define TESTS_BENCH_UTIL_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static inline void die(const char *what)
{
    fprintf(stderr, BENCH_PROG ": %s: %s\n", what, strerror(errno));
    exit(1);
}

/* STR as bytes, with an optional k/M/G/T suffix (binary); anything else,
 * or less than MIN, exits with status 2 and a message. */
static inline uint64_t parse_size(const char *str, uint64_t min)
{
    char *end;
    errno = 0;
    uint64_t v = strtoull(str, &end, 10);
    int shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    }
    if (errno || end == str || *end || v < min) {
        fprintf(stderr, BENCH_PROG ": bad size '%s'\n", str);
        exit(2);
    }
    return v << shift;
}

#endif
