/* The qcow2 format driver (QEMU's docs/interop/qcow2.txt, versions 2 and
 * 3): opening an image (header, tables, caches, backing chain, what the
 * feature bits allow), closing it with all metadata written, and the
 * BlockDriver table.  The request paths live in qcow2-read.c,
 * qcow2-write.c and qcow2-zero.c; qcow2.h says how they share the state. */
#include <errno.h>
#include <gio/gio.h>
#include <inttypes.h>

#include "qcow2.h"

#define L2_CACHE_BYTES (32u << 20)       /* QEMU's default maximum */
#define RB_CACHE_BYTES (4u << 20)

static void free_state(Qcow2State *s)
{
    qcow2_cache_free(s->l2_cache);
    qcow2_cache_free(s->rb_cache);
    g_clear_pointer(&s->meta, g_hash_table_destroy);
    g_clear_pointer(&s->feature_names, g_hash_table_destroy);
    g_clear_pointer(&s->allocs, g_ptr_array_unref);
    g_clear_pointer(&s->frees, g_array_unref);
    g_free(s->l1);
    g_free(s->reftable);
    g_free(s->backing_file);
    g_free(s->backing_format);
    g_mutex_clear(&s->lock);
    g_cond_clear(&s->cond);
}

/* The feature bits decide how the image may be opened. */
static bool check_writable(Qcow2State *s, BlockDriverState *bs, GError **errp)
{
    uint64_t f = s->h.incompatible_features;

    if (!s->read_only && (f & QCOW2_INCOMPAT_CORRUPT)) {
        g_warning("qcow2 image '%s' is marked corrupt: opening it read-only (qemu-img "
                  "check -r all may repair it)", bs->filename);
        s->read_only = bs->opts.read_only = true;
    }
    if (!s->read_only && (f & QCOW2_INCOMPAT_DIRTY)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "qcow2 image '%s' is dirty (its refcounts may be stale after a crash "
                    "with lazy refcounts): run 'qemu-img check -r all' on it, or open it "
                    "read-only", bs->filename);
        return false;
    }
    return true;
}

static void make_caches(Qcow2State *s)
{
    uint64_t l2_tables = MIN((uint64_t)s->h.l1_size, L2_CACHE_BYTES / s->cluster_size);
    uint64_t rb_tables = MIN(s->reftable_size, RB_CACHE_BYTES / s->cluster_size);

    s->l2_cache = qcow2_cache_new(s, (unsigned)l2_tables, true);
    s->rb_cache = qcow2_cache_new(s, (unsigned)rb_tables, false);
}

static bool open_backing(Qcow2State *s, BlockDriverState *bs, const BlockOptions *opts,
                         GError **errp)
{
    if (opts->backing) {
        g_free(s->backing_file);
        s->backing_file = g_strdup(opts->backing);
    }
    if (opts->backing_format) {
        g_free(s->backing_format);
        s->backing_format = g_strdup(opts->backing_format);
    }
    return !s->backing_file || bdrv_open_backing(bs, s->backing_file, s->backing_format, errp);
}

/* An image opened for writing loses the autoclear bits blkmig does not
 * maintain (bitmaps, raw external data), as the format asks. */
static int clear_autoclear(Qcow2State *s)
{
    if (s->read_only || !s->h.autoclear_features) {
        return 0;
    }
    s->h.autoclear_features = 0;
    return qcow2_write_features(s);
}

static bool check_size(Qcow2State *s, const BlockOptions *opts, GError **errp)
{
    if (opts->size && opts->size != s->h.size) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Drive '%s': '%s' has a virtual size of %" PRIu64 " bytes, but size=%"
                    PRIu64 " was given", opts->id ? opts->id : opts->filename,
                    opts->filename, s->h.size, opts->size);
        return false;
    }
    return true;
}

