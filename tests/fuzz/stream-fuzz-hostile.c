/* Hand-built hostile streams of QEMU's records (stream header, sections,
 * drive ids, offsets, sizes, flags), each with the exact message the
 * loader must fail with, and the test that loads them.  The record
 * extensions of blkmig are in stream-fuzz-hostile-ext.c. */
#include <glib.h>
#include <string.h>

#include "migration/block-migration.h"
#include "migration/savevm.h"
#include "../lib/stream-bytes.h"
#include "stream-fuzz.h"

/* Header and the START of section ID, IDSTR instance INSTANCE VERSION. */
void begin_section(GByteArray *b, uint32_t id, const char *idstr,
                   uint32_t instance, uint32_t version)
{
    sb_put_stream_header(b);
    sb_put_section_start(b, id, idstr, instance, version);
}

void rec_size(GByteArray *b, const char *id, uint64_t size)
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

/* A complete, harmless first section: sizes of both drives. */
void setup_section(GByteArray *b)
{
    sb_put_block_begin(b);
    for (guint i = 0; i < NDRIVES; i++) {
        rec_size(b, specs[i].id, specs[i].size);
    }
    sb_put_block_section_end(b);
}

static void build_offset_2_63(GByteArray *b, GString *expected)
{
    sb_put_block_begin(b);
    rec_data(b, (1ULL << 63) | BLK_MIG_FLAG_DEVICE_BLOCK, "disk0");
    sb_block_stream_end(b);
    g_string_printf(expected, "block migration: drive 'disk0': chunk at offset "
                    "9223372036854775808 is beyond the destination size %" G_GUINT64_FORMAT,
                    specs[0].size);
}

static void build_offset_max_zero(GByteArray *b, GString *expected)
{
    sb_put_block_begin(b);
    sb_put64(b, ~(uint64_t)BLK_MIG_FLAGS_MASK | BLK_MIG_FLAG_DEVICE_BLOCK |
             BLK_MIG_FLAG_ZERO_BLOCK);
    sb_put_name(b, "disk0");
    sb_block_stream_end(b);
    g_string_printf(expected, "block migration: drive 'disk0': chunk at offset "
                    "18446744073709551104 is beyond the destination size %" G_GUINT64_FORMAT,
                    specs[0].size);
}

/* The first sector past the end: the off-by-one neighbour of the last
 * valid chunk. */
static void build_offset_at_end(GByteArray *b, GString *expected)
{
    sb_put_block_begin(b);
    rec_data(b, specs[1].size | BLK_MIG_FLAG_DEVICE_BLOCK, specs[1].id);
    sb_block_stream_end(b);
    g_string_printf(expected, "block migration: drive '%s': chunk at offset %" G_GUINT64_FORMAT
                    " is beyond the destination size %" G_GUINT64_FORMAT,
                    specs[1].id, specs[1].size, specs[1].size);
}

/* 255 bytes, none NUL, many not ASCII. */
void garbage_id(char *id)
{
    for (int i = 0; i < 255; i++) {
        id[i] = (char)((i * 37 + 11) % 255 + 1);
    }
    id[255] = '\0';
}

void build_garbage_drive_id(GByteArray *b, GString *expected)
{
    char id[256];

    garbage_id(id);
    sb_put_block_begin(b);
    sb_put64(b, 0 | BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_ZERO_BLOCK);
    sb_put_name(b, id);
    sb_block_stream_end(b);
    /* Error texts must be UTF-8 (QMP): the loader repairs the name. */
    g_autofree char *shown = g_utf8_make_valid(id, -1);
    g_string_printf(expected, "block migration: unknown drive '%s'", shown);
}

static void build_empty_drive_id(GByteArray *b, GString *expected)
{
    sb_put_block_begin(b);
    sb_put64(b, BLK_MIG_FLAG_DEVICE_SIZE);
    sb_put_name(b, "");
    sb_put64(b, 0);
    sb_block_stream_end(b);
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
    sb_put8(b, BLKMIG_VM_EOF);
    g_string_printf(expected, "unknown section id 7 at stream offset %" G_GSIZE_FORMAT, at);
}

