/* Compression of migration data chunks with zlib or zstd.
 *
 * Each chunk is one self-contained compressed unit whose uncompressed size
 * the receiver already knows (the stream carries it), so decompression
 * writes into a buffer of exactly that size and rejects anything else.
 * Compressed data comes from the network: decompression treats it as
 * hostile and never writes outside the buffer it is given.
 *
 * Contexts are reusable and cheap per call, but not thread-safe: keep one
 * Compressor or Decompressor per thread. */
#ifndef UTIL_COMPRESS_H
#define UTIL_COMPRESS_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum {
    COMPRESS_INVALID = -1,   /* what compress_algo_from_name returns for unknown names */
    COMPRESS_NONE,           /* data copied as it is */
    COMPRESS_ZLIB,           /* zlib format (RFC 1950: deflate + Adler-32) */
    COMPRESS_ZSTD,           /* one zstd frame with content size and checksum */
} CompressAlgo;

/* Error domain for compressor_compress and decompressor_decompress. */
GQuark compress_error_quark(void);
#define COMPRESS_ERROR compress_error_quark()

typedef enum {
    COMPRESS_ERROR_INVALID,    /* bad algorithm, level or length */
    COMPRESS_ERROR_NO_SPACE,   /* compressed data does not fit dst_cap */
    COMPRESS_ERROR_CORRUPT,    /* input is not valid compressed data */
    COMPRESS_ERROR_SIZE,       /* valid data, but not expected_len bytes */
    COMPRESS_ERROR_FAILED,     /* the library failed for another reason */
} CompressError;

/* "none", "zlib" or "zstd" to the algorithm; COMPRESS_INVALID otherwise. */
CompressAlgo compress_algo_from_name(const char *name);

/* The name compress_algo_from_name accepts; NULL for an invalid value. */
const char *compress_algo_name(CompressAlgo algo);

/* Default and accepted levels: zstd 1..19, zlib 1..9, none 0; level 0
 * asks for the default, which is 1 (fastest) for both. */
#define COMPRESS_LEVEL_DEFAULT 0
int compress_level_min(CompressAlgo algo);
int compress_level_max(CompressAlgo algo);

typedef struct Compressor Compressor;
typedef struct Decompressor Decompressor;

/* A compression context for ALGO at LEVEL (see above); NULL with an error
 * naming the valid range when either is out of range. */
Compressor *compressor_new(CompressAlgo algo, int level, GError **errp);
void compressor_free(Compressor *c);
CompressAlgo compressor_algo(const Compressor *c);
int compressor_level(const Compressor *c);

/* Largest compressed size of LEN input bytes: a dst_cap this big always
 * suffices.  0 when LEN is too big for one call (above 4 GiB - 1). */
size_t compressor_bound(Compressor *c, size_t len);

/* Compress SRC[0..len) into DST[0..dst_cap); *OUT_LEN gets the size.  When
 * the result would not fit, fails with COMPRESS_ERROR_NO_SPACE (the caller
 * may send the data uncompressed instead); DST may then hold garbage but
 * nothing past dst_cap is written.  Below the bound, zstd may report
 * NO_SPACE even when the result would have fit with a few bytes to spare. */
bool compressor_compress(Compressor *c, const void *src, size_t len,
                         void *dst, size_t dst_cap, size_t *out_len, GError **errp);

/* A decompression context for ALGO; NULL if ALGO is invalid. */
Decompressor *decompressor_new(CompressAlgo algo);
void decompressor_free(Decompressor *d);

/* Decompress SRC[0..len), which must be exactly one compressed unit, into
 * DST, whose capacity is exactly EXPECTED_LEN.  Fails (COMPRESS_ERROR_CORRUPT
 * or COMPRESS_ERROR_SIZE, with a message saying what was wrong) unless
 * SRC is intact and decompresses to exactly EXPECTED_LEN bytes.  Never
 * writes outside DST[0..expected_len); on failure DST may hold garbage. */
bool decompressor_decompress(Decompressor *d, const void *src, size_t len,
                             void *dst, size_t expected_len, GError **errp);

G_DEFINE_AUTOPTR_CLEANUP_FUNC(Compressor, compressor_free)
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Decompressor, decompressor_free)

#endif
