/* Drives for in-process tests (see drives.h). */
#include "drives.h"

#include <glib.h>

#define MiB (UINT64_C(1) << 20)

BlockDriverState *td_open_drive(const char *id, const char *path, uint64_t size)
{
    BlockOptions opts = {
        .id = id, .filename = path, .format = "raw", .size = size, .create = true,
        .overwrite = true,
    };
    GError *err = NULL;
    BlockDriverState *bs = bdrv_open(&opts, &err);

    g_assert_no_error(err);
    g_assert_nonnull(bs);
    return bs;
}

void td_fill(uint8_t *buf, size_t len, uint8_t seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(seed + i * 7 + (i >> 12)) | 1;   /* never zero */
    }
}

void td_write_drive(BlockDriverState *bs, uint64_t off, size_t len, uint8_t seed)
{
    uint8_t *buf = g_malloc(len);

    td_fill(buf, len, seed);
    g_assert_cmpint(bdrv_pwrite(bs, off, buf, len, 0), ==, 0);
    g_assert_cmpint(bdrv_flush(bs), ==, 0);
    g_free(buf);
}

void td_populate(BlockDriverState *bs, uint64_t size, uint8_t seed)
{
    uint8_t *zeros = g_malloc0(MiB);

    td_write_drive(bs, 4096, 4096, seed);
    td_write_drive(bs, 3 * MiB + 512, 512, seed + 1);
    td_write_drive(bs, 2 * MiB, MiB, seed + 2);
    g_assert_cmpint(bdrv_pwrite(bs, 4 * MiB, zeros, MiB, 0), ==, 0);
    td_write_drive(bs, size - 512, 512, seed + 3);
    if (size > 16 * MiB) {
        td_write_drive(bs, 16 * MiB + 12345 * 512, 70000, seed + 4);
    }
    g_free(zeros);
}
