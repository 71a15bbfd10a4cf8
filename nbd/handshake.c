/* The fixed newstyle handshake: greeting, client flags, and the option
 * loop with the options that need no export (LIST, ABORT,
 * STRUCTURED_REPLY, anything unknown).  Options naming an export live in
 * handshake-go.c and handshake-meta.c, STARTTLS in handshake-tls.c. */
#include "nbd-internal.h"

#include <stdarg.h>

#define GREETING_LEN     18
#define OPTION_HDR_LEN   16
#define OPTION_REPLY_LEN 20

int nbd_opt_reply(NBDConn *c, uint32_t opt, uint32_t type,
                  const void *data, uint32_t len)
{
    uint8_t hdr[OPTION_REPLY_LEN];
    struct iovec iov[2];

    st_be64(hdr, NBD_REP_MAGIC);
    st_be32(hdr + 8, opt);
    st_be32(hdr + 12, type);
    st_be32(hdr + 16, len);
    iov[0] = (struct iovec){ .iov_base = hdr, .iov_len = sizeof(hdr) };
    iov[1] = (struct iovec){ .iov_base = (void *)data, .iov_len = len };
    return nbd_sendv(c, iov, len ? 2 : 1);
}

int nbd_opt_error(NBDConn *c, uint32_t opt, uint32_t type, const char *fmt, ...)
{
    va_list ap;
    char *msg;
    int ret;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_debug("%s: option %u refused (0x%08x): %s", c->peer, opt, type, msg);
    ret = nbd_opt_reply(c, opt, type, msg, MIN(strlen(msg), NBD_MAX_STRING));
    g_free(msg);
    return ret;
}

static int send_greeting(NBDConn *c)
{
    uint8_t buf[GREETING_LEN];

    st_be64(buf, NBD_MAGIC);
    st_be64(buf + 8, NBD_OPTS_MAGIC);
    st_be16(buf + 16, NBD_FLAG_FIXED_NEWSTYLE | NBD_FLAG_NO_ZEROES);
    return nbd_send(c, buf, sizeof(buf));
}

/* proto.md: the server MUST drop the connection on client flags it did not
 * offer. */
static bool recv_client_flags(NBDConn *c)
{
    const uint32_t known = NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES;
    uint8_t buf[4];
    uint32_t flags;

    if (nbd_recv(c, buf, sizeof(buf)) < 0) {
        return false;
    }
    flags = ld_be32(buf);
    if (flags & ~known) {
        g_warning("%s: unknown client flags 0x%08x, disconnecting", c->peer, flags);
        return false;
    }
    c->fixed_newstyle = flags & NBD_FLAG_C_FIXED_NEWSTYLE;
    c->no_zeroes = flags & NBD_FLAG_C_NO_ZEROES;
    return true;
}

static NBDOptResult opt_list(NBDConn *c, uint32_t len)
{
    GList *drives, *l;

    if (len != 0) {
        return nbd_opt_error(c, NBD_OPT_LIST, NBD_REP_ERR_INVALID,
                             "NBD_OPT_LIST takes no data") < 0
               ? NBD_OPT_CLOSE : NBD_OPT_NEXT;
    }
    drives = bdrv_list();
    for (l = drives; l; l = l->next) {
        const char *name = bdrv_get_id(l->data);
        uint32_t name_len = strlen(name);
        g_autofree uint8_t *rep = g_malloc(4 + name_len);

        st_be32(rep, name_len);
        memcpy(rep + 4, name, name_len);
        if (nbd_opt_reply(c, NBD_OPT_LIST, NBD_REP_SERVER, rep, 4 + name_len) < 0) {
            g_list_free(drives);
            return NBD_OPT_CLOSE;
        }
    }
    g_list_free(drives);
    return nbd_opt_reply(c, NBD_OPT_LIST, NBD_REP_ACK, NULL, 0) < 0
           ? NBD_OPT_CLOSE : NBD_OPT_NEXT;
}

