/* Private to block/: synchronous reads and writes through Linux native AIO
 * (libaio), for aio=native drives. */
#ifndef BLOCK_AIO_NATIVE_H
#define BLOCK_AIO_NATIVE_H

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

typedef struct AioNative AioNative;

/* A small pool of io_contexts; NAME (the file) is for error messages. */
AioNative *aio_native_new(const char *name, GError **errp);
void aio_native_free(AioNative *aio);

/* Whole transfers (short ones are continued); 0 or a negative errno.
 * Reading past the end of the file is -EIO. */
int aio_native_pread(AioNative *aio, int fd, uint64_t off, void *buf, size_t len);
int aio_native_pwrite(AioNative *aio, int fd, uint64_t off, const void *buf, size_t len);

#endif
