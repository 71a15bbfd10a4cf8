/* Compression of migration data chunks: one-shot zlib or zstd on contexts
 * reused across chunks, so the per-chunk cost is the work itself and not
 * allocating and freeing library state.
 *
 * Decompression input is hostile (it comes off the network): every size is
 * checked before use, the library is told the exact output capacity, and
 * each failure says which check failed so a broken stream can be told from
 * a broken peer.  Both formats carry a checksum of the uncompressed data
 * (zlib's Adler-32, zstd's frame checksum, which we turn on) because a
 * corrupt chunk that happens to decode would otherwise land silently on
 * the destination disk. */
#include "util/compress.h"

#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#define ZLIB_CONST   /* next_in is const: the caller's input is not ours */
#include <zlib.h>
#include <zstd.h>
#include <zstd_errors.h>

/* zlib counts in uInt; one limit for both formats keeps bound() simple.
 * Chunks are 1 MiB, far below it. */
#define COMPRESS_MAX_LEN ((size_t)UINT_MAX)

struct Compressor {
    CompressAlgo algo;
    int level;
    ZSTD_CCtx *zstd;
    z_stream zlib;       /* initialised only for COMPRESS_ZLIB */
};

struct Decompressor {
    CompressAlgo algo;
    ZSTD_DCtx *zstd;
    z_stream zlib;       /* initialised only for COMPRESS_ZLIB */
};

G_DEFINE_QUARK(compress-error-quark, compress_error)

static const char *const algo_names[] = {
    [COMPRESS_NONE] = "none",
    [COMPRESS_ZLIB] = "zlib",
    [COMPRESS_ZSTD] = "zstd",
};

static bool algo_valid(CompressAlgo algo)
{
    return algo >= COMPRESS_NONE && algo <= COMPRESS_ZSTD;
}

CompressAlgo compress_algo_from_name(const char *name)
{
    for (int i = COMPRESS_NONE; name && i <= COMPRESS_ZSTD; i++) {
        if (strcmp(name, algo_names[i]) == 0) {
            return (CompressAlgo)i;
        }
    }
    return COMPRESS_INVALID;
}

const char *compress_algo_name(CompressAlgo algo)
{
    return algo_valid(algo) ? algo_names[algo] : NULL;
}

/* zstd goes to 22, but 20..22 need hundreds of MiB per context: far too
 * much for per-thread migration contexts. */
int compress_level_min(CompressAlgo algo)
{
    return algo == COMPRESS_ZLIB || algo == COMPRESS_ZSTD ? 1 : 0;
}

int compress_level_max(CompressAlgo algo)
{
    switch (algo) {
    case COMPRESS_ZLIB:
        return 9;
    case COMPRESS_ZSTD:
        return 19;
    default:
        return 0;
    }
}

/* ---- compression ---- */

static bool zstd_compressor_init(Compressor *c, GError **errp)
{
    c->zstd = ZSTD_createCCtx();
    if (!c->zstd) {
        g_set_error(errp, COMPRESS_ERROR, COMPRESS_ERROR_FAILED, "zstd: cannot create a context");
        return false;
    }
    /* Parameters stick to the context across ZSTD_compress2 calls. */
    size_t r = ZSTD_CCtx_setParameter(c->zstd, ZSTD_c_compressionLevel, c->level);
    if (!ZSTD_isError(r)) {
        r = ZSTD_CCtx_setParameter(c->zstd, ZSTD_c_checksumFlag, 1);
    }
    if (!ZSTD_isError(r)) {
        r = ZSTD_CCtx_setParameter(c->zstd, ZSTD_c_contentSizeFlag, 1);
    }
    if (ZSTD_isError(r)) {
        g_set_error(errp, COMPRESS_ERROR, COMPRESS_ERROR_FAILED, "zstd: cannot set up level %d: %s",
                    c->level, ZSTD_getErrorName(r));
        return false;
    }
    return true;
}

static bool zlib_compressor_init(Compressor *c, GError **errp)
{
    int r = deflateInit(&c->zlib, c->level);

    if (r != Z_OK) {
        g_set_error(errp, COMPRESS_ERROR, COMPRESS_ERROR_FAILED, "zlib: cannot set up level %d: %s",
                    c->level, zError(r));
        return false;
    }
    return true;
}

