/* blkmigd's NBD server at the byte level: what real clients never send
 * (bad flags, requests past the end, oversized lengths, unknown options,
 * garbage, half-sent requests) must get the error proto.md asks for and
 * leave the daemon serving everyone else. */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../qtest/libqtest.h"
#include "interop.h"
#include "nbd-raw.h"

#define DISK_SIZE   (16 * 1024 * 1024)
#define DATA_OFF    (1024 * 1024)
#define DATA_LEN    (64 * 1024)
#define MAX_PAYLOAD (32u * 1024 * 1024)

typedef struct Fixture {
    QTestDaemon *d;
    char *img, *ro_img, *sock;
} Fixture;

/* disk0: 16 MiB, DATA_LEN bytes of 0x5a at DATA_OFF, holes elsewhere;
 * disk1: the same size, read-only. */
static void fixture_start(Fixture *f, const char *name)
{
    g_autofree char *img = g_strdup_printf("%s-disk0.img", name);
    g_autofree char *ro = g_strdup_printf("%s-disk1.img", name);
    g_autofree char *sock = g_strdup_printf("%s.nbd", name);

    f->img = qtest_path(img);
    f->ro_img = qtest_path(ro);
    f->sock = qtest_path(sock);
    qtest_disk_create(f->img, DISK_SIZE);
    qtest_disk_create(f->ro_img, DISK_SIZE);
    qtest_disk_set(f->img, DATA_OFF, DATA_LEN, 0x5a);
    f->d = qtest_daemon_start(name, "--drive id=disk0,file=%s --drive id=disk1,file=%s,"
                              "read-only=on --nbd unix:%s", f->img, f->ro_img, f->sock);
    qtest_wait_runstate(f->d, "running", 10000);
}

static void fixture_stop(Fixture *f)
{
    qtest_daemon_quit(f->d);
    unlink(f->img);
    unlink(f->ro_img);
    g_free(f->img);
    g_free(f->ro_img);
    g_free(f->sock);
}

static bool all_bytes(const uint8_t *buf, size_t len, uint8_t byte)
{
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != byte) {
            return false;
        }
    }
    return true;
}

/* The connection is still in step with the server: a read returns data. */
static void assert_in_sync(RawConn *c)
{
    g_autofree uint8_t *buf = g_malloc(DATA_LEN);

    g_assert_cmpuint(raw_cmd(c, 0, RAW_CMD_READ, DATA_OFF, DATA_LEN, NULL, buf), ==, 0);
    g_assert_true(all_bytes(buf, DATA_LEN, 0x5a));
}

/* Reads with simple and structured replies; holes come as OFFSET_HOLE
 * chunks and still read back as zeroes; DF gets one data chunk. */
static void test_reads(void)
{
    Fixture f;
    fixture_start(&f, "reads");
    RawConn *simple = raw_open(f.sock, "disk0", false, false);
    RawConn *sr = raw_open(f.sock, "disk0", true, false);
    uint32_t len = 3 * DATA_LEN, off = DATA_OFF - DATA_LEN;
    g_autofree uint8_t *buf = g_malloc(len);

    g_assert_cmpuint(simple->size, ==, DISK_SIZE);
    g_assert_cmpuint(raw_cmd(simple, 0, RAW_CMD_READ, off, len, NULL, buf), ==, 0);
    g_assert_true(all_bytes(buf, DATA_LEN, 0));
    g_assert_true(all_bytes(buf + DATA_LEN, DATA_LEN, 0x5a));
    g_assert_true(all_bytes(buf + 2 * DATA_LEN, DATA_LEN, 0));

    memset(buf, 0xee, len);
    g_assert_cmpuint(raw_cmd(sr, 0, RAW_CMD_READ, off, len, NULL, buf), ==, 0);
    g_assert_true(all_bytes(buf, DATA_LEN, 0));
    g_assert_true(all_bytes(buf + DATA_LEN, DATA_LEN, 0x5a));
    g_assert_true(all_bytes(buf + 2 * DATA_LEN, DATA_LEN, 0));
    g_assert_cmpuint(sr->hole_chunks, ==, 2);
    g_assert_cmpuint(sr->data_chunks, ==, 1);

    sr->data_chunks = sr->hole_chunks = 0;
    memset(buf, 0xee, len);
    g_assert_cmpuint(raw_cmd(sr, RAW_FLAG_DF, RAW_CMD_READ, off, len, NULL, buf), ==, 0);
    g_assert_true(all_bytes(buf + DATA_LEN, DATA_LEN, 0x5a));
    g_assert_true(all_bytes(buf + 2 * DATA_LEN, DATA_LEN, 0));
    g_assert_cmpuint(sr->data_chunks, ==, 1);
    g_assert_cmpuint(sr->hole_chunks, ==, 0);

    /* Unaligned, one byte, zero bytes, the very last byte. */
    g_assert_cmpuint(raw_cmd(sr, 0, RAW_CMD_READ, DATA_OFF - 1, 3, NULL, buf), ==, 0);
    g_assert_cmpmem(buf, 3, "\0\x5a\x5a", 3);
    g_assert_cmpuint(raw_cmd(sr, 0, RAW_CMD_READ, 0, 0, NULL, buf), ==, 0);
    g_assert_cmpuint(raw_cmd(simple, 0, RAW_CMD_READ, DISK_SIZE - 1, 1, NULL, buf), ==, 0);

    raw_close(simple);
    raw_close(sr);
    fixture_stop(&f);
}

