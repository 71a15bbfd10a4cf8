/* A migration that fails says why, on both sides.  A destination that
 * fails tells the source in an ERROR message (0x0100, README "Stream
 * extensions") before its SHUT, however it failed, so that the source can
 * report "destination failed: ..." and run its guest again even after it
 * handed the guest over; a source whose acknowledgement never came says
 * how the connection ended.  The fault suite (tests/faults) found both
 * wanting: a destination whose multifd channel failed first shut its main
 * connection down for writing too and stayed silent, so the source, its
 * guest handed over, could only keep it stopped; and a source that lost
 * the link while it waited for the acknowledgement said the destination
 * had closed the connection.  Here the test plays the other side by hand:
 * a source announcing a channel that then fails, and a destination that
 * reads the whole stream and resets the connection. */
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>
#include <string.h>
#include <unistd.h>

#include "migration-framework.h"
#include "migration/block-migration.h"
#include "migration/savevm.h"
#include "util/bswap.h"
#include "util/sockets.h"
#include "../lib/stream-bytes.h"

#define RP_MSG_SHUT  0x0001
#define RP_MSG_ERROR 0x0100
#define READ_TIMEOUT_MS 10000

static void send_all(int fd, const void *buf, size_t len)
{
    g_assert_cmpint(write(fd, buf, len), ==, (ssize_t)len);
}

/* The block section's setup part announcing one channel of migration
 * ID_BYTE x 16, as a source sends it; the section stays open. */
static GByteArray *main_setup(guint8 id_byte)
{
    GByteArray *b = sb_block_stream_begin();

    sb_put_channels(b, 1, id_byte);
    sb_put_block_section_end(b);
    return b;
}

/* A channel handshake: channel 0 of 1 of migration ID_BYTE x 16. */
static GByteArray *channel_handshake(guint8 id_byte)
{
    GByteArray *b = g_byte_array_new();
    guint8 id[BLK_MIG_MULTIFD_ID_LEN];

    memset(id, id_byte, sizeof(id));
    sb_put32(b, BLK_MIG_MULTIFD_MAGIC);
    sb_put32(b, BLK_MIG_MULTIFD_VERSION);
    sb_put32(b, 0);
    sb_put32(b, 1);
    g_byte_array_append(b, id, sizeof(id));
    return b;
}

/* Exactly LEN bytes from FD, or false at its end or after the timeout. */
static bool read_exact(int fd, guint8 *buf, size_t len)
{
    gint64 deadline = g_get_monotonic_time() + READ_TIMEOUT_MS * 1000LL;

    for (size_t got = 0; got < len;) {
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        int left = (int)((deadline - g_get_monotonic_time()) / 1000);
        ssize_t n;

        if (left <= 0 || poll(&pfd, 1, left) <= 0) {
            return false;
        }
        n = read(fd, buf + got, len - got);
        if (n <= 0) {
            return false;
        }
        got += n;
    }
    return true;
}

/* The next return-path message on FD: its type, its payload in *TEXT
 * (NUL-terminated, caller frees); -1 when the connection ended first. */
static int read_message(int fd, char **text)
{
    guint8 hdr[4];
    uint16_t len;

    *text = NULL;
    if (!read_exact(fd, hdr, sizeof(hdr))) {
        return -1;
    }
    len = ld_be16(hdr + 2);
    *text = g_malloc0(len + 1);
    if (!read_exact(fd, (guint8 *)*text, len)) {
        return -1;
    }
    return ld_be16(hdr);
}

/* Messages until SHUT: the text of the ERROR among them, or NULL. */
static char *error_before_shut(int fd)
{
    char *error = NULL, *text;
    int type;

    while ((type = read_message(fd, &text)) >= 0 && type != RP_MSG_SHUT) {
        if (type == RP_MSG_ERROR) {
            g_free(error);
            error = g_steal_pointer(&text);
        }
        g_free(text);
    }
    g_free(text);
    g_test_message("return path: %s before %s", error ? error : "no ERROR",
                   type == RP_MSG_SHUT ? "SHUT" : "the end of the connection");
    return error;
}

