/* Plain bit arrays, operated on a word at a time where ranges allow. */
#include "util/bitmap.h"

#include <glib.h>

#define WORD_OF(bit) ((bit) / BITS_PER_LONG)
#define BIT_IN_WORD(bit) ((bit) % BITS_PER_LONG)

/* Mask of bits [lo, hi) within one word, 0 <= lo < hi <= BITS_PER_LONG. */
static unsigned long word_mask(unsigned lo, unsigned hi)
{
    unsigned long upper = hi == BITS_PER_LONG ? ~0UL : (1UL << hi) - 1;
    return upper & ~((1UL << lo) - 1);
}

unsigned long *bitmap_new(uint64_t nbits)
{
    return g_new0(unsigned long, BITMAP_WORDS(nbits) ? BITMAP_WORDS(nbits) : 1);
}

/* Calls FN on each word of [start, start+count) with the mask of the bits
 * of the range inside that word; stops early when FN returns true. */
typedef bool (*word_fn)(unsigned long *word, unsigned long mask);

static bool for_each_word(unsigned long *map, uint64_t start, uint64_t count, word_fn fn)
{
    uint64_t end = start + count;

    while (start < end) {
        uint64_t word_end = (WORD_OF(start) + 1) * BITS_PER_LONG;
        uint64_t stop = end < word_end ? end : word_end;
        unsigned hi = stop == word_end ? BITS_PER_LONG : BIT_IN_WORD(stop);
        if (fn(&map[WORD_OF(start)], word_mask(BIT_IN_WORD(start), hi))) {
            return true;
        }
        start = stop;
    }
    return false;
}

static bool set_word(unsigned long *w, unsigned long mask) { *w |= mask; return false; }
static bool clear_word(unsigned long *w, unsigned long mask) { *w &= ~mask; return false; }
static bool word_has_bits(unsigned long *w, unsigned long mask) { return (*w & mask) != 0; }

void bitmap_set_range(unsigned long *map, uint64_t start, uint64_t count)
{
    for_each_word(map, start, count, set_word);
}

void bitmap_clear_range(unsigned long *map, uint64_t start, uint64_t count)
{
    for_each_word(map, start, count, clear_word);
}

bool bitmap_test(const unsigned long *map, uint64_t bit)
{
    return (map[WORD_OF(bit)] >> BIT_IN_WORD(bit)) & 1;
}

bool bitmap_test_range(const unsigned long *map, uint64_t start, uint64_t count)
{
    /* word_has_bits only reads; the cast keeps one walker for all three. */
    return for_each_word((unsigned long *)map, start, count, word_has_bits);
}

uint64_t bitmap_find_next_set(const unsigned long *map, uint64_t nbits, uint64_t start)
{
    if (start >= nbits) {
        return nbits;
    }
    uint64_t w = WORD_OF(start);
    unsigned long bits = map[w] & ~((1UL << BIT_IN_WORD(start)) - 1);
    uint64_t nwords = BITMAP_WORDS(nbits);

    while (!bits) {
        if (++w >= nwords) {
            return nbits;
        }
        bits = map[w];
    }
    uint64_t found = w * BITS_PER_LONG + (uint64_t)__builtin_ctzl(bits);
    return found < nbits ? found : nbits;
}

/* The words of a count, with the popcount the compiler was told of: a
 * call into libgcc per word for the build's baseline x86-64 (no -mpopcnt,
 * so the binaries run on any x86-64), one instruction in the variant
 * below, chosen at run time. */
#define COUNT_WORDS(map, nwords, n)                                 \
    for (uint64_t w_ = 0; w_ < (nwords); w_++) {                    \
        (n) += (uint64_t)__builtin_popcountl((map)[w_]);            \
    }

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("popcnt")))
static uint64_t count_words_popcnt(const unsigned long *map, uint64_t nwords)
{
    uint64_t n = 0;
    COUNT_WORDS(map, nwords, n);
    return n;
}
#endif

static uint64_t count_words(const unsigned long *map, uint64_t nwords)
{
    uint64_t n = 0;

#if defined(__x86_64__) && defined(__GNUC__)
    if (__builtin_cpu_supports("popcnt")) {
        return count_words_popcnt(map, nwords);
    }
#endif
    COUNT_WORDS(map, nwords, n);
    return n;
}

uint64_t bitmap_count(const unsigned long *map, uint64_t nbits)
{
    uint64_t full = nbits / BITS_PER_LONG;
    uint64_t n = count_words(map, full);

    if (BIT_IN_WORD(nbits)) {
        n += (uint64_t)__builtin_popcountl(map[full] & word_mask(0, BIT_IN_WORD(nbits)));
    }
    return n;
}
