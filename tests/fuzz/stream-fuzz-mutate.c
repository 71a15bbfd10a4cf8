/* The seeded mutation loop: 1 to 3 mutations of a valid stream per
 * iteration, aimed mostly at its framing (see stream-fuzz-map.c), loaded
 * and judged; deterministic, so FUZZ_SEED, FUZZ_FIRST and FUZZ_ITERS
 * replay any part of a run. */
#include <glib.h>
#include <string.h>

#include "migration/block-migration.h"
#include "util/bswap.h"
#include "stream-fuzz.h"

/* Sanitizers make every load several times slower; the iteration count
 * keeps either build near its time budget. */
#ifdef UNDER_ASAN
#define DEFAULT_ITERS 2000
#else
#define DEFAULT_ITERS 3000
#endif
#define DEFAULT_SEED 0x5eedb10cu
#define DEFAULT_TIME_BUDGET_S 11
/* Every so often the valid stream must still load: a failed load may not
 * leave state behind that breaks the next migration. */
#define RECHECK_EVERY 250

/* GByteArray has no insert of its own. */
static void insert_bytes(GByteArray *b, size_t pos, const uint8_t *data, size_t len)
{
    size_t old = b->len;

    if (len == 0) {
        return;                 /* DATA may be NULL then */
    }
    g_byte_array_set_size(b, old + len);
    memmove(b->data + pos + len, b->data + pos, old - pos);
    memcpy(b->data + pos, data, len);
}

/* ---- 3: seeded mutations ---- */

typedef enum {
    MUT_BITFLIP,
    MUT_SET_BYTE,
    MUT_TRUNCATE,
    MUT_INSERT,
    MUT_DELETE,
    MUT_DUP_RECORD,
    MUT_DROP_RECORD,
    MUT_HIGH_OFFSET,
    MUT_HUGE_LEN,
    MUT_FLAGS,
    MUT_SECTION_TYPE,
    MUT_SPLICE,
    MUT_LEN32,
    MUT_COMPRESSED_DATA,
    MUT__MAX
} Mutation;

static const char *const mut_names[MUT__MAX + 1] = {
    "bitflip", "set-byte", "truncate", "insert", "delete", "dup-record", "drop-record",
    "high-offset", "huge-len", "flags", "section-type", "splice", "len32",
    "compressed", "(stacked)",
};

typedef struct Mutator {
    GRand *rng;
    const StreamMap *map;
    GByteArray *m;              /* the stream being mutated */
    GString *log;               /* what was done, for replay messages */
    bool must_reject;           /* this mutation alone can never load */
} Mutator;

static size_t pick_from(Mutator *mu, GArray *offsets)
{
    return g_array_index(offsets, size_t, g_rand_int_range(mu->rng, 0, offsets->len));
}

/* A position inside the stream: mostly framing (mutated payload bytes are
 * legitimately accepted, so they teach little), sometimes anywhere. */
static size_t pick_pos(Mutator *mu)
{
    size_t pos;

    if (mu->m->len == 0) {
        return 0;
    }
    if (g_rand_int_range(mu->rng, 0, 4) != 0) {
        pos = pick_from(mu, mu->map->framing);
    } else {
        pos = g_rand_int_range(mu->rng, 0, mu->m->len);
    }
    return MIN(pos, mu->m->len - 1);
}

static void mut_bitflip(Mutator *mu)
{
    size_t pos = pick_pos(mu);
    int bit = g_rand_int_range(mu->rng, 0, 8);

    if (mu->m->len) {
        mu->m->data[pos] ^= 1u << bit;
    }
    g_string_append_printf(mu->log, "bitflip@%zu:%d ", pos, bit);
}

static void mut_set_byte(Mutator *mu)
{
    static const uint8_t values[] = { 0x00, 0xff, 0x7f, 0x80 };
    size_t pos = pick_pos(mu);
    uint8_t v = values[g_rand_int_range(mu->rng, 0, G_N_ELEMENTS(values))];

    if (mu->m->len) {
        mu->m->data[pos] = v;
    }
    g_string_append_printf(mu->log, "set@%zu=0x%02x ", pos, v);
}

static void mut_truncate(Mutator *mu)
{
    size_t pos = pick_pos(mu);

    /* Every proper prefix lacks the final EOF byte. */
    g_byte_array_set_size(mu->m, pos);
    mu->must_reject = true;
    g_string_append_printf(mu->log, "truncate@%zu ", pos);
}

static void mut_insert(Mutator *mu)
{
    size_t pos = pick_pos(mu);
    guint n = g_rand_int_range(mu->rng, 1, 17);
    uint8_t bytes[16];

    for (guint i = 0; i < n; i++) {
        bytes[i] = g_rand_int_range(mu->rng, 0, 256);
    }
    insert_bytes(mu->m, pos, bytes, n);
    g_string_append_printf(mu->log, "insert@%zu+%u ", pos, n);
}

