/* qcow2: naming another backing file, or none, in the image header (the
 * end of a stream job: the layers it copied leave the chain).
 *
 * What decides the backing file lives in the first cluster: the fixed
 * header's backing_file_offset and backing_file_size, the backing format
 * extension, and the name itself.  The new header area is built in memory
 * from the one on disk (every other field and extension kept byte for
 * byte, the backing format extension replaced or left out, the name put
 * after the end marker) and written with one write at offset 0, after
 * all metadata and data written so far are durable, and synced.  The area
 * is at most one page and starts the file, so the kernel copies it in
 * one step and a process crash leaves either the old header or the new
 * one; both describe the same guest data, since everything the dropped
 * layers held was copied (and made durable) first.  The common case, no
 * backing file left in an image qemu-img or blkmig made, fits in one
 * 512-byte sector, which a power failure cannot tear either. */
#include <errno.h>
#include <inttypes.h>

#include "qcow2.h"

#define ROUND_UP8(x) (((x) + 7) & ~(uint64_t)7)
/* The largest header area written in one step: a page. */
#define MAX_HEADER_AREA 4096

/* The new header area being built. */
typedef struct HeaderArea {
    uint8_t *buf;            /* MAX_HEADER_AREA bytes, zeroed */
    uint64_t pos;            /* next free byte */
    uint64_t limit;          /* MIN(cluster size, MAX_HEADER_AREA) */
} HeaderArea;

static bool area_put(HeaderArea *a, const void *data, uint64_t len, uint64_t padded)
{
    if (a->pos + padded > a->limit) {
        return false;
    }
    memcpy(a->buf + a->pos, data, len);
    a->pos += padded;
    return true;
}

static bool put_extension(HeaderArea *a, uint32_t type, const void *data, uint32_t len)
{
    uint32_t be[2] = { GUINT32_TO_BE(type), GUINT32_TO_BE(len) };
    return area_put(a, be, 8, 8) && area_put(a, data, len, ROUND_UP8((uint64_t)len));
}

/* Copies one extension into the area, all but the backing format. */
static bool copy_extension(Qcow2State *s, uint32_t type, const uint8_t *data, uint32_t len,
                           void *opaque, GError **errp)
{
    return type == QCOW2_EXT_BACKING_FORMAT || put_extension(opaque, type, data, len);
}

/* The extensions of the header C0 on disk (as checked at open, or as
 * this file wrote them), all but the backing format; the new one first
 * when FORMAT is given. */
static bool copy_extensions(Qcow2State *s, const uint8_t *c0, uint64_t c0_len,
                            HeaderArea *a, const char *format)
{
    uint64_t zero = 0;

    if (format && !put_extension(a, QCOW2_EXT_BACKING_FORMAT, format, (uint32_t)strlen(format))) {
        return false;
    }
    return qcow2_walk_extensions(s, c0, c0_len, copy_extension, a, NULL) &&
           area_put(a, &zero, 8, 8);            /* the end marker */
}

/* The fixed header of C0 with the backing name at the area's end. */
static bool finish_area(Qcow2State *s, const uint8_t *c0, HeaderArea *a, const char *name)
{
    uint64_t name_off = name ? a->pos : 0;
    uint32_t name_len = name ? (uint32_t)strlen(name) : 0;
    uint64_t off_be = GUINT64_TO_BE(name_off);
    uint32_t len_be = GUINT32_TO_BE(name_len);

    if (name && !area_put(a, name, name_len, name_len)) {
        return false;
    }
    memcpy(a->buf, c0, s->h.header_length);
    memcpy(a->buf + offsetof(Qcow2Header, backing_file_offset), &off_be, 8);
    memcpy(a->buf + offsetof(Qcow2Header, backing_file_size), &len_be, 4);
    return true;
}

/* The new header area in A, from the header cluster on disk. */
static int build_area(Qcow2State *s, HeaderArea *a, const char *name, const char *format)
{
    uint64_t c0_len = MIN(s->cluster_size, (uint64_t)bdrv_getlength(s->file));
    uint8_t *c0 = g_malloc0(s->cluster_size);
    int ret = bdrv_pread(s->file, 0, c0, c0_len);

    a->limit = MIN(s->cluster_size, (uint64_t)MAX_HEADER_AREA);
    a->pos = s->h.header_length;
    if (ret == 0 && !(copy_extensions(s, c0, c0_len, a, format) && finish_area(s, c0, a, name))) {
        ret = -ENOSPC;            /* the name does not fit in the header area */
    }
    g_free(c0);
    return ret;
}

static void remember_backing(Qcow2State *s, const char *name, const char *format,
                             uint64_t name_off)
{
    g_free(s->backing_file);
    g_free(s->backing_format);
    s->backing_file = g_strdup(name);
    s->backing_format = g_strdup(format);
    s->h.backing_file_offset = name_off;
    s->h.backing_file_size = name ? (uint32_t)strlen(name) : 0;
}

int qcow2_change_backing_file(BlockDriverState *bs, const char *name, const char *format)
{
    Qcow2State *s = bdrv_opaque(bs);
    HeaderArea a = { .buf = g_malloc0(MAX_HEADER_AREA) };

    if (name && (!*name || strlen(name) > QCOW2_MAX_BACKING_NAME)) {
        g_free(a.buf);
        return -EINVAL;
    }
    if (format && (!*format || strlen(format) > 15)) {
        format = NULL;             /* the extension holds 1..15 bytes */
    }
    g_mutex_lock(&s->lock);
    int ret = s->read_only ? -EPERM : s->corrupt ? -EIO : 0;
    ret = ret < 0 ? ret : qcow2_metadata_flush(s, true);
    ret = ret < 0 ? ret : build_area(s, &a, name, format);
    ret = ret < 0 ? ret : bdrv_pwrite(s->file, 0, a.buf, a.pos, 0);
    ret = ret < 0 ? ret : qcow2_sync(s);
    if (ret == 0) {
        remember_backing(s, name, format, name ? a.pos - strlen(name) : 0);
    }
    g_mutex_unlock(&s->lock);
    g_free(a.buf);
    return ret;
}
