/* 128-bit seeded XXH3 from libxxhash behind blkmig's own small API, so
 * callers never see the library and every digest is in one canonical
 * byte order. */
#include "util/checksum.h"

#include <glib.h>
#include <string.h>
#include <xxhash.h>

struct Checksum {
    XXH3_state_t *state;
};

Checksum *checksum_new(uint64_t seed)
{
    Checksum *c = g_new0(Checksum, 1);

    c->state = XXH3_createState();
    if (!c->state) {
        g_error("checksum: out of memory");
    }
    XXH3_128bits_reset_withSeed(c->state, seed);
    return c;
}

void checksum_free(Checksum *c)
{
    if (c) {
        XXH3_freeState(c->state);
        g_free(c);
    }
}

void checksum_update(Checksum *c, const void *data, size_t len)
{
    XXH3_128bits_update(c->state, data, len);
}

void checksum_update_be64(Checksum *c, uint64_t value)
{
    uint64_t be = GUINT64_TO_BE(value);

    checksum_update(c, &be, sizeof(be));
}

static void canonical(XXH128_hash_t h, ChecksumDigest *out)
{
    XXH128_canonical_t canon;

    G_STATIC_ASSERT(sizeof(canon.digest) == CHECKSUM_LEN);
    XXH128_canonicalFromHash(&canon, h);
    memcpy(out->bytes, canon.digest, CHECKSUM_LEN);
}

void checksum_digest(const Checksum *c, ChecksumDigest *out)
{
    canonical(XXH3_128bits_digest(c->state), out);
}

void checksum_buffer(uint64_t seed, const void *data, size_t len, ChecksumDigest *out)
{
    canonical(XXH3_128bits_withSeed(data, len, seed), out);
}

char *checksum_to_hex(const ChecksumDigest *d)
{
    GString *s = g_string_sized_new(CHECKSUM_LEN * 2);

    for (size_t i = 0; i < CHECKSUM_LEN; i++) {
        g_string_append_printf(s, "%02x", d->bytes[i]);
    }
    return g_string_free(s, FALSE);
}
