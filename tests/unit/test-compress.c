/* Compressor and Decompressor: round trips over the kinds of chunk a disk
 * holds, and hostile input (bit flips, truncation, wrong sizes, garbage)
 * that must fail with an error without writing outside the output buffer.
 * Speeds are printed, never asserted. */
#include <glib.h>
#include <string.h>
#include <zstd.h>

#include "util/compress.h"

#define GUARD_LEN 4096
#define GUARD_BYTE 0xa5
#define CHUNK (1u << 20)

static const CompressAlgo all_algos[] = { COMPRESS_NONE, COMPRESS_ZLIB, COMPRESS_ZSTD };
static const CompressAlgo real_algos[] = { COMPRESS_ZLIB, COMPRESS_ZSTD };

/* ---- data ---- */

static GRand *test_rand(void)
{
    return g_rand_new_with_seed(g_test_rand_int());   /* --seed reproduces */
}

static void fill_random(unsigned char *buf, size_t len, GRand *rand)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (unsigned char)g_rand_int(rand);
    }
}

/* Words from a small vocabulary: compresses about 4:1, like text or
 * structured metadata. */
static void fill_text(unsigned char *buf, size_t len, GRand *rand)
{
    static const char *const words[] = {
        "block ", "migration ", "dirty ", "chunk ", "bitmap ", "guest ", "disk ", "sector ",
        "0x0000 ", "\n", "zero ", "write ", "stream ", "qemu ", "nbd ", "data ",
    };
    size_t i = 0;

    while (i < len) {
        const char *w = words[g_rand_int_range(rand, 0, G_N_ELEMENTS(words))];
        size_t n = MIN(strlen(w), len - i);
        memcpy(buf + i, w, n);
        i += n;
    }
}

/* Each 4 KiB block half random, half text: a mixed disk. */
static void fill_half(unsigned char *buf, size_t len, GRand *rand)
{
    for (size_t off = 0; off < len; off += 4096) {
        size_t n = MIN(4096, len - off);
        fill_random(buf + off, n / 2, rand);
        fill_text(buf + off + n / 2, n - n / 2, rand);
    }
}

typedef enum { DATA_ZERO, DATA_RANDOM, DATA_TEXT, DATA_HALF } DataKind;

static unsigned char *make_data(DataKind kind, size_t len, GRand *rand)
{
    unsigned char *buf = g_malloc0(len + 1);

    if (kind == DATA_RANDOM) {
        fill_random(buf, len, rand);
    } else if (kind == DATA_TEXT) {
        fill_text(buf, len, rand);
    } else if (kind == DATA_HALF) {
        fill_half(buf, len, rand);
    }
    return buf;
}

/* ---- guarded buffers ---- */

/* CAP usable bytes with GUARD_LEN bytes of GUARD_BYTE on both sides. */
static unsigned char *guarded_new(size_t cap)
{
    unsigned char *mem = g_malloc(cap + 2 * GUARD_LEN);

    memset(mem, GUARD_BYTE, cap + 2 * GUARD_LEN);
    return mem + GUARD_LEN;
}

/* Asserts nothing was written around BUF[0..cap), then frees it. */
static void guarded_free(unsigned char *buf, size_t cap)
{
    unsigned char *mem = buf - GUARD_LEN;

    for (size_t i = 0; i < GUARD_LEN; i++) {
        if (mem[i] != GUARD_BYTE || buf[cap + i] != GUARD_BYTE) {
            g_error("guard byte %s the %zu-byte buffer overwritten",
                    mem[i] != GUARD_BYTE ? "before" : "after", cap);
        }
    }
    g_free(mem);
}

/* Decompresses twice: into an allocation exactly EXPECTED_LEN long (so
 * AddressSanitizer sees any overflow) and into a guarded one (checked by
 * hand in every build).  Both runs must agree; on success the output must
 * equal WANT when given.  Returns the result, the error in *ERRP. */
static bool decompress_checked(Decompressor *d, const void *src, size_t len,
                               size_t expected_len, const void *want, GError **errp)
{
    unsigned char *exact = g_malloc(expected_len);
    GError *err1 = NULL;
    bool ok1 = decompressor_decompress(d, src, len, exact, expected_len, &err1);
    g_free(exact);

    unsigned char *dst = guarded_new(expected_len);
    bool ok = decompressor_decompress(d, src, len, dst, expected_len, errp);
    g_assert_cmpint(ok, ==, ok1);
    g_assert_true(ok || (errp && *errp));
    g_assert_true(ok || err1);
    g_clear_error(&err1);
    if (ok && want) {
        g_assert_cmpmem(dst, expected_len, want, expected_len);
    }
    guarded_free(dst, expected_len);
    return ok;
}

