/* A TLS session on a connected socket: set-up from credentials, the
 * transport GnuTLS reads and writes through (never blocking: waits are
 * the callers' poll()s, so one session serves blocking threads and event
 * loops alike), the handshake and its messages, and what the handshake
 * tells about the peer. */
#include "tls-internal.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

#include "util/sockets.h"

/* How long a failed blocking handshake lets the peer read our alert. */
#define REFUSED_DRAIN_MS 1000

/* ---- transport ---- */

static ssize_t transport_push(gnutls_transport_ptr_t ptr, const void *buf, size_t len)
{
    TlsSession *s = ptr;
    ssize_t n = send(s->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);

    if (n < 0) {
        s->send_errno = errno;
    }
    return n;
}

static ssize_t transport_pull(gnutls_transport_ptr_t ptr, void *buf, size_t len)
{
    TlsSession *s = ptr;
    ssize_t n = recv(s->fd, buf, len, MSG_DONTWAIT);

    if (n < 0) {
        s->recv_errno = errno;
    }
    return n;
}

/* GnuTLS asks whether to read before it reads, with its own timeouts;
 * ours are the callers'.  "Go ahead": the read then says EAGAIN. */
static int transport_pull_timeout(gnutls_transport_ptr_t ptr, unsigned ms)
{
    return 1;
}

/* ---- set-up ---- */

static bool check_options(TlsCreds *c, const char *hostname, const char *authz_id,
                          GError **errp)
{
    bool x509_verify = c->kind == TLS_CREDS_X509 && c->verify_peer;

    if (x509_verify && c->endpoint == TLS_ENDPOINT_CLIENT && !hostname) {
        tls_error(errp, TLS_ERR_CONFIG, "%s: checking the server's certificate needs the "
                  "server's host name (tls-hostname)", c->name);
        return false;
    }
    if (authz_id && !(x509_verify && c->endpoint == TLS_ENDPOINT_SERVER)) {
        tls_error(errp, TLS_ERR_CONFIG, "%s: tls-authz '%s' needs x509 credentials with "
                  "endpoint=server and verify-peer=on (it checks the client's certificate)",
                  c->name, authz_id);
        return false;
    }
    return true;
}

static int set_credentials(TlsSession *s)
{
    TlsCreds *c = s->creds;
    bool server = c->endpoint == TLS_ENDPOINT_SERVER;

    if (c->kind == TLS_CREDS_PSK) {
        return gnutls_credentials_set(s->handle, GNUTLS_CRD_PSK,
                                      server ? (void *)c->psk_server : (void *)c->psk_client);
    }
    if (server) {
        gnutls_certificate_server_set_request(s->handle, c->verify_peer ? GNUTLS_CERT_REQUIRE
                                                                       : GNUTLS_CERT_REQUEST);
    }
    if (c->verify_peer) {
        gnutls_session_set_verify_function(s->handle, tls_verify_peer_cb);
    }
    return gnutls_credentials_set(s->handle, GNUTLS_CRD_CERTIFICATE, c->x509);
}

static bool init_handle(TlsSession *s, GError **errp)
{
    unsigned flags = GNUTLS_NONBLOCK | GNUTLS_NO_SIGNAL | GNUTLS_NO_TICKETS |
        (s->creds->endpoint == TLS_ENDPOINT_SERVER ? GNUTLS_SERVER : GNUTLS_CLIENT);
    int ret = gnutls_init(&s->handle, flags);

    if (ret < 0) {
        s->handle = NULL;
    } else if ((ret = gnutls_priority_set(s->handle, s->creds->prio)) >= 0) {
        ret = set_credentials(s);
    }
    if (ret < 0) {
        tls_error(errp, TLS_ERR_CONFIG, "%s: cannot set up a TLS session: %s",
                  s->creds->name, gnutls_strerror(ret));
        return false;
    }
    gnutls_session_set_ptr(s->handle, s);
    gnutls_transport_set_ptr(s->handle, s);
    gnutls_transport_set_push_function(s->handle, transport_push);
    gnutls_transport_set_pull_function(s->handle, transport_pull);
    gnutls_transport_set_pull_timeout_function(s->handle, transport_pull_timeout);
    gnutls_handshake_set_timeout(s->handle, 0);     /* the callers' timeouts rule */
    return true;
}

