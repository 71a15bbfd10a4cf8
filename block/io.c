/* Block-layer requests on any node: range checks, the O_DIRECT bounce and
 * read-modify-write for cache=none, dirty-bitmap marking and write
 * notifiers after a write succeeded, and the drain gate of drain.c around
 * each request.  Format drivers reach their protocol nodes through the
 * same calls. */
#include "block/block.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "block-int.h"

#define ROUND_DOWN(x, a) ((x) / (a) * (a))
#define ROUND_UP(x, a) ROUND_DOWN((x) + (a) - 1, (a))

/* How far a growable node may be written: QEMU's limit for image files. */
#define BDRV_MAX_LENGTH (1ULL << 62)

/* The zeroes an unaligned head or tail of a cache=none write-zeroes writes. */
static const uint8_t zero_block[BDRV_DIRECT_ALIGN];

/* ---- Request checks ---- */

static int check_request(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    uint64_t limit = bs->growable ? BDRV_MAX_LENGTH : bs->size;
    return off > limit || len > limit - off ? -EINVAL : 0;
}

/* Does a request ending at END end at the end of the file, where O_DIRECT
 * may take a partial block?  Never for growable nodes: their end moves. */
static bool ends_at_eof(BlockDriverState *bs, uint64_t end)
{
    return !bs->growable && end == bs->size;
}

static int check_write(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    return bs->opts.read_only ? -EPERM : check_request(bs, off, len);
}

/* O_DIRECT can take the request as it is.  A request ending at the end of
 * a file whose size is unaligned is fine too: the driver handles that
 * partial block. */
static bool is_direct_ok(BlockDriverState *bs, uint64_t off, const void *buf, uint64_t len)
{
    size_t a = bs->align;
    return off % a == 0 && (uintptr_t)buf % a == 0 &&
           (len % a == 0 || ends_at_eof(bs, off + len));
}

/* Does a write of [off, off+len) need to read blocks it only partly covers? */
static bool needs_rmw(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    uint64_t end = off + len;
    return off % bs->align || (end % bs->align && !ends_at_eof(bs, end));
}

/* The aligned window around [off, off+len), clipped to a fixed-size node. */
static void aligned_window(BlockDriverState *bs, uint64_t off, uint64_t len,
                           uint64_t *start, uint64_t *end)
{
    *start = ROUND_DOWN(off, bs->align);
    *end = ROUND_UP(off + len, bs->align);
    if (!bs->growable) {
        *end = MIN(*end, bs->size);
    }
}

/* ---- Reads ---- */

static int bounce_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len)
{
    uint64_t start, end;
    aligned_window(bs, off, len, &start, &end);

    uint8_t *bounce = bdrv_buf_alloc(bs, end - start);
    int ret = bs->drv->pread(bs, start, bounce, end - start);
    if (ret == 0) {
        memcpy(buf, bounce + (off - start), len);
    }
    bdrv_buf_free(bounce);
    return ret;
}

static int do_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len)
{
    if (bs->opts.copy_on_read && bs->backing) {
        return bdrv_cor_pread(bs, off, buf, len);
    }
    if (is_direct_ok(bs, off, buf, len)) {
        return bs->drv->pread(bs, off, buf, len);
    }
    return bounce_pread(bs, off, buf, len);
}

int bdrv_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len)
{
    int ret = check_request(bs, off, len);
    if (ret < 0 || len == 0) {
        return ret;
    }
    bdrv_gate_enter(bs);
    ret = do_pread(bs, off, buf, len);
    bdrv_gate_leave(bs);
    return ret;
}

/* ---- Mapped reads ---- */

const void *bdrv_map_read(BlockDriverState *bs, uint64_t off, size_t len)
{
    if (!bs->drv->map_read || len == 0 || check_request(bs, off, len) < 0 ||
        bs->opts.copy_on_read) {
        return NULL;
    }
    return bs->drv->map_read(bs, off, len);
}

void bdrv_unmap_read(BlockDriverState *bs, const void *p, size_t len)
{
    bs->drv->unmap_read(bs, p, len);
}

/* ---- Writes ---- */

/* Fill the partly covered first and last blocks of the window from disk.
 * Caller holds rmw_lock exclusively. */
static int rmw_read_edges(BlockDriverState *bs, uint64_t off, uint64_t len,
                          uint64_t start, uint64_t end, uint8_t *bounce)
{
    uint64_t a = bs->align;
    bool head_read = false;
    int ret;

    if (off != start) {
        ret = bs->drv->pread(bs, start, bounce, MIN(start + a, end) - start);
        if (ret < 0) {
            return ret;
        }
        head_read = true;
    }
    uint64_t req_end = off + len;
    uint64_t tail = ROUND_DOWN(req_end, a);
    if (req_end % a && !ends_at_eof(bs, req_end) && !(head_read && tail == start)) {
        ret = bs->drv->pread(bs, tail, bounce + (tail - start), end - tail);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

static int rmw_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, size_t len, int flags)
{
    uint64_t start, end;
    aligned_window(bs, off, len, &start, &end);
    uint8_t *bounce = bdrv_buf_alloc(bs, end - start);

    g_rw_lock_writer_lock(&bs->rmw_lock);
    int ret = rmw_read_edges(bs, off, len, start, end, bounce);
    if (ret == 0) {
        memcpy(bounce + (off - start), buf, len);
        ret = bs->drv->pwrite(bs, start, bounce, end - start, flags);
    }
    g_rw_lock_writer_unlock(&bs->rmw_lock);
    bdrv_buf_free(bounce);
    return ret;
}

/* Block-aligned write whose buffer may still be unaligned. */
static int direct_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, size_t len, int flags)
{
    void *bounce = NULL;

    if ((uintptr_t)buf % bs->align) {
        bounce = bdrv_buf_alloc(bs, len);
        memcpy(bounce, buf, len);
        buf = bounce;
    }
    g_rw_lock_reader_lock(&bs->rmw_lock);
    int ret = bs->drv->pwrite(bs, off, buf, len, flags);
    g_rw_lock_reader_unlock(&bs->rmw_lock);
    bdrv_buf_free(bounce);
    return ret;
}

