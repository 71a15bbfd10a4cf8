/* qcow2 image creation (create=on): a version 3 image with 16-bit
 * refcounts, laid out as header cluster, refcount table, refcount blocks,
 * L1 table, and nothing else; the backing image (when named) is opened
 * once to learn its size and, if not given, its format.  The file itself
 * comes from bdrv_create_file (block/create.c), which never replaces an
 * image unless overwrite=on says so. */
#include <errno.h>
#include <gio/gio.h>
#include <inttypes.h>
#include <unistd.h>

#include "qcow2.h"

#define ROUND_UP8(x) (((x) + 7) & ~(uint64_t)7)

typedef struct Layout {
    uint64_t cs;
    uint32_t cluster_bits;
    uint64_t size;
    uint32_t l1_size;
    uint64_t rt_clusters, rb_clusters, l1_clusters;
    const char *backing, *backing_format;
} Layout;

/* Feature name table entries: (type, bit, name). */
static const struct { uint8_t type, bit; const char *name; } features[] = {
    { 0, 0, "dirty bit" }, { 0, 1, "corrupt bit" }, { 0, 2, "external data file" },
    { 0, 3, "compression type" }, { 0, 4, "extended L2 entries" },
    { 1, 0, "lazy refcounts" }, { 2, 0, "bitmaps" }, { 2, 1, "raw external data" },
};

#define FAIL(code, ...) do { \
        g_set_error(errp, G_IO_ERROR, code, __VA_ARGS__); \
        return false; \
    } while (0)

static bool plan_layout(Layout *l, const char *name, GError **errp)
{
    uint64_t l2_span = l->cs * (l->cs / 8);
    uint64_t l1 = (l->size + l2_span - 1) / l2_span;
    uint64_t per_rb = l->cs / 2;                  /* 16-bit refcounts */

    if (l1 * 8 > QCOW2_MAX_L1_BYTES) {
        FAIL(G_IO_ERROR_INVALID_ARGUMENT, "Drive '%s': size=%" PRIu64 " is too large for "
             "cluster-size=%" PRIu64, name, l->size, l->cs);
    }
    l->l1_size = (uint32_t)l1;
    l->l1_clusters = (l1 * 8 + l->cs - 1) / l->cs;
    l->rt_clusters = l->rb_clusters = 1;
    for (;;) {
        uint64_t total = 1 + l->rt_clusters + l->rb_clusters + l->l1_clusters;
        uint64_t rb = (total + per_rb - 1) / per_rb;
        uint64_t rt = (rb * 8 + l->cs - 1) / l->cs;
        if (rb == l->rb_clusters && rt == l->rt_clusters) {
            return true;
        }
        l->rb_clusters = rb;
        l->rt_clusters = rt;
    }
}

/* ---- Header cluster ---- */

static void put_header(const Layout *l, uint8_t *c0, uint64_t backing_off)
{
    Qcow2Header h = {
        .magic = GUINT32_TO_BE(QCOW2_MAGIC),
        .version = GUINT32_TO_BE(3),
        .backing_file_offset = GUINT64_TO_BE(l->backing ? backing_off : 0),
        .backing_file_size = GUINT32_TO_BE(l->backing ? (uint32_t)strlen(l->backing) : 0),
        .cluster_bits = GUINT32_TO_BE(l->cluster_bits),
        .size = GUINT64_TO_BE(l->size),
        .l1_size = GUINT32_TO_BE(l->l1_size),
        .l1_table_offset = GUINT64_TO_BE((1 + l->rt_clusters + l->rb_clusters) * l->cs),
        .refcount_table_offset = GUINT64_TO_BE(l->cs),
        .refcount_table_clusters = GUINT32_TO_BE((uint32_t)l->rt_clusters),
        .refcount_order = GUINT32_TO_BE(4),
        .header_length = GUINT32_TO_BE(QCOW2_CREATE_HEADER_LEN),
    };
    memcpy(c0, &h, sizeof(h));
}

static uint64_t put_extension(uint8_t *c0, uint64_t pos, uint32_t type, const void *data,
                              uint32_t len)
{
    uint32_t be[2] = { GUINT32_TO_BE(type), GUINT32_TO_BE(len) };
    memcpy(c0 + pos, be, 8);
    memcpy(c0 + pos + 8, data, len);
    return pos + 8 + ROUND_UP8((uint64_t)len);
}

static uint32_t feature_table(uint8_t *out)
{
    uint8_t *p = out;
    memset(out, 0, G_N_ELEMENTS(features) * (2 + QCOW2_FEATURE_NAME_LEN));
    for (size_t i = 0; i < G_N_ELEMENTS(features); i++, p += 2 + QCOW2_FEATURE_NAME_LEN) {
        p[0] = features[i].type;
        p[1] = features[i].bit;
        memcpy(p + 2, features[i].name, strlen(features[i].name));
    }
    return (uint32_t)(p - out);
}

/* The header cluster: header, backing format, feature names (when they
 * fit), end marker, backing file name. */
static bool build_cluster0(const Layout *l, uint8_t *c0, const char *name, GError **errp)
{
    uint8_t table[G_N_ELEMENTS(features) * (2 + QCOW2_FEATURE_NAME_LEN)];
    uint32_t table_len = feature_table(table);
    uint64_t blen = l->backing ? strlen(l->backing) : 0;
    uint64_t pos = QCOW2_CREATE_HEADER_LEN;

    if (l->backing) {
        pos = put_extension(c0, pos, QCOW2_EXT_BACKING_FORMAT, l->backing_format,
                            (uint32_t)strlen(l->backing_format));
    }
    if (pos + 8 + table_len + 8 + blen <= l->cs) {
        pos = put_extension(c0, pos, QCOW2_EXT_FEATURE_TABLE, table, table_len);
    }
    pos += 8;                                      /* end marker: zeroes */
    if (pos + blen > l->cs) {
        FAIL(G_IO_ERROR_INVALID_ARGUMENT, "Drive '%s': the backing file name does not fit "
             "in a %" PRIu64 "-byte cluster", name, l->cs);
    }
    memcpy(c0 + pos, l->backing ? l->backing : "", blen);
    put_header(l, c0, pos);
    return true;
}

