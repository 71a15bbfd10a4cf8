/* Generic block layer: drive registry, request checks, O_DIRECT bounce
 * buffers, and dirty-bitmap marking after successful writes. */
#include "block/block.h"

#include <errno.h>
#include <gio/gio.h>
#include <stdlib.h>
#include <string.h>

#include "block-int.h"

#define ROUND_DOWN(x, a) ((x) / (a) * (a))
#define ROUND_UP(x, a) ROUND_DOWN((x) + (a) - 1, (a))

/* Protects drives and drivers. */
static GMutex registry_lock;
static GQueue drives = G_QUEUE_INIT;     /* BlockDriverState *, open order */
static GPtrArray *drivers;               /* const BlockDriver * */

/* The zeroes an unaligned head or tail of a cache=none write-zeroes writes. */
static const uint8_t zero_block[BDRV_DIRECT_ALIGN];

/* ---- Driver and drive registry ---- */

static void ensure_builtin_drivers_locked(void)
{
    if (!drivers) {
        drivers = g_ptr_array_new();
        g_ptr_array_add(drivers, (gpointer)&bdrv_raw);
    }
}

void bdrv_register_driver(const BlockDriver *drv)
{
    g_mutex_lock(&registry_lock);
    ensure_builtin_drivers_locked();
    g_ptr_array_add(drivers, (gpointer)drv);
    g_mutex_unlock(&registry_lock);
}

static const BlockDriver *find_driver_locked(const char *format)
{
    ensure_builtin_drivers_locked();
    for (guint i = 0; i < drivers->len; i++) {
        const BlockDriver *drv = drivers->pdata[i];
        if (strcmp(drv->format_name, format) == 0) {
            return drv;
        }
    }
    return NULL;
}

static char *driver_names_locked(void)
{
    GString *s = g_string_new(NULL);
    for (guint i = 0; i < drivers->len; i++) {
        const BlockDriver *drv = drivers->pdata[i];
        g_string_append_printf(s, "%s%s", i ? ", " : "", drv->format_name);
    }
    return g_string_free(s, FALSE);
}

static BlockDriverState *find_drive_locked(const char *id)
{
    for (GList *l = drives.head; l; l = l->next) {
        BlockDriverState *bs = l->data;
        if (strcmp(bs->id, id) == 0) {
            return bs;
        }
    }
    return NULL;
}

BlockDriverState *bdrv_find(const char *id)
{
    g_mutex_lock(&registry_lock);
    BlockDriverState *bs = find_drive_locked(id);
    g_mutex_unlock(&registry_lock);
    return bs;
}

GList *bdrv_list(void)
{
    g_mutex_lock(&registry_lock);
    GList *list = g_list_copy(drives.head);
    g_mutex_unlock(&registry_lock);
    return list;
}

/* ---- Open and close ---- */

static BlockDriverState *drive_new(const BlockOptions *opts, const BlockDriver *drv)
{
    BlockDriverState *bs = g_new0(BlockDriverState, 1);

    bs->id = g_strdup(opts->id);
    bs->filename = g_strdup(opts->filename);
    bs->format = g_strdup(drv->format_name);
    bs->opts = *opts;
    bs->opts.id = bs->id;
    bs->opts.filename = bs->filename;
    bs->opts.format = bs->format;
    bs->drv = drv;
    bs->opaque = g_malloc0(drv->instance_size ? drv->instance_size : 1);
    bs->align = opts->cache_none ? BDRV_DIRECT_ALIGN : 1;
    g_rw_lock_init(&bs->rmw_lock);
    g_rw_lock_init(&bs->bitmaps_lock);
    return bs;
}

static void drive_free(BlockDriverState *bs)
{
    g_rw_lock_clear(&bs->rmw_lock);
    g_rw_lock_clear(&bs->bitmaps_lock);
    g_free(bs->opaque);
    g_free(bs->id);
    g_free(bs->filename);
    g_free(bs->format);
    g_free(bs);
}