/* Compresses SRC with C into a new buffer of exactly the bound. */
static unsigned char *compress_new(Compressor *c, const void *src, size_t len, size_t *out_len)
{
    size_t cap = compressor_bound(c, len);
    unsigned char *dst = guarded_new(cap);
    GError *err = NULL;

    g_assert_true(cap >= len && (cap > 0 || compressor_algo(c) == COMPRESS_NONE));
    g_assert_true(compressor_compress(c, src, len, dst, cap, out_len, &err));
    g_assert_no_error(err);
    g_assert_cmpuint(*out_len, <=, cap);
    unsigned char *out = g_memdup2(dst, *out_len);
    guarded_free(dst, cap);
    return out;
}

/* ---- names and levels ---- */

static void test_names(void)
{
    for (size_t i = 0; i < G_N_ELEMENTS(all_algos); i++) {
        const char *name = compress_algo_name(all_algos[i]);
        g_assert_nonnull(name);
        g_assert_cmpint(compress_algo_from_name(name), ==, all_algos[i]);
    }
    g_assert_cmpint(compress_algo_from_name("zlib"), ==, COMPRESS_ZLIB);
    g_assert_cmpint(compress_algo_from_name("zstd"), ==, COMPRESS_ZSTD);
    g_assert_cmpint(compress_algo_from_name("none"), ==, COMPRESS_NONE);
    g_assert_cmpint(compress_algo_from_name("lz4"), ==, COMPRESS_INVALID);
    g_assert_cmpint(compress_algo_from_name("ZSTD"), ==, COMPRESS_INVALID);
    g_assert_cmpint(compress_algo_from_name(""), ==, COMPRESS_INVALID);
    g_assert_cmpint(compress_algo_from_name(NULL), ==, COMPRESS_INVALID);
    g_assert_null(compress_algo_name(COMPRESS_INVALID));
    g_assert_null(compress_algo_name((CompressAlgo)42));
}

static void expect_bad_level(CompressAlgo algo, int level, const char *range)
{
    GError *err = NULL;

    g_assert_null(compressor_new(algo, level, &err));
    g_assert_error(err, COMPRESS_ERROR, COMPRESS_ERROR_INVALID);
    g_assert_nonnull(strstr(err->message, range));
    g_error_free(err);
}

static void test_levels(void)
{
    GError *err = NULL;
    Compressor *c;

    c = compressor_new(COMPRESS_ZSTD, COMPRESS_LEVEL_DEFAULT, &err);
    g_assert_no_error(err);
    g_assert_cmpint(compressor_level(c), ==, 1);
    g_assert_cmpint(compressor_algo(c), ==, COMPRESS_ZSTD);
    compressor_free(c);
    c = compressor_new(COMPRESS_ZLIB, COMPRESS_LEVEL_DEFAULT, &err);
    g_assert_no_error(err);
    g_assert_cmpint(compressor_level(c), ==, 1);
    compressor_free(c);
    c = compressor_new(COMPRESS_ZSTD, 19, &err);
    g_assert_no_error(err);
    compressor_free(c);
    c = compressor_new(COMPRESS_NONE, 0, &err);
    g_assert_no_error(err);
    compressor_free(c);

    expect_bad_level(COMPRESS_ZSTD, 20, "1..19");
    expect_bad_level(COMPRESS_ZSTD, -1, "1..19");
    expect_bad_level(COMPRESS_ZLIB, 10, "1..9");
    expect_bad_level(COMPRESS_ZLIB, -3, "1..9");
    expect_bad_level(COMPRESS_NONE, 1, "0..0");
    expect_bad_level((CompressAlgo)7, 1, "unknown compression algorithm 7");
    expect_bad_level(COMPRESS_INVALID, 1, "unknown");
    g_assert_null(decompressor_new(COMPRESS_INVALID));
    g_assert_null(decompressor_new((CompressAlgo)3));
    compressor_free(NULL);
    decompressor_free(NULL);
}

/* ---- round trips ---- */

