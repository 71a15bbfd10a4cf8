/* NBD server internals shared by the files of nbd/.
 *
 * One file per concern:
 *   server.c          listening socket, accept thread, connection registry
 *   connection.c      one thread per client: owns its fd, runs the phases
 *   wire.c            buffered socket reads, full writes, byte order
 *   handshake.c       greeting, client flags, option loop, small options
 *   handshake-go.c    NBD_OPT_INFO / NBD_OPT_GO / NBD_OPT_EXPORT_NAME
 *   handshake-meta.c  NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT
 *   handshake-tls.c   NBD_OPT_STARTTLS and the TLS policy of the options
 *   protocol.c        transmission loop: request header, validation
 *   commands.c        requests executed against the block layer
 *   read.c            NBD_CMD_READ: data and hole extents, sent in slices
 *   block-status.c    NBD_CMD_BLOCK_STATUS: one chunk per metadata context
 *   write.c           NBD_CMD_WRITE: payload received and written in slices
 *   payload.c         one slice over the socket, given back when it stalls
 *   budget.c          server-wide budget of payload buffer bytes
 *   reply.c           simple replies and structured reply chunks
 *   gate.c            runstate gate: pause / resume / refuse writes
 *
 * Constants and byte layouts follow doc/proto.md of the NBD project. */
#ifndef NBD_INTERNAL_H
#define NBD_INTERNAL_H

#ifndef G_LOG_DOMAIN
#define G_LOG_DOMAIN "nbd"
#endif

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "util/bswap.h"
#include "block/block.h"
#include "nbd/server.h"
#include "util/tls.h"

/* ---- Protocol constants ------------------------------------------------ */

#define NBD_MAGIC                   UINT64_C(0x4e42444d41474943) /* NBDMAGIC */
#define NBD_OPTS_MAGIC              UINT64_C(0x49484156454F5054) /* IHAVEOPT */
#define NBD_REP_MAGIC               UINT64_C(0x0003e889045565a9)
#define NBD_REQUEST_MAGIC           UINT32_C(0x25609513)
#define NBD_SIMPLE_REPLY_MAGIC      UINT32_C(0x67446698)
#define NBD_STRUCTURED_REPLY_MAGIC  UINT32_C(0x668e33ef)

/* Handshake flags (server) and client flags. */
#define NBD_FLAG_FIXED_NEWSTYLE     (1u << 0)
#define NBD_FLAG_NO_ZEROES          (1u << 1)
#define NBD_FLAG_C_FIXED_NEWSTYLE   (1u << 0)
#define NBD_FLAG_C_NO_ZEROES        (1u << 1)

/* Transmission flags. */
#define NBD_FLAG_HAS_FLAGS          (1u << 0)
#define NBD_FLAG_READ_ONLY          (1u << 1)
#define NBD_FLAG_SEND_FLUSH         (1u << 2)
#define NBD_FLAG_SEND_FUA           (1u << 3)
#define NBD_FLAG_ROTATIONAL         (1u << 4)
#define NBD_FLAG_SEND_TRIM          (1u << 5)
#define NBD_FLAG_SEND_WRITE_ZEROES  (1u << 6)
#define NBD_FLAG_SEND_DF            (1u << 7)
#define NBD_FLAG_CAN_MULTI_CONN     (1u << 8)
#define NBD_FLAG_SEND_FAST_ZERO     (1u << 11)

/* Options. */
#define NBD_OPT_EXPORT_NAME         1
#define NBD_OPT_ABORT               2
#define NBD_OPT_LIST                3
#define NBD_OPT_STARTTLS            5
#define NBD_OPT_INFO                6
#define NBD_OPT_GO                  7
#define NBD_OPT_STRUCTURED_REPLY    8
#define NBD_OPT_LIST_META_CONTEXT   9
#define NBD_OPT_SET_META_CONTEXT    10

