/* Metadata contexts: NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT.
 * Two contexts are served: base:allocation (holes vs data) and QEMU's
 * qemu:allocation-depth (which layer of the backing chain holds the data).
 * A LIST may also name a namespace alone ("base:", "qemu:") to see all of
 * its contexts; queries for anything else are ignored, as proto.md
 * requires. */
#include "nbd-internal.h"

static const struct {
    const char *name;
    const char *ns;             /* its namespace, a LIST wildcard */
} contexts[NBD_META_COUNT] = {
    [NBD_META_BASE_ALLOCATION] = { "base:allocation", "base:" },
    [NBD_META_ALLOCATION_DEPTH] = { "qemu:allocation-depth", "qemu:" },
};

/* A bounds-checked reader over an option's data. */
typedef struct Cursor {
    const uint8_t *p;
    uint32_t left;
} Cursor;

static bool take32(Cursor *cur, uint32_t *v)
{
    if (cur->left < 4) {
        return false;
    }
    *v = ld_be32(cur->p);
    cur->p += 4;
    cur->left -= 4;
    return true;
}

/* A length-prefixed string; false if it overruns the data. */
static bool take_string(Cursor *cur, const uint8_t **s, uint32_t *len)
{
    if (!take32(cur, len) || *len > cur->left) {
        return false;
    }
    *s = cur->p;
    cur->p += *len;
    cur->left -= *len;
    return true;
}

static bool query_is(const uint8_t *q, uint32_t len, const char *s)
{
    return len == strlen(s) && memcmp(q, s, len) == 0;
}

/* The contexts QUERY selects, as a mask of 1 << NBDMetaContext. */
static unsigned query_selects(uint32_t opt, const uint8_t *q, uint32_t len)
{
    unsigned mask = 0;

    for (unsigned i = 0; i < NBD_META_COUNT; i++) {
        if (query_is(q, len, contexts[i].name) ||
            (opt == NBD_OPT_LIST_META_CONTEXT && query_is(q, len, contexts[i].ns))) {
            mask |= 1u << i;
        }
    }
    return mask;
}

/* Parse the export name and queries; *selected gets the contexts they
 * ask for.  False on malformed data. */
static bool parse_request(uint32_t opt, const uint8_t *data, uint32_t len,
                          char **name, unsigned *selected)
{
    Cursor cur = { data, len };
    const uint8_t *s;
    uint32_t slen, nqueries;

    if (!take_string(&cur, &s, &slen) || slen > NBD_MAX_STRING ||
        memchr(s, '\0', slen) || !take32(&cur, &nqueries)) {
        return false;
    }
    /* LIST with no query means "everything you have". */
    *selected = opt == NBD_OPT_LIST_META_CONTEXT && nqueries == 0 ? NBD_META_ALL : 0;
    for (uint32_t i = 0; i < nqueries; i++) {
        const uint8_t *q;
        uint32_t qlen;

        if (!take_string(&cur, &q, &qlen)) {
            return false;
        }
        *selected |= query_selects(opt, q, qlen);
    }
    if (cur.left != 0) {
        return false;
    }
    *name = g_strndup((const char *)s, slen);
    return true;
}

static NBDOptResult reply_result(int ret)
{
    return ret < 0 ? NBD_OPT_CLOSE : NBD_OPT_NEXT;
}

/* One NBD_REP_META_CONTEXT per selected context: LIST ids are reserved
 * (zero), SET hands out the real ones. */
static int reply_contexts(NBDConn *c, uint32_t opt, unsigned selected)
{
    for (unsigned i = 0; i < NBD_META_COUNT; i++) {
        size_t nlen = strlen(contexts[i].name);
        uint8_t rep[4 + 64];

        if (!(selected & (1u << i))) {
            continue;
        }
        g_assert(nlen <= sizeof(rep) - 4);
        st_be32(rep, opt == NBD_OPT_SET_META_CONTEXT ? NBD_META_ID(i) : 0);
        memcpy(rep + 4, contexts[i].name, nlen);
        if (nbd_opt_reply(c, opt, NBD_REP_META_CONTEXT, rep, 4 + nlen) < 0) {
            return -1;
        }
    }
    return 0;
}

NBDOptResult nbd_opt_meta_context(NBDConn *c, uint32_t opt, const uint8_t *data, uint32_t len)
{
    const char *what = opt == NBD_OPT_SET_META_CONTEXT ? "NBD_OPT_SET_META_CONTEXT"
                                                       : "NBD_OPT_LIST_META_CONTEXT";
    g_autofree char *name = NULL;
    BlockDriverState *bs;
    unsigned selected = 0;

    /* SET replaces the selection even when it fails. */
    if (opt == NBD_OPT_SET_META_CONTEXT) {
        c->meta_bs = NULL;
        c->meta_contexts = 0;
    }
    if (!c->structured) {
        return reply_result(nbd_opt_error(c, opt, NBD_REP_ERR_INVALID,
                            "%s needs structured replies first", what));
    }
    if (!parse_request(opt, data, len, &name, &selected)) {
        return reply_result(nbd_opt_error(c, opt, NBD_REP_ERR_INVALID,
                                          "malformed %s request", what));
    }
    bs = nbd_export_lookup(name);
    if (!bs) {
        return reply_result(nbd_opt_error(c, opt, NBD_REP_ERR_UNKNOWN,
                                          "export '%s' not found", name));
    }
    if (reply_contexts(c, opt, selected) < 0) {
        return NBD_OPT_CLOSE;
    }
    if (opt == NBD_OPT_SET_META_CONTEXT && selected) {
        c->meta_bs = bs;
        c->meta_contexts = selected;
    }
    return reply_result(nbd_opt_reply(c, opt, NBD_REP_ACK, NULL, 0));
}