/* The channel's migration id is not the announced one: the channel fails
 * first, and the main connection must still say so. */
static void test_channel_failure_reason(void)
{
    Migration m = { .uri = qtest_tcp_uri() };
    g_autoptr(GByteArray) setup = main_setup(0xaa);
    g_autoptr(GByteArray) hello = channel_handshake(0xbb);
    g_autofree char *error = NULL;
    int main_fd, channel_fd;

    m.dst_disk = qtest_path("dst.raw");
    m.dst = mf_start_dst(&m, "dst", 16 * MIB);
    main_fd = qtest_connect(m.uri);
    send_all(main_fd, setup->data, setup->len);
    json_node_unref(qtest_migrate_wait_status(m.dst, "active", MF_STATE_TIMEOUT_MS));
    channel_fd = qtest_connect(m.uri);
    send_all(channel_fd, hello->data, hello->len);

    error = error_before_shut(main_fd);
    mf_assert_contains(error, "its migration id differs from the announced one");
    JsonNode *info = qtest_migrate_wait(m.dst, MF_STATE_TIMEOUT_MS);
    g_assert_cmpstr(qtest_json_str(info, "status"), ==, "failed");
    mf_assert_contains(qtest_json_str(info, "error-desc"), error);
    json_node_unref(info);
    mf_assert_runstate(m.dst, "inmigrate");
    close(channel_fd);
    close(main_fd);
    mf_free(&m);
}

/* ---- a source whose acknowledgement never comes ---- */

/* Take the source's connection on LISTEN_FD, read until it has been
 * quiet for a while (it then waits for the acknowledgement), and drop it
 * with a reset, as a dead link or a crashed host would. */
static void read_then_reset(int listen_fd)
{
    int fd = socket_accept(listen_fd);
    struct linger reset = { .l_onoff = 1, .l_linger = 0 };
    g_autofree char *buf = g_malloc(1 << 16);
    struct pollfd pfd = { .fd = fd, .events = POLLIN };

    g_assert_cmpint(fd, >=, 0);
    while (poll(&pfd, 1, 1000) > 0 && read(fd, buf, 1 << 16) > 0) {
    }
    g_assert_cmpint(setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)), ==, 0);
    close(fd);
}

/* The whole stream went out, then the connection was reset: the source
 * guest stays stopped (the destination may run it), and error-desc says
 * what happened, not that the destination hung up. */
static void test_connection_lost_before_ack(void)
{
    Migration m = { .uri = qtest_tcp_uri() };
    GError *err = NULL;
    Endpoint ep;
    int listen_fd;

    mf_make_src_disk(&m, 8 * MIB, 3, 8, 256 * KIB);
    m.src = mf_start_src(&m, "");
    g_assert_true(endpoint_parse(m.uri, 1u << ENDPOINT_TCP, &ep, &err));
    listen_fd = endpoint_listen(&ep, &err);
    g_assert_no_error(err);
    endpoint_clear(&ep);
    qtest_set_caps(m.src, "block", NULL);
    qtest_migrate_start(m.src, m.uri);
    read_then_reset(listen_fd);
    close(listen_fd);

    JsonNode *info = qtest_migrate_wait(m.src, MF_MIGRATE_TIMEOUT_MS);
    g_test_message("source: %s", qtest_json_str(info, "error-desc"));
    g_assert_cmpstr(qtest_json_str(info, "status"), ==, "failed");
    mf_assert_contains(qtest_json_str(info, "error-desc"),
                       "lost the connection to the destination before it confirmed the "
                       "migration: Connection reset by peer; the destination may be running "
                       "the guest, so the source guest stays stopped");
    json_node_unref(info);
    mf_assert_runstate(m.src, "paused");
    mf_free(&m);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/failure-reasons/channel-failure", test_channel_failure_reason);
    g_test_add_func("/failure-reasons/connection-lost-before-ack",
                    test_connection_lost_before_ack);
    return g_test_run();
}
