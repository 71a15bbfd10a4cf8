/* A hole-aware cmp: are two files byte for byte the same?
 *
 *   samefile FILE1 FILE2
 *
 * Holes read as zeroes, as with cmp, but ranges that are holes in both
 * files (SEEK_DATA/SEEK_HOLE) are skipped instead of read, and data is
 * compared in 32 KiB blocks: a 4 GiB image with 10% data compares in a
 * fraction of a second instead of seconds.  Exit status 0 when identical,
 * 1 when they differ (the first differing byte's offset is printed, as
 * cmp numbers it from 1), 2 on error.
 *
 * Built by tests/bench/run.sh: cc -O2 -o build/bench/samefile samefile.c */
#define _FILE_OFFSET_BITS 64
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef BLOCK
#define BLOCK (32 * 1024)     /* small enough to stay in the CPU caches */
#endif

static const char *names[2];

static void fail(int i, const char *what)
{
    fprintf(stderr, "samefile: %s: %s: %s\n", names[i], what, strerror(errno));
    exit(2);
}

/* Next offset >= POS holding data in FD, or SIZE when none. */
static off_t next_data(int i, int fd, off_t pos, off_t size)
{
    off_t r = lseek(fd, pos, SEEK_DATA);
    if (r < 0) {
        if (errno == ENXIO) {
            return size;
        }
        if (errno == EINVAL) {
            return pos;     /* no SEEK_DATA here: everything is data */
        }
        fail(i, "SEEK_DATA");
    }
    return r < size ? r : size;
}

/* End of the data run starting at POS in FD. */
static off_t next_hole(int i, int fd, off_t pos, off_t size)
{
    off_t r = lseek(fd, pos, SEEK_HOLE);
    if (r < 0) {
        if (errno == EINVAL || errno == ENXIO) {
            return size;
        }
        fail(i, "SEEK_HOLE");
    }
    return r < size ? r : size;
}

static void read_full(int i, int fd, char *buf, size_t len, off_t off)
{
    while (len > 0) {
        ssize_t n = pread(fd, buf, len, off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            if (n == 0) {
                errno = EIO;
            }
            fail(i, "read");
        }
        buf += n;
        len -= (size_t)n;
        off += n;
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: samefile FILE1 FILE2\n");
        return 2;
    }
    int fd[2];
    struct stat st[2];
    for (int i = 0; i < 2; i++) {
        names[i] = argv[i + 1];
        fd[i] = open(names[i], O_RDONLY);
        if (fd[i] < 0 || fstat(fd[i], &st[i]) < 0) {
            fail(i, "open");
        }
    }
    off_t size = st[0].st_size < st[1].st_size ? st[0].st_size : st[1].st_size;
    char *buf[2] = { malloc(BLOCK), malloc(BLOCK) };
    if (!buf[0] || !buf[1]) {
        fprintf(stderr, "samefile: out of memory\n");
        return 2;
    }

    off_t pos = 0;
    while (pos < size) {
        off_t d0 = next_data(0, fd[0], pos, size);
        off_t d1 = next_data(1, fd[1], pos, size);
        off_t start = d0 < d1 ? d0 : d1;    /* [pos, start) is a hole in both */
        if (start >= size) {
            break;
        }
        off_t end = start;
        if (d0 == start) {
            off_t h = next_hole(0, fd[0], start, size);
            end = h > end ? h : end;
        }
        if (d1 == start) {
            off_t h = next_hole(1, fd[1], start, size);
            end = h > end ? h : end;
        }
        if (end <= start) {     /* cannot happen; never loop forever */
            end = start + BLOCK < size ? start + BLOCK : size;
        }
        for (off_t off = start; off < end; off += BLOCK) {
            size_t len = end - off < BLOCK ? (size_t)(end - off) : BLOCK;
            read_full(0, fd[0], buf[0], len, off);
            read_full(1, fd[1], buf[1], len, off);
            if (memcmp(buf[0], buf[1], len)) {
                size_t k = 0;
                while (buf[0][k] == buf[1][k]) {
                    k++;
                }
                printf("%s %s differ: byte %" PRIu64 "\n", names[0], names[1],
                       (uint64_t)(off + (off_t)k) + 1);
                return 1;
            }
        }
        pos = end;
    }
    if (st[0].st_size != st[1].st_size) {
        printf("samefile: EOF on %s after byte %" PRIu64 "\n",
               names[st[0].st_size < st[1].st_size ? 0 : 1], (uint64_t)size);
        return 1;
    }
    return 0;
}
