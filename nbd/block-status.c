/* NBD_CMD_BLOCK_STATUS: one reply chunk per metadata context the client
 * selected, each a list of (length, value) descriptors from one walk of
 * the range (block.h's BdrvWalk):
 *   base:allocation        0 for data, HOLE | ZERO where the guest reads
 *                          zeroes (holes, zero clusters, unallocated);
 *   qemu:allocation-depth  the depth of the layer that holds the range
 *                          (1 the image itself, 2 its backing, ...), 0
 *                          where no layer does.
 * Adjacent runs with the same value are merged; at most
 * NBD_STATUS_MAX_EXTENTS per chunk (1 with REQ_ONE).  The walks run inside
 * the runstate gate, the reply goes out after it. */
#include "nbd-internal.h"

/* The descriptors of one context. */
typedef struct StatusChunk {
    uint8_t *desc;
    unsigned n;
} StatusChunk;

typedef struct StatusRequest {
    NBDConn *c;
    const NBDRequest *r;
    StatusChunk chunks[NBD_META_COUNT];
} StatusRequest;

static uint32_t wire_value(NBDMetaContext ctx, const BdrvExtent *e)
{
    if (ctx == NBD_META_ALLOCATION_DEPTH) {
        return (uint32_t)e->depth;
    }
    return e->status == BDRV_STATUS_DATA ? 0 : NBD_STATE_HOLE | NBD_STATE_ZERO;
}

/* Appends a run, merging it with the last one when the values match;
 * false when MAX descriptors are taken. */
static bool add_run(StatusChunk *ch, unsigned max, uint64_t len, uint32_t value)
{
    uint8_t *last = ch->n ? ch->desc + 8 * (ch->n - 1) : NULL;

    if (last && ld_be32(last + 4) == value) {
        st_be32(last, ld_be32(last) + (uint32_t)len);
        return true;
    }
    if (ch->n == max) {
        return false;
    }
    st_be32(ch->desc + 8 * ch->n, (uint32_t)len);
    st_be32(ch->desc + 8 * ch->n + 4, value);
    ch->n++;
    return true;
}

/* CTX's descriptors for the request's range.  A walk that fails after the
 * first run ends the chunk early (the client asks again for the rest). */
static int walk_context(StatusRequest *s, NBDMetaContext ctx)
{
    const NBDRequest *r = s->r;
    unsigned max = (r->flags & NBD_CMD_FLAG_REQ_ONE) ? 1 : NBD_STATUS_MAX_EXTENTS;
    StatusChunk *ch = &s->chunks[ctx];
    BdrvWalk w;
    BdrvExtent e;
    int ret;

    ch->desc = g_malloc(8 * max);
    bdrv_walk_init(&w, s->c->bs, r->offset, r->len,
                   ctx == NBD_META_ALLOCATION_DEPTH ? BDRV_WALK_DEPTH : BDRV_WALK_GUEST, 0);
    while ((ret = bdrv_walk_next(&w, &e)) > 0) {
        if (!add_run(ch, max, e.len, wire_value(ctx, &e))) {
            break;
        }
    }
    return ch->n == 0 && ret < 0 ? ret : 0;
}

/* The I/O step, inside the gate. */
static int walk_contexts(void *opaque)
{
    StatusRequest *s = opaque;

    for (unsigned i = 0; i < NBD_META_COUNT; i++) {
        int ret = (s->c->meta_contexts & (1u << i)) ? walk_context(s, i) : 0;
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

static int send_chunks(NBDConn *c, const NBDRequest *r, const StatusRequest *s)
{
    unsigned left = (unsigned)__builtin_popcount(c->meta_contexts);

    for (unsigned i = 0; i < NBD_META_COUNT; i++) {
        uint8_t id[4];

        if (!(c->meta_contexts & (1u << i))) {
            continue;
        }
        st_be32(id, NBD_META_ID(i));
        if (nbd_reply_chunk(c, r->cookie, --left == 0 ? NBD_REPLY_FLAG_DONE : 0,
                            NBD_REPLY_TYPE_BLOCK_STATUS, id, sizeof(id),
                            s->chunks[i].desc, 8 * s->chunks[i].n) < 0) {
            return -1;
        }
    }
    return 0;
}

int nbd_cmd_block_status(NBDConn *c, const NBDRequest *r)
{
    StatusRequest s = { .c = c, .r = r };
    int ret = nbd_gate_run(false, walk_contexts, &s);

    ret = ret < 0 ? nbd_reply_cmd_error(c, r, ret) : send_chunks(c, r, &s);
    for (unsigned i = 0; i < NBD_META_COUNT; i++) {
        g_free(s.chunks[i].desc);
    }
    return ret;
}