static bool check_algo_level(CompressAlgo algo, int level, GError **errp)
{
    if (!algo_valid(algo)) {
        g_set_error(errp, COMPRESS_ERROR, COMPRESS_ERROR_INVALID,
                    "unknown compression algorithm %d", (int)algo);
        return false;
    }
    if (level < compress_level_min(algo) || level > compress_level_max(algo)) {
        g_set_error(errp, COMPRESS_ERROR, COMPRESS_ERROR_INVALID,
                    "%s compression level %d is out of range %d..%d", algo_names[algo], level,
                    compress_level_min(algo), compress_level_max(algo));
        return false;
    }
    return true;
}

Compressor *compressor_new(CompressAlgo algo, int level, GError **errp)
{
    if (level == COMPRESS_LEVEL_DEFAULT && algo != COMPRESS_NONE) {
        level = 1;   /* migration is throughput-bound: fastest level */
    }
    if (!check_algo_level(algo, level, errp)) {
        return NULL;
    }
    Compressor *c = g_new0(Compressor, 1);
    c->algo = algo;
    c->level = level;
    bool ok = true;
    if (algo == COMPRESS_ZSTD) {
        ok = zstd_compressor_init(c, errp);
    } else if (algo == COMPRESS_ZLIB) {
        ok = zlib_compressor_init(c, errp);
    }
    if (!ok) {
        ZSTD_freeCCtx(c->zstd);
        g_free(c);
        return NULL;
    }
    return c;
}

void compressor_free(Compressor *c)
{
    if (!c) {
        return;
    }
    if (c->algo == COMPRESS_ZLIB) {
        deflateEnd(&c->zlib);
    }
    ZSTD_freeCCtx(c->zstd);
    g_free(c);
}

CompressAlgo compressor_algo(const Compressor *c)
{
    return c->algo;
}

int compressor_level(const Compressor *c)
{
    return c->level;
}

size_t compressor_bound(Compressor *c, size_t len)
{
    if (len > COMPRESS_MAX_LEN) {
        return 0;
    }
    switch (c->algo) {
    case COMPRESS_ZLIB:
        /* Exact for this stream's settings, unlike compressBound(). */
        return deflateBound(&c->zlib, (uLong)len);
    case COMPRESS_ZSTD:
        return ZSTD_compressBound(len);
    default:
        return len;
    }
}

static bool no_space(size_t len, size_t dst_cap, GError **errp)
{
    g_set_error(errp, COMPRESS_ERROR, COMPRESS_ERROR_NO_SPACE,
                "%zu bytes do not compress into %zu", len, dst_cap);
    return false;
}

static bool zstd_compress(Compressor *c, const void *src, size_t len,
                          void *dst, size_t dst_cap, size_t *out_len, GError **errp)
{
    size_t r = ZSTD_compress2(c->zstd, dst, dst_cap, src, len);

    if (ZSTD_isError(r)) {
        if (ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall) {
            return no_space(len, dst_cap, errp);
        }
        g_set_error(errp, COMPRESS_ERROR, COMPRESS_ERROR_FAILED, "zstd compression failed: %s",
                    ZSTD_getErrorName(r));
        return false;
    }
    *out_len = r;
    return true;
}

static bool zlib_compress(Compressor *c, const void *src, size_t len,
                          void *dst, size_t dst_cap, size_t *out_len, GError **errp)
{
    z_stream *s = &c->zlib;

    deflateReset(s);
    s->next_in = src;
    s->avail_in = (uInt)len;
    s->next_out = dst;
    s->avail_out = (uInt)MIN(dst_cap, COMPRESS_MAX_LEN);
    int r = deflate(s, Z_FINISH);
    if (r == Z_STREAM_END) {
        *out_len = s->total_out;
        return true;
    }
    if (r == Z_OK || r == Z_BUF_ERROR) {   /* ran out of output space */
        return no_space(len, dst_cap, errp);
    }
    g_set_error(errp, COMPRESS_ERROR, COMPRESS_ERROR_FAILED, "zlib compression failed: %s",
                s->msg ? s->msg : zError(r));
    return false;
}

