/* Minimal NBD client for protocol tests; see nbd-raw.h. */
#include "nbd-raw.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define MAGIC_NBD        UINT64_C(0x4e42444d41474943)
#define MAGIC_OPTS       UINT64_C(0x49484156454F5054)
#define MAGIC_REP        UINT64_C(0x0003e889045565a9)
#define MAGIC_REQUEST    UINT32_C(0x25609513)
#define MAGIC_SIMPLE     UINT32_C(0x67446698)
#define MAGIC_STRUCTURED UINT32_C(0x668e33ef)

/* A server that stops answering fails the test instead of hanging it. */
#define IO_TIMEOUT_S 60

static void put16(uint8_t *p, uint16_t v) { v = GUINT16_TO_BE(v); memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { v = GUINT32_TO_BE(v); memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { v = GUINT64_TO_BE(v); memcpy(p, &v, 8); }
static uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return GUINT16_FROM_BE(v); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return GUINT32_FROM_BE(v); }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return GUINT64_FROM_BE(v); }

static int connect_unix(const char *path)
{
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    struct timeval tv = { .tv_sec = IO_TIMEOUT_S };
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpuint(strlen(path), <, sizeof(sa.sun_path));
    strcpy(sa.sun_path, path);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        g_error("connect %s: %s", path, g_strerror(errno));
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Sends all of BUF; false when the connection is gone. */
static bool try_send(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        p += n;
        len -= n;
    }
    return true;
}

void raw_send(int fd, const void *buf, size_t len)
{
    if (!try_send(fd, buf, len)) {
        g_error("send to NBD server: %s", g_strerror(errno));
    }
}

/* Fills BUF: 1, 0 at EOF, -1 on an error. */
static int try_recv(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;

    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return (int)n;
        }
        p += n;
        len -= n;
    }
    return 1;
}

static void recv_full(int fd, void *buf, size_t len)
{
    int ret = try_recv(fd, buf, len);

    if (ret <= 0) {
        g_error("recv from NBD server: %s", ret == 0 ? "EOF" : g_strerror(errno));
    }
}

int raw_greet(const char *socket_path, uint32_t client_flags)
{
    int fd = connect_unix(socket_path);
    uint8_t buf[18], flags[4];

    recv_full(fd, buf, sizeof(buf));
    g_assert_cmphex(get64(buf), ==, MAGIC_NBD);
    g_assert_cmphex(get64(buf + 8), ==, MAGIC_OPTS);
    g_assert_true(get16(buf + 16) & 1);     /* FIXED_NEWSTYLE */
    put32(flags, client_flags);
    raw_send(fd, flags, sizeof(flags));
    return fd;
}

void raw_send_option(int fd, uint32_t opt, const void *data, uint32_t len)
{
    uint8_t hdr[16];

    put64(hdr, MAGIC_OPTS);
    put32(hdr + 8, opt);
    put32(hdr + 12, len);
    raw_send(fd, hdr, sizeof(hdr));
    if (len) {
        raw_send(fd, data, len);
    }
}

uint32_t raw_recv_option_reply(int fd, uint32_t opt, GByteArray **data)
{
    uint8_t hdr[20];
    uint32_t type, len;
    g_autoptr(GByteArray) payload = g_byte_array_new();

    recv_full(fd, hdr, sizeof(hdr));
    g_assert_cmphex(get64(hdr), ==, MAGIC_REP);
    g_assert_cmpuint(get32(hdr + 8), ==, opt);
    type = get32(hdr + 12);
    len = get32(hdr + 16);
    g_assert_cmpuint(len, <=, 64 * 1024);
    g_byte_array_set_size(payload, len);
    recv_full(fd, payload->data, len);
    if (data) {
        *data = g_steal_pointer(&payload);
    }
    return type;
}