TlsSession *tls_session_new(TlsCreds *creds, int fd, const char *hostname,
                            const char *authz_id, GError **errp)
{
    TlsSession *s;

    if (!check_options(creds, hostname, authz_id, errp)) {
        return NULL;
    }
    s = g_new0(TlsSession, 1);
    s->creds = tls_creds_ref(creds);
    s->fd = fd;
    s->hostname = g_strdup(hostname);
    if ((authz_id && !(s->authz = tls_authz_lookup(authz_id, errp))) ||
        !init_handle(s, errp)) {
        tls_session_free(s);
        return NULL;
    }
    return s;
}

void tls_session_free(TlsSession *s)
{
    if (!s) {
        return;
    }
    if (s->handle) {
        gnutls_deinit(s->handle);
    }
    tls_authz_unref(s->authz);
    tls_creds_unref(s->creds);
    g_free(s->hostname);
    g_free(s->peer_identity);
    g_free(s->cipher);
    g_free(s->refusal);
    g_free(s);
}

int tls_session_fd(const TlsSession *s)
{
    return s->fd;
}

const char *tls_session_peer_role(const TlsSession *s)
{
    return s->creds->endpoint == TLS_ENDPOINT_SERVER ? "client" : "server";
}

/* ---- handshake ---- */

static char *peer_identity(TlsSession *s)
{
    if (s->creds->kind == TLS_CREDS_X509) {
        return tls_peer_dn(s->handle);
    }
    if (s->creds->endpoint == TLS_ENDPOINT_CLIENT) {
        return g_strdup(s->creds->username);
    }
    return g_strdup(gnutls_psk_server_get_username(s->handle));
}

static bool handshake_finish(TlsSession *s, GError **errp)
{
    char *desc = gnutls_session_get_desc(s->handle);

    if (s->creds->kind == TLS_CREDS_X509 && s->creds->verify_peer && !s->verified) {
        gnutls_free(desc);
        tls_error(errp, TLS_ERR_HANDSHAKE, "TLS handshake failed: the %s showed no "
                  "certificate to verify", tls_session_peer_role(s));
        return false;
    }
    s->cipher = g_strdup(desc ? desc : "?");
    gnutls_free(desc);
    s->peer_identity = peer_identity(s);
    s->handshake_done = true;
    g_debug("TLS %s session with %s: %s, key exchange %s",
            s->creds->endpoint == TLS_ENDPOINT_SERVER ? "server" : "client",
            s->peer_identity ? s->peer_identity : "an anonymous peer", s->cipher,
            gnutls_kx_get_name(gnutls_kx_get(s->handle)));
    return true;
}

const char *tls_alert_hint(const TlsSession *s, gnutls_alert_description_t alert)
{
    switch ((int)alert) {
    case GNUTLS_A_UNKNOWN_CA:
        return ": it does not trust the CA that signed our certificate";
    case GNUTLS_A_CERTIFICATE_EXPIRED:
        return ": by its clock our certificate expired (or is not valid yet)";
    case GNUTLS_A_BAD_CERTIFICATE:
    case GNUTLS_A_CERTIFICATE_UNKNOWN:
    case GNUTLS_A_UNSUPPORTED_CERTIFICATE:
        return ": it does not accept our certificate (its log says why)";
    case GNUTLS_A_CERTIFICATE_REQUIRED:
        return ": it requires a client certificate signed by its CA (client-cert.pem and "
               "client-key.pem in our credentials directory)";
    case GNUTLS_A_ACCESS_DENIED:
        return ": our certificate's identity is not in its tls-authz list";
    case GNUTLS_A_UNKNOWN_PSK_IDENTITY:
        return ": it does not know our PSK username";
    case GNUTLS_A_DECRYPT_ERROR:
    case GNUTLS_A_BAD_RECORD_MAC:
    case GNUTLS_A_ILLEGAL_PARAMETER:
        return s->creds->kind == TLS_CREDS_PSK ? ": the PSK keys most likely differ" : "";
    case GNUTLS_A_HANDSHAKE_FAILURE:
    case GNUTLS_A_INSUFFICIENT_SECURITY:
    case GNUTLS_A_PROTOCOL_VERSION:
        return ": no common protocol or cipher (x509 against PSK credentials, or priority)";
    default:
        return "";
    }
}

