/* The transmission phase: read each request, check it against the export
 * and the negotiated features, and hand it to commands.c (a write's
 * payload is taken off the wire there, slice by slice).  Requests of one
 * connection run in order. */
#include "nbd-internal.h"

#include <errno.h>
#include <inttypes.h>

#define REQUEST_LEN 28

const char *nbd_cmd_name(uint16_t type)
{
    switch (type) {
    case NBD_CMD_READ:         return "READ";
    case NBD_CMD_WRITE:        return "WRITE";
    case NBD_CMD_DISC:         return "DISC";
    case NBD_CMD_FLUSH:        return "FLUSH";
    case NBD_CMD_TRIM:         return "TRIM";
    case NBD_CMD_WRITE_ZEROES: return "WRITE_ZEROES";
    case NBD_CMD_BLOCK_STATUS: return "BLOCK_STATUS";
    default:                   return "unknown command";
    }
}

/* 0 on success, -1 when the client is gone or sent a bad magic. */
static int recv_request(NBDConn *c, NBDRequest *req)
{
    uint8_t hdr[REQUEST_LEN];
    uint32_t magic;

    if (nbd_recv(c, hdr, sizeof(hdr)) < 0) {
        return -1;
    }
    magic = ld_be32(hdr);
    if (magic != NBD_REQUEST_MAGIC) {
        g_warning("%s: bad request magic 0x%08x, disconnecting", c->peer, magic);
        return -1;
    }
    req->flags = ld_be16(hdr + 4);
    req->type = ld_be16(hdr + 6);
    req->cookie = ld_be64(hdr + 8);
    req->offset = ld_be64(hdr + 16);
    req->len = ld_be32(hdr + 24);
    return 0;
}

/* Flags a command may carry.  FUA is accepted everywhere (proto.md: known
 * clients set it on any command). */
static uint16_t allowed_flags(const NBDConn *c, uint16_t type)
{
    uint16_t allowed = NBD_CMD_FLAG_FUA;

    switch (type) {
    case NBD_CMD_READ:
        if (c->tflags & NBD_FLAG_SEND_DF) {
            allowed |= NBD_CMD_FLAG_DF;
        }
        break;
    case NBD_CMD_WRITE_ZEROES:
        allowed |= NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
        break;
    case NBD_CMD_BLOCK_STATUS:
        allowed |= NBD_CMD_FLAG_REQ_ONE;
        break;
    }
    return allowed;
}

/* Command, flags and length limits: EINVAL for anything unknown. */
static uint32_t check_command(const NBDConn *c, const NBDRequest *req, const char **msg)
{
    switch (req->type) {
    case NBD_CMD_READ:
    case NBD_CMD_WRITE:
    case NBD_CMD_FLUSH:
    case NBD_CMD_TRIM:
    case NBD_CMD_WRITE_ZEROES:
    case NBD_CMD_BLOCK_STATUS:
        break;
    default:
        *msg = "unknown command";
        return NBD_EINVAL;
    }
    if (req->flags & ~allowed_flags(c, req->type)) {
        *msg = "unsupported command flags";
        return NBD_EINVAL;
    }
    if ((req->type == NBD_CMD_READ || req->type == NBD_CMD_WRITE) &&
        req->len > NBD_MAX_PAYLOAD) {
        *msg = "request longer than the maximum payload";
        return req->type == NBD_CMD_READ ? NBD_EOVERFLOW : NBD_EINVAL;
    }
    if (req->type == NBD_CMD_FLUSH && (req->offset || req->len)) {
        *msg = "flush with nonzero offset or length";
        return NBD_EINVAL;
    }
    if (req->type == NBD_CMD_BLOCK_STATUS && !c->meta_contexts) {
        *msg = "no metadata context negotiated";
        return NBD_EINVAL;
    }
    if (req->type == NBD_CMD_BLOCK_STATUS && req->len == 0) {
        *msg = "empty block status request";
        return NBD_EINVAL;
    }
    return 0;
}

/* The export's constraints: read-only, and its end (proto.md: writes past
 * the end are ENOSPC, everything else EINVAL). */
static uint32_t check_export(const NBDConn *c, const NBDRequest *req, const char **msg)
{
    bool past_end = req->offset > c->size || req->len > c->size - req->offset;

    if (req->type == NBD_CMD_FLUSH) {
        return 0;
    }
    if ((c->tflags & NBD_FLAG_READ_ONLY) && nbd_cmd_is_write(req->type)) {
        *msg = "export is read-only";
        return NBD_EPERM;
    }
    if (past_end) {
        *msg = "request past the end of the export";
        return req->type == NBD_CMD_WRITE || req->type == NBD_CMD_WRITE_ZEROES
               ? NBD_ENOSPC : NBD_EINVAL;
    }
    return 0;
}

/* The NBD error a request must fail with before any I/O, or 0.  Only the
 * header is known here; MSG explains the refusal to a human. */
static uint32_t check_request(const NBDConn *c, const NBDRequest *req, const char **msg)
{
    uint32_t error = check_command(c, req, msg);

    return error ? error : check_export(c, req, msg);
}

/* Serve one request; -1 drops the connection.  A refused write still has
 * its payload consumed so the stream stays in sync; one longer than the
 * maximum is drained through the small input buffer. */
static int handle_request(NBDConn *c, const NBDRequest *req)
{
    const char *msg;
    uint32_t error = check_request(c, req, &msg);

    if (!error) {
        return nbd_cmd_execute(c, req);
    }
    if (req->type == NBD_CMD_WRITE && nbd_recv_discard(c, req->len) < 0) {
        return -1;
    }
    return nbd_reply_error(c, req, error, "%s (%s at %" PRIu64 "+%" PRIu32 ")",
                           msg, nbd_cmd_name(req->type), req->offset, req->len);
}

void nbd_transmission(NBDConn *c)
{
    NBDRequest req;

    while (recv_request(c, &req) == 0) {
        if (req.type == NBD_CMD_DISC) {
            g_debug("%s: soft disconnect", c->peer);
            return;
        }
        if (handle_request(c, &req) < 0) {
            return;
        }
    }
}