/* Option replies; errors have bit 31 set. */
#define NBD_REP_ACK                 1
#define NBD_REP_SERVER              2
#define NBD_REP_INFO                3
#define NBD_REP_META_CONTEXT        4
#define NBD_REP_ERR(n)              ((UINT32_C(1) << 31) | (n))
#define NBD_REP_ERR_UNSUP           NBD_REP_ERR(1)
#define NBD_REP_ERR_POLICY          NBD_REP_ERR(2)
#define NBD_REP_ERR_INVALID         NBD_REP_ERR(3)
#define NBD_REP_ERR_TLS_REQD        NBD_REP_ERR(5)
#define NBD_REP_ERR_UNKNOWN         NBD_REP_ERR(6)
#define NBD_REP_ERR_SHUTDOWN        NBD_REP_ERR(7)
#define NBD_REP_ERR_TOO_BIG         NBD_REP_ERR(9)

/* NBD_REP_INFO types. */
#define NBD_INFO_EXPORT             0
#define NBD_INFO_NAME               1
#define NBD_INFO_DESCRIPTION        2
#define NBD_INFO_BLOCK_SIZE         3

/* Commands and command flags. */
#define NBD_CMD_READ                0
#define NBD_CMD_WRITE               1
#define NBD_CMD_DISC                2
#define NBD_CMD_FLUSH               3
#define NBD_CMD_TRIM                4
#define NBD_CMD_WRITE_ZEROES        6
#define NBD_CMD_BLOCK_STATUS        7

#define NBD_CMD_FLAG_FUA            (1u << 0)
#define NBD_CMD_FLAG_NO_HOLE        (1u << 1)
#define NBD_CMD_FLAG_DF             (1u << 2)
#define NBD_CMD_FLAG_REQ_ONE        (1u << 3)
#define NBD_CMD_FLAG_FAST_ZERO      (1u << 4)

/* Structured reply flags and chunk types. */
#define NBD_REPLY_FLAG_DONE         (1u << 0)
#define NBD_REPLY_TYPE_NONE         0
#define NBD_REPLY_TYPE_OFFSET_DATA  1
#define NBD_REPLY_TYPE_OFFSET_HOLE  2
#define NBD_REPLY_TYPE_BLOCK_STATUS 5
#define NBD_REPLY_TYPE_ERROR        ((1u << 15) | 1)

/* base:allocation extent flags. */
#define NBD_STATE_HOLE              (1u << 0)
#define NBD_STATE_ZERO              (1u << 1)

/* Error values on the wire (not host errno values). */
#define NBD_EPERM                   1
#define NBD_EIO                     5
#define NBD_ENOMEM                  12
#define NBD_EINVAL                  22
#define NBD_ENOSPC                  28
#define NBD_EOVERFLOW               75
#define NBD_ENOTSUP                 95
#define NBD_ESHUTDOWN               108

/* Metadata contexts served, in the order replies list them
 * (handshake-meta.c has their names).  The id NBD_OPT_SET_META_CONTEXT
 * hands out for a context, and block status chunks carry, is NBD_META_ID. */
typedef enum NBDMetaContext {
    NBD_META_BASE_ALLOCATION,   /* base:allocation: holes vs data */
    NBD_META_ALLOCATION_DEPTH,  /* qemu:allocation-depth: which layer of
                                 * the backing chain holds the data (QEMU's
                                 * docs/interop/nbd.rst) */
    NBD_META_COUNT,
} NBDMetaContext;
#define NBD_META_ID(ctx)            ((uint32_t)(ctx) + 1)
#define NBD_META_ALL                ((1u << NBD_META_COUNT) - 1)

/* ---- Limits: nothing read from the wire sizes an allocation beyond these */

#define NBD_MIN_BLOCK               1u
#define NBD_PREF_BLOCK              4096u
#define NBD_MAX_PAYLOAD             (32u * 1024 * 1024)  /* advertised max */
#define NBD_MAX_OPTION_LEN          (64u * 1024)         /* larger: disconnect */
#define NBD_MAX_STRING              4096u                /* proto.md strings */
#define NBD_MAX_CONNECTIONS         64
#define NBD_HANDSHAKE_TIMEOUT_S     60
/* Reads at least this long look for holes and send them as OFFSET_HOLE. */
#define NBD_SPARSE_READ_MIN         (64u * 1024)
#define NBD_READ_MAX_EXTENTS        64
#define NBD_STATUS_MAX_EXTENTS      4096