/* Writes land in the file, FUA and flush succeed, write-zeroes and trim
 * leave holes (thin) unless NO_HOLE asks otherwise. */
static void test_writes(void)
{
    Fixture f;
    fixture_start(&f, "writes");
    RawConn *c = raw_open(f.sock, "disk0", true, true);
    g_autofree uint8_t *buf = g_malloc(DATA_LEN);
    uint32_t err;

    g_assert_true(c->tflags & (1u << 8));            /* CAN_MULTI_CONN */
    memset(buf, 0x21, DATA_LEN);
    g_assert_cmpuint(raw_cmd(c, 0, RAW_CMD_WRITE, 0, 4096, buf, NULL), ==, 0);
    g_assert_cmpuint(raw_cmd(c, RAW_FLAG_FUA, RAW_CMD_WRITE, 4096 + 7, 13, buf, NULL), ==, 0);
    g_assert_cmpuint(raw_cmd(c, 0, RAW_CMD_WRITE, 8192, 0, buf, NULL), ==, 0);
    g_assert_cmpuint(raw_cmd(c, 0, RAW_CMD_FLUSH, 0, 0, NULL, NULL), ==, 0);
    g_assert_true(interop_file_has(f.img, 0, 4096, 0x21));
    g_assert_true(interop_file_has(f.img, 4096, 7, 0));
    g_assert_true(interop_file_has(f.img, 4096 + 7, 13, 0x21));

    /* Write-zeroes without NO_HOLE punches a hole. */
    g_assert_cmpuint(raw_cmd(c, RAW_FLAG_FUA, RAW_CMD_WRITE_ZEROES, DATA_OFF, DATA_LEN,
                             NULL, NULL), ==, 0);
    g_assert_true(interop_file_has(f.img, DATA_OFF, DATA_LEN, 0));
    {
        g_autoptr(GArray) ext = interop_file_extents(f.img);
        for (guint i = 0; i < ext->len; i++) {
            InteropExtent *e = &g_array_index(ext, InteropExtent, i);
            g_assert_false(e->data && e->offset < DATA_OFF + DATA_LEN &&
                           e->offset + e->length > DATA_OFF);
        }
    }
    /* NO_HOLE: zeroes that stay allocated; FAST_ZERO: done or ENOTSUP. */
    qtest_disk_set(f.img, 2 * DATA_OFF, DATA_LEN, 0x77);
    g_assert_cmpuint(raw_cmd(c, RAW_FLAG_NO_HOLE, RAW_CMD_WRITE_ZEROES, 2 * DATA_OFF,
                             DATA_LEN, NULL, NULL), ==, 0);
    g_assert_true(interop_file_has(f.img, 2 * DATA_OFF, DATA_LEN, 0));
    qtest_disk_set(f.img, 3 * DATA_OFF, DATA_LEN, 0x77);
    err = raw_cmd(c, RAW_FLAG_FAST_ZERO, RAW_CMD_WRITE_ZEROES, 3 * DATA_OFF, DATA_LEN,
                  NULL, NULL);
    g_assert_true(err == 0 || err == RAW_ENOTSUP);
    g_assert_true(interop_file_has(f.img, 3 * DATA_OFF, DATA_LEN, err ? 0x77 : 0));

    /* Trim: reads back as zeroes on a raw file. */
    qtest_disk_set(f.img, 4 * DATA_OFF, DATA_LEN, 0x77);
    g_assert_cmpuint(raw_cmd(c, 0, RAW_CMD_TRIM, 4 * DATA_OFF, DATA_LEN, NULL, NULL), ==, 0);
    g_assert_cmpuint(raw_cmd(c, 0, RAW_CMD_READ, 4 * DATA_OFF, DATA_LEN, NULL, buf), ==, 0);
    g_assert_true(all_bytes(buf, DATA_LEN, 0));

    raw_close(c);
    fixture_stop(&f);
}

