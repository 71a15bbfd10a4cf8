/* qcow2 header: probing, reading and checking the fixed header and its
 * extensions (backing format, feature name table) field by field, and
 * rewriting the few header fields blkmig ever changes.  Every field that
 * does not make sense fails the open with a message naming it. */
#include <errno.h>
#include <gio/gio.h>
#include <inttypes.h>

#include "qcow2.h"

#define ROUND_UP8(x) (((x) + 7) & ~(uint64_t)7)

int qcow2_probe(const uint8_t *buf, size_t len)
{
    Qcow2Header h;

    if (len < 8) {
        return 0;
    }
    memcpy(&h, buf, 8);
    uint32_t version = GUINT32_FROM_BE(h.version);
    return GUINT32_FROM_BE(h.magic) == QCOW2_MAGIC && (version == 2 || version == 3) ? 100 : 0;
}

/* The on-disk header H in host order, in place.  Version 2 lacks the
 * fields from incompatible_features on: they read as zero, with 16-bit
 * refcounts and a 72-byte header. */
static void header_to_host(Qcow2Header *h)
{
    h->magic = GUINT32_FROM_BE(h->magic);
    h->version = GUINT32_FROM_BE(h->version);
    h->backing_file_offset = GUINT64_FROM_BE(h->backing_file_offset);
    h->backing_file_size = GUINT32_FROM_BE(h->backing_file_size);
    h->cluster_bits = GUINT32_FROM_BE(h->cluster_bits);
    h->size = GUINT64_FROM_BE(h->size);
    h->crypt_method = GUINT32_FROM_BE(h->crypt_method);
    h->l1_size = GUINT32_FROM_BE(h->l1_size);
    h->l1_table_offset = GUINT64_FROM_BE(h->l1_table_offset);
    h->refcount_table_offset = GUINT64_FROM_BE(h->refcount_table_offset);
    h->refcount_table_clusters = GUINT32_FROM_BE(h->refcount_table_clusters);
    h->nb_snapshots = GUINT32_FROM_BE(h->nb_snapshots);
    h->snapshots_offset = GUINT64_FROM_BE(h->snapshots_offset);
    if (h->version < 3) {
        memset(&h->incompatible_features, 0, sizeof(*h) - QCOW2_V2_HEADER_LEN);
        h->refcount_order = 4;
        h->header_length = QCOW2_V2_HEADER_LEN;
        return;
    }
    h->incompatible_features = GUINT64_FROM_BE(h->incompatible_features);
    h->compatible_features = GUINT64_FROM_BE(h->compatible_features);
    h->autoclear_features = GUINT64_FROM_BE(h->autoclear_features);
    h->refcount_order = GUINT32_FROM_BE(h->refcount_order);
    h->header_length = GUINT32_FROM_BE(h->header_length);
    if (h->header_length <= QCOW2_V3_HEADER_LEN) {
        h->compression_type = 0;
    }
}

/* ---- Feature names ---- */

static const char *builtin_feature_name(unsigned bit)
{
    static const char *names[] = {
        "dirty bit", "corrupt bit", "external data file", "compression type",
        "extended L2 entries",
    };
    return bit < G_N_ELEMENTS(names) ? names[bit] : NULL;
}

char *qcow2_feature_list(Qcow2State *s, uint64_t bits)
{
    GString *out = g_string_new(NULL);

    for (unsigned bit = 0; bit < 64; bit++) {
        if (!(bits & (1ULL << bit))) {
            continue;
        }
        char k[16];
        g_snprintf(k, sizeof(k), "0:%u", bit);
        const char *name = s->feature_names ? g_hash_table_lookup(s->feature_names, k) : NULL;
        name = name ? name : builtin_feature_name(bit);
        g_string_append_printf(out, "%s", out->len ? ", " : "");
        if (name) {
            g_string_append(out, name);
        } else {
            g_string_append_printf(out, "unknown incompatible feature bit %u", bit);
        }
    }
    return g_string_free(out, FALSE);
}

