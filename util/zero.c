/* Zero detection.  Migration tests every 1 MiB chunk it sends and the
 * destination every block it applies, so this runs at memory speed: the
 * x86-64 versions read whole SSE2 or AVX2 vectors, OR four of them together
 * and test once per group.  The best version for the CPU is picked on first
 * use; the word-wide version is the portable fallback.
 *
 * Every version reads only inside [buf, buf + len): unaligned ends are
 * covered by one unaligned load at each end that overlaps the aligned
 * middle, never by a wider load that would cross into the next object. */
#include "util/zero.h"

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define ZERO_HAVE_X86 1
#endif

/* may_alias: the caller's buffer is bytes of any type. */
typedef uint64_t __attribute__((may_alias)) zero_word;

bool buffer_is_zero_plain(const void *buf, size_t len)
{
    const unsigned char *p = buf;

    for (size_t i = 0; i < len; i++) {
        if (p[i]) {
            return false;
        }
    }
    return true;
}

static uint64_t load64(const unsigned char *p)
{
    uint64_t v;

    memcpy(&v, p, sizeof(v));   /* one unaligned load, no alignment UB */
    return v;
}

static uint32_t load32(const unsigned char *p)
{
    uint32_t v;

    memcpy(&v, p, sizeof(v));
    return v;
}

/* LEN < 16: two overlapping loads from each end cover every byte, which
 * beats a byte loop and needs no alignment. */
static bool zero_small(const unsigned char *p, size_t len)
{
    if (len >= 8) {
        return (load64(p) | load64(p + len - 8)) == 0;
    }
    if (len >= 4) {
        return (load32(p) | load32(p + len - 4)) == 0;
    }
    if (len == 0) {
        return true;
    }
    return (p[0] | p[len / 2] | p[len - 1]) == 0;   /* 1..3 bytes */
}

static bool words_are_zero(const zero_word *w, size_t nwords)
{
    size_t i = 0;

    for (; i + 8 <= nwords; i += 8) {
        if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] |
            w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7]) {
            return false;
        }
    }
    zero_word acc = 0;
    for (; i < nwords; i++) {
        acc |= w[i];
    }
    return acc == 0;
}

/* Portable version: aligned 8-byte words, eight per test. */
static bool zero_word_impl(const void *buf, size_t len)
{
    const unsigned char *p = buf;

    if (len < 16) {
        return zero_small(p, len);
    }
    /* Data chunks usually fail on the first or last bytes: test them before
     * walking the whole buffer.  The two loads also cover the unaligned
     * head and tail, so the middle starts and stops on word boundaries. */
    if (load64(p) | load64(p + len - 8)) {
        return false;
    }
    uintptr_t first = ((uintptr_t)p + 8) & ~(uintptr_t)7;
    uintptr_t stop = ((uintptr_t)p + len) & ~(uintptr_t)7;
    return words_are_zero((const zero_word *)first, (stop - first) / 8);
}

#ifdef ZERO_HAVE_X86

/* Address of the vector boundary at or below P; VEC is a power of two. */
static const void *align_down(const unsigned char *p, uintptr_t vec)
{
    return p - ((uintptr_t)p & (vec - 1));
}

static bool sse2_zero(__m128i v)
{
    return _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_setzero_si128())) == 0xffff;
}

/* SSE2 is part of x86-64, so this needs no CPU check. */
static bool zero_sse2(const void *buf, size_t len)
{
    const unsigned char *p = buf;

    if (len < 16) {
        return zero_small(p, len);
    }
    const unsigned char *end = p + len;
    __m128i acc = _mm_or_si128(_mm_loadu_si128((const __m128i *)p),
                               _mm_loadu_si128((const __m128i *)(end - 16)));
    if (!sse2_zero(acc)) {
        return false;
    }
    /* Aligned middle: the vectors after the head load up to the last
     * boundary; the tail load already covered what follows it. */
    const __m128i *v = align_down(p + 16, 16);
    const __m128i *stop = align_down(end, 16);
    for (; stop - v >= 4; v += 4) {
        acc = _mm_or_si128(_mm_or_si128(_mm_load_si128(v), _mm_load_si128(v + 1)),
                           _mm_or_si128(_mm_load_si128(v + 2), _mm_load_si128(v + 3)));
        if (!sse2_zero(acc)) {
            return false;
        }
    }
    for (; v < stop; v++) {
        acc = _mm_or_si128(acc, _mm_load_si128(v));
    }
    return sse2_zero(acc);
}

