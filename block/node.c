/* Block graph: opening a node chain for a set of options (creating the
 * image first with create=on, probing with format=auto), the protocol node
 * under each format node, backing nodes below, and closing it all. */
#include <errno.h>
#include <gio/gio.h>
#include <string.h>
#include <sys/stat.h>

#include "block-int.h"

/* The formats users may name, in probing order after the best score. */
const BlockDriver *const bdrv_formats[] = { &bdrv_raw, &bdrv_qcow2, &bdrv_vmdk };
const size_t bdrv_n_formats = G_N_ELEMENTS(bdrv_formats);

static const BlockDriver *find_format(const char *name)
{
    for (size_t i = 0; i < bdrv_n_formats; i++) {
        if (strcmp(bdrv_formats[i]->format_name, name) == 0) {
            return bdrv_formats[i];
        }
    }
    return NULL;
}

static char *format_names(void)
{
    GString *s = g_string_new(NULL);
    for (size_t i = 0; i < bdrv_n_formats; i++) {
        g_string_append_printf(s, "%s, ", bdrv_formats[i]->format_name);
    }
    g_string_append(s, "auto");
    return g_string_free(s, FALSE);
}

static const char *node_name(const BlockOptions *opts)
{
    return opts->id ? opts->id : opts->filename;
}

/* The driver OPTS name in *DRV, NULL for format=auto. */
static bool resolve_format(const BlockOptions *opts, const BlockDriver **drv, GError **errp)
{
    const char *name = opts->format && *opts->format ? opts->format : "raw";
    bool is_auto = strcmp(name, "auto") == 0;

    *drv = find_format(name);
    if (!*drv && !is_auto) {
        char *names = format_names();
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "Unknown format '%s' for drive '%s' (supported: %s)",
                    name, node_name(opts), names);
        g_free(names);
        return false;
    }
    if (is_auto && opts->create) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Drive '%s': create=on needs a format (raw or qcow2), not auto",
                    node_name(opts));
        return false;
    }
    return true;
}

/* ---- Nodes ---- */

static BlockDriverState *node_new(const BlockOptions *opts, const BlockDriver *drv)
{
    BlockDriverState *bs = g_new0(BlockDriverState, 1);

    bs->id = g_strdup(opts->id);
    bs->filename = g_strdup(opts->filename);
    bs->format = g_strdup(drv->format_name);
    bs->tls_creds = g_strdup(opts->tls_creds);
    bs->opts = *opts;
    bs->opts.tls_creds = bs->tls_creds;
    bs->opts.id = bs->id;
    bs->opts.filename = bs->filename;
    bs->opts.format = bs->format;
    bs->opts.backing = bs->opts.backing_format = NULL;
    bs->drv = drv;
    bs->opaque = g_malloc0(drv->instance_size ? drv->instance_size : 1);
    bs->align = drv->is_protocol && opts->cache_none ? BDRV_DIRECT_ALIGN : 1;
    bs->buf_align = bs->align;
    g_rw_lock_init(&bs->rmw_lock);
    g_rw_lock_init(&bs->bitmaps_lock);
    g_rw_lock_init(&bs->notifiers_lock);
    g_mutex_init(&bs->gate_lock);
    g_cond_init(&bs->gate_cond);
    return bs;
}

static void node_free(BlockDriverState *bs)
{
    g_rw_lock_clear(&bs->rmw_lock);
    g_rw_lock_clear(&bs->bitmaps_lock);
    g_rw_lock_clear(&bs->notifiers_lock);
    g_mutex_clear(&bs->gate_lock);
    g_cond_clear(&bs->gate_cond);
    g_free(bs->opaque);
    g_free(bs->id);
    g_free(bs->filename);
    g_free(bs->format);
    g_free(bs->tls_creds);
    g_free(bs);
}