static bool check_open_options(const BlockOptions *opts, GError **errp)
{
    if (!opts->id || !*opts->id) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "A drive needs an id (id=)");
        return false;
    }
    if (!opts->filename || !*opts->filename) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Drive '%s' needs a file name (file=)", opts->id);
        return false;
    }
    if (opts->overwrite && !opts->create) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Drive '%s': overwrite=on needs create=on", opts->id);
        return false;
    }
    return true;
}

/* Looks up the driver and makes sure the id is free; registry locked. */
static const BlockDriver *check_registry_locked(const BlockOptions *opts, GError **errp)
{
    const char *format = opts->format && *opts->format ? opts->format : "raw";
    const BlockDriver *drv = find_driver_locked(format);

    if (!drv) {
        char *names = driver_names_locked();
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "Unknown format '%s' for drive '%s' (supported: %s)",
                    format, opts->id, names);
        g_free(names);
        return NULL;
    }
    if (find_drive_locked(opts->id)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_EXISTS,
                    "Duplicate drive id '%s'", opts->id);
        return NULL;
    }
    return drv;
}

static bool driver_open(BlockDriverState *bs, const BlockOptions *opts, GError **errp)
{
    if (bs->drv->open(bs, opts, errp) < 0) {
        return false;
    }
    int64_t len = bs->drv->getlength(bs);
    if (len < 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno((int)-len),
                    "Cannot get the size of '%s': %s", bs->filename, g_strerror((int)-len));
        bs->drv->close(bs);
        return false;
    }
    bs->size = (uint64_t)len;
    return true;
}

/* The registry lock is held across the driver's open so that two opens of
 * the same id cannot both succeed. */
BlockDriverState *bdrv_open(const BlockOptions *opts, GError **errp)
{
    if (!check_open_options(opts, errp)) {
        return NULL;
    }
    g_mutex_lock(&registry_lock);
    BlockDriverState *bs = NULL;
    const BlockDriver *drv = check_registry_locked(opts, errp);
    if (drv) {
        bs = drive_new(opts, drv);
        if (driver_open(bs, &bs->opts, errp)) {
            g_queue_push_tail(&drives, bs);
        } else {
            bdrv_create_undo(bs);
            drive_free(bs);
            bs = NULL;
        }
    }
    g_mutex_unlock(&registry_lock);
    return bs;
}

void bdrv_close(BlockDriverState *bs)
{
    if (!bs) {
        return;
    }
    g_mutex_lock(&registry_lock);
    g_queue_remove(&drives, bs);
    g_mutex_unlock(&registry_lock);

    bdrv_release_all_dirty_bitmaps(bs);
    bs->drv->close(bs);
    drive_free(bs);
}

void bdrv_close_all(void)
{
    for (;;) {
        g_mutex_lock(&registry_lock);
        BlockDriverState *bs = g_queue_peek_tail(&drives);
        g_mutex_unlock(&registry_lock);
        if (!bs) {
            return;
        }
        bdrv_close(bs);
    }
}

/* ---- Properties ---- */

const char *bdrv_get_id(BlockDriverState *bs) { return bs->id; }
const char *bdrv_get_filename(BlockDriverState *bs) { return bs->filename; }
const char *bdrv_get_format(BlockDriverState *bs) { return bs->format; }
bool bdrv_is_read_only(BlockDriverState *bs) { return bs->opts.read_only; }
bool bdrv_is_cache_none(BlockDriverState *bs) { return bs->opts.cache_none; }
bool bdrv_is_aio_native(BlockDriverState *bs) { return bs->opts.aio_native; }
int64_t bdrv_getlength(BlockDriverState *bs) { return (int64_t)bs->size; }
void *bdrv_opaque(BlockDriverState *bs) { return bs->opaque; }

int64_t bdrv_allocated_bytes(BlockDriverState *bs)
{
    return bs->drv->allocated_bytes ? bs->drv->allocated_bytes(bs) : -ENOTSUP;
}

/* ---- Buffers ---- */

size_t bdrv_buf_align(BlockDriverState *bs)
{
    return bs ? bs->align : BDRV_DIRECT_ALIGN;
}

void *bdrv_buf_alloc(BlockDriverState *bs, size_t len)
{
    size_t align = MAX(bdrv_buf_align(bs), (size_t)64);
    void *buf;

    if (posix_memalign(&buf, align, len ? len : 1) != 0) {
        g_error("Out of memory allocating a %zu-byte I/O buffer", len);
    }
    return buf;
}

