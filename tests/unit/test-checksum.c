/* util/checksum: the published XXH3-128 value, streaming equal to one
 * shot however the data is split, and digests that change with the seed
 * and with any single bit of the data. */
#include <glib.h>
#include <string.h>

#include "util/checksum.h"

/* XXH3_128bits of the empty input, seed 0, as the xxHash specification's
 * test vectors give it (high 64 bits first). */
#define EMPTY_DIGEST "99aa06d3014798d86001c324468d497f"

static void test_known_answer(void)
{
    ChecksumDigest d;
    g_autofree char *hex = NULL;

    checksum_buffer(0, "", 0, &d);
    hex = checksum_to_hex(&d);
    g_assert_cmpstr(hex, ==, EMPTY_DIGEST);
}

static uint8_t *random_data(GRand *rand, size_t len)
{
    uint8_t *buf = g_malloc(len);

    for (size_t i = 0; i < len; i++) {
        buf[i] = g_rand_int(rand);
    }
    return buf;
}

static void test_streaming_matches_one_shot(void)
{
    GRand *rand = g_rand_new_with_seed(7);
    const size_t len = 300000;
    g_autofree uint8_t *data = random_data(rand, len);
    ChecksumDigest whole, pieces;

    checksum_buffer(42, data, len, &whole);
    for (int round = 0; round < 50; round++) {
        Checksum *c = checksum_new(42);
        size_t pos = 0;

        while (pos < len) {
            size_t piece = g_rand_int_range(rand, 0, 70000);
            size_t n = MIN(len - pos, piece);
            checksum_update(c, data + pos, n);
            pos += n;
        }
        checksum_digest(c, &pieces);
        checksum_free(c);
        g_assert_cmpmem(whole.bytes, CHECKSUM_LEN, pieces.bytes, CHECKSUM_LEN);
    }
    g_rand_free(rand);
}

static void test_seed_and_bits_matter(void)
{
    GRand *rand = g_rand_new_with_seed(9);
    const size_t len = 4096;
    g_autofree uint8_t *data = random_data(rand, len);
    ChecksumDigest a, b;

    checksum_buffer(1, data, len, &a);
    checksum_buffer(2, data, len, &b);
    g_assert_true(memcmp(a.bytes, b.bytes, CHECKSUM_LEN) != 0);
    for (size_t bit = 0; bit < len * 8; bit += 61) {
        data[bit / 8] ^= 1u << (bit % 8);
        checksum_buffer(1, data, len, &b);
        data[bit / 8] ^= 1u << (bit % 8);
        g_assert_true(memcmp(a.bytes, b.bytes, CHECKSUM_LEN) != 0);
    }
    g_rand_free(rand);
}

static void test_be64_field(void)
{
    const uint8_t bytes[8] = { 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08 };
    Checksum *c = checksum_new(5);
    ChecksumDigest field, raw;

    checksum_update_be64(c, UINT64_C(0x0102030405060708));
    checksum_digest(c, &field);
    checksum_free(c);
    checksum_buffer(5, bytes, sizeof(bytes), &raw);
    g_assert_cmpmem(field.bytes, CHECKSUM_LEN, raw.bytes, CHECKSUM_LEN);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/checksum/known-answer", test_known_answer);
    g_test_add_func("/checksum/streaming", test_streaming_matches_one_shot);
    g_test_add_func("/checksum/seed-and-bits", test_seed_and_bits_matter);
    g_test_add_func("/checksum/be64-field", test_be64_field);
    return g_test_run();
}
