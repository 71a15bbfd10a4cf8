/* The savevm container: exact bytes of a saved stream, a full round trip
 * through a file, and the specific error of each kind of broken input. */
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include "migration/savevm.h"
#include "../lib/stream-bytes.h"

#define TAG_SETUP    0x00005e70u
#define TAG_ROUND    0x00000100u
#define TAG_COMPLETE 0x00c0ffeeu
#define TAG_FULL     0x0000f011u

static char *tmpdir;

/* A handler with a START/PART/END life: one tag per section. */
typedef struct Toy {
    int rounds;                 /* source: iterations done */
    GArray *tags;               /* destination: tags loaded, in order */
    int finishes;
    int cleanups;
    int last_version;
} Toy;

static int toy_setup(MigStream *f, void *opaque, GError **errp)
{
    mig_put_be32(f, TAG_SETUP);
    return 0;
}

static int toy_iterate(MigStream *f, void *opaque, uint64_t max_bytes, GError **errp)
{
    Toy *t = opaque;

    mig_put_be32(f, TAG_ROUND + t->rounds);
    return ++t->rounds >= 3;
}

static uint64_t toy_pending(void *opaque)
{
    Toy *t = opaque;
    return t->rounds >= 3 ? 0 : (3 - t->rounds) * 4;
}

static int toy_complete(MigStream *f, void *opaque, GError **errp)
{
    mig_put_be32(f, TAG_COMPLETE);
    return 0;
}

static int toy_load(MigStream *f, void *opaque, int version_id, GError **errp)
{
    Toy *t = opaque;
    uint32_t tag = mig_get_be32(f);

    if (mig_stream_error(f)) {
        g_set_error(errp, g_quark_from_static_string("toy"), 0, "toy: %s",
                    mig_stream_error_msg(f));
        return -1;
    }
    t->last_version = version_id;
    g_array_append_val(t->tags, tag);
    return 0;
}

static int toy_finish(void *opaque, GError **errp)
{
    ((Toy *)opaque)->finishes++;
    return 0;
}

static void toy_cleanup(void *opaque)
{
    ((Toy *)opaque)->cleanups++;
}

static const SaveVMHandlers toy_ops = {
    .save_setup = toy_setup,
    .save_iterate = toy_iterate,
    .save_pending = toy_pending,
    .save_complete = toy_complete,
    .load_state = toy_load,
    .load_finish = toy_finish,
    .cleanup = toy_cleanup,
};

/* A non-iterative handler: one FULL section at completion. */
static int full_complete(MigStream *f, void *opaque, GError **errp)
{
    mig_put_be32(f, TAG_FULL);
    return 0;
}

static const SaveVMHandlers full_ops = {
    .save_complete = full_complete,
    .load_state = toy_load,
    .load_finish = toy_finish,
    .cleanup = toy_cleanup,
};

static bool never_active(void *opaque)
{
    return false;
}

static const SaveVMHandlers inactive_ops = {
    .save_setup = toy_setup,
    .save_iterate = toy_iterate,
    .save_complete = toy_complete,
    .is_active = never_active,
};

typedef struct Fixture {
    Toy toy, full, inactive;
    char *path;
} Fixture;

static void fixture_setup(Fixture *fx, gconstpointer data)
{
    fx->toy.tags = g_array_new(false, false, sizeof(uint32_t));
    fx->full.tags = g_array_new(false, false, sizeof(uint32_t));
    fx->inactive.tags = g_array_new(false, false, sizeof(uint32_t));
    /* Section ids follow registration order: toy 0, inactive 1, full 2. */
    savevm_register("toy", 0, 2, &toy_ops, &fx->toy);
    savevm_register("inactive", 0, 1, &inactive_ops, &fx->inactive);
    savevm_register("second", 5, 1, &full_ops, &fx->full);
    fx->path = g_build_filename(tmpdir, "stream", NULL);
}