static int qcow2_open(BlockDriverState *bs, const BlockOptions *opts, GError **errp)
{
    Qcow2State *s = bdrv_opaque(bs);

    s->bs = bs;
    s->file = bs->file;
    s->read_only = opts->read_only;
    g_mutex_init(&s->lock);
    g_cond_init(&s->cond);
    s->allocs = g_ptr_array_new();
    s->frees = g_array_new(FALSE, FALSE, sizeof(Qcow2Free));
    if (qcow2_read_header(s, errp) < 0 || qcow2_load_tables(s, errp) < 0 ||
        !check_writable(s, bs, errp) || !check_size(s, opts, errp)) {
        free_state(s);
        return -EINVAL;
    }
    make_caches(s);
    int ret = clear_autoclear(s);
    if (ret < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-ret), "Cannot update '%s': %s",
                    bs->filename, g_strerror(-ret));
    }
    if (ret < 0 || !open_backing(s, bs, opts, errp)) {
        free_state(s);
        return -EINVAL;
    }
    return 0;
}

/* Two rounds: the first writes the L2 changes and syncs, which releases the
 * clusters they dropped; the second writes those refcounts. */
static void qcow2_close(BlockDriverState *bs)
{
    Qcow2State *s = bdrv_opaque(bs);

    if (!s->read_only) {
        g_mutex_lock(&s->lock);
        int ret = qcow2_metadata_flush(s, true);
        ret = ret < 0 ? ret : qcow2_metadata_flush(s, true);
        g_mutex_unlock(&s->lock);
        if (ret < 0) {
            g_warning("qcow2 image '%s': metadata not written at close: %s (clusters may "
                      "leak)", bs->filename, g_strerror(-ret));
        }
    }
    free_state(s);
}

static int64_t qcow2_getlength(BlockDriverState *bs)
{
    Qcow2State *s = bdrv_opaque(bs);
    return (int64_t)s->h.size;
}

static int qcow2_block_status(BlockDriverState *bs, uint64_t off, uint64_t len,
                              uint64_t *pnum, BdrvStatus *status)
{
    Qcow2State *s = bdrv_opaque(bs);
    Qcow2Mapping m;

    g_mutex_lock(&s->lock);
    int ret = qcow2_map(s, off, len, false, &m);
    g_mutex_unlock(&s->lock);
    if (ret < 0) {
        return ret;
    }
    *pnum = m.bytes;
    switch (m.type) {
    case QCOW2_CLUSTER_NORMAL:
    case QCOW2_CLUSTER_COMPRESSED:
        *status = BDRV_STATUS_DATA;
        break;
    case QCOW2_CLUSTER_UNALLOCATED:
        *status = BDRV_STATUS_BACKING;
        break;
    default:
        *status = BDRV_STATUS_ZERO;
    }
    return 0;
}

static int64_t qcow2_allocated_bytes(BlockDriverState *bs)
{
    return bdrv_allocated_bytes(bs->file);
}

static void qcow2_get_info(BlockDriverState *bs, BlockDriverInfo *info)
{
    Qcow2State *s = bdrv_opaque(bs);

    info->cluster_size = (uint32_t)s->cluster_size;
    info->backing_file = s->backing_file;
}

const BlockDriver bdrv_qcow2 = {
    .format_name = "qcow2",
    .instance_size = sizeof(Qcow2State),
    .probe = qcow2_probe,
    .create = qcow2_create,
    .open = qcow2_open,
    .close = qcow2_close,
    .getlength = qcow2_getlength,
    .pread = qcow2_pread,
    .pwrite = qcow2_pwrite,
    .flush = qcow2_flush,
    .pwrite_zeroes = qcow2_pwrite_zeroes,
    .discard = qcow2_discard,
    .block_status = qcow2_block_status,
    .allocated_bytes = qcow2_allocated_bytes,
    .get_info = qcow2_get_info,
    .pwrite_unallocated = qcow2_pwrite_unallocated,
    .change_backing_file = qcow2_change_backing_file,
    .prepare_write = qcow2_prepare_write,
};
