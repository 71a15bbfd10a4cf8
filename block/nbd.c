/* The NBD protocol driver: a node whose image is an export of an NBD
 * server, named by an NBD URI (nbd://host[:port]/export,
 * nbd+unix:///export?socket=PATH, and libnbd's other forms).  The block
 * layer opens it for any drive or backing file so named; libnbd speaks
 * the protocol and this file maps the block layer's calls onto its
 * commands.  The node is read-only when the server says so.  Threads,
 * timeouts and reconnects: nbd-int.h. */
#include "nbd-int.h"
#include "util/tls.h"

#include <errno.h>
#include <gio/gio.h>
#include <string.h>

/* What writes the zeroes of a server that cannot write zeroes itself. */
#define ZERO_BUF_SIZE (1024 * 1024)
static const uint8_t zero_buf[ZERO_BUF_SIZE];

static const char *const uri_schemes[] = {
    "nbd://", "nbd+unix://", "nbd+vsock://", "nbds://", "nbds+unix://", "nbds+vsock://",
};

bool bdrv_is_nbd_uri(const char *filename)
{
    for (size_t i = 0; filename && i < G_N_ELEMENTS(uri_schemes); i++) {
        if (g_str_has_prefix(filename, uri_schemes[i])) {
            return true;
        }
    }
    return false;
}

/* ---- Open and close ---- */

/* The node follows the export: read-only when the server says so, and
 * requests aligned to the server's minimum block size (the generic layer
 * bounces the rest), whatever cache= the node inherited: O_DIRECT's
 * alignment means nothing to a socket. */
static void apply_export(BlockDriverState *bs, const NbdExport *exp)
{
    bool usable = exp->min_block <= BDRV_DIRECT_ALIGN &&
                  (exp->min_block & (exp->min_block - 1)) == 0;

    bs->opts.read_only |= exp->read_only;
    bs->align = bs->buf_align = usable ? exp->min_block : 1;
}

/* Connection 0 is up already; with multi-conn the others connect in the
 * background, and one the server refuses is not retried. */
static void start_conns(NbdClient *c, struct nbd_handle *h)
{
    c->nconns = c->exp.can_multi_conn ? c->want_conns : 1;
    for (int i = 0; i < c->nconns; i++) {
        c->conns[i].client = c;
        c->conns[i].index = i;
        c->conns[i].h = i == 0 ? h : NULL;
        nbdc_keeper_start(&c->conns[i]);
    }
}

static void nbd_tls_clear(NbdTls *tls)
{
    g_clear_pointer(&tls->dir, g_free);
    g_clear_pointer(&tls->username, g_free);
}

/* OPTS' tls-creds object, for an nbds:// URI: its files go to libnbd. */
static bool nbd_tls_from_options(NbdTls *tls, const BlockOptions *opts, GError **errp)
{
    TlsCredsFiles files;
    TlsCreds *creds;

    if (!opts->tls_creds) {
        return true;
    }
    if (!g_str_has_prefix(opts->filename, "nbds")) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT, "tls-creds '%s' needs an "
                    "nbds:// or nbds+unix:// URI, not '%s'", opts->tls_creds, opts->filename);
        return false;
    }
    creds = tls_creds_lookup(opts->tls_creds, TLS_ENDPOINT_CLIENT, errp);
    if (!creds) {
        return false;
    }
    tls_creds_files(creds, &files);
    tls->psk = files.psk;
    tls->dir = g_strdup(files.dir);
    tls->username = g_strdup(files.username);
    tls->verify_peer = files.verify_peer;
    tls_creds_unref(creds);
    return true;
}

static int nbdc_open(BlockDriverState *bs, const BlockOptions *opts, GError **errp)
{
    NbdClient *c = bdrv_opaque(bs);
    GError *err = NULL;

    if (!nbd_tls_from_options(&c->tls, opts, errp)) {
        return -EINVAL;
    }
    if (opts->connections > NBD_MAX_CONNS) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "'%s': at most %d NBD connections, not %u", opts->filename,
                    NBD_MAX_CONNS, opts->connections);
        return -EINVAL;
    }
    c->want_conns = opts->connections ? (int)opts->connections : NBD_DEFAULT_CONNS;
    c->uri = g_strdup(opts->filename);
    nbdc_cache_init(&c->status_cache);
    c->timeout_us = (gint64)(opts->timeout ? opts->timeout : NBD_DEFAULT_TIMEOUT_S) *
                    G_USEC_PER_SEC;
    struct nbd_handle *h = nbdc_conn_connect(c, -1, &err);
    if (h && !nbdc_conn_describe(h, &c->exp, &err)) {
        nbd_close(h);
        h = NULL;
    }
    if (!h) {
        g_propagate_error(errp, err);
        nbdc_cache_destroy(&c->status_cache);
        g_free(c->uri);
        nbd_tls_clear(&c->tls);
        return -EIO;
    }
    apply_export(bs, &c->exp);
    start_conns(c, h);
    return 0;
}

static void nbdc_close_node(BlockDriverState *bs)
{
    NbdClient *c = bdrv_opaque(bs);

    nbdc_keeper_stop_all(c);
    nbdc_cache_destroy(&c->status_cache);
    g_free(c->uri);
    nbd_tls_clear(&c->tls);
}

static int64_t nbdc_getlength(BlockDriverState *bs)
{
    NbdClient *c = bdrv_opaque(bs);
    return (int64_t)c->exp.size;
}

/* ---- Reads and writes ---- */

static int64_t submit_read(struct nbd_handle *h, uint64_t off, uint64_t len, void *buf,
                           nbd_completion_callback cb, void *opaque)
{
    return nbd_aio_pread(h, buf, len, off, cb, 0);
}