static void fixture_teardown(Fixture *fx, gconstpointer data)
{
    savevm_unregister_all();
    g_array_unref(fx->toy.tags);
    g_array_unref(fx->full.tags);
    g_array_unref(fx->inactive.tags);
    g_unlink(fx->path);
    g_free(fx->path);
}

/* ---- building byte strings ---- */

static void put_start(GByteArray *b, uint8_t type, uint32_t id, const char *idstr,
                      uint32_t instance, uint32_t version)
{
    sb_put8(b, type);
    sb_put32(b, id);
    sb_put8(b, strlen(idstr));
    g_byte_array_append(b, (const guint8 *)idstr, strlen(idstr));
    sb_put32(b, instance);
    sb_put32(b, version);
}

static void put_footer(GByteArray *b, uint32_t id)
{
    sb_put8(b, QEMU_VM_SECTION_FOOTER);
    sb_put32(b, id);
}

static GByteArray *stream_header(void)
{
    GByteArray *b = g_byte_array_new();
    sb_put32(b, QEMU_VM_FILE_MAGIC);
    sb_put32(b, QEMU_VM_FILE_VERSION);
    return b;
}

/* What the fixture's handlers save, byte for byte (section ids count from
 * 1: see savevm_register). */
static GByteArray *expected_stream(void)
{
    GByteArray *b = stream_header();

    put_start(b, QEMU_VM_SECTION_START, 1, "toy", 0, 2);
    sb_put32(b, TAG_SETUP);
    put_footer(b, 1);
    for (int i = 0; i < 3; i++) {
        sb_put8(b, QEMU_VM_SECTION_PART);
        sb_put32(b, 1);
        sb_put32(b, TAG_ROUND + i);
        put_footer(b, 1);
    }
    sb_put8(b, QEMU_VM_SECTION_END);
    sb_put32(b, 1);
    sb_put32(b, TAG_COMPLETE);
    put_footer(b, 1);
    put_start(b, QEMU_VM_SECTION_FULL, 3, "second", 5, 1);
    sb_put32(b, TAG_FULL);
    put_footer(b, 3);
    sb_put8(b, BLKMIG_VM_EOF);
    return b;
}

/* ---- running ---- */

static void save_to_file(const char *path)
{
    MigStream *f = mig_stream_new_writer(open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600));
    GError *err = NULL;
    int ret;

    g_assert_cmpint(savevm_state_header(f, &err), ==, 0);
    g_assert_cmpint(savevm_state_setup(f, &err), ==, 0);
    g_assert_cmpuint(savevm_state_pending(), ==, 12);
    do {
        ret = savevm_state_iterate(f, 1 << 20, &err);
        g_assert_no_error(err);
        g_assert_cmpint(ret, >=, 0);
    } while (ret == 0);
    g_assert_cmpuint(savevm_state_pending(), ==, 0);
    g_assert_cmpint(savevm_state_complete(f, &err), ==, 0);
    g_assert_no_error(err);
    savevm_state_cleanup();
    mig_stream_close(f);
}

static void assert_load_fails(Fixture *fx, GByteArray *bytes, const char *expected)
{
    GError *err = sb_load_file(fx->path, bytes);

    g_assert_nonnull(err);
    g_test_message("error: %s", err->message);
    if (!strstr(err->message, expected)) {
        g_error("expected '%s' in '%s'", expected, err->message);
    }
    g_assert_cmpint(fx->toy.finishes, ==, 0);
    g_error_free(err);
    g_byte_array_unref(bytes);
}

/* ---- tests ---- */

static void test_save_bytes(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) expected = expected_stream();
    gchar *contents;
    gsize len;

    save_to_file(fx->path);
    g_assert_true(g_file_get_contents(fx->path, &contents, &len, NULL));
    g_assert_cmpmem(contents, len, expected->data, expected->len);
    g_free(contents);
    /* Only the handlers that took part are cleaned up. */
    g_assert_cmpint(fx->toy.cleanups, ==, 1);
    g_assert_cmpint(fx->full.cleanups, ==, 1);
    g_assert_cmpint(fx->inactive.rounds, ==, 0);
}

