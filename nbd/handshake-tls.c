/* TLS in the NBD handshake (proto.md, "TLS support"): NBD_OPT_STARTTLS
 * upgrades the connection, after which every byte goes through the TLS
 * session; and while the server requires TLS, nothing but STARTTLS and
 * ABORT is served in the clear. */
#include "nbd-internal.h"

NBDTlsConfig *nbd_tls_config_new(const NbdServerTls *tls, GError **errp)
{
    NBDTlsConfig *t;
    TlsCreds *creds;

    if (!tls || !tls->creds) {
        return NULL;
    }
    creds = tls_creds_lookup(tls->creds, TLS_ENDPOINT_SERVER, errp);
    if (!creds) {
        return NULL;
    }
    t = g_new0(NBDTlsConfig, 1);
    t->refs = 1;
    t->creds = creds;
    t->authz = g_strdup(tls->authz);
    t->require = tls->require;
    return t;
}

NBDTlsConfig *nbd_tls_config_ref(NBDTlsConfig *t)
{
    if (t) {
        g_atomic_int_inc(&t->refs);
    }
    return t;
}

void nbd_tls_config_unref(NBDTlsConfig *t)
{
    if (t && g_atomic_int_dec_and_test(&t->refs)) {
        tls_creds_unref(t->creds);
        g_free(t->authz);
        g_free(t);
    }
}

int nbd_opt_tls_policy(NBDConn *c, uint32_t opt)
{
    if (!c->tls_config || !c->tls_config->require || c->tls ||
        opt == NBD_OPT_STARTTLS || opt == NBD_OPT_ABORT) {
        return -1;
    }
    if (opt == NBD_OPT_EXPORT_NAME) {
        g_warning("%s: NBD_OPT_EXPORT_NAME before TLS, which this server requires; "
                  "disconnecting", c->peer);
        return NBD_OPT_CLOSE;
    }
    return nbd_opt_error(c, opt, NBD_REP_ERR_TLS_REQD, "this server requires TLS "
                         "(NBD_OPT_STARTTLS) first") < 0 ? NBD_OPT_CLOSE : NBD_OPT_NEXT;
}

/* The server side of the handshake, right after our ACK. */
static bool start_session(NBDConn *c)
{
    GError *err = NULL;
    TlsSession *s = tls_session_new(c->tls_config->creds, c->fd, NULL,
                                    c->tls_config->authz, &err);

    if (!s || !tls_session_handshake(s, NBD_HANDSHAKE_TIMEOUT_S * 1000, &err)) {
        g_warning("%s: refused TLS client: %s", c->peer, err->message);
        g_error_free(err);
        tls_session_free(s);
        return false;
    }
    g_message("%s: TLS client %s", c->peer,
              tls_session_peer_identity(s) ? tls_session_peer_identity(s)
                                           : "without a certificate");
    c->tls = s;
    /* What was negotiated in the clear does not carry over. */
    c->structured = false;
    c->meta_bs = NULL;
    c->meta_contexts = 0;
    return true;
}

NBDOptResult nbd_opt_starttls(NBDConn *c, uint32_t len)
{
    int ret;

    if (len != 0) {
        ret = nbd_opt_error(c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID,
                            "NBD_OPT_STARTTLS takes no data");
    } else if (!c->tls_config) {
        ret = nbd_opt_error(c, NBD_OPT_STARTTLS, NBD_REP_ERR_UNSUP,
                            "TLS is not configured on this server");
    } else if (c->tls) {
        ret = nbd_opt_error(c, NBD_OPT_STARTTLS, NBD_REP_ERR_INVALID,
                            "TLS is already negotiated");
    } else {
        if (nbd_opt_reply(c, NBD_OPT_STARTTLS, NBD_REP_ACK, NULL, 0) < 0) {
            return NBD_OPT_CLOSE;
        }
        /* The client must wait for our ACK: bytes it sent meanwhile
         * would be plain text inside the session. */
        if (c->in_pos < c->in_len) {
            g_warning("%s: data after NBD_OPT_STARTTLS before the TLS handshake, "
                      "disconnecting", c->peer);
            return NBD_OPT_CLOSE;
        }
        return start_session(c) ? NBD_OPT_NEXT : NBD_OPT_CLOSE;
    }
    return ret < 0 ? NBD_OPT_CLOSE : NBD_OPT_NEXT;
}
