/* Hand-built streams as a QEMU 7.2 source writes them (the configuration
 * section, "ram", "timer", "globalstate", QEMU's end marker and the
 * device description), one valid and the rest hostile: each must fail
 * with the exact message and leave the destination untouched. */
#include <string.h>

#include "migration/savevm.h"
#include "../lib/stream-bytes.h"
#include "stream-fuzz.h"

#define RAM_MEM_SIZE 0x04
#define RAM_ZERO     0x02
#define RAM_PAGE     0x08
#define RAM_EOS      0x10
#define RAM_CONTINUE 0x20
#define RAM_XBZRLE   0x40
#define RAM_HOOK     0x80
#define RAM_COMPRESS 0x100
#define RAM_BLOCK    "pc.ram"
#define RAM_BLOCK_LEN (64 * 1024)
#define RUNSTATE_LEN 100

/* ---- pieces ---- */

static void put_config(GByteArray *b, const char *machine)
{
    sb_put8(b, QEMU_VM_CONFIGURATION);
    sb_put32(b, strlen(machine));
    g_byte_array_append(b, (const guint8 *)machine, strlen(machine));
}

/* Header and the configuration section of a -machine none source. */
static void qemu_begin(GByteArray *b)
{
    sb_put_stream_header(b);
    put_config(b, "none");
}

static void put_footer(GByteArray *b, uint32_t id)
{
    sb_put8(b, QEMU_VM_SECTION_FOOTER);
    sb_put32(b, id);
}

static void put_full(GByteArray *b, uint32_t id, const char *name, uint32_t version)
{
    sb_put8(b, QEMU_VM_SECTION_FULL);
    sb_put32(b, id);
    sb_put_name(b, name);
    sb_put32(b, 0);
    sb_put32(b, version);
}

/* START of "ram" (id 2, as QEMU numbers it) with one 64 KiB block. */
static void ram_begin(GByteArray *b, uint32_t version)
{
    sb_put_section_start(b, 2, "ram", 0, version);
    sb_put64(b, RAM_BLOCK_LEN | RAM_MEM_SIZE);
    sb_put_name(b, RAM_BLOCK);
    sb_put64(b, RAM_BLOCK_LEN);
}

static void ram_end(GByteArray *b)
{
    sb_put64(b, RAM_EOS);
    put_footer(b, 2);
}

static void put_timer(GByteArray *b)
{
    put_full(b, 0, "timer", 2);
    for (int i = 0; i < 3; i++) {
        sb_put64(b, 0x1000 + i);
    }
}

/* Its fields start at the returned offset. */
static size_t put_globalstate(GByteArray *b, const char *runstate)
{
    guint8 buf[RUNSTATE_LEN] = { 0 };
    size_t at;

    put_full(b, 4, "globalstate", 1);
    at = b->len;
    sb_put32(b, strlen(runstate) + 1);
    memcpy(buf, runstate, MIN(strlen(runstate), sizeof(buf)));
    g_byte_array_append(b, buf, sizeof(buf));
    return at;
}

/* QEMU's end marker and a device description. */
static void qemu_end(GByteArray *b)
{
    static const char desc[] = "{\"page_size\": 4096, \"devices\": []}";

    sb_put8(b, QEMU_VM_EOF);
    sb_put8(b, QEMU_VM_VMDESCRIPTION);
    sb_put32(b, strlen(desc));
    g_byte_array_append(b, (const guint8 *)desc, strlen(desc));
}

/* ---- the valid stream ---- */

/* Every kind of ram record, an empty block section, the small sections
 * and the description: it loads, and no drive changes. */