/* The driver's open, then the size it reports. */
static bool node_driver_open(BlockDriverState *bs, const BlockOptions *opts, GError **errp)
{
    if (bs->drv->open(bs, opts, errp) < 0) {
        return false;
    }
    int64_t len = bs->drv->getlength(bs);
    if (len < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno((int)-len),
                    "Cannot get the size of '%s': %s", bs->filename, g_strerror((int)-len));
        bs->drv->close(bs);
        return false;
    }
    bs->size = (uint64_t)len;
    return true;
}

/* The protocol driver for FILENAME: NBD for an NBD URI, else a host file. */
static const BlockDriver *protocol_for(const char *filename)
{
    return bdrv_is_nbd_uri(filename) ? &bdrv_nbd : &bdrv_file;
}

/* The protocol node for OPTS' file. */
static BlockDriverState *open_protocol(const BlockOptions *opts, GError **errp)
{
    BlockOptions fo = {
        .filename = opts->filename, .cache_none = opts->cache_none,
        .write_behind = opts->write_behind,
        .aio_native = opts->aio_native, .read_only = opts->read_only,
        .timeout = opts->timeout, .tls_creds = opts->tls_creds,
        .connections = opts->connections,
    };
    BlockDriverState *file = node_new(&fo, protocol_for(opts->filename));

    if (!node_driver_open(file, &file->opts, errp)) {
        node_free(file);
        return NULL;
    }
    return file;
}

static const BlockDriver *probe_file(BlockDriverState *file, GError **errp)
{
    uint8_t buf[BDRV_PROBE_BUF_SIZE];
    size_t n = (size_t)MIN((uint64_t)sizeof(buf), file->size);
    int ret = bdrv_pread(file, 0, buf, n);

    if (ret < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-ret),
                    "Cannot read '%s' to probe its format: %s", file->filename,
                    g_strerror(-ret));
        return NULL;
    }
    return bdrv_probe_format(buf, n, file->filename, errp);
}

/* The format node over FILE; FILE is closed when this fails. */
static BlockDriverState *open_format(const BlockOptions *opts, const BlockDriver *drv,
                                     BlockDriverState *file, BlockDriverState *parent,
                                     bool probed, GError **errp)
{
    BlockOptions ro;

    /* A protocol node that turned out read-only (an NBD server exporting
     * read-only) makes the format node over it read-only too. */
    if (file->opts.read_only && !opts->read_only) {
        ro = *opts;
        ro.read_only = true;
        opts = &ro;
    }
    BlockDriverState *bs = node_new(opts, drv);

    bs->file = file;
    bs->parent = parent;
    bs->probed = probed;
    bs->buf_align = MAX(bs->align, file->buf_align);
    file->growable = drv != &bdrv_raw;
    if (!node_driver_open(bs, opts, errp)) {
        bdrv_close_node(bs->backing);
        bdrv_close_node(file);
        node_free(bs);
        return NULL;
    }
    return bs;
}

/* Options only some formats take are refused elsewhere, never ignored. */
static bool check_format_options(const BlockOptions *opts, const BlockDriver *drv,
                                 GError **errp)
{
    const char *bad = NULL;

    if (drv == &bdrv_raw && (opts->backing || opts->backing_format)) {
        bad = "backing= needs format=qcow2";
    } else if (drv == &bdrv_raw && opts->cluster_size) {
        bad = "cluster-size= needs format=qcow2";
    } else if (opts->cluster_size && !opts->create) {
        bad = "cluster-size= applies to create=on only";
    } else if (opts->backing_format && !opts->backing && opts->create) {
        bad = "backing-format= needs backing=";
    }
    if (bad) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "Drive '%s': %s",
                    node_name(opts), bad);
    }
    return !bad;
}

