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
 * (TMPDIR=/dev/shm avoids that).  KEEP_TMP keeps the scratch files. */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include "block/block.h"
#include "migration/block-migration.h"
#include "migration/options.h"
#include "migration/savevm.h"
#include "migration/stream.h"
#include "../lib/stream-bytes.h"

#define MiB (1024 * 1024)
#define CHUNK BLK_MIG_CHUNK_SIZE

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifdef UNDER_ASAN
/* Sanitizer reports end in abort(), so the SIGABRT handler below can say
 * which stream was being loaded (the environment may still override). */
const char *__asan_default_options(void);
const char *__ubsan_default_options(void);
const char *__asan_default_options(void)
{
    return "abort_on_error=1";
}

const char *__ubsan_default_options(void)
{
    return "abort_on_error=1:print_stacktrace=1";
}
#endif

/* Sanitizers make every load several times slower; the iteration count
 * keeps either build near its time budget. */
#ifdef UNDER_ASAN
#define DEFAULT_ITERS 2000
#else
#define DEFAULT_ITERS 3000
#endif
#define DEFAULT_SEED 0x5eedb10cu
#define DEFAULT_TIME_BUDGET_S 11
/* A load of these few MiB takes milliseconds; anything near this bound is
 * a loop on hostile input. */
#define LOAD_TIME_LIMIT_S 10
/* Every so often the valid stream must still load: a failed load may not
 * leave state behind that breaks the next migration. */
#define RECHECK_EVERY 250

typedef struct DriveSpec {
    const char *id;
    uint64_t size;
} DriveSpec;

/* Two drives, so records must name the right one; the first ends in a
 * partial chunk, the second id is long enough to be worth corrupting.
 * Small, because every iteration copies the stream and both disks. */
static const DriveSpec specs[] = {
    { "disk0", 3 * MiB + 3 * 512 },
    { "virtio-blk.scsi0-hd1", 2 * MiB },
};
#define NDRIVES G_N_ELEMENTS(specs)

typedef struct StreamMap StreamMap;

/* One way the source can be configured, and the valid stream it made. */
typedef struct Flavour {
    const char *name;
    bool zero_blocks;
    bool qemu_compat;
    bool compress;
    MigrationCompressAlgorithm algo;
    bool fuzz;                  /* mutated (qemu-compat: whole 1 MiB chunks, slow) */
    GBytes *stream;
    StreamMap *map;
} Flavour;

static Flavour flavours[] = {
    { "zero-blocks", .zero_blocks = true, .fuzz = true },
    { "qemu-compat", .qemu_compat = true },
    { "zstd", .zero_blocks = true, .compress = true, .algo = MIG_COMPRESS_ZSTD, .fuzz = true },
    { "zlib", .zero_blocks = true, .compress = true, .algo = MIG_COMPRESS_ZLIB, .fuzz = true },
};
#define NFLAVOURS G_N_ELEMENTS(flavours)

static struct {
    char *tmpdir;
    char *src_path[NDRIVES];
    char *dst_path[NDRIVES];
    char *stream_path;
    uint8_t *pattern[NDRIVES];      /* each destination before a load */
    uint8_t *source[NDRIVES];       /* source contents after the save */
    BlockDriverState *dst[NDRIVES];
    GPtrArray *fuzzed;              /* Flavour *: those the mutation loop uses */
    bool keep_tmp;                  /* KEEP_TMP: leave the scratch files */
} env;

/* ---- byte helpers ---- */

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;

    for (int i = 0; i < 8; i++) {
        v = v << 8 | p[i];
    }
    return v;
}

static void set32(uint8_t *p, uint32_t v)
{
    p[0] = v >> 24;
    p[1] = v >> 16;
    p[2] = v >> 8;
    p[3] = v;
}

static void set64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static void write_file(const char *path, const uint8_t *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(write(fd, data, len), ==, (ssize_t)len);
    g_assert_cmpint(close(fd), ==, 0);
}

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

static uint8_t *read_whole(const char *path, gsize *len)
{
    gchar *contents = NULL;

    g_assert_true(g_file_get_contents(path, &contents, len, NULL));
    return (uint8_t *)contents;
}

/* ---- drives ---- */

/* A blank drive of SIZE, whatever an earlier case left at PATH. */
static BlockDriverState *open_drive(const char *id, const char *path, uint64_t size)
{
    BlockOptions opts = {
        .id = id, .filename = path, .format = "raw", .size = size, .create = true,
        .overwrite = true,
    };
    GError *err = NULL;
    BlockDriverState *bs = bdrv_open(&opts, &err);

    g_assert_no_error(err);
    g_assert_nonnull(bs);
    return bs;
}

static void pwrite_fill(BlockDriverState *bs, uint64_t off, size_t len, uint8_t seed)
{
    uint8_t *buf = g_malloc(len);

    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(seed + i * 13 + (i >> 9)) | 1;      /* never zero */
    }
    g_assert_cmpint(bdrv_pwrite(bs, off, buf, len, 0), ==, 0);
    g_free(buf);
}

static void pwrite_zeros(BlockDriverState *bs, uint64_t off, size_t len)
{
    uint8_t *zeros = g_malloc0(len);

    g_assert_cmpint(bdrv_pwrite(bs, off, zeros, len, 0), ==, 0);
    g_free(zeros);
}

/* Data that does not compress, so compressed streams mix COMPRESSED and
 * plain records. */
static void pwrite_random(BlockDriverState *bs, uint64_t off, size_t len, guint32 seed)
{
    GRand *rng = g_rand_new_with_seed(seed);
    uint8_t *buf = g_malloc(len);

    for (size_t i = 0; i < len; i++) {
        buf[i] = g_rand_int_range(rng, 1, 256);
    }
    g_assert_cmpint(bdrv_pwrite(bs, off, buf, len, 0), ==, 0);
    g_free(buf);
    g_rand_free(rng);
}

/* Scattered data, explicitly written (allocated) zeros that must travel
 * as ZERO_BLOCK, holes, and data in the last sector.  Idempotent, so
 * every save sees the same disks. */
static void populate(BlockDriverState *bs, int i)
{
    uint64_t size = specs[i].size;

    if (i == 0) {
        pwrite_fill(bs, 8192, 4096, 1);
        pwrite_zeros(bs, 1 * MiB, CHUNK);
        pwrite_fill(bs, size - 512, 512, 3);
    } else {
        pwrite_fill(bs, 1 * MiB + 300 * 512, 70000, 4);
        pwrite_zeros(bs, 1 * MiB + 600 * 512, 4096);
        pwrite_random(bs, 1 * MiB + 512 * 1024, 8192, 42);
    }
}

/* ---- the source side: real save path ---- */

static void set_caps(const Flavour *fl)
{
    MigrationParametersUpdate u = {
        .has_compress_algorithm = true,
        .p.compress_algorithm = fl ? fl->algo : MIG_COMPRESS_ZSTD,
    };
    GError *err = NULL;

    mig_cap_set(MIG_CAP_BLOCK, fl != NULL);
    mig_cap_set(MIG_CAP_ZERO_BLOCKS, fl && fl->zero_blocks);
    mig_cap_set(MIG_CAP_QEMU_COMPAT, fl && fl->qemu_compat);
    mig_cap_set(MIG_CAP_COMPRESS, fl && fl->compress);
    g_assert_true(mig_params_apply(&u, &err));
    g_assert_no_error(err);
}

/* Bulk phase in several PART sections, a dirty pass re-sending a data
 * chunk after a guest write, and END re-sending a chunk that became
 * allocated zeros: every section type the source produces. */
static void run_save(MigStream *f, BlockDriverState **src)
{
    GError *err = NULL;
    int ret, rounds = 0;

    g_assert_cmpint(savevm_state_header(f, &err), ==, 0);
    g_assert_cmpint(savevm_state_setup(f, &err), ==, 0);
    g_assert_no_error(err);
    do {
        ret = savevm_state_iterate(f, 3 * MiB / 2, &err);
        g_assert_no_error(err);
        g_assert_cmpint(++rounds, <, 100);
    } while (ret == 0);
    g_assert_cmpint(ret, ==, 1);
    pwrite_fill(src[0], 4096, 512, 9);
    g_assert_cmpint(savevm_state_iterate(f, 64 * MiB, &err), ==, 1);
    g_assert_no_error(err);
    pwrite_zeros(src[1], 8192, 1024);
    g_assert_cmpint(savevm_state_complete(f, &err), ==, 0);
    g_assert_no_error(err);
    savevm_state_cleanup();
}

