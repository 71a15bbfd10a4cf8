/* vmdk: the sparse extent header, checked field by field before anything
 * is believed; the footer a streamOptimized image keeps at its end when
 * its header says "grain directory at end"; the embedded descriptor (the
 * image's kind, and whether it has a parent); and the grain directory.
 * Every failure names the image and the field. */
#include <errno.h>
#include <gio/gio.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

#include "vmdk.h"

G_STATIC_ASSERT(sizeof(VmdkHeader) == VMDK_SECTOR);

static bool verr(VmdkState *s, GError **errp, const char *fmt, ...) G_GNUC_PRINTF(3, 4);
static bool verr(VmdkState *s, GError **errp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "vmdk image '%s': %s",
                s->bs->filename, msg);
    return false;
}

/* LEN bytes at OFF, which must lie inside the file (WHAT names them). */
static bool read_in_file(VmdkState *s, uint64_t off, void *buf, size_t len, const char *what,
                         GError **errp)
{
    if (off > s->file_size || len > s->file_size - off) {
        return verr(s, errp, "the %s (%zu bytes at offset %" PRIu64 ") lies past the end of "
                    "the file (%" PRIu64 " bytes)", what, len, off, s->file_size);
    }
    int ret = bdrv_pread(s->file, off, buf, len);
    if (ret < 0) {
        return verr(s, errp, "cannot read the %s: %s", what, g_strerror(-ret));
    }
    return true;
}

static void header_to_host(VmdkHeader *h)
{
    h->version = GUINT32_FROM_LE(h->version);
    h->flags = GUINT32_FROM_LE(h->flags);
    h->capacity = GUINT64_FROM_LE(h->capacity);
    h->grain_size = GUINT64_FROM_LE(h->grain_size);
    h->desc_offset = GUINT64_FROM_LE(h->desc_offset);
    h->desc_size = GUINT64_FROM_LE(h->desc_size);
    h->gtes_per_gt = GUINT32_FROM_LE(h->gtes_per_gt);
    h->rgd_offset = GUINT64_FROM_LE(h->rgd_offset);
    h->gd_offset = GUINT64_FROM_LE(h->gd_offset);
    h->overhead = GUINT64_FROM_LE(h->overhead);
    h->compress_algorithm = GUINT16_FROM_LE(h->compress_algorithm);
}

/* ---- The kinds blkmig does not read ---- */

/* The value of KEY="VALUE" in a descriptor (g_free), or NULL. */
static char *descriptor_value(const char *desc, const char *key)
{
    g_autofree char *pattern = g_strdup_printf("%s=\"", key);
    const char *p = strstr(desc, pattern);
    const char *end = p ? strchr(p + strlen(pattern), '"') : NULL;

    return end ? g_strndup(p + strlen(pattern), end - p - strlen(pattern)) : NULL;
}

char *vmdk_unsupported_kind(const uint8_t *buf, size_t len)
{
    if (len >= 4 && memcmp(buf, VMDK_COWD_MAGIC, 4) == 0) {
        return g_strdup("an ESX vmfsSparse extent (COWD)");
    }
    if (len < strlen(VMDK_DESCRIPTOR_MAGIC) ||
        memcmp(buf, VMDK_DESCRIPTOR_MAGIC, strlen(VMDK_DESCRIPTOR_MAGIC)) != 0) {
        return NULL;
    }
    g_autofree char *text = g_strndup((const char *)buf, len);
    g_autofree char *type = descriptor_value(text, "createType");
    return g_strdup_printf("a descriptor file (createType \"%s\") whose extents are other "
                           "files", type ? type : "?");
}

/* ---- Header fields ---- */

static bool check_format(VmdkState *s, const VmdkHeader *h, GError **errp)
{
    if (memcmp(h->magic, VMDK_MAGIC, 4) != 0) {
        return verr(s, errp, "bad magic (not a hosted sparse extent)");
    }
    if (h->version < 1 || h->version > 3) {
        return verr(s, errp, "unsupported version %" PRIu32 " (1 to 3)", h->version);
    }
    if ((h->flags & VMDK_FLAG_NL_DETECT) && memcmp(h->check_bytes, "\n \r\n", 4) != 0) {
        return verr(s, errp, "its newline check bytes are damaged (was it copied as text?)");
    }
    if (h->compress_algorithm > VMDK_COMPRESS_DEFLATE) {
        return verr(s, errp, "unknown compression algorithm %u", h->compress_algorithm);
    }
    bool compressed = h->compress_algorithm == VMDK_COMPRESS_DEFLATE;
    if ((h->flags & VMDK_FLAG_COMPRESSED) && !compressed) {
        return verr(s, errp, "the compressed-grains flag is set without an algorithm");
    }
    if (compressed && !(h->flags & VMDK_FLAG_MARKERS)) {
        return verr(s, errp, "compressed grains without markers are not supported");
    }
    return true;
}

static bool is_power_of_2(uint64_t x)
{
    return x && !(x & (x - 1));
}