/* base:allocation matches the file: hole+zero (3) for holes, 0 for data;
 * REQ_ONE gives a single extent within the request. */
static void test_block_status(void)
{
    Fixture f;
    fixture_start(&f, "status");
    RawConn *c = raw_open(f.sock, "disk0", true, true);
    RawConn *nometa = raw_open(f.sock, "disk0", true, false);
    g_autoptr(GArray) ext = NULL;
    g_autoptr(GArray) one = NULL;
    uint64_t cookie;

    cookie = raw_request(c, 0, RAW_CMD_BLOCK_STATUS, 0, DISK_SIZE, NULL, 0);
    g_assert_cmpuint(raw_reply(c, cookie, RAW_CMD_BLOCK_STATUS, 0, DISK_SIZE, NULL, &ext),
                     ==, 0);
    g_assert_cmpuint(ext->len, ==, 6);
    g_assert_cmpuint(g_array_index(ext, uint32_t, 0), ==, DATA_OFF);
    g_assert_cmpuint(g_array_index(ext, uint32_t, 1), ==, 3);
    g_assert_cmpuint(g_array_index(ext, uint32_t, 2), ==, DATA_LEN);
    g_assert_cmpuint(g_array_index(ext, uint32_t, 3), ==, 0);
    g_assert_cmpuint(g_array_index(ext, uint32_t, 4), ==, DISK_SIZE - DATA_OFF - DATA_LEN);
    g_assert_cmpuint(g_array_index(ext, uint32_t, 5), ==, 3);

    cookie = raw_request(c, RAW_FLAG_REQ_ONE, RAW_CMD_BLOCK_STATUS, 4096, 2 * DATA_OFF,
                         NULL, 0);
    g_assert_cmpuint(raw_reply(c, cookie, RAW_CMD_BLOCK_STATUS, 4096, 2 * DATA_OFF, NULL,
                               &one), ==, 0);
    g_assert_cmpuint(one->len, ==, 2);
    g_assert_cmpuint(g_array_index(one, uint32_t, 0), ==, DATA_OFF - 4096);

    g_assert_cmpuint(raw_cmd(c, 0, RAW_CMD_BLOCK_STATUS, DISK_SIZE - 512, 1024, NULL, NULL),
                     ==, RAW_EINVAL);
    g_assert_cmpuint(raw_cmd(c, 0, RAW_CMD_BLOCK_STATUS, 0, 0, NULL, NULL), ==, RAW_EINVAL);
    g_assert_cmpuint(raw_cmd(nometa, 0, RAW_CMD_BLOCK_STATUS, 0, 4096, NULL, NULL),
                     ==, RAW_EINVAL);
    assert_in_sync(c);
    assert_in_sync(nometa);
    raw_close(c);
    raw_close(nometa);
    fixture_stop(&f);
}

/* Every invalid request gets its proto.md error, and the stream stays in
 * step (write payloads are consumed even when refused). */
