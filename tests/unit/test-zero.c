/* Every buffer_is_zero implementation against the byte-loop reference, at
 * every alignment, plus a speed report (printed, never asserted: shared
 * machines make timings meaningless as pass/fail criteria). */
#include <glib.h>
#include <stdint.h>
#include <string.h>

#include "util/zero.h"

#define MAX_ALIGN 64
#define MAX_SMALL_LEN 600
#define GUARD 64
#define GUARD_BYTE 0xff
#define MAX_VARIANTS 8

typedef struct Variant {
    const char *name;
    ZeroFn fn;
} Variant;

/* The implementations this CPU supports, plus the dispatching entry point
 * itself (it must agree with whichever one it picked). */
static Variant variants[MAX_VARIANTS];
static size_t n_variants;

static void collect_variants(void)
{
    for (const char *const *name = buffer_is_zero_variant_names(); *name; name++) {
        ZeroFn fn = buffer_is_zero_variant(*name);
        if (fn) {
            g_assert_cmpuint(n_variants, <, MAX_VARIANTS - 1);
            variants[n_variants++] = (Variant) { *name, fn };
        }
    }
    variants[n_variants++] = (Variant) { "dispatch", buffer_is_zero };
}

/* A 64-aligned window inside MEM with GUARD non-zero bytes before it and
 * at least GUARD after its longest use: any read outside [buf, buf+len)
 * turns an all-zero answer into "not zero". */
static unsigned char *guarded_base(unsigned char *mem)
{
    uintptr_t a = ((uintptr_t)mem + GUARD + MAX_ALIGN - 1) & ~(uintptr_t)(MAX_ALIGN - 1);
    return (unsigned char *)a;
}

static size_t guarded_size(size_t max_len)
{
    return GUARD + MAX_ALIGN - 1 + MAX_ALIGN + max_len + GUARD;
}

/* All variants agree with WANT on BUF[0..len); reports the first few
 * disagreements in detail rather than stopping at the first. */
static void check_all(const unsigned char *buf, size_t len, size_t pos, bool want)
{
    static unsigned reported;

    for (size_t i = 0; i < n_variants; i++) {
        if (variants[i].fn(buf, len) != want) {
            if (reported++ < 20) {
                g_test_message("%s: len %zu, align %zu, non-zero byte at %lld: expected %s",
                               variants[i].name, len, (size_t)((uintptr_t)buf % MAX_ALIGN),
                               pos == SIZE_MAX ? -1LL : (long long)pos,
                               want ? "zero" : "non-zero");
            }
            g_test_fail();
        }
    }
}

static void test_variants_listed(void)
{
    const char *active = buffer_is_zero_impl_name();

    g_test_message("buffer_is_zero uses '%s'", active);
    for (const char *const *name = buffer_is_zero_variant_names(); *name; name++) {
        g_test_message("variant %s: %s", *name,
                       buffer_is_zero_variant(*name) ? "supported" : "not supported by this CPU");
    }
    g_assert_nonnull(buffer_is_zero_variant(active));
    g_assert_nonnull(buffer_is_zero_variant("word"));
#if defined(__x86_64__)
    g_assert_nonnull(buffer_is_zero_variant("sse2"));
#endif
    g_assert_null(buffer_is_zero_variant("no-such-variant"));
    g_assert_null(buffer_is_zero_variant(""));
}

/* Every alignment 0..63 and length 0..600, all zero and with one non-zero
 * byte at every position (a different bit each time). */
static void test_small_all_alignments(void)
{
    unsigned char *mem = g_malloc(guarded_size(MAX_SMALL_LEN));
    unsigned char *base = guarded_base(mem);

    for (size_t align = 0; align < MAX_ALIGN; align++) {
        unsigned char *buf = base + align;
        for (size_t len = 0; len <= MAX_SMALL_LEN; len++) {
            memset(mem, GUARD_BYTE, guarded_size(MAX_SMALL_LEN));
            memset(buf, 0, len);
            g_assert_true(buffer_is_zero_plain(buf, len));
            check_all(buf, len, SIZE_MAX, true);
            for (size_t pos = 0; pos < len; pos++) {
                buf[pos] = (unsigned char)(1u << (pos % 8));
                /* The reference is a byte loop, blind to alignment:
                 * checking it once per length and position is enough. */
                g_assert_true(align > 0 || !buffer_is_zero_plain(buf, len));
                check_all(buf, len, pos, false);
                buf[pos] = 0;
            }
        }
    }
    g_free(mem);
}

