/* Whole-daemon harness: real sparse disk files: making, filling,
 * scattering data, copying with holes, measuring and comparing them. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libqtest-internal.h"

#define CHUNK (1u << 20)

static int open_or_fail(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC, 0644);
    if (fd < 0) {
        qtest_fail("open %s: %s", path, g_strerror(errno));
    }
    return fd;
}

uint64_t qtest_file_size(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        qtest_fail("stat %s: %s", path, g_strerror(errno));
    }
    return (uint64_t)st.st_size;
}

uint64_t qtest_allocated_bytes(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0) {
        qtest_fail("stat %s: %s", path, g_strerror(errno));
    }
    return (uint64_t)st.st_blocks * 512;
}

void qtest_disk_create(const char *path, uint64_t size)
{
    int fd = open_or_fail(path, O_WRONLY | O_CREAT | O_TRUNC);
    if (ftruncate(fd, (off_t)size) < 0) {
        qtest_fail("ftruncate %s: %s", path, g_strerror(errno));
    }
    close(fd);
}

static void pread_full(int fd, void *buf, size_t len, uint64_t off, const char *path)
{
    ssize_t n = pread(fd, buf, len, (off_t)off);
    if (n != (ssize_t)len) {
        qtest_fail("read %s at %" G_GUINT64_FORMAT ": %s", path, off,
                   n < 0 ? g_strerror(errno) : "short read");
    }
}

static void pwrite_full(int fd, const void *buf, size_t len, uint64_t off, const char *path)
{
    ssize_t n = pwrite(fd, buf, len, (off_t)off);
    if (n != (ssize_t)len) {
        qtest_fail("write %s at %" G_GUINT64_FORMAT ": %s", path, off,
                   n < 0 ? g_strerror(errno) : "short write");
    }
}

/* Random bytes, with every 4 KiB block holding a non-zero byte so no block
 * of the run can be mistaken for a hole. */
static void fill_random(GRand *rng, guint8 *buf, uint64_t len)
{
    for (uint64_t i = 0; i < len; i += 4) {
        guint32 v = g_rand_int(rng);
        memcpy(buf + i, &v, MIN(4, len - i));
    }
    for (uint64_t i = 0; i < len; i += 4096) {
        buf[i] |= 1;
    }
}

uint64_t qtest_disk_scatter(const char *path, uint64_t seed, unsigned runs, uint64_t run_len)
{
    uint64_t size = qtest_file_size(path);
    g_assert_cmpuint(run_len, <=, size);
    guint32 seeds[2] = { (guint32)seed, (guint32)(seed >> 32) };
    GRand *rng = g_rand_new_with_seed_array(seeds, 2);
    uint64_t slots = (size - run_len) / 4096 + 1;
    uint64_t nchunks = (size + CHUNK - 1) / CHUNK;
    guint8 *touched = g_new0(guint8, nchunks);
    guint8 *buf = g_malloc(run_len);
    int fd = open_or_fail(path, O_WRONLY);

    for (unsigned i = 0; i < runs; i++) {
        uint64_t r = ((uint64_t)g_rand_int(rng) << 32) | g_rand_int(rng);
        uint64_t off = (r % slots) * 4096;
        fill_random(rng, buf, run_len);
        pwrite_full(fd, buf, run_len, off, path);
        for (uint64_t c = off / CHUNK; c <= (off + run_len - 1) / CHUNK; c++) {
            touched[c] = 1;
        }
    }
    close(fd);

    uint64_t count = 0;
    for (uint64_t c = 0; c < nchunks; c++) {
        count += touched[c];
    }
    g_free(buf);
    g_free(touched);
    g_rand_free(rng);
    return count;
}

void qtest_disk_fill(const char *path, uint64_t size, uint64_t seed)
{
    GRand *rng = g_rand_new_with_seed((guint32)seed);
    guint8 *buf = g_malloc(CHUNK);
    int fd = open_or_fail(path, O_WRONLY | O_CREAT | O_TRUNC);

    fill_random(rng, buf, CHUNK);
    for (uint64_t off = 0; off < size; off += CHUNK) {
        /* Each block stamped with its offset: chunks differ, none is zero. */
        for (uint64_t b = 0; b < CHUNK; b += 4096) {
            uint64_t stamp = off + b + 1;
            memcpy(buf + b, &stamp, sizeof(stamp));
        }
        pwrite_full(fd, buf, MIN(CHUNK, size - off), off, path);
    }
    close(fd);
    g_free(buf);
    g_rand_free(rng);
}

/* Next data offset at or after OFF, or SIZE when only holes follow. */
static uint64_t next_data(int fd, uint64_t off, uint64_t size)
{
    if (off >= size) {
        return size;
    }
    off_t r = lseek(fd, (off_t)off, SEEK_DATA);
    return r < 0 ? size : MIN((uint64_t)r, size);
}

