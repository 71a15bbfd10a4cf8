/* TLS credentials for tests, made by the real tools (certtool, psktool
 * from gnutls-bin) in a scratch directory, laid out as QEMU's
 * tls-creds-x509 and tls-creds-psk objects read them. */
#ifndef TESTS_TLS_CERTS_H
#define TESTS_TLS_CERTS_H

#include <stdbool.h>

/* A certificate authority in CA_DIR: ca-key.pem and a self-signed
 * ca-cert.pem with common name CN, valid from now for 2 days. */
void tt_make_ca(const char *ca_dir, const char *cn);

/* A credentials directory DIR (created) for ENDPOINT ("server" or
 * "client"): a copy of CA_DIR's ca-cert.pem, and ENDPOINT-cert.pem (signed
 * by that CA, subject "CN=CN,O=blkmig", for TLS ENDPOINT use; a server's
 * also names localhost and 127.0.0.1) with ENDPOINT-key.pem.  EXPIRED: the
 * certificate was valid only in 2020. */
void tt_make_cert(const char *dir, const char *ca_dir, const char *endpoint, const char *cn,
                  bool expired);

/* Add USER with a new random key to DIR/keys.psk (DIR created). */
void tt_make_psk(const char *dir, const char *user);
/* Copy file SRC to DST. */
void tt_copy(const char *src, const char *dst);

#endif