static NBDOptResult opt_structured_reply(NBDConn *c, uint32_t len)
{
    int ret;

    if (len != 0) {
        ret = nbd_opt_error(c, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ERR_INVALID,
                            "NBD_OPT_STRUCTURED_REPLY takes no data");
    } else {
        c->structured = true;
        ret = nbd_opt_reply(c, NBD_OPT_STRUCTURED_REPLY, NBD_REP_ACK, NULL, 0);
    }
    return ret < 0 ? NBD_OPT_CLOSE : NBD_OPT_NEXT;
}

static NBDOptResult dispatch_option(NBDConn *c, uint32_t opt,
                                    const uint8_t *data, uint32_t len)
{
    int refused;

    /* Plain newstyle knows no other option and no way to refuse one. */
    if (!c->fixed_newstyle && opt != NBD_OPT_EXPORT_NAME) {
        g_warning("%s: option %u without fixed newstyle, disconnecting", c->peer, opt);
        return NBD_OPT_CLOSE;
    }
    refused = nbd_opt_tls_policy(c, opt);
    if (refused >= 0) {
        return (NBDOptResult)refused;
    }
    switch (opt) {
    case NBD_OPT_STARTTLS:
        return nbd_opt_starttls(c, len);
    case NBD_OPT_EXPORT_NAME:
        return nbd_opt_export_name(c, data, len);
    case NBD_OPT_ABORT:
        /* Best effort: the client may already have closed its end. */
        (void)nbd_opt_reply(c, opt, NBD_REP_ACK, NULL, 0);
        return NBD_OPT_CLOSE;
    case NBD_OPT_LIST:
        return opt_list(c, len);
    case NBD_OPT_INFO:
    case NBD_OPT_GO:
        return nbd_opt_info_go(c, opt, data, len);
    case NBD_OPT_STRUCTURED_REPLY:
        return opt_structured_reply(c, len);
    case NBD_OPT_LIST_META_CONTEXT:
    case NBD_OPT_SET_META_CONTEXT:
        return nbd_opt_meta_context(c, opt, data, len);
    default:
        return nbd_opt_error(c, opt, NBD_REP_ERR_UNSUP, "option %u not supported",
                             opt) < 0 ? NBD_OPT_CLOSE : NBD_OPT_NEXT;
    }
}

/* Read one option and act on it. */
static NBDOptResult next_option(NBDConn *c)
{
    uint8_t hdr[OPTION_HDR_LEN];
    g_autofree uint8_t *data = NULL;
    uint64_t magic;
    uint32_t opt, len;

    if (nbd_recv(c, hdr, sizeof(hdr)) < 0) {
        return NBD_OPT_CLOSE;
    }
    magic = ld_be64(hdr);
    opt = ld_be32(hdr + 8);
    len = ld_be32(hdr + 12);
    if (magic != NBD_OPTS_MAGIC) {
        g_warning("%s: bad option magic, disconnecting", c->peer);
        return NBD_OPT_CLOSE;
    }
    /* No option we know needs this much; treat it as abuse rather than
     * allocate or read gigabytes (proto.md allows a hard disconnect against
     * denial of service).  The client still learns why. */
    if (len > NBD_MAX_OPTION_LEN) {
        g_warning("%s: option %u with %u bytes of data, disconnecting",
                  c->peer, opt, len);
        (void)nbd_opt_error(c, opt, NBD_REP_ERR_TOO_BIG,
                            "option data longer than %u bytes", NBD_MAX_OPTION_LEN);
        return NBD_OPT_CLOSE;
    }
    data = g_malloc(len ? len : 1);
    if (len && nbd_recv(c, data, len) < 0) {
        return NBD_OPT_CLOSE;
    }
    return dispatch_option(c, opt, data, len);
}

bool nbd_handshake(NBDConn *c)
{
    if (send_greeting(c) < 0 || !recv_client_flags(c)) {
        return false;
    }
    for (;;) {
        switch (next_option(c)) {
        case NBD_OPT_NEXT:
            continue;
        case NBD_OPT_TRANSMIT:
            return true;
        case NBD_OPT_CLOSE:
            return false;
        }
    }
}