/* Grain and table sizes, and the directory they make. */
static bool check_geometry(VmdkState *s, const VmdkHeader *h, GError **errp)
{
    if (!is_power_of_2(h->grain_size) || h->grain_size > VMDK_MAX_GRAIN_SECTORS) {
        return verr(s, errp, "grain size %" PRIu64 " sectors (a power of two up to %u)",
                    h->grain_size, VMDK_MAX_GRAIN_SECTORS);
    }
    if (h->gtes_per_gt == 0 || h->gtes_per_gt > VMDK_MAX_GTES_PER_GT) {
        return verr(s, errp, "%" PRIu32 " entries per grain table (1 to %u)", h->gtes_per_gt,
                    VMDK_MAX_GTES_PER_GT);
    }
    if (h->capacity == 0) {
        return verr(s, errp, "capacity 0");
    }
    uint64_t per_gt = h->grain_size * h->gtes_per_gt;
    uint64_t entries = h->capacity / per_gt + (h->capacity % per_gt != 0);
    if (entries > VMDK_MAX_GD_ENTRIES) {
        return verr(s, errp, "capacity %" PRIu64 " sectors needs %" PRIu64 " grain tables "
                    "(at most %u)", h->capacity, entries, VMDK_MAX_GD_ENTRIES);
    }
    if (h->overhead > s->file_size / VMDK_SECTOR) {
        return verr(s, errp, "truncated: its grains start at sector %" PRIu64 ", past the end "
                    "of the file (%" PRIu64 " bytes)", h->overhead, s->file_size);
    }
    s->size = h->capacity * VMDK_SECTOR;
    s->grain_bytes = h->grain_size * VMDK_SECTOR;
    s->gtes_per_gt = h->gtes_per_gt;
    s->gd_entries = (uint32_t)entries;
    s->compressed = h->compress_algorithm == VMDK_COMPRESS_DEFLATE;
    s->zero_grain = h->flags & VMDK_FLAG_ZERO_GRAIN;
    return true;
}

/* ---- Footer (streamOptimized with the directory at the end) ---- */

typedef struct __attribute__((packed)) VmdkFooter {
    VmdkMarker marker;
    uint8_t marker_pad[VMDK_SECTOR - sizeof(VmdkMarker)];
    VmdkHeader header;
    VmdkMarker eos;
    uint8_t eos_pad[VMDK_SECTOR - sizeof(VmdkMarker)];
} VmdkFooter;

static bool read_footer(VmdkState *s, VmdkHeader *h, GError **errp)
{
    VmdkFooter f;

    if (s->file_size < sizeof(f) + VMDK_SECTOR) {
        return verr(s, errp, "its grain directory is at the end, but the file is too small "
                    "for a footer");
    }
    if (!read_in_file(s, s->file_size - sizeof(f), &f, sizeof(f), "footer", errp)) {
        return false;
    }
    if (GUINT32_FROM_LE(f.marker.size) != 0 ||
        GUINT32_FROM_LE(f.marker.type) != VMDK_MARKER_FOOTER || f.eos.val != 0 ||
        f.eos.size != 0 || GUINT32_FROM_LE(f.eos.type) != VMDK_MARKER_EOS) {
        return verr(s, errp, "its footer markers are damaged");
    }
    *h = f.header;
    header_to_host(h);
    if (h->gd_offset == VMDK_GD_AT_END) {
        return verr(s, errp, "its footer puts the grain directory at the end again");
    }
    return true;
}

/* ---- Descriptor ---- */

static bool check_descriptor_text(VmdkState *s, const char *desc, GError **errp)
{
    g_autofree char *type = descriptor_value(desc, "createType");
    g_autofree char *parent = descriptor_value(desc, "parentFileNameHint");

    if (type && strcmp(type, "monolithicSparse") != 0 && strcmp(type, "streamOptimized") != 0) {
        return verr(s, errp, "createType \"%s\" is not supported (monolithicSparse and "
                    "streamOptimized are)", type);
    }
    if (parent) {
        return verr(s, errp, "it is a delta disk of \"%s\" (parentFileNameHint): delta "
                    "disks are not supported", parent);
    }
    return true;
}

static bool check_descriptor(VmdkState *s, const VmdkHeader *h, GError **errp)
{
    if (h->desc_size == 0) {
        return true;
    }
    if (h->desc_size > VMDK_MAX_DESCRIPTOR_SECTORS || h->desc_offset == 0 ||
        h->desc_offset > s->file_size / VMDK_SECTOR) {
        return verr(s, errp, "descriptor of %" PRIu64 " sectors at sector %" PRIu64
                    " (at most %u sectors, inside the file)", h->desc_size, h->desc_offset,
                    VMDK_MAX_DESCRIPTOR_SECTORS);
    }
    size_t len = (size_t)h->desc_size * VMDK_SECTOR;
    g_autofree char *desc = g_malloc(len + 1);
    if (!read_in_file(s, h->desc_offset * VMDK_SECTOR, desc, len, "descriptor", errp)) {
        return false;
    }
    desc[len] = '\0';
    return check_descriptor_text(s, desc, errp);
}

/* ---- Grain directory ---- */

static bool load_directory(VmdkState *s, const VmdkHeader *h, GError **errp)
{
    size_t len = (size_t)s->gd_entries * sizeof(uint32_t);

    if (h->gd_offset == 0 || h->gd_offset > s->file_size / VMDK_SECTOR) {
        return verr(s, errp, "grain directory at sector %" PRIu64 " (past the end of the "
                    "file, or on the header)", h->gd_offset);
    }
    s->gd = g_malloc(len);
    if (!read_in_file(s, h->gd_offset * VMDK_SECTOR, s->gd, len, "grain directory", errp)) {
        g_clear_pointer(&s->gd, g_free);
        return false;
    }
    for (uint32_t i = 0; i < s->gd_entries; i++) {
        s->gd[i] = GUINT32_FROM_LE(s->gd[i]);
    }
    return true;
}

int vmdk_read_header(VmdkState *s, GError **errp)
{
    VmdkHeader h;

    if (!read_in_file(s, 0, &h, sizeof(h), "header", errp)) {
        return -EINVAL;
    }
    header_to_host(&h);
    bool ok = check_format(s, &h, errp) &&
              (h.gd_offset != VMDK_GD_AT_END ||
               (read_footer(s, &h, errp) && check_format(s, &h, errp))) &&
              check_geometry(s, &h, errp) && check_descriptor(s, &h, errp) &&
              load_directory(s, &h, errp);
    return ok ? 0 : -EINVAL;
}
