/* Flushing the emulator's drives, for the handler's three needs: the
 * destination's background flusher and the flush before its guest starts,
 * and the storage check's flush of each drive before it samples it. */
#include "block/block.h"
#include "block-internal.h"

bool blk_flush_drive(BlockDriverState *bs, const char *what, GError **errp)
{
    int ret = bdrv_flush(bs);

    if (ret < 0) {
        g_set_error(errp, MIG_ERROR, 0, "%s: flushing drive '%s' failed: %s", what,
                    bdrv_get_id(bs), g_strerror(-ret));
        return false;
    }
    return true;
}

bool blk_flush_all_drives(const char *what, GError **errp)
{
    g_autoptr(GList) drives = bdrv_list();

    for (GList *l = drives; l; l = l->next) {
        if (!blk_flush_drive(l->data, what, errp)) {
            return false;
        }
    }
    return true;
}
