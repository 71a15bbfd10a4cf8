/* buffer_is_zero against the byte-loop reference, at every alignment. */
#include <glib.h>
#include <stdint.h>
#include <string.h>

#include "util/zero.h"

#define MAX_ALIGN 64
#define MAX_SMALL_LEN 300

/* Check BUF[0..len) when all zero and with one non-zero byte at each
 * position, comparing with the plain version. */
static void check_every_position(unsigned char *buf, size_t len)
{
    g_assert_true(buffer_is_zero(buf, len));
    g_assert_true(buffer_is_zero_plain(buf, len));
    for (size_t pos = 0; pos < len; pos++) {
        buf[pos] = (unsigned char)(1u << (pos % 8));
        if (buffer_is_zero(buf, len) != buffer_is_zero_plain(buf, len) ||
            buffer_is_zero(buf, len)) {
            g_test_message("len %zu, non-zero byte at %zu, align %zu", len, pos,
                           (size_t)((uintptr_t)buf % MAX_ALIGN));
            g_test_fail();
        }
        buf[pos] = 0;
    }
}

static void test_small_all_alignments(void)
{
    /* Guard bytes around the window must never be looked at: they are
     * non-zero, so a read outside [buf, buf+len) would report "not zero". */
    unsigned char *mem = g_malloc(MAX_ALIGN * 2 + MAX_SMALL_LEN + 64);
    unsigned char *base = (unsigned char *)(((uintptr_t)mem + MAX_ALIGN - 1) & ~(uintptr_t)(MAX_ALIGN - 1));

    for (size_t align = 0; align < MAX_ALIGN; align++) {
        for (size_t len = 0; len <= MAX_SMALL_LEN; len++) {
            unsigned char *buf = base + align;
            memset(mem, 0xff, MAX_ALIGN * 2 + MAX_SMALL_LEN + 64);
            memset(buf, 0, len);
            check_every_position(buf, len);
        }
    }
    g_free(mem);
}

static void test_big_lengths(void)
{
    static const size_t lens[] = { 4095, 4096, 4097, 65536 + 3, 1 << 20 };
    unsigned char *mem = g_malloc0((1 << 20) + 2 * MAX_ALIGN);

    for (size_t i = 0; i < G_N_ELEMENTS(lens); i++) {
        for (size_t align = 0; align < 16; align += 5) {
            unsigned char *buf = mem + align;
            size_t len = lens[i];
            g_assert_true(buffer_is_zero(buf, len));
            /* First, last, middle and word-boundary neighbours. */
            size_t probes[] = { 0, 1, 7, 8, 63, 64, len / 2, len - 9, len - 8, len - 2, len - 1 };
            for (size_t p = 0; p < G_N_ELEMENTS(probes); p++) {
                buf[probes[p]] = 0x80;
                g_assert_false(buffer_is_zero(buf, len));
                g_assert_false(buffer_is_zero_plain(buf, len));
                buf[probes[p]] = 0;
            }
        }
    }
    g_free(mem);
}

/* A full sweep over a 1 MiB + odd buffer, a byte at a time, every 97th
 * position (keeps the run short while hitting every offset modulo 8/64). */
static void test_big_sweep(void)
{
    size_t len = (1 << 20) + 13;
    unsigned char *mem = g_malloc0(len + 3);
    unsigned char *buf = mem + 3;

    for (size_t pos = 0; pos < len; pos += 97) {
        buf[pos] = 1;
        g_assert_false(buffer_is_zero(buf, len));
        buf[pos] = 0;
    }
    g_assert_true(buffer_is_zero(buf, len));
    g_free(mem);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/zero/small-all-alignments", test_small_all_alignments);
    g_test_add_func("/zero/big-lengths", test_big_lengths);
    g_test_add_func("/zero/big-sweep", test_big_sweep);
    return g_test_run();
}