/* ---- Payload memory: bounded for all connections together --------------
 *
 * A payload up to NBD_SMALL_PAYLOAD (the 4 KiB..64 KiB guest I/O path)
 * uses the connection's own buffer: with its input buffer, 128 KiB per
 * connection, at most 8 MiB for NBD_MAX_CONNECTIONS.  A larger one moves
 * between socket and disk in slices of at most NBD_SLICE_MAX bytes, each
 * in a buffer counted against one server-wide budget of NBD_BUFFER_BUDGET
 * bytes.  A connection holds at most one slice (the per-connection limit)
 * and waits for budget in arrival order before reading or sending more.
 * While its client is quiet it keeps its slice only as long as nobody else
 * waits for budget (and at most NBD_SLICE_KEEP_MS between requests).  So a
 * request of any size is served, and a client that stops reading its
 * replies (or stops sending a write's payload) gives its slice back as
 * soon as another connection waits: nobody is starved and nobody is
 * disconnected for being slow.
 *
 * 64 MiB: room for two requests of the advertised maximum (NBD_MAX_PAYLOAD,
 * 32 MiB), as 16 slices of 4 MiB: 16 connections moving large payloads at
 * once, more than the cores can keep busy (without the budget, 64
 * connections could pin 64 x 32 MiB).  Slices of 4 MiB cost nothing:
 * a 32 MiB request moves faster in cache-sized pieces than whole, and a
 * re-read after a stall stays cheap. */
#define NBD_SMALL_PAYLOAD           (64u * 1024)
#define NBD_SLICE_MAX               (4u * 1024 * 1024)
#define NBD_BUFFER_BUDGET           (64u * 1024 * 1024)
/* A budgeted slice whose socket moves nothing for this long is given back
 * if another connection waits for budget; one kept between requests is
 * given back anyway once its client is quiet for NBD_SLICE_KEEP_MS. */
#define NBD_STALL_MS                50
#define NBD_SLICE_KEEP_MS           1000

/* ---- Connection ------------------------------------------------------- */

#define NBD_INBUF_SIZE (64 * 1024)

/* The server's TLS settings, shared by its connections. */
typedef struct NBDTlsConfig {
    gint refs;
    TlsCreds *creds;
    char *authz;                /* or NULL */
    bool require;
} NBDTlsConfig;

typedef struct NBDConn {
    int fd;                     /* owned: closed by nbd_conn_free */
    char *peer;                 /* for log lines */

    /* TLS: the server's settings (NULL: none), and the session once
     * STARTTLS succeeded; then every byte goes through it.  Its waits
     * are poll()s bounded by io_timeout_ms (-1: none), the handshake
     * phase's bound that SO_RCVTIMEO gives plain sockets. */
    NBDTlsConfig *tls_config;
    TlsSession *tls;
    int io_timeout_ms;

    /* Input buffer: several small pipelined requests per recv(). */
    uint8_t *inbuf;
    size_t in_pos, in_len;

    /* Negotiated during the handshake. */
    bool fixed_newstyle;
    bool no_zeroes;
    bool structured;
    BlockDriverState *meta_bs;  /* export SET_META_CONTEXT named */
    unsigned meta_contexts;     /* 1 << NBDMetaContext per context selected
                                 * for meta_bs */

    /* The export, fixed when transmission starts. */
    BlockDriverState *bs;
    uint64_t size;
    uint16_t tflags;

    /* Payload buffers: NBD_SMALL_PAYLOAD bytes allocated for bs on first
     * use, and at most one budgeted slice (see budget.c). */
    void *small;
    void *slice;
    size_t slice_size;
} NBDConn;

/* connection.c */
/* TLS may be NULL; the connection takes a reference. */
NBDConn *nbd_conn_new(int fd, const char *peer, NBDTlsConfig *tls);
void nbd_conn_free(NBDConn *c);
/* Run both phases until the client leaves or breaks the protocol. */
void nbd_conn_serve(NBDConn *c);
/* A buffer for a slice of LEN (<= NBD_SLICE_MAX) bytes that will move in
 * direction EVENTS (POLLIN: from the socket, POLLOUT: to it).  Above
 * NBD_SMALL_PAYLOAD it is the budgeted slice: first waits until the
 * socket is ready (nbd_socket_wait), then, holding none, for budget.
 * NULL when the server stops. */
