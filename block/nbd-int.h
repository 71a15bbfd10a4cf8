/* The NBD client driver's internals, shared by its files:
 *
 *   nbd.c           the BlockDriver: open, close, the requests, URI test
 *   nbd-status.c    block status: base:allocation, qemu:allocation-depth
 *   nbd-status-cache.c  the runs of the last status reply
 *   nbd-request.c   a request on one connection: split and submit
 *   nbd-drive.c     waiting for the replies: the caller that drives the
 *                   connection, the callers that wait, the timeout
 *   nbd-conn.c      one libnbd handle: connect with a deadline, checks
 *   nbd-keeper.c    the thread of each connection: notices a hang-up,
 *                   drops a dead handle, reconnects with back-off
 *
 * Concurrency: every connection is a libnbd handle in non-blocking (aio)
 * mode.  Callers submit their commands themselves (libnbd's handle lock
 * serializes that), so any number of requests from any number of threads
 * are in flight on one connection.  Then one waiting caller at a time is
 * the connection's driver: it polls the socket and feeds libnbd, whose
 * completion callbacks wake the other waiters; when its own commands are
 * done it hands the role to a waiter still waiting.  A caller alone on a
 * connection thus waits for its reply itself, with no thread in between
 * (as with a pool of handles), while many callers still share one
 * connection (as with a dispatch thread).  With multi-conn the requests
 * go to the least busy of its connections (NBD_DEFAULT_CONNS unless the
 * drive asks for another number).
 *
 * Failure: a request not answered within the timeout makes its
 * connection drop (the socket is shut down, libnbd fails every command on
 * it, their callers get EIO); a lost connection is re-established in the
 * background with back-off, and while it is down, requests fail with EIO
 * at once instead of waiting. */
#ifndef BLOCK_NBD_INT_H
#define BLOCK_NBD_INT_H

#include <glib.h>
#include <libnbd.h>
#include <stdbool.h>
#include <stdint.h>

#include "block-int.h"

/* BlockOptions.timeout when 0: seconds a connect or a request may take. */
#define NBD_DEFAULT_TIMEOUT_S 30
/* Connections per drive when the server advertises multi-conn: the
 * default, and the most BlockOptions.connections may ask for. */
#define NBD_DEFAULT_CONNS 4
#define NBD_MAX_CONNS 16
/* Reconnect attempts start this far apart and double up to the maximum;
 * each attempt is bounded by the timeout. */
#define NBD_BACKOFF_MIN_MS 100
#define NBD_BACKOFF_MAX_MS 5000
/* Largest read or write payload per command (qemu-nbd's limit; libnbd's
 * is 64 MiB); a server advertising less gets its own. */
#define NBD_MAX_PAYLOAD (32u * 1024 * 1024)
/* Largest length of a zero, trim or block-status command. */
#define NBD_MAX_EFFECT (1u << 31)
/* Commands of one request in flight at a time. */
#define NBD_MAX_WAVE 16

#define NBD_CTX_DEPTH "qemu:allocation-depth"

/* What the export offers, from the first connection; a reconnect must
 * find the same size and read-only flag. */
typedef struct NbdExport {
    uint64_t size;
    bool read_only;
    bool can_flush, can_fua, can_trim, can_zero, can_fast_zero, can_multi_conn;
    bool has_allocation;      /* base:allocation negotiated */
    bool has_depth;           /* qemu:allocation-depth negotiated */
    uint32_t min_block;       /* request alignment, >= 1 */
    uint32_t max_payload;
} NbdExport;

typedef struct NbdClient NbdClient;

/* One run of a block-status reply, as the cache keeps it. */
typedef struct NbdStatusRun {
    uint64_t end;
    BdrvStatus status;
} NbdStatusRun;

/* The runs of the last block-status reply (nbd-status-cache.c). */
typedef struct NbdStatusCache {
    GMutex lock;
    uint64_t gen;             /* bumped by every change the node makes */
    uint64_t start;           /* where the first run starts */
    GArray *runs;             /* NbdStatusRun, ends ascending */
} NbdStatusCache;

/* One connection and its keeper thread. */
typedef struct NbdConn {
    NbdClient *client;
    int index;
    GThread *keeper;
    int keeper_fd;            /* eventfd: wakes the keeper (a dead handle, close) */
    int driver_fd;            /* eventfd: wakes the driver (a command to send, a kill) */
    /* Submitters hold it shared around their nbd_aio_* calls; the keeper
     * holds it exclusively (and the driver role) to swap h. */
    GRWLock use_lock;
    struct nbd_handle *h;     /* NULL while down */
    gint up;                  /* atomic: h is connected and may take commands */
    gint kill;                /* atomic: a request timed out: shut the socket */
    gint busy;                /* atomic: requests on this connection now */
    bool ever_up;             /* only a connection that once worked reconnects */
    /* The driver role (nbd-drive.c).  lock is never held across a libnbd
     * call: completion callbacks, which run inside them, take it. */
    GMutex lock;              /* driving, waiters, keeper_waiting, every NbdWait */
    bool driving;             /* a caller (or the keeper) polls h */
    GQueue waiters;           /* NbdWait * of callers waiting for replies */
    int keeper_waiting;       /* the keeper waits on idle for the role */
    GCond idle;
    char *why;                /* why the handle died, for the keeper's message */
} NbdConn;

