/* aio=native: each request borrows one io_context from a per-drive pool,
 * submits one iocb and waits for its completion.  With one request per
 * context there is never a foreign completion to hand over to another
 * thread, and up to AIO_NATIVE_CONTEXTS threads submit in parallel. */
#include "aio-native.h"

#include <errno.h>
#include <gio/gio.h>
#include <libaio.h>
#include <stdbool.h>

#define AIO_NATIVE_CONTEXTS 8

struct AioNative {
    io_context_t ctx[AIO_NATIVE_CONTEXTS];
    unsigned nctx;
    GAsyncQueue *idle;      /* indexes + 1 of contexts not in use */
};

AioNative *aio_native_new(const char *name, GError **errp)
{
    AioNative *aio = g_new0(AioNative, 1);
    int err = 0;

    /* Fewer contexts than wished for still work; none is an error. */
    while (aio->nctx < AIO_NATIVE_CONTEXTS) {
        err = io_setup(1, &aio->ctx[aio->nctx]);
        if (err < 0) {
            break;
        }
        aio->nctx++;
    }
    if (aio->nctx == 0) {
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(-err),
                    "Cannot set up native AIO for '%s' (aio=native): %s "
                    "(see /proc/sys/fs/aio-max-nr)", name, g_strerror(-err));
        g_free(aio);
        return NULL;
    }
    aio->idle = g_async_queue_new();
    for (unsigned i = 0; i < aio->nctx; i++) {
        g_async_queue_push(aio->idle, GUINT_TO_POINTER(i + 1));
    }
    return aio;
}

void aio_native_free(AioNative *aio)
{
    if (!aio) {
        return;
    }
    for (unsigned i = 0; i < aio->nctx; i++) {
        io_destroy(aio->ctx[i]);
    }
    g_async_queue_unref(aio->idle);
    g_free(aio);
}

/* One iocb, submitted and reaped: bytes transferred or a negative errno. */
static long submit_and_wait(io_context_t ctx, struct iocb *cb)
{
    struct iocb *cbs[1] = { cb };
    int rc;

    while ((rc = io_submit(ctx, 1, cbs)) == -EAGAIN || rc == -EINTR) {
        g_usleep(100);
    }
    if (rc != 1) {
        return rc < 0 ? rc : -EIO;
    }
    struct io_event ev;
    while ((rc = io_getevents(ctx, 1, 1, &ev, NULL)) == -EINTR) {
    }
    if (rc != 1) {
        /* The iocb still points at the caller's buffer: there is no safe
         * way to return. */
        g_error("io_getevents failed with an iocb in flight: %s", g_strerror(-rc));
    }
    return (long)ev.res;
}

static int aio_native_rw(AioNative *aio, int fd, bool write, uint64_t off,
                         uint8_t *buf, size_t len)
{
    unsigned idx = GPOINTER_TO_UINT(g_async_queue_pop(aio->idle)) - 1;
    int ret = 0;

    while (len > 0) {
        struct iocb cb;
        if (write) {
            io_prep_pwrite(&cb, fd, buf, len, (long long)off);
        } else {
            io_prep_pread(&cb, fd, buf, len, (long long)off);
        }
        long n = submit_and_wait(aio->ctx[idx], &cb);
        if (n <= 0) {
            ret = n < 0 ? (int)n : -EIO;
            break;
        }
        buf += n;
        off += (uint64_t)n;
        len -= (size_t)n;
    }
    g_async_queue_push(aio->idle, GUINT_TO_POINTER(idx + 1));
    return ret;
}

int aio_native_pread(AioNative *aio, int fd, uint64_t off, void *buf, size_t len)
{
    return aio_native_rw(aio, fd, false, off, buf, len);
}

int aio_native_pwrite(AioNative *aio, int fd, uint64_t off, const void *buf, size_t len)
{
    /* The kernel only reads the buffer of a write. */
    return aio_native_rw(aio, fd, true, off, (uint8_t *)buf, len);
}