static void test_roundtrip(Fixture *fx, gconstpointer data)
{
    static const uint32_t toy_tags[] = {
        TAG_SETUP, TAG_ROUND, TAG_ROUND + 1, TAG_ROUND + 2, TAG_COMPLETE,
    };
    MigStream *f;
    GError *err = NULL;

    save_to_file(fx->path);
    f = mig_stream_new_reader(open(fx->path, O_RDONLY));
    g_assert_cmpint(savevm_load(f, NULL, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_true(mig_at_eof(f));
    mig_stream_close(f);
    g_assert_cmpmem(fx->toy.tags->data, fx->toy.tags->len * 4, toy_tags, sizeof(toy_tags));
    g_assert_cmpuint(fx->full.tags->len, ==, 1);
    g_assert_cmpuint(g_array_index(fx->full.tags, uint32_t, 0), ==, TAG_FULL);
    g_assert_cmpint(fx->toy.last_version, ==, 2);
    g_assert_cmpint(fx->toy.finishes, ==, 1);
    g_assert_cmpint(fx->full.finishes, ==, 1);
    g_assert_cmpint(fx->inactive.finishes, ==, 0);
}

static void test_older_version_accepted(Fixture *fx, gconstpointer data)
{
    GByteArray *b = stream_header();
    GError *err;

    put_start(b, QEMU_VM_SECTION_START, 9, "toy", 0, 1);
    sb_put32(b, TAG_SETUP);
    put_footer(b, 9);
    sb_put8(b, BLKMIG_VM_EOF);
    err = sb_load_file(fx->path, b);
    g_assert_no_error(err);
    g_assert_cmpint(fx->toy.last_version, ==, 1);
    g_assert_cmpint(fx->toy.finishes, ==, 1);
    g_byte_array_unref(b);
}

static void test_bad_magic(Fixture *fx, gconstpointer data)
{
    GByteArray *b = g_byte_array_new();

    sb_put32(b, 0x12345678);
    sb_put32(b, 3);
    sb_put8(b, BLKMIG_VM_EOF);
    assert_load_fails(fx, b, "invalid stream magic 0x12345678");
}

static void test_bad_version(Fixture *fx, gconstpointer data)
{
    GByteArray *b = g_byte_array_new();

    sb_put32(b, QEMU_VM_FILE_MAGIC);
    sb_put32(b, 2);
    sb_put8(b, BLKMIG_VM_EOF);
    assert_load_fails(fx, b, "unsupported stream version 2");
}

static void test_unknown_section_type(Fixture *fx, gconstpointer data)
{
    GByteArray *b = stream_header();

    sb_put8(b, 0x55);
    assert_load_fails(fx, b, "unknown section type 0x55 at stream offset 8");
}

static void test_unknown_idstr(Fixture *fx, gconstpointer data)
{
    GByteArray *b = stream_header();

    put_start(b, QEMU_VM_SECTION_START, 0, "foo", 0, 1);
    put_footer(b, 0);
    sb_put8(b, BLKMIG_VM_EOF);
    assert_load_fails(fx, b, "unknown section 'foo' instance 0");
}

static void test_unknown_instance(Fixture *fx, gconstpointer data)
{
    GByteArray *b = stream_header();

    put_start(b, QEMU_VM_SECTION_FULL, 0, "toy", 1, 1);
    put_footer(b, 0);
    sb_put8(b, BLKMIG_VM_EOF);
    assert_load_fails(fx, b, "unknown section 'toy' instance 1");
}

static void test_newer_version(Fixture *fx, gconstpointer data)
{
    GByteArray *b = stream_header();

    put_start(b, QEMU_VM_SECTION_START, 0, "toy", 0, 3);
    sb_put32(b, TAG_SETUP);
    put_footer(b, 0);
    sb_put8(b, BLKMIG_VM_EOF);
    assert_load_fails(fx, b, "section 'toy' has version 3 but at most 2 is supported");
}

static void test_part_without_start(Fixture *fx, gconstpointer data)
{
    GByteArray *b = stream_header();

    put_start(b, QEMU_VM_SECTION_START, 0, "toy", 0, 2);
    sb_put32(b, TAG_SETUP);
    put_footer(b, 0);
    sb_put8(b, QEMU_VM_SECTION_PART);
    sb_put32(b, 7);
    assert_load_fails(fx, b, "unknown section id 7");
}

static void test_bad_footer_byte(Fixture *fx, gconstpointer data)
{
    GByteArray *b = stream_header();

    put_start(b, QEMU_VM_SECTION_START, 2, "toy", 0, 2);
    sb_put32(b, TAG_SETUP);
    sb_put8(b, 0x41);
    sb_put32(b, 2);
    sb_put8(b, BLKMIG_VM_EOF);
    assert_load_fails(fx, b, "section footer mismatch: expected 0x7e for section 2, got 0x41");
}

static void test_bad_footer_id(Fixture *fx, gconstpointer data)
{
    GByteArray *b = stream_header();

    put_start(b, QEMU_VM_SECTION_START, 0, "toy", 0, 2);
    sb_put32(b, TAG_SETUP);
    put_footer(b, 1);
    sb_put8(b, BLKMIG_VM_EOF);
    assert_load_fails(fx, b, "section footer mismatch: expected section id 0, got 1");
}

static void test_duplicate_start(Fixture *fx, gconstpointer data)
{
    GByteArray *b = stream_header();

    for (int i = 0; i < 2; i++) {
        put_start(b, QEMU_VM_SECTION_START, 4, i ? "second" : "toy", i ? 5 : 0, 1);
        sb_put32(b, TAG_SETUP);
        put_footer(b, 4);
    }
    sb_put8(b, BLKMIG_VM_EOF);
    assert_load_fails(fx, b, "duplicate section id 4");
}

/* Every proper prefix of a good stream fails with the stream's own
 * end-of-stream message naming the prefix length, and never finishes. */
static void test_truncated(Fixture *fx, gconstpointer data)
{
    g_autoptr(GByteArray) full = expected_stream();

    for (guint len = 0; len < full->len; len++) {
        GByteArray *b = g_byte_array_new();
        char *expected = g_strdup_printf("unexpected end of stream at byte %u", len);

        g_byte_array_append(b, full->data, len);
        g_array_set_size(fx->toy.tags, 0);
        assert_load_fails(fx, b, expected);
        g_free(expected);
    }
}

int main(int argc, char **argv)
{
    int ret;

    g_test_init(&argc, &argv, NULL);
    tmpdir = g_dir_make_tmp("test-savevm-XXXXXX", NULL);
    g_assert_nonnull(tmpdir);
#define ADD(name, fn) g_test_add("/savevm/" name, Fixture, NULL, fixture_setup, fn, fixture_teardown)
    ADD("save-bytes", test_save_bytes);
    ADD("roundtrip", test_roundtrip);
    ADD("older-version-accepted", test_older_version_accepted);
    ADD("bad/magic", test_bad_magic);
    ADD("bad/version", test_bad_version);
    ADD("bad/section-type", test_unknown_section_type);
    ADD("bad/unknown-idstr", test_unknown_idstr);
    ADD("bad/unknown-instance", test_unknown_instance);
    ADD("bad/newer-version", test_newer_version);
    ADD("bad/part-without-start", test_part_without_start);
    ADD("bad/footer-byte", test_bad_footer_byte);
    ADD("bad/footer-id", test_bad_footer_id);
    ADD("bad/duplicate-start", test_duplicate_start);
    ADD("bad/truncated", test_truncated);
    ret = g_test_run();
    g_rmdir(tmpdir);
    g_free(tmpdir);
    return ret;
}
