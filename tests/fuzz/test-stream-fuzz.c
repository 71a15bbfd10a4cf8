/* Hostile migration streams against the real loader.
 *
 * Valid streams are made by the real save path from sparse source drives
 * (plain zero-blocks, qemu-compat, zstd- and zlib-compressed) and must
 * load back byte for byte.  Then every prefix cut of them, a table of
 * hand-built hostile streams (the QEMU records and blkmig's SPAN,
 * COMPRESSED and CHANNELS extensions), and seeded mutations of them are
 * loaded from a file into destination drives holding a known pattern.
 * Each load must succeed or fail with a specific, non-empty message,
 * within a time bound, without changing the size of any drive or touching
 * any other file; hostile streams must leave the destination untouched.
 * Malformed streams an early loader accepted stay as regression cases (strict/).
 *
 * The mutation loop is deterministic: FUZZ_SEED (default printed),
 * FUZZ_ITERS and FUZZ_FIRST (first iteration) replay any part of a run;
 * FUZZ_VERBOSE lists every mutation and its outcome.  Unless FUZZ_ITERS is
 * given, the loop also stops after FUZZ_TIME_BUDGET seconds (0: never):
 * accepted loads end in fdatasync, which a busy disk can make slow
 * (TMPDIR=/dev/shm avoids that).  KEEP_TMP keeps the scratch files.
 *
 * This file holds the round trip, the prefix cuts and the list of cases;
 * the pieces it runs are stream-fuzz-*.c (shared types in stream-fuzz.h):
 * env (drives, valid streams, scratch files), load (a load and its
 * verdict), map (where the framing of a valid stream is), hostile and
 * hostile-ext (hand-built streams), strict, and mutate (the seeded loop). */
#include <glib.h>
#include <string.h>

#include "stream-fuzz.h"

/* ---- 1+2: the real save path, loaded back ---- */

static void test_roundtrip(gconstpointer data)
{
    const Flavour *fl = data;
    g_autofree char *what = g_strdup_printf("the valid %s stream", fl->name);

    g_test_message("stream of %" G_GSIZE_FORMAT " bytes", g_bytes_get_size(fl->stream));
    check_valid_load(fl->stream, what);
}

/* ---- every proper prefix is rejected ---- */

/* The EOF byte is last, so no prefix may load; the error must say where
 * the stream ended. */
static void check_prefix(const uint8_t *p, size_t cut)
{
    g_autofree char *what = g_strdup_printf("the valid stream cut at %" G_GSIZE_FORMAT, cut);
    g_autofree char *expected = g_strdup_printf("unexpected end of stream at byte %"
                                                G_GSIZE_FORMAT, cut);
    LoadResult r = load_bytes(p, cut, what);

    assert_clean(&r, what);
    if (r.ret == 0) {
        g_error("%s was accepted", what);
    }
    if (!strstr(r.err->message, expected)) {
        g_error("%s: expected '%s' in '%s'", what, expected, r.err->message);
    }
    load_result_clear(&r);
}

static void test_truncation_sweep(gconstpointer data)
{
    const Flavour *fl = data;
    gsize len;
    const uint8_t *p = g_bytes_get_data(fl->stream, &len);
    GArray *cuts = fl->map->cuts;
    guint n = 0;

    for (guint i = 0; i < cuts->len; i++) {
        size_t cut = g_array_index(cuts, size_t, i);
        /* The field start and one byte into it: both must fail. */
        check_prefix(p, cut);
        n++;
        if (cut + 1 < len) {
            check_prefix(p, cut + 1);
            n++;
        }
    }
    check_prefix(p, len - 1);
    g_test_message("%u prefix cuts rejected", n + 1);
}

/* "/stream-fuzz/GROUP/NAME" for DATA. */
static void add_test(const char *group, const char *name, gconstpointer data,
                     GTestDataFunc fn)
{
    g_autofree char *path = g_strdup_printf("/stream-fuzz/%s/%s", group, name);

    g_test_add_data_func(path, data, fn);
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    install_death_reports();
    setup_env();
    for (guint i = 0; i < NFLAVOURS; i++) {
        add_test("roundtrip", flavours[i].name, &flavours[i], test_roundtrip);
    }
    for (guint i = 0; i < env.fuzzed->len; i++) {
        const Flavour *fl = env.fuzzed->pdata[i];
        add_test("every-prefix-rejected", fl->name, fl, test_truncation_sweep);
    }
    for (guint i = 0; i < n_hostile_cases; i++) {
        add_test("hostile", hostile_cases[i].name, &hostile_cases[i], test_hostile);
    }
    for (guint i = 0; i < n_hostile_qemu_cases; i++) {
        add_test("hostile", hostile_qemu_cases[i].name, &hostile_qemu_cases[i], test_hostile);
    }
    for (guint i = 0; i < n_hostile_ext_cases; i++) {
        add_test("hostile", hostile_ext_cases[i].name, &hostile_ext_cases[i], test_hostile);
    }
    for (guint i = 0; i < n_strict_cases; i++) {
        add_test("strict", strict_cases[i].name, &strict_cases[i], test_strict);
    }
    g_test_add_func("/stream-fuzz/qemu-stream-valid", test_qemu_stream_valid);
    g_test_add_func("/stream-fuzz/strict/error-text-is-utf8", test_error_text_is_utf8);
    g_test_add_func("/stream-fuzz/fuzz/mutations", test_mutations);
    ret = g_test_run();
    teardown_env();
    return ret;
}
