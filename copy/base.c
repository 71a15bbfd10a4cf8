/* A delta copy's shortcut: when the base is an image of the source's
 * backing chain (a qcow2 overlay on it, say), block status with depths
 * says which ranges the layers above it decide, and everything else reads
 * as the base does, so it needs neither reading nor writing.  This file
 * finds that depth; an image counts as the same when it is the same file
 * (or the same NBD URI) opened as the same format. */
#include <string.h>
#include <sys/stat.h>

#include "copy-int.h"

static bool same_file(const char *a, const char *b)
{
    struct stat sa, sb;

    if (stat(a, &sa) == 0 && stat(b, &sb) == 0) {
        return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
    }
    return strcmp(a, b) == 0;      /* NBD URIs name no local file */
}

static bool same_image(BlockDriverState *a, BlockDriverState *b)
{
    return strcmp(bdrv_get_format(a), bdrv_get_format(b)) == 0 &&
           same_file(bdrv_get_filename(a), bdrv_get_filename(b));
}

int copy_base_depth(CopySide *src, CopySide *base)
{
    int depth = 1;

    if (!src->bs || !base->bs) {
        return 0;
    }
    for (BlockDriverState *n = src->bs; n; n = bdrv_get_backing(n), depth++) {
        if (same_image(n, base->bs)) {
            return depth;
        }
    }
    return 0;
}
