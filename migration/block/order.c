/* The order of the units of one chunk: a unit (a pipeline job, or a
 * mirrored guest write, mirror.c) takes its place when it clears the
 * chunk's dirty bits, under one lock, and is handed to its connection
 * only once every unit of the chunk before it was.  mirror.c explains
 * why that keeps the newest version of every block last. */
#include "block-internal.h"
#include "util/bitmap.h"

/* Dirty bits of one chunk at the finest granularity, plus one spare word
 * as dirty_bitmap_snapshot_and_clear asks. */
#define CHUNK_BITMAP_WORDS BITMAP_WORDS(BLK_CHUNK / BLK_SECTOR + 1)

typedef struct ChunkKey {
    BlockDriverState *bs;
    uint64_t chunk;
} ChunkKey;

struct BlkOrder {
    GMutex lock;
    uint64_t next_seq;
    GHashTable *chunks;         /* ChunkKey * -> GQueue * of BlkChunkJob *, oldest first */
};

static guint key_hash(gconstpointer p)
{
    const ChunkKey *k = p;

    return g_direct_hash(k->bs) ^ g_int64_hash(&k->chunk);
}

static gboolean key_equal(gconstpointer a, gconstpointer b)
{
    const ChunkKey *x = a, *y = b;

    return x->bs == y->bs && x->chunk == y->chunk;
}

static void queue_free(gpointer q)
{
    g_queue_free(q);
}

BlkOrder *blk_order_new(void)
{
    BlkOrder *o = g_new0(BlkOrder, 1);

    g_mutex_init(&o->lock);
    o->chunks = g_hash_table_new_full(key_hash, key_equal, g_free, queue_free);
    return o;
}

void blk_order_free(BlkOrder *o)
{
    if (!o) {
        return;
    }
    g_hash_table_unref(o->chunks);
    g_mutex_clear(&o->lock);
    g_free(o);
}

void blk_order_lock(BlkOrder *o)
{
    g_mutex_lock(&o->lock);
}

void blk_order_unlock(BlkOrder *o)
{
    g_mutex_unlock(&o->lock);
}

void blk_order_take_dirty_locked(BlkMigDevice *dev, BlkChunkJob *job, uint64_t off,
                                 uint64_t len, bool whole)
{
    uint64_t gran = dirty_bitmap_granularity(dev->bitmap);
    uint64_t chunk_len = MIN(BLK_CHUNK, dev->size - job->chunk);
    unsigned long bits[CHUNK_BITMAP_WORDS] = { 0 };
    uint64_t nbits;

    if (whole) {
        if (dirty_bitmap_test_and_clear(dev->bitmap, job->chunk, chunk_len)) {
            blk_chunk_add_range(job, job->chunk, chunk_len);
        }
        return;
    }
    nbits = dirty_bitmap_snapshot_and_clear(dev->bitmap, off, len, bits);
    /* Bit 0 is the granule holding OFF; runs are clipped to the chunk. */
    off -= off % gran;
    for (uint64_t b = bitmap_find_next_set(bits, nbits, 0); b < nbits;) {
        uint64_t e = b + 1;
        while (e < nbits && bitmap_test(bits, e)) {
            e++;
        }
        uint64_t start = MAX(off + b * gran, job->chunk);
        uint64_t end = MIN(off + e * gran, job->chunk + chunk_len);
        blk_chunk_add_range(job, start, end - start);
        b = bitmap_find_next_set(bits, nbits, e);
    }
}

/* Lock held: the queue of JOB's chunk, made when MAKE. */
static GQueue *chunk_queue(BlkOrder *o, const BlkChunkJob *job, bool make)
{
    ChunkKey key = { job->bs, job->chunk };
    GQueue *q = g_hash_table_lookup(o->chunks, &key);

    if (!q && make) {
        q = g_queue_new();
        g_hash_table_insert(o->chunks, g_memdup2(&key, sizeof(key)), q);
    }
    return q;
}

void blk_order_enter_locked(BlkOrder *o, BlkChunkJob *job)
{
    job->seq = ++o->next_seq;
    g_queue_push_tail(chunk_queue(o, job, true), job);
    blk_resume_note_taken(job);
}

bool blk_order_is_first_locked(BlkOrder *o, const BlkChunkJob *job)
{
    GQueue *q = chunk_queue(o, job, false);

    return q && g_queue_peek_head(q) == job;
}

BlkChunkJob *blk_order_first_locked(BlkOrder *o, const BlkChunkJob *job)
{
    GQueue *q = chunk_queue(o, job, false);

    return q ? g_queue_peek_head(q) : NULL;
}

void blk_order_leave_locked(BlkOrder *o, BlkChunkJob *job)
{
    ChunkKey key = { job->bs, job->chunk };
    GQueue *q = g_hash_table_lookup(o->chunks, &key);

    if (q && g_queue_remove(q, job) && g_queue_is_empty(q)) {
        g_hash_table_remove(o->chunks, &key);
    }
}

bool blk_order_is_first(BlkOrder *o, const BlkChunkJob *job)
{
    bool first;

    g_mutex_lock(&o->lock);
    first = blk_order_is_first_locked(o, job);
    g_mutex_unlock(&o->lock);
    return first;
}

void blk_order_leave(BlkOrder *o, BlkChunkJob *job)
{
    g_mutex_lock(&o->lock);
    blk_order_leave_locked(o, job);
    g_mutex_unlock(&o->lock);
}
