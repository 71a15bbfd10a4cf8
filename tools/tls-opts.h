/* The options of every blkmig command that reach QMP over TLS
 * (blkmigd --qmp tcp:HOST:PORT,tls-creds=ID). */
#ifndef TOOLS_TLS_OPTS_H
#define TOOLS_TLS_OPTS_H

#include <getopt.h>
#include <stdbool.h>

#include "util/tls.h"

enum {
    OPT_TLS_CREDS = 1000, OPT_TLS_PSK, OPT_TLS_USERNAME, OPT_TLS_HOSTNAME,
};

#define TLS_LONG_OPTIONS \
    { "tls-creds", required_argument, NULL, OPT_TLS_CREDS }, \
    { "tls-psk", required_argument, NULL, OPT_TLS_PSK }, \
    { "tls-username", required_argument, NULL, OPT_TLS_USERNAME }, \
    { "tls-hostname", required_argument, NULL, OPT_TLS_HOSTNAME }

#define TLS_OPTIONS_HELP \
    "  --tls-creds DIR        talk QMP over TLS with the x509 files in DIR, named as\n" \
    "                         for QEMU's tls-creds-x509 endpoint=client: ca-cert.pem\n" \
    "                         (the CA that signed the server's certificate), and\n" \
    "                         client-cert.pem + client-key.pem when the server\n" \
    "                         checks clients (verify-peer=on, its default)\n" \
    "  --tls-psk DIR          talk QMP over TLS with a pre-shared key from\n" \
    "                         DIR/keys.psk (lines USERNAME:HEXKEY, as psktool\n" \
    "                         writes them)\n" \
    "  --tls-username NAME    the PSK user (default qemu)\n" \
    "  --tls-hostname NAME    the name the server's certificate must carry\n" \
    "                         (default: HOST of the tcp:HOST:PORT socket)\n"

/* Take CH's value when it is one of the options above. */
bool tls_opts_take(int ch, const char *arg);
/* The client credentials the options ask for (NULL: none), loaded on the
 * first call; a wrong directory or file ends blkmig with exit code 1. */
TlsCreds *tls_opts_creds(void);
const char *tls_opts_hostname(void);

#endif