static void parse_feature_table(Qcow2State *s, const uint8_t *p, uint32_t len)
{
    for (uint32_t i = 0; i + 2 + QCOW2_FEATURE_NAME_LEN <= len; i += 2 + QCOW2_FEATURE_NAME_LEN) {
        char *name = g_strndup((const char *)p + i + 2, QCOW2_FEATURE_NAME_LEN);
        g_hash_table_insert(s->feature_names, g_strdup_printf("%u:%u", p[i], p[i + 1]),
                            g_utf8_make_valid(name, -1));
        g_free(name);
    }
}

/* ---- Field checks ---- */

#define FAIL(...) do { \
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, __VA_ARGS__); \
        return false; \
    } while (0)

static bool check_basics(const Qcow2Header *h, const char *name, GError **errp)
{
    if (h->version != 2 && h->version != 3) {
        FAIL("'%s': qcow2 version %u is not supported (2 and 3 are)", name, h->version);
    }
    if (h->cluster_bits < QCOW2_MIN_CLUSTER_BITS || h->cluster_bits > QCOW2_MAX_CLUSTER_BITS) {
        FAIL("'%s': cluster_bits %u is out of range (%d..%d)", name, h->cluster_bits,
             QCOW2_MIN_CLUSTER_BITS, QCOW2_MAX_CLUSTER_BITS);
    }
    if (h->version >= 3 && (h->header_length < QCOW2_V3_HEADER_LEN || h->header_length % 8 ||
                            h->header_length > (1u << h->cluster_bits))) {
        FAIL("'%s': header_length %u is invalid", name, h->header_length);
    }
    if (h->refcount_order > 6) {
        FAIL("'%s': refcount_order %u is out of range (0..6)", name, h->refcount_order);
    }
    if (h->crypt_method != 0) {
        FAIL("'%s': encrypted images (crypt_method %u) are not supported", name, h->crypt_method);
    }
    if (h->size > (uint64_t)INT64_MAX) {
        FAIL("'%s': size %" PRIu64 " is too large", name, h->size);
    }
    return true;
}

static bool check_features(Qcow2State *s, const char *name, GError **errp)
{
    const Qcow2Header *h = &s->h;
    uint64_t unknown = h->incompatible_features & ~QCOW2_INCOMPAT_KNOWN;

    if (unknown) {
        g_autofree char *list = qcow2_feature_list(s, unknown);
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "'%s' uses qcow2 features blkmig does not support: %s", name, list);
        return false;
    }
    bool typed = h->incompatible_features & QCOW2_INCOMPAT_COMPRESSION;
    if (typed != (h->compression_type != QCOW2_COMPRESSION_ZLIB)) {
        FAIL("'%s': compression_type %u does not match the compression type feature bit",
             name, h->compression_type);
    }
    if (h->compression_type > QCOW2_COMPRESSION_ZSTD) {
        FAIL("'%s': compression_type %u is not supported (0 zlib, 1 zstd)", name,
             h->compression_type);
    }
    return true;
}

/* [off, off+len) inside the file and clear of the header cluster. */
static bool region_ok(Qcow2State *s, uint64_t off, uint64_t len, uint64_t file_size)
{
    return off >= s->cluster_size && off % s->cluster_size == 0 &&
           len <= file_size && off <= file_size - len;
}

static bool check_tables(Qcow2State *s, const char *name, uint64_t file_size, GError **errp)
{
    const Qcow2Header *h = &s->h;
    uint64_t cs = s->cluster_size;
    uint64_t l2_span = cs << s->l2_bits;
    uint64_t l1_needed = (h->size + l2_span - 1) / l2_span;
    uint64_t rt_bytes = (uint64_t)h->refcount_table_clusters * cs;

    if ((uint64_t)h->l1_size * 8 > QCOW2_MAX_L1_BYTES) {
        FAIL("'%s': l1_size %u is too large", name, h->l1_size);
    }
    if (h->l1_size < l1_needed) {
        FAIL("'%s': l1_size %u is too small for a virtual size of %" PRIu64, name,
             h->l1_size, h->size);
    }
    if (h->l1_size && !region_ok(s, h->l1_table_offset, (uint64_t)h->l1_size * 8, file_size)) {
        FAIL("'%s': l1_table_offset %#" PRIx64 " is misaligned, in the header or past the "
             "end of the image", name, h->l1_table_offset);
    }
    if (h->refcount_table_clusters == 0 || rt_bytes > QCOW2_MAX_REFTABLE_BYTES) {
        FAIL("'%s': refcount_table_clusters %u is out of range", name,
             h->refcount_table_clusters);
    }
    if (!region_ok(s, h->refcount_table_offset, rt_bytes, file_size)) {
        FAIL("'%s': refcount_table_offset %#" PRIx64 " is misaligned, in the header or past "
             "the end of the image", name, h->refcount_table_offset);
    }
    if (h->refcount_table_offset < h->l1_table_offset + (uint64_t)h->l1_size * 8 &&
        h->l1_table_offset < h->refcount_table_offset + rt_bytes) {
        FAIL("'%s': the L1 table and the refcount table overlap", name);
    }
    return true;
}