bool raw_peer_closed(int fd, int timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + timeout_ms * G_TIME_SPAN_MILLISECOND;
    uint8_t junk[4096];

    for (;;) {
        int left = (deadline - g_get_monotonic_time()) / G_TIME_SPAN_MILLISECOND;
        struct pollfd pfd = { .fd = fd, .events = POLLIN };
        ssize_t n;

        if (left <= 0 || poll(&pfd, 1, left) <= 0) {
            return false;
        }
        n = recv(fd, junk, sizeof(junk), MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            return true;
        }
    }
}

/* ---- Transmission ---- */

static void negotiate_structured(int fd)
{
    raw_send_option(fd, RAW_OPT_STRUCTURED_REPLY, NULL, 0);
    g_assert_cmphex(raw_recv_option_reply(fd, RAW_OPT_STRUCTURED_REPLY, NULL), ==,
                    RAW_REP_ACK);
}

/* A meta-context option body: export name and queries. */
static GByteArray *meta_body(const char *export, const char *const *queries)
{
    GByteArray *b = g_byte_array_new();
    uint32_t n = 0;
    uint8_t be[4];

    put32(be, strlen(export));
    g_byte_array_append(b, be, 4);
    g_byte_array_append(b, (const uint8_t *)export, strlen(export));
    while (queries && queries[n]) {
        n++;
    }
    put32(be, n);
    g_byte_array_append(b, be, 4);
    for (uint32_t i = 0; i < n; i++) {
        put32(be, strlen(queries[i]));
        g_byte_array_append(b, be, 4);
        g_byte_array_append(b, (const uint8_t *)queries[i], strlen(queries[i]));
    }
    return b;
}

uint32_t raw_meta_option(int fd, uint32_t opt, const char *export,
                         const char *const *queries, GPtrArray *names, GArray *ids)
{
    g_autoptr(GByteArray) body = meta_body(export, queries);
    uint32_t type;

    raw_send_option(fd, opt, body->data, body->len);
    for (;;) {
        g_autoptr(GByteArray) rep = NULL;
        type = raw_recv_option_reply(fd, opt, &rep);
        if (type != RAW_REP_META_CONTEXT) {
            return type;
        }
        g_assert_cmpuint(rep->len, >, 4);
        g_ptr_array_add(names, g_strndup((char *)rep->data + 4, rep->len - 4));
        if (ids) {
            uint32_t id = get32(rep->data);
            g_array_append_val(ids, id);
        }
    }
}

/* SET_META_CONTEXT with QUERIES, each of which must be granted. */
static void select_contexts(int fd, const char *export, const char *const *queries)
{
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);

    g_assert_cmphex(raw_meta_option(fd, RAW_OPT_SET_META_CONTEXT, export, queries, names,
                                    NULL), ==, RAW_REP_ACK);
    for (guint i = 0; i < names->len; i++) {
        g_assert_cmpstr(names->pdata[i], ==, queries[i]);
    }
    g_assert_null(queries[names->len]);
}

static RawConn *open_conn(const char *socket_path, const char *export, bool structured,
                          const char *const *queries)
{
    RawConn *c = g_new0(RawConn, 1);
    uint32_t elen = strlen(export), type;
    g_autofree uint8_t *d = g_malloc(4 + elen + 2);
    bool got_export = false;

    c->fd = raw_greet(socket_path, 3);     /* FIXED_NEWSTYLE | NO_ZEROES */
    c->structured = structured;
    c->next_cookie = 1;
    if (structured) {
        negotiate_structured(c->fd);
    }
    if (queries) {
        select_contexts(c->fd, export, queries);
    }
    put32(d, elen);
    memcpy(d + 4, export, elen);
    put16(d + 4 + elen, 0);
    raw_send_option(c->fd, RAW_OPT_GO, d, 6 + elen);
    for (;;) {
        g_autoptr(GByteArray) info = NULL;

        type = raw_recv_option_reply(c->fd, RAW_OPT_GO, &info);
        if (type != RAW_REP_INFO) {
            break;
        }
        g_assert_cmpuint(info->len, >=, 2);
        if (get16(info->data) == 0) {           /* NBD_INFO_EXPORT */
            g_assert_cmpuint(info->len, ==, 12);
            c->size = get64(info->data + 2);
            c->tflags = get16(info->data + 10);
            got_export = true;
        }
    }
    g_assert_cmphex(type, ==, RAW_REP_ACK);
    g_assert_true(got_export);
    return c;
}

