/* Checking the peer's x509 certificate during the handshake: chain to our
 * CA, validity dates, host name (clients), and the client's identity
 * against tls-authz (servers).  A refusal is recorded with its reason for
 * our log and answered with the alert that tells the peer what it was. */
#include "tls-internal.h"

#include <gnutls/x509.h>

char *tls_peer_dn(gnutls_session_t handle)
{
    unsigned n = 0;
    const gnutls_datum_t *certs = gnutls_certificate_get_peers(handle, &n);
    gnutls_x509_crt_t crt;
    char *dn = NULL;
    size_t size = 0;

    if (!certs || n == 0 || gnutls_x509_crt_init(&crt) < 0) {
        return NULL;
    }
    if (gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) >= 0 &&
        gnutls_x509_crt_get_dn(crt, NULL, &size) == GNUTLS_E_SHORT_MEMORY_BUFFER) {
        dn = g_malloc0(size + 1);
        if (gnutls_x509_crt_get_dn(crt, dn, &size) < 0) {
            g_clear_pointer(&dn, g_free);
        }
    }
    gnutls_x509_crt_deinit(crt);
    return dn;
}

static int refuse(TlsSession *s, gnutls_alert_description_t alert, char *reason)
{
    g_free(s->refusal);
    s->refusal = reason;
    s->refusal_alert = alert;
    return GNUTLS_E_CERTIFICATE_ERROR;
}

static gnutls_alert_description_t alert_for(unsigned status)
{
    if (status & GNUTLS_CERT_EXPIRED) {
        return GNUTLS_A_CERTIFICATE_EXPIRED;
    }
    if (status & GNUTLS_CERT_SIGNER_NOT_FOUND) {
        return GNUTLS_A_UNKNOWN_CA;
    }
    return GNUTLS_A_BAD_CERTIFICATE;
}

static int refuse_status(TlsSession *s, unsigned status, const char *dn)
{
    gnutls_datum_t text = { NULL, 0 };
    char *reason;

    gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0);
    reason = g_strdup_printf("the %s's certificate (%s) is refused: %s (CA: %s/ca-cert.pem)",
                             tls_session_peer_role(s), dn ? dn : "no subject",
                             text.data ? g_strstrip((char *)text.data) : "invalid",
                             s->creds->dir);
    gnutls_free(text.data);
    return refuse(s, alert_for(status), reason);
}

int tls_verify_peer_cb(gnutls_session_t handle)
{
    TlsSession *s = gnutls_session_get_ptr(handle);
    g_autofree char *dn = tls_peer_dn(handle);
    unsigned status = 0;
    int ret = gnutls_certificate_verify_peers3(handle, s->hostname, &status);

    if (ret < 0) {
        return refuse(s, GNUTLS_A_BAD_CERTIFICATE, g_strdup_printf(
                      "cannot verify the %s's certificate: %s", tls_session_peer_role(s),
                      gnutls_strerror(ret)));
    }
    if (status) {
        return refuse_status(s, status, dn);
    }
    if (s->authz && !tls_authz_is_allowed(s->authz, dn)) {
        return refuse(s, GNUTLS_A_ACCESS_DENIED, g_strdup_printf(
                      "the %s's identity '%s' is not allowed by tls-authz",
                      tls_session_peer_role(s), dn ? dn : "(none)"));
    }
    s->verified = true;
    return 0;
}