static bool check_snapshots_backing(Qcow2State *s, const char *name, uint64_t file_size,
                                    GError **errp)
{
    const Qcow2Header *h = &s->h;

    if (h->nb_snapshots > QCOW2_MAX_SNAPSHOTS) {
        FAIL("'%s': nb_snapshots %u is too large", name, h->nb_snapshots);
    }
    if (h->nb_snapshots && !region_ok(s, h->snapshots_offset, 1, file_size)) {
        FAIL("'%s': snapshots_offset %#" PRIx64 " is invalid", name, h->snapshots_offset);
    }
    if (h->backing_file_offset == 0) {
        return true;
    }
    if (h->backing_file_size > QCOW2_MAX_BACKING_NAME || h->backing_file_size == 0) {
        FAIL("'%s': backing_file_size %u is out of range (1..%d)", name,
             h->backing_file_size, QCOW2_MAX_BACKING_NAME);
    }
    if (h->backing_file_offset < h->header_length ||
        h->backing_file_offset + h->backing_file_size > MIN(s->cluster_size, file_size)) {
        FAIL("'%s': backing_file_offset %#" PRIx64 " is outside the first cluster", name,
             h->backing_file_offset);
    }
    return true;
}

/* ---- Extensions ---- */

static bool parse_extension(Qcow2State *s, uint32_t type, const uint8_t *data, uint32_t len,
                            void *opaque, GError **errp)
{
    const char *name = s->bs->filename;

    if (type == QCOW2_EXT_BACKING_FORMAT) {
        if (len == 0 || len > 15) {
            FAIL("'%s': the backing format extension has length %u (1..15)", name, len);
        }
        g_free(s->backing_format);
        s->backing_format = g_strndup((const char *)data, len);
    } else if (type == QCOW2_EXT_FEATURE_TABLE) {
        parse_feature_table(s, data, len);
    }
    return true;       /* others (bitmaps, ...) are safe to ignore */
}

bool qcow2_walk_extensions(Qcow2State *s, const uint8_t *c0, uint64_t c0_len,
                           Qcow2ExtensionVisit visit, void *opaque, GError **errp)
{
    const char *name = s->bs->filename;
    uint64_t end = c0_len;
    uint64_t pos = s->h.header_length;

    if (s->h.backing_file_offset > pos) {
        end = MIN(end, s->h.backing_file_offset);
    }
    while (pos + 8 <= end) {
        uint32_t type, len;
        memcpy(&type, c0 + pos, 4);
        memcpy(&len, c0 + pos + 4, 4);
        type = GUINT32_FROM_BE(type);
        len = GUINT32_FROM_BE(len);
        if (type == QCOW2_EXT_END) {
            return true;
        }
        if (len > end - pos - 8) {
            FAIL("'%s': header extension %#x (length %u) runs past the header area",
                 name, type, len);
        }
        if (!visit(s, type, c0 + pos + 8, len, opaque, errp)) {
            return false;
        }
        pos += 8 + ROUND_UP8((uint64_t)len);
    }
    return true;
}

/* ---- Reading ---- */

