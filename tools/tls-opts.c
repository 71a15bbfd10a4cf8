/* blkmig's QMP-over-TLS options: which credentials to load, once. */
#include "tls-opts.h"
#include "blkmig-internal.h"

#include <stdio.h>
#include <stdlib.h>

static const char *x509_dir, *psk_dir, *username, *hostname;

bool tls_opts_take(int ch, const char *arg)
{
    switch (ch) {
    case OPT_TLS_CREDS: x509_dir = arg; return true;
    case OPT_TLS_PSK: psk_dir = arg; return true;
    case OPT_TLS_USERNAME: username = arg; return true;
    case OPT_TLS_HOSTNAME: hostname = arg; return true;
    default: return false;
    }
}

static TlsCreds *load(void)
{
    GError *err = NULL;
    TlsCreds *c;

    if (x509_dir && psk_dir) {
        fprintf(stderr, "blkmig: --tls-creds and --tls-psk exclude each other\n");
        exit(EXIT_FAILED);
    }
    if (!x509_dir && !psk_dir) {
        return NULL;
    }
    c = psk_dir ? tls_creds_new_psk(psk_dir, TLS_ENDPOINT_CLIENT, username, &err)
                : tls_creds_new_x509(x509_dir, TLS_ENDPOINT_CLIENT, true, &err);
    if (!c) {
        fprintf(stderr, "blkmig: %s: %s\n", psk_dir ? "--tls-psk" : "--tls-creds",
                err->message);
        exit(EXIT_FAILED);
    }
    return c;
}

TlsCreds *tls_opts_creds(void)
{
    static bool loaded;
    static TlsCreds *creds;

    if (!loaded) {
        creds = load();
        loaded = true;
    }
    return creds;
}

const char *tls_opts_hostname(void)
{
    return hostname;
}
