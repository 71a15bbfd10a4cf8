/* What every guest write to a migrating drive meets, on the guest's own
 * thread: the block layer's write notifier of the drive (the guest paths,
 * built-in workload and NBD export, know nothing of migration) counts it
 * for the dirty rate, mirrors it in write-blocking mode (mirror.c) and
 * holds it back while auto-converge throttles (converge.c). */
#include <stdatomic.h>

#include "block-internal.h"

typedef struct Attachment {
    struct BlkGuestWrites *g;
    BlkMigDevice *dev;
    BdrvWriteNotifier *notifier;
} Attachment;

struct BlkGuestWrites {
    BlkMirror *mirror;
    BlkConverge *converge;
    GPtrArray *attached;        /* Attachment * (migration thread) */
    _Atomic uint64_t bytes;
};

BlkGuestWrites *blk_guest_writes_new(BlkMirror *mirror, BlkConverge *converge)
{
    BlkGuestWrites *g = g_new0(BlkGuestWrites, 1);

    g->mirror = mirror;
    g->converge = converge;
    g->attached = g_ptr_array_new();
    return g;
}

static void on_guest_write(void *opaque, uint64_t off, uint64_t len)
{
    Attachment *a = opaque;

    atomic_fetch_add_explicit(&a->g->bytes, len, memory_order_relaxed);
    blk_mirror_write(a->g->mirror, a->dev, off, len);
    blk_converge_throttle(a->g->converge, len);
}

void blk_guest_writes_attach(BlkGuestWrites *g, BlkMigDevice *dev)
{
    Attachment *a = g_new0(Attachment, 1);

    a->g = g;
    a->dev = dev;
    a->notifier = bdrv_add_write_notifier(dev->bs, on_guest_write, a);
    g_ptr_array_add(g->attached, a);
}

uint64_t blk_guest_writes_bytes(BlkGuestWrites *g)
{
    return atomic_load_explicit(&g->bytes, memory_order_relaxed);
}

void blk_guest_writes_free(BlkGuestWrites *g)
{
    if (!g) {
        return;
    }
    for (guint i = 0; i < g->attached->len; i++) {
        Attachment *a = g->attached->pdata[i];
        bdrv_remove_write_notifier(a->notifier);
        g_free(a);
    }
    g_ptr_array_unref(g->attached);
    g_free(g);
}
