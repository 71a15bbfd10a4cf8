/* Write-behind for bulk writes to a file (see write-behind.h).  Ranges
 * wait in a FIFO shared by all writers; sync_file_range and fadvise are
 * hints, so a failure here is not the write's: a real write-back error
 * still comes out of the flush. */
#include "write-behind.h"

#include <fcntl.h>
#include <glib.h>

typedef struct WbRange {
    uint64_t off, len;
} WbRange;

struct WriteBehind {
    int fd;
    GMutex lock;
    GQueue ranges;              /* WbRange *, oldest first */
    uint64_t bytes;             /* in ranges */
};

WriteBehind *write_behind_new(int fd)
{
    WriteBehind *wb = g_new0(WriteBehind, 1);

    wb->fd = fd;
    g_mutex_init(&wb->lock);
    g_queue_init(&wb->ranges);
    return wb;
}

void write_behind_free(WriteBehind *wb)
{
    if (wb) {
        g_queue_clear_full(&wb->ranges, g_free);
        g_mutex_clear(&wb->lock);
        g_free(wb);
    }
}

/* The oldest ranges past the window, taken out of the FIFO. */
static GSList *take_overflow(WriteBehind *wb)
{
    GSList *out = NULL;

    g_mutex_lock(&wb->lock);
    while (wb->bytes > WRITE_BEHIND_WINDOW) {
        WbRange *r = g_queue_pop_head(&wb->ranges);
        wb->bytes -= r->len;
        out = g_slist_prepend(out, r);
    }
    g_mutex_unlock(&wb->lock);
    return g_slist_reverse(out);
}

/* Wait until R is on the disk, then drop its pages. */
static void settle(WriteBehind *wb, WbRange *r)
{
    sync_file_range(wb->fd, (off_t)r->off, (off_t)r->len,
                    SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                    SYNC_FILE_RANGE_WAIT_AFTER);
    posix_fadvise(wb->fd, (off_t)r->off, (off_t)r->len, POSIX_FADV_DONTNEED);
    g_free(r);
}

void write_behind_note(WriteBehind *wb, uint64_t off, uint64_t len)
{
    WbRange *r = g_new(WbRange, 1);

    *r = (WbRange){ off, len };
    sync_file_range(wb->fd, (off_t)off, (off_t)len, SYNC_FILE_RANGE_WRITE);
    g_mutex_lock(&wb->lock);
    g_queue_push_tail(&wb->ranges, r);
    wb->bytes += len;
    g_mutex_unlock(&wb->lock);
    for (GSList *l = take_overflow(wb); l; l = g_slist_delete_link(l, l)) {
        settle(wb, l->data);
    }
}
