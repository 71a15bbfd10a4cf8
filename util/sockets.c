/* Endpoint URIs and the TCP / UNIX sockets behind them. */
#include "util/sockets.h"

#include <errno.h>
#include <gio/gio.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define LISTEN_BACKLOG 64
#define BULK_SOCKET_BUFFER (4 * 1024 * 1024)

static const char *const kind_forms[] = {
    [ENDPOINT_TCP] = "tcp:HOST:PORT",
    [ENDPOINT_UNIX] = "unix:PATH",
    [ENDPOINT_FILE] = "file:PATH",
    [ENDPOINT_DEFER] = "defer",
};

/* "tcp:HOST:PORT, unix:PATH or defer" for the kinds in ALLOWED. */
static char *accepted_forms(unsigned allowed)
{
    GPtrArray *forms = g_ptr_array_new();
    for (unsigned k = 0; k < G_N_ELEMENTS(kind_forms); k++) {
        if (allowed & (1u << k)) {
            g_ptr_array_add(forms, (gpointer)kind_forms[k]);
        }
    }
    GString *s = g_string_new(NULL);
    for (unsigned i = 0; i < forms->len; i++) {
        if (i > 0) {
            g_string_append(s, i + 1 == forms->len ? " or " : ", ");
        }
        g_string_append(s, forms->pdata[i]);
    }
    g_ptr_array_free(forms, TRUE);
    return g_string_free(s, FALSE);
}

static void set_parse_error(GError **errp, const char *uri, unsigned allowed, const char *why)
{
    char *forms = accepted_forms(allowed);
    g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                "Invalid address '%s': %s; expected %s", uri, why, forms);
    g_free(forms);
}

static bool port_is_valid(const char *port)
{
    if (!*port || strlen(port) > 5) {
        return false;
    }
    for (const char *p = port; *p; p++) {
        if (!g_ascii_isdigit(*p)) {
            return false;
        }
    }
    return atoi(port) <= 65535;
}

/* REST is "HOST:PORT" or "[V6ADDR]:PORT". */
static const char *parse_tcp(const char *rest, Endpoint *out)
{
    const char *colon;

    if (rest[0] == '[') {
        const char *close = strchr(rest, ']');
        if (!close || close[1] != ':') {
            return "an IPv6 host needs the form [ADDR]:PORT";
        }
        out->host = g_strndup(rest + 1, (gsize)(close - rest - 1));
        colon = close + 1;
    } else {
        colon = strchr(rest, ':');
        if (!colon) {
            return "missing ':PORT'";
        }
        out->host = g_strndup(rest, (gsize)(colon - rest));
    }
    if (!port_is_valid(colon + 1)) {
        return "the port must be a number from 0 to 65535";
    }
    out->port = g_strdup(colon + 1);
    return NULL;
}

static bool kind_of_uri(const char *uri, EndpointKind *kind, const char **rest)
{
    static const struct { const char *prefix; EndpointKind kind; } prefixes[] = {
        { "tcp:", ENDPOINT_TCP }, { "unix:", ENDPOINT_UNIX }, { "file:", ENDPOINT_FILE },
    };
    if (strcmp(uri, "defer") == 0) {
        *kind = ENDPOINT_DEFER;
        *rest = uri + strlen(uri);
        return true;
    }
    for (unsigned i = 0; i < G_N_ELEMENTS(prefixes); i++) {
        if (g_str_has_prefix(uri, prefixes[i].prefix)) {
            *kind = prefixes[i].kind;
            *rest = uri + strlen(prefixes[i].prefix);
            return true;
        }
    }
    return false;
}

bool endpoint_parse(const char *uri, unsigned allowed, Endpoint *out, GError **errp)
{
    EndpointKind kind;
    const char *rest;
    const char *why = NULL;

    memset(out, 0, sizeof(*out));
    if (!uri || !kind_of_uri(uri, &kind, &rest)) {
        set_parse_error(errp, uri ? uri : "", allowed, "unknown transport");
        return false;
    }
    if (!(allowed & (1u << kind))) {
        set_parse_error(errp, uri, allowed, "transport not accepted here");
        return false;
    }
    out->kind = kind;
    if (kind == ENDPOINT_TCP) {
        why = parse_tcp(rest, out);
    } else if (kind == ENDPOINT_UNIX || kind == ENDPOINT_FILE) {
        if (!*rest) {
            why = "the path is empty";
        } else {
            out->path = g_strdup(rest);
        }
    }
    if (why) {
        set_parse_error(errp, uri, allowed, why);
        endpoint_clear(out);
        return false;
    }
    return true;
}

void endpoint_clear(Endpoint *ep)
{
    g_clear_pointer(&ep->host, g_free);
    g_clear_pointer(&ep->port, g_free);
    g_clear_pointer(&ep->path, g_free);
}

