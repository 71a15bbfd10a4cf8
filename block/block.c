/* Drives: the registry of named root nodes, their open and close, their
 * properties, and I/O buffers that suit them. */
#include "block/block.h"

#include <errno.h>
#include <gio/gio.h>
#include <stdlib.h>
#include <string.h>

#include "block-int.h"

/* Protects drives. */
static GMutex registry_lock;
static GQueue drives = G_QUEUE_INIT;     /* BlockDriverState *, open order */

static BlockDriverState *find_drive_locked(const char *id)
{
    for (GList *l = drives.head; l; l = l->next) {
        BlockDriverState *bs = l->data;
        if (strcmp(bs->id, id) == 0) {
            return bs;
        }
    }
    return NULL;
}

BlockDriverState *bdrv_find(const char *id)
{
    g_mutex_lock(&registry_lock);
    BlockDriverState *bs = find_drive_locked(id);
    g_mutex_unlock(&registry_lock);
    return bs;
}

GList *bdrv_list(void)
{
    g_mutex_lock(&registry_lock);
    GList *list = g_list_copy(drives.head);
    g_mutex_unlock(&registry_lock);
    return list;
}

/* ---- Open and close ---- */

static bool check_open_options(const BlockOptions *opts, GError **errp)
{
    if (!opts->id || !*opts->id) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "A drive needs an id (id=)");
        return false;
    }
    if (!opts->filename || !*opts->filename) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Drive '%s' needs a file name (file=)", opts->id);
        return false;
    }
    if (opts->overwrite && !opts->create) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Drive '%s': overwrite=on needs create=on", opts->id);
        return false;
    }
    if (opts->copy_on_read && opts->read_only) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Drive '%s': copy-on-read=on writes what it reads into the drive, "
                    "which read-only=on forbids", opts->id);
        return false;
    }
    return true;
}

/* The registry lock is held across the open so that two opens of the same
 * id cannot both succeed. */
BlockDriverState *bdrv_open(const BlockOptions *opts, GError **errp)
{
    if (!check_open_options(opts, errp)) {
        return NULL;
    }
    g_mutex_lock(&registry_lock);
    BlockDriverState *bs = NULL;
    if (find_drive_locked(opts->id)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_EXISTS,
                    "Duplicate drive id '%s'", opts->id);
    } else {
        bs = bdrv_open_node(opts, NULL, errp);
    }
    if (bs) {
        g_queue_push_tail(&drives, bs);
    }
    g_mutex_unlock(&registry_lock);
    return bs;
}

void bdrv_close(BlockDriverState *bs)
{
    if (!bs) {
        return;
    }
    g_mutex_lock(&registry_lock);
    g_queue_remove(&drives, bs);
    g_mutex_unlock(&registry_lock);

    bdrv_release_all_dirty_bitmaps(bs);
    bdrv_close_node(bs);
}

void bdrv_close_all(void)
{
    for (;;) {
        g_mutex_lock(&registry_lock);
        BlockDriverState *bs = g_queue_peek_tail(&drives);
        g_mutex_unlock(&registry_lock);
        if (!bs) {
            return;
        }
        bdrv_close(bs);
    }
}

/* ---- Properties ---- */

const char *bdrv_get_id(BlockDriverState *bs) { return bs->id; }
const char *bdrv_get_filename(BlockDriverState *bs) { return bs->filename; }
const char *bdrv_get_format(BlockDriverState *bs) { return bs->format; }
bool bdrv_is_read_only(BlockDriverState *bs) { return bs->opts.read_only; }
bool bdrv_is_cache_none(BlockDriverState *bs) { return bs->opts.cache_none; }
bool bdrv_is_aio_native(BlockDriverState *bs) { return bs->opts.aio_native; }
void *bdrv_opaque(BlockDriverState *bs) { return bs->opaque; }
BlockDriverState *bdrv_file_child(BlockDriverState *bs) { return bs->file; }
BlockDriverState *bdrv_get_backing(BlockDriverState *bs) { return bs->backing; }

/* A growable protocol node's size follows its writes. */
int64_t bdrv_getlength(BlockDriverState *bs)
{
    return bs->growable ? bs->drv->getlength(bs) : (int64_t)bs->size;
}

int64_t bdrv_allocated_bytes(BlockDriverState *bs)
{
    return bs->drv->allocated_bytes ? bs->drv->allocated_bytes(bs) : -ENOTSUP;
}

int bdrv_get_backing_depth(BlockDriverState *bs)
{
    int depth = 0;
    for (BlockDriverState *b = bs->backing; b; b = b->backing) {
        depth++;
    }
    return depth;
}

static BlockDriverInfo driver_info(BlockDriverState *bs)
{
    BlockDriverInfo info = { 0 };
    if (bs->drv->get_info) {
        bs->drv->get_info(bs, &info);
    }
    return info;
}

const char *bdrv_get_backing_filename(BlockDriverState *bs)
{
    return driver_info(bs).backing_file;
}

uint32_t bdrv_get_cluster_size(BlockDriverState *bs)
{
    return driver_info(bs).cluster_size;
}

/* ---- Buffers ---- */

size_t bdrv_buf_align(BlockDriverState *bs)
{
    return bs ? bs->buf_align : BDRV_DIRECT_ALIGN;
}

void *bdrv_buf_alloc(BlockDriverState *bs, size_t len)
{
    size_t align = MAX(bdrv_buf_align(bs), (size_t)64);
    void *buf;

    if (posix_memalign(&buf, align, len ? len : 1) != 0) {
        g_error("Out of memory allocating a %zu-byte I/O buffer", len);
    }
    return buf;
}

void bdrv_buf_free(void *buf)
{
    free(buf);
}