bool compressor_compress(Compressor *c, const void *src, size_t len,
                         void *dst, size_t dst_cap, size_t *out_len, GError **errp)
{
    if (len > COMPRESS_MAX_LEN) {
        g_set_error(errp, COMPRESS_ERROR, COMPRESS_ERROR_INVALID,
                    "%zu bytes are too many to compress in one call", len);
        return false;
    }
    switch (c->algo) {
    case COMPRESS_ZLIB:
        /* Both formats have a header, so 0 bytes never suffice; zlib
         * would also reject a NULL dst. */
        return dst_cap ? zlib_compress(c, src, len, dst, dst_cap, out_len, errp)
                       : no_space(len, dst_cap, errp);
    case COMPRESS_ZSTD:
        return dst_cap ? zstd_compress(c, src, len, dst, dst_cap, out_len, errp)
                       : no_space(len, dst_cap, errp);
    default:
        if (len > dst_cap) {
            return no_space(len, dst_cap, errp);
        }
        if (len) {
            memcpy(dst, src, len);
        }
        *out_len = len;
        return true;
    }
}

/* ---- decompression ---- */

Decompressor *decompressor_new(CompressAlgo algo)
{
    if (!algo_valid(algo)) {
        return NULL;
    }
    Decompressor *d = g_new0(Decompressor, 1);
    d->algo = algo;
    if (algo == COMPRESS_ZSTD) {
        d->zstd = ZSTD_createDCtx();
        if (!d->zstd) {
            g_error("zstd: out of memory creating a decompression context");
        }
    } else if (algo == COMPRESS_ZLIB) {
        /* windowBits 15 without +32: zlib format only, no gzip sniffing. */
        int r = inflateInit(&d->zlib);
        if (r != Z_OK) {
            g_error("zlib: cannot create a decompression context: %s", zError(r));
        }
    }
    return d;
}

void decompressor_free(Decompressor *d)
{
    if (!d) {
        return;
    }
    if (d->algo == COMPRESS_ZLIB) {
        inflateEnd(&d->zlib);
    }
    ZSTD_freeDCtx(d->zstd);
    g_free(d);
}