static void mut_delete(Mutator *mu)
{
    size_t pos = pick_pos(mu);
    guint n = g_rand_int_range(mu->rng, 1, 17);

    n = MIN(n, mu->m->len - pos);
    if (n) {
        g_byte_array_remove_range(mu->m, pos, n);
    }
    g_string_append_printf(mu->log, "delete@%zu-%u ", pos, n);
}

/* A whole record (offsets of the unmutated stream; earlier mutations may
 * have shifted it, which is more fuzz, not less). */
static Span pick_record(Mutator *mu)
{
    GArray *recs = mu->map->records;
    Span s = g_array_index(recs, Span, g_rand_int_range(mu->rng, 0, recs->len));

    s.off = MIN(s.off, mu->m->len);
    s.len = MIN(s.len, mu->m->len - s.off);
    return s;
}

static void mut_dup_record(Mutator *mu)
{
    Span s = pick_record(mu);
    g_autofree uint8_t *copy = g_memdup2(mu->m->data + s.off, s.len);

    insert_bytes(mu->m, s.off + s.len, copy, s.len);
    g_string_append_printf(mu->log, "dup-record@%zu+%zu ", s.off, s.len);
}

static void mut_drop_record(Mutator *mu)
{
    Span s = pick_record(mu);

    if (s.len) {
        g_byte_array_remove_range(mu->m, s.off, s.len);
    }
    g_string_append_printf(mu->log, "drop-record@%zu+%zu ", s.off, s.len);
}

static void mut_high_offset(Mutator *mu)
{
    size_t pos = pick_from(mu, mu->map->rec_headers);
    int bit = g_rand_int_range(mu->rng, 23, 64);

    if (pos + 8 <= mu->m->len) {
        uint64_t v = ld_be64(mu->m->data + pos);
        /* Bit 23 and up is at least 8 MiB, past the end of every drive. */
        mu->must_reject = v & BLK_MIG_FLAG_DEVICE_BLOCK;
        st_be64(mu->m->data + pos, v | 1ULL << bit);
    }
    g_string_append_printf(mu->log, "high-offset@%zu:%d ", pos, bit);
}

static void mut_huge_len(Mutator *mu)
{
    size_t pos = MIN(pick_from(mu, mu->map->len_bytes), mu->m->len ? mu->m->len - 1 : 0);
    uint8_t v = g_rand_boolean(mu->rng) ? 0xff : g_rand_int_range(mu->rng, 100, 256);

    if (mu->m->len) {
        mu->m->data[pos] = v;
    }
    g_string_append_printf(mu->log, "len@%zu=%u ", pos, v);
}

static void mut_flags(Mutator *mu)
{
    size_t pos = pick_from(mu, mu->map->rec_headers);
    uint64_t flags = g_rand_int_range(mu->rng, 0, BLK_MIG_FLAGS_MASK + 1);

    if (pos + 8 <= mu->m->len) {
        uint64_t v = ld_be64(mu->m->data + pos);
        st_be64(mu->m->data + pos, (v & ~(uint64_t)BLK_MIG_FLAGS_MASK) | flags);
    }
    g_string_append_printf(mu->log, "flags@%zu=0x%" G_GINT64_MODIFIER "x ", pos, flags);
}

static void mut_section_type(Mutator *mu)
{
    static const uint8_t types[] = { 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x10, 0x7e, 0xff };
    size_t pos = pick_from(mu, mu->map->sections);
    uint8_t v = types[g_rand_int_range(mu->rng, 0, G_N_ELEMENTS(types))];

    if (pos < mu->m->len) {
        mu->m->data[pos] = v;
    }
    g_string_append_printf(mu->log, "section-type@%zu=0x%02x ", pos, v);
}

/* Bytes from elsewhere in the stream over a framing position: plausible
 * headers in the wrong place. */
static void mut_splice(Mutator *mu)
{
    size_t to = pick_pos(mu), from = pick_pos(mu);
    size_t n = g_rand_int_range(mu->rng, 1, 65);

    n = MIN(n, MIN(mu->m->len - to, mu->m->len - from));
    if (n) {
        memmove(mu->m->data + to, mu->m->data + from, n);
    }
    g_string_append_printf(mu->log, "splice@%zu<-%zu+%zu ", to, from, n);
}

/* Values no SPAN length may take (0, not a sector multiple, more than a
 * chunk), and no COMPRESSED length either, or only by luck: the small
 * ones cut the compressed data short or take in bytes after it, which
 * the loader must reject too. */
static const uint32_t bad_len32[] = {
    0, 1, 511, 513, CHUNK + BLK_MIG_COMPRESS_SLACK + 512, 0x7fffffff, 0xffffffff,
};