/* Allocations exactly as long as the window: under AddressSanitizer any
 * read past the end (or before an allocation's start) is reported. */
static void test_exact_allocations(void)
{
    for (size_t align = 0; align < MAX_ALIGN; align++) {
        for (size_t len = 0; len <= MAX_SMALL_LEN; len++) {
            /* g_malloc0(0) is NULL: fine, a 0-byte window is not read. */
            unsigned char *mem = g_malloc0(align + len);
            unsigned char *buf = mem ? mem + align : NULL;
            check_all(buf, len, SIZE_MAX, true);
            g_free(mem);
        }
    }
}

/* Positions worth probing in a long window: the first and last 192 bytes
 * (head and tail handling), and in a sample of 32-byte blocks (chosen by
 * the address, so they are real vector boundaries) the first and last byte
 * of each 16- and 32-byte vector.  The stride is odd, so the sample covers
 * every slot of a 4-vector group. */
static GArray *large_positions(const unsigned char *buf, size_t len, GRand *rand)
{
    GArray *pos = g_array_new(FALSE, FALSE, sizeof(size_t));
    size_t edge = MIN(len, 192);

    for (size_t i = 0; i < edge; i++) {
        size_t tail = len - 1 - i;
        g_array_append_val(pos, i);
        g_array_append_val(pos, tail);
    }
    size_t first_block = (32 - (uintptr_t)buf % 32) % 32;
    for (size_t b = first_block; b + 32 <= len; b += 32 * 1021) {
        size_t offs[] = { b, b + 15, b + 16, b + 31 };
        g_array_append_vals(pos, offs, G_N_ELEMENTS(offs));
    }
    for (int i = 0; i < 24; i++) {
        size_t r = (size_t)g_rand_int_range(rand, 0, (gint32)len);
        g_array_append_val(pos, r);
    }
    return pos;
}

static void check_large(unsigned char *buf, size_t len, bool check_plain, GRand *rand)
{
    GArray *pos = large_positions(buf, len, rand);

    g_assert_true(buffer_is_zero_plain(buf, len));
    check_all(buf, len, SIZE_MAX, true);
    for (guint i = 0; i < pos->len; i++) {
        size_t p = g_array_index(pos, size_t, i);
        buf[p] = (unsigned char)(0x80u >> (p % 8));
        if (check_plain) {
            g_assert_false(buffer_is_zero_plain(buf, len));
        }
        check_all(buf, len, p, false);
        buf[p] = 0;
    }
    g_array_free(pos, TRUE);
}

/* Long windows at a sample of alignments (every one would take minutes);
 * the plain reference is alignment-blind, so it is checked at one, and
 * only up to 64 KiB: a byte loop over 1 MiB per probe would dominate the
 * run time (under ASan by far) to confirm what the probe makes obvious. */
static void test_large(void)
{
    static const size_t lens[] = {
        4095, 4096, 4097, 65536 + 3, 1 << 20, (1 << 20) + 17,
    };
    static const size_t aligns[] = { 0, 1, 3, 7, 8, 15, 16, 17, 31, 32, 33, 48, 63 };
    size_t max_len = (1 << 20) + 17;
    unsigned char *mem = g_malloc(guarded_size(max_len));
    unsigned char *base = guarded_base(mem);
    GRand *rand = g_rand_new_with_seed(g_test_rand_int());

    for (size_t l = 0; l < G_N_ELEMENTS(lens); l++) {
        for (size_t a = 0; a < G_N_ELEMENTS(aligns); a++) {
            unsigned char *buf = base + aligns[a];
            memset(mem, GUARD_BYTE, guarded_size(max_len));
            memset(buf, 0, lens[l]);
            check_large(buf, lens[l], a == 0 && lens[l] <= 65536 + 3, rand);
        }
    }
    g_rand_free(rand);
    g_free(mem);
}

