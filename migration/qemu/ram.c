/* QEMU's "ram" section on a destination without guest RAM: every record
 * is parsed and checked (layout in include/migration/qemu-sections.h),
 * its pages are skipped. */
#include <string.h>

#include "qemu-internal.h"

#define RAM_VERSION 4
#define RAM_PAGE_SIZE 4096
#define RAM_FLAGS_MASK (RAM_PAGE_SIZE - 1)

#define RAM_FLAG_ZERO          0x02
#define RAM_FLAG_MEM_SIZE      0x04
#define RAM_FLAG_PAGE          0x08
#define RAM_FLAG_EOS           0x10
#define RAM_FLAG_CONTINUE      0x20
#define RAM_FLAG_XBZRLE        0x40
#define RAM_FLAG_HOOK          0x80
#define RAM_FLAG_COMPRESS_PAGE 0x100

#define XBZRLE_ENCODING 0x01
/* zlib's compressBound of one page: what QEMU accepts. */
#define COMPRESSED_PAGE_MAX (RAM_PAGE_SIZE + (RAM_PAGE_SIZE >> 12) + 13)
/* Machines have a few dozen RAM blocks; this bounds the table. */
#define RAM_BLOCKS_MAX 1024

typedef struct RamSkip {
    GHashTable *blocks;         /* block id -> its length (guint64 *) */
    const uint64_t *last_len;   /* the block of the last page, or NULL */
    char *last_id;
} RamSkip;

static RamSkip ram;

static void ram_reset(void)
{
    g_clear_pointer(&ram.blocks, g_hash_table_unref);
    g_clear_pointer(&ram.last_id, g_free);
    ram.last_len = NULL;
}

/* A block id: u8 len + bytes, as a NUL-terminated string in ID[256]. */
static bool read_id(MigStream *f, char *id)
{
    uint8_t len = mig_get_u8(f);

    mig_get_buffer(f, id, len);
    id[len] = '\0';
    return !mig_stream_error(f) && strlen(id) == len;
}

/* MEM_SIZE: the RAM blocks, until their lengths add up to TOTAL. */
static int ram_mem_size(MigStream *f, uint64_t total, GError **errp)
{
    while (total > 0) {
        uint64_t offset = mig_stream_bytes(f);
        char id[256];
        uint64_t len;

        if (!read_id(f, id)) {
            return qemu_section_error(f, offset, "ram", errp, "a RAM block id (bad or cut)");
        }
        len = mig_get_be64(f);
        if (mig_stream_error(f) || len > total || len == 0 ||
            g_hash_table_size(ram.blocks) >= RAM_BLOCKS_MAX ||
            g_hash_table_contains(ram.blocks, id)) {
            return qemu_section_error(f, offset, "ram", errp, "RAM block '%s' of %"
                                      G_GUINT64_FORMAT " bytes does not fit the %"
                                      G_GUINT64_FORMAT " bytes left of the total (or is "
                                      "listed twice, or is one block too many)", id, len,
                                      total);
        }
        g_hash_table_insert(ram.blocks, g_strdup(id), g_memdup2(&len, sizeof(len)));
        total -= len;
    }
    return 0;
}

/* The RAM block a page record names (or CONTINUE refers to). */
static int ram_page_block(MigStream *f, unsigned flags, uint64_t addr, GError **errp)
{
    uint64_t offset = mig_stream_bytes(f);
    char id[256];

    if (!(flags & RAM_FLAG_CONTINUE)) {
        if (!read_id(f, id)) {
            return qemu_section_error(f, offset, "ram", errp, "a page's RAM block id "
                                      "(bad or cut)");
        }
        g_free(ram.last_id);
        ram.last_id = g_strdup(id);
        ram.last_len = g_hash_table_lookup(ram.blocks, id);
    }
    if (!ram.last_id || !ram.last_len) {
        return qemu_section_error(f, offset, "ram", errp, "page for %s RAM block%s%s%s",
                                  ram.last_id ? "unknown" : "no", ram.last_id ? " '" : "",
                                  ram.last_id ? ram.last_id : " (CONTINUE first)",
                                  ram.last_id ? "'" : "");
    }
    if (addr >= *ram.last_len) {
        return qemu_section_error(f, offset, "ram", errp, "page at %" G_GUINT64_FORMAT
                                  " beyond RAM block '%s' (%" G_GUINT64_FORMAT " bytes)",
                                  addr, ram.last_id, *ram.last_len);
    }
    return 0;
}