static void test_bad_requests(void)
{
    Fixture f;
    fixture_start(&f, "badreq");
    RawConn *conns[2] = { raw_open(f.sock, "disk0", false, false),
                          raw_open(f.sock, "disk0", true, true) };
    RawConn *ro = raw_open(f.sock, "disk1", true, false);
    g_autofree uint8_t *buf = g_malloc0(MAX_PAYLOAD + 4096);

    for (int i = 0; i < 2; i++) {
        RawConn *c = conns[i];

        /* Past the end: reads/trims EINVAL, writes ENOSPC. */
        g_assert_cmpuint(raw_cmd(c, 0, RAW_CMD_READ, DISK_SIZE - 4096, 8192, NULL, buf), ==,
                         RAW_EINVAL);
        g_assert_cmpuint(raw_cmd(c, 0, RAW_CMD_READ, UINT64_MAX - 10, 4096, NULL, buf), ==,
                         RAW_EINVAL);
        g_assert_cmpuint(raw_cmd(c, 0, RAW_CMD_WRITE, DISK_SIZE - 4096, 8192, buf, NULL), ==,
                         RAW_ENOSPC);
        g_assert_cmpuint(raw_cmd(c, 0, RAW_CMD_WRITE_ZEROES, DISK_SIZE, 1, NULL, NULL), ==,
                         RAW_ENOSPC);
        g_assert_cmpuint(raw_cmd(c, 0, RAW_CMD_TRIM, DISK_SIZE - 1, 2, NULL, NULL), ==,
                         RAW_EINVAL);
        assert_in_sync(c);

        /* Unknown commands and flags. */
        g_assert_cmpuint(raw_cmd(c, 0, RAW_CMD_CACHE, 0, 4096, NULL, NULL), ==, RAW_EINVAL);
        g_assert_cmpuint(raw_cmd(c, 0, 42, 0, 4096, NULL, NULL), ==, RAW_EINVAL);
        g_assert_cmpuint(raw_cmd(c, RAW_FLAG_NO_HOLE, RAW_CMD_READ, 0, 4096, NULL, buf), ==,
                         RAW_EINVAL);
        g_assert_cmpuint(raw_cmd(c, 0x8000, RAW_CMD_FLUSH, 0, 0, NULL, NULL), ==, RAW_EINVAL);
        g_assert_cmpuint(raw_cmd(c, RAW_FLAG_REQ_ONE, RAW_CMD_WRITE, 0, 4096, buf, NULL), ==,
                         RAW_EINVAL);
        g_assert_cmpuint(raw_cmd(c, 0, RAW_CMD_FLUSH, 4096, 0, NULL, NULL), ==, RAW_EINVAL);
        assert_in_sync(c);

        /* Over the advertised maximum: reads EOVERFLOW; a write's payload is
         * drained and refused. */
        g_assert_cmpuint(raw_cmd(c, 0, RAW_CMD_READ, 0, MAX_PAYLOAD + 1, NULL, NULL), ==,
                         RAW_EOVERFLOW);
        g_assert_cmpuint(raw_cmd(c, 0, RAW_CMD_WRITE, 0, MAX_PAYLOAD + 4096, buf, NULL), ==,
                         RAW_EINVAL);
        assert_in_sync(c);
        /* A whole-disk read is within the maximum. */
        g_assert_cmpuint(raw_cmd(c, 0, RAW_CMD_READ, 0, DISK_SIZE, NULL, buf), ==, 0);
        g_assert_true(all_bytes(buf + DATA_OFF, DATA_LEN, 0x5a));
    }
    g_assert_true(interop_file_has(f.img, 0, 4096, 0));

    /* Read-only export: writes of every kind EPERM, reads fine. */
    g_assert_true(ro->tflags & RAW_TFLAG_READ_ONLY);
    g_assert_cmpuint(raw_cmd(ro, 0, RAW_CMD_WRITE, 0, 4096, buf, NULL), ==, RAW_EPERM);
    g_assert_cmpuint(raw_cmd(ro, 0, RAW_CMD_TRIM, 0, 4096, NULL, NULL), ==, RAW_EPERM);
    g_assert_cmpuint(raw_cmd(ro, 0, RAW_CMD_WRITE_ZEROES, 0, 4096, NULL, NULL), ==, RAW_EPERM);
    g_assert_cmpuint(raw_cmd(ro, 0, RAW_CMD_READ, 0, 4096, NULL, buf), ==, 0);
    g_assert_cmpuint(raw_cmd(ro, 0, RAW_CMD_FLUSH, 0, 0, NULL, NULL), ==, 0);

    raw_close(conns[0]);
    raw_close(conns[1]);
    raw_close(ro);
    fixture_stop(&f);
}

