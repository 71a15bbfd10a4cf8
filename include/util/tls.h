/* TLS over connected sockets (GnuTLS), with QEMU's objects and files:
 * credentials (tls-creds-x509, tls-creds-psk), peer authorization
 * (authz-simple, authz-list) and sessions that migration streams, the NBD
 * server and QMP put on their sockets.
 *
 * Threads: credentials and authz objects are immutable once loaded and
 * may be shared by any number of threads and sessions (reference
 * counted).  A session may be used by two threads at once, one receiving
 * and one sending (GnuTLS's rule), or by one thread for both. */
#ifndef UTIL_TLS_H
#define UTIL_TLS_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "util/user-object.h"

typedef enum {
    TLS_ENDPOINT_CLIENT,
    TLS_ENDPOINT_SERVER,
} TlsEndpoint;

GQuark tls_error_quark(void);
#define TLS_ERROR tls_error_quark()
typedef enum {
    TLS_ERR_CONFIG,     /* credentials, ids or options are wrong */
    TLS_ERR_HANDSHAKE,  /* the handshake failed: either side refused */
    TLS_ERR_TIMEOUT,    /* nothing moved within the timeout */
    TLS_ERR_IO,         /* the socket failed or a record was bad */
} TlsErrorCode;

/* ---- Credentials ---- */

typedef struct TlsCreds TlsCreds;

/* x509 credentials from the files in DIR, named as QEMU names them:
 * ca-cert.pem (always required), server-cert.pem and server-key.pem
 * (endpoint server, required), client-cert.pem and client-key.pem
 * (endpoint client, both or neither; a server with verify-peer=on refuses
 * a client without them), ca-crl.pem and dh-params.pem (optional).
 * VERIFY_PEER: a client checks the server's certificate against the CA
 * and the host name; a server requires and checks a client certificate.
 * Errors name the file and what is wrong with it (missing, unreadable,
 * not PEM, expired, not yet valid, not signed by the CA, key mismatch). */
TlsCreds *tls_creds_new_x509(const char *dir, TlsEndpoint endpoint, bool verify_peer,
                             GError **errp);
/* Pre-shared keys from DIR/keys.psk, lines "USERNAME:HEXKEY" as psktool
 * writes them.  A server accepts every user in the file; a client uses
 * USERNAME's key (NULL: "qemu", as QEMU). */
TlsCreds *tls_creds_new_psk(const char *dir, TlsEndpoint endpoint, const char *username,
                            GError **errp);
TlsCreds *tls_creds_ref(TlsCreds *c);
void tls_creds_unref(TlsCreds *c);
TlsEndpoint tls_creds_endpoint(const TlsCreds *c);
/* For messages: "tls-creds-x509 'tls0'" (or "x509 credentials in DIR"). */
const char *tls_creds_name(const TlsCreds *c);
/* Where C's files are, for a TLS client outside util/ (libnbd) that reads
 * the same ones: x509 (DIR holds QEMU's file names) or PSK (DIR/keys.psk,
 * USERNAME's key).  Valid while C is. */
typedef struct TlsCredsFiles {
    bool psk;
    const char *dir;
    const char *username;
    bool verify_peer;
} TlsCredsFiles;
void tls_creds_files(const TlsCreds *c, TlsCredsFiles *out);
/* The credentials registered as ID (--object, object-add): a new
 * reference.  Fails when ID is unknown, is another kind of object, or is
 * for the other endpoint ("... are endpoint=client; a server needs
 * endpoint=server"). */
TlsCreds *tls_creds_lookup(const char *id, TlsEndpoint endpoint, GError **errp);

/* Object types for the registry (util/user-object.c): check the
 * properties only, or create and load. */
bool tls_creds_x509_check(const UserObjectProps *p, GError **errp);
void *tls_creds_x509_create(const UserObjectProps *p, GError **errp);
bool tls_creds_psk_check(const UserObjectProps *p, GError **errp);
void *tls_creds_psk_create(const UserObjectProps *p, GError **errp);

/* ---- Authorization of a client's x509 identity ---- */

/* authz-simple,id=ID,identity=DN: exactly one distinguished name.
 * authz-list (QMP or JSON --object): "rules", a list of {"match": DN or
 * glob, "policy": "allow"|"deny", "format": "exact"|"glob"}, the first
 * match decides; "policy" (default "deny") when none matches. */
typedef struct TlsAuthz TlsAuthz;

TlsAuthz *tls_authz_lookup(const char *id, GError **errp);
bool tls_authz_is_allowed(const TlsAuthz *a, const char *identity);
TlsAuthz *tls_authz_ref(TlsAuthz *a);
void tls_authz_unref(TlsAuthz *a);
bool tls_authz_simple_check(const UserObjectProps *p, GError **errp);
void *tls_authz_simple_create(const UserObjectProps *p, GError **errp);
bool tls_authz_list_check(const UserObjectProps *p, GError **errp);
void *tls_authz_list_create(const UserObjectProps *p, GError **errp);