static bool corrupt(GError **errp, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static bool corrupt(GError **errp, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_propagate_error(errp, g_error_new_valist(COMPRESS_ERROR, COMPRESS_ERROR_CORRUPT, fmt, ap));
    va_end(ap);
    return false;
}

static bool wrong_size(GError **errp, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static bool wrong_size(GError **errp, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    g_propagate_error(errp, g_error_new_valist(COMPRESS_ERROR, COMPRESS_ERROR_SIZE, fmt, ap));
    va_end(ap);
    return false;
}

/* The frame header says how big the frame and its content are: check both
 * against what we were given before decompressing anything.  Only the
 * current frame format is accepted (magic checked here), so legacy and
 * skippable frames never reach the decoder. */
static bool zstd_check_frame(const void *src, size_t len, size_t expected_len, GError **errp)
{
    uint32_t magic = 0;

    if (len >= sizeof(magic)) {
        memcpy(&magic, src, sizeof(magic));
    }
    if (GUINT32_FROM_LE(magic) != ZSTD_MAGICNUMBER) {
        return corrupt(errp, "not a zstd frame (%zu bytes, bad magic number)", len);
    }
    unsigned long long content = ZSTD_getFrameContentSize(src, len);
    if (content == ZSTD_CONTENTSIZE_ERROR) {
        return corrupt(errp, "corrupt zstd frame header (%zu bytes)", len);
    }
    if (content != ZSTD_CONTENTSIZE_UNKNOWN && content != expected_len) {
        return wrong_size(errp, "zstd frame holds %llu bytes, expected %zu", content, expected_len);
    }
    size_t frame = ZSTD_findFrameCompressedSize(src, len);
    if (ZSTD_isError(frame)) {
        return corrupt(errp, "corrupt or truncated zstd frame (%zu bytes): %s", len,
                       ZSTD_getErrorName(frame));
    }
    if (frame != len) {
        return corrupt(errp, "%zu unexpected bytes after the %zu-byte zstd frame",
                       len - frame, frame);
    }
    return true;
}

static bool zstd_decompress(Decompressor *d, const void *src, size_t len,
                            void *dst, size_t expected_len, GError **errp)
{
    if (!zstd_check_frame(src, len, expected_len, errp)) {
        return false;
    }
    /* The capacity is exactly expected_len: zstd stops (with an error)
     * rather than write more. */
    size_t r = ZSTD_decompressDCtx(d->zstd, dst, expected_len, src, len);
    if (ZSTD_isError(r)) {
        if (ZSTD_getErrorCode(r) == ZSTD_error_dstSize_tooSmall) {
            return wrong_size(errp, "zstd frame holds more than the expected %zu bytes",
                              expected_len);
        }
        return corrupt(errp, "corrupt zstd data: %s", ZSTD_getErrorName(r));
    }
    if (r != expected_len) {
        return wrong_size(errp, "zstd frame holds %zu bytes, expected %zu", r, expected_len);
    }
    return true;
}

/* inflate stopped without reaching the end of the stream: say whether the
 * input or the room for output ran out. */
static bool zlib_incomplete(const z_stream *s, size_t expected_len, GError **errp)
{
    if (s->avail_out == 0 && s->avail_in > 0) {
        return wrong_size(errp, "zlib stream holds more than the expected %zu bytes", expected_len);
    }
    return corrupt(errp, "truncated zlib stream: it ends after %lu of the expected %zu bytes"
                   " of output%s", s->total_out, expected_len,
                   s->total_out == expected_len ? ", before its checksum" : "");
}

static bool zlib_decompress(Decompressor *d, const void *src, size_t len,
                            void *dst, size_t expected_len, GError **errp)
{
    z_stream *s = &d->zlib;
    unsigned char none;   /* zlib wants a real pointer even for 0 bytes */

    inflateReset(s);
    s->next_in = src;
    s->avail_in = (uInt)len;
    s->next_out = expected_len ? dst : &none;
    s->avail_out = (uInt)expected_len;
    int r = inflate(s, Z_FINISH);
    switch (r) {
    case Z_STREAM_END:
        if (s->avail_in) {
            return corrupt(errp, "%u unexpected bytes after the zlib stream", s->avail_in);
        }
        if (s->total_out != expected_len) {
            return wrong_size(errp, "zlib stream holds %lu bytes, expected %zu", s->total_out,
                              expected_len);
        }
        return true;
    case Z_OK:
    case Z_BUF_ERROR:
        return zlib_incomplete(s, expected_len, errp);
    case Z_NEED_DICT:
        return corrupt(errp, "corrupt zlib data: stream asks for a preset dictionary");
    case Z_DATA_ERROR:
        return corrupt(errp, "corrupt zlib data: %s", s->msg ? s->msg : "invalid stream");
    default:
        g_set_error(errp, COMPRESS_ERROR, COMPRESS_ERROR_FAILED, "zlib decompression failed: %s",
                    s->msg ? s->msg : zError(r));
        return false;
    }
}

bool decompressor_decompress(Decompressor *d, const void *src, size_t len,
                             void *dst, size_t expected_len, GError **errp)
{
    if (len > COMPRESS_MAX_LEN || expected_len > COMPRESS_MAX_LEN) {
        g_set_error(errp, COMPRESS_ERROR, COMPRESS_ERROR_INVALID,
                    "%zu bytes into %zu are too many to decompress in one call", len, expected_len);
        return false;
    }
    switch (d->algo) {
    case COMPRESS_ZLIB:
        return zlib_decompress(d, src, len, dst, expected_len, errp);
    case COMPRESS_ZSTD:
        return zstd_decompress(d, src, len, dst, expected_len, errp);
    default:
        if (len != expected_len) {
            return wrong_size(errp, "uncompressed chunk has %zu bytes, expected %zu", len,
                              expected_len);
        }
        if (len) {
            memcpy(dst, src, len);
        }
        return true;
    }
}
