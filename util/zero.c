/* Zero detection.  Guests and migration test whole 1 MiB chunks, so the hot
 * path reads aligned 8-byte words, eight at a time, and only tests the
 * OR-ed result once per 64 bytes. */
#include "util/zero.h"

#include <stdint.h>

/* may_alias: the caller's buffer is bytes of any type. */
typedef uint64_t __attribute__((may_alias)) zero_word;

bool buffer_is_zero_plain(const void *buf, size_t len)
{
    const unsigned char *p = buf;

    for (size_t i = 0; i < len; i++) {
        if (p[i]) {
            return false;
        }
    }
    return true;
}

static bool words_are_zero(const zero_word *w, size_t nwords)
{
    size_t i = 0;

    for (; i + 8 <= nwords; i += 8) {
        if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] |
            w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7]) {
            return false;
        }
    }
    zero_word acc = 0;
    for (; i < nwords; i++) {
        acc |= w[i];
    }
    return acc == 0;
}

bool buffer_is_zero(const void *buf, size_t len)
{
    const unsigned char *p = buf;

    if (len < 2 * sizeof(zero_word)) {
        return buffer_is_zero_plain(p, len);
    }
    /* Data chunks usually fail on the first or last byte: test them before
     * walking the whole buffer. */
    if (p[0] | p[len - 1]) {
        return false;
    }
    size_t head = (sizeof(zero_word) - (uintptr_t)p % sizeof(zero_word)) % sizeof(zero_word);
    if (!buffer_is_zero_plain(p, head)) {
        return false;
    }
    p += head;
    len -= head;
    size_t nwords = len / sizeof(zero_word);
    if (!words_are_zero((const zero_word *)p, nwords)) {
        return false;
    }
    return buffer_is_zero_plain(p + nwords * sizeof(zero_word), len % sizeof(zero_word));
}
