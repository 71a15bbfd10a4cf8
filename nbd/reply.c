/* Transmission replies: the simple reply, and structured reply chunks once
 * the client negotiated NBD_OPT_STRUCTURED_REPLY.  Requests on a connection
 * are answered in order by its one thread, so no send lock is needed. */
#include "nbd-internal.h"

#include <stdarg.h>

/* Error messages are for humans; keep them short. */
#define ERROR_MESSAGE_MAX     256

void nbd_simple_header(uint8_t *hdr, uint64_t cookie, uint32_t error)
{
    st_be32(hdr, NBD_SIMPLE_REPLY_MAGIC);
    st_be32(hdr + 4, error);
    st_be64(hdr + 8, cookie);
}

void nbd_chunk_header(uint8_t *hdr, uint64_t cookie, uint16_t flags, uint16_t type,
                      uint32_t len)
{
    st_be32(hdr, NBD_STRUCTURED_REPLY_MAGIC);
    st_be16(hdr + 4, flags);
    st_be16(hdr + 6, type);
    st_be64(hdr + 8, cookie);
    st_be32(hdr + 16, len);
}

int nbd_reply_simple(NBDConn *c, uint64_t cookie, uint32_t error,
                     const void *data, size_t len)
{
    uint8_t hdr[NBD_SIMPLE_REPLY_LEN];
    struct iovec iov[2];

    nbd_simple_header(hdr, cookie, error);
    iov[0] = (struct iovec){ .iov_base = hdr, .iov_len = sizeof(hdr) };
    iov[1] = (struct iovec){ .iov_base = (void *)data, .iov_len = len };
    return nbd_sendv(c, iov, len ? 2 : 1);
}

/* One chunk: header, then a fixed part HEAD (offsets, ids) and a variable
 * part DATA, sent with one sendmsg so the payload is not copied. */
int nbd_reply_chunk(NBDConn *c, uint64_t cookie, uint16_t flags, uint16_t type,
                    const void *head, uint32_t head_len,
                    const void *data, uint32_t data_len)
{
    uint8_t hdr[NBD_CHUNK_HEADER_LEN];
    struct iovec iov[3];
    int n = 0;

    g_assert((uint64_t)head_len + data_len <= UINT32_MAX);
    nbd_chunk_header(hdr, cookie, flags, type, head_len + data_len);
    iov[n++] = (struct iovec){ .iov_base = hdr, .iov_len = sizeof(hdr) };
    if (head_len) {
        iov[n++] = (struct iovec){ .iov_base = (void *)head, .iov_len = head_len };
    }
    if (data_len) {
        iov[n++] = (struct iovec){ .iov_base = (void *)data, .iov_len = data_len };
    }
    return nbd_sendv(c, iov, n);
}

int nbd_reply_error(NBDConn *c, const NBDRequest *req, uint32_t error,
                    const char *fmt, ...)
{
    char msg[ERROR_MESSAGE_MAX];
    uint8_t head[6];
    va_list ap;
    int len;

    va_start(ap, fmt);
    len = g_vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    len = CLAMP(len, 0, (int)sizeof(msg) - 1);
    g_debug("%s: %s: error %u: %s", c->peer, nbd_cmd_name(req->type), error, msg);

    if (!c->structured) {
        return nbd_reply_simple(c, req->cookie, error, NULL, 0);
    }
    st_be32(head, error);
    st_be16(head + 4, len);
    return nbd_reply_chunk(c, req->cookie, NBD_REPLY_FLAG_DONE,
                           NBD_REPLY_TYPE_ERROR, head, sizeof(head), msg, len);
}

int nbd_reply_ok(NBDConn *c, const NBDRequest *req)
{
    /* A simple reply is valid for any payload-less success, structured or
     * not, and is the shortest. */
    return nbd_reply_simple(c, req->cookie, 0, NULL, 0);
}