char *endpoint_to_str(const Endpoint *ep)
{
    switch (ep->kind) {
    case ENDPOINT_TCP:
        if (strchr(ep->host, ':')) {
            return g_strdup_printf("tcp:[%s]:%s", ep->host, ep->port);
        }
        return g_strdup_printf("tcp:%s:%s", ep->host, ep->port);
    case ENDPOINT_UNIX:
        return g_strdup_printf("unix:%s", ep->path);
    case ENDPOINT_FILE:
        return g_strdup_printf("file:%s", ep->path);
    case ENDPOINT_DEFER:
        break;
    }
    return g_strdup("defer");
}

static void set_socket_error(GError **errp, const char *what, const Endpoint *ep, int err)
{
    char *name = endpoint_to_str(ep);
    g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(err),
                "Cannot %s %s: %s", what, name, g_strerror(err));
    g_free(name);
}

static bool host_is_any(const char *host)
{
    return !host || !*host || strcmp(host, "0") == 0;
}

static struct addrinfo *tcp_resolve(const Endpoint *ep, bool passive, GError **errp)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0),
    };
    struct addrinfo *res = NULL;
    const char *host = host_is_any(ep->host) ? NULL : ep->host;

    int rc = getaddrinfo(host, ep->port, &hints, &res);
    if (rc != 0) {
        char *name = endpoint_to_str(ep);
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_HOST_NOT_FOUND,
                    "Cannot resolve %s: %s", name, gai_strerror(rc));
        g_free(name);
        return NULL;
    }
    return res;
}

/* Listening on "any": an IPv6 socket that also accepts IPv4 serves both, so
 * try IPv6 addresses first; plain IPv4 remains when IPv6 is off. */
static int tcp_listen_one(const struct addrinfo *ai, bool dual_stack)
{
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
        return -1;
    }
    int on = 1, off = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    if (dual_stack && ai->ai_family == AF_INET6) {
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof(off));
    }
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    return fd;
}

static int tcp_listen(const Endpoint *ep, GError **errp)
{
    struct addrinfo *res = tcp_resolve(ep, true, errp);
    if (!res) {
        return -1;
    }
    bool any = host_is_any(ep->host);
    int err = EADDRNOTAVAIL;
    int fd = -1;
    for (int pass = any ? 0 : 1; pass < 2 && fd < 0; pass++) {
        for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
            if (pass == 0 && ai->ai_family != AF_INET6) {
                continue;
            }
            fd = tcp_listen_one(ai, any);
            if (fd < 0) {
                err = errno;
            }
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        set_socket_error(errp, "listen on", ep, err);
    }
    return fd;
}

/* connect() interrupted by a signal goes on in the background: wait for it. */
static int connect_retry(int fd, const struct sockaddr *addr, socklen_t len)
{
    if (connect(fd, addr, len) == 0) {
        return 0;
    }
    if (errno != EINTR && errno != EINPROGRESS) {
        return -1;
    }
    struct pollfd pfd = { .fd = fd, .events = POLLOUT };
    while (poll(&pfd, 1, -1) < 0) {
        if (errno != EINTR) {
            return -1;
        }
    }
    int err = 0;
    socklen_t errlen = sizeof(err);
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &errlen) < 0) {
        return -1;
    }
    errno = err;
    return err ? -1 : 0;
}

static int tcp_connect(const Endpoint *ep, GError **errp)
{
    struct addrinfo *res = tcp_resolve(ep, false, errp);
    if (!res) {
        return -1;
    }
    int err = EADDRNOTAVAIL;
    int fd = -1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            err = errno;
            continue;
        }
        if (connect_retry(fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            err = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        set_socket_error(errp, "connect to", ep, err);
    }
    return fd;
}

static bool unix_addr(const Endpoint *ep, struct sockaddr_un *sun, GError **errp)
{
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    if (strlen(ep->path) >= sizeof(sun->sun_path)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_FILENAME_TOO_LONG,
                    "UNIX socket path '%s' is longer than %zu bytes",
                    ep->path, sizeof(sun->sun_path) - 1);
        return false;
    }
    strcpy(sun->sun_path, ep->path);
    return true;
}

/* A socket file left by a process that died blocks bind(); anything that is
 * not a socket is somebody's data and stays. */
static bool unlink_stale_socket(const Endpoint *ep, GError **errp)
{
    struct stat st;

    if (lstat(ep->path, &st) < 0) {
        return true;
    }
    if (!S_ISSOCK(st.st_mode)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_EXISTS,
                    "Cannot listen on unix:%s: the file exists and is not a socket",
                    ep->path);
        return false;
    }
    if (unlink(ep->path) < 0 && errno != ENOENT) {
        set_socket_error(errp, "remove the stale socket of", ep, errno);
        return false;
    }
    return true;
}