static bool all_zero(const guint8 *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (buf[i]) {
            return false;
        }
    }
    return true;
}

uint64_t qtest_disk_data_chunks(const char *path)
{
    uint64_t size = qtest_file_size(path);
    int fd = open_or_fail(path, O_RDONLY);
    guint8 *buf = g_malloc(CHUNK);
    uint64_t count = 0;

    for (uint64_t off = 0; off < size; off += CHUNK) {
        uint64_t data = next_data(fd, off, size);
        if (data >= size) {
            break;
        }
        off = data / CHUNK * CHUNK;  /* holes between chunks are skipped */
        size_t len = MIN(CHUNK, size - off);
        pread_full(fd, buf, len, off, path);
        count += !all_zero(buf, len);
    }
    g_free(buf);
    close(fd);
    return count;
}

uint64_t qtest_disk_nonzero_bytes(const char *path)
{
    const size_t block = 4096;
    uint64_t size = qtest_file_size(path);
    int fd = open_or_fail(path, O_RDONLY);
    guint8 *buf = g_malloc(CHUNK);
    uint64_t count = 0;

    for (uint64_t off = 0; off < size; off += CHUNK) {
        uint64_t data = next_data(fd, off, size);
        if (data >= size) {
            break;
        }
        off = data / CHUNK * CHUNK;
        size_t len = MIN(CHUNK, size - off);
        pread_full(fd, buf, len, off, path);
        for (size_t i = 0; i < len; i += block) {
            size_t n = MIN(block, len - i);
            count += all_zero(buf + i, n) ? 0 : n;
        }
    }
    g_free(buf);
    close(fd);
    return count;
}

/* First differing byte of two equally long buffers, or LEN. */
static size_t first_mismatch(const guint8 *a, const guint8 *b, size_t len)
{
    if (memcmp(a, b, len) == 0) {
        return len;
    }
    size_t i = 0;
    while (a[i] == b[i]) {
        i++;
    }
    return i;
}

bool qtest_files_equal(const char *a, const char *b, uint64_t *first_diff)
{
    uint64_t size = qtest_file_size(a);
    uint64_t size_b = qtest_file_size(b);
    int fa = open_or_fail(a, O_RDONLY);
    int fb = open_or_fail(b, O_RDONLY);
    guint8 *ba = g_malloc(CHUNK), *bb = g_malloc(CHUNK);
    uint64_t common = MIN(size, size_b);
    uint64_t diff = size == size_b ? UINT64_MAX : common;
    uint64_t off = 0;

    while (off < common && diff == UINT64_MAX) {
        /* Where both files are holes they read as zeroes: skip. */
        uint64_t data = MIN(next_data(fa, off, common), next_data(fb, off, common));
        if (data > off) {
            off = data;
            continue;
        }
        size_t len = MIN(CHUNK, common - off);
        pread_full(fa, ba, len, off, a);
        pread_full(fb, bb, len, off, b);
        size_t at = first_mismatch(ba, bb, len);
        if (at < len) {
            diff = off + at;
        }
        off += len;
    }
    g_free(ba);
    g_free(bb);
    close(fa);
    close(fb);
    if (diff != UINT64_MAX && first_diff) {
        *first_diff = diff;
    }
    return diff == UINT64_MAX;
}

void qtest_disk_set(const char *path, uint64_t off, uint64_t len, uint8_t byte)
{
    g_autofree uint8_t *buf = g_malloc(len);
    int fd = open(path, O_WRONLY | O_CLOEXEC);

    g_assert_cmpint(fd, >=, 0);
    memset(buf, byte, len);
    g_assert_cmpint(pwrite(fd, buf, len, off), ==, (ssize_t)len);
    close(fd);
}

void qtest_disk_copy(const char *src, const char *dst)
{
    uint64_t size = qtest_file_size(src);
    int in = open_or_fail(src, O_RDONLY);
    int out = open_or_fail(dst, O_WRONLY | O_CREAT | O_TRUNC);
    guint8 *buf = g_malloc(CHUNK);

    if (ftruncate(out, (off_t)size) < 0) {
        qtest_fail("ftruncate %s: %s", dst, g_strerror(errno));
    }
    for (uint64_t off = next_data(in, 0, size); off < size;) {
        off_t hole = lseek(in, (off_t)off, SEEK_HOLE);
        uint64_t end = hole < 0 ? size : MIN((uint64_t)hole, size);
        for (; off < end; off += CHUNK) {
            size_t len = MIN(CHUNK, end - off);
            pread_full(in, buf, len, off, src);
            pwrite_full(out, buf, len, off, dst);
        }
        off = next_data(in, end, size);
    }
    g_free(buf);
    close(in);
    close(out);
}
