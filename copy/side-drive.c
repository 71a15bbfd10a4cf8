/* A copy side on a drive of the block layer: any format over a file or an
 * NBD export.  Requests go straight to the drive, from many workers at
 * once; block status comes from the drive too (the plan walks it). */
#include "copy-int.h"

static int fail(int ret, GError **errp)
{
    if (ret < 0) {
        g_set_error_literal(errp, G_IO_ERROR, g_io_error_from_errno(-ret), g_strerror(-ret));
    }
    return ret;
}

static int drive_read(CopySide *s, uint64_t off, void *buf, size_t len, GError **errp)
{
    return fail(bdrv_pread(s->bs, off, buf, len), errp);
}

static const void *drive_map(CopySide *s, uint64_t off, size_t len)
{
    return bdrv_map_read(s->bs, off, len);
}

static void drive_unmap(CopySide *s, const void *p, size_t len)
{
    bdrv_unmap_read(s->bs, p, len);
}

static int drive_write(CopySide *s, uint64_t off, const void *buf, size_t len, GError **errp)
{
    return fail(bdrv_pwrite(s->bs, off, buf, len, 0), errp);
}

static int drive_zero(CopySide *s, uint64_t off, uint64_t len, GError **errp)
{
    return fail(bdrv_pwrite_zeroes(s->bs, off, len, BDRV_REQ_MAY_UNMAP), errp);
}

static int drive_flush(CopySide *s, GError **errp)
{
    return fail(bdrv_flush(s->bs), errp);
}

static void drive_abort(CopySide *s)
{
}

static void drive_free(CopySide *s)
{
    g_free(s);
}

static const CopySideOps drive_ops = {
    .read = drive_read,
    .map = drive_map,
    .unmap = drive_unmap,
    .write = drive_write,
    .zero = drive_zero,
    .flush = drive_flush,
    .abort = drive_abort,
    .free = drive_free,
};

CopySide *copy_side_drive(BlockDriverState *bs)
{
    CopySide *s = g_new0(CopySide, 1);

    s->ops = &drive_ops;
    s->bs = bs;
    s->size = (uint64_t)bdrv_getlength(bs);
    return s;
}
