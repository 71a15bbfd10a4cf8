/* The file protocol: a node that is a host file (or block device), byte
 * for byte, read and written with pread/pwrite or libaio, O_DIRECT for
 * cache=none.  Holes in the file are its zero areas.  Format nodes (raw,
 * qcow2) sit on top of one. */
#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <inttypes.h>
#include <linux/falloc.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "aio-native.h"
#include "write-behind.h"
#include "block-int.h"

#define ZERO_BUF_SIZE (1024 * 1024)

typedef struct FileState {
    int fd;             /* O_DIRECT with cache=none */
    /* cache=none: buffered fd for what O_DIRECT cannot do, i.e. the last
     * partial block of a file whose size is not a multiple of 4 KiB;
     * -1 otherwise. */
    int fd_buffered;
    uint64_t size;      /* atomic; grows with writes past the end */
    AioNative *aio;     /* aio=native, else NULL */
    WriteBehind *wb;    /* BlockOptions.write_behind, else NULL */
    /* The last data extent SEEK_HOLE found, [data_start, data_end).  On
     * some file systems (tmpfs) SEEK_HOLE walks every page up to the hole,
     * so probing each chunk of a fully written file anew is quadratic.
     * Only fallocate can turn data into a hole, so it empties the cache and
     * bumps status_gen; a probe that raced with it does not store. */
    GMutex status_lock;
    uint64_t data_start, data_end;
    uint64_t status_gen;
} FileState;

/* Source of zeroes for write-zeroes fallback; aligned for O_DIRECT, in
 * .bss so it costs nothing until used. */
static uint8_t zero_buf[ZERO_BUF_SIZE] __attribute__((aligned(BDRV_DIRECT_ALIGN)));

/* ---- Open and close ---- */

static int open_fd(const BlockOptions *opts, bool direct, GError **errp)
{
    int flags = (opts->read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC | (direct ? O_DIRECT : 0);
    int fd = open(opts->filename, flags);

    if (fd < 0 && direct && errno == EINVAL) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "Cannot open '%s' with cache=none: its file system does not "
                    "support O_DIRECT (use cache=writeback)", opts->filename);
    } else if (fd < 0) {
        int err = errno;
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(err),
                    "Cannot open '%s'%s: %s", opts->filename,
                    opts->read_only ? " (read-only)" : "", g_strerror(err));
    }
    return fd;
}

/* lseek rather than fstat: block devices report st_size 0. */
static bool file_get_size(FileState *s, const BlockOptions *opts, GError **errp)
{
    off_t end = lseek(s->fd, 0, SEEK_END);

    if (end < 0) {
        int err = errno;
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(err),
                    "Cannot get the size of '%s': %s", opts->filename, g_strerror(err));
        return false;
    }
    s->size = (uint64_t)end;
    return true;
}

static void file_close(BlockDriverState *bs)
{
    FileState *s = bdrv_opaque(bs);

    aio_native_free(s->aio);
    s->aio = NULL;
    write_behind_free(s->wb);
    s->wb = NULL;
    if (s->fd_buffered >= 0) {
        close(s->fd_buffered);
    }
    if (s->fd >= 0) {
        close(s->fd);
    }
    s->fd = s->fd_buffered = -1;
    g_mutex_clear(&s->status_lock);
}

static bool file_open_fds(FileState *s, const BlockOptions *opts, GError **errp)
{
    s->fd = open_fd(opts, opts->cache_none, errp);
    if (s->fd < 0) {
        return false;
    }
    if (opts->cache_none) {
        s->fd_buffered = open_fd(opts, false, errp);
        if (s->fd_buffered < 0) {
            return false;
        }
    }
    if (opts->aio_native) {
        s->aio = aio_native_new(opts->filename, errp);
        if (!s->aio) {
            return false;
        }
    }
    if (opts->write_behind && !opts->cache_none && !opts->read_only) {
        s->wb = write_behind_new(s->fd);
    }
    return true;
}

