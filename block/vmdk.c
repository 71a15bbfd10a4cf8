/* The vmdk format driver, read-only (VMware images as a source for
 * imports): monolithicSparse and streamOptimized images, i.e. one hosted
 * sparse extent with its descriptor inside.  Probing claims every vmdk
 * kind, so that the others (descriptor files, ESX extents) are refused
 * with their name instead of being opened as raw.  The header is in
 * vmdk-header.c, reads and block status in vmdk-read.c. */
#include <errno.h>
#include <gio/gio.h>
#include <string.h>

#include "vmdk.h"

static int vmdk_probe(const uint8_t *buf, size_t len)
{
    if (len >= 4 && memcmp(buf, VMDK_MAGIC, 4) == 0) {
        return 100;
    }
    g_autofree char *other = vmdk_unsupported_kind(buf, len);
    return other ? 100 : 0;
}

static void free_state(VmdkState *s)
{
    vmdk_cache_free(s);
    g_clear_pointer(&s->gd, g_free);
    g_mutex_clear(&s->lock);
}

/* Read-only, and only the kinds this driver reads. */
static bool check_kind(VmdkState *s, const BlockOptions *opts, GError **errp)
{
    uint8_t buf[BDRV_PROBE_BUF_SIZE];
    size_t n = (size_t)MIN((uint64_t)sizeof(buf), s->file_size);
    int ret = bdrv_pread(s->file, 0, buf, n);
    g_autofree char *other = ret == 0 ? vmdk_unsupported_kind(buf, n) : NULL;

    if (ret < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-ret), "Cannot read '%s': %s",
                    opts->filename, g_strerror(-ret));
    } else if (other) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED, "vmdk image '%s' is %s: "
                    "blkmig reads monolithicSparse and streamOptimized images only",
                    opts->filename, other);
    } else if (!opts->read_only) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED, "vmdk image '%s': blkmig "
                    "opens vmdk images read-only only (read-only=on), e.g. to copy them",
                    opts->filename);
    }
    return ret == 0 && !other && opts->read_only;
}

static int vmdk_open(BlockDriverState *bs, const BlockOptions *opts, GError **errp)
{
    VmdkState *s = bdrv_opaque(bs);
    int64_t file_size = bdrv_getlength(bs->file);

    s->bs = bs;
    s->file = bs->file;
    s->file_size = file_size > 0 ? (uint64_t)file_size : 0;
    g_mutex_init(&s->lock);
    if (!check_kind(s, opts, errp) || vmdk_read_header(s, errp) < 0) {
        free_state(s);
        return -EINVAL;
    }
    if (opts->size && opts->size != s->size) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "vmdk image '%s' has %"
                    G_GUINT64_FORMAT " bytes, but size=%" G_GUINT64_FORMAT " was given",
                    opts->filename, s->size, opts->size);
        free_state(s);
        return -EINVAL;
    }
    return 0;
}

static void vmdk_close(BlockDriverState *bs)
{
    free_state(bdrv_opaque(bs));
}

static int64_t vmdk_getlength(BlockDriverState *bs)
{
    VmdkState *s = bdrv_opaque(bs);
    return (int64_t)s->size;
}

static int64_t vmdk_allocated_bytes(BlockDriverState *bs)
{
    return bdrv_allocated_bytes(bs->file);
}

static void vmdk_get_info(BlockDriverState *bs, BlockDriverInfo *info)
{
    VmdkState *s = bdrv_opaque(bs);
    info->cluster_size = (uint32_t)s->grain_bytes;
}

const BlockDriver bdrv_vmdk = {
    .format_name = "vmdk",
    .instance_size = sizeof(VmdkState),
    .probe = vmdk_probe,
    .open = vmdk_open,
    .close = vmdk_close,
    .getlength = vmdk_getlength,
    .pread = vmdk_pread,
    .block_status = vmdk_block_status,
    .allocated_bytes = vmdk_allocated_bytes,
    .get_info = vmdk_get_info,
};