static void build_valid(GByteArray *b)
{
    guint8 page[4096];

    memset(page, 0x5a, sizeof(page));
    qemu_begin(b);
    sb_put_section_start(b, 1, "block", 0, 1);
    sb_put64(b, BLK_MIG_FLAG_EOS);
    put_footer(b, 1);
    ram_begin(b, 4);
    ram_end(b);
    sb_put8(b, QEMU_VM_SECTION_PART);
    sb_put32(b, 2);
    sb_put64(b, 0x1000 | RAM_PAGE);
    sb_put_name(b, RAM_BLOCK);
    g_byte_array_append(b, page, sizeof(page));
    sb_put64(b, 0x2000 | RAM_ZERO | RAM_CONTINUE);
    sb_put8(b, 0);
    sb_put64(b, 0x3000 | RAM_XBZRLE | RAM_CONTINUE);
    sb_put8(b, 1);
    sb_put8(b, 0);      /* be16 length 4 */
    sb_put8(b, 4);
    sb_put32(b, 0x01020304);
    sb_put64(b, 0x4000 | RAM_COMPRESS | RAM_CONTINUE);
    sb_put32(b, 8);
    sb_put64(b, 0);
    ram_end(b);
    put_timer(b);
    put_footer(b, 0);
    put_globalstate(b, "running");
    put_footer(b, 4);
    qemu_end(b);
}

void test_qemu_stream_valid(void)
{
    g_autoptr(GByteArray) b = g_byte_array_new();
    LoadResult r;

    build_valid(b);
    r = load_bytes(b->data, b->len, "qemu-valid");
    assert_clean(&r, "qemu-valid");
    g_assert_no_error(r.err);
    g_assert_cmpint(r.ret, ==, 0);
    assert_destinations_equal(env.pattern, "qemu-valid");
    load_result_clear(&r);
}

/* ---- hostile: the container ---- */

static void build_unknown_section(GByteArray *b, GString *expected)
{
    size_t at;

    qemu_begin(b);
    at = b->len + 1;    /* after the type byte */
    put_full(b, 3, "cpu_common", 1);
    g_string_printf(expected, "unknown section 'cpu_common' instance 0 at stream offset %"
                    G_GSIZE_FORMAT, at);
}

static void build_bad_machine(GByteArray *b, GString *expected)
{
    sb_put_stream_header(b);
    put_config(b, "pc-q35-7.2");
    put_timer(b);
    g_string_assign(expected, "configuration section: the source's machine type is "
                    "'pc-q35-7.2', this destination's is 'none' (blkmigd --machine) at "
                    "stream offset 9");
}

static void build_machine_too_long(GByteArray *b, GString *expected)
{
    sb_put_stream_header(b);
    sb_put8(b, QEMU_VM_CONFIGURATION);
    sb_put32(b, 100000);
    g_string_assign(expected, "configuration section: machine name of 100000 bytes "
                    "(at most 256) at stream offset 9");
}

static void build_config_late(GByteArray *b, GString *expected)
{
    size_t at;

    qemu_begin(b);
    put_timer(b);
    put_footer(b, 0);
    at = b->len;
    put_config(b, "none");
    g_string_printf(expected, "configuration section (0x07) after the first section at "
                    "stream offset %" G_GSIZE_FORMAT, at);
}

static void build_config_subsection(GByteArray *b, GString *expected)
{
    size_t at;

    qemu_begin(b);
    at = b->len;
    sb_put8(b, QEMU_VM_SUBSECTION);
    sb_put_name(b, "configuration/capabilities");
    sb_put32(b, 1);
    g_string_printf(expected, "section 'configuration': subsection "
                    "'configuration/capabilities' is not supported at stream offset %"
                    G_GSIZE_FORMAT, at);
}

static void build_command_section(GByteArray *b, GString *expected)
{
    size_t at;

    qemu_begin(b);
    at = b->len;
    sb_put8(b, QEMU_VM_COMMAND);
    sb_put32(b, 0);
    g_string_printf(expected, "QEMU command section (0x08: return path, postcopy or colo) "
                    "is not supported at stream offset %" G_GSIZE_FORMAT, at);
}

static void build_garbage_after_eof(GByteArray *b, GString *expected)
{
    size_t at;

    qemu_begin(b);
    sb_put8(b, QEMU_VM_EOF);
    at = b->len;
    sb_put8(b, 0x42);
    g_string_printf(expected, "expected the device description (0x06) after the end of "
                    "the stream, got 0x42 at stream offset %" G_GSIZE_FORMAT, at);
}