/* Same shape as zero_sse2 with 32-byte vectors.  Compiled for AVX2 only
 * here (not the whole build), and called only after the CPU check. */
__attribute__((target("avx2")))
static bool zero_avx2(const void *buf, size_t len)
{
    const unsigned char *p = buf;

    if (len < 32) {
        return zero_sse2(p, len);
    }
    const unsigned char *end = p + len;
    __m256i acc = _mm256_or_si256(_mm256_loadu_si256((const __m256i *)p),
                                  _mm256_loadu_si256((const __m256i *)(end - 32)));
    if (!_mm256_testz_si256(acc, acc)) {
        return false;
    }
    const __m256i *v = align_down(p + 32, 32);
    const __m256i *stop = align_down(end, 32);
    for (; stop - v >= 4; v += 4) {
        acc = _mm256_or_si256(_mm256_or_si256(_mm256_load_si256(v), _mm256_load_si256(v + 1)),
                              _mm256_or_si256(_mm256_load_si256(v + 2), _mm256_load_si256(v + 3)));
        if (!_mm256_testz_si256(acc, acc)) {
            return false;
        }
    }
    for (; v < stop; v++) {
        acc = _mm256_or_si256(acc, _mm256_load_si256(v));
    }
    return _mm256_testz_si256(acc, acc);
}

static bool cpu_has_sse2(void)
{
    return true;
}

/* GCC's check also requires the OS to save YMM state (XGETBV). */
static bool cpu_has_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2");
}

#endif /* ZERO_HAVE_X86 */

static bool cpu_any(void)
{
    return true;
}

typedef struct ZeroImpl {
    const char *name;
    ZeroFn fn;
    bool (*supported)(void);
} ZeroImpl;

/* In order of preference: the first one the CPU supports is used. */
static const ZeroImpl zero_impls[] = {
#ifdef ZERO_HAVE_X86
    { "avx2", zero_avx2, cpu_has_avx2 },
    { "sse2", zero_sse2, cpu_has_sse2 },
#endif
    { "word", zero_word_impl, cpu_any },
};
#define N_ZERO_IMPLS (sizeof(zero_impls) / sizeof(zero_impls[0]))

static const ZeroImpl *zero_best(void)
{
    for (size_t i = 0; i < N_ZERO_IMPLS; i++) {
        if (zero_impls[i].supported()) {
            return &zero_impls[i];
        }
    }
    return &zero_impls[N_ZERO_IMPLS - 1];
}

static bool zero_first_call(const void *buf, size_t len);

/* Starts at zero_first_call, which replaces itself with the best version.
 * Threads racing on the first call all store the same value; atomic only
 * so that this is defined behaviour (relaxed loads cost a plain load). */
static _Atomic(ZeroFn) zero_active = zero_first_call;

static bool zero_first_call(const void *buf, size_t len)
{
    ZeroFn fn = zero_best()->fn;

    atomic_store_explicit(&zero_active, fn, memory_order_relaxed);
    return fn(buf, len);
}

bool buffer_is_zero(const void *buf, size_t len)
{
    return atomic_load_explicit(&zero_active, memory_order_relaxed)(buf, len);
}

const char *buffer_is_zero_impl_name(void)
{
    return zero_best()->name;
}

ZeroFn buffer_is_zero_variant(const char *name)
{
    for (size_t i = 0; i < N_ZERO_IMPLS; i++) {
        if (strcmp(zero_impls[i].name, name) == 0) {
            return zero_impls[i].supported() ? zero_impls[i].fn : NULL;
        }
    }
    return NULL;
}

const char *const *buffer_is_zero_variant_names(void)
{
    static const char *const names[] = {
        "word",
#ifdef ZERO_HAVE_X86
        "sse2", "avx2",
#endif
        NULL,
    };
    return names;
}

/* The length of the block of BUF at disk offset OFF: up to the next GRAIN
 * boundary, or the end. */
static size_t block_len(size_t len, uint64_t off, size_t grain)
{
    size_t to_boundary = grain - (size_t)(off & (grain - 1));
    return to_boundary < len ? to_boundary : len;
}

size_t buffer_zero_run(const void *buf, size_t len, uint64_t off, size_t grain, bool *zero)
{
    const uint8_t *p = buf;
    size_t run = block_len(len, off, grain);

    *zero = buffer_is_zero(p, run);
    while (run < len) {
        size_t n = block_len(len - run, off + run, grain);
        if (buffer_is_zero(p + run, n) != *zero) {
            break;
        }
        run += n;
    }
    return run;
}