static GBytes *save_stream(const Flavour *fl)
{
    BlockDriverState *src[NDRIVES];
    MigStream *f;
    uint8_t *bytes;
    gsize len;

    for (guint i = 0; i < NDRIVES; i++) {
        src[i] = open_drive(specs[i].id, env.src_path[i], specs[i].size);
        populate(src[i], i);
    }
    set_caps(fl);
    f = mig_stream_new_writer(open(env.stream_path, O_WRONLY | O_CREAT | O_TRUNC, 0600));
    run_save(f, src);
    mig_stream_close(f);
    for (guint i = 0; i < NDRIVES; i++) {
        bdrv_close(src[i]);
    }
    set_caps(NULL);
    bytes = read_whole(env.stream_path, &len);
    return g_bytes_new_take(bytes, len);
}

/* ---- the destination and its surroundings ---- */

#define RESTORE_BLOCK (64 * 1024)

/* Put the pattern back where a load changed it.  Rewriting only what
 * differs keeps the page cache clean, so the flush of the next accepted
 * load does not write whole disks every iteration. */
static void restore_destination(guint i, uint8_t *buf)
{
    for (uint64_t off = 0; off < specs[i].size; off += RESTORE_BLOCK) {
        size_t len = MIN(RESTORE_BLOCK, specs[i].size - off);
        const uint8_t *want = env.pattern[i] + off;

        g_assert_cmpint(bdrv_pread(env.dst[i], off, buf, len), ==, 0);
        if (memcmp(buf, want, len) != 0) {
            g_assert_cmpint(bdrv_pwrite(env.dst[i], off, want, len, 0), ==, 0);
        }
    }
}

static void restore_destinations(void)
{
    uint8_t *buf = g_malloc(RESTORE_BLOCK);

    for (guint i = 0; i < NDRIVES; i++) {
        restore_destination(i, buf);
    }
    g_free(buf);
}

typedef struct FileState {
    int64_t size;
    int64_t mtime_ns;
    ino_t ino;
} FileState;

static bool is_destination(const char *name)
{
    for (guint i = 0; i < NDRIVES; i++) {
        g_autofree char *base = g_path_get_basename(env.dst_path[i]);
        if (strcmp(base, name) == 0) {
            return true;
        }
    }
    return false;
}

/* name -> FileState of every file in the tmpdir. */
static GHashTable *dir_snapshot(void)
{
    GHashTable *snap = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    GDir *dir = g_dir_open(env.tmpdir, 0, NULL);
    const char *name;

    g_assert_nonnull(dir);
    while ((name = g_dir_read_name(dir))) {
        g_autofree char *path = g_build_filename(env.tmpdir, name, NULL);
        FileState *fs = g_new0(FileState, 1);
        struct stat st;

        g_assert_cmpint(lstat(path, &st), ==, 0);
        fs->size = st.st_size;
        fs->mtime_ns = (int64_t)st.st_mtim.tv_sec * G_GINT64_CONSTANT(1000000000) +
                       st.st_mtim.tv_nsec;
        fs->ino = st.st_ino;
        g_hash_table_insert(snap, g_strdup(name), fs);
    }
    g_dir_close(dir);
    return snap;
}

/* NULL when the load changed nothing it must not: destination sizes, and
 * anything at all about every other file (no new files either). */
static char *dir_changes(GHashTable *before, GHashTable *after)
{
    GHashTableIter it;
    gpointer key, value;

    if (g_hash_table_size(before) != g_hash_table_size(after)) {
        return g_strdup_printf("the tmpdir had %u files and now has %u",
                               g_hash_table_size(before), g_hash_table_size(after));
    }
    g_hash_table_iter_init(&it, before);
    while (g_hash_table_iter_next(&it, &key, &value)) {
        const FileState *a = value, *b = g_hash_table_lookup(after, key);

        if (!b) {
            return g_strdup_printf("file %s disappeared", (char *)key);
        }
        if (a->size != b->size) {
            return g_strdup_printf("file %s changed size %" G_GINT64_FORMAT " -> %"
                                   G_GINT64_FORMAT, (char *)key, a->size, b->size);
        }
        if (!is_destination(key) && (a->mtime_ns != b->mtime_ns || a->ino != b->ino)) {
            return g_strdup_printf("file %s was modified", (char *)key);
        }
    }
    return NULL;
}

static char *drive_size_changes(void)
{
    for (guint i = 0; i < NDRIVES; i++) {
        int64_t len = bdrv_getlength(env.dst[i]);
        if (len != (int64_t)specs[i].size) {
            return g_strdup_printf("drive %s is now %" G_GINT64_FORMAT " bytes, not %"
                                   G_GUINT64_FORMAT, specs[i].id, len, specs[i].size);
        }
    }
    return NULL;
}

/* Index of the first differing byte of destination I and EXPECTED, or -1. */
static int64_t destination_diff(guint i, const uint8_t *expected)
{
    gsize len;
    g_autofree uint8_t *now = read_whole(env.dst_path[i], &len);

    g_assert_cmpuint(len, ==, specs[i].size);
    for (gsize off = 0; off < len; off++) {
        if (now[off] != expected[off]) {
            return off;
        }
    }
    return -1;
}

static void assert_destinations_equal(uint8_t *const *expected, const char *what)
{
    for (guint i = 0; i < NDRIVES; i++) {
        int64_t diff = destination_diff(i, expected[i]);
        if (diff >= 0) {
            g_error("%s: drive %s differs at byte %" G_GINT64_FORMAT,
                    what, specs[i].id, diff);
        }
    }
}

/* ---- loading, with a watchdog ---- */

/* What is being loaded, for deaths that cannot say so themselves: a load
 * that hangs, a sanitizer report, a crash.  Only async-signal-safe calls
 * in the handlers. */
static char current_load[512];

static void say(const char *text)
{
    ssize_t unused = write(STDERR_FILENO, text, strlen(text));

    (void)unused;
}

/* The scratch files go with a dying test too, unless KEEP_TMP is set (as
 * for tests/qtest); the replay variables recreate any stream anyway. */
static void remove_scratch(void)
{
    for (guint i = 0; i < NDRIVES; i++) {
        unlink(env.src_path[i]);
        unlink(env.dst_path[i]);
    }
    unlink(env.stream_path);
    rmdir(env.tmpdir);
}

