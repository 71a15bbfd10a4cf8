/* libFuzzer target: the qcow2 driver's header and metadata parser.  Each
 * input is an image file (tmpfs) opened with format=qcow2, first
 * read-only: a few ranges read, the whole disk walked for block status
 * (four states, through the backing chain), closed; then, when that open
 * worked, read-write: a write, a write of zeroes, a discard and a flush
 * through the metadata the input holds, closed (which writes what is
 * dirty) and opened once more.  Opening must fail with a message or
 * succeed; everything else may fail, but only with an error code.
 *
 * A header naming a backing file gets this harness's own (a 1 MiB raw
 * file in the scratch directory, through the open's backing= option), so
 * no input makes the driver open a file of its choosing. */
#include <errno.h>
#include <glib.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "block/block.h"
#include "../../../block/qcow2.h"
#include "../../lib/drives.h"
#include "harness.h"

#define BACKING_SIZE (1024 * 1024)
#define READ_LEN (64 * 1024)
/* Enough runs to cover the seeds' images; a hostile one may have more. */
#define MAX_EXTENTS 512

static char *image_path;
static char *backing_path;
static uint8_t *buf;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    BlockDriverState *base;

    fuzz_init();
    image_path = fuzz_scratch_path("image.qcow2");
    backing_path = fuzz_scratch_path("base.raw");
    base = td_open_drive("fuzz-base", backing_path, BACKING_SIZE);
    td_write_drive(base, 4096, 8192, 9);
    bdrv_close(base);
    buf = g_malloc(READ_LEN);
    return 0;
}

/* The backing file offset of a qcow2 header, 0 when too short to say. */
static uint64_t header_backing_offset(const uint8_t *data, size_t size)
{
    size_t at = offsetof(Qcow2Header, backing_file_offset);
    uint64_t be;

    if (size < at + sizeof(be)) {
        return 0;
    }
    memcpy(&be, data + at, sizeof(be));
    return GUINT64_FROM_BE(be);
}

static BlockDriverState *open_image(bool read_only, bool with_backing)
{
    BlockOptions o = {
        .id = "fuzz", .filename = image_path, .format = "qcow2", .read_only = read_only,
        .backing = with_backing ? backing_path : NULL,
        .backing_format = with_backing ? "raw" : NULL,
    };
    GError *err = NULL;
    BlockDriverState *bs = bdrv_open(&o, &err);

    if (!bs && (!err || !err->message[0])) {
        fprintf(stderr, "bdrv_open failed without a message\n");
        abort();
    }
    g_clear_error(&err);
    return bs;
}

/* An I/O result: 0 or a negative errno, nothing else. */
static void check_ret(int ret, const char *what)
{
    if (ret > 0 || ret < -4095) {
        fprintf(stderr, "%s returned %d\n", what, ret);
        abort();
    }
}

static void read_some(BlockDriverState *bs, uint64_t size)
{
    uint64_t offs[] = { 0, size / 2, size > READ_LEN ? size - READ_LEN : 0 };

    for (size_t i = 0; i < G_N_ELEMENTS(offs); i++) {
        size_t len = MIN((uint64_t)READ_LEN, size - offs[i]);
        if (len) {
            check_ret(bdrv_pread(bs, offs[i], buf, len), "bdrv_pread");
        }
    }
}

static void walk_status(BlockDriverState *bs, uint64_t size, BdrvWalkMode mode)
{
    BdrvWalk w;
    BdrvExtent e;
    int ret = 1;

    bdrv_walk_init(&w, bs, 0, size, mode, 0);
    for (int n = 0; n < MAX_EXTENTS && ret > 0; n++) {
        ret = bdrv_walk_next(&w, &e);
        if (ret > 0 && (e.len == 0 || e.off + e.len > size)) {
            fprintf(stderr, "block status run [%" G_GUINT64_FORMAT ", +%" G_GUINT64_FORMAT
                    ") of a %" G_GUINT64_FORMAT "-byte disk\n", e.off, e.len, size);
            abort();
        }
    }
    check_ret(ret, "bdrv_walk_next");
}

static void read_only_pass(BlockDriverState *bs)
{
    int64_t size = bdrv_getlength(bs);

    if (size <= 0) {
        return;
    }
    read_some(bs, size);
    walk_status(bs, size, BDRV_WALK_DEPTH);
    walk_status(bs, size, BDRV_WALK_TOP);
}

static void write_pass(BlockDriverState *bs)
{
    int64_t size = bdrv_getlength(bs);
    uint64_t mid = size > 8192 ? (uint64_t)size / 2 / 4096 * 4096 : 0;

    if (size < 8192) {
        return;
    }
    memset(buf, 0x5a, 4096);
    check_ret(bdrv_pwrite(bs, mid, buf, 4096, 0), "bdrv_pwrite");
    check_ret(bdrv_pwrite_zeroes(bs, 0, 4096, BDRV_REQ_MAY_UNMAP), "bdrv_pwrite_zeroes");
    check_ret(bdrv_discard(bs, size - 4096, 4096), "bdrv_discard");
    check_ret(bdrv_flush(bs), "bdrv_flush");
    check_ret(bdrv_pread(bs, mid, buf, 4096), "bdrv_pread");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bool backing = header_backing_offset(data, size) != 0;
    BlockDriverState *bs;

    fuzz_write_file(image_path, data, size);
    bs = open_image(true, backing);
    if (!bs) {
        return 0;
    }
    read_only_pass(bs);
    bdrv_close(bs);
    bs = open_image(false, backing);
    if (bs) {
        write_pass(bs);
        bdrv_close(bs);
        bs = open_image(true, backing);
    }
    if (bs) {
        read_only_pass(bs);
        bdrv_close(bs);
    }
    return 0;
}