/* TLS files for libnbd (BlockOptions.tls_creds), kept for reconnects. */
typedef struct NbdTls {
    bool psk;
    char *dir;              /* NULL: no tls-creds (an nbds:// URI uses
                             * libnbd's defaults) */
    char *username;
    bool verify_peer;
} NbdTls;

struct NbdClient {
    char *uri;
    NbdTls tls;
    NbdExport exp;
    gint64 timeout_us;
    gint stopping;            /* atomic: close() runs */
    guint next;               /* atomic: round robin over connections */
    int nconns;
    int want_conns;           /* with multi-conn: BlockOptions.connections */
    NbdStatusCache status_cache;
    NbdConn conns[NBD_MAX_CONNS];
};

/* One request's commands on CONN, waited for together (under conn->lock). */
typedef struct NbdWait {
    NbdConn *conn;
    GCond cond;
    int pending;              /* commands submitted and not completed */
    int err;                  /* first errno of a command, 0 */
} NbdWait;

/* nbd-conn.c: a handle connected to C->uri and in the ready state within
 * C's timeout, or NULL with *errp set.  WAKE_FD (-1: none) readable ends
 * the attempt early (close). */
struct nbd_handle *nbdc_conn_connect(NbdClient *c, int wake_fd, GError **errp);
/* nbd-conn.c: what H's export offers. */
bool nbdc_conn_describe(struct nbd_handle *h, NbdExport *exp, GError **errp);
/* nbd-conn.c: a reconnected H serves the export C opened. */
bool nbdc_conn_matches(NbdClient *c, struct nbd_handle *h, GError **errp);
/* nbd-conn.c: wait up to TIMEOUT_MS (-1: no limit) for H's socket to be
 * ready the way libnbd wants it, or for WAKE_FD (-1: none), and tell
 * libnbd what happened: 1 when WAKE_FD was written (and is drained), -1
 * when libnbd failed (nbd_get_error() says why), else 0. */
int nbdc_conn_poll(struct nbd_handle *h, int wake_fd, int timeout_ms);
/* nbd-conn.c: graceful disconnect, bounded by a second, then close. */
void nbdc_conn_close(struct nbd_handle *h);

/* nbd-keeper.c: start the keeper of CONN (h already connected, or NULL:
 * it connects, and gives up on a connection that never worked). */
void nbdc_keeper_start(NbdConn *conn);
/* nbd-keeper.c: stop every keeper of C, closing the handles. */
void nbdc_keeper_stop_all(NbdClient *c);
/* nbd-keeper.c / nbd-drive.c: make FD (an eventfd) readable. */
void nbdc_wake(int fd);

/* nbd-drive.c: wait for W's commands, driving the connection when no one
 * else does; past DEADLINE the connection is shut down. */
void nbdc_drive_wait(NbdWait *w, gint64 deadline);
/* nbd-drive.c: the driver role for the keeper, which waits until no
 * caller drives, and releases it to the next waiter. */
void nbdc_drive_take(NbdConn *conn);
void nbdc_drive_release(NbdConn *conn);
/* nbd-drive.c: shut H's socket down: libnbd sees EOF next and fails
 * every command still on it. */
void nbdc_shut_socket(struct nbd_handle *h);

/* nbd-request.c: one request's commands.  SUBMIT issues one command for
 * [off, off+len) on H (an nbd_aio_* call, OPAQUE its own data) with the
 * completion callback CB and returns the cookie, or -1. */
typedef int64_t (*NbdSubmitFn)(struct nbd_handle *h, uint64_t off, uint64_t len,
                               void *buf, nbd_completion_callback cb, void *opaque);
/* Split [off, off+len) into commands of at most MAX bytes (BUF advancing
 * with them when not NULL), submit them on one connection and wait for
 * all: 0, or a negative errno (-EIO for a lost or timed-out connection). */
int nbdc_request(NbdClient *c, uint64_t off, uint64_t len, void *buf, uint64_t max,
                NbdSubmitFn submit, void *opaque);

/* nbd-status-cache.c: the cache of block-status runs.  A lookup that
 * misses gives the generation a reply must still match to be stored;
 * forget is called before and after every write, zero and trim. */
void nbdc_cache_init(NbdStatusCache *sc);
void nbdc_cache_destroy(NbdStatusCache *sc);
bool nbdc_cache_lookup(NbdStatusCache *sc, uint64_t off, uint64_t len, uint64_t *pnum,
                       BdrvStatus *status, uint64_t *gen);
void nbdc_cache_store(NbdStatusCache *sc, uint64_t gen, uint64_t start, GArray *runs);
void nbdc_cache_forget(NbdStatusCache *sc);

/* nbd-status.c: the driver's block_status. */
int nbdc_status(NbdClient *c, uint64_t off, uint64_t len, uint64_t *pnum, BdrvStatus *status);

#endif
