/* The TLS channel of socket migrations (migration/channel-tls.c) on a
 * real loopback TCP connection with certificates made by certtool: the
 * destination turns Nagle's algorithm off before its handshake.  Its
 * flights go out in several sends, and with Nagle on a later one waited
 * for the source's delayed ACK: a migration's setup took 45-70 ms instead
 * of 2-5 ms (ECDSA keys, loopback). */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/tls-certs.h"
#include "../../migration/migration-internal.h"
#include "migration/options.h"
#include "migration/stream.h"
#include "util/sockets.h"
#include "util/tls.h"
#include "util/user-object.h"

#define TIMEOUT_MS 5000

static char *tmp;

static void add_creds(const char *id, const char *dir, const char *endpoint)
{
    JsonObject *props = json_object_new();
    g_autofree char *path = g_build_filename(tmp, dir, NULL);
    GError *err = NULL;

    json_object_set_string_member(props, "qom-type", "tls-creds-x509");
    json_object_set_string_member(props, "id", id);
    json_object_set_string_member(props, "dir", path);
    json_object_set_string_member(props, "endpoint", endpoint);
    g_assert_true(user_object_add(props, &err));
    g_assert_no_error(err);
    json_object_unref(props);
}

static void set_tls_creds(const char *id)
{
    MigrationParametersUpdate u = { .tls_creds = id };
    GError *err = NULL;

    g_assert_true(mig_params_apply(&u, &err));
    g_assert_no_error(err);
}

/* The source's side: a client handshake on FD. */
static gpointer source_thread(gpointer data)
{
    int fd = GPOINTER_TO_INT(data);
    GError *err = NULL;
    TlsCreds *c = tls_creds_lookup("src", TLS_ENDPOINT_CLIENT, &err);
    TlsSession *s = c ? tls_session_new(c, fd, "localhost", NULL, &err) : NULL;

    g_assert_true(s && tls_session_handshake(s, TIMEOUT_MS, &err));
    g_assert_no_error(err);
    tls_session_free(s);
    tls_creds_unref(c);
    return NULL;
}

static int nodelay(int fd)
{
    int on = -1;
    socklen_t len = sizeof(on);

    g_assert_cmpint(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, &len), ==, 0);
    return on;
}

static void test_incoming_nodelay(void)
{
    Endpoint ep = { .kind = ENDPOINT_TCP, .host = "127.0.0.1", .port = "0" };
    GError *err = NULL;
    int lfd = endpoint_listen(&ep, &err);
    g_autofree char *port = g_strdup_printf("%d", socket_local_port(lfd));
    Endpoint to = { .kind = ENDPOINT_TCP, .host = "127.0.0.1", .port = port };
    int cfd = endpoint_connect(&to, &err);
    int dfd = socket_accept(lfd);
    MigStream *f = mig_stream_new_reader(dfd);

    g_assert_no_error(err);
    g_assert_cmpint(nodelay(dfd), ==, 0);
    GThread *t = g_thread_new("source", source_thread, GINT_TO_POINTER(cfd));
    g_assert_true(mig_channel_secure_incoming(f, &err));
    g_assert_no_error(err);
    g_thread_join(t);
    g_assert_cmpint(nodelay(dfd), !=, 0);
    mig_stream_close(f);
    close(cfd);
    close(lfd);
}

int main(int argc, char **argv)
{
    g_autofree char *ca = NULL, *srv = NULL, *cli = NULL, *cmd = NULL;
    int rc;

    g_test_init(&argc, &argv, NULL);
    tmp = g_dir_make_tmp("test-mig-tls-channel-XXXXXX", NULL);
    ca = g_build_filename(tmp, "ca", NULL);
    srv = g_build_filename(tmp, "srv", NULL);
    cli = g_build_filename(tmp, "cli", NULL);
    tt_make_ca(ca, "blkmig test CA");
    tt_make_cert(srv, ca, "server", "localhost", false);
    tt_make_cert(cli, ca, "client", "src", false);
    add_creds("dst", "srv", "server");
    add_creds("src", "cli", "client");
    set_tls_creds("dst");
    g_test_add_func("/mig-tls-channel/incoming-nodelay", test_incoming_nodelay);
    rc = g_test_run();
    user_objects_clear();
    cmd = g_strdup_printf("rm -rf '%s'", tmp);
    return system(cmd) == 0 ? rc : 1;
}