static void send_info_go(int fd, uint32_t opt, const char *export, uint32_t claimed_len)
{
    uint32_t elen = strlen(export);
    g_autofree uint8_t *d = g_malloc0(6 + elen);
    uint32_t be = GUINT32_TO_BE(claimed_len);

    memcpy(d, &be, 4);
    memcpy(d + 4, export, elen);
    raw_send_option(fd, opt, d, 6 + elen);
}

static void send_go(int fd, const char *export, uint32_t claimed_len)
{
    send_info_go(fd, RAW_OPT_GO, export, claimed_len);
}

/* Option haggling: every refusal is an error reply on a connection that
 * stays usable; only protocol violations close it. */
static void test_handshake(void)
{
    Fixture f;
    fixture_start(&f, "hs");
    g_autoptr(GByteArray) rep = NULL;
    uint8_t junk[16] = { 0 };
    int fd;

    /* Unknown client flags: dropped. */
    fd = raw_greet(f.sock, 1u << 5);
    g_assert_true(raw_peer_closed(fd, 5000));
    close(fd);

    fd = raw_greet(f.sock, 1);
    raw_send_option(fd, 999, "xyz", 3);
    g_assert_cmphex(raw_recv_option_reply(fd, 999, NULL), ==, RAW_REP_ERR_UNSUP);
    raw_send_option(fd, RAW_OPT_STARTTLS, NULL, 0);
    g_assert_cmphex(raw_recv_option_reply(fd, RAW_OPT_STARTTLS, NULL) & 0x80000000u, !=, 0);
    raw_send_option(fd, RAW_OPT_LIST, "x", 1);
    g_assert_cmphex(raw_recv_option_reply(fd, RAW_OPT_LIST, NULL), ==, RAW_REP_ERR_INVALID);
    raw_send_option(fd, RAW_OPT_LIST, NULL, 0);
    {
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
        uint32_t type;
        while ((type = raw_recv_option_reply(fd, RAW_OPT_LIST, &rep)) == RAW_REP_SERVER) {
            g_ptr_array_add(names, g_strndup((char *)rep->data + 4, rep->len - 4));
            g_clear_pointer(&rep, g_byte_array_unref);
        }
        g_assert_cmphex(type, ==, RAW_REP_ACK);
        g_assert_cmpuint(names->len, ==, 2);
        g_assert_cmpstr(names->pdata[0], ==, "disk0");
        g_assert_cmpstr(names->pdata[1], ==, "disk1");
    }
    g_clear_pointer(&rep, g_byte_array_unref);
    /* Malformed GO: too short, name longer than the data. */
    raw_send_option(fd, RAW_OPT_GO, "abc", 3);
    g_assert_cmphex(raw_recv_option_reply(fd, RAW_OPT_GO, NULL), ==, RAW_REP_ERR_INVALID);
    send_go(fd, "disk0", 100);
    g_assert_cmphex(raw_recv_option_reply(fd, RAW_OPT_GO, NULL), ==, RAW_REP_ERR_INVALID);
    send_go(fd, "nosuch", 6);
    g_assert_cmphex(raw_recv_option_reply(fd, RAW_OPT_GO, NULL), ==, RAW_REP_ERR_UNKNOWN);
    raw_send_option(fd, RAW_OPT_STRUCTURED_REPLY, "x", 1);
    g_assert_cmphex(raw_recv_option_reply(fd, RAW_OPT_STRUCTURED_REPLY, NULL), ==,
                    RAW_REP_ERR_INVALID);
    {
        /* Meta contexts need structured replies first. */
        const char *q[] = { "base:allocation", NULL };
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);
        g_assert_cmphex(raw_meta_option(fd, RAW_OPT_SET_META_CONTEXT, "disk0", q, names,
                                        NULL), ==, RAW_REP_ERR_INVALID);
    }
    raw_send_option(fd, RAW_OPT_STRUCTURED_REPLY, NULL, 0);
    g_assert_cmphex(raw_recv_option_reply(fd, RAW_OPT_STRUCTURED_REPLY, NULL), ==, RAW_REP_ACK);
    {
        const char *all[] = { NULL };
        const char *wild[] = { "base:", NULL };
        const char *other[] = { "x-blkmig:nothing", "qemu:dirty-bitmap:x", NULL };
        g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);

        g_assert_cmphex(raw_meta_option(fd, RAW_OPT_LIST_META_CONTEXT, "disk0", all, names,
                                        NULL), ==, RAW_REP_ACK);
        g_assert_cmphex(raw_meta_option(fd, RAW_OPT_LIST_META_CONTEXT, "disk0", wild, names,
                                        NULL), ==, RAW_REP_ACK);
        g_assert_cmpuint(names->len, ==, 3);
        g_assert_cmpstr(names->pdata[0], ==, "base:allocation");
        g_assert_cmpstr(names->pdata[1], ==, "qemu:allocation-depth");
        g_assert_cmpstr(names->pdata[2], ==, "base:allocation");
        g_assert_cmphex(raw_meta_option(fd, RAW_OPT_SET_META_CONTEXT, "disk0", other, names,
                                        NULL), ==, RAW_REP_ACK);
        g_assert_cmphex(raw_meta_option(fd, RAW_OPT_SET_META_CONTEXT, "nosuch", wild, names,
                                        NULL), ==, RAW_REP_ERR_UNKNOWN);
        g_assert_cmpuint(names->len, ==, 3);
    }
    /* INFO (export and block sizes), then ABORT: acknowledged, closed. */
    send_info_go(fd, RAW_OPT_INFO, "disk1", 5);
    {
        unsigned infos = 0;
        uint32_t type;
        while ((type = raw_recv_option_reply(fd, RAW_OPT_INFO, NULL)) == RAW_REP_INFO) {
            infos++;
        }
        g_assert_cmphex(type, ==, RAW_REP_ACK);
        g_assert_cmpuint(infos, >=, 2);
    }
    raw_send_option(fd, RAW_OPT_ABORT, NULL, 0);
    g_assert_cmphex(raw_recv_option_reply(fd, RAW_OPT_ABORT, NULL), ==, RAW_REP_ACK);
    g_assert_true(raw_peer_closed(fd, 5000));
    close(fd);

    /* An option whose declared length is absurd: told, then disconnected. */
    fd = raw_greet(f.sock, 1);
    {
        uint8_t hdr[16];
        uint64_t magic = GUINT64_TO_BE(UINT64_C(0x49484156454F5054));
        uint32_t opt = GUINT32_TO_BE(RAW_OPT_GO), len = GUINT32_TO_BE(1u << 30);
        memcpy(hdr, &magic, 8);
        memcpy(hdr + 8, &opt, 4);
        memcpy(hdr + 12, &len, 4);
        raw_send(fd, hdr, sizeof(hdr));
    }
    g_assert_cmphex(raw_recv_option_reply(fd, RAW_OPT_GO, NULL), ==, RAW_REP_ERR_TOO_BIG);
    g_assert_true(raw_peer_closed(fd, 5000));
    close(fd);

    /* Bad option magic: disconnected. */
    fd = raw_greet(f.sock, 1);
    raw_send(fd, junk, sizeof(junk));
    g_assert_true(raw_peer_closed(fd, 5000));
    close(fd);

    /* NBD_OPT_EXPORT_NAME: unknown name closes; a known one answers with
     * size and flags, 124 zero bytes unless NO_ZEROES. */
    fd = raw_greet(f.sock, 1);
    raw_send_option(fd, RAW_OPT_EXPORT_NAME, "nosuch", 6);
    g_assert_true(raw_peer_closed(fd, 5000));
    close(fd);
    for (uint32_t flags = 0; flags <= 3; flags += 3) {
        uint8_t reply[134];
        uint64_t size;
        size_t want = flags & 2 ? 10 : 134;

        fd = raw_greet(f.sock, flags);
        raw_send_option(fd, RAW_OPT_EXPORT_NAME, "disk0", 5);
        for (size_t got = 0; got < want;) {
            ssize_t n = recv(fd, reply + got, want - got, 0);
            g_assert_cmpint(n, >, 0);
            got += n;
        }
        memcpy(&size, reply, 8);
        g_assert_cmpuint(GUINT64_FROM_BE(size), ==, DISK_SIZE);
        g_assert_true(all_bytes(reply + 10, want - 10, 0));
        close(fd);
    }

    /* After all that, a normal client is served. */
    RawConn *c = raw_open(f.sock, "disk0", true, true);
    assert_in_sync(c);
    raw_close(c);
    fixture_stop(&f);
}

