/* Changing a drive's backing chain at run time: finding a node of the
 * chain by name, and making a lower node (or none) the drive's backing
 * node once a stream job has copied what the layers above it held: the
 * header first, durably, then the graph, with the drive drained, then the
 * dropped nodes are closed (a remote server is no longer needed). */
#include "block/block.h"

#include <errno.h>
#include <gio/gio.h>
#include <string.h>

#include "block-int.h"

/* Does NAME, as the image ABOVE would resolve it, name node B? */
static bool names_node(BlockDriverState *above, BlockDriverState *b, const char *name)
{
    const char *named = bdrv_get_backing_filename(above);
    g_autofree char *path = bdrv_backing_path(above->filename, name);

    return strcmp(b->filename, name) == 0 || strcmp(b->filename, path) == 0 ||
           (named && strcmp(named, name) == 0);
}

BlockDriverState *bdrv_find_backing_image(BlockDriverState *bs, const char *name)
{
    for (BlockDriverState *above = bs, *b = bs->backing; b; above = b, b = b->backing) {
        if (names_node(above, b, name)) {
            return b;
        }
    }
    return NULL;
}

bool bdrv_chain_contains(BlockDriverState *bs, BlockDriverState *base)
{
    for (BlockDriverState *b = bs->backing; b; b = b->backing) {
        if (b == base) {
            return true;
        }
    }
    return base == NULL;
}

/* Unlink the nodes between BS and BASE (drive drained); returns the first
 * of them, now a chain of its own ending above BASE. */
static BlockDriverState *unlink_above(BlockDriverState *bs, BlockDriverState *base)
{
    BlockDriverState *first = bs->backing, *last = first;

    while (last->backing != base) {
        last = last->backing;
    }
    last->backing = NULL;
    first->parent = NULL;
    bs->backing = base;
    if (base) {
        base->parent = bs;
    }
    return first;
}

static bool check_change(BlockDriverState *bs, BlockDriverState *base, GError **errp)
{
    const char *why = NULL;

    if (!bs->id) {
        why = "only a drive's backing chain can change";
    } else if (!bs->drv->change_backing_file) {
        why = "its format names no backing file";
    } else if (!bdrv_chain_contains(bs, base)) {
        why = "the new backing node is not in its chain";
    }
    if (why) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "Cannot change the backing file of '%s': %s", bs->filename, why);
    }
    return !why;
}

int bdrv_change_backing(BlockDriverState *bs, BlockDriverState *base, const char *backing_name,
                        GError **errp)
{
    if (bs->backing == base) {
        return 0;
    }
    if (!check_change(bs, base, errp)) {
        return -ENOTSUP;
    }
    const char *name = base ? (backing_name ? backing_name : base->filename) : NULL;
    BlockDriverState *dropped = NULL;
    int ret = bdrv_flush(bs);

    bdrv_drain_begin(bs);
    ret = ret < 0 ? ret : bs->drv->change_backing_file(bs, name, base ? base->format : NULL);
    if (ret == 0) {
        dropped = unlink_above(bs, base);
    }
    bdrv_drain_end(bs);
    bdrv_close_node(dropped);
    if (ret < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-ret),
                    "Cannot write the new backing file name of '%s': %s", bs->filename,
                    g_strerror(-ret));
    }
    return ret;
}