static void died(int sig)
{
    say("\nfatal signal ");
    say(sig == SIGABRT ? "SIGABRT" : sig == SIGSEGV ? "SIGSEGV" : "SIGBUS");
    say(current_load[0] ? " " : "\n");
    say(current_load);
    if (env.tmpdir && !env.keep_tmp) {
        remove_scratch();
    } else if (env.tmpdir) {
        say("scratch files kept in ");
        say(env.tmpdir);
        say("\n");
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void watchdog_fired(int sig)
{
    say("\nwatchdog: this load did not return in time\n");
    abort();
}

static void install_death_reports(void)
{
    signal(SIGALRM, watchdog_fired);
    signal(SIGABRT, died);
#ifndef UNDER_ASAN
    /* ASan reports these itself, then aborts. */
    signal(SIGSEGV, died);
    signal(SIGBUS, died);
#endif
}

typedef struct LoadResult {
    int ret;
    GError *err;
    gint64 elapsed_us;
    char *violation;            /* what the load broke, or NULL */
} LoadResult;

static void load_result_clear(LoadResult *r)
{
    g_clear_error(&r->err);
    g_clear_pointer(&r->violation, g_free);
}

/* Messages that only say "something failed" name no cause. */
static bool message_is_specific(const char *msg)
{
    return msg && strlen(msg) > 10 && !strstr(msg, "failed to load") &&
           !strstr(msg, "failed to finish loading");
}

static char *outcome_violation(const LoadResult *r, GHashTable *before)
{
    g_autoptr(GHashTable) after = dir_snapshot();
    char *changed;

    if (r->ret != 0 && r->ret != -1) {
        return g_strdup_printf("savevm_load returned %d", r->ret);
    }
    if ((r->ret == 0) != (r->err == NULL)) {
        return g_strdup_printf("savevm_load returned %d with error %s", r->ret,
                               r->err ? r->err->message : "(none)");
    }
    if (r->err && !message_is_specific(r->err->message)) {
        return g_strdup_printf("unspecific error message '%s'", r->err->message);
    }
    if (r->elapsed_us > LOAD_TIME_LIMIT_S * G_USEC_PER_SEC) {
        return g_strdup_printf("load took %" G_GINT64_FORMAT " us", r->elapsed_us);
    }
    changed = drive_size_changes();
    return changed ? changed : dir_changes(before, after);
}

/* Load the stream file into the destinations (refilled with their pattern
 * first) and judge everything but the outcome itself. */
static LoadResult load_stream_file(const char *what)
{
    g_autoptr(GHashTable) before = NULL;
    LoadResult r = { 0 };
    int fd;
    MigStream *f;
    gint64 start;

    restore_destinations();
    before = dir_snapshot();
    g_snprintf(current_load, sizeof(current_load), "while loading %s\n", what);
    fd = open(env.stream_path, O_RDONLY);
    g_assert_cmpint(fd, >=, 0);
    f = mig_stream_new_reader(fd);
    alarm(LOAD_TIME_LIMIT_S + 5);
    start = g_get_monotonic_time();
    r.ret = savevm_load(f, &r.err);
    r.elapsed_us = g_get_monotonic_time() - start;
    alarm(0);
    current_load[0] = '\0';
    mig_stream_close(f);
    r.violation = outcome_violation(&r, before);
    return r;
}

static LoadResult load_bytes(const uint8_t *data, size_t len, const char *what)
{
    write_file(env.stream_path, data, len);
    return load_stream_file(what);
}

static void assert_clean(const LoadResult *r, const char *what)
{
    if (r->violation) {
        g_error("%s: %s", what, r->violation);
    }
}

/* ---- 1+2: the real save path, loaded back ---- */

static void check_valid_load(GBytes *stream, const char *what)
{
    LoadResult r = load_bytes(g_bytes_get_data(stream, NULL), g_bytes_get_size(stream), what);

    assert_clean(&r, what);
    g_assert_no_error(r.err);
    g_assert_cmpint(r.ret, ==, 0);
    assert_destinations_equal(env.source, what);
    load_result_clear(&r);
}

static void test_roundtrip(gconstpointer data)
{
    const Flavour *fl = data;
    g_autofree char *what = g_strdup_printf("the valid %s stream", fl->name);

    g_test_message("stream of %" G_GSIZE_FORMAT " bytes", g_bytes_get_size(fl->stream));
    check_valid_load(fl->stream, what);
}

/* ---- a map of the valid stream, to aim mutations at its framing ---- */

typedef struct Span {
    size_t off;
    size_t len;
} Span;

struct StreamMap {
    GArray *framing;        /* size_t: every byte that is not payload */
    GArray *len_bytes;      /* size_t: u8 length fields (idstr, drive id) */
    GArray *span_lens;      /* size_t: be32 SPAN lengths */
    GArray *comp_lens;      /* size_t: be32 COMPRESSED lengths */
    GArray *comp_payloads;  /* Span: compressed data */
    GArray *rec_headers;    /* size_t: be64 record headers */
    GArray *sections;       /* size_t: section type bytes */
    GArray *records;        /* Span: whole block records */
    GArray *cuts;           /* size_t: start of every field, for prefix cuts */
};

static void map_field(StreamMap *m, size_t off, size_t len)
{
    g_array_append_val(m->cuts, off);
    for (size_t i = off; i < off + len; i++) {
        g_array_append_val(m->framing, i);
    }
}

static void map_drive_id(StreamMap *m, const uint8_t *p, size_t *pos)
{
    g_array_append_val(m->len_bytes, *pos);
    map_field(m, *pos, 1);
    map_field(m, *pos + 1, p[*pos]);
    *pos += 1 + p[*pos];
}

/* A be32 length field at *POS, listed in LIST; returns its value. */
static uint32_t map_len32(StreamMap *m, GArray *list, const uint8_t *p, size_t *pos)
{
    uint32_t v = get32(p + *pos);

    g_array_append_val(list, *pos);
    map_field(m, *pos, 4);
    *pos += 4;
    return v;
}

/* What follows the drive id of a DEVICE_BLOCK record: span length,
 * compression header, payload. */
static size_t map_block_payload(StreamMap *m, const uint8_t *p, size_t pos, uint64_t flags)
{
    uint64_t payload = CHUNK;

    if (flags & BLK_MIG_FLAG_SPAN) {
        payload = map_len32(m, m->span_lens, p, &pos);
    }
    if (flags & BLK_MIG_FLAG_COMPRESSED) {
        Span data;

        map_field(m, pos, 1);       /* algorithm */
        pos++;
        payload = map_len32(m, m->comp_lens, p, &pos);
        data = (Span){ pos, payload };
        g_array_append_val(m->comp_payloads, data);
    }
    if (!(flags & BLK_MIG_FLAG_ZERO_BLOCK)) {
        g_array_append_val(m->cuts, pos);
        pos += payload;
    }
    return pos;
}

/* Records of one section up to and including EOS; returns the end. */
static size_t map_records(StreamMap *m, const uint8_t *p, size_t len, size_t pos)
{
    for (;;) {
        Span rec = { .off = pos };
        uint64_t flags;

        g_assert_cmpuint(pos + 8, <=, len);
        flags = get64(p + pos) & BLK_MIG_FLAGS_MASK;
        g_array_append_val(m->rec_headers, pos);
        map_field(m, pos, 8);
        pos += 8;
        if (flags & (BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_DEVICE_SIZE)) {
            map_drive_id(m, p, &pos);
        }
        if (flags & BLK_MIG_FLAG_DEVICE_SIZE) {
            map_field(m, pos, 8);
            pos += 8;
        } else if (flags & BLK_MIG_FLAG_DEVICE_BLOCK) {
            pos = map_block_payload(m, p, pos, flags);
        } else if (flags & BLK_MIG_FLAG_CHANNELS) {
            map_field(m, pos, 4 + BLK_MIG_MULTIFD_ID_LEN);
            pos += 4 + BLK_MIG_MULTIFD_ID_LEN;
        }
        g_assert_cmpuint(pos, <=, len);
        rec.len = pos - rec.off;
        g_array_append_val(m->records, rec);
        if (flags & BLK_MIG_FLAG_EOS) {
            return pos;
        }
    }
}

static size_t map_section_header(StreamMap *m, const uint8_t *p, size_t pos)
{
    uint8_t type = p[pos];

    g_array_append_val(m->sections, pos);
    map_field(m, pos, 1);
    map_field(m, pos + 1, 4);
    pos += 5;
    if (type == QEMU_VM_SECTION_START || type == QEMU_VM_SECTION_FULL) {
        map_drive_id(m, p, &pos);
        map_field(m, pos, 4);
        map_field(m, pos + 4, 4);
        pos += 8;
    }
    return pos;
}

static GArray *offsets_new(void)
{
    return g_array_new(false, false, sizeof(size_t));
}

/* Our own save output: any surprise here is a bug in this test (or a
 * format change it has not caught up with). */
static StreamMap *map_stream(GBytes *stream)
{
    gsize len;
    const uint8_t *p = g_bytes_get_data(stream, &len);
    StreamMap *m = g_new0(StreamMap, 1);
    size_t pos = 8;

    m->framing = offsets_new();
    m->len_bytes = offsets_new();
    m->span_lens = offsets_new();
    m->comp_lens = offsets_new();
    m->comp_payloads = g_array_new(false, false, sizeof(Span));
    m->rec_headers = offsets_new();
    m->sections = offsets_new();
    m->records = g_array_new(false, false, sizeof(Span));
    m->cuts = offsets_new();
    map_field(m, 0, 4);
    map_field(m, 4, 4);
    for (;;) {
        g_assert_cmpuint(pos, <, len);
        if (p[pos] == QEMU_VM_EOF) {
            break;
        }
        pos = map_section_header(m, p, pos);
        pos = map_records(m, p, len, pos);
        g_assert_cmpuint(pos + 5, <, len);
        g_assert_cmpuint(p[pos], ==, QEMU_VM_SECTION_FOOTER);
        map_field(m, pos, 1);
        map_field(m, pos + 1, 4);
        pos += 5;
    }
    g_array_append_val(m->sections, pos);
    map_field(m, pos, 1);
    g_assert_cmpuint(pos + 1, ==, len);
    return m;
}

static void stream_map_free(StreamMap *m)
{
    g_array_unref(m->framing);
    g_array_unref(m->len_bytes);
    g_array_unref(m->span_lens);
    g_array_unref(m->comp_lens);
    g_array_unref(m->comp_payloads);
    g_array_unref(m->rec_headers);
    g_array_unref(m->sections);
    g_array_unref(m->records);
    g_array_unref(m->cuts);
    g_free(m);
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

/* ---- 4: hand-built hostile streams ---- */

#define SECTION0_RECORDS 27     /* header 8 + START 19: where records begin */

/* Header and the START of section ID, IDSTR instance INSTANCE VERSION. */
static void begin_section(GByteArray *b, uint32_t id, const char *idstr,
                          uint32_t instance, uint32_t version)
{
    sb_put32(b, QEMU_VM_FILE_MAGIC);
    sb_put32(b, QEMU_VM_FILE_VERSION);
    sb_put8(b, QEMU_VM_SECTION_START);
    sb_put32(b, id);
    sb_put_name(b, idstr);
    sb_put32(b, instance);
    sb_put32(b, version);
}

static void begin_block(GByteArray *b)
{
    begin_section(b, 0, "block", 0, 1);
}

static void rec_size(GByteArray *b, const char *id, uint64_t size)
{
    sb_put64(b, BLK_MIG_FLAG_DEVICE_SIZE);
    sb_put_name(b, id);
    sb_put64(b, size);
}

static void rec_data(GByteArray *b, uint64_t header, const char *id)
{
    uint8_t *chunk = g_malloc(CHUNK);

    memset(chunk, 0x5a, CHUNK);
    sb_put64(b, header);
    sb_put_name(b, id);
    g_byte_array_append(b, chunk, CHUNK);
    g_free(chunk);
}

/* EOS and the footer of section 0. */
static void end_section0(GByteArray *b)
{
    sb_put64(b, BLK_MIG_FLAG_EOS);
    sb_put8(b, QEMU_VM_SECTION_FOOTER);
    sb_put32(b, 0);
}

/* A complete, harmless first section: sizes of both drives. */
static void setup_section(GByteArray *b)
{
    begin_block(b);
    for (guint i = 0; i < NDRIVES; i++) {
        rec_size(b, specs[i].id, specs[i].size);
    }
    end_section0(b);
}

/* Each builder makes the stream and the exact message it must fail with
 * (positions are only known while building). */
typedef void (*HostileBuilder)(GByteArray *b, GString *expected);

typedef struct HostileCase {
    const char *name;
    HostileBuilder build;
} HostileCase;

static void build_offset_2_63(GByteArray *b, GString *expected)
{
    begin_block(b);
    rec_data(b, (1ULL << 63) | BLK_MIG_FLAG_DEVICE_BLOCK, "disk0");
    end_section0(b);
    sb_put8(b, QEMU_VM_EOF);
    g_string_printf(expected, "block migration: drive 'disk0': chunk at offset "
                    "9223372036854775808 is beyond the destination size %" G_GUINT64_FORMAT,
                    specs[0].size);
}

static void build_offset_max_zero(GByteArray *b, GString *expected)
{
    begin_block(b);
    sb_put64(b, ~(uint64_t)BLK_MIG_FLAGS_MASK | BLK_MIG_FLAG_DEVICE_BLOCK |
             BLK_MIG_FLAG_ZERO_BLOCK);
    sb_put_name(b, "disk0");
    end_section0(b);
    sb_put8(b, QEMU_VM_EOF);
    g_string_printf(expected, "block migration: drive 'disk0': chunk at offset "
                    "18446744073709551104 is beyond the destination size %" G_GUINT64_FORMAT,
                    specs[0].size);
}

/* The first sector past the end: the off-by-one neighbour of the last
 * valid chunk. */
static void build_offset_at_end(GByteArray *b, GString *expected)
{
    begin_block(b);
    rec_data(b, specs[1].size | BLK_MIG_FLAG_DEVICE_BLOCK, specs[1].id);
    end_section0(b);
    sb_put8(b, QEMU_VM_EOF);
    g_string_printf(expected, "block migration: drive '%s': chunk at offset %" G_GUINT64_FORMAT
                    " is beyond the destination size %" G_GUINT64_FORMAT,
                    specs[1].id, specs[1].size, specs[1].size);
}

/* 255 bytes, none NUL, many not ASCII. */
static void garbage_id(char *id)
{
    for (int i = 0; i < 255; i++) {
        id[i] = (char)((i * 37 + 11) % 255 + 1);
    }
    id[255] = '\0';
}

static void build_garbage_drive_id(GByteArray *b, GString *expected)
{
    char id[256];

    garbage_id(id);
    begin_block(b);
    sb_put64(b, 0 | BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_ZERO_BLOCK);
    sb_put_name(b, id);
    end_section0(b);
    sb_put8(b, QEMU_VM_EOF);
    /* Error texts must be UTF-8 (QMP): the loader repairs the name. */
    g_autofree char *shown = g_utf8_make_valid(id, -1);
    g_string_printf(expected, "block migration: unknown drive '%s'", shown);
}

static void build_empty_drive_id(GByteArray *b, GString *expected)
{
    begin_block(b);
    sb_put64(b, BLK_MIG_FLAG_DEVICE_SIZE);
    sb_put_name(b, "");
    sb_put64(b, 0);
    end_section0(b);
    sb_put8(b, QEMU_VM_EOF);
    g_string_assign(expected, "block migration: unknown drive ''");
}

static void build_part_id_mismatch(GByteArray *b, GString *expected)
{
    size_t at;

    setup_section(b);
    sb_put8(b, QEMU_VM_SECTION_PART);
    at = b->len;
    sb_put32(b, 7);
    sb_put64(b, BLK_MIG_FLAG_EOS);
    sb_put8(b, QEMU_VM_SECTION_FOOTER);
    sb_put32(b, 7);
    sb_put8(b, QEMU_VM_EOF);
    g_string_printf(expected, "unknown section id 7 at stream offset %" G_GSIZE_FORMAT, at);
}

static void build_part_before_start(GByteArray *b, GString *expected)
{
    sb_put32(b, QEMU_VM_FILE_MAGIC);
    sb_put32(b, QEMU_VM_FILE_VERSION);
    sb_put8(b, QEMU_VM_SECTION_PART);
    sb_put32(b, 0);
    sb_put64(b, BLK_MIG_FLAG_EOS);
    sb_put8(b, QEMU_VM_SECTION_FOOTER);
    sb_put32(b, 0);
    sb_put8(b, QEMU_VM_EOF);
    g_string_assign(expected, "unknown section id 0 at stream offset 9");
}

static void build_footer_id_mismatch(GByteArray *b, GString *expected)
{
    size_t at;

    begin_block(b);
    rec_size(b, "disk0", specs[0].size);
    sb_put64(b, BLK_MIG_FLAG_EOS);
    at = b->len;
    sb_put8(b, QEMU_VM_SECTION_FOOTER);
    sb_put32(b, 3);
    sb_put8(b, QEMU_VM_EOF);
    g_string_printf(expected, "section footer mismatch: expected section id 0, got 3 "
                    "at stream offset %" G_GSIZE_FORMAT, at);
}

static void build_eof_missing(GByteArray *b, GString *expected)
{
    setup_section(b);
    g_string_printf(expected, "reading a section type: unexpected end of stream at byte %u",
                    b->len);
}

static void build_footer_missing(GByteArray *b, GString *expected)
{
    size_t at;

    begin_block(b);
    rec_size(b, "disk0", specs[0].size);
    sb_put64(b, BLK_MIG_FLAG_EOS);
    at = b->len;
    sb_put8(b, QEMU_VM_EOF);
    g_string_printf(expected, "section footer mismatch: expected 0x7e for section 0, "
                    "got 0x10 at stream offset %" G_GSIZE_FORMAT, at);
}

static void build_footer_truncated(GByteArray *b, GString *expected)
{
    begin_block(b);
    sb_put64(b, BLK_MIG_FLAG_EOS);
    sb_put8(b, QEMU_VM_SECTION_FOOTER);
    sb_put8(b, 0);
    sb_put8(b, 0);
    g_string_printf(expected, "reading a section footer: unexpected end of stream at byte %u",
                    b->len);
}

/* Without EOS the loader reads on into the EOF byte as a record. */
static void build_eos_missing(GByteArray *b, GString *expected)
{
    size_t at;

    begin_block(b);
    rec_size(b, "disk0", specs[0].size);
    at = b->len;
    sb_put8(b, QEMU_VM_SECTION_FOOTER);
    sb_put32(b, 0);
    sb_put8(b, QEMU_VM_EOF);
    g_string_printf(expected, "block migration: reading record at stream offset %"
                    G_GSIZE_FORMAT ": unexpected end of stream at byte %u", at, b->len);
}

static void build_empty_idstr(GByteArray *b, GString *expected)
{
    begin_section(b, 0, "", 0, 1);
    end_section0(b);
    sb_put8(b, QEMU_VM_EOF);
    g_string_assign(expected, "unknown section '' instance 0 at stream offset 9");
}

static void build_unknown_idstr(GByteArray *b, GString *expected)
{
    begin_section(b, 0, "ram", 0, 4);
    end_section0(b);
    sb_put8(b, QEMU_VM_EOF);
    g_string_assign(expected, "unknown section 'ram' instance 0 at stream offset 9");
}

static void build_unknown_instance(GByteArray *b, GString *expected)
{
    begin_section(b, 0, "block", 1, 1);
    end_section0(b);
    sb_put8(b, QEMU_VM_EOF);
    g_string_assign(expected, "unknown section 'block' instance 1 at stream offset 9");
}

static void build_version_2(GByteArray *b, GString *expected)
{
    begin_section(b, 0, "block", 0, 2);
    end_section0(b);
    sb_put8(b, QEMU_VM_EOF);
    g_string_assign(expected, "section 'block' has version 2 but at most 1 is supported "
                    "at stream offset 9");
}

static void build_version_max(GByteArray *b, GString *expected)
{
    begin_section(b, 0, "block", 0, UINT32_MAX);
    end_section0(b);
    sb_put8(b, QEMU_VM_EOF);
    g_string_assign(expected, "section 'block' has version 4294967295 but at most 1 "
                    "is supported at stream offset 9");
}

static void build_device_size_bigger(GByteArray *b, GString *expected)
{
    begin_block(b);
    rec_size(b, "disk0", specs[0].size + 512);
    end_section0(b);
    sb_put8(b, QEMU_VM_EOF);
    g_string_printf(expected, "block migration: drive 'disk0' is %" G_GUINT64_FORMAT
                    " bytes at the source but only %" G_GUINT64_FORMAT
                    " bytes at the destination", specs[0].size + 512, specs[0].size);
}

static void build_device_size_max(GByteArray *b, GString *expected)
{
    begin_block(b);
    rec_size(b, specs[1].id, UINT64_MAX);
    end_section0(b);
    sb_put8(b, QEMU_VM_EOF);
    g_string_printf(expected, "block migration: drive '%s' is 18446744073709551615 bytes at "
                    "the source but only %" G_GUINT64_FORMAT " bytes at the destination",
                    specs[1].id, specs[1].size);
}

static void build_bad_magic(GByteArray *b, GString *expected)
{
    sb_put32(b, 0x5145564e);
    sb_put32(b, QEMU_VM_FILE_VERSION);
    sb_put8(b, QEMU_VM_EOF);
    g_string_assign(expected, "invalid stream magic 0x5145564e at stream offset 0");
}

static void build_bad_version(GByteArray *b, GString *expected)
{
    sb_put32(b, QEMU_VM_FILE_MAGIC);
    sb_put32(b, 2);
    sb_put8(b, QEMU_VM_EOF);
    g_string_assign(expected, "unsupported stream version 2 at stream offset 4");
}

static void build_empty_stream(GByteArray *b, GString *expected)
{
    g_string_assign(expected, "reading the stream header: unexpected end of stream at byte 0");
}

static void build_unknown_section_type(GByteArray *b, GString *expected)
{
    size_t at;

    setup_section(b);
    at = b->len;
    sb_put8(b, 0x55);
    g_string_printf(expected, "unknown section type 0x55 at stream offset %" G_GSIZE_FORMAT, at);
}

static void build_duplicate_start(GByteArray *b, GString *expected)
{
    size_t at;

    setup_section(b);
    sb_put8(b, QEMU_VM_SECTION_START);
    at = b->len;
    sb_put32(b, 0);
    sb_put_name(b, "block");
    sb_put32(b, 0);
    sb_put32(b, 1);
    end_section0(b);
    sb_put8(b, QEMU_VM_EOF);
    g_string_printf(expected, "duplicate section id 0 at stream offset %" G_GSIZE_FORMAT, at);
}

static void build_unknown_flags(GByteArray *b, GString *expected)
{
    begin_block(b);
    rec_data(b, 0x100 | BLK_MIG_FLAG_DEVICE_BLOCK, "disk0");
    end_section0(b);
    sb_put8(b, QEMU_VM_EOF);
    g_string_printf(expected, "block migration: unknown flags 0x100 in record at stream "
                    "offset %d", SECTION0_RECORDS);
}

static void build_conflicting_flags(GByteArray *b, GString *expected)
{
    begin_block(b);
    rec_data(b, BLK_MIG_FLAG_DEVICE_SIZE | BLK_MIG_FLAG_DEVICE_BLOCK, "disk0");
    end_section0(b);
    sb_put8(b, QEMU_VM_EOF);
    g_string_printf(expected, "block migration: conflicting flags 0x11 in record at stream "
                    "offset %d", SECTION0_RECORDS);
}

static void build_zero_without_block(GByteArray *b, GString *expected)
{
    begin_block(b);
    sb_put64(b, 1 * MiB | BLK_MIG_FLAG_ZERO_BLOCK);
    end_section0(b);
    sb_put8(b, QEMU_VM_EOF);
    g_string_printf(expected, "block migration: ZERO_BLOCK flag without DEVICE_BLOCK in "
                    "record at stream offset %d", SECTION0_RECORDS);
}

/* Half a chunk: nothing of it may reach the disk. */
static void build_truncated_payload(GByteArray *b, GString *expected)
{
    begin_block(b);
    rec_data(b, 0 | BLK_MIG_FLAG_DEVICE_BLOCK, "disk0");
    g_byte_array_set_size(b, b->len - CHUNK / 2);
    g_string_printf(expected, "block migration: reading the data of the record at stream "
                    "offset %d: unexpected end of stream at byte %u", SECTION0_RECORDS, b->len);
}

static void build_truncated_drive_id(GByteArray *b, GString *expected)
{
    begin_block(b);
    sb_put64(b, 0 | BLK_MIG_FLAG_DEVICE_BLOCK);
    sb_put8(b, 200);
    g_byte_array_append(b, (const guint8 *)"disk0", 5);
    g_string_printf(expected, "block migration: reading record at stream offset %d: "
                    "unexpected end of stream at byte %u", SECTION0_RECORDS, b->len);
}

static void build_truncated_record_header(GByteArray *b, GString *expected)
{
    begin_block(b);
    sb_put32(b, 0);
    g_string_printf(expected, "block migration: reading record at stream offset %d: "
                    "unexpected end of stream at byte %d",
                    SECTION0_RECORDS, SECTION0_RECORDS + 4);
}

static void build_truncated_idstr(GByteArray *b, GString *expected)
{
    sb_put32(b, QEMU_VM_FILE_MAGIC);
    sb_put32(b, QEMU_VM_FILE_VERSION);
    sb_put8(b, QEMU_VM_SECTION_START);
    sb_put32(b, 0);
    sb_put8(b, 255);
    g_byte_array_append(b, (const guint8 *)"block", 5);
    g_string_printf(expected, "reading a section header: unexpected end of stream at byte %u",
                    b->len);
}

/* ---- hostile uses of blkmig's record extensions ----
 *
 * SPAN, COMPRESSED and CHANNELS as include/migration/block-migration.h
 * defines them; each stream's only record is the hostile one, at stream
 * offset 27. */

typedef struct ExtRecord {
    uint64_t offset;
    unsigned flags;             /* added to DEVICE_BLOCK */
    const char *id;             /* NULL: disk0 */
    uint32_t span_len;          /* sent with SPAN */
    uint8_t algo;               /* sent with COMPRESSED */
    uint32_t comp_len;          /* sent with COMPRESSED */
    const uint8_t *payload;     /* NULL: payload_len bytes of 0x5a */
    size_t payload_len;         /* bytes actually sent after the fields */
} ExtRecord;

static void put_ext_record(GByteArray *b, const ExtRecord *r)
{
    sb_put64(b, r->offset | BLK_MIG_FLAG_DEVICE_BLOCK | r->flags);
    sb_put_name(b, r->id ? r->id : "disk0");
    if (r->flags & BLK_MIG_FLAG_SPAN) {
        sb_put32(b, r->span_len);
    }
    if (r->flags & BLK_MIG_FLAG_COMPRESSED) {
        sb_put8(b, r->algo);
        sb_put32(b, r->comp_len);
    }
    if (r->payload) {
        g_byte_array_append(b, r->payload, r->payload_len);
    } else {
        size_t at = b->len;
        g_byte_array_set_size(b, at + r->payload_len);
        memset(b->data + at, 0x5a, r->payload_len);
    }
}

/* A whole stream whose only record is R. */
static void ext_stream(GByteArray *b, const ExtRecord *r)
{
    begin_block(b);
    put_ext_record(b, r);
    end_section0(b);
    sb_put8(b, QEMU_VM_EOF);
}

#define SPAN BLK_MIG_FLAG_SPAN
#define COMPRESSED BLK_MIG_FLAG_COMPRESSED

static void expect_bad_span_len(GString *expected, uint32_t len)
{
    g_string_printf(expected, "block migration: drive 'disk0': span length %u at offset 0 "
                    "is not a multiple of 512 from 512 to 1048576", len);
}

/* What the decompressor said about the payload of the record. */
static void expect_corrupt(GString *expected, const char *why)
{
    g_string_printf(expected, "block migration: drive 'disk0': corrupt compressed data in "
                    "record at stream offset %d: %s", SECTION0_RECORDS, why);
}

static void expect_bad_comp_len(GString *expected, uint32_t len, uint32_t ulen)
{
    g_string_printf(expected, "block migration: compressed length %u in record at stream "
                    "offset %d is not between 1 and %u (%u bytes uncompressed)",
                    len, SECTION0_RECORDS, ulen + BLK_MIG_COMPRESS_SLACK, ulen);
}

static void build_span_len_0(GByteArray *b, GString *expected)
{
    ext_stream(b, &(ExtRecord){ .flags = SPAN, .span_len = 0 });
    expect_bad_span_len(expected, 0);
}

static void build_span_len_513(GByteArray *b, GString *expected)
{
    ext_stream(b, &(ExtRecord){ .flags = SPAN, .span_len = 513, .payload_len = 513 });
    expect_bad_span_len(expected, 513);
}

/* Must fail on the length, not try to read or allocate 4 GiB. */
static void build_span_len_max(GByteArray *b, GString *expected)
{
    ext_stream(b, &(ExtRecord){ .flags = SPAN, .span_len = UINT32_MAX, .payload_len = 4096 });
    expect_bad_span_len(expected, UINT32_MAX);
}

static void build_zero_span_len_max(GByteArray *b, GString *expected)
{
    ext_stream(b, &(ExtRecord){ .flags = SPAN | BLK_MIG_FLAG_ZERO_BLOCK,
                                .span_len = UINT32_MAX });
    expect_bad_span_len(expected, UINT32_MAX);
}

static void build_span_over_chunk(GByteArray *b, GString *expected)
{
    ext_stream(b, &(ExtRecord){ .flags = SPAN, .span_len = CHUNK + 512,
                                .payload_len = CHUNK + 512 });
    expect_bad_span_len(expected, CHUNK + 512);
}

static void build_span_crosses_chunk(GByteArray *b, GString *expected)
{
    ext_stream(b, &(ExtRecord){ .offset = CHUNK - 512, .flags = SPAN, .span_len = 1024,
                                .payload_len = 1024 });
    g_string_printf(expected, "block migration: drive 'disk0': span of 1024 bytes at offset "
                    "%u crosses a 1 MiB chunk boundary", CHUNK - 512);
}

static void build_span_beyond_drive(GByteArray *b, GString *expected)
{
    ext_stream(b, &(ExtRecord){ .offset = specs[1].size, .id = specs[1].id,
                                .flags = SPAN | BLK_MIG_FLAG_ZERO_BLOCK, .span_len = 512 });
    g_string_printf(expected, "block migration: drive '%s': chunk at offset %" G_GUINT64_FORMAT
                    " is beyond the destination size %" G_GUINT64_FORMAT,
                    specs[1].id, specs[1].size, specs[1].size);
}

/* Starts inside the drive, ends 63 KiB past it (only a partial last
 * sector may reach past the end). */
static void build_span_past_end(GByteArray *b, GString *expected)
{
    ext_stream(b, &(ExtRecord){ .offset = specs[0].size - 1024, .flags = SPAN,
                                .span_len = 64 * 1024, .payload_len = 64 * 1024 });
    g_string_printf(expected, "block migration: drive 'disk0': span of 65536 bytes at offset %"
                    G_GUINT64_FORMAT " ends beyond the destination size %" G_GUINT64_FORMAT,
                    specs[0].size - 1024, specs[0].size);
}

static uint8_t *zlib_of(const uint8_t *data, size_t len, size_t *out_len)
{
    uLongf cap = compressBound(len);
    uint8_t *out = g_malloc(cap);

    g_assert_cmpint(compress2(out, &cap, data, len, 9), ==, Z_OK);
    *out_len = cap;
    return out;
}

/* One zstd frame of LEN zero bytes, with or without the content size in
 * its header, made a chunk at a time so a huge LEN costs no memory. */
static uint8_t *zstd_zeros(uint64_t len, bool with_size, size_t *out_len)
{
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    uint8_t *zeros = g_malloc0(CHUNK);
    ZSTD_outBuffer out = { g_malloc(CHUNK), CHUNK, 0 };
    size_t left;

    ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, with_size);
    if (with_size) {
        ZSTD_CCtx_setPledgedSrcSize(cctx, len);
    }
    for (uint64_t done = 0; done < len; done += CHUNK) {
        ZSTD_inBuffer in = { zeros, MIN(CHUNK, len - done), 0 };
        while (in.pos < in.size) {
            g_assert_false(ZSTD_isError(ZSTD_compressStream2(cctx, &out, &in,
                                                             ZSTD_e_continue)));
        }
    }
    do {
        ZSTD_inBuffer none = { NULL, 0, 0 };
        left = ZSTD_compressStream2(cctx, &out, &none, ZSTD_e_end);
        g_assert_false(ZSTD_isError(left));
    } while (left);
    ZSTD_freeCCtx(cctx);
    g_free(zeros);
    *out_len = out.pos;
    return out.dst;
}

/* A COMPRESSED span of 4 KiB whose payload is DATA. */
static void compressed_span(GByteArray *b, uint8_t algo, const uint8_t *data, size_t len)
{
    ext_stream(b, &(ExtRecord){ .flags = SPAN | COMPRESSED, .span_len = 4096, .algo = algo,
                                .comp_len = len, .payload = data, .payload_len = len });
}

static void zlib_span(GByteArray *b, uint8_t algo, size_t plain_len)
{
    g_autofree uint8_t *plain = g_malloc(plain_len);
    g_autofree uint8_t *z = NULL;
    size_t zlen;

    memset(plain, 0x5a, plain_len);
    z = zlib_of(plain, plain_len, &zlen);
    compressed_span(b, algo, z, zlen);
}

static void build_compressed_algo_0(GByteArray *b, GString *expected)
{
    zlib_span(b, 0, 4096);
    g_string_printf(expected, "block migration: unknown compression algorithm 0 in record "
                    "at stream offset %d", SECTION0_RECORDS);
}

static void build_compressed_algo_3(GByteArray *b, GString *expected)
{
    zlib_span(b, 3, 4096);
    g_string_printf(expected, "block migration: unknown compression algorithm 3 in record "
                    "at stream offset %d", SECTION0_RECORDS);
}

static void build_compressed_algo_255(GByteArray *b, GString *expected)
{
    zlib_span(b, 255, 4096);
    g_string_printf(expected, "block migration: unknown compression algorithm 255 in record "
                    "at stream offset %d", SECTION0_RECORDS);
}

/* Decompresses to 100 bytes where 4096 are due. */
static void build_compressed_short(GByteArray *b, GString *expected)
{
    zlib_span(b, BLK_MIG_COMPRESS_ZLIB, 100);
    expect_corrupt(expected, "zlib stream holds 100 bytes, expected 4096");
}

/* 1 MiB out of about 1 KiB, for a 4 KiB span. */
static void build_compressed_zlib_bomb(GByteArray *b, GString *expected)
{
    zlib_span(b, BLK_MIG_COMPRESS_ZLIB, CHUNK);
    expect_corrupt(expected, "zlib stream holds more than the expected 4096 bytes");
}

#define BOMB_SIZE (64 * (uint64_t)MiB)

/* A 2 KiB frame of 64 MiB for a 4 KiB span: must fail without
 * allocating or producing it. */
static void build_compressed_zstd_bomb(GByteArray *b, GString *expected)
{
    size_t len;
    g_autofree uint8_t *z = zstd_zeros(BOMB_SIZE, true, &len);

    g_autofree char *why = g_strdup_printf("zstd frame holds %" G_GUINT64_FORMAT
                                           " bytes, expected 4096", BOMB_SIZE);

    g_assert_cmpuint(len, <=, 4096 + BLK_MIG_COMPRESS_SLACK);
    compressed_span(b, BLK_MIG_COMPRESS_ZSTD, z, len);
    expect_corrupt(expected, why);
}

/* The same without the size in the frame header: decompression itself
 * must stop at 4 KiB. */
static void build_compressed_zstd_bomb_unsized(GByteArray *b, GString *expected)
{
    size_t len;
    g_autofree uint8_t *z = zstd_zeros(BOMB_SIZE, false, &len);

    g_assert_cmpuint(len, <=, 4096 + BLK_MIG_COMPRESS_SLACK);
    compressed_span(b, BLK_MIG_COMPRESS_ZSTD, z, len);
    expect_corrupt(expected, "zstd frame holds more than the expected 4096 bytes");
}

/* Without SPAN the record covers a chunk: the bound is then 1 MiB. */
static void build_compressed_chunk_zstd_bomb(GByteArray *b, GString *expected)
{
    size_t len;
    g_autofree uint8_t *z = zstd_zeros(BOMB_SIZE, true, &len);

    g_autofree char *why = g_strdup_printf("zstd frame holds %" G_GUINT64_FORMAT
                                           " bytes, expected %u", BOMB_SIZE, CHUNK);

    ext_stream(b, &(ExtRecord){ .flags = COMPRESSED, .algo = BLK_MIG_COMPRESS_ZSTD,
                                .comp_len = len, .payload = z, .payload_len = len });
    expect_corrupt(expected, why);
}

static void build_compressed_garbage(GByteArray *b, GString *expected)
{
    uint8_t junk[700];

    for (size_t i = 0; i < sizeof(junk); i++) {
        junk[i] = (uint8_t)(i * 151 + 7);
    }
    compressed_span(b, BLK_MIG_COMPRESS_ZSTD, junk, sizeof(junk));
    expect_corrupt(expected, "not a zstd frame (700 bytes, bad magic number)");
}

static void build_compressed_len_0(GByteArray *b, GString *expected)
{
    compressed_span(b, BLK_MIG_COMPRESS_ZLIB, NULL, 0);
    expect_bad_comp_len(expected, 0, 4096);
}

static void build_compressed_len_over_slack(GByteArray *b, GString *expected)
{
    ext_stream(b, &(ExtRecord){ .flags = SPAN | COMPRESSED, .span_len = 4096,
                                .algo = BLK_MIG_COMPRESS_ZLIB,
                                .comp_len = 4096 + BLK_MIG_COMPRESS_SLACK + 1,
                                .payload_len = 4096 + BLK_MIG_COMPRESS_SLACK + 1 });
    expect_bad_comp_len(expected, 4096 + BLK_MIG_COMPRESS_SLACK + 1, 4096);
}

static void build_compressed_len_max(GByteArray *b, GString *expected)
{
    ext_stream(b, &(ExtRecord){ .flags = COMPRESSED, .algo = BLK_MIG_COMPRESS_ZSTD,
                                .comp_len = UINT32_MAX, .payload_len = 4096 });
    expect_bad_comp_len(expected, UINT32_MAX, CHUNK);
}

static void build_compressed_zero_block(GByteArray *b, GString *expected)
{
    ext_stream(b, &(ExtRecord){ .flags = SPAN | COMPRESSED | BLK_MIG_FLAG_ZERO_BLOCK,
                                .span_len = 4096, .algo = BLK_MIG_COMPRESS_ZLIB,
                                .comp_len = 16 });
    g_string_printf(expected, "block migration: COMPRESSED flag with ZERO_BLOCK in record at "
                    "stream offset %d", SECTION0_RECORDS);
}

/* CHANNELS: be32 count, 16-byte id. */
static void channels_stream(GByteArray *b, uint64_t header, uint32_t count)
{
    static const uint8_t id[BLK_MIG_MULTIFD_ID_LEN] = "fuzz-migration!";

    begin_block(b);
    sb_put64(b, header);
    sb_put32(b, count);
    g_byte_array_append(b, id, sizeof(id));
    end_section0(b);
    sb_put8(b, QEMU_VM_EOF);
}

/* A file stream has no channel connections: announcing some must fail
 * (not wait for ever, not load without their records). */
static void build_channels_in_file(GByteArray *b, GString *expected)
{
    channels_stream(b, BLK_MIG_FLAG_CHANNELS, 2);
    g_string_printf(expected, "block migration: CHANNELS record at stream offset %d: "
                    "multifd channels are announced, but this incoming migration cannot "
                    "accept connections (it is not a socket)", SECTION0_RECORDS);
}

/* Which check of a bad count comes first (it, or that a file stream has
 * no channels) is the loader's choice: only the record is pinned. */
static void build_channels_0(GByteArray *b, GString *expected)
{
    channels_stream(b, BLK_MIG_FLAG_CHANNELS, 0);
    g_string_printf(expected, "block migration: CHANNELS record at stream offset %d: ",
                    SECTION0_RECORDS);
}

static void build_channels_17(GByteArray *b, GString *expected)
{
    channels_stream(b, BLK_MIG_FLAG_CHANNELS, BLK_MIG_MULTIFD_MAX_CHANNELS + 1);
    g_string_printf(expected, "block migration: CHANNELS record at stream offset %d: ",
                    SECTION0_RECORDS);
}

static void build_channels_with_offset(GByteArray *b, GString *expected)
{
    channels_stream(b, 1 * MiB | BLK_MIG_FLAG_CHANNELS, 2);
    g_string_printf(expected, "block migration: CHANNELS record at stream offset %d has a "
                    "non-zero offset field", SECTION0_RECORDS);
}

static const HostileCase hostile_cases[] = {
    { "offset-2^63", build_offset_2_63 },
    { "offset-max-zero-block", build_offset_max_zero },
    { "offset-at-end", build_offset_at_end },
    { "garbage-drive-id-255", build_garbage_drive_id },
    { "empty-drive-id", build_empty_drive_id },
    { "part-section-id-mismatch", build_part_id_mismatch },
    { "part-before-start", build_part_before_start },
    { "footer-section-id-mismatch", build_footer_id_mismatch },
    { "eof-missing", build_eof_missing },
    { "footer-missing", build_footer_missing },
    { "footer-truncated", build_footer_truncated },
    { "eos-missing", build_eos_missing },
    { "empty-idstr", build_empty_idstr },
    { "unknown-idstr", build_unknown_idstr },
    { "unknown-instance", build_unknown_instance },
    { "version-too-high", build_version_2 },
    { "version-max", build_version_max },
    { "device-size-bigger", build_device_size_bigger },
    { "device-size-max", build_device_size_max },
    { "bad-magic", build_bad_magic },
    { "bad-version", build_bad_version },
    { "empty-stream", build_empty_stream },
    { "unknown-section-type", build_unknown_section_type },
    { "duplicate-start", build_duplicate_start },
    { "unknown-flags", build_unknown_flags },
    { "conflicting-flags", build_conflicting_flags },
    { "zero-without-device-block", build_zero_without_block },
    { "truncated-payload", build_truncated_payload },
    { "truncated-drive-id", build_truncated_drive_id },
    { "truncated-record-header", build_truncated_record_header },
    { "truncated-idstr", build_truncated_idstr },
    { "span-len-0", build_span_len_0 },
    { "span-len-513", build_span_len_513 },
    { "span-len-max", build_span_len_max },
    { "zero-span-len-max", build_zero_span_len_max },
    { "span-over-chunk", build_span_over_chunk },
    { "span-crosses-chunk", build_span_crosses_chunk },
    { "span-beyond-drive", build_span_beyond_drive },
    { "span-past-end", build_span_past_end },
    { "compressed-algo-0", build_compressed_algo_0 },
    { "compressed-algo-3", build_compressed_algo_3 },
    { "compressed-algo-255", build_compressed_algo_255 },
    { "compressed-short-output", build_compressed_short },
    { "compressed-zlib-bomb", build_compressed_zlib_bomb },
    { "compressed-zstd-bomb", build_compressed_zstd_bomb },
    { "compressed-zstd-bomb-unsized", build_compressed_zstd_bomb_unsized },
    { "compressed-chunk-zstd-bomb", build_compressed_chunk_zstd_bomb },
    { "compressed-garbage", build_compressed_garbage },
    { "compressed-len-0", build_compressed_len_0 },
    { "compressed-len-over-slack", build_compressed_len_over_slack },
    { "compressed-len-max", build_compressed_len_max },
    { "compressed-zero-block", build_compressed_zero_block },
    { "channels-in-file-stream", build_channels_in_file },
    { "channels-0", build_channels_0 },
    { "channels-17", build_channels_17 },
    { "channels-with-offset", build_channels_with_offset },
};

static void test_hostile(gconstpointer data)
{
    const HostileCase *hc = data;
    g_autoptr(GByteArray) b = g_byte_array_new();
    g_autoptr(GString) expected = g_string_new(NULL);
    g_autofree char *escaped = NULL;
    LoadResult r;

    hc->build(b, expected);
    g_assert_cmpuint(expected->len, >, 0);
    r = load_bytes(b->data, b->len, hc->name);
    assert_clean(&r, hc->name);
    if (r.ret == 0) {
        g_error("%s: accepted", hc->name);
    }
    escaped = g_strescape(r.err->message, NULL);
    g_test_message("error: %s", escaped);
    if (!strstr(r.err->message, expected->str)) {
        g_error("%s: expected '%s' in '%s'", hc->name, expected->str, r.err->message);
    }
    assert_destinations_equal(env.pattern, hc->name);
    load_result_clear(&r);
}

/* A section idstr of 255 bytes, none NUL, many not ASCII. */
static void build_garbage_idstr(GByteArray *b, GString *expected)
{
    char id[256];

    garbage_id(id);
    begin_section(b, 0, id, 0, 1);
    end_section0(b);
    sb_put8(b, QEMU_VM_EOF);
}

/* Whether the error of loading the stream BUILD makes is valid UTF-8. */
static bool error_is_utf8(HostileBuilder build, const char *what)
{
    g_autoptr(GByteArray) b = g_byte_array_new();
    g_autoptr(GString) expected = g_string_new(NULL);
    LoadResult r;
    bool utf8;

    build(b, expected);
    r = load_bytes(b->data, b->len, what);
    assert_clean(&r, what);
    g_assert_nonnull(r.err);
    utf8 = g_utf8_validate(r.err->message, -1, NULL);
    load_result_clear(&r);
    return utf8;
}

/* Error texts end up in QMP replies, events and the return path, all of
 * which promise UTF-8; names read from the wire are not. */
static void test_error_text_is_utf8(void)
{
    g_autoptr(GString) culprits = g_string_new(NULL);

    if (!error_is_utf8(build_garbage_drive_id, "a garbage drive id")) {
        g_string_append(culprits, "migration/block-load.c (drive ids) ");
    }
    if (!error_is_utf8(build_garbage_idstr, "a garbage section idstr")) {
        g_string_append(culprits, "migration/savevm.c (section idstrs) ");
    }
    if (culprits->len) {
        g_test_message("%sput names from the stream into error messages verbatim: "
                       "not UTF-8, so not valid in QMP JSON", culprits->str);
        g_test_fail();
    }
}

/* ---- strictness: malformed streams an early loader accepted ----
 *
 * Each stream below must be rejected with a message, leaving the
 * destination alone. */

typedef struct StrictCase {
    const char *name;
    void (*build)(GByteArray *b);
    const char *todo;           /* why accepting it is wrong */
} StrictCase;

/* be64 with an offset but no flag bit: QEMU 7.2 fails it as "Unknown
 * block migration flags"; a loader that skips it silently can resync on
 * any run of zero bytes after a framing error. */
static void build_record_without_flags(GByteArray *b)
{
    setup_section(b);
    sb_put8(b, QEMU_VM_SECTION_PART);
    sb_put32(b, 0);
    sb_put64(b, 1 * MiB);
    sb_put64(b, BLK_MIG_FLAG_EOS);
    sb_put8(b, QEMU_VM_SECTION_FOOTER);
    sb_put32(b, 0);
    sb_put8(b, QEMU_VM_EOF);
}

/* "disk0\0junk": the C string is "disk0", so a corrupt length byte
 * followed by a zero byte still names a real drive. */
static void build_drive_id_with_nul(GByteArray *b)
{
    static const char id[] = "disk0\0junk";

    begin_block(b);
    sb_put64(b, 1 * MiB | BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_ZERO_BLOCK);
    sb_put8(b, sizeof(id) - 1);
    g_byte_array_append(b, (const guint8 *)id, sizeof(id) - 1);
    end_section0(b);
    sb_put8(b, QEMU_VM_EOF);
}

static void build_idstr_with_nul(GByteArray *b)
{
    static const char idstr[] = "block\0ram";

    sb_put32(b, QEMU_VM_FILE_MAGIC);
    sb_put32(b, QEMU_VM_FILE_VERSION);
    sb_put8(b, QEMU_VM_SECTION_START);
    sb_put32(b, 0);
    sb_put8(b, sizeof(idstr) - 1);
    g_byte_array_append(b, (const guint8 *)idstr, sizeof(idstr) - 1);
    sb_put32(b, 0);
    sb_put32(b, 1);
    end_section0(b);
    sb_put8(b, QEMU_VM_EOF);
}

/* A valid zlib stream followed by 16 more bytes inside the compressed
 * length: "C bytes that must decompress to exactly U bytes". */
static void build_compressed_trailing_garbage(GByteArray *b)
{
    g_autofree uint8_t *plain = g_malloc(4096);
    g_autofree uint8_t *z = NULL;
    g_autofree uint8_t *padded = NULL;
    size_t zlen;

    memset(plain, 0x5a, 4096);
    z = zlib_of(plain, 4096, &zlen);
    padded = g_malloc(zlen + 16);
    memcpy(padded, z, zlen);
    memset(padded + zlen, 0xee, 16);
    compressed_span(b, BLK_MIG_COMPRESS_ZLIB, padded, zlen + 16);
}

/* DEVICE_SIZE belongs to the setup part only. */
static void build_device_size_in_part(GByteArray *b)
{
    setup_section(b);
    sb_put8(b, QEMU_VM_SECTION_PART);
    sb_put32(b, 0);
    rec_size(b, "disk0", specs[0].size);
    sb_put64(b, BLK_MIG_FLAG_EOS);
    sb_put8(b, QEMU_VM_SECTION_FOOTER);
    sb_put32(b, 0);
    sb_put8(b, QEMU_VM_EOF);
}

static const StrictCase strict_cases[] = {
    { "record-without-flags", build_record_without_flags,
      "migration/block-load.c skips a record with no flag bits instead of failing" },
    { "drive-id-with-nul", build_drive_id_with_nul,
      "migration/block-load.c resolves drive id 'disk0\\0junk' to drive disk0" },
    { "idstr-with-nul", build_idstr_with_nul,
      "migration/savevm.c resolves section idstr 'block\\0ram' to section block" },
    { "compressed-trailing-garbage", build_compressed_trailing_garbage,
      "bytes after the end of a zlib stream inside a COMPRESSED record are ignored" },
    { "device-size-in-part", build_device_size_in_part,
      "a DEVICE_SIZE record outside the setup part is accepted" },
};

static void test_strict(gconstpointer data)
{
    const StrictCase *sc = data;
    g_autoptr(GByteArray) b = g_byte_array_new();
    LoadResult r;

    sc->build(b);
    r = load_bytes(b->data, b->len, sc->name);
    assert_clean(&r, sc->name);
    if (r.ret == 0) {
        g_test_message("accepted: %s", sc->todo);
        g_test_fail();
    } else {
        g_test_message("error: %s", r.err->message);
        assert_destinations_equal(env.pattern, sc->name);
    }
    load_result_clear(&r);
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
        uint64_t v = get64(mu->m->data + pos);
        /* Bit 23 and up is at least 8 MiB, past the end of every drive. */
        mu->must_reject = v & BLK_MIG_FLAG_DEVICE_BLOCK;
        set64(mu->m->data + pos, v | 1ULL << bit);
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
        uint64_t v = get64(mu->m->data + pos);
        set64(mu->m->data + pos, (v & ~(uint64_t)BLK_MIG_FLAGS_MASK) | flags);
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
    old = get32(mu->m->data + pos);
    v = bad ? bad_len32[g_rand_int_range(mu->rng, 0, G_N_ELEMENTS(bad_len32))]
            : old + (g_rand_boolean(mu->rng) ? 512 : -512);
    mu->must_reject = bad && v != old;
    set32(mu->m->data + pos, v);
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

static void test_mutations(void)
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

/* ---- set-up and tear-down of the whole run ---- */

static void make_pattern(guint i)
{
    env.pattern[i] = g_malloc(specs[i].size);
    for (uint64_t off = 0; off < specs[i].size; off++) {
        env.pattern[i][off] = (uint8_t)(0xa5 ^ (off * 29) ^ (off >> 11) ^ i) | 0x80;
    }
}

static void setup_env(void)
{
    GError *err = NULL;

    env.tmpdir = g_dir_make_tmp("blkmig-fuzz-XXXXXX", &err);
    g_assert_no_error(err);
    env.keep_tmp = g_getenv("KEEP_TMP") != NULL;
    env.stream_path = g_build_filename(env.tmpdir, "stream", NULL);
    for (guint i = 0; i < NDRIVES; i++) {
        g_autofree char *src = g_strdup_printf("src-%s.raw", specs[i].id);
        g_autofree char *dst = g_strdup_printf("dst-%s.raw", specs[i].id);
        env.src_path[i] = g_build_filename(env.tmpdir, src, NULL);
        env.dst_path[i] = g_build_filename(env.tmpdir, dst, NULL);
        make_pattern(i);
    }
    block_migration_register();
    env.fuzzed = g_ptr_array_new();
    for (guint i = 0; i < NFLAVOURS; i++) {
        flavours[i].stream = save_stream(&flavours[i]);
        flavours[i].map = map_stream(flavours[i].stream);
        if (flavours[i].fuzz) {
            g_ptr_array_add(env.fuzzed, &flavours[i]);
        }
    }
    for (guint i = 0; i < NDRIVES; i++) {
        gsize len;
        env.source[i] = read_whole(env.src_path[i], &len);
        g_assert_cmpuint(len, ==, specs[i].size);
        env.dst[i] = open_drive(specs[i].id, env.dst_path[i], specs[i].size);
    }
}

static void teardown_env(void)
{
    bdrv_close_all();
    savevm_unregister_all();
    if (env.keep_tmp) {
        g_test_message("scratch files kept in %s", env.tmpdir);
    } else {
        remove_scratch();
    }
    for (guint i = 0; i < NDRIVES; i++) {
        g_free(env.src_path[i]);
        g_free(env.dst_path[i]);
        g_free(env.pattern[i]);
        g_free(env.source[i]);
    }
    g_free(env.tmpdir);
    g_free(env.stream_path);
    for (guint i = 0; i < NFLAVOURS; i++) {
        g_bytes_unref(flavours[i].stream);
        stream_map_free(flavours[i].map);
    }
    g_ptr_array_unref(env.fuzzed);
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
    for (guint i = 0; i < G_N_ELEMENTS(hostile_cases); i++) {
        add_test("hostile", hostile_cases[i].name, &hostile_cases[i], test_hostile);
    }
    for (guint i = 0; i < G_N_ELEMENTS(strict_cases); i++) {
        add_test("strict", strict_cases[i].name, &strict_cases[i], test_strict);
    }
    g_test_add_func("/stream-fuzz/strict/error-text-is-utf8", test_error_text_is_utf8);
    g_test_add_func("/stream-fuzz/fuzz/mutations", test_mutations);
    ret = g_test_run();
    teardown_env();
    return ret;
}
