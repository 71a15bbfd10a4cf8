/* qcow2 metadata map: loading the L1 table and the refcount table with a
 * check of every entry (inside the image, aligned, clear of the header and
 * of each other), the set of metadata clusters every data write is checked
 * against, and what happens when an inconsistency shows up later. */
#include <errno.h>
#include <gio/gio.h>
#include <inttypes.h>
#include <stdarg.h>

#include "qcow2.h"

/* At most this many corruption messages per image reach the log. */
#define MAX_CORRUPTION_REPORTS 8

static gpointer key(uint64_t offset)
{
    return GSIZE_TO_POINTER((gsize)offset);
}

static bool ranges_overlap(uint64_t a, uint64_t alen, uint64_t b, uint64_t blen)
{
    return alen && blen && a < b + blen && b < a + alen;
}

/* The fixed metadata region [off, off+len) touches, or NULL. */
static const char *fixed_overlap(Qcow2State *s, uint64_t off, uint64_t len)
{
    const Qcow2Header *h = &s->h;

    if (ranges_overlap(off, len, 0, s->cluster_size)) {
        return "the header";
    }
    if (ranges_overlap(off, len, h->l1_table_offset, (uint64_t)h->l1_size * 8)) {
        return "the L1 table";
    }
    if (ranges_overlap(off, len, h->refcount_table_offset, s->reftable_size * 8)) {
        return "the refcount table";
    }
    if (h->nb_snapshots && ranges_overlap(off, len, h->snapshots_offset, s->cluster_size)) {
        return "the snapshot table";
    }
    return NULL;
}

bool qcow2_overlaps_metadata(Qcow2State *s, uint64_t off, uint64_t len)
{
    if (fixed_overlap(s, off, len)) {
        return true;
    }
    uint64_t mask = s->cluster_size - 1;
    for (uint64_t c = off & ~mask; c < off + len; c += s->cluster_size) {
        if (g_hash_table_contains(s->meta, key(c))) {
            return true;
        }
    }
    return false;
}

int qcow2_signal_corruption(Qcow2State *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *what = g_strdup_vprintf(fmt, ap);
    va_end(ap);

    if (s->corrupt_reports++ < MAX_CORRUPTION_REPORTS) {
        g_warning("qcow2 image '%s' is corrupt: %s%s", s->bs->filename, what,
                  s->read_only ? "" : "; it takes no more writes (qemu-img check -r all "
                  "may repair it)");
    }
    if (!s->corrupt && !s->read_only && s->h.version >= 3) {
        s->h.incompatible_features |= QCOW2_INCOMPAT_CORRUPT;
        qcow2_write_features(s);
    }
    s->corrupt = true;
    return -EIO;
}

/* ---- Loading ---- */

static int read_table(Qcow2State *s, uint64_t off, uint64_t n, uint64_t **out,
                      const char *what, GError **errp)
{
    uint64_t *t = g_malloc0(MAX(n, 1) * 8);
    int ret = n ? bdrv_pread(s->file, off, t, n * 8) : 0;

    if (ret < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-ret),
                    "'%s': cannot read the %s: %s", s->bs->filename, what, g_strerror(-ret));
        g_free(t);
        return ret;
    }
    for (uint64_t i = 0; i < n; i++) {
        t[i] = GUINT64_FROM_BE(t[i]);
    }
    *out = t;
    return 0;
}

/* A table entry pointing at a one-cluster table at OFF: WHAT names the
 * entry in the message. */
static bool check_table_pointer(Qcow2State *s, uint64_t off, const char *what, GError **errp)
{
    const char *region = fixed_overlap(s, off, s->cluster_size);

    if (off % s->cluster_size) {
        region = "a misaligned offset";
    } else if (off >= s->file_end) {
        region = "past the end of the image";
    } else if (!region && g_hash_table_contains(s->meta, key(off))) {
        region = "a table another entry already points to";
    }
    if (region) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "'%s': %s points to %s (%#" PRIx64 ")", s->bs->filename, what, region, off);
        return false;
    }
    g_hash_table_add(s->meta, key(off));
    return true;
}

/* Every nonzero entry of TABLE (N entries, WHAT names it) points at a
 * table of its own inside the image, with no RESERVED bits set. */
static bool check_pointers(Qcow2State *s, const uint64_t *table, uint64_t n, uint64_t reserved,
                           uint64_t mask, const char *what, GError **errp)
{
    for (uint64_t i = 0; i < n; i++) {
        char entry[64];
        g_snprintf(entry, sizeof(entry), "%s %" PRIu64, what, i);
        if (table[i] & reserved) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                        "'%s': %s has reserved bits set (%#" PRIx64 ")", s->bs->filename,
                        entry, table[i]);
            return false;
        }
        if ((table[i] & mask) && !check_table_pointer(s, table[i] & mask, entry, errp)) {
            return false;
        }
    }
    return true;
}

int qcow2_load_tables(Qcow2State *s, GError **errp)
{
    uint64_t file_size = (uint64_t)bdrv_getlength(s->file);
    uint64_t mask = s->cluster_size - 1;

    s->file_end = (file_size + mask) & ~mask;
    s->fresh_from = s->file_end;
    s->meta = g_hash_table_new(g_direct_hash, g_direct_equal);
    s->reftable_size = (uint64_t)s->h.refcount_table_clusters * s->cluster_size / 8;
    if (read_table(s, s->h.l1_table_offset, s->h.l1_size, &s->l1, "L1 table", errp) < 0 ||
        read_table(s, s->h.refcount_table_offset, s->reftable_size, &s->reftable,
                   "refcount table", errp) < 0) {
        return -EIO;
    }
    return check_pointers(s, s->l1, s->h.l1_size, QCOW2_L1E_RESERVED, QCOW2_OFFSET_MASK,
                          "L1 entry", errp) &&
           check_pointers(s, s->reftable, s->reftable_size, QCOW2_REFT_RESERVED,
                          QCOW2_REFT_OFFSET_MASK, "refcount table entry", errp) ? 0 : -EINVAL;
}