void *nbd_conn_slice(NBDConn *c, size_t len, short events);
/* Give the budgeted slice back (no-op without one). */
void nbd_conn_drop_slice(NBDConn *c);
/* After each slice: give it back if another connection waits.  (Socket
 * waits give it back too: nbd_socket_wait.) */
void nbd_conn_slice_done(NBDConn *c);

/* server.c: the registry lets nbd_server_stop reach every connection. */
void nbd_server_conn_done(NBDConn *c);

/* wire.c: all return 0, or -1 when the peer is gone or the socket failed. */
int nbd_recv(NBDConn *c, void *buf, size_t len);
int nbd_recv_discard(NBDConn *c, uint64_t len);
int nbd_send(NBDConn *c, const void *buf, size_t len);
int nbd_sendv(NBDConn *c, struct iovec *iov, int iovcnt);
/* As nbd_recv / nbd_sendv, but return once the socket moved nothing for
 * STALL_MS (-1: never): the bytes moved, or -1 when the peer is gone.
 * Any call without a stall limit that would block waits through
 * nbd_socket_wait, so no connection holds budget for a quiet client. */
ssize_t nbd_recv_until_stall(NBDConn *c, void *buf, size_t len, int stall_ms);
ssize_t nbd_sendv_until_stall(NBDConn *c, struct iovec *iov, int iovcnt, int stall_ms);
/* True once the socket is ready for EVENTS (for POLLIN: or input is
 * buffered) within TIMEOUT_MS (-1: wait); hang-ups count as ready. */
bool nbd_socket_ready(NBDConn *c, short events, int timeout_ms);
/* Wait as long as it takes for the socket to be ready for EVENTS.  The
 * budgeted slice is kept meanwhile only while nobody waits for budget and
 * for at most NBD_SLICE_KEEP_MS: a client between two large requests
 * should not pay for a new slice, and one that went quiet should not
 * hold budget. */
void nbd_socket_wait(NBDConn *c, short events);
void nbd_socket_setup(int fd);
void nbd_socket_set_timeout(int fd, int seconds);

/* handshake*.c */
typedef enum {
    NBD_OPT_NEXT,       /* keep haggling */
    NBD_OPT_TRANSMIT,   /* export chosen: enter transmission */
    NBD_OPT_CLOSE,      /* drop the connection */
} NBDOptResult;

/* True when transmission should start with c->bs set. */
bool nbd_handshake(NBDConn *c);
/* handshake-tls.c: NBD_OPT_STARTTLS; and, before TLS when the server
 * requires it, the refusal of option OPT (NBD_OPT_NEXT after an
 * NBD_REP_ERR_TLS_REQD reply, NBD_OPT_CLOSE for EXPORT_NAME, which has no
 * way to refuse), or -1 when OPT may go on. */
NBDOptResult nbd_opt_starttls(NBDConn *c, uint32_t len);
int nbd_opt_tls_policy(NBDConn *c, uint32_t opt);
NBDTlsConfig *nbd_tls_config_new(const NbdServerTls *tls, GError **errp);
NBDTlsConfig *nbd_tls_config_ref(NBDTlsConfig *t);
void nbd_tls_config_unref(NBDTlsConfig *t);
int nbd_opt_reply(NBDConn *c, uint32_t opt, uint32_t type,
                  const void *data, uint32_t len);
/* An error reply carrying a human-readable message. */
int nbd_opt_error(NBDConn *c, uint32_t opt, uint32_t type,
                  const char *fmt, ...) G_GNUC_PRINTF(4, 5);
NBDOptResult nbd_opt_info_go(NBDConn *c, uint32_t opt, const uint8_t *data, uint32_t len);
NBDOptResult nbd_opt_export_name(NBDConn *c, const uint8_t *data, uint32_t len);
NBDOptResult nbd_opt_meta_context(NBDConn *c, uint32_t opt, const uint8_t *data, uint32_t len);
/* Drive for an export name ("" = the first drive), or NULL. */
BlockDriverState *nbd_export_lookup(const char *name);

/* protocol.c */
typedef struct NBDRequest {
    uint16_t flags;
    uint16_t type;
    uint64_t cookie;
    uint64_t offset;
    uint32_t len;
} NBDRequest;

