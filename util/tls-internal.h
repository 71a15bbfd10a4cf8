/* Private interfaces between the TLS files of util/ (tls-*.c). */
#ifndef UTIL_TLS_INTERNAL_H
#define UTIL_TLS_INTERNAL_H

#include <gnutls/gnutls.h>

#include "util/tls.h"

/* GnuTLS's NORMAL: the same protocols, key exchanges, signatures and
 * ciphers, with the ciphers in GnuTLS's PERFORMANCE order for AES-NI
 * machines: AES-128-GCM first (NORMAL puts AES-256-GCM first: four more
 * AES rounds per block, for no protection a migration link needs), then
 * AES-256-GCM and ChaCha20, then CCM and CBC.  PERFORMANCE itself also
 * moves static RSA key exchange first in TLS 1.2, losing forward secrecy,
 * hence the explicit list.  The initiating side's order picks the suite
 * (GnuTLS servers follow the client's), so a QEMU peer on NORMAL still
 * gets AES-256-GCM from us.  PSK credentials add the PSK key exchanges,
 * as QEMU does. */
#define TLS_DEFAULT_PRIORITY "NORMAL:-CIPHER-ALL:+AES-128-GCM:+AES-256-GCM:" \
    "+CHACHA20-POLY1305:+AES-128-CCM:+AES-256-CCM:+AES-128-CBC:+AES-256-CBC"
#define TLS_PSK_PRIORITY_EXTRA ":+ECDHE-PSK:+DHE-PSK:+PSK"
/* The username a PSK client uses when none is given (QEMU's). */
#define TLS_PSK_DEFAULT_USER "qemu"

typedef enum {
    TLS_CREDS_X509,
    TLS_CREDS_PSK,
} TlsCredsKind;

struct TlsCreds {
    gint refs;
    TlsCredsKind kind;
    TlsEndpoint endpoint;
    char *name;                 /* for messages */
    char *dir;
    char *priority;             /* full GnuTLS priority string */
    gnutls_priority_t prio;     /* the same, parsed once */
    bool verify_peer;           /* x509 */
    gnutls_certificate_credentials_t x509;
    gnutls_psk_server_credentials_t psk_server;
    gnutls_psk_client_credentials_t psk_client;
    GHashTable *psk_keys;       /* server: username -> gnutls_datum_t * (raw key) */
    char *username;             /* PSK client: the user whose key we use */
    gnutls_dh_params_t dh;
};

/* What both credential kinds read from their properties. */
typedef struct TlsCredsSpec {
    const char *dir;
    TlsEndpoint endpoint;
    bool verify_peer;
    bool sanity_check;
    const char *priority;       /* NULL: the default */
    const char *username;       /* PSK client */
} TlsCredsSpec;

/* tls-creds.c: the parts common to both kinds. */
TlsCreds *tls_creds_alloc(TlsCredsKind kind, const TlsCredsSpec *spec, const char *id);
/* dir, endpoint and priority of P (the properties every kind has). */
bool tls_creds_parse_common(const UserObjectProps *p, TlsCredsSpec *spec, GError **errp);
/* "DIR/NAME" (caller frees). */
char *tls_creds_path(const TlsCreds *c, const char *name);
/* What every kind does besides its own files: parse the priority string
 * and, for a server, load DIR/dh-params.pem when there is one. */
bool tls_creds_load_common(TlsCreds *c, GError **errp);
/* The whole file PATH (NUL-terminated; *LEN without the NUL), or NULL and
 * "NAME: cannot read WHAT PATH: reason".  Caller frees. */
char *tls_creds_read_file(const TlsCreds *c, const char *path, const char *what, gsize *len,
                          GError **errp);
/* DIR must be a directory we can read. */
bool tls_creds_check_dir(const TlsCreds *c, GError **errp);
void tls_error(GError **errp, TlsErrorCode code, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

/* tls-creds-x509.c / tls-creds-psk.c */
bool tls_creds_x509_load(TlsCreds *c, bool sanity_check, GError **errp);
bool tls_creds_psk_load(TlsCreds *c, const char *username, GError **errp);

/* tls-creds-psk.c, PSK server: KEY for USERNAME (gnutls_malloc'ed), or
 * -1 and the session's refusal set for an unknown user. */
int tls_psk_server_key_cb(gnutls_session_t handle, const char *username,
                          gnutls_datum_t *key);

/* tls-verify.c: the peer's certificate, checked inside the handshake so
 * that a refusal reaches the peer as an alert. */
int tls_verify_peer_cb(gnutls_session_t handle);
/* The subject DN of the peer's certificate, or NULL (caller frees). */
char *tls_peer_dn(gnutls_session_t handle);

/* tls-session.c */
struct TlsSession {
    TlsCreds *creds;
    TlsAuthz *authz;
    gnutls_session_t handle;
    int fd;
    char *hostname;
    char *peer_identity;
    char *cipher;
    char *refusal;              /* why our side refused the peer, for messages */
    int refusal_alert;          /* the alert that tells the peer */
    bool verified;              /* the peer's certificate passed tls_verify_peer_cb */
    bool handshake_done;
    int recv_errno;             /* of the last failed socket call, per direction */
    int send_errno;
};

/* What a received alert most likely means, for the refused side:
 * ": it does not accept our certificate ..." or "". */
const char *tls_alert_hint(const TlsSession *s, gnutls_alert_description_t alert);
/* "client" or "server": the role of the other side of S. */
const char *tls_session_peer_role(const TlsSession *s);

/* tls-io.c: errno and message for a failed GnuTLS call RET in the
 * receiving or the sending direction. */
void tls_io_error(TlsSession *s, int ret, bool receiving, GError **errp);
/* Wait up to TIMEOUT_MS (< 0: no limit) for EVENTS on the fd; false with
 * TLS_ERR_TIMEOUT (errno ETIMEDOUT) when nothing came. */
bool tls_io_wait(TlsSession *s, short events, int timeout_ms, const char *what,
                 GError **errp);

#endif