static int file_open(BlockDriverState *bs, const BlockOptions *opts, GError **errp)
{
    FileState *s = bdrv_opaque(bs);

    s->fd = s->fd_buffered = -1;
    g_mutex_init(&s->status_lock);
    if (!file_open_fds(s, opts, errp) || !file_get_size(s, opts, errp)) {
        file_close(bs);
        return -EINVAL;
    }
    return 0;
}

static int64_t file_getlength(BlockDriverState *bs)
{
    FileState *s = bdrv_opaque(bs);
    return (int64_t)__atomic_load_n(&s->size, __ATOMIC_ACQUIRE);
}

/* A growable node's size follows its writes. */
static void file_note_end(FileState *s, uint64_t end)
{
    uint64_t cur = __atomic_load_n(&s->size, __ATOMIC_ACQUIRE);

    while (end > cur && !__atomic_compare_exchange_n(&s->size, &cur, end, false,
                                                     __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
    }
}

/* ---- Reads and writes ---- */

/* The fd for a request: with O_DIRECT only aligned requests may use it. */
static int fd_for(FileState *s, uint64_t off, const void *buf, size_t len)
{
    if (s->fd_buffered < 0 ||
        (off % BDRV_DIRECT_ALIGN == 0 && len % BDRV_DIRECT_ALIGN == 0 &&
         (uintptr_t)buf % BDRV_DIRECT_ALIGN == 0)) {
        return s->fd;
    }
    return s->fd_buffered;
}

static int pread_full(int fd, uint64_t off, uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = pread(fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        if (n == 0) {
            return -EIO;    /* the file shrank under us */
        }
        buf += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

static int pwrite_full(int fd, uint64_t off, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = pwrite(fd, buf, len, (off_t)off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            return -errno;
        }
        if (n == 0) {
            return -EIO;
        }
        buf += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    return 0;
}

static int file_read_data(FileState *s, uint64_t off, void *buf, size_t len)
{
    int fd = fd_for(s, off, buf, len);

    if (s->aio && fd == s->fd) {
        return aio_native_pread(s->aio, fd, off, buf, len);
    }
    return pread_full(fd, off, buf, len);
}

/* A growable node (under a format that allocates at the end of its file)
 * reads zeroes past the end, as a file that was extended would. */
static int file_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len)
{
    FileState *s = bdrv_opaque(bs);
    uint64_t size = __atomic_load_n(&s->size, __ATOMIC_ACQUIRE);

    if (bs->growable && off + len > size) {
        size_t inside = off < size ? (size_t)(size - off) : 0;
        memset((uint8_t *)buf + inside, 0, len - inside);
        len = inside;
    }
    return len ? file_read_data(s, off, buf, len) : 0;
}

static int file_sync(FileState *s)
{
    return fdatasync(s->fd) < 0 ? -errno : 0;
}

/* Write without the FUA handling. */
static int file_write_data(FileState *s, uint64_t off, const void *buf, size_t len)
{
    int fd = fd_for(s, off, buf, len);
    int ret;

    if (s->aio && fd == s->fd) {
        ret = aio_native_pwrite(s->aio, fd, off, buf, len);
    } else {
        ret = pwrite_full(fd, off, buf, len);
    }
    if (ret == 0) {
        file_note_end(s, off + len);
    }
    if (ret == 0 && s->wb) {
        write_behind_note(s->wb, off, len);
    }
    return ret;
}

static int file_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, size_t len, int flags)
{
    FileState *s = bdrv_opaque(bs);
    int ret = file_write_data(s, off, buf, len);

    if (ret == 0 && (flags & BDRV_REQ_FUA)) {
        ret = file_sync(s);
    }
    return ret;
}

static int file_flush(BlockDriverState *bs)
{
    return file_sync(bdrv_opaque(bs));
}

/* ---- Mapped reads ---- */

/* How far OFF (a file offset or an address) is into its page. */
static size_t page_head(uint64_t off)
{
    return (size_t)(off % (uint64_t)sysconf(_SC_PAGESIZE));
}

/* One mmap per call: a range maps and unmaps on its own, with nothing
 * kept between calls.  MADV_POPULATE_READ reads every page in now, and
 * fails (EFAULT, EIO) where touching a page later would raise SIGBUS. */
static const void *file_map_read(BlockDriverState *bs, uint64_t off, size_t len)
{
    FileState *s = bdrv_opaque(bs);
    size_t head = page_head(off);

    if (s->fd_buffered >= 0 || off + len > (uint64_t)file_getlength(bs)) {
        return NULL;            /* cache=none: O_DIRECT keeps out of the page cache */
    }
    void *p = mmap(NULL, len + head, PROT_READ, MAP_SHARED, s->fd, (off_t)(off - head));
    if (p == MAP_FAILED) {
        return NULL;
    }
    if (madvise(p, len + head, MADV_POPULATE_READ) < 0) {
        munmap(p, len + head);
        return NULL;
    }
    return (const uint8_t *)p + head;
}

static void file_unmap_read(BlockDriverState *bs, const void *p, size_t len)
{
    size_t head = page_head((uintptr_t)p);

    munmap((uint8_t *)(uintptr_t)p - head, len + head);
}

/* ---- Write zeroes, discard ---- */

static void status_cache_forget(FileState *s)
{
    g_mutex_lock(&s->status_lock);
    s->data_start = s->data_end = 0;
    s->status_gen++;
    g_mutex_unlock(&s->status_lock);
}

/* fallocate with MODE; -ENOTSUP when the file system cannot do it. */
static int file_fallocate(FileState *s, int mode, uint64_t off, uint64_t len)
{
    int rc;

    do {
        rc = fallocate(s->fd, mode, (off_t)off, (off_t)len);
    } while (rc < 0 && errno == EINTR);
    /* After the call, failed or not (part of a range may be punched): an
     * extent stored meanwhile goes, and a probe that began before it
     * holds an older generation and does not store. */
    status_cache_forget(s);
    if (rc == 0) {
        return 0;
    }
    if (errno == EOPNOTSUPP || errno == ENOSYS || errno == EINVAL || errno == ENODEV) {
        return -ENOTSUP;
    }
    return -errno;
}

static int file_write_zero_buffer(FileState *s, uint64_t off, uint64_t len)
{
    while (len > 0) {
        size_t n = len < ZERO_BUF_SIZE ? (size_t)len : ZERO_BUF_SIZE;
        int ret = file_write_data(s, off, zero_buf, n);
        if (ret < 0) {
            return ret;
        }
        off += n;
        len -= n;
    }
    return 0;
}

/* Cheapest first: a hole (when allowed), then unwritten extents, then, unless
 * the caller wants only fast methods, real zeroes.  KEEP_SIZE everywhere so
 * a range ending at EOF never changes the file size. */
static int file_zero_range(FileState *s, uint64_t off, uint64_t len, int flags)
{
    int ret;

    if (flags & BDRV_REQ_MAY_UNMAP) {
        ret = file_fallocate(s, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
        if (ret != -ENOTSUP) {
            return ret;
        }
    }
    ret = file_fallocate(s, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, len);
    if (ret != -ENOTSUP) {
        return ret;
    }
    if (flags & BDRV_REQ_NO_FALLBACK) {
        return -ENOTSUP;
    }
    return file_write_zero_buffer(s, off, len);
}

static int file_pwrite_zeroes(BlockDriverState *bs, uint64_t off, uint64_t len, int flags)
{
    FileState *s = bdrv_opaque(bs);
    int ret = file_zero_range(s, off, len, flags);

    if (ret == 0 && (flags & BDRV_REQ_FUA)) {
        ret = file_sync(s);
    }
    return ret;
}

static int file_discard(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    FileState *s = bdrv_opaque(bs);
    return file_fallocate(s, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len);
}

/* ---- Allocation status ---- */

/* One SEEK_DATA/SEEK_HOLE probe.  Returns false when a concurrent write or
 * punch moved the boundary between the two calls. */
static bool probe_status(FileState *s, uint64_t off, uint64_t len,
                         uint64_t *pnum, bool *is_data, uint64_t *hole_at)
{
    off_t data = lseek(s->fd, (off_t)off, SEEK_DATA);

    if (data < 0) {
        /* ENXIO: no data after OFF.  Anything else: no SEEK_DATA here, so
         * call everything data, which is never wrong. */
        *is_data = errno != ENXIO;
        *pnum = len;
        return true;
    }
    if ((uint64_t)data > off) {
        *is_data = false;
        *pnum = MIN((uint64_t)data - off, len);
        return true;
    }
    off_t hole = lseek(s->fd, (off_t)off, SEEK_HOLE);
    if (hole < 0) {
        *is_data = true;
        *pnum = len;
        return true;
    }
    if ((uint64_t)hole <= off) {
        return false;
    }
    *is_data = true;
    *pnum = MIN((uint64_t)hole - off, len);
    *hole_at = (uint64_t)hole;
    return true;
}

/* Answer from the cached data extent; returns the generation to store a
 * new probe under when it cannot. */
static bool status_cache_lookup(FileState *s, uint64_t off, uint64_t len,
                                uint64_t *pnum, uint64_t *gen)
{
    bool hit;

    g_mutex_lock(&s->status_lock);
    hit = off >= s->data_start && off < s->data_end;
    if (hit) {
        *pnum = MIN(s->data_end - off, len);
    }
    *gen = s->status_gen;
    g_mutex_unlock(&s->status_lock);
    return hit;
}

static void status_cache_store(FileState *s, uint64_t start, uint64_t end, uint64_t gen)
{
    g_mutex_lock(&s->status_lock);
    if (s->status_gen == gen) {
        s->data_start = start;
        s->data_end = end;
    }
    g_mutex_unlock(&s->status_lock);
}

static void file_data_status(BlockDriverState *bs, uint64_t off, uint64_t len,
                             uint64_t *pnum, bool *is_data)
{
    FileState *s = bdrv_opaque(bs);
    uint64_t gen;

    if (status_cache_lookup(s, off, len, pnum, &gen)) {
        *is_data = true;
        return;
    }
    for (int attempt = 0; attempt < 3; attempt++) {
        uint64_t hole = 0;
        if (probe_status(s, off, len, pnum, is_data, &hole)) {
            if (*is_data && hole > off) {
                status_cache_store(s, off, hole, gen);
            }
            return;
        }
    }
    *is_data = true;
    *pnum = len;
}

/* Data, or a hole: ZERO. */
static int file_block_status(BlockDriverState *bs, uint64_t off, uint64_t len,
                             uint64_t *pnum, BdrvStatus *status)
{
    bool is_data;

    file_data_status(bs, off, len, pnum, &is_data);
    *status = is_data ? BDRV_STATUS_DATA : BDRV_STATUS_ZERO;
    return 0;
}

static int64_t file_allocated_bytes(BlockDriverState *bs)
{
    FileState *s = bdrv_opaque(bs);
    struct stat st;

    if (fstat(s->fd, &st) < 0) {
        return -errno;
    }
    return (int64_t)st.st_blocks * 512;
}

const BlockDriver bdrv_file = {
    .format_name = "file",
    .is_protocol = true,
    .instance_size = sizeof(FileState),
    .open = file_open,
    .close = file_close,
    .getlength = file_getlength,
    .pread = file_pread,
    .map_read = file_map_read,
    .unmap_read = file_unmap_read,
    .pwrite = file_pwrite,
    .flush = file_flush,
    .pwrite_zeroes = file_pwrite_zeroes,
    .discard = file_discard,
    .block_status = file_block_status,
    .allocated_bytes = file_allocated_bytes,
};