/* ---- Sessions ---- */

typedef struct TlsSession TlsSession;

/* A bound for handshakes when the caller has none of its own. */
#define TLS_HANDSHAKE_TIMEOUT_MS 10000

/* A session on the connected socket FD, which stays the caller's (close
 * it after tls_session_free).  The credentials' endpoint gives the role.
 * HOSTNAME: for a client whose x509 credentials verify the peer, the name
 * (or IP address) the server's certificate must carry; required then.
 * AUTHZ_ID: for a server whose x509 credentials verify the peer, an authz
 * object the client's distinguished name must satisfy (NULL: any client
 * the CA signed).  The socket may be blocking or not: the session never
 * blocks in a socket call, it waits in poll(). */
TlsSession *tls_session_new(TlsCreds *creds, int fd, const char *hostname,
                            const char *authz_id, GError **errp);
/* Frees the session (no close_notify: see tls_session_bye). NULL: no-op. */
void tls_session_free(TlsSession *s);
int tls_session_fd(const TlsSession *s);

/* Run the handshake, failing after TIMEOUT_MS without completion (< 0:
 * no limit).  A refusal gives a message on both sides: the refusing side
 * says why (the certificate and its problem, the identity authz denied,
 * an unknown PSK user), the refused side what the peer's alert says.
 * After a failure the socket can only be closed: its sending side is
 * shut, and what the peer still sends is drained for up to 1 s so that
 * our alert reaches it rather than a reset. */
bool tls_session_handshake(TlsSession *s, int timeout_ms, GError **errp);
/* The same one step at a time, for event loops: DONE, AGAIN (wait for
 * tls_session_wait_events() on the fd, then call again) or FAILED (then
 * best shut the sending side and drain a moment before the close, as
 * above, without blocking the loop). */
typedef enum {
    TLS_STEP_DONE,
    TLS_STEP_AGAIN,
    TLS_STEP_FAILED,
} TlsStep;
TlsStep tls_session_handshake_step(TlsSession *s, GError **errp);
/* POLLIN or POLLOUT: what the last call that would have blocked waits
 * for.  With one thread receiving and another sending, the receiver may
 * simply wait for POLLIN and the sender for POLLOUT. */
short tls_session_wait_events(TlsSession *s);

/* After the handshake.  The peer's identity: the subject distinguished
 * name of its certificate ("CN=...,O=..."), or the PSK username; NULL
 * when it showed none.  Verified only with verify-peer=on (or PSK). */
const char *tls_session_peer_identity(const TlsSession *s);
/* Protocol and cipher, e.g. "(TLS1.3)-(ECDHE-SECP256R1)-...-(AES-128-GCM)". */
const char *tls_session_cipher(const TlsSession *s);

/* One attempt, like recv()/send() on a non-blocking socket: bytes moved
 * (a send moves at most one record, 16 KiB), 0 at the end of the stream
 * (close_notify, or the peer closed the socket), or -1 with errno: EAGAIN
 * when it would block (errp untouched; wait and call again: a send with
 * the same buffer, at least as long), else EPIPE, ECONNRESET, EIO... with
 * errp set.  Decrypted bytes may be buffered inside the session, where
 * poll() cannot see them: call recv before waiting, or check pending. */
ssize_t tls_session_recv(TlsSession *s, void *buf, size_t len, GError **errp);
ssize_t tls_session_send(TlsSession *s, const void *buf, size_t len, GError **errp);
size_t tls_session_pending(TlsSession *s);

/* Blocking forms for callers without an event loop: wait in poll() for
 * at most TIMEOUT_MS with no byte moving (< 0: no limit), then fail with
 * TLS_ERR_TIMEOUT (errno ETIMEDOUT).  read returns what is there (at
 * least 1 byte), 0 at the end, -1 on error; the writes send everything. */
ssize_t tls_session_read(TlsSession *s, void *buf, size_t len, int timeout_ms,
                         GError **errp);
bool tls_session_write_all(TlsSession *s, const void *buf, size_t len, int timeout_ms,
                           GError **errp);
/* Small pieces (protocol headers) are gathered into the record that
 * carries the data after them, so a reply costs no extra record. */
bool tls_session_writev_all(TlsSession *s, const struct iovec *iov, int iovcnt,
                            int timeout_ms, GError **errp);
/* Send close_notify (the sending direction ends; receiving still works,
 * so a receiving thread may go on).  Waits at most TIMEOUT_MS. */
bool tls_session_bye(TlsSession *s, int timeout_ms, GError **errp);

#endif
