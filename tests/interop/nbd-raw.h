/* A minimal NBD client for tests that must send what real clients never
 * would: bad flags, requests past the end, oversized lengths, garbage, a
 * half-sent request.  Written from doc/proto.md; it checks every reply it
 * reads and fails the test on protocol errors from the server. */
#ifndef TESTS_INTEROP_NBD_RAW_H
#define TESTS_INTEROP_NBD_RAW_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

/* Wire values the tests use (same numbers as proto.md). */
enum {
    RAW_OPT_EXPORT_NAME = 1, RAW_OPT_ABORT = 2, RAW_OPT_LIST = 3,
    RAW_OPT_STARTTLS = 5, RAW_OPT_INFO = 6, RAW_OPT_GO = 7,
    RAW_OPT_STRUCTURED_REPLY = 8, RAW_OPT_LIST_META_CONTEXT = 9,
    RAW_OPT_SET_META_CONTEXT = 10,
};
#define RAW_REP_ACK          1u
#define RAW_REP_SERVER       2u
#define RAW_REP_INFO         3u
#define RAW_REP_META_CONTEXT 4u
#define RAW_REP_ERR_UNSUP    0x80000001u
#define RAW_REP_ERR_INVALID  0x80000003u
#define RAW_REP_ERR_UNKNOWN  0x80000006u
#define RAW_REP_ERR_TOO_BIG  0x80000009u

enum {
    RAW_CMD_READ = 0, RAW_CMD_WRITE = 1, RAW_CMD_DISC = 2, RAW_CMD_FLUSH = 3,
    RAW_CMD_TRIM = 4, RAW_CMD_CACHE = 5, RAW_CMD_WRITE_ZEROES = 6,
    RAW_CMD_BLOCK_STATUS = 7,
};
#define RAW_FLAG_FUA       (1u << 0)
#define RAW_FLAG_NO_HOLE   (1u << 1)
#define RAW_FLAG_DF        (1u << 2)
#define RAW_FLAG_REQ_ONE   (1u << 3)
#define RAW_FLAG_FAST_ZERO (1u << 4)

#define RAW_EPERM     1u
#define RAW_EINVAL    22u
#define RAW_ENOSPC    28u
#define RAW_EOVERFLOW 75u
#define RAW_ENOTSUP   95u
#define RAW_ESHUTDOWN 108u

#define RAW_TFLAG_READ_ONLY (1u << 1)

/* ---- Handshake-level access ---- */

/* Connect to a unix socket, read the greeting (asserting NBDMAGIC,
 * IHAVEOPT and the FIXED_NEWSTYLE flag) and send CLIENT_FLAGS.  Returns
 * the fd. */
int raw_greet(const char *socket_path, uint32_t client_flags);
void raw_send(int fd, const void *buf, size_t len);
void raw_send_option(int fd, uint32_t opt, const void *data, uint32_t len);
/* Read one option reply: asserts the magic and that it answers OPT;
 * returns its type, *data (optional) gets the payload. */
uint32_t raw_recv_option_reply(int fd, uint32_t opt, GByteArray **data);
/* True when the server closed the connection (EOF or reset) within
 * TIMEOUT_MS; unread data is discarded. */
bool raw_peer_closed(int fd, int timeout_ms);
/* Send LIST_META_CONTEXT or SET_META_CONTEXT (OPT) for EXPORT with the
 * NULL-terminated QUERIES and read the replies: each context's name is
 * appended to NAMES and its id (uint32) to IDS (optional).  Returns the
 * type of the final reply (RAW_REP_ACK or an error). */
uint32_t raw_meta_option(int fd, uint32_t opt, const char *export,
                         const char *const *queries, GPtrArray *names, GArray *ids);

/* ---- Transmission ---- */

typedef struct RawConn {
    int fd;
    bool structured;
    uint64_t size;
    uint16_t tflags;
    uint64_t next_cookie;
    unsigned hole_chunks;       /* OFFSET_HOLE chunks received so far */
    unsigned data_chunks;       /* OFFSET_DATA chunks received so far */
    /* The last reply's BLOCK_STATUS chunks, in arrival order: context id
     * and number of extents of each. */
    unsigned status_chunks;
    uint32_t status_ids[4], status_extents[4];
} RawConn;

/* Full handshake with NBD_OPT_GO on EXPORT; STRUCTURED negotiates
 * structured replies, META also selects base:allocation. */
RawConn *raw_open(const char *socket_path, const char *export,
                  bool structured, bool meta);
/* The same with structured replies and the metadata contexts QUERIES
 * (NULL-terminated) selected, each of which the server must grant. */
RawConn *raw_open_contexts(const char *socket_path, const char *export,
                           const char *const *queries);
/* NBD_CMD_DISC and close. */
void raw_close(RawConn *c);

/* Send a request header (and WDATA when non-NULL, WDATA_LEN bytes). */
uint64_t raw_request(RawConn *c, uint16_t flags, uint16_t type,
                     uint64_t offset, uint32_t len,
                     const void *wdata, size_t wdata_len);
/* Read the whole reply to COOKIE (all chunks until DONE) and return its
 * NBD error (0 on success).  For reads RDATA (LEN bytes, optional) gets
 * the data, holes as zeroes; for block status *extents (optional) gets
 * pairs of be32 (length, flags) converted to host order, the chunks of
 * several contexts one after the other (see status_ids). */
uint32_t raw_reply(RawConn *c, uint64_t cookie, uint16_t type, uint64_t offset,
                   uint32_t len, void *rdata, GArray **extents);
/* For a server that may be killed under the client: a request without
 * read data on a connection with simple replies, and its NBD error (0 on
 * success), or -1 when the connection is lost (the request may or may not
 * have been carried out). */
int64_t raw_try_cmd(RawConn *c, uint16_t flags, uint16_t type, uint64_t offset,
                    uint32_t len, const void *wdata);
/* Close a connection whose server is gone (no NBD_CMD_DISC). */
void raw_abandon(RawConn *c);
/* raw_request + raw_reply. */
uint32_t raw_cmd(RawConn *c, uint16_t flags, uint16_t type, uint64_t offset,
                 uint32_t len, const void *wdata, void *rdata);

#endif