/* ---- Refcount structures ---- */

/* The refcount table and blocks: every cluster of the layout counted once. */
static void build_refcounts(const Layout *l, uint8_t *rt, uint8_t *rb)
{
    uint64_t total = 1 + l->rt_clusters + l->rb_clusters + l->l1_clusters;
    uint16_t one = GUINT16_TO_BE(1);

    for (uint64_t j = 0; j < l->rb_clusters; j++) {
        uint64_t be = GUINT64_TO_BE((1 + l->rt_clusters + j) * l->cs);
        memcpy(rt + j * 8, &be, 8);
    }
    for (uint64_t c = 0; c < total; c++) {
        memcpy(rb + c * 2, &one, 2);
    }
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return n < 0 ? -errno : -EIO;
        }
        p += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

static int write_image(int fd, const Layout *l, const uint8_t *c0)
{
    uint64_t rt_bytes = l->rt_clusters * l->cs, rb_bytes = l->rb_clusters * l->cs;
    uint64_t total = (1 + l->rt_clusters + l->rb_clusters + l->l1_clusters) * l->cs;
    uint8_t *rt = g_malloc0(rt_bytes), *rb = g_malloc0(rb_bytes);
    int ret;

    build_refcounts(l, rt, rb);
    ret = ftruncate(fd, (off_t)total) < 0 ? -errno : 0;
    ret = ret < 0 ? ret : pwrite_all(fd, c0, l->cs, 0);
    ret = ret < 0 ? ret : pwrite_all(fd, rt, rt_bytes, l->cs);
    ret = ret < 0 ? ret : pwrite_all(fd, rb, rb_bytes, l->cs + rt_bytes);
    ret = ret < 0 ? ret : (fsync(fd) < 0 ? -errno : 0);
    g_free(rt);
    g_free(rb);
    return ret;
}

/* ---- Options ---- */

static bool check_options(const BlockOptions *opts, Layout *l, const char *name, GError **errp)
{
    uint32_t cs = opts->cluster_size ? opts->cluster_size : 1u << QCOW2_DEFAULT_CLUSTER_BITS;

    if (opts->read_only) {
        FAIL(G_IO_ERROR_INVALID_ARGUMENT,
             "Drive '%s': create=on cannot be combined with read-only=on", name);
    }
    if (cs & (cs - 1) || cs < (1u << QCOW2_MIN_CLUSTER_BITS) ||
        cs > (1u << QCOW2_MAX_CLUSTER_BITS)) {
        FAIL(G_IO_ERROR_INVALID_ARGUMENT, "Drive '%s': cluster-size=%u must be a power of "
             "two from 512 to 2M", name, cs);
    }
    if (opts->backing && strlen(opts->backing) > QCOW2_MAX_BACKING_NAME) {
        FAIL(G_IO_ERROR_INVALID_ARGUMENT, "Drive '%s': the backing file name is longer "
             "than %d bytes", name, QCOW2_MAX_BACKING_NAME);
    }
    l->cs = cs;
    l->cluster_bits = (uint32_t)__builtin_ctz(cs);
    l->size = opts->size;
    l->backing = opts->backing;
    return true;
}

/* Opens the backing image once: it must exist; it gives the size when
 * size= is missing, and its format when backing-format= is. */
static bool inspect_backing(const BlockOptions *opts, Layout *l, char **format, GError **errp)
{
    char *path = bdrv_backing_path(opts->filename, opts->backing);
    BlockOptions bo = { .filename = path, .read_only = true,
                        .format = opts->backing_format ? opts->backing_format : "auto" };
    BlockDriverState *b = bdrv_open_node(&bo, NULL, errp);

    g_free(path);
    if (!b) {
        return false;
    }
    *format = g_strdup(bdrv_get_format(b));
    l->size = l->size ? l->size : (uint64_t)bdrv_getlength(b);
    bdrv_close_node(b);
    l->backing_format = *format;
    return true;
}

int qcow2_create(const BlockOptions *opts, BdrvCreatedFile *made, GError **errp)
{
    const char *name = opts->id ? opts->id : opts->filename;
    g_autofree char *format = NULL;
    Layout l = { 0 };

    if (!check_options(opts, &l, name, errp) ||
        (opts->backing && !inspect_backing(opts, &l, &format, errp))) {
        return -EINVAL;
    }
    if (l.size == 0) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Drive '%s': create=on needs size= (or backing=)", name);
        return -EINVAL;
    }
    g_autofree uint8_t *c0 = g_malloc0(l.cs);
    if (!plan_layout(&l, name, errp) || !build_cluster0(&l, c0, name, errp)) {
        return -EINVAL;
    }
    int fd = bdrv_create_file(opts, made, errp);
    if (fd < 0) {
        return -EEXIST;
    }
    int ret = write_image(fd, &l, c0);
    if (ret < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-ret), "Cannot create '%s': %s",
                    opts->filename, g_strerror(-ret));
        (void)!ftruncate(fd, 0);
    }
    close(fd);
    return ret;
}