void bdrv_buf_free(void *buf)
{
    free(buf);
}

/* ---- Request checks ---- */

static int check_request(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    return off > bs->size || len > bs->size - off ? -EINVAL : 0;
}

static int check_write(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    return bs->opts.read_only ? -EPERM : check_request(bs, off, len);
}

/* O_DIRECT can take the request as it is.  A request ending at the end of
 * a file whose size is unaligned is fine too: the driver handles that
 * partial block. */
static bool is_direct_ok(BlockDriverState *bs, uint64_t off, const void *buf, uint64_t len)
{
    size_t a = bs->align;
    return off % a == 0 && (uintptr_t)buf % a == 0 &&
           (len % a == 0 || off + len == bs->size);
}

/* Does a write of [off, off+len) need to read blocks it only partly covers? */
static bool needs_rmw(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    uint64_t end = off + len;
    return off % bs->align || (end % bs->align && end != bs->size);
}

/* The aligned window around [off, off+len), clipped to the drive. */
static void aligned_window(BlockDriverState *bs, uint64_t off, uint64_t len,
                           uint64_t *start, uint64_t *end)
{
    *start = ROUND_DOWN(off, bs->align);
    *end = MIN(ROUND_UP(off + len, bs->align), bs->size);
}

/* ---- Reads ---- */

static int bounce_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len)
{
    uint64_t start, end;
    aligned_window(bs, off, len, &start, &end);

    uint8_t *bounce = bdrv_buf_alloc(bs, end - start);
    int ret = bs->drv->pread(bs, start, bounce, end - start);
    if (ret == 0) {
        memcpy(buf, bounce + (off - start), len);
    }
    bdrv_buf_free(bounce);
    return ret;
}

int bdrv_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len)
{
    int ret = check_request(bs, off, len);
    if (ret < 0 || len == 0) {
        return ret;
    }
    if (is_direct_ok(bs, off, buf, len)) {
        return bs->drv->pread(bs, off, buf, len);
    }
    return bounce_pread(bs, off, buf, len);
}

/* ---- Writes ---- */

/* Fill the partly covered first and last blocks of the window from disk.
 * Caller holds rmw_lock exclusively. */
static int rmw_read_edges(BlockDriverState *bs, uint64_t off, uint64_t len,
                          uint64_t start, uint64_t end, uint8_t *bounce)
{
    uint64_t a = bs->align;
    bool head_read = false;
    int ret;

    if (off != start) {
        ret = bs->drv->pread(bs, start, bounce, MIN(start + a, end) - start);
        if (ret < 0) {
            return ret;
        }
        head_read = true;
    }
    uint64_t req_end = off + len;
    uint64_t tail = ROUND_DOWN(req_end, a);
    if (req_end % a && req_end != bs->size && !(head_read && tail == start)) {
        ret = bs->drv->pread(bs, tail, bounce + (tail - start), end - tail);
        if (ret < 0) {
            return ret;
        }
    }
    return 0;
}

static int rmw_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, size_t len, int flags)
{
    uint64_t start, end;
    aligned_window(bs, off, len, &start, &end);
    uint8_t *bounce = bdrv_buf_alloc(bs, end - start);

    g_rw_lock_writer_lock(&bs->rmw_lock);
    int ret = rmw_read_edges(bs, off, len, start, end, bounce);
    if (ret == 0) {
        memcpy(bounce + (off - start), buf, len);
        ret = bs->drv->pwrite(bs, start, bounce, end - start, flags);
    }
    g_rw_lock_writer_unlock(&bs->rmw_lock);
    bdrv_buf_free(bounce);
    return ret;
}

/* Block-aligned write whose buffer may still be unaligned. */
static int direct_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, size_t len, int flags)
{
    void *bounce = NULL;

    if ((uintptr_t)buf % bs->align) {
        bounce = bdrv_buf_alloc(bs, len);
        memcpy(bounce, buf, len);
        buf = bounce;
    }
    g_rw_lock_reader_lock(&bs->rmw_lock);
    int ret = bs->drv->pwrite(bs, off, buf, len, flags);
    g_rw_lock_reader_unlock(&bs->rmw_lock);
    bdrv_buf_free(bounce);
    return ret;
}