static void build_vmdesc_too_long(GByteArray *b, GString *expected)
{
    size_t at;

    qemu_begin(b);
    sb_put8(b, QEMU_VM_EOF);
    at = b->len;
    sb_put8(b, QEMU_VM_VMDESCRIPTION);
    sb_put32(b, 0xffffffff);
    g_string_printf(expected, "device description of 4294967295 bytes (at most 67108864) "
                    "at stream offset %" G_GSIZE_FORMAT, at);
}

static void build_vmdesc_truncated(GByteArray *b, GString *expected)
{
    qemu_begin(b);
    sb_put8(b, QEMU_VM_EOF);
    sb_put8(b, QEMU_VM_VMDESCRIPTION);
    sb_put32(b, 100);
    sb_put32(b, 0x7b7d7b7d);
    g_string_printf(expected, "reading the device description: unexpected end of stream "
                    "at byte %u", b->len);
}

/* ---- hostile: ram ---- */

static void build_ram_truncated_record(GByteArray *b, GString *expected)
{
    qemu_begin(b);
    sb_put_section_start(b, 2, "ram", 0, 4);
    sb_put32(b, 0);
    sb_put8(b, 0);
    g_string_printf(expected, "section 'ram': a record: unexpected end of stream at byte %u",
                    b->len);
}

static void build_ram_truncated_page(GByteArray *b, GString *expected)
{
    qemu_begin(b);
    ram_begin(b, 4);
    sb_put64(b, RAM_PAGE);
    sb_put_name(b, RAM_BLOCK);
    sb_put64(b, 0);
    g_string_printf(expected, "section 'ram': a page: unexpected end of stream at byte %u",
                    b->len);
}

static void build_ram_version(GByteArray *b, GString *expected)
{
    size_t at;

    qemu_begin(b);
    sb_put_section_start(b, 2, "ram", 0, 3);
    at = b->len;
    ram_end(b);
    g_string_printf(expected, "section 'ram': version 3 (only 4 is known) at stream "
                    "offset %" G_GSIZE_FORMAT, at);
}

static void build_ram_lengths(GByteArray *b, GString *expected)
{
    size_t at;

    qemu_begin(b);
    sb_put_section_start(b, 2, "ram", 0, 4);
    sb_put64(b, 8192 | RAM_MEM_SIZE);
    at = b->len;
    sb_put_name(b, RAM_BLOCK);
    sb_put64(b, RAM_BLOCK_LEN);
    g_string_printf(expected, "section 'ram': RAM block 'pc.ram' of 65536 bytes does not "
                    "fit the 8192 bytes left of the total (or is listed twice, or is one "
                    "block too many) at stream offset %" G_GSIZE_FORMAT, at);
}

static void build_ram_unknown_block(GByteArray *b, GString *expected)
{
    size_t at;

    qemu_begin(b);
    ram_begin(b, 4);
    sb_put64(b, RAM_ZERO);
    at = b->len;
    sb_put_name(b, "vga.vram");
    sb_put8(b, 0);
    g_string_printf(expected, "section 'ram': page for unknown RAM block 'vga.vram' at "
                    "stream offset %" G_GSIZE_FORMAT, at);
}

static void build_ram_continue_first(GByteArray *b, GString *expected)
{
    size_t at;

    qemu_begin(b);
    ram_begin(b, 4);
    sb_put64(b, RAM_ZERO | RAM_CONTINUE);
    at = b->len;
    sb_put8(b, 0);
    g_string_printf(expected, "section 'ram': page for no RAM block (CONTINUE first) at "
                    "stream offset %" G_GSIZE_FORMAT, at);
}

static void build_ram_beyond_block(GByteArray *b, GString *expected)
{
    size_t at;

    qemu_begin(b);
    ram_begin(b, 4);
    sb_put64(b, 0x100000 | RAM_ZERO);
    at = b->len;
    sb_put_name(b, RAM_BLOCK);
    sb_put8(b, 0);
    g_string_printf(expected, "section 'ram': page at 1048576 beyond RAM block 'pc.ram' "
                    "(65536 bytes) at stream offset %" G_GSIZE_FORMAT, at);
}

