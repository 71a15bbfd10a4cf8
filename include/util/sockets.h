/* Endpoint URIs shared by --qmp, --nbd, --incoming and migrate:
 *   tcp:HOST:PORT   unix:PATH   file:PATH   defer                       */
#ifndef UTIL_SOCKETS_H
#define UTIL_SOCKETS_H

#include <glib.h>
#include <stdbool.h>

typedef enum {
    ENDPOINT_TCP,
    ENDPOINT_UNIX,
    ENDPOINT_FILE,
    ENDPOINT_DEFER,
} EndpointKind;

typedef struct Endpoint {
    EndpointKind kind;
    char *host;     /* TCP: "" or "0" mean any address; "[::1]" brackets stripped */
    char *port;     /* TCP */
    char *path;     /* UNIX, FILE */
} Endpoint;

/* Parse URI.  ALLOWED is a bitmask of (1 << EndpointKind) the caller
 * accepts; anything else fails with a message listing the accepted forms. */
bool endpoint_parse(const char *uri, unsigned allowed, Endpoint *out, GError **errp);
void endpoint_clear(Endpoint *ep);
char *endpoint_to_str(const Endpoint *ep);          /* caller frees */

/* Listening socket (SO_REUSEADDR; a stale unix socket file is replaced;
 * a unix socket file is created mode 0600 whatever the umask).
 * Returns fd (CLOEXEC) or -1 with errp set. */
int endpoint_listen(const Endpoint *ep, GError **errp);
/* Blocking connect; returns fd (CLOEXEC) or -1 with errp set. */
int endpoint_connect(const Endpoint *ep, GError **errp);
/* accept() retrying on EINTR; returns fd (CLOEXEC) or -1 with errno set. */
int socket_accept(int listen_fd);
/* Large send/receive buffers for bulk transfer; errors ignored. */
void socket_tune_bulk(int fd);
/* Make a dead link or peer end the TCP connection FD within about
 * TIMEOUT_S seconds, where Linux would take 15 minutes (retransmissions)
 * or 2 hours (keepalive): TCP_USER_TIMEOUT for data the peer does not
 * acknowledge, keepalive probes when there is none.  False when FD is not
 * a TCP socket (nothing changes then). */
bool socket_set_link_timeout(int fd, unsigned timeout_s);
/* Local TCP port of a bound socket (e.g. after listening on port 0), or -1
 * when FD is not an IPv4/IPv6 socket. */
int socket_local_port(int fd);
/* "HOST:PORT" of the peer of a TCP socket ("[::1]:PORT" for IPv6), or a
 * description for other sockets, for log lines; caller frees. */
char *socket_peer_name(int fd);
/* End our sending direction and discard what the peer still sends, until
 * it closes or TIMEOUT_MS passed: a connection refused after the peer's
 * last message, closed this way rather than at once, does not turn into a
 * reset that destroys our last words (a TLS alert) before the peer reads
 * them.  The caller closes FD afterwards. */
void socket_shutdown_drain(int fd, int timeout_ms);

#endif