/* A page's payload, after its block. */
static int ram_skip_page(MigStream *f, unsigned kind, GError **errp)
{
    uint64_t offset = mig_stream_bytes(f);
    uint32_t len;

    switch (kind) {
    case RAM_FLAG_ZERO:
        mig_skip(f, 1);
        break;
    case RAM_FLAG_PAGE:
        mig_skip(f, RAM_PAGE_SIZE);
        break;
    case RAM_FLAG_XBZRLE:
        if (mig_get_u8(f) != XBZRLE_ENCODING && !mig_stream_error(f)) {
            return qemu_section_error(f, offset, "ram", errp, "XBZRLE page with a bad "
                                      "encoding byte");
        }
        len = mig_get_be16(f);
        if (len > RAM_PAGE_SIZE && !mig_stream_error(f)) {
            return qemu_section_error(f, offset, "ram", errp, "XBZRLE page of %u bytes "
                                      "(at most %d)", len, RAM_PAGE_SIZE);
        }
        mig_skip(f, len);
        break;
    default:
        len = mig_get_be32(f);
        if (len > COMPRESSED_PAGE_MAX && !mig_stream_error(f)) {
            return qemu_section_error(f, offset, "ram", errp, "compressed page of %u bytes "
                                      "(at most %d)", len, COMPRESSED_PAGE_MAX);
        }
        mig_skip(f, len);
        break;
    }
    return mig_stream_error(f) ? qemu_section_error(f, offset, "ram", errp, "a page") : 0;
}

/* One record; *EOS once the part ended. */
static int ram_record(MigStream *f, bool *eos, GError **errp)
{
    uint64_t offset = mig_stream_bytes(f);
    uint64_t v = mig_get_be64(f);
    unsigned flags = v & RAM_FLAGS_MASK;
    uint64_t addr = v & ~(uint64_t)RAM_FLAGS_MASK;
    unsigned kind = flags & ~RAM_FLAG_CONTINUE;

    if (mig_stream_error(f)) {
        return qemu_section_error(f, offset, "ram", errp, "a record");
    }
    if (kind == RAM_FLAG_EOS || kind == RAM_FLAG_MEM_SIZE) {
        *eos = kind == RAM_FLAG_EOS;
        return *eos ? 0 : ram_mem_size(f, addr, errp);
    }
    if (kind == RAM_FLAG_ZERO || kind == RAM_FLAG_PAGE || kind == RAM_FLAG_XBZRLE ||
        kind == RAM_FLAG_COMPRESS_PAGE) {
        return ram_page_block(f, flags, addr, errp) < 0 ? -1 : ram_skip_page(f, kind, errp);
    }
    return qemu_section_error(f, offset, "ram", errp, "%s (flags 0x%03x)",
                              (flags & RAM_FLAG_HOOK) ? "RDMA hook records are not supported"
                                                      : "unknown record", flags);
}

static int ram_load_state(MigStream *f, void *opaque, int version_id, GError **errp)
{
    bool eos = false;

    if (version_id != RAM_VERSION) {
        return qemu_section_error(f, mig_stream_bytes(f), "ram", errp,
                                  "version %d (only %d is known)", version_id, RAM_VERSION);
    }
    if (!ram.blocks) {
        ram.blocks = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    }
    while (!eos) {
        if (ram_record(f, &eos, errp) < 0) {
            return -1;
        }
    }
    return 0;
}

static void ram_load_setup(void *opaque, const SaveVMLoadContext *ctx)
{
    ram_reset();
}

static void ram_cleanup(void *opaque)
{
    ram_reset();
}

void qemu_ram_register(void)
{
    static const SaveVMHandlers ops = {
        .load_setup = ram_load_setup,
        .load_state = ram_load_state,
        .cleanup = ram_cleanup,
    };
    savevm_register("ram", 0, RAM_VERSION, &ops, NULL);
}