RawConn *raw_open(const char *socket_path, const char *export, bool structured, bool meta)
{
    static const char *const base[] = { "base:allocation", NULL };

    return open_conn(socket_path, export, structured, meta ? base : NULL);
}

RawConn *raw_open_contexts(const char *socket_path, const char *export,
                           const char *const *queries)
{
    return open_conn(socket_path, export, true, queries);
}

void raw_close(RawConn *c)
{
    raw_request(c, 0, RAW_CMD_DISC, 0, 0, NULL, 0);
    raw_abandon(c);
}

/* A request header for C into HDR; returns its cookie. */
static uint64_t request_header(RawConn *c, uint8_t *hdr, uint16_t flags, uint16_t type,
                               uint64_t offset, uint32_t len)
{
    uint64_t cookie = c->next_cookie++;

    put32(hdr, MAGIC_REQUEST);
    put16(hdr + 4, flags);
    put16(hdr + 6, type);
    put64(hdr + 8, cookie);
    put64(hdr + 16, offset);
    put32(hdr + 24, len);
    return cookie;
}

uint64_t raw_request(RawConn *c, uint16_t flags, uint16_t type, uint64_t offset,
                     uint32_t len, const void *wdata, size_t wdata_len)
{
    uint8_t hdr[28];
    uint64_t cookie = request_header(c, hdr, flags, type, offset, len);

    raw_send(c->fd, hdr, sizeof(hdr));
    if (wdata && wdata_len) {
        raw_send(c->fd, wdata, wdata_len);
    }
    return cookie;
}

int64_t raw_try_cmd(RawConn *c, uint16_t flags, uint16_t type, uint64_t offset,
                    uint32_t len, const void *wdata)
{
    uint8_t hdr[28], rep[16];
    uint64_t cookie = request_header(c, hdr, flags, type, offset, len);

    g_assert_false(c->structured);
    g_assert_cmpuint(type, !=, RAW_CMD_READ);
    if (!try_send(c->fd, hdr, sizeof(hdr)) ||
        (type == RAW_CMD_WRITE && len && !try_send(c->fd, wdata, len)) ||
        try_recv(c->fd, rep, sizeof(rep)) <= 0) {
        return -1;
    }
    g_assert_cmphex(get32(rep), ==, MAGIC_SIMPLE);
    g_assert_cmpuint(get64(rep + 8), ==, cookie);
    return get32(rep + 4);
}

void raw_abandon(RawConn *c)
{
    close(c->fd);
    g_free(c);
}