static int cache_none_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, size_t len, int flags)
{
    if (needs_rmw(bs, off, len)) {
        return rmw_pwrite(bs, off, buf, len, flags);
    }
    return direct_pwrite(bs, off, buf, len, flags);
}

int bdrv_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, size_t len, int flags)
{
    int ret = check_write(bs, off, len);
    if (ret < 0 || len == 0) {
        return ret;
    }
    if (bs->align == 1) {
        ret = bs->drv->pwrite(bs, off, buf, len, flags);
    } else {
        ret = cache_none_pwrite(bs, off, buf, len, flags);
    }
    if (ret == 0) {
        bdrv_dirty_bitmaps_mark(bs, off, len);
    }
    return ret;
}

int bdrv_flush(BlockDriverState *bs)
{
    return bs->drv->flush ? bs->drv->flush(bs) : 0;
}

/* ---- Write zeroes and discard ---- */

static int driver_pwrite_zeroes(BlockDriverState *bs, uint64_t off, uint64_t len, int flags)
{
    if (!bs->drv->pwrite_zeroes) {
        return -ENOTSUP;
    }
    g_rw_lock_reader_lock(&bs->rmw_lock);
    int ret = bs->drv->pwrite_zeroes(bs, off, len, flags);
    g_rw_lock_reader_unlock(&bs->rmw_lock);
    return ret;
}

/* cache=none: the partial blocks at either end are written as zero data
 * through read-modify-write; the aligned middle goes to the driver, which
 * can deallocate it. */
static int cache_none_pwrite_zeroes(BlockDriverState *bs, uint64_t off, uint64_t len, int flags)
{
    uint64_t a = bs->align;
    uint64_t end = off + len;
    int fua = flags & BDRV_REQ_FUA;
    int ret;

    if (off % a) {
        uint64_t head_end = MIN(ROUND_UP(off, a), end);
        ret = rmw_pwrite(bs, off, zero_block, head_end - off, fua);
        if (ret < 0) {
            return ret;
        }
        off = head_end;
    }
    if (off < end && end % a && end != bs->size) {
        uint64_t tail = MAX(ROUND_DOWN(end, a), off);
        ret = rmw_pwrite(bs, tail, zero_block, end - tail, fua);
        if (ret < 0) {
            return ret;
        }
        end = tail;
    }
    return off < end ? driver_pwrite_zeroes(bs, off, end - off, flags) : 0;
}

int bdrv_pwrite_zeroes(BlockDriverState *bs, uint64_t off, uint64_t len, int flags)
{
    int ret = check_write(bs, off, len);
    if (ret < 0 || len == 0) {
        return ret;
    }
    if (bs->align == 1) {
        ret = driver_pwrite_zeroes(bs, off, len, flags);
    } else {
        ret = cache_none_pwrite_zeroes(bs, off, len, flags);
    }
    if (ret == 0) {
        bdrv_dirty_bitmaps_mark(bs, off, len);
    }
    return ret;
}

int bdrv_discard(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    int ret = check_write(bs, off, len);
    if (ret < 0 || len == 0) {
        return ret;
    }
    if (!bs->drv->discard) {
        return -ENOTSUP;
    }
    g_rw_lock_reader_lock(&bs->rmw_lock);
    ret = bs->drv->discard(bs, off, len);
    g_rw_lock_reader_unlock(&bs->rmw_lock);
    if (ret == 0) {
        bdrv_dirty_bitmaps_mark(bs, off, len);
    }
    return ret;
}

/* ---- Block status ---- */

int bdrv_block_status(BlockDriverState *bs, uint64_t off, uint64_t len,
                      uint64_t *pnum, bool *is_data)
{
    int ret = check_request(bs, off, len);
    if (ret < 0 || len == 0) {
        return ret < 0 ? ret : -EINVAL;
    }
    if (!bs->drv->block_status) {
        *pnum = len;
        *is_data = true;
        return 0;
    }
    return bs->drv->block_status(bs, off, len, pnum, is_data);
}
