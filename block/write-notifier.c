/* Write notifiers: what a higher layer (migration's write-blocking copy,
 * its throttle) runs on every successful write to a drive, on the
 * writer's thread, after the dirty bitmaps were marked and before the
 * write returns to its caller.  The block layer knows them only as
 * callbacks; removing one waits until no call of it is running. */
#include "block/block.h"

#include "block-int.h"

struct BdrvWriteNotifier {
    BlockDriverState *bs;
    BdrvWriteNotifyFn fn;
    void *opaque;
};

BdrvWriteNotifier *bdrv_add_write_notifier(BlockDriverState *bs, BdrvWriteNotifyFn fn,
                                           void *opaque)
{
    BdrvWriteNotifier *n = g_new0(BdrvWriteNotifier, 1);

    n->bs = bs;
    n->fn = fn;
    n->opaque = opaque;
    g_rw_lock_writer_lock(&bs->notifiers_lock);
    bs->write_notifiers = g_list_append(bs->write_notifiers, n);
    g_rw_lock_writer_unlock(&bs->notifiers_lock);
    return n;
}

void bdrv_remove_write_notifier(BdrvWriteNotifier *n)
{
    if (!n) {
        return;
    }
    /* The writer lock waits for every call in progress (they hold it
     * shared). */
    g_rw_lock_writer_lock(&n->bs->notifiers_lock);
    n->bs->write_notifiers = g_list_remove(n->bs->write_notifiers, n);
    g_rw_lock_writer_unlock(&n->bs->notifiers_lock);
    g_free(n);
}

void bdrv_write_done(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    bdrv_dirty_bitmaps_mark(bs, off, len);
    g_rw_lock_reader_lock(&bs->notifiers_lock);
    for (GList *l = bs->write_notifiers; l; l = l->next) {
        BdrvWriteNotifier *n = l->data;
        n->fn(n->opaque, off, len);
    }
    g_rw_lock_reader_unlock(&bs->notifiers_lock);
}