static void round_trip(Compressor *c, Decompressor *d, const unsigned char *src, size_t len)
{
    size_t clen;
    unsigned char *comp = compress_new(c, src, len, &clen);
    GError *err = NULL;

    if (!decompress_checked(d, comp, clen, len, src, &err)) {
        g_error("%s level %d, %zu bytes: %s", compress_algo_name(compressor_algo(c)),
                compressor_level(c), len, err->message);
    }
    g_free(comp);
}

/* Levels worth covering: default, a middle one, the maximum. */
static void levels_of(CompressAlgo algo, int levels[3])
{
    levels[0] = COMPRESS_LEVEL_DEFAULT;
    levels[1] = algo == COMPRESS_ZSTD ? 3 : algo == COMPRESS_ZLIB ? 6 : 0;
    levels[2] = compress_level_max(algo);
}

static Compressor *compressor_ok(CompressAlgo algo, int level)
{
    GError *err = NULL;
    Compressor *c = compressor_new(algo, level, &err);

    g_assert_no_error(err);
    return c;
}

/* Small and odd sizes at every level; 1 MiB chunks at all but the highest
 * (zstd -19 on 1 MiB takes a second, many under ASan).  One compressor and
 * decompressor serve every buffer, as in migration. */
static void test_round_trip(void)
{
    static const size_t small[] = { 0, 1, 2, 7, 64, 4095, 65536 + 5 };
    GRand *rand = test_rand();

    for (size_t a = 0; a < G_N_ELEMENTS(all_algos); a++) {
        g_autoptr(Decompressor) d = decompressor_new(all_algos[a]);
        int levels[3];
        levels_of(all_algos[a], levels);
        for (int l = 0; l < 3; l++) {
            g_autoptr(Compressor) c = compressor_ok(all_algos[a], levels[l]);
            for (DataKind k = DATA_ZERO; k <= DATA_HALF; k++) {
                for (size_t i = 0; i < G_N_ELEMENTS(small); i++) {
                    g_autofree unsigned char *src = make_data(k, small[i], rand);
                    round_trip(c, d, src, small[i]);
                }
                if (l < 2) {
                    g_autofree unsigned char *src = make_data(k, CHUNK, rand);
                    round_trip(c, d, src, CHUNK);
                }
            }
        }
    }
    g_rand_free(rand);
}

/* The bound always suffices, even for incompressible data.  A capacity of
 * exactly the compressed size works for zlib; zstd may want a few bytes of
 * slack (it stops before blocks it cannot prove will fit), so there it
 * may fail with NO_SPACE instead.  Smaller capacities fail with NO_SPACE
 * and nothing past the capacity is written. */
static void test_no_space(void)
{
    GRand *rand = test_rand();

    for (size_t a = 0; a < G_N_ELEMENTS(all_algos); a++) {
        g_autoptr(Compressor) c = compressor_ok(all_algos[a], COMPRESS_LEVEL_DEFAULT);
        for (DataKind k = DATA_ZERO; k <= DATA_HALF; k++) {
            size_t len = 16384, clen, clen2;
            g_autofree unsigned char *src = make_data(k, len, rand);
            g_free(compress_new(c, src, len, &clen));

            GError *err = NULL;
            unsigned char *dst = guarded_new(clen);
            if (compressor_compress(c, src, len, dst, clen, &clen2, &err)) {
                g_assert_cmpuint(clen2, ==, clen);
            } else {
                g_assert_cmpint(all_algos[a], ==, COMPRESS_ZSTD);
                g_assert_error(err, COMPRESS_ERROR, COMPRESS_ERROR_NO_SPACE);
                g_clear_error(&err);
            }
            guarded_free(dst, clen);

            size_t caps[] = { clen - 1, clen / 2, 1, 0 };
            for (size_t i = 0; i < G_N_ELEMENTS(caps); i++) {
                dst = guarded_new(caps[i]);
                g_assert_false(compressor_compress(c, src, len, dst, caps[i], &clen2, &err));
                g_assert_error(err, COMPRESS_ERROR, COMPRESS_ERROR_NO_SPACE);
                g_clear_error(&err);
                guarded_free(dst, caps[i]);
            }
        }
    }
    g_rand_free(rand);
}

/* ---- hostile input ---- */

/* A compressed half-random chunk of *LEN bytes of ALGO (small, so that
 * every bit of it can be flipped in a short test). */
