/* NBD server internals shared by the files of nbd/.
 *
 * One file per concern:
 *   server.c          listening socket, accept thread, connection registry
 *   connection.c      one thread per client: owns its fd, runs the phases
 *   wire.c            buffered socket reads, full writes, byte order
 *   handshake.c       greeting, client flags, option loop, small options
 *   handshake-go.c    NBD_OPT_INFO / NBD_OPT_GO / NBD_OPT_EXPORT_NAME
 *   handshake-meta.c  NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT
 *   protocol.c        transmission loop: request header, validation
 *   commands.c        requests executed against the block layer
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
#include <sys/uio.h>

#include "block/block.h"
#include "nbd/server.h"

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

#define NBD_META_BASE_ALLOCATION    "base:allocation"

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
/* Context id handed out by NBD_OPT_SET_META_CONTEXT for base:allocation. */
#define NBD_META_ID_BASE_ALLOCATION 1

/* ---- Byte order ------------------------------------------------------- */

static inline void nbd_put16(uint8_t *p, uint16_t v)
{
    v = GUINT16_TO_BE(v);
    memcpy(p, &v, sizeof(v));
}
static inline void nbd_put32(uint8_t *p, uint32_t v)
{
    v = GUINT32_TO_BE(v);
    memcpy(p, &v, sizeof(v));
}
static inline void nbd_put64(uint8_t *p, uint64_t v)
{
    v = GUINT64_TO_BE(v);
    memcpy(p, &v, sizeof(v));
}
static inline uint16_t nbd_get16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof(v));
    return GUINT16_FROM_BE(v);
}
static inline uint32_t nbd_get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return GUINT32_FROM_BE(v);
}
static inline uint64_t nbd_get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return GUINT64_FROM_BE(v);
}

/* ---- Connection ------------------------------------------------------- */

#define NBD_INBUF_SIZE (64 * 1024)

typedef struct NBDConn {
    int fd;                     /* owned: closed by nbd_conn_free */
    char *peer;                 /* for log lines */

    /* Input buffer: several small pipelined requests per recv(). */
    uint8_t *inbuf;
    size_t in_pos, in_len;

    /* Negotiated during the handshake. */
    bool fixed_newstyle;
    bool no_zeroes;
    bool structured;
    BlockDriverState *meta_bs;  /* export SET_META_CONTEXT named */
    bool meta_base_alloc;       /* base:allocation selected for meta_bs */

    /* The export, fixed when transmission starts. */
    BlockDriverState *bs;
    uint64_t size;
    uint16_t tflags;

    /* Request payload buffer, allocated for bs, at most NBD_MAX_PAYLOAD. */
    void *buf;
    size_t buf_size;
} NBDConn;

/* connection.c */
NBDConn *nbd_conn_new(int fd, const char *peer);
void nbd_conn_free(NBDConn *c);
/* Run both phases until the client leaves or breaks the protocol. */
void nbd_conn_serve(NBDConn *c);
/* A payload buffer of at least LEN (<= NBD_MAX_PAYLOAD) bytes; NULL if the
 * allocation failed. */
void *nbd_conn_buffer(NBDConn *c, size_t len);
/* Drop a large payload buffer so an idle connection holds little memory. */
void nbd_conn_trim_buffer(NBDConn *c);

/* server.c: the registry lets nbd_server_stop reach every connection. */
void nbd_server_conn_done(NBDConn *c);

/* wire.c: all return 0, or -1 when the peer is gone or the socket failed. */
int nbd_recv(NBDConn *c, void *buf, size_t len);
int nbd_recv_discard(NBDConn *c, uint64_t len);
int nbd_send(NBDConn *c, const void *buf, size_t len);
int nbd_sendv(NBDConn *c, struct iovec *iov, int iovcnt);
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

/* commands.c: run a validated request (payload already in c->buf) through
 * the gate and the block layer and send its reply.  0, or -1 to drop. */
int nbd_cmd_execute(NBDConn *c, const NBDRequest *req);
uint32_t nbd_errno_to_wire(int negative_errno);

/* reply.c: 0, or -1 when the connection must be dropped. */
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
/* Wait until requests may run.  Returns 0 and sets *counted when the
 * request must be balanced by nbd_gate_leave, or -ESHUTDOWN when it must
 * fail (writes after nbd_server_refuse_writes, anything once stopping). */
int nbd_gate_enter(bool is_write, bool *counted);
void nbd_gate_leave(void);
void nbd_gate_set_stopping(bool stopping);

#endif
