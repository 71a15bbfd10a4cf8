/* qcow2 write ordering: when each kind of metadata may reach the file.
 *
 * The rule, which keeps an image that a crash (SIGKILL, or power loss after
 * the last completed sync) interrupts at any point free of corruption in
 * `qemu-img check`'s sense, leaking clusters at worst:
 *
 *   Nothing on disk may point at a cluster whose refcount on disk does not
 *   count that reference, or at a table whose content is not on disk.
 *
 * which gives these orders, each enforced where the pointer is written:
 *
 *  1. Allocating: a refcount increment reaches the file before the L2
 *     entry (or L1 / refcount table entry) that uses the cluster.  Dirty
 *     refcount blocks are always written, then synced, before any dirty L2
 *     table (qcow2_refcounts_before_l2, called by every L2 write-back).
 *  2. New tables: an L2 table or refcount block is written, and synced,
 *     before the L1 / refcount table entry that points at it
 *     (qcow2-cluster.c new_l2_table, qcow2-refcount.c ensure_refblock); a
 *     grown refcount table before the header names it, the header before
 *     the old table is freed (grow_reftable).
 *  3. Data: a newly allocated cluster gets its data (and its copy-on-write
 *     fill) before its L2 entry changes in the cache (qcow2-write.c), so
 *     before any write-back of that entry.
 *  4. Freeing: a refcount decrement happens only after the L2 change that
 *     dropped the reference is durable (a sync after its write-back) and
 *     no transfer to the cluster is in flight (qcow2-free.c); only then
 *     may the cluster be punched and reused.
 *
 * Refcount blocks therefore never wait for anything: increments are safe
 * early, and decrements are applied only once nothing points at them. */
#include <errno.h>

#include "qcow2.h"

/* Pending frees beyond this make a write-zeroes or discard flush at once,
 * which bounds the list. */
#define MAX_PENDING_FREES 4096

int qcow2_sync(Qcow2State *s)
{
    int ret = bdrv_flush(s->file);
    if (ret == 0) {
        s->refcounts_unsynced = false;
    }
    return ret;
}

/* Writes dirty refcount blocks, then (rule 1) dirty L2 tables. */
static int write_metadata(Qcow2State *s)
{
    int ret = qcow2_cache_writeback(s->rb_cache);
    return ret < 0 ? ret : qcow2_cache_writeback(s->l2_cache);
}

int qcow2_metadata_flush(Qcow2State *s, bool sync)
{
    uint64_t seq = s->unlink_seq;
    int ret = write_metadata(s);

    if (ret < 0 || !sync) {
        return ret;
    }
    ret = qcow2_sync(s);
    if (ret == 0) {
        s->durable_seq = seq;
        ret = qcow2_release_frees(s);
    }
    return ret;
}

/* Called with the lock held after unlinking clusters. */
int qcow2_bound_frees(Qcow2State *s)
{
    return s->frees->len > MAX_PENDING_FREES ? qcow2_metadata_flush(s, true) : 0;
}

/* The guest's flush: metadata written under the lock, the sync (the slow
 * part) outside it, then the frees that became durable.  Writing dirty L2
 * tables needs the refcount blocks synced first (rule 1), and that sync
 * runs under the lock; so when it is due, the data written so far is
 * synced before the lock is taken, which leaves the sync under it only
 * what came in meanwhile (it was most of a flush's time, every writer
 * waiting). */
/* Would writing the metadata now sync under the lock (dirty L2 tables
 * after refcount changes)? */
static bool sync_under_lock_due(Qcow2State *s)
{
    g_mutex_lock(&s->lock);
    bool due = qcow2_cache_is_dirty(s->l2_cache) &&
               (s->refcounts_unsynced || qcow2_cache_is_dirty(s->rb_cache));
    g_mutex_unlock(&s->lock);
    return due;
}

int qcow2_flush(BlockDriverState *bs)
{
    Qcow2State *s = bdrv_opaque(bs);

    if (s->read_only) {
        return 0;
    }
    int pre = sync_under_lock_due(s) ? bdrv_flush(s->file) : 0;
    if (pre < 0) {
        return pre;
    }
    g_mutex_lock(&s->lock);
    uint64_t seq = s->unlink_seq;
    int ret = write_metadata(s);
    g_mutex_unlock(&s->lock);
    ret = ret < 0 ? ret : bdrv_flush(s->file);

    g_mutex_lock(&s->lock);
    if (ret == 0 && seq > s->durable_seq) {
        s->durable_seq = seq;
        ret = qcow2_release_frees(s);
    }
    g_mutex_unlock(&s->lock);
    return ret;
}