static unsigned char *sample_chunk(CompressAlgo algo, GRand *rand, unsigned char **orig,
                                   size_t *len, size_t *clen)
{
    g_autoptr(Compressor) c = compressor_ok(algo, COMPRESS_LEVEL_DEFAULT);

    *orig = make_data(DATA_HALF, *len, rand);
    return compress_new(c, *orig, *len, clen);
}

/* Every single-bit flip of a compressed chunk: either an error, or exactly
 * the original data (a few bits are ignored by the decoders: padding to
 * a byte boundary, unused table entries); never different data, which the
 * checksums of both formats catch. */
static void test_bit_flips(void)
{
    GRand *rand = test_rand();

    for (size_t a = 0; a < G_N_ELEMENTS(real_algos); a++) {
        g_autoptr(Decompressor) d = decompressor_new(real_algos[a]);
        unsigned char *orig;
        size_t len = 3000, clen, decoded = 0;
        unsigned char *comp = sample_chunk(real_algos[a], rand, &orig, &len, &clen);
        g_autofree unsigned char *out = g_malloc(len);
        size_t other = 0;

        for (size_t bit = 0; bit < clen * 8; bit++) {
            GError *err = NULL;
            comp[bit / 8] ^= (unsigned char)(1u << (bit % 8));
            if (decompress_checked(d, comp, clen, len, NULL, &err)) {
                /* Whatever the format's own check (zlib's Adler-32,
                 * zstd's 32-bit checksum) lets through: other data of
                 * the right size, rarely (block-checksum is the guard). */
                g_assert_true(decompressor_decompress(d, comp, clen, out, len, NULL));
                decoded++;
                other += memcmp(out, orig, len) != 0;
            } else {
                g_assert_true(err->domain == COMPRESS_ERROR);
                g_clear_error(&err);
            }
            comp[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        }
        g_test_message("%s: %zu bit flips in %zu bytes, %zu decoded, %zu of them to other data",
                       compress_algo_name(real_algos[a]), clen * 8, clen, decoded, other);
        g_assert_cmpuint(other * 100, <=, clen * 8);
        g_assert_true(decompress_checked(d, comp, clen, len, orig, NULL));
        g_free(comp);
        g_free(orig);
    }
    g_rand_free(rand);
}

/* Every truncation fails as corrupt; the context still works after. */
static void test_truncation(void)
{
    GRand *rand = test_rand();

    for (size_t a = 0; a < G_N_ELEMENTS(real_algos); a++) {
        g_autoptr(Decompressor) d = decompressor_new(real_algos[a]);
        unsigned char *orig;
        size_t len = 8192, clen;
        unsigned char *comp = sample_chunk(real_algos[a], rand, &orig, &len, &clen);

        for (size_t n = 0; n < clen; n++) {
            GError *err = NULL;
            /* A copy of exactly N bytes: reading past it is an ASan error. */
            g_autofree unsigned char *part = g_memdup2(comp, n);
            g_assert_false(decompress_checked(d, part, n, len, NULL, &err));
            g_assert_error(err, COMPRESS_ERROR, COMPRESS_ERROR_CORRUPT);
            if (n == clen - 1) {
                g_test_message("%s, last byte cut: %s", compress_algo_name(real_algos[a]),
                               err->message);
            }
            g_clear_error(&err);
        }
        g_assert_true(decompress_checked(d, comp, clen, len, orig, NULL));
        g_free(comp);
        g_free(orig);
    }
    g_rand_free(rand);
}

/* Intact data but the wrong expected size: a SIZE error that says so. */
static void test_wrong_size(void)
{
    GRand *rand = test_rand();

    for (size_t a = 0; a < G_N_ELEMENTS(all_algos); a++) {
        g_autoptr(Compressor) c = compressor_ok(all_algos[a], COMPRESS_LEVEL_DEFAULT);
        g_autoptr(Decompressor) d = decompressor_new(all_algos[a]);
        for (DataKind k = DATA_ZERO; k <= DATA_HALF; k++) {
            size_t len = 8192, clen;
            g_autofree unsigned char *src = make_data(k, len, rand);
            g_autofree unsigned char *comp = compress_new(c, src, len, &clen);
            size_t wrong[] = { len - 1, len + 1, 0, 1, len / 2, 2 * len };
            for (size_t i = 0; i < G_N_ELEMENTS(wrong); i++) {
                GError *err = NULL;
                g_assert_false(decompress_checked(d, comp, clen, wrong[i], NULL, &err));
                g_assert_error(err, COMPRESS_ERROR, COMPRESS_ERROR_SIZE);
                if (k == DATA_TEXT && i < 2) {
                    g_test_message("%s, expected %zu: %s", compress_algo_name(all_algos[a]),
                                   wrong[i], err->message);
                }
                g_clear_error(&err);
            }
        }
    }
    g_rand_free(rand);
}

/* A zstd frame without a content size (another encoder's choice) is
 * accepted, so the size check must come from decoding itself. */
static void test_zstd_no_content_size(void)
{
    GRand *rand = test_rand();
    size_t len = 8192;
    g_autofree unsigned char *src = make_data(DATA_TEXT, len, rand);
    size_t cap = ZSTD_compressBound(len);
    g_autofree unsigned char *comp = g_malloc(cap);
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    g_autoptr(Decompressor) d = decompressor_new(COMPRESS_ZSTD);
    GError *err = NULL;

    g_assert_false(ZSTD_isError(ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 0)));
    size_t clen = ZSTD_compress2(cctx, comp, cap, src, len);
    g_assert_false(ZSTD_isError(clen));
    ZSTD_freeCCtx(cctx);
    g_assert_cmpuint(ZSTD_getFrameContentSize(comp, clen), ==, ZSTD_CONTENTSIZE_UNKNOWN);

    g_assert_true(decompress_checked(d, comp, clen, len, src, &err));
    g_assert_no_error(err);
    size_t wrong[] = { len - 1, len + 1, 0, 100 };
    for (size_t i = 0; i < G_N_ELEMENTS(wrong); i++) {
        g_assert_false(decompress_checked(d, comp, clen, wrong[i], NULL, &err));
        g_assert_error(err, COMPRESS_ERROR, COMPRESS_ERROR_SIZE);
        g_clear_error(&err);
    }
    g_rand_free(rand);
}