/* Clients that vanish mid-request, never read their reply, or send
 * garbage affect nobody else. */
static void test_bad_clients(void)
{
    Fixture f;
    fixture_start(&f, "badcl");
    RawConn *good = raw_open(f.sock, "disk0", true, true);
    RawConn *many[24];
    g_autofree uint8_t *garbage = g_malloc(64 * 1024);
    uint8_t hdr[28] = { 0 };

    assert_in_sync(good);

    /* Garbage during option haggling. */
    for (size_t i = 0; i < 64 * 1024; i++) {
        garbage[i] = g_random_int();
    }
    int fd = raw_greet(f.sock, 1);
    (void)send(fd, garbage, 64 * 1024, MSG_NOSIGNAL);
    g_assert_true(raw_peer_closed(fd, 5000));
    close(fd);

    /* Garbage instead of a request. */
    RawConn *c = raw_open(f.sock, "disk0", false, false);
    raw_send(c->fd, garbage, 4096);
    g_assert_true(raw_peer_closed(c->fd, 5000));
    close(c->fd);
    g_free(c);

    /* Half a write, then gone. */
    c = raw_open(f.sock, "disk0", true, false);
    raw_request(c, 0, RAW_CMD_WRITE, 0, 1024 * 1024, garbage, 1000);
    close(c->fd);
    g_free(c);

    /* Big reads whose replies are never read. */
    c = raw_open(f.sock, "disk0", false, false);
    for (int i = 0; i < 4; i++) {
        raw_request(c, 0, RAW_CMD_READ, 0, 8 * 1024 * 1024, NULL, 0);
    }
    close(c->fd);
    g_free(c);

    /* A request header cut short. */
    c = raw_open(f.sock, "disk0", false, false);
    raw_send(c->fd, hdr, 10);
    close(c->fd);
    g_free(c);

    /* Many at once. */
    for (int i = 0; i < (int)G_N_ELEMENTS(many); i++) {
        many[i] = raw_open(f.sock, i % 2 ? "disk0" : "disk1", i % 3, false);
    }
    for (int i = 0; i < (int)G_N_ELEMENTS(many); i++) {
        g_assert_cmpuint(raw_cmd(many[i], 0, RAW_CMD_READ, DATA_OFF, 4096, NULL, garbage),
                         ==, 0);
        raw_close(many[i]);
    }

    /* The first client never noticed; the half write did not land. */
    assert_in_sync(good);
    memset(garbage, 0x31, 4096);
    g_assert_cmpuint(raw_cmd(good, RAW_FLAG_FUA, RAW_CMD_WRITE, 8192, 4096, garbage, NULL),
                     ==, 0);
    g_assert_true(interop_file_has(f.img, 8192, 4096, 0x31));
    g_assert_true(interop_file_has(f.img, 0, 4096, 0));
    raw_close(good);
    g_assert_true(qtest_daemon_alive(f.d));
    fixture_stop(&f);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_tmpdir();
    g_test_add_func("/nbd-protocol/reads", test_reads);
    g_test_add_func("/nbd-protocol/writes", test_writes);
    g_test_add_func("/nbd-protocol/block-status", test_block_status);
    g_test_add_func("/nbd-protocol/bad-requests", test_bad_requests);
    g_test_add_func("/nbd-protocol/handshake", test_handshake);
    g_test_add_func("/nbd-protocol/bad-clients", test_bad_clients);
    return g_test_run();
}
