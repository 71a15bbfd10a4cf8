/* Benchmark disk images, fast and reproducible.
 *
 *   mkimage PATH SIZE full SEED
 *       PATH becomes a raw image of SIZE bytes, every byte random.
 *   mkimage PATH SIZE scatter PERCENT SEED
 *       PATH becomes a sparse raw image of SIZE bytes holding random runs
 *       of 64 KiB..1 MiB at random 64 KiB-aligned offsets, until PERCENT
 *       of the size holds data (runs may touch; none is counted twice).
 *
 * SIZE takes a k/M/G/T suffix (binary).  The data comes from xoshiro256**
 * seeded from SEED, so the same arguments always give the same image, and
 * no 4 KiB block of it is all zeroes.  Prints the bytes of data written.
 *
 * Built by tests/bench/run.sh: cc -O2 -o build/bench/mkimage mkimage.c */
#define _FILE_OFFSET_BITS 64
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BENCH_PROG "mkimage"
#include "bench-util.h"

#define UNIT (64 * 1024)           /* run granularity */
#define MAX_RUN_UNITS 16           /* 1 MiB */
#define BUF_SIZE (1024 * 1024)

static uint64_t s[4];

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t next(void)
{
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static void seed(uint64_t x)
{
    for (int i = 0; i < 4; i++) {   /* splitmix64 */
        uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        s[i] = z ^ (z >> 31);
    }
}

static void fill(uint64_t *buf, size_t len)
{
    for (size_t i = 0; i < len / 8; i++) {
        buf[i] = next();
    }
}

static void write_all(int fd, const void *buf, size_t len, uint64_t off)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, buf, len, (off_t)off);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            die("write");
        }
        buf = (const char *)buf + n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
}

int main(int argc, char **argv)
{
    if (argc < 5 || (strcmp(argv[3], "full") && strcmp(argv[3], "scatter")) ||
        (!strcmp(argv[3], "scatter") && argc < 6)) {
        fprintf(stderr, "usage: mkimage PATH SIZE full SEED\n"
                        "       mkimage PATH SIZE scatter PERCENT SEED\n");
        return 2;
    }
    uint64_t size = parse_size(argv[2], 1);
    int full = !strcmp(argv[3], "full");
    seed(strtoull(argv[full ? 4 : 5], NULL, 0));

    int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0) {
        die(argv[1]);
    }
    uint64_t *buf = malloc(BUF_SIZE);
    if (!buf) {
        die("malloc");
    }
    uint64_t written = 0;

    if (full) {
        for (uint64_t off = 0; off < size; off += BUF_SIZE) {
            size_t len = size - off < BUF_SIZE ? (size_t)(size - off) : BUF_SIZE;
            fill(buf, BUF_SIZE);
            write_all(fd, buf, len, off);
            written += len;
        }
    } else {
        double pct = strtod(argv[4], NULL);
        uint64_t units = size / UNIT;
        uint64_t want = (uint64_t)((double)units * pct / 100.0);
        uint8_t *used = calloc(units ? units : 1, 1);
        if (!used || pct <= 0 || pct > 100) {
            fprintf(stderr, "mkimage: bad percent '%s' or out of memory\n", argv[4]);
            return 2;
        }
        uint64_t have = 0;
        while (have < want) {
            uint64_t len = 1 + next() % MAX_RUN_UNITS;
            uint64_t start = next() % units;
            if (start + len > units) {
                len = units - start;
            }
            if (len > want - have) {
                len = want - have;      /* new units are at most len */
            }
            fill(buf, len * UNIT);
            write_all(fd, buf, len * UNIT, start * UNIT);
            for (uint64_t u = start; u < start + len; u++) {
                have += !used[u];
                used[u] = 1;
            }
        }
        written = have * UNIT;
        free(used);
    }
    if (close(fd) < 0) {
        die("close");
    }
    free(buf);
    printf("%" PRIu64 "\n", written);
    return 0;
}