/* Unix sockets we create are mode 0600 (DESIGN.md), whatever the umask:
 * anyone who can connect can stop the guest or write its disks.  Linux
 * gives the file bind() creates the mode of the socket's own inode minus
 * the umask, so an fchmod before bind() makes it 0600 from the first
 * instant, with no window for a connect before a later chmod, and without
 * touching the umask, which belongs to the whole process and its other
 * threads.  A umask can still take bits away, never add any. */
static int unix_bind_private(int fd, const struct sockaddr_un *sun)
{
    if (fchmod(fd, S_IRUSR | S_IWUSR) < 0) {
        return -1;
    }
    int rc = bind(fd, (const struct sockaddr *)sun, sizeof(*sun));
    return rc < 0 ? rc : listen(fd, LISTEN_BACKLOG);
}

static int unix_socket(const Endpoint *ep, bool do_listen, GError **errp)
{
    struct sockaddr_un sun;

    if (!unix_addr(ep, &sun, errp) || (do_listen && !unlink_stale_socket(ep, errp))) {
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        set_socket_error(errp, "create a socket for", ep, errno);
        return -1;
    }
    int rc;
    if (do_listen) {
        rc = unix_bind_private(fd, &sun);
    } else {
        rc = connect_retry(fd, (struct sockaddr *)&sun, sizeof(sun));
    }
    if (rc < 0) {
        set_socket_error(errp, do_listen ? "listen on" : "connect to", ep, errno);
        close(fd);
        return -1;
    }
    return fd;
}

static void set_not_socket_error(GError **errp, const Endpoint *ep)
{
    char *name = endpoint_to_str(ep);
    g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                "%s is not a socket address (use tcp:HOST:PORT or unix:PATH)", name);
    g_free(name);
}

int endpoint_listen(const Endpoint *ep, GError **errp)
{
    switch (ep->kind) {
    case ENDPOINT_TCP:
        return tcp_listen(ep, errp);
    case ENDPOINT_UNIX:
        return unix_socket(ep, true, errp);
    default:
        set_not_socket_error(errp, ep);
        return -1;
    }
}

int endpoint_connect(const Endpoint *ep, GError **errp)
{
    switch (ep->kind) {
    case ENDPOINT_TCP:
        return tcp_connect(ep, errp);
    case ENDPOINT_UNIX:
        return unix_socket(ep, false, errp);
    default:
        set_not_socket_error(errp, ep);
        return -1;
    }
}

int socket_accept(int listen_fd)
{
    int fd;

    do {
        fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    return fd;
}

/* The *FORCE variants pass the net.core.[rw]mem_max cap when we may (root /
 * CAP_NET_ADMIN); otherwise the capped plain option is the best there is. */
void socket_tune_bulk(int fd)
{
    int size = BULK_SOCKET_BUFFER;

    if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof(size)) < 0) {
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof(size));
    }
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0) {
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
    }
}

/* Probes start once the connection was idle for a third of the timeout;
 * with TCP_USER_TIMEOUT set, unanswered probes end it when the timeout
 * has passed since the peer was last heard, whatever the probe count. */
bool socket_set_link_timeout(int fd, unsigned timeout_s)
{
    unsigned user_ms = timeout_s * 1000;
    int on = 1;
    int idle = MAX(timeout_s / 3, 1);
    int interval = MAX(timeout_s / 6, 1);
    int count = MAX((int)(timeout_s - idle) / interval, 1);

    if (setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_ms, sizeof(user_ms)) < 0) {
        return false;
    }
    return setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on)) == 0 &&
           setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle)) == 0 &&
           setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof(interval)) == 0 &&
           setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof(count)) == 0;
}

int socket_local_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);

    if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
        return -1;
    }
    if (ss.ss_family == AF_INET) {
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    }
    if (ss.ss_family == AF_INET6) {
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    }
    return -1;
}

char *socket_peer_name(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[NI_MAXHOST], port[NI_MAXSERV];

    if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0) {
        return g_strdup("an unknown peer");
    }
    if (ss.ss_family == AF_UNIX) {
        return g_strdup("a unix socket client");
    }
    if (getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), port, sizeof(port),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        return g_strdup("an unknown peer");
    }
    if (g_str_has_prefix(host, "::ffff:") && strchr(host, '.')) {
        return g_strdup_printf("%s:%s", host + 7, port);    /* IPv4 on a dual-stack socket */
    }
    return ss.ss_family == AF_INET6 ? g_strdup_printf("[%s]:%s", host, port)
                                    : g_strdup_printf("%s:%s", host, port);
}

void socket_shutdown_drain(int fd, int timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + timeout_ms * 1000LL;
    char buf[4096];

    shutdown(fd, SHUT_WR);
    for (;;) {
        int left = (int)((deadline - g_get_monotonic_time()) / 1000);
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        if (left <= 0 || poll(&pfd, 1, left) <= 0 ||
            recv(fd, buf, sizeof(buf), MSG_DONTWAIT) <= 0) {
            return;
        }
    }
}