void nbd_transmission(NBDConn *c);
const char *nbd_cmd_name(uint16_t type);

/* Commands that change the export (refused after migration). */
static inline bool nbd_cmd_is_write(uint16_t type)
{
    return type == NBD_CMD_WRITE || type == NBD_CMD_TRIM ||
           type == NBD_CMD_WRITE_ZEROES;
}

/* commands.c: run a validated request (a write's payload still on the
 * wire) through the gate and the block layer and send its reply.  0, or
 * -1 to drop. */
int nbd_cmd_execute(NBDConn *c, const NBDRequest *req);
uint32_t nbd_errno_to_wire(int negative_errno);
/* The error reply to REQ for a block-layer failure ("WRITE at OFF+LEN:
 * reason"); 0, or -1 to drop. */
int nbd_reply_cmd_error(NBDConn *c, const NBDRequest *req, int negative_errno);

/* read.c, write.c, block-status.c: the same for NBD_CMD_READ,
 * NBD_CMD_WRITE and NBD_CMD_BLOCK_STATUS. */
int nbd_cmd_read(NBDConn *c, const NBDRequest *req);
int nbd_cmd_write(NBDConn *c, const NBDRequest *req);
int nbd_cmd_block_status(NBDConn *c, const NBDRequest *req);

/* payload.c: a reply's framing (header, chunk offset) not yet sent. */
typedef struct NBDFrame {
    uint8_t bytes[32];
    size_t len, pos;
} NBDFrame;

/* Send what is left of HEAD, then BUF[0..LEN).  Returns the bytes of BUF
 * sent: LEN, or fewer when the client stopped reading while another
 * connection waits for budget; then the slice was given back.  -1: the
 * connection is lost. */
ssize_t nbd_payload_send(NBDConn *c, NBDFrame *head, const void *buf, size_t len);
/* Receive up to LEN bytes into BUF: LEN, or fewer when the client stopped
 * sending while another connection waits for budget (the caller uses what
 * came, then gives the slice back).  -1: the connection is lost. */
ssize_t nbd_payload_recv(NBDConn *c, void *buf, size_t len);

/* budget.c: buffers counted against NBD_BUFFER_BUDGET. */
/* LEN bytes (page-aligned, a multiple of the page size), after waiting in
 * arrival order for budget; NULL when the server stops. */
void *nbd_budget_alloc(size_t len);
void nbd_budget_free(void *buf, size_t len);
/* True when a connection waits for budget that is not free. */
bool nbd_budget_contended(void);
/* Stopping wakes every waiter with NULL; cleared when a server starts. */
void nbd_budget_set_stopping(bool stopping);

/* reply.c: headers into HDR (16 and 20 bytes), then the replies; those
 * return 0, or -1 when the connection must be dropped. */
#define NBD_SIMPLE_REPLY_LEN 16
#define NBD_CHUNK_HEADER_LEN 20
void nbd_simple_header(uint8_t *hdr, uint64_t cookie, uint32_t error);
void nbd_chunk_header(uint8_t *hdr, uint64_t cookie, uint16_t flags, uint16_t type,
                      uint32_t len);
int nbd_reply_simple(NBDConn *c, uint64_t cookie, uint32_t error,
                     const void *data, size_t len);
int nbd_reply_chunk(NBDConn *c, uint64_t cookie, uint16_t flags, uint16_t type,
                    const void *head, uint32_t head_len,
                    const void *data, uint32_t data_len);
/* Error for REQ: structured (with message) when negotiated, else simple. */
int nbd_reply_error(NBDConn *c, const NBDRequest *req, uint32_t error,
                    const char *fmt, ...) G_GNUC_PRINTF(4, 5);
/* Success without payload. */
int nbd_reply_ok(NBDConn *c, const NBDRequest *req);

/* gate.c */
/* Wait until requests may run, then return FN(OPAQUE) run inside the gate
 * (so a pause waits for it); -ESHUTDOWN without running it when it must
 * fail (writes after nbd_server_refuse_writes, anything once stopping). */
int nbd_gate_run(bool is_write, int (*fn)(void *opaque), void *opaque);
void nbd_gate_set_stopping(bool stopping);

#endif
