/* Checksums of data that crossed a network or sat on another host's disk:
 * 128-bit XXH3 (libxxhash), seeded so a digest depends on a secret of the
 * caller's choosing as well as on the data.  The one home of hashing in
 * blkmig: the storage check of migrations without `block` uses it, and
 * per-record checksums will. */
#ifndef UTIL_CHECKSUM_H
#define UTIL_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

#define CHECKSUM_LEN 16

/* A digest in canonical form: big-endian bytes, the same on every host,
 * so it can go on the wire and be compared with memcmp. */
typedef struct ChecksumDigest {
    uint8_t bytes[CHECKSUM_LEN];
} ChecksumDigest;

/* A running digest over several pieces of data. */
typedef struct Checksum Checksum;

Checksum *checksum_new(uint64_t seed);
void checksum_free(Checksum *c);
void checksum_update(Checksum *c, const void *data, size_t len);
/* Convenience for fixed-size fields: VALUE as 8 big-endian bytes. */
void checksum_update_be64(Checksum *c, uint64_t value);
/* The digest of everything fed so far (C stays usable). */
void checksum_digest(const Checksum *c, ChecksumDigest *out);

/* The digest of one buffer: the same as new, update, digest. */
void checksum_buffer(uint64_t seed, const void *data, size_t len, ChecksumDigest *out);

/* Lower-case hex of D (CHECKSUM_LEN * 2 characters) for messages; caller
 * frees. */
char *checksum_to_hex(const ChecksumDigest *d);

#endif
