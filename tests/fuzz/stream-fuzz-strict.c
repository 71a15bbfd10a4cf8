/* Strictness: malformed streams an early loader accepted stay as
 * regression cases (each must be rejected with a message, leaving the
 * destination alone), and error texts built from names on the wire must
 * still be UTF-8. */
#include <glib.h>
#include <string.h>

#include "migration/block-migration.h"
#include "migration/savevm.h"
#include "../lib/stream-bytes.h"
#include "stream-fuzz.h"

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
    sb_put8(b, BLKMIG_VM_EOF);
}

/* "disk0\0junk": the C string is "disk0", so a corrupt length byte
 * followed by a zero byte still names a real drive. */
static void build_drive_id_with_nul(GByteArray *b)
{
    static const char id[] = "disk0\0junk";

    sb_put_block_begin(b);
    sb_put64(b, 1 * MiB | BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_ZERO_BLOCK);
    sb_put8(b, sizeof(id) - 1);
    g_byte_array_append(b, (const guint8 *)id, sizeof(id) - 1);
    sb_block_stream_end(b);
}

static void build_idstr_with_nul(GByteArray *b)
{
    static const char idstr[] = "block\0ram";

    sb_put_stream_header(b);
    sb_put8(b, QEMU_VM_SECTION_START);
    sb_put32(b, 0);
    sb_put8(b, sizeof(idstr) - 1);
    g_byte_array_append(b, (const guint8 *)idstr, sizeof(idstr) - 1);
    sb_put32(b, 0);
    sb_put32(b, 1);
    sb_block_stream_end(b);
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
    sb_put8(b, BLKMIG_VM_EOF);
}

const StrictCase strict_cases[] = {
    { "record-without-flags", build_record_without_flags,
      "migration/block/load.c skips a record with no flag bits instead of failing" },
    { "drive-id-with-nul", build_drive_id_with_nul,
      "migration/block/load.c resolves drive id 'disk0\\0junk' to drive disk0" },
    { "idstr-with-nul", build_idstr_with_nul,
      "migration/savevm.c resolves section idstr 'block\\0ram' to section block" },
    { "compressed-trailing-garbage", build_compressed_trailing_garbage,
      "bytes after the end of a zlib stream inside a COMPRESSED record are ignored" },
    { "device-size-in-part", build_device_size_in_part,
      "a DEVICE_SIZE record outside the setup part is accepted" },
};

const guint n_strict_cases = G_N_ELEMENTS(strict_cases);

void test_strict(gconstpointer data)
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

/* A section idstr of 255 bytes, none NUL, many not ASCII. */
static void build_garbage_idstr(GByteArray *b, GString *expected)
{
    char id[256];

    garbage_id(id);
    begin_section(b, 0, id, 0, 1);
    sb_block_stream_end(b);
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
void test_error_text_is_utf8(void)
{
    g_autoptr(GString) culprits = g_string_new(NULL);

    if (!error_is_utf8(build_garbage_drive_id, "a garbage drive id")) {
        g_string_append(culprits, "migration/block/load.c (drive ids) ");
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
