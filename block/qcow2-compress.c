/* qcow2 compressed clusters, read side: a compressed cluster is a raw
 * deflate stream (compression_type 0) or a zstd frame (type 1) that
 * inflates to exactly one cluster.  The input comes from the image and is
 * treated as hostile: output never exceeds the cluster, and a stream that
 * ends early or is damaged is an error. */
#include <errno.h>
#include <zlib.h>
#include <zstd.h>

#include "qcow2.h"

static int inflate_raw(const uint8_t *src, size_t len, uint8_t *dst, size_t out_len)
{
    z_stream z = { 0 };

    if (inflateInit2(&z, -15) != Z_OK) {
        return -ENOMEM;
    }
    z.next_in = (Bytef *)src;
    z.avail_in = (uInt)len;
    z.next_out = dst;
    z.avail_out = (uInt)out_len;
    int ret = inflate(&z, Z_FINISH);
    /* Done when the cluster is full: the stream may end there, or the
     * input may carry padding after it. */
    bool ok = z.avail_out == 0 && (ret == Z_STREAM_END || ret == Z_BUF_ERROR || ret == Z_OK);
    inflateEnd(&z);
    return ok ? 0 : -EIO;
}

static int inflate_zstd(const uint8_t *src, size_t len, uint8_t *dst, size_t out_len)
{
    ZSTD_DCtx *dctx = ZSTD_createDCtx();
    ZSTD_inBuffer in = { src, len, 0 };
    ZSTD_outBuffer out = { dst, out_len, 0 };
    size_t ret = 1;

    if (!dctx) {
        return -ENOMEM;
    }
    while (out.pos < out.size && in.pos < in.size) {
        ret = ZSTD_decompressStream(dctx, &out, &in);
        if (ZSTD_isError(ret) || (ret != 0 && in.pos == in.size && out.pos < out.size)) {
            break;
        }
        if (ret == 0) {
            break;             /* frame complete */
        }
    }
    ZSTD_freeDCtx(dctx);
    return !ZSTD_isError(ret) && out.pos == out.size ? 0 : -EIO;
}

int qcow2_decompress(Qcow2State *s, const uint8_t *src, size_t len, uint8_t *dst)
{
    if (s->h.compression_type == QCOW2_COMPRESSION_ZSTD) {
        return inflate_zstd(src, len, dst, s->cluster_size);
    }
    return inflate_raw(src, len, dst, s->cluster_size);
}
