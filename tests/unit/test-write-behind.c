/* Write-behind (BlockOptions.write_behind, block/write-behind.c): what
 * several threads write reads back the same, and of a file written far
 * past the window, no more than about the window stays in the page cache
 * (the rest reached the disk and was dropped as the writes went on). */
#include <fcntl.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <linux/magic.h>
#include <sys/mman.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "block/block.h"
#include "../lib/drives.h"
#include "util/size.h"

#define WINDOW (64 * MiB)           /* block/write-behind.h */
#define DISK (4 * WINDOW)
#define CHUNK MiB
#define THREADS 4

typedef struct Writer {
    BlockDriverState *bs;
    int index;
} Writer;

/* Thread I writes every THREADS-th chunk. */
static gpointer write_chunks(gpointer data)
{
    Writer *w = data;
    uint8_t *buf = g_malloc(CHUNK);

    for (uint64_t c = (uint64_t)w->index; c < DISK / CHUNK; c += THREADS) {
        td_fill(buf, CHUNK, (uint8_t)c);
        g_assert_cmpint(bdrv_pwrite(w->bs, c * CHUNK, buf, CHUNK, 0), ==, 0);
    }
    g_free(buf);
    return NULL;
}

/* Bytes of PATH in the page cache. */
static uint64_t resident_bytes(const char *path)
{
    int fd = open(path, O_RDONLY);
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    void *map = mmap(NULL, DISK, PROT_READ, MAP_SHARED, fd, 0);
    g_autofree unsigned char *vec = g_malloc(DISK / page);
    uint64_t n = 0;

    g_assert_true(map != MAP_FAILED);
    g_assert_cmpint(mincore(map, DISK, vec), ==, 0);
    for (uint64_t i = 0; i < DISK / page; i++) {
        n += vec[i] & 1 ? page : 0;
    }
    munmap(map, DISK);
    close(fd);
    return n;
}

static void test_write_behind(void)
{
    g_autofree char *dir = g_dir_make_tmp("test-write-behind-XXXXXX", NULL);
    g_autofree char *path = g_build_filename(dir, "disk.raw", NULL);
    BlockOptions o = { .id = "wb", .filename = path, .format = "raw", .size = DISK,
                       .create = true, .write_behind = true };
    GError *err = NULL;
    BlockDriverState *bs = bdrv_open(&o, &err);
    Writer w[THREADS];
    GThread *t[THREADS];

    g_assert_no_error(err);
    struct statfs sf;
    if (statfs(dir, &sf) == 0 && sf.f_type == TMPFS_MAGIC) {
        g_test_skip("the scratch directory is on tmpfs: its files live in the page cache");
        bdrv_close(bs);
        g_unlink(path);
        g_rmdir(dir);
        return;
    }
    for (int i = 0; i < THREADS; i++) {
        w[i] = (Writer){ bs, i };
        t[i] = g_thread_new("writer", write_chunks, &w[i]);
    }
    for (int i = 0; i < THREADS; i++) {
        g_thread_join(t[i]);
    }
    uint64_t resident = resident_bytes(path);
    g_test_message("%" G_GUINT64_FORMAT " MiB of %d MiB in the page cache", resident / MiB,
                   (int)(DISK / MiB));
    g_assert_cmpuint(resident, <=, WINDOW + THREADS * CHUNK + 8 * MiB);
    g_assert_cmpint(bdrv_flush(bs), ==, 0);

    uint8_t *buf = g_malloc(CHUNK), *want = g_malloc(CHUNK);
    for (uint64_t c = 0; c < DISK / CHUNK; c++) {
        td_fill(want, CHUNK, (uint8_t)c);
        g_assert_cmpint(bdrv_pread(bs, c * CHUNK, buf, CHUNK), ==, 0);
        g_assert_cmpmem(buf, CHUNK, want, CHUNK);
    }
    g_free(buf);
    g_free(want);
    bdrv_close(bs);
    g_unlink(path);
    g_rmdir(dir);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/write-behind/bounded", test_write_behind);
    return g_test_run();
}