/* One structured chunk's payload, checked against the request. */
static void handle_chunk(RawConn *c, uint16_t ctype, const uint8_t *p, uint32_t plen,
                         uint16_t cmd, uint64_t offset, uint32_t len,
                         uint8_t *rdata, GArray *extents, uint32_t *error)
{
    uint64_t off;
    uint32_t n;

    switch (ctype) {
    case 0:                                     /* NONE */
        g_assert_cmpuint(plen, ==, 0);
        break;
    case 1:                                     /* OFFSET_DATA */
        g_assert_cmpuint(cmd, ==, RAW_CMD_READ);
        g_assert_cmpuint(plen, >, 8);
        off = get64(p);
        n = plen - 8;
        g_assert_cmpuint(off, >=, offset);
        g_assert_cmpuint(off + n, <=, offset + len);
        if (rdata) {
            memcpy(rdata + (off - offset), p + 8, n);
        }
        c->data_chunks++;
        break;
    case 2:                                     /* OFFSET_HOLE */
        g_assert_cmpuint(cmd, ==, RAW_CMD_READ);
        g_assert_cmpuint(plen, ==, 12);
        off = get64(p);
        n = get32(p + 8);
        g_assert_cmpuint(n, >, 0);
        g_assert_cmpuint(off, >=, offset);
        g_assert_cmpuint(off + n, <=, offset + len);
        if (rdata) {
            memset(rdata + (off - offset), 0, n);
        }
        c->hole_chunks++;
        break;
    case 5:                                     /* BLOCK_STATUS */
        g_assert_cmpuint(cmd, ==, RAW_CMD_BLOCK_STATUS);
        g_assert_cmpuint(plen, >=, 12);
        g_assert_cmpuint((plen - 4) % 8, ==, 0);
        g_assert_cmpuint(c->status_chunks, <, G_N_ELEMENTS(c->status_ids));
        c->status_ids[c->status_chunks] = get32(p);
        c->status_extents[c->status_chunks++] = (plen - 4) / 8;
        for (uint32_t i = 4; extents && i < plen; i += 8) {
            uint32_t e[2] = { get32(p + i), get32(p + i + 4) };
            g_assert_cmpuint(e[0], >, 0);
            g_array_append_vals(extents, e, 2);
        }
        break;
    case 0x8001:                                /* ERROR */
    case 0x8002:                                /* ERROR_OFFSET */
        g_assert_cmpuint(plen, >=, 6);
        g_assert_cmpuint(get16(p + 4), <=, plen - 6);
        *error = get32(p);
        g_assert_cmpuint(*error, !=, 0);
        break;
    default:
        g_error("unexpected structured chunk type %u", ctype);
    }
}

uint32_t raw_reply(RawConn *c, uint64_t cookie, uint16_t type, uint64_t offset,
                   uint32_t len, void *rdata, GArray **extents)
{
    uint8_t hdr[20];
    uint32_t magic, error = 0;
    uint16_t flags;
    GArray *ext = extents ? g_array_new(FALSE, FALSE, sizeof(uint32_t)) : NULL;

    c->status_chunks = 0;

    recv_full(c->fd, hdr, 16);
    magic = get32(hdr);
    g_assert_cmpuint(get64(hdr + 8), ==, cookie);
    if (magic == MAGIC_SIMPLE) {
        /* proto.md: never a simple reply to a read once structured. */
        g_assert_false(c->structured && type == RAW_CMD_READ);
        error = get32(hdr + 4);
        if (type == RAW_CMD_READ && error == 0) {
            g_autofree uint8_t *buf = g_malloc(len ? len : 1);
            recv_full(c->fd, buf, len);
            if (rdata) {
                memcpy(rdata, buf, len);
            }
        }
        if (extents) {
            *extents = ext;
        }
        return error;
    }
    g_assert_cmphex(magic, ==, MAGIC_STRUCTURED);
    g_assert_true(c->structured);
    for (;;) {
        uint32_t plen;
        g_autofree uint8_t *payload = NULL;

        recv_full(c->fd, hdr + 16, 4);
        flags = get16(hdr + 4);
        plen = get32(hdr + 16);
        g_assert_cmpuint(plen, <=, 32 * 1024 * 1024 + 64);
        payload = g_malloc(plen ? plen : 1);
        recv_full(c->fd, payload, plen);
        handle_chunk(c, get16(hdr + 6), payload, plen, type, offset, len, rdata, ext, &error);
        if (flags & 1) {
            break;
        }
        recv_full(c->fd, hdr, 16);
        g_assert_cmphex(get32(hdr), ==, MAGIC_STRUCTURED);
        g_assert_cmpuint(get64(hdr + 8), ==, cookie);
    }
    if (extents) {
        *extents = ext;
    }
    return error;
}

uint32_t raw_cmd(RawConn *c, uint16_t flags, uint16_t type, uint64_t offset,
                 uint32_t len, const void *wdata, void *rdata)
{
    uint64_t cookie = raw_request(c, flags, type, offset, len,
                                  wdata, type == RAW_CMD_WRITE ? len : 0);

    return raw_reply(c, cookie, type, offset, len, rdata, NULL);
}