/* Random bytes, trailing bytes, two units back to back, and the other
 * algorithm's data all fail. */
static void test_garbage(void)
{
    GRand *rand = test_rand();

    for (size_t a = 0; a < G_N_ELEMENTS(real_algos); a++) {
        g_autoptr(Decompressor) d = decompressor_new(real_algos[a]);
        g_autoptr(Compressor) other = compressor_ok(real_algos[1 - a], COMPRESS_LEVEL_DEFAULT);
        unsigned char *orig;
        size_t len = 8192, clen, olen;
        GError *err = NULL;
        unsigned char *comp = sample_chunk(real_algos[a], rand, &orig, &len, &clen);

        for (size_t n = 0; n < 2000; n += 1 + n / 8) {
            g_autofree unsigned char *junk = make_data(DATA_RANDOM, n, rand);
            g_assert_false(decompress_checked(d, junk, n, len, NULL, &err));
            g_clear_error(&err);
        }
        g_autofree unsigned char *twice = g_malloc(2 * clen);
        memcpy(twice, comp, clen);
        memcpy(twice + clen, comp, clen);
        g_assert_false(decompress_checked(d, twice, clen + 1, len, NULL, &err));
        g_assert_error(err, COMPRESS_ERROR, COMPRESS_ERROR_CORRUPT);
        g_clear_error(&err);
        g_assert_false(decompress_checked(d, twice, 2 * clen, len, NULL, &err));
        g_assert_error(err, COMPRESS_ERROR, COMPRESS_ERROR_CORRUPT);
        g_test_message("%s, two units: %s", compress_algo_name(real_algos[a]), err->message);
        g_clear_error(&err);

        g_autofree unsigned char *foreign = compress_new(other, orig, len, &olen);
        g_assert_false(decompress_checked(d, foreign, olen, len, NULL, &err));
        g_assert_error(err, COMPRESS_ERROR, COMPRESS_ERROR_CORRUPT);
        g_clear_error(&err);

        g_assert_true(decompress_checked(d, comp, clen, len, orig, NULL));
        g_free(comp);
        g_free(orig);
    }
    g_rand_free(rand);
}