/* The chain for OPTS over an image that exists (DRV NULL: probe it). */
static BlockDriverState *open_chain(const BlockOptions *opts, const BlockDriver *drv,
                                    BlockDriverState *parent, GError **errp)
{
    bool probed = drv == NULL;
    BlockDriverState *file = open_protocol(opts, errp);
    if (!file) {
        return NULL;
    }
    if (probed && (!(drv = probe_file(file, errp)) || !check_format_options(opts, drv, errp))) {
        bdrv_close_node(file);
        return NULL;
    }
    return open_format(opts, drv, file, parent, probed, errp);
}

BlockDriverState *bdrv_open_node(const BlockOptions *opts, BlockDriverState *parent,
                                 GError **errp)
{
    const BlockDriver *drv;
    BdrvCreatedFile made = { 0 };

    if (!resolve_format(opts, &drv, errp) || !check_format_options(opts, drv, errp)) {
        return NULL;
    }
    if (opts->create && bdrv_is_nbd_uri(opts->filename)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Drive '%s': create=on cannot make an image on an NBD server",
                    node_name(opts));
        return NULL;
    }
    if (opts->create && !drv->create) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "Drive '%s': blkmig reads %s images but cannot create them",
                    node_name(opts), drv->format_name);
        return NULL;
    }
    if (opts->create && drv->create(opts, &made, errp) < 0) {
        bdrv_create_undo(opts->filename, &made);
        return NULL;
    }
    BlockDriverState *bs = open_chain(opts, drv, parent, errp);
    if (!bs) {
        bdrv_create_undo(opts->filename, &made);
        return NULL;
    }
    bs->created = made;
    return bs;
}

void bdrv_close_node(BlockDriverState *bs)
{
    if (!bs) {
        return;
    }
    bs->drv->close(bs);
    bdrv_close_node(bs->backing);
    bdrv_close_node(bs->file);
    node_free(bs);
}

/* ---- Backing nodes ---- */

char *bdrv_backing_path(const char *image, const char *filename)
{
    if (g_path_is_absolute(filename) || bdrv_is_nbd_uri(filename)) {
        return g_strdup(filename);
    }
    char *dir = g_path_get_dirname(image);
    char *path = g_build_filename(dir, filename, NULL);
    g_free(dir);
    return path;
}

/* PATH must not be BS or any image above it, and the chain must not grow
 * past BDRV_MAX_BACKING_DEPTH.  An NBD URI names no local file: only its
 * depth is checked. */
static bool check_chain(BlockDriverState *bs, const char *path, GError **errp)
{
    struct stat st, up;
    int depth = 0;
    bool remote = bdrv_is_nbd_uri(path);

    if (!remote && stat(path, &st) < 0) {
        int err = errno;
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(err),
                    "Cannot open backing file '%s' of '%s': %s", path, bs->filename,
                    g_strerror(err));
        return false;
    }
    for (BlockDriverState *n = bs; n; n = n->parent, depth++) {
        if (!remote && stat(n->filename, &up) == 0 && up.st_dev == st.st_dev && up.st_ino == st.st_ino) {
            g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                        "Backing chain of '%s' loops: '%s' is its own backing file",
                        bs->filename, path);
            return false;
        }
    }
    if (depth >= BDRV_MAX_BACKING_DEPTH) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                    "Backing chain of '%s' is deeper than %d images", bs->filename,
                    BDRV_MAX_BACKING_DEPTH);
        return false;
    }
    return true;
}

BlockDriverState *bdrv_open_backing(BlockDriverState *bs, const char *filename,
                                    const char *format, GError **errp)
{
    char *path = bdrv_backing_path(bs->filename, filename);
    BlockOptions opts = {
        .filename = path, .format = format ? format : "auto", .read_only = true,
        .cache_none = bs->opts.cache_none, .aio_native = bs->opts.aio_native,
        .timeout = bs->opts.timeout, .tls_creds = bs->opts.tls_creds,
        .connections = bs->opts.connections,
    };

    if (check_chain(bs, path, errp)) {
        bs->backing = bdrv_open_node(&opts, bs, errp);
    }
    g_free(path);
    return bs->backing;
}