/* The entry point over a 1 MiB + odd window, every 97th position (hits
 * every offset modulo 8, 16, 32 and 64). */
static void test_big_sweep(void)
{
    size_t len = (1 << 20) + 13;
    unsigned char *mem = g_malloc0(len + 3);
    unsigned char *buf = mem + 3;

    for (size_t pos = 0; pos < len; pos += 97) {
        buf[pos] = 1;
        g_assert_false(buffer_is_zero(buf, len));
        buf[pos] = 0;
    }
    g_assert_true(buffer_is_zero(buf, len));
    g_free(mem);
}

/* Runs of a buffer split at a 4 KiB grain that is aligned to a disk
 * offset, not to the buffer: the first and last blocks are partial. */
static void test_zero_runs(void)
{
    enum { GRAIN = 4096, LEN = 10 * GRAIN };
    unsigned char *buf = g_malloc0(LEN);
    bool zero;
    uint64_t off = 3 * GRAIN - 100;        /* the buffer starts 100 bytes before a block */

    g_assert_cmpuint(buffer_zero_run(buf, LEN, off, GRAIN, &zero), ==, LEN);
    g_assert_true(zero);
    buf[100 + GRAIN + 5] = 1;              /* in the second whole block */
    g_assert_cmpuint(buffer_zero_run(buf, LEN, off, GRAIN, &zero), ==, 100 + GRAIN);
    g_assert_true(zero);
    g_assert_cmpuint(buffer_zero_run(buf + 100 + GRAIN, LEN - 100 - GRAIN, off + 100 + GRAIN,
                                     GRAIN, &zero), ==, GRAIN);
    g_assert_false(zero);
    buf[0] = 1;                            /* the partial head block */
    g_assert_cmpuint(buffer_zero_run(buf, LEN, off, GRAIN, &zero), ==, 100);
    g_assert_false(zero);
    g_assert_cmpuint(buffer_zero_run(buf, 50, off, GRAIN, &zero), ==, 50);
    g_assert_cmpuint(buffer_zero_run(buf, 0, off, GRAIN, &zero), ==, 0);
    g_free(buf);
}

/* GB/s of FN over LEN zero bytes, repeated for at least 50 ms. */
static double zero_speed(ZeroFn fn, const unsigned char *buf, size_t len)
{
    volatile bool sink = true;
    gint64 start = g_get_monotonic_time(), now;
    size_t reps = 0;

    do {
        for (int i = 0; i < 8; i++) {
            sink = sink & fn(buf, len);
        }
        reps += 8;
        now = g_get_monotonic_time();
    } while (now - start < 50000);
    g_assert_true(sink);
    return (double)reps * (double)len / (double)(now - start) / 1e3;
}

static void test_speed(void)
{
    static const size_t sizes[] = { 1 << 20, 64 << 20 };

    for (size_t s = 0; s < G_N_ELEMENTS(sizes); s++) {
        /* Written, not just calloc-ed: untouched pages all map the one
         * shared zero page, which would measure the cache instead. */
        unsigned char *buf = g_malloc(sizes[s]);
        memset(buf, 0, sizes[s]);
        g_test_message("%zu MiB zero buffer (%s): plain %.1f GB/s", sizes[s] >> 20,
                       s ? "memory" : "cache", zero_speed(buffer_is_zero_plain, buf, sizes[s]));
        for (size_t i = 0; i < n_variants; i++) {
            g_test_message("  %-8s %.1f GB/s", variants[i].name,
                           zero_speed(variants[i].fn, buf, sizes[s]));
        }
        g_free(buf);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    collect_variants();
    g_test_add_func("/zero/variants-listed", test_variants_listed);
    g_test_add_func("/zero/small-all-alignments", test_small_all_alignments);
    g_test_add_func("/zero/exact-allocations", test_exact_allocations);
    g_test_add_func("/zero/large", test_large);
    g_test_add_func("/zero/big-sweep", test_big_sweep);
    g_test_add_func("/zero/runs", test_zero_runs);
    g_test_add_func("/zero/speed", test_speed);
    return g_test_run();
}
