/* The raw format: the drive is its file byte for byte, so every request
 * goes straight to the protocol node below.  One rule of its own: when
 * format=auto probed the image as raw, a guest write that would make the
 * first sector look like another format's header is refused, or the next
 * probe would open the image as that format and follow whatever backing
 * file the guest named (QEMU's probing-safety rule). */
#include <errno.h>
#include <gio/gio.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

#include "block-int.h"

typedef struct RawFormatState {
    GMutex sector0_lock;     /* probed images: checks + writes of sector 0 */
} RawFormatState;

static int raw_open(BlockDriverState *bs, const BlockOptions *opts, GError **errp)
{
    RawFormatState *s = bdrv_opaque(bs);
    int64_t size = bdrv_getlength(bs->file);

    if (opts->size && (uint64_t)size != opts->size) {
        /* create=on is the fix only for an empty file: one holding data
         * would be refused (and overwrite=on would erase it). */
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Drive '%s': '%s' has %" PRId64 " bytes, but size=%" PRIu64
                    " was given (%s)", opts->id ? opts->id : opts->filename, opts->filename,
                    size, opts->size, size ? "drop size= to use the image as it is"
                                           : "add create=on to grow the empty file to size=");
        return -EINVAL;
    }
    g_mutex_init(&s->sector0_lock);
    return 0;
}

/* create=on: a sparse file of exactly size= bytes, in the file the generic
 * rule (block/create.c) hands over: new, empty, or erased by overwrite=on. */
static int raw_create(const BlockOptions *opts, BdrvCreatedFile *made, GError **errp)
{
    if (opts->size == 0) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Drive '%s': create=on needs size=", opts->id ? opts->id : opts->filename);
        return -EINVAL;
    }
    int fd = bdrv_create_file(opts, made, errp);
    if (fd < 0) {
        return -EEXIST;
    }
    int ret = ftruncate(fd, (off_t)opts->size) < 0 ? -errno : 0;
    if (ret < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-ret),
                    "Cannot create '%s' with %" PRIu64 " bytes: %s",
                    opts->filename, opts->size, g_strerror(-ret));
    }
    close(fd);
    return ret;
}

static void raw_close(BlockDriverState *bs)
{
    RawFormatState *s = bdrv_opaque(bs);
    g_mutex_clear(&s->sector0_lock);
}

static int64_t raw_getlength(BlockDriverState *bs)
{
    return bdrv_getlength(bs->file);
}

static int raw_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len)
{
    return bdrv_pread(bs->file, off, buf, len);
}

static const void *raw_map_read(BlockDriverState *bs, uint64_t off, size_t len)
{
    return bdrv_map_read(bs->file, off, len);
}

static void raw_unmap_read(BlockDriverState *bs, const void *p, size_t len)
{
    bdrv_unmap_read(bs->file, p, len);
}

/* What the first sector would hold after writing BUF at OFF: the name of
 * the format it would look like, or NULL; < 0 when it cannot be read. */
static int sector0_after(BlockDriverState *bs, uint64_t off, const void *buf, size_t len,
                         const char **format)
{
    uint8_t sector[BDRV_PROBE_BUF_SIZE];
    size_t n = (size_t)MIN((uint64_t)sizeof(sector), bs->size);
    int ret = bdrv_pread(bs->file, 0, sector, n);

    if (ret < 0) {
        return ret;
    }
    memcpy(sector + off, buf, MIN(len, n - off));
    *format = bdrv_probe_non_raw(sector, n);
    return 0;
}

static int probed_sector0_pwrite(BlockDriverState *bs, uint64_t off, const void *buf,
                                 size_t len, int flags)
{
    RawFormatState *s = bdrv_opaque(bs);
    const char *format = NULL;

    g_mutex_lock(&s->sector0_lock);
    int ret = sector0_after(bs, off, buf, len, &format);
    if (ret == 0 && format) {
        g_warning("Refused a write to sector 0 of '%s': it would make the image look "
                  "like %s, and it was probed as raw (open it with format=raw to "
                  "allow such writes)", bs->filename, format);
        ret = -EPERM;
    } else if (ret == 0) {
        ret = bdrv_pwrite(bs->file, off, buf, len, flags);
    }
    g_mutex_unlock(&s->sector0_lock);
    return ret;
}

static int raw_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, size_t len, int flags)
{
    if (bs->probed && off < BDRV_PROBE_BUF_SIZE) {
        return probed_sector0_pwrite(bs, off, buf, len, flags);
    }
    return bdrv_pwrite(bs->file, off, buf, len, flags);
}

static int raw_flush(BlockDriverState *bs)
{
    return bdrv_flush(bs->file);
}

static int raw_pwrite_zeroes(BlockDriverState *bs, uint64_t off, uint64_t len, int flags)
{
    return bdrv_pwrite_zeroes(bs->file, off, len, flags);
}

static int raw_discard(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    return bdrv_discard(bs->file, off, len);
}

static int raw_block_status(BlockDriverState *bs, uint64_t off, uint64_t len,
                            uint64_t *pnum, BdrvStatus *status)
{
    return bdrv_layer_status(bs->file, off, len, pnum, status);
}

static int64_t raw_allocated_bytes(BlockDriverState *bs)
{
    return bdrv_allocated_bytes(bs->file);
}

/* The last resort of format=auto: anything can be raw. */
static int raw_probe(const uint8_t *buf, size_t len)
{
    return 1;
}

const BlockDriver bdrv_raw = {
    .format_name = "raw",
    .instance_size = sizeof(RawFormatState),
    .probe = raw_probe,
    .create = raw_create,
    .open = raw_open,
    .close = raw_close,
    .getlength = raw_getlength,
    .pread = raw_pread,
    .map_read = raw_map_read,
    .unmap_read = raw_unmap_read,
    .pwrite = raw_pwrite,
    .flush = raw_flush,
    .pwrite_zeroes = raw_pwrite_zeroes,
    .discard = raw_discard,
    .block_status = raw_block_status,
    .allocated_bytes = raw_allocated_bytes,
};
