/* Loading a stream into the destination drives and judging what the
 * load did: the error message, the time it took (a watchdog for hangs),
 * and that it changed no drive size and no other file; deaths say which
 * stream was being loaded. */
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/block.h"
#include "migration/savevm.h"
#include "migration/stream.h"
#include "../lib/files.h"
#include "stream-fuzz.h"

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

/* A load of these few MiB takes milliseconds; anything near this bound is
 * a loop on hostile input. */
#define LOAD_TIME_LIMIT_S 10

static void write_file(const char *path, const uint8_t *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(write(fd, data, len), ==, (ssize_t)len);
    g_assert_cmpint(close(fd), ==, 0);
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
    g_autofree uint8_t *now = tf_read_file(env.dst_path[i], &len);

    g_assert_cmpuint(len, ==, specs[i].size);
    for (gsize off = 0; off < len; off++) {
        if (now[off] != expected[off]) {
            return off;
        }
    }
    return -1;
}

void assert_destinations_equal(uint8_t *const *expected, const char *what)
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
void remove_scratch(void)
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

void install_death_reports(void)
{
    signal(SIGALRM, watchdog_fired);
    signal(SIGABRT, died);
#ifndef UNDER_ASAN
    /* ASan reports these itself, then aborts. */
    signal(SIGSEGV, died);
    signal(SIGBUS, died);
#endif
}

void load_result_clear(LoadResult *r)
{
    g_clear_error(&r->err);
    g_clear_pointer(&r->violation, g_free);
}

/* Messages that only say "something failed" name no cause: the core's
 * fallbacks when a handler gave no reason, which begin the message
 * ("section 'block' failed to load at stream offset 9").  The same words
 * inside a quoted drive id are input, not a verdict. */
static bool message_is_specific(const char *msg)
{
    bool fallback = msg && g_str_has_prefix(msg, "section '") &&
                    (strstr(msg, "' failed to load") || strstr(msg, "' failed to finish loading"));

    return msg && strlen(msg) > 10 && !fallback;
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
    if (!env.no_watchdog) {
        alarm(LOAD_TIME_LIMIT_S + 5);
    }
    start = g_get_monotonic_time();
    r.ret = savevm_load(f, NULL, &r.err);
    r.elapsed_us = g_get_monotonic_time() - start;
    if (!env.no_watchdog) {
        alarm(0);
    }
    current_load[0] = '\0';
    mig_stream_close(f);
    r.violation = outcome_violation(&r, before);
    return r;
}

LoadResult load_bytes(const uint8_t *data, size_t len, const char *what)
{
    write_file(env.stream_path, data, len);
    return load_stream_file(what);
}

void assert_clean(const LoadResult *r, const char *what)
{
    if (r->violation) {
        g_error("%s: %s", what, r->violation);
    }
}

void check_valid_load(GBytes *stream, const char *what)
{
    LoadResult r = load_bytes(g_bytes_get_data(stream, NULL), g_bytes_get_size(stream), what);

    assert_clean(&r, what);
    g_assert_no_error(r.err);
    g_assert_cmpint(r.ret, ==, 0);
    assert_destinations_equal(env.source, what);
    load_result_clear(&r);
}