static void build_part_before_start(GByteArray *b, GString *expected)
{
    sb_put_stream_header(b);
    sb_put8(b, QEMU_VM_SECTION_PART);
    sb_put32(b, 0);
    sb_put64(b, BLK_MIG_FLAG_EOS);
    sb_put8(b, QEMU_VM_SECTION_FOOTER);
    sb_put32(b, 0);
    sb_put8(b, BLKMIG_VM_EOF);
    g_string_assign(expected, "unknown section id 0 at stream offset 9");
}

static void build_footer_id_mismatch(GByteArray *b, GString *expected)
{
    size_t at;

    sb_put_block_begin(b);
    rec_size(b, "disk0", specs[0].size);
    sb_put64(b, BLK_MIG_FLAG_EOS);
    at = b->len;
    sb_put8(b, QEMU_VM_SECTION_FOOTER);
    sb_put32(b, 3);
    sb_put8(b, BLKMIG_VM_EOF);
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

    sb_put_block_begin(b);
    rec_size(b, "disk0", specs[0].size);
    sb_put64(b, BLK_MIG_FLAG_EOS);
    at = b->len;
    sb_put8(b, BLKMIG_VM_EOF);
    g_string_printf(expected, "section footer mismatch: expected 0x7e for section 0, "
                    "got 0x10 at stream offset %" G_GSIZE_FORMAT, at);
}

static void build_footer_truncated(GByteArray *b, GString *expected)
{
    sb_put_block_begin(b);
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

    sb_put_block_begin(b);
    rec_size(b, "disk0", specs[0].size);
    at = b->len;
    sb_put8(b, QEMU_VM_SECTION_FOOTER);
    sb_put32(b, 0);
    sb_put8(b, BLKMIG_VM_EOF);
    g_string_printf(expected, "block migration: reading record at stream offset %"
                    G_GSIZE_FORMAT ": unexpected end of stream at byte %u", at, b->len);
}

static void build_empty_idstr(GByteArray *b, GString *expected)
{
    begin_section(b, 0, "", 0, 1);
    sb_block_stream_end(b);
    g_string_assign(expected, "unknown section '' instance 0 at stream offset 9");
}

/* A section QEMU sends for a device ("ram" is understood now). */
static void build_unknown_idstr(GByteArray *b, GString *expected)
{
    begin_section(b, 0, "cpu_common", 0, 1);
    sb_block_stream_end(b);
    g_string_assign(expected, "unknown section 'cpu_common' instance 0 at stream offset 9");
}

static void build_unknown_instance(GByteArray *b, GString *expected)
{
    begin_section(b, 0, "block", 1, 1);
    sb_block_stream_end(b);
    g_string_assign(expected, "unknown section 'block' instance 1 at stream offset 9");
}

static void build_version_2(GByteArray *b, GString *expected)
{
    begin_section(b, 0, "block", 0, 2);
    sb_block_stream_end(b);
    g_string_assign(expected, "section 'block' has version 2 but at most 1 is supported "
                    "at stream offset 9");
}

static void build_version_max(GByteArray *b, GString *expected)
{
    begin_section(b, 0, "block", 0, UINT32_MAX);
    sb_block_stream_end(b);
    g_string_assign(expected, "section 'block' has version 4294967295 but at most 1 "
                    "is supported at stream offset 9");
}

static void build_device_size_bigger(GByteArray *b, GString *expected)
{
    sb_put_block_begin(b);
    rec_size(b, "disk0", specs[0].size + 512);
    sb_block_stream_end(b);
    g_string_printf(expected, "block migration: drive 'disk0' is %" G_GUINT64_FORMAT
                    " bytes at the source but only %" G_GUINT64_FORMAT
                    " bytes at the destination", specs[0].size + 512, specs[0].size);
}

static void build_device_size_max(GByteArray *b, GString *expected)
{
    sb_put_block_begin(b);
    rec_size(b, specs[1].id, UINT64_MAX);
    sb_block_stream_end(b);
    g_string_printf(expected, "block migration: drive '%s' is 18446744073709551615 bytes at "
                    "the source but only %" G_GUINT64_FORMAT " bytes at the destination",
                    specs[1].id, specs[1].size);
}