/* A SPAN or COMPRESSED length set to an impossible value, or nudged. */
static void mut_len32(Mutator *mu)
{
    bool span = g_rand_boolean(mu->rng);
    GArray *list = span ? mu->map->span_lens : mu->map->comp_lens;
    size_t pos;
    uint32_t old, v;
    bool bad = g_rand_boolean(mu->rng);

    if (list->len == 0) {
        mut_bitflip(mu);
        return;
    }
    pos = pick_from(mu, list);
    if (pos + 4 > mu->m->len) {
        g_string_append_printf(mu->log, "len32@%zu:none ", pos);
        return;
    }
    old = ld_be32(mu->m->data + pos);
    v = bad ? bad_len32[g_rand_int_range(mu->rng, 0, G_N_ELEMENTS(bad_len32))]
            : old + (g_rand_boolean(mu->rng) ? 512 : -512);
    mu->must_reject = bad && v != old;
    st_be32(mu->m->data + pos, v);
    g_string_append_printf(mu->log, "%s-len@%zu=%u ", span ? "span" : "comp", pos, v);
}

/* Damage inside compressed data: the decompressors' input. */
static void mut_compressed_data(Mutator *mu)
{
    GArray *list = mu->map->comp_payloads;
    Span s;
    size_t pos;
    uint8_t v = g_rand_int_range(mu->rng, 0, 256);

    if (list->len == 0) {
        mut_bitflip(mu);
        return;
    }
    s = g_array_index(list, Span, g_rand_int_range(mu->rng, 0, list->len));
    pos = s.off + g_rand_int_range(mu->rng, 0, MAX(s.len, 1));
    if (pos < mu->m->len) {
        mu->m->data[pos] = v;
    }
    g_string_append_printf(mu->log, "compressed@%zu=0x%02x ", pos, v);
}

static void (*const mutators[MUT__MAX])(Mutator *mu) = {
    mut_bitflip, mut_set_byte, mut_truncate, mut_insert, mut_delete, mut_dup_record,
    mut_drop_record, mut_high_offset, mut_huge_len, mut_flags, mut_section_type, mut_splice,
    mut_len32, mut_compressed_data,
};

typedef struct FuzzConfig {
    guint32 seed;
    guint first;
    guint iters;
    gint64 deadline;            /* monotonic us; 0 = none */
} FuzzConfig;

typedef struct FuzzStats {
    guint accepted[MUT__MAX + 1];  /* by lone mutation; last: stacked */
    guint rejected[MUT__MAX + 1];
    guint not_utf8;
    gint64 slowest_us;
    GHashTable *kinds;          /* normalised message -> count */
} FuzzStats;

static guint env_uint(const char *name, guint fallback)
{
    const char *v = g_getenv(name);
    return v && *v ? (guint)g_ascii_strtoull(v, NULL, 0) : fallback;
}

/* The message with numbers (decimal or 0x hex) and quoted names blanked:
 * its kind. */
static char *message_kind(const char *msg)
{
    GString *s = g_string_new(NULL);
    bool quoted = false;

    for (const char *p = msg; *p; p++) {
        if (*p == '\'') {
            quoted = !quoted;
            g_string_append(s, quoted ? "'..." : "'");
        } else if (quoted) {
            continue;
        } else if (p[0] == '0' && p[1] == 'x' && g_ascii_isxdigit(p[2])) {
            for (p += 2; g_ascii_isxdigit(p[1]); p++) {
            }
            g_string_append_c(s, 'N');
        } else if (g_ascii_isdigit(*p)) {
            for (; g_ascii_isdigit(p[1]); p++) {
            }
            g_string_append_c(s, 'N');
        } else {
            g_string_append_c(s, g_ascii_isprint(*p) ? *p : '?');
        }
    }
    return g_string_free(s, false);
}

/* Iteration I's mutated stream: 1 to 3 mutations of a valid one.
 * *must_reject when a lone mutation guarantees the load fails. */
static GByteArray *mutate(const Flavour *fl, guint32 seed, guint i, GString *log,
                          Mutation *first, bool *must_reject)
{
    guint32 seeds[2] = { seed, i };
    GRand *rng = g_rand_new_with_seed_array(seeds, 2);
    gsize len;
    const uint8_t *valid = g_bytes_get_data(fl->stream, &len);
    Mutator mu = { .rng = rng, .map = fl->map, .log = log };
    guint count = g_rand_int_range(rng, 0, 10) < 7 ? 1 : g_rand_int_range(rng, 2, 4);

    mu.m = g_byte_array_sized_new(len + 64);
    g_byte_array_append(mu.m, valid, len);
    *first = MUT__MAX;          /* stacked mutations are counted apart */
    for (guint k = 0; k < count; k++) {
        Mutation which = g_rand_int_range(rng, 0, MUT__MAX);
        if (count == 1) {
            *first = which;
        }
        mutators[which](&mu);
    }
    *must_reject = count == 1 && mu.must_reject;
    g_rand_free(rng);
    return mu.m;
}

