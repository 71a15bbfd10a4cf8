/* A block-migration source device for in-process tests (see
 * blk-mig-device.h). */
#include "blk-mig-device.h"

#include <glib/gstdio.h>

#include "drives.h"

void tbd_open(TestBlkMigDevice *t, const char *template, uint64_t size, uint32_t granularity)
{
    GError *err = NULL;

    t->dir = g_dir_make_tmp(template, &err);
    g_assert_no_error(err);
    t->path = g_build_filename(t->dir, "disk.raw", NULL);
    t->dev.bs = td_open_drive("d0", t->path, size);
    t->dev.id = "d0";
    t->dev.size = size;
    t->dev.bitmap = bdrv_create_dirty_bitmap(t->dev.bs, granularity);
}

bool tbd_close(TestBlkMigDevice *t)
{
    bool removed;

    bdrv_release_dirty_bitmap(t->dev.bitmap);
    bdrv_close(t->dev.bs);
    removed = g_unlink(t->path) == 0;
    removed = g_rmdir(t->dir) == 0 && removed;
    g_free(t->path);
    g_free(t->dir);
    return removed;
}
