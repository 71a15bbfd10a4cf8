/* Choosing an export: NBD_OPT_INFO and NBD_OPT_GO (with NBD_REP_INFO
 * replies), and the old NBD_OPT_EXPORT_NAME.  Every drive is an export
 * named by its id; the empty name selects the first drive. */
#include "nbd-internal.h"

#include <inttypes.h>

BlockDriverState *nbd_export_lookup(const char *name)
{
    BlockDriverState *bs;
    GList *drives;

    if (name[0]) {
        return bdrv_find(name);
    }
    drives = bdrv_list();
    bs = drives ? drives->data : NULL;
    g_list_free(drives);
    return bs;
}

/* Transmission flags for BS as negotiated so far.  CAN_MULTI_CONN holds
 * because all connections share the drive's one file and flush is an
 * fdatasync of it. */
static uint16_t export_flags(const NBDConn *c, BlockDriverState *bs)
{
    uint16_t flags = NBD_FLAG_HAS_FLAGS | NBD_FLAG_SEND_FLUSH |
                     NBD_FLAG_CAN_MULTI_CONN;

    if (c->structured) {
        flags |= NBD_FLAG_SEND_DF;      /* proto.md: only with structured */
    }
    if (bdrv_is_read_only(bs)) {
        return flags | NBD_FLAG_READ_ONLY;
    }
    return flags | NBD_FLAG_SEND_FUA | NBD_FLAG_SEND_TRIM |
           NBD_FLAG_SEND_WRITE_ZEROES | NBD_FLAG_SEND_FAST_ZERO;
}

/* Names come from the wire: reject embedded NULs (they would truncate the
 * lookup) and over-long strings. */
static char *wire_name(const uint8_t *data, uint32_t len)
{
    if (len > NBD_MAX_STRING || memchr(data, '\0', len)) {
        return NULL;
    }
    return g_strndup((const char *)data, len);
}

static void start_transmission(NBDConn *c, BlockDriverState *bs, uint64_t size)
{
    c->bs = bs;
    c->size = size;
    c->tflags = export_flags(c, bs);
    /* Block status only for the export the context was selected on. */
    if (c->meta_bs != bs) {
        c->meta_contexts = 0;
    }
}

static int send_info(NBDConn *c, uint32_t opt, uint16_t type,
                     const void *payload, uint32_t len)
{
    g_autofree uint8_t *buf = g_malloc(2 + len);

    st_be16(buf, type);
    memcpy(buf + 2, payload, len);
    return nbd_opt_reply(c, opt, NBD_REP_INFO, buf, 2 + len);
}

static bool requested(const uint8_t *reqs, uint16_t n, uint16_t type)
{
    for (uint16_t i = 0; i < n; i++) {
        if (ld_be16(reqs + 2 * i) == type) {
            return true;
        }
    }
    return false;
}

/* NBD_REP_INFO replies for BS: EXPORT always, BLOCK_SIZE always (our
 * constraints are the defaults, so unasked clients lose nothing), NAME and
 * DESCRIPTION when asked. */
static int send_infos(NBDConn *c, uint32_t opt, BlockDriverState *bs,
                      uint64_t size, const uint8_t *reqs, uint16_t nreqs)
{
    uint8_t export[10], sizes[12];
    const char *id = bdrv_get_id(bs);

    st_be64(export, size);
    st_be16(export + 8, export_flags(c, bs));
    st_be32(sizes, NBD_MIN_BLOCK);
    st_be32(sizes + 4, NBD_PREF_BLOCK);
    st_be32(sizes + 8, NBD_MAX_PAYLOAD);
    if (send_info(c, opt, NBD_INFO_EXPORT, export, sizeof(export)) < 0 ||
        send_info(c, opt, NBD_INFO_BLOCK_SIZE, sizes, sizeof(sizes)) < 0) {
        return -1;
    }
    if (requested(reqs, nreqs, NBD_INFO_NAME) &&
        send_info(c, opt, NBD_INFO_NAME, id, strlen(id)) < 0) {
        return -1;
    }
    if (requested(reqs, nreqs, NBD_INFO_DESCRIPTION)) {
        g_autofree char *desc = g_strdup_printf("blkmigd drive %s (%s)", id,
                                                bdrv_get_format(bs));
        if (send_info(c, opt, NBD_INFO_DESCRIPTION, desc, strlen(desc)) < 0) {
            return -1;
        }
    }
    return 0;
}

/* Data: be32 name length, name, be16 request count, be16 requests. */
NBDOptResult nbd_opt_info_go(NBDConn *c, uint32_t opt, const uint8_t *data, uint32_t len)
{
    g_autofree char *name = NULL;
    BlockDriverState *bs;
    uint32_t name_len;
    uint16_t nreqs;
    int64_t size;
    int ret;

    if (len < 6 || (name_len = ld_be32(data)) > len - 6) {
        goto invalid;
    }
    nreqs = ld_be16(data + 4 + name_len);
    if (len != 4 + name_len + 2 + 2u * nreqs ||
        !(name = wire_name(data + 4, name_len))) {
        goto invalid;
    }
    bs = nbd_export_lookup(name);
    if (!bs) {
        ret = nbd_opt_error(c, opt, NBD_REP_ERR_UNKNOWN, "export '%s' not found", name);
        return ret < 0 ? NBD_OPT_CLOSE : NBD_OPT_NEXT;
    }
    size = bdrv_getlength(bs);
    if (size < 0) {
        ret = nbd_opt_error(c, opt, NBD_REP_ERR_UNKNOWN, "export '%s' unavailable", name);
        return ret < 0 ? NBD_OPT_CLOSE : NBD_OPT_NEXT;
    }
    if (send_infos(c, opt, bs, size, data + 6 + name_len, nreqs) < 0 ||
        nbd_opt_reply(c, opt, NBD_REP_ACK, NULL, 0) < 0) {
        return NBD_OPT_CLOSE;
    }
    if (opt == NBD_OPT_INFO) {
        return NBD_OPT_NEXT;
    }
    start_transmission(c, bs, size);
    g_debug("%s: export '%s' (%" PRId64 " bytes) via NBD_OPT_GO",
            c->peer, bdrv_get_id(bs), size);
    return NBD_OPT_TRANSMIT;

invalid:
    return nbd_opt_error(c, opt, NBD_REP_ERR_INVALID, "malformed %s request",
                         opt == NBD_OPT_GO ? "NBD_OPT_GO" : "NBD_OPT_INFO") < 0
           ? NBD_OPT_CLOSE : NBD_OPT_NEXT;
}

/* The old way in: no error reply exists, so an unknown export means a hard
 * disconnect (proto.md). */
NBDOptResult nbd_opt_export_name(NBDConn *c, const uint8_t *data, uint32_t len)
{
    g_autofree char *name = wire_name(data, len);
    BlockDriverState *bs = name ? nbd_export_lookup(name) : NULL;
    uint8_t reply[8 + 2 + 124] = { 0 };
    int64_t size;

    if (!bs || (size = bdrv_getlength(bs)) < 0) {
        g_warning("%s: NBD_OPT_EXPORT_NAME for unknown export, disconnecting", c->peer);
        return NBD_OPT_CLOSE;
    }
    start_transmission(c, bs, size);
    st_be64(reply, size);
    st_be16(reply + 8, c->tflags);
    if (nbd_send(c, reply, c->no_zeroes ? 10 : sizeof(reply)) < 0) {
        return NBD_OPT_CLOSE;
    }
    g_debug("%s: export '%s' via NBD_OPT_EXPORT_NAME", c->peer, bdrv_get_id(bs));
    return NBD_OPT_TRANSMIT;
}