static void build_ram_hook(GByteArray *b, GString *expected)
{
    size_t at;

    qemu_begin(b);
    ram_begin(b, 4);
    at = b->len;
    sb_put64(b, RAM_HOOK);
    g_string_printf(expected, "section 'ram': RDMA hook records are not supported "
                    "(flags 0x080) at stream offset %" G_GSIZE_FORMAT, at);
}

static void build_ram_xbzrle_encoding(GByteArray *b, GString *expected)
{
    size_t at;

    qemu_begin(b);
    ram_begin(b, 4);
    sb_put64(b, RAM_XBZRLE);
    sb_put_name(b, RAM_BLOCK);
    at = b->len;
    sb_put8(b, 7);
    g_string_printf(expected, "section 'ram': XBZRLE page with a bad encoding byte at "
                    "stream offset %" G_GSIZE_FORMAT, at);
}

static void build_ram_compressed_too_long(GByteArray *b, GString *expected)
{
    size_t at;

    qemu_begin(b);
    ram_begin(b, 4);
    sb_put64(b, RAM_COMPRESS);
    sb_put_name(b, RAM_BLOCK);
    at = b->len;
    sb_put32(b, 5000);
    g_string_printf(expected, "section 'ram': compressed page of 5000 bytes (at most 4110) "
                    "at stream offset %" G_GSIZE_FORMAT, at);
}

/* ---- hostile: timer, globalstate ---- */

static void build_timer_subsection(GByteArray *b, GString *expected)
{
    size_t at;

    qemu_begin(b);
    put_timer(b);
    at = b->len;
    sb_put8(b, QEMU_VM_SUBSECTION);
    sb_put_name(b, "timer/icount");
    g_string_printf(expected, "section 'timer': subsection 'timer/icount' is not supported "
                    "at stream offset %" G_GSIZE_FORMAT, at);
}

static void build_globalstate_unknown(GByteArray *b, GString *expected)
{
    size_t at;

    qemu_begin(b);
    at = put_globalstate(b, "sleeping");
    put_footer(b, 4);
    g_string_printf(expected, "section 'globalstate': unknown runstate 'sleeping' at stream "
                    "offset %" G_GSIZE_FORMAT, at);
}

static void build_globalstate_no_nul(GByteArray *b, GString *expected)
{
    char name[RUNSTATE_LEN + 1];
    size_t at;

    memset(name, 'r', RUNSTATE_LEN);
    name[RUNSTATE_LEN] = '\0';
    qemu_begin(b);
    at = put_globalstate(b, name);
    g_string_printf(expected, "section 'globalstate': unknown runstate '%s' at stream "
                    "offset %" G_GSIZE_FORMAT, name, at);
}

const HostileCase hostile_qemu_cases[] = {
    { "qemu-unknown-section", build_unknown_section },
    { "qemu-bad-machine", build_bad_machine },
    { "qemu-machine-too-long", build_machine_too_long },
    { "qemu-config-late", build_config_late },
    { "qemu-config-subsection", build_config_subsection },
    { "qemu-command-section", build_command_section },
    { "qemu-garbage-after-eof", build_garbage_after_eof },
    { "qemu-vmdesc-too-long", build_vmdesc_too_long },
    { "qemu-vmdesc-truncated", build_vmdesc_truncated },
    { "qemu-ram-truncated-record", build_ram_truncated_record },
    { "qemu-ram-truncated-page", build_ram_truncated_page },
    { "qemu-ram-version", build_ram_version },
    { "qemu-ram-lengths", build_ram_lengths },
    { "qemu-ram-unknown-block", build_ram_unknown_block },
    { "qemu-ram-continue-first", build_ram_continue_first },
    { "qemu-ram-beyond-block", build_ram_beyond_block },
    { "qemu-ram-hook", build_ram_hook },
    { "qemu-ram-xbzrle-encoding", build_ram_xbzrle_encoding },
    { "qemu-ram-compressed-too-long", build_ram_compressed_too_long },
    { "qemu-timer-subsection", build_timer_subsection },
    { "qemu-globalstate-unknown", build_globalstate_unknown },
    { "qemu-globalstate-no-nul", build_globalstate_no_nul },
};

const guint n_hostile_qemu_cases = G_N_ELEMENTS(hostile_qemu_cases);
