/* util/bitmap against a bool-array model. */
#include <glib.h>
#include <string.h>

#include "util/bitmap.h"

#define NBITS 1000

static void assert_same(const unsigned long *map, const bool *model, uint64_t nbits)
{
    uint64_t count = 0;
    for (uint64_t i = 0; i < nbits; i++) {
        if (bitmap_test(map, i) != model[i]) {
            g_error("bit %" G_GUINT64_FORMAT " is %d, expected %d", i, bitmap_test(map, i), model[i]);
        }
        count += model[i];
    }
    g_assert_cmpuint(bitmap_count(map, nbits), ==, count);
}

static void test_ranges_random(void)
{
    GRand *rand = g_rand_new_with_seed(1234);
    unsigned long *map = bitmap_new(NBITS);
    bool model[NBITS] = { false };

    for (int round = 0; round < 5000; round++) {
        uint64_t start = (uint64_t)g_rand_int_range(rand, 0, NBITS);
        uint64_t count = (uint64_t)g_rand_int_range(rand, 0, (gint32)(NBITS - start) + 1);
        bool set = g_rand_boolean(rand);
        if (set) {
            bitmap_set_range(map, start, count);
        } else {
            bitmap_clear_range(map, start, count);
        }
        for (uint64_t i = start; i < start + count; i++) {
            model[i] = set;
        }
        /* test_range and find_next_set over a random window. */
        uint64_t s2 = (uint64_t)g_rand_int_range(rand, 0, NBITS);
        uint64_t c2 = (uint64_t)g_rand_int_range(rand, 0, (gint32)(NBITS - s2) + 1);
        bool any = false;
        for (uint64_t i = s2; i < s2 + c2; i++) {
            any |= model[i];
        }
        g_assert_cmpint(bitmap_test_range(map, s2, c2), ==, any);
        uint64_t next = s2;
        while (next < NBITS && !model[next]) {
            next++;
        }
        g_assert_cmpuint(bitmap_find_next_set(map, NBITS, s2), ==, next);
        if (round % 500 == 0) {
            assert_same(map, model, NBITS);
        }
    }
    assert_same(map, model, NBITS);
    g_free(map);
    g_rand_free(rand);
}

static void test_edges(void)
{
    unsigned long *map = bitmap_new(130);

    g_assert_cmpuint(bitmap_find_next_set(map, 130, 0), ==, 130);
    g_assert_cmpuint(bitmap_find_next_set(map, 130, 500), ==, 130);
    bitmap_set_range(map, 63, 2);              /* straddles a word boundary */
    g_assert_true(bitmap_test(map, 63));
    g_assert_true(bitmap_test(map, 64));
    g_assert_false(bitmap_test(map, 62));
    g_assert_false(bitmap_test(map, 65));
    g_assert_cmpuint(bitmap_count(map, 130), ==, 2);
    g_assert_cmpuint(bitmap_find_next_set(map, 130, 64), ==, 64);
    g_assert_cmpuint(bitmap_find_next_set(map, 130, 65), ==, 130);
    bitmap_set_range(map, 0, 0);               /* empty range is a no-op */
    g_assert_false(bitmap_test_range(map, 0, 63));
    g_assert_false(bitmap_test_range(map, 63, 0));
    bitmap_set_range(map, 0, 130);
    g_assert_cmpuint(bitmap_count(map, 130), ==, 130);
    /* Bits past nbits in the last word are not counted by count(N<130). */
    g_assert_cmpuint(bitmap_count(map, 129), ==, 129);
    bitmap_clear_range(map, 1, 128);
    g_assert_cmpuint(bitmap_count(map, 130), ==, 2);
    g_assert_cmpuint(bitmap_find_next_set(map, 130, 1), ==, 129);
    g_free(map);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/bitmap/ranges-random", test_ranges_random);
    g_test_add_func("/bitmap/edges", test_edges);
    return g_test_run();
}