static void build_bad_magic(GByteArray *b, GString *expected)
{
    sb_put32(b, 0x5145564e);
    sb_put32(b, QEMU_VM_FILE_VERSION);
    sb_put8(b, BLKMIG_VM_EOF);
    g_string_assign(expected, "invalid stream magic 0x5145564e at stream offset 0");
}

static void build_bad_version(GByteArray *b, GString *expected)
{
    sb_put32(b, QEMU_VM_FILE_MAGIC);
    sb_put32(b, 2);
    sb_put8(b, BLKMIG_VM_EOF);
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
    sb_block_stream_end(b);
    g_string_printf(expected, "duplicate section id 0 at stream offset %" G_GSIZE_FORMAT, at);
}

/* OPTION (0x100, the last flag bit) stands alone. */
static void build_option_with_data(GByteArray *b, GString *expected)
{
    sb_put_block_begin(b);
    rec_data(b, BLK_MIG_FLAG_OPTION | BLK_MIG_FLAG_DEVICE_BLOCK, "disk0");
    sb_block_stream_end(b);
    g_string_printf(expected, "block migration: conflicting flags 0x101 in record at stream "
                    "offset %d", SECTION0_RECORDS);
}

static void build_conflicting_flags(GByteArray *b, GString *expected)
{
    sb_put_block_begin(b);
    rec_data(b, BLK_MIG_FLAG_DEVICE_SIZE | BLK_MIG_FLAG_DEVICE_BLOCK, "disk0");
    sb_block_stream_end(b);
    g_string_printf(expected, "block migration: conflicting flags 0x11 in record at stream "
                    "offset %d", SECTION0_RECORDS);
}

static void build_zero_without_block(GByteArray *b, GString *expected)
{
    sb_put_block_begin(b);
    sb_put64(b, 1 * MiB | BLK_MIG_FLAG_ZERO_BLOCK);
    sb_block_stream_end(b);
    g_string_printf(expected, "block migration: ZERO_BLOCK flag without DEVICE_BLOCK in "
                    "record at stream offset %d", SECTION0_RECORDS);
}

/* Half a chunk: nothing of it may reach the disk. */
static void build_truncated_payload(GByteArray *b, GString *expected)
{
    sb_put_block_begin(b);
    rec_data(b, 0 | BLK_MIG_FLAG_DEVICE_BLOCK, "disk0");
    g_byte_array_set_size(b, b->len - CHUNK / 2);
    g_string_printf(expected, "block migration: reading the data of the record at stream "
                    "offset %d: unexpected end of stream at byte %u", SECTION0_RECORDS, b->len);
}

static void build_truncated_drive_id(GByteArray *b, GString *expected)
{
    sb_put_block_begin(b);
    sb_put64(b, 0 | BLK_MIG_FLAG_DEVICE_BLOCK);
    sb_put8(b, 200);
    g_byte_array_append(b, (const guint8 *)"disk0", 5);
    g_string_printf(expected, "block migration: reading record at stream offset %d: "
                    "unexpected end of stream at byte %u", SECTION0_RECORDS, b->len);
}

static void build_truncated_record_header(GByteArray *b, GString *expected)
{
    sb_put_block_begin(b);
    sb_put32(b, 0);
    g_string_printf(expected, "block migration: reading record at stream offset %d: "
                    "unexpected end of stream at byte %d",
                    SECTION0_RECORDS, SECTION0_RECORDS + 4);
}

static void build_truncated_idstr(GByteArray *b, GString *expected)
{
    sb_put_stream_header(b);
    sb_put8(b, QEMU_VM_SECTION_START);
    sb_put32(b, 0);
    sb_put8(b, 255);
    g_byte_array_append(b, (const guint8 *)"block", 5);
    g_string_printf(expected, "reading a section header: unexpected end of stream at byte %u",
                    b->len);
}

const HostileCase hostile_cases[] = {
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
    { "option-with-data", build_option_with_data },
    { "conflicting-flags", build_conflicting_flags },
    { "zero-without-device-block", build_zero_without_block },
    { "truncated-payload", build_truncated_payload },
    { "truncated-drive-id", build_truncated_drive_id },
    { "truncated-record-header", build_truncated_record_header },
    { "truncated-idstr", build_truncated_idstr },
};

const guint n_hostile_cases = G_N_ELEMENTS(hostile_cases);

void test_hostile(gconstpointer data)
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