/* The valid stream iteration I starts from: the fuzzed flavours in turn. */
static const Flavour *flavour_of(guint i)
{
    return env.fuzzed->pdata[i % env.fuzzed->len];
}

static void fuzz_one(const FuzzConfig *cfg, guint i, FuzzStats *st)
{
    g_autoptr(GString) log = g_string_new(NULL);
    g_autofree char *what = NULL;
    const Flavour *fl = flavour_of(i);
    Mutation which;
    bool must_reject;
    GByteArray *m = mutate(fl, cfg->seed, i, log, &which, &must_reject);
    LoadResult r;

    what = g_strdup_printf("iteration %u, %s stream [%s] (replay: FUZZ_SEED=0x%08x "
                           "FUZZ_FIRST=%u FUZZ_ITERS=1)", i, fl->name, log->str, cfg->seed, i);
    r = load_bytes(m->data, m->len, what);
    assert_clean(&r, what);
    if (r.ret == 0 && must_reject) {
        g_error("%s: accepted", what);
    }
    if (g_getenv("FUZZ_VERBOSE")) {
        g_test_message("%u %s %s: %s", i, fl->name, log->str,
                       r.err ? r.err->message : "accepted");
    }
    st->slowest_us = MAX(st->slowest_us, r.elapsed_us);
    (r.ret == 0 ? st->accepted : st->rejected)[which]++;
    if (r.err) {
        char *kind = message_kind(r.err->message);
        guint n = GPOINTER_TO_UINT(g_hash_table_lookup(st->kinds, kind));
        g_hash_table_replace(st->kinds, kind, GUINT_TO_POINTER(n + 1));
        st->not_utf8 += !g_utf8_validate(r.err->message, -1, NULL);
    }
    load_result_clear(&r);
    g_byte_array_unref(m);
}

static void report_stats(const FuzzStats *st, const FuzzConfig *cfg, guint done,
                         gint64 elapsed_us)
{
    GHashTableIter it;
    gpointer key, value;

    g_test_message("%u iterations in %.1f s, slowest load %.1f ms", done,
                   elapsed_us / 1e6, st->slowest_us / 1e3);
    if (done < cfg->iters) {
        g_test_message("time budget reached: stopped after %u of %u iterations",
                       done, cfg->iters);
    }
    for (int k = 0; k <= MUT__MAX; k++) {
        g_test_message("  %-13s accepted %4u rejected %4u", mut_names[k],
                       st->accepted[k], st->rejected[k]);
    }
    g_test_message("  error messages not valid UTF-8: %u", st->not_utf8);
    g_hash_table_iter_init(&it, st->kinds);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        g_test_message("  %5u x %s", GPOINTER_TO_UINT(value), (char *)key);
    }
}

static FuzzConfig fuzz_config(void)
{
    FuzzConfig cfg = {
        .seed = env_uint("FUZZ_SEED", DEFAULT_SEED),
        .first = env_uint("FUZZ_FIRST", 0),
        .iters = env_uint("FUZZ_ITERS", DEFAULT_ITERS),
    };
    guint budget = env_uint("FUZZ_TIME_BUDGET", DEFAULT_TIME_BUDGET_S);

    /* An explicit iteration count is a replay: run all of it. */
    if (budget && !g_getenv("FUZZ_ITERS")) {
        cfg.deadline = g_get_monotonic_time() + budget * G_USEC_PER_SEC;
    }
    return cfg;
}

void test_mutations(void)
{
    FuzzConfig cfg = fuzz_config();
    FuzzStats st = { .kinds = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL) };
    gint64 start = g_get_monotonic_time();
    guint done = 0;

    g_test_message("FUZZ_SEED=0x%08x FUZZ_FIRST=%u FUZZ_ITERS=%u", cfg.seed, cfg.first,
                   cfg.iters);
    while (done < cfg.iters && (!cfg.deadline || g_get_monotonic_time() < cfg.deadline)) {
        fuzz_one(&cfg, cfg.first + done, &st);
        if (++done % RECHECK_EVERY == 0) {
            const Flavour *fl = flavour_of(done / RECHECK_EVERY);
            check_valid_load(fl->stream, "a valid stream between mutations");
        }
    }
    for (guint i = 0; i < env.fuzzed->len; i++) {
        check_valid_load(flavour_of(i)->stream, "a valid stream after the mutations");
    }
    report_stats(&st, &cfg, done, g_get_monotonic_time() - start);
    g_hash_table_unref(st.kinds);
}
