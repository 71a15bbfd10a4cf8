/* copy-on-read=on: a guest read of a drive whose own layer lacks some of
 * the range gets that part from the backing chain, as any read, and the
 * whole clusters around it that hold data are also written into the
 * drive's layer (the stream copy, so only where still unallocated: a guest
 * write racing with the read wins).  Reads of a remote template thus pull
 * in what the guest uses, and later reads stay local. */
#include <errno.h>
#include <string.h>

#include "block-int.h"
#include "util/size.h"

/* A run RUN the drive lacks: read (and copy) its whole clusters, give the
 * guest its part at P.  A failed write only costs the copy. */
static int read_backing_run(BlockDriverState *bs, const BdrvExtent *run, uint8_t *p)
{
    uint32_t cs = bdrv_get_cluster_size(bs);
    uint64_t unit = cs ? cs : 512;
    uint64_t start = ROUND_DOWN(run->off, unit);
    uint64_t end = MIN(ROUND_UP(run->off + run->len, unit), bs->size);
    uint8_t *buf = bdrv_buf_alloc(bs, end - start);
    bool read_failed = false;
    int ret = bdrv_stream_copy(bs, start, end - start, buf, true, &read_failed);

    if (ret == 0 || !read_failed) {
        memcpy(p, buf + (run->off - start), run->len);
        ret = 0;
    }
    bdrv_buf_free(buf);
    return ret;
}

int bdrv_cor_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len)
{
    BdrvWalk w;
    BdrvExtent run;
    int ret;

    bdrv_walk_init(&w, bs, off, len, BDRV_WALK_TOP, 0);
    while ((ret = bdrv_walk_next(&w, &run)) > 0) {
        uint8_t *p = (uint8_t *)buf + (run.off - off);
        if (run.status == BDRV_STATUS_BACKING) {
            ret = read_backing_run(bs, &run, p);
        } else {
            ret = bs->drv->pread(bs, run.off, p, run.len);
        }
        if (ret < 0) {
            return ret;
        }
    }
    return ret;
}
