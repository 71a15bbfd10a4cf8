/* Opening the transport a migration URI names (tcp:, unix:, file:). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migration/options.h"
#include "migration-internal.h"
#include "util/sockets.h"

#define MIG_URI_KINDS (1u << ENDPOINT_TCP | 1u << ENDPOINT_UNIX | 1u << ENDPOINT_FILE)

static int open_file(const char *path, int flags, GError **errp)
{
    int fd = open(path, flags | O_CLOEXEC, 0644);

    if (fd < 0) {
        g_set_error(errp, MIG_ERROR, 0, "Could not open '%s': %s", path, g_strerror(errno));
    }
    return fd;
}

int mig_channel_open_outgoing(const char *uri, MigChannelKind *kind, GError **errp)
{
    Endpoint ep;
    int fd;

    if (!endpoint_parse(uri, MIG_URI_KINDS, &ep, errp)) {
        return -1;
    }
    if (ep.kind == ENDPOINT_FILE) {
        *kind = MIG_CHANNEL_FILE;
        fd = open_file(ep.path, O_WRONLY | O_CREAT | O_TRUNC, errp);
    } else {
        *kind = MIG_CHANNEL_SOCKET;
        fd = endpoint_connect(&ep, errp);
        if (fd >= 0) {
            socket_tune_bulk(fd);
        }
    }
    endpoint_clear(&ep);
    return fd;
}

int mig_channel_open_incoming(const char *uri, MigChannelKind *kind, GError **errp)
{
    Endpoint ep;
    int fd;

    if (!endpoint_parse(uri, MIG_URI_KINDS, &ep, errp)) {
        return -1;
    }
    if (ep.kind == ENDPOINT_FILE) {
        *kind = MIG_CHANNEL_FILE;
        fd = open_file(ep.path, O_RDONLY, errp);
    } else {
        *kind = MIG_CHANNEL_SOCKET;
        fd = endpoint_listen(&ep, errp);
    }
    endpoint_clear(&ep);
    return fd;
}

char *mig_channel_bound_uri(const char *uri, int fd)
{
    Endpoint ep;
    int port = socket_local_port(fd);
    char *bound;

    if (!endpoint_parse(uri, MIG_URI_KINDS, &ep, NULL)) {
        return g_strdup(uri);
    }
    if (ep.kind == ENDPOINT_TCP && port > 0) {
        g_free(ep.port);
        ep.port = g_strdup_printf("%d", port);
    }
    bound = endpoint_to_str(&ep);
    endpoint_clear(&ep);
    return bound;
}

void mig_channel_set_nodelay(int fd)
{
    int on = 1;

    /* Fails harmlessly on unix sockets and files. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

uint64_t mig_channel_rtt_us(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof(ti);

    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) < 0) {
        return 0;
    }
    return ti.tcpi_rtt;
}

MigStream *mig_channel_stream_new(int fd, bool writer)
{
    MigrationParameters params;
    MigStream *f = writer ? mig_stream_new_writer(fd) : mig_stream_new_reader(fd);

    mig_params_get(&params);
    /* Fails harmlessly on unix sockets and files. */
    socket_set_link_timeout(fd, params.link_timeout);
    mig_stream_set_link_timeout(f, params.link_timeout);
    return f;
}

MigStream *migration_connect_extra(const char *uri, GError **errp)
{
    MigChannelKind kind;
    int fd = mig_channel_open_outgoing(uri, &kind, errp);
    MigStream *f = fd < 0 ? NULL : mig_channel_stream_new(fd, true);

    if (f && !mig_channel_secure_outgoing(f, uri, errp)) {
        g_clear_pointer(&f, mig_stream_close);
    }
    return f;
}