/* What our own failure most likely means. */
static const char *error_hint(const TlsSession *s, int ret)
{
    switch (ret) {
    case GNUTLS_E_PREMATURE_TERMINATION:
    case GNUTLS_E_PULL_ERROR:
    case GNUTLS_E_PUSH_ERROR:
        return " (the peer closed the connection: does it speak TLS, with these credentials?)";
    case GNUTLS_E_UNEXPECTED_PACKET_LENGTH:
    case GNUTLS_E_UNSUPPORTED_VERSION_PACKET:
    case GNUTLS_E_UNEXPECTED_PACKET:
        return " (the peer does not seem to speak TLS)";
    case GNUTLS_E_DECRYPTION_FAILED:
    case GNUTLS_E_RECEIVED_ILLEGAL_PARAMETER:
        return s->creds->kind == TLS_CREDS_PSK ? " (the PSK keys most likely differ)" : "";
    case GNUTLS_E_INSUFFICIENT_CREDENTIALS:
        return " (the peer uses another kind of credentials: x509 against PSK?)";
    case GNUTLS_E_NO_CERTIFICATE_FOUND:
    case GNUTLS_E_CERTIFICATE_REQUIRED:
        return " (the client sent no certificate signed by our CA, and verify-peer is on)";
    default:
        return "";
    }
}

static void handshake_error(TlsSession *s, int ret, GError **errp)
{
    if (s->refusal) {
        tls_error(errp, TLS_ERR_HANDSHAKE, "TLS handshake failed: %s", s->refusal);
        if (s->refusal_alert) {
            gnutls_alert_send(s->handle, GNUTLS_AL_FATAL, s->refusal_alert);
        }
    } else if (ret == GNUTLS_E_FATAL_ALERT_RECEIVED) {
        gnutls_alert_description_t alert = gnutls_alert_get(s->handle);
        tls_error(errp, TLS_ERR_HANDSHAKE, "TLS handshake failed: the %s refused it with "
                  "alert '%s'%s", tls_session_peer_role(s), gnutls_alert_get_name(alert),
                  tls_alert_hint(s, alert));
    } else {
        tls_error(errp, TLS_ERR_HANDSHAKE, "TLS handshake failed: %s%s",
                  gnutls_strerror(ret), error_hint(s, ret));
        gnutls_alert_send_appropriate(s->handle, ret);
    }
}

TlsStep tls_session_handshake_step(TlsSession *s, GError **errp)
{
    int ret;

    if (s->handshake_done) {
        return TLS_STEP_DONE;
    }
    do {
        ret = gnutls_handshake(s->handle);
    } while (ret < 0 && ret != GNUTLS_E_AGAIN && !gnutls_error_is_fatal(ret));
    if (ret == GNUTLS_E_AGAIN) {
        return TLS_STEP_AGAIN;
    }
    if (ret < 0) {
        handshake_error(s, ret, errp);
        return TLS_STEP_FAILED;
    }
    return handshake_finish(s, errp) ? TLS_STEP_DONE : TLS_STEP_FAILED;
}

bool tls_session_handshake(TlsSession *s, int timeout_ms, GError **errp)
{
    gint64 deadline = timeout_ms < 0 ? -1 : g_get_monotonic_time() + timeout_ms * 1000LL;

    for (;;) {
        TlsStep step = tls_session_handshake_step(s, errp);
        gint64 left_ms;
        if (step == TLS_STEP_FAILED) {
            /* Let our alert reach the peer before the caller's close
             * could turn into a reset that destroys it. */
            socket_shutdown_drain(s->fd, REFUSED_DRAIN_MS);
        }
        if (step != TLS_STEP_AGAIN) {
            return step == TLS_STEP_DONE;
        }
        left_ms = deadline < 0 ? -1 : MAX(0, (deadline - g_get_monotonic_time()) / 1000);
        if (!tls_io_wait(s, tls_session_wait_events(s), (int)left_ms, NULL, NULL)) {
            tls_error(errp, TLS_ERR_TIMEOUT, "TLS handshake timed out after %d ms (the %s "
                      "stopped answering: does it speak TLS?)", timeout_ms,
                      tls_session_peer_role(s));
            errno = ETIMEDOUT;
            return false;
        }
    }
}

short tls_session_wait_events(TlsSession *s)
{
    return gnutls_record_get_direction(s->handle) ? POLLOUT : POLLIN;
}

const char *tls_session_peer_identity(const TlsSession *s)
{
    return s->peer_identity;
}

const char *tls_session_cipher(const TlsSession *s)
{
    return s->cipher;
}
