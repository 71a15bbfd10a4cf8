/* Metadata contexts: NBD_OPT_LIST_META_CONTEXT and NBD_OPT_SET_META_CONTEXT.
 * The one context served is base:allocation (holes vs data); queries in
 * other namespaces are ignored, as proto.md requires. */
#include "nbd-internal.h"

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
    *v = nbd_get32(cur->p);
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

/* Does QUERY select base:allocation?  "base:" is a wildcard for LIST only. */
static bool selects_base_allocation(uint32_t opt, const uint8_t *q, uint32_t len)
{
    if (query_is(q, len, NBD_META_BASE_ALLOCATION)) {
        return true;
    }
    return opt == NBD_OPT_LIST_META_CONTEXT && query_is(q, len, "base:");
}

/* Parse the export name and queries; *match tells whether base:allocation
 * was asked for.  False on malformed data. */
static bool parse_request(uint32_t opt, const uint8_t *data, uint32_t len,
                          char **name, bool *match)
{
    Cursor cur = { data, len };
    const uint8_t *s;
    uint32_t slen, nqueries;

    if (!take_string(&cur, &s, &slen) || slen > NBD_MAX_STRING ||
        memchr(s, '\0', slen) || !take32(&cur, &nqueries)) {
        return false;
    }
    /* LIST with no query means "everything you have". */
    *match = opt == NBD_OPT_LIST_META_CONTEXT && nqueries == 0;
    for (uint32_t i = 0; i < nqueries; i++) {
        const uint8_t *q;
        uint32_t qlen;

        if (!take_string(&cur, &q, &qlen)) {
            return false;
        }
        *match |= selects_base_allocation(opt, q, qlen);
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

NBDOptResult nbd_opt_meta_context(NBDConn *c, uint32_t opt, const uint8_t *data, uint32_t len)
{
    const char *what = opt == NBD_OPT_SET_META_CONTEXT ? "NBD_OPT_SET_META_CONTEXT"
                                                       : "NBD_OPT_LIST_META_CONTEXT";
    g_autofree char *name = NULL;
    BlockDriverState *bs;
    bool match = false;
    uint8_t rep[4 + sizeof(NBD_META_BASE_ALLOCATION) - 1];

    /* SET replaces the selection even when it fails. */
    if (opt == NBD_OPT_SET_META_CONTEXT) {
        c->meta_bs = NULL;
        c->meta_base_alloc = false;
    }
    if (!c->structured) {
        return reply_result(nbd_opt_error(c, opt, NBD_REP_ERR_INVALID,
                            "%s needs structured replies first", what));
    }
    if (!parse_request(opt, data, len, &name, &match)) {
        return reply_result(nbd_opt_error(c, opt, NBD_REP_ERR_INVALID,
                                          "malformed %s request", what));
    }
    bs = nbd_export_lookup(name);
    if (!bs) {
        return reply_result(nbd_opt_error(c, opt, NBD_REP_ERR_UNKNOWN,
                                          "export '%s' not found", name));
    }
    if (match) {
        /* LIST ids are reserved (zero); SET hands out the real one. */
        nbd_put32(rep, opt == NBD_OPT_SET_META_CONTEXT ? NBD_META_ID_BASE_ALLOCATION : 0);
        memcpy(rep + 4, NBD_META_BASE_ALLOCATION, sizeof(rep) - 4);
        if (nbd_opt_reply(c, opt, NBD_REP_META_CONTEXT, rep, sizeof(rep)) < 0) {
            return NBD_OPT_CLOSE;
        }
        if (opt == NBD_OPT_SET_META_CONTEXT) {
            c->meta_bs = bs;
            c->meta_base_alloc = true;
        }
    }
    return reply_result(nbd_opt_reply(c, opt, NBD_REP_ACK, NULL, 0));
}