static int64_t submit_write(struct nbd_handle *h, uint64_t off, uint64_t len, void *buf,
                            nbd_completion_callback cb, void *opaque)
{
    return nbd_aio_pwrite(h, buf, len, off, cb, *(uint32_t *)opaque);
}

/* Past the export's end (a format growing its image) reads give zeroes. */
static int nbdc_pread(BlockDriverState *bs, uint64_t off, void *buf, size_t len)
{
    NbdClient *c = bdrv_opaque(bs);
    uint64_t in = off < c->exp.size ? MIN((uint64_t)len, c->exp.size - off) : 0;

    memset((uint8_t *)buf + in, 0, len - in);
    return in ? nbdc_request(c, off, in, buf, c->exp.max_payload, submit_read, NULL) : 0;
}

static int nbdc_flush(BlockDriverState *bs);

static uint32_t fua_flag(NbdClient *c, int flags)
{
    return (flags & BDRV_REQ_FUA) && c->exp.can_fua ? LIBNBD_CMD_FLAG_FUA : 0;
}

/* FUA the server cannot do is a flush after the write. */
static int flush_if_fua_emulated(BlockDriverState *bs, int flags, int ret)
{
    NbdClient *c = bdrv_opaque(bs);
    return ret == 0 && (flags & BDRV_REQ_FUA) && !c->exp.can_fua ? nbdc_flush(bs) : ret;
}

static int nbdc_pwrite(BlockDriverState *bs, uint64_t off, const void *buf, size_t len, int flags)
{
    NbdClient *c = bdrv_opaque(bs);
    uint32_t nflags = fua_flag(c, flags);

    if (off > c->exp.size || len > c->exp.size - off) {
        return -ENOSPC;         /* an export cannot grow */
    }
    nbdc_cache_forget(&c->status_cache);
    int ret = nbdc_request(c, off, len, (void *)buf, c->exp.max_payload, submit_write, &nflags);
    nbdc_cache_forget(&c->status_cache);
    return flush_if_fua_emulated(bs, flags, ret);
}

static int64_t submit_flush(struct nbd_handle *h, uint64_t off, uint64_t len, void *buf,
                            nbd_completion_callback cb, void *opaque)
{
    return nbd_aio_flush(h, cb, 0);
}

static int nbdc_flush(BlockDriverState *bs)
{
    NbdClient *c = bdrv_opaque(bs);
    return c->exp.can_flush ? nbdc_request(c, 0, 0, NULL, 0, submit_flush, NULL) : 0;
}

/* ---- Write zeroes and discard ---- */

static int64_t submit_zero(struct nbd_handle *h, uint64_t off, uint64_t len, void *buf,
                           nbd_completion_callback cb, void *opaque)
{
    return nbd_aio_zero(h, len, off, cb, *(uint32_t *)opaque);
}

static int64_t submit_trim(struct nbd_handle *h, uint64_t off, uint64_t len, void *buf,
                           nbd_completion_callback cb, void *opaque)
{
    return nbd_aio_trim(h, len, off, cb, 0);
}

/* A server without NBD_CMD_WRITE_ZEROES gets zeroes as data. */
static int write_zero_data(BlockDriverState *bs, uint64_t off, uint64_t len, int flags)
{
    int ret = 0;

    while (ret == 0 && len > 0) {
        size_t n = (size_t)MIN(len, (uint64_t)ZERO_BUF_SIZE);
        ret = nbdc_pwrite(bs, off, zero_buf, n, flags);
        off += n;
        len -= n;
    }
    return ret;
}

static int nbdc_pwrite_zeroes(BlockDriverState *bs, uint64_t off, uint64_t len, int flags)
{
    NbdClient *c = bdrv_opaque(bs);
    bool fast = flags & BDRV_REQ_NO_FALLBACK;

    if (fast && !c->exp.can_fast_zero) {
        return -ENOTSUP;
    }
    if (!c->exp.can_zero) {
        return write_zero_data(bs, off, len, flags);
    }
    uint32_t nflags = fua_flag(c, flags) | (fast ? LIBNBD_CMD_FLAG_FAST_ZERO : 0) |
                      (flags & BDRV_REQ_MAY_UNMAP ? 0 : LIBNBD_CMD_FLAG_NO_HOLE);
    nbdc_cache_forget(&c->status_cache);
    int ret = nbdc_request(c, off, len, NULL, NBD_MAX_EFFECT, submit_zero, &nflags);
    nbdc_cache_forget(&c->status_cache);
    return flush_if_fua_emulated(bs, flags, ret);
}

/* NBD_CMD_TRIM: what trimmed ranges read as is the server's business. */
static int nbdc_discard(BlockDriverState *bs, uint64_t off, uint64_t len)
{
    NbdClient *c = bdrv_opaque(bs);

    if (!c->exp.can_trim) {
        return -ENOTSUP;
    }
    nbdc_cache_forget(&c->status_cache);
    int ret = nbdc_request(c, off, len, NULL, NBD_MAX_EFFECT, submit_trim, NULL);
    nbdc_cache_forget(&c->status_cache);
    return ret;
}

static int nbdc_block_status(BlockDriverState *bs, uint64_t off, uint64_t len,
                            uint64_t *pnum, BdrvStatus *status)
{
    return nbdc_status(bdrv_opaque(bs), off, len, pnum, status);
}

const BlockDriver bdrv_nbd = {
    .format_name = "nbd",
    .is_protocol = true,
    .instance_size = sizeof(NbdClient),
    .open = nbdc_open,
    .close = nbdc_close_node,
    .getlength = nbdc_getlength,
    .pread = nbdc_pread,
    .pwrite = nbdc_pwrite,
    .flush = nbdc_flush,
    .pwrite_zeroes = nbdc_pwrite_zeroes,
    .discard = nbdc_discard,
    .block_status = nbdc_block_status,
};