/* Flips and cuts in a whole 1 MiB chunk, at sampled places. */
static void test_corrupt_chunk(void)
{
    GRand *rand = test_rand();

    for (size_t a = 0; a < G_N_ELEMENTS(real_algos); a++) {
        g_autoptr(Compressor) c = compressor_ok(real_algos[a], COMPRESS_LEVEL_DEFAULT);
        g_autoptr(Decompressor) d = decompressor_new(real_algos[a]);
        g_autofree unsigned char *src = make_data(DATA_HALF, CHUNK, rand);
        size_t clen;
        g_autofree unsigned char *comp = compress_new(c, src, CHUNK, &clen);

        for (int i = 0; i < 24; i++) {
            size_t bit = (size_t)g_rand_int_range(rand, 0, (gint32)(clen * 8));
            GError *err = NULL;
            comp[bit / 8] ^= (unsigned char)(1u << (bit % 8));
            if (!decompress_checked(d, comp, clen, CHUNK, src, &err)) {
                g_clear_error(&err);
            }
            comp[bit / 8] ^= (unsigned char)(1u << (bit % 8));
            size_t cut = (size_t)g_rand_int_range(rand, 0, (gint32)clen);
            g_assert_false(decompress_checked(d, comp, cut, CHUNK, NULL, &err));
            g_assert_error(err, COMPRESS_ERROR, COMPRESS_ERROR_CORRUPT);
            g_clear_error(&err);
        }
        g_assert_true(decompress_checked(d, comp, clen, CHUNK, src, NULL));
    }
    g_rand_free(rand);
}

/* ---- speed ---- */

/* Seconds per call of compress (DECOMP false) or decompress, over at
 * least 100 ms of repetitions. */
static double time_per_call(Compressor *c, Decompressor *d, bool decomp, const unsigned char *src,
                            unsigned char *comp, size_t cap, size_t *clen, unsigned char *out)
{
    gint64 start = g_get_monotonic_time(), now;
    size_t reps = 0;

    do {
        if (decomp) {
            g_assert_true(decompressor_decompress(d, comp, *clen, out, CHUNK, NULL));
        } else {
            g_assert_true(compressor_compress(c, src, CHUNK, comp, cap, clen, NULL));
        }
        reps++;
        now = g_get_monotonic_time();
    } while (now - start < 100000);
    return (double)(now - start) / 1e6 / (double)reps;
}

static void test_speed(void)
{
    static const struct { CompressAlgo algo; int level; } configs[] = {
        { COMPRESS_ZLIB, 1 }, { COMPRESS_ZLIB, 6 },
        { COMPRESS_ZSTD, 1 }, { COMPRESS_ZSTD, 3 }, { COMPRESS_ZSTD, 9 },
    };
    GRand *rand = test_rand();
    g_autofree unsigned char *src = make_data(DATA_HALF, CHUNK, rand);
    g_autofree unsigned char *out = g_malloc(CHUNK);

    g_test_message("1 MiB chunk, half random / half text:");
    for (size_t i = 0; i < G_N_ELEMENTS(configs); i++) {
        g_autoptr(Compressor) c = compressor_ok(configs[i].algo, configs[i].level);
        g_autoptr(Decompressor) d = decompressor_new(configs[i].algo);
        size_t cap = compressor_bound(c, CHUNK), clen = 0;
        g_autofree unsigned char *comp = g_malloc(cap);
        double tc = time_per_call(c, d, false, src, comp, cap, &clen, out);
        double td = time_per_call(c, d, true, src, comp, cap, &clen, out);
        g_assert_cmpmem(out, CHUNK, src, CHUNK);
        g_test_message("  %s -%d: compress %6.0f MB/s, decompress %6.0f MB/s, ratio %.2f",
                       compress_algo_name(configs[i].algo), configs[i].level,
                       CHUNK / tc / 1e6, CHUNK / td / 1e6, (double)CHUNK / (double)clen);
    }
    g_rand_free(rand);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/compress/names", test_names);
    g_test_add_func("/compress/levels", test_levels);
    g_test_add_func("/compress/round-trip", test_round_trip);
    g_test_add_func("/compress/no-space", test_no_space);
    g_test_add_func("/compress/corrupt/bit-flips", test_bit_flips);
    g_test_add_func("/compress/corrupt/truncation", test_truncation);
    g_test_add_func("/compress/corrupt/wrong-size", test_wrong_size);
    g_test_add_func("/compress/corrupt/zstd-no-content-size", test_zstd_no_content_size);
    g_test_add_func("/compress/corrupt/garbage", test_garbage);
    g_test_add_func("/compress/corrupt/chunk", test_corrupt_chunk);
    g_test_add_func("/compress/speed", test_speed);
    return g_test_run();
}