static int read_cluster0(Qcow2State *s, uint8_t **buf, uint64_t *len, GError **errp)
{
    uint64_t file_size = (uint64_t)bdrv_getlength(s->file);
    *len = MIN(s->cluster_size, file_size);
    *buf = g_malloc0(s->cluster_size);
    int ret = bdrv_pread(s->file, 0, *buf, *len);
    if (ret < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-ret), "Cannot read '%s': %s",
                    s->bs->filename, g_strerror(-ret));
        g_clear_pointer(buf, g_free);
    }
    return ret;
}

static int read_fixed(Qcow2State *s, GError **errp)
{
    Qcow2Header *h = &s->h;
    uint64_t file_size = (uint64_t)bdrv_getlength(s->file);
    size_t n = (size_t)MIN((uint64_t)sizeof(*h), file_size);
    int ret = n >= QCOW2_V2_HEADER_LEN ? bdrv_pread(s->file, 0, h, n) : -EINVAL;

    if (ret < 0 || GUINT32_FROM_BE(h->magic) != QCOW2_MAGIC) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "'%s' is not a qcow2 image%s", s->bs->filename,
                    ret < 0 ? " (too short or unreadable)" : " (bad magic)");
        return -EINVAL;
    }
    header_to_host(h);
    if (h->version >= 3 && n < QCOW2_V3_HEADER_LEN) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "'%s': truncated version 3 header", s->bs->filename);
        return -EINVAL;
    }
    return 0;
}

static void derive_geometry(Qcow2State *s)
{
    s->cluster_bits = s->h.cluster_bits;
    s->cluster_size = 1ULL << s->cluster_bits;
    s->l2_bits = s->cluster_bits - 3;
    s->refcount_bits = 1u << s->h.refcount_order;
    s->rb_bits = s->cluster_bits + 3 - s->h.refcount_order;
    s->refcount_max = s->refcount_bits == 64 ? UINT64_MAX : (1ULL << s->refcount_bits) - 1;
}

/* The checks that need the geometry and the feature name table. */
static bool check_header(Qcow2State *s, uint64_t file_size, GError **errp)
{
    const char *name = s->bs->filename;

    return check_features(s, name, errp) && check_tables(s, name, file_size, errp) &&
           check_snapshots_backing(s, name, file_size, errp);
}

int qcow2_read_header(Qcow2State *s, GError **errp)
{
    uint64_t file_size = (uint64_t)bdrv_getlength(s->file);
    uint8_t *c0 = NULL;
    uint64_t c0_len;

    s->feature_names = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    if (read_fixed(s, errp) < 0 || !check_basics(&s->h, s->bs->filename, errp)) {
        return -EINVAL;
    }
    derive_geometry(s);
    if (read_cluster0(s, &c0, &c0_len, errp) < 0) {
        return -EIO;
    }
    bool ok = qcow2_walk_extensions(s, c0, c0_len, parse_extension, NULL, errp) &&
              check_header(s, file_size, errp);
    if (ok && s->h.backing_file_offset) {
        s->backing_file = g_strndup((const char *)c0 + s->h.backing_file_offset,
                                    s->h.backing_file_size);
    }
    g_free(c0);
    return ok ? 0 : -EINVAL;
}

/* ---- Writing ---- */

int qcow2_write_features(Qcow2State *s)
{
    uint64_t words[3] = {
        GUINT64_TO_BE(s->h.incompatible_features),
        GUINT64_TO_BE(s->h.compatible_features),
        GUINT64_TO_BE(s->h.autoclear_features),
    };
    if (s->h.version < 3) {
        return 0;
    }
    int ret = bdrv_pwrite(s->file, offsetof(Qcow2Header, incompatible_features),
                          words, sizeof(words), 0);
    return ret < 0 ? ret : qcow2_sync(s);
}

int qcow2_write_reftable_location(Qcow2State *s)
{
    struct __attribute__((packed)) {
        uint64_t offset;
        uint32_t clusters;
    } loc = {
        GUINT64_TO_BE(s->h.refcount_table_offset),
        GUINT32_TO_BE(s->h.refcount_table_clusters),
    };
    return bdrv_pwrite(s->file, offsetof(Qcow2Header, refcount_table_offset),
                       &loc, sizeof(loc), 0);
}