static int cache_none_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, size_t len, int flags)
{
    if (needs_rmw(bs, off, len)) {
        return rmw_pwrite(bs, off, buf, len, flags);
    }
    return direct_pwrite(bs, off, buf, len, flags);
}

int bdrv_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, size_t len, int flags)
{
    int ret = check_write(bs, off, len);
    if (ret < 0 || len == 0) {
        return ret;
    }
    bdrv_gate_enter(bs);
    if (bs->align == 1) {
        ret = bs->drv->pwrite(bs, off, buf, len, flags);
    } else {
        ret = cache_none_pwrite(bs, off, buf, len, flags);
    }
    if (ret == 0) {
        bdrv_write_done(bs, off, len);
    }
    bdrv_gate_leave(bs);
    return ret;
}

/* Copies, not guest writes: what the guest sees does not change, so no
 * dirty bitmap is marked.  Format nodes take any alignment. */
int bdrv_pwrite_unallocated(BlockDriverState *bs, uint64_t off, const void *buf, size_t len)
{
    int ret = check_write(bs, off, len);
    if (ret < 0 || len == 0) {
        return ret;
    }
    if (!bs->drv->pwrite_unallocated) {
        return -ENOTSUP;
    }
    bdrv_gate_enter(bs);
    ret = bs->drv->pwrite_unallocated(bs, off, buf, len);
    bdrv_gate_leave(bs);
    return ret;
}

int bdrv_prepare_write(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    int ret = check_write(bs, off, len);
    if (ret < 0 || len == 0 || !bs->drv->prepare_write) {
        return ret;
    }
    bdrv_gate_enter(bs);
    ret = bs->drv->prepare_write(bs, off, len);
    bdrv_gate_leave(bs);
    return ret;
}

int bdrv_flush(BlockDriverState *bs)
{
    if (!bs->drv->flush) {
        return 0;
    }
    bdrv_gate_enter(bs);
    int ret = bs->drv->flush(bs);
    bdrv_gate_leave(bs);
    return ret;
}

/* ---- Write zeroes and discard ---- */

static int driver_pwrite_zeroes(BlockDriverState *bs, uint64_t off, uint64_t len, int flags)
{
    if (!bs->drv->pwrite_zeroes) {
        return -ENOTSUP;
    }
    g_rw_lock_reader_lock(&bs->rmw_lock);
    int ret = bs->drv->pwrite_zeroes(bs, off, len, flags);
    g_rw_lock_reader_unlock(&bs->rmw_lock);
    return ret;
}

/* cache=none: the partial blocks at either end are written as zero data
 * through read-modify-write; the aligned middle goes to the driver, which
 * can deallocate it. */
static int cache_none_pwrite_zeroes(BlockDriverState *bs, uint64_t off, uint64_t len, int flags)
{
    uint64_t a = bs->align;
    uint64_t end = off + len;
    int fua = flags & BDRV_REQ_FUA;
    int ret;

    if (off % a) {
        uint64_t head_end = MIN(ROUND_UP(off, a), end);
        ret = rmw_pwrite(bs, off, zero_block, head_end - off, fua);
        if (ret < 0) {
            return ret;
        }
        off = head_end;
    }
    if (off < end && end % a && !ends_at_eof(bs, end)) {
        uint64_t tail = MAX(ROUND_DOWN(end, a), off);
        ret = rmw_pwrite(bs, tail, zero_block, end - tail, fua);
        if (ret < 0) {
            return ret;
        }
        end = tail;
    }
    return off < end ? driver_pwrite_zeroes(bs, off, end - off, flags) : 0;
}

int bdrv_pwrite_zeroes(BlockDriverState *bs, uint64_t off, uint64_t len, int flags)
{
    int ret = check_write(bs, off, len);
    if (ret < 0 || len == 0) {
        return ret;
    }
    bdrv_gate_enter(bs);
    if (bs->align == 1) {
        ret = driver_pwrite_zeroes(bs, off, len, flags);
    } else {
        ret = cache_none_pwrite_zeroes(bs, off, len, flags);
    }
    if (ret == 0) {
        bdrv_write_done(bs, off, len);
    }
    bdrv_gate_leave(bs);
    return ret;
}

int bdrv_discard(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    int ret = check_write(bs, off, len);
    if (ret < 0 || len == 0) {
        return ret;
    }
    if (!bs->drv->discard) {
        return -ENOTSUP;
    }
    bdrv_gate_enter(bs);
    g_rw_lock_reader_lock(&bs->rmw_lock);
    ret = bs->drv->discard(bs, off, len);
    g_rw_lock_reader_unlock(&bs->rmw_lock);
    if (ret == 0) {
        bdrv_write_done(bs, off, len);
    }
    bdrv_gate_leave(bs);
    return ret;
}

