/* NBD server: exports every drive under its id (guest I/O path). */
#ifndef NBD_SERVER_H
#define NBD_SERVER_H

#include <glib.h>
#include <stdbool.h>

/* TLS for the export (NBD_OPT_STARTTLS, as the NBD protocol says). */
typedef struct NbdServerTls {
    const char *creds;      /* id of a tls-creds-x509/-psk object with
                             * endpoint=server; NULL: no TLS (STARTTLS is
                             * refused as unsupported) */
    const char *authz;      /* id of an authz object the client's x509
                             * name must pass; NULL: any the CA signed */
    bool require;           /* refuse everything but STARTTLS and ABORT
                             * before TLS (tls=require, the default with
                             * creds, as qemu-nbd); false: TLS optional */
} NbdServerTls;

/* Listen on unix:PATH or tcp:HOST:PORT and serve in background threads.
 * Connections are accepted at once; I/O is held until nbd_server_resume_io.
 * TLS: NULL for none. */
bool nbd_server_start(const char *endpoint_uri, const NbdServerTls *tls, GError **errp);
void nbd_server_stop(void);

/* Guest device hooks, registered with the runstate by system/:
 * resume serves (and releases held) requests; pause returns once no request
 * is in flight, and holds new ones until resume. */
void nbd_server_resume_io(void);
void nbd_server_pause_io(void);
/* After a completed outgoing migration: held and new writes fail with
 * ESHUTDOWN, reads are served. */
void nbd_server_refuse_writes(void);

#endif
