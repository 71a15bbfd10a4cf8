/* Private interfaces between the files of the migration core
 * (the .c files of migration/).  Handlers (migration/block/) see only
 * include/migration/savevm.h. */
#ifndef MIGRATION_INTERNAL_H
#define MIGRATION_INTERNAL_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include "migration/migration.h"
#include "migration/savevm.h"
#include "migration/stream.h"

/* migration.c: hooks registered by the emulator, shared by both directions. */
/* Calls the status listener (never with a migration lock held). */
void migration_notify_status(MigrationStatus status);
/* The registered VM hooks; every member may be NULL. */
MigrationVmOps migration_get_vm_ops(void);
/* False with *errp when the registered blocker check forbids migrating. */
bool migration_check_blockers(GError **errp);
/* Join the thread in *SLOT (taken under LOCK), if any: the previous
 * migration's, before a new one starts or at shutdown. */
void migration_join_thread(GMutex *lock, GThread **slot);

/* options.c: the block capability (QMP migrate's "blk": true) or the
 * block-incremental parameter ("inc": true) on for one migration only,
 * and back off once that one ended (or did not start). */
void mig_cap_block_for_one_migration(void);
void mig_block_incremental_for_one_migration(void);
void mig_cap_restore_temporary(void);

/* outgoing.c and incoming.c report into migration_query. */
bool outgoing_query(MigrationInfo *out);   /* false if never started */
void incoming_query(MigrationInfo *out);
bool incoming_is_busy(void);               /* listening or loading */
void outgoing_shutdown(void);
void incoming_shutdown(void);

/* savevm-qemu.c: what only QEMU streams have around the sections. */
/* Configuration section (type byte included) with our machine name. */
void savevm_put_configuration(MigStream *f);
/* Its contents after the type byte: the source's machine must be ours. */
int savevm_load_configuration(MigStream *f, GError **errp);
/* The device description after QEMU's end marker (type byte included). */
void savevm_put_vmdesc(MigStream *f);
/* After QEMU's end marker: the end of the stream, or a description
 * (read and ignored); anything else fails. */
int savevm_load_vmdesc(MigStream *f, GError **errp);

/* limits.c: progress-timeout, completion-timeout and timeout-action of
 * the outgoing migration (migration thread). */
typedef struct MigLimits {
    gint64 start_us;
    uint64_t least;             /* left to send at the last progress */
    gint64 least_us;            /* ...seen then */
    bool have_least;
    bool switched;              /* the limits no longer apply */
} MigLimits;
void mig_limits_start(MigLimits *l);
/* PENDING bytes are left for the switchover to move now (to send, or to
 * make durable at the destination), RATE bytes go per second.  False
 * with *errp (code MIG_ERROR_TIMEOUT) when a limit ran out and the
 * migration is to fail; with timeout-action write-blocking the mode
 * changes and it goes on. */
bool mig_limits_check(MigLimits *l, uint64_t pending, uint64_t rate, GError **errp);

/* downtime.c: what a switchover would cost if the guest stopped now. */
/* The last switchover's overrun halves every this many seconds once all
 * else in a migration's estimate fits downtime-limit (see downtime.c). */
#define DOWNTIME_OVERRUN_HALVING_S 2
typedef struct DowntimeInputs {
    uint64_t to_send;           /* bytes still to send */
    uint64_t not_durable;       /* sent but not durable at the destination yet */
    uint64_t bandwidth;         /* bytes the migration moves per second (0: unknown) */
    uint64_t dest_rate;         /* bytes the destination makes durable per second, or 0 */
    uint64_t flush_us;          /* the destination's final flush at least (0: it does not say) */
    uint64_t flush_rate;        /* bytes its flushes make durable per second (0: unknown) */
    bool await_flush_report;    /* it will say, but has not yet */
    uint64_t rtt_us;            /* the connection's round trip */
    uint64_t overrun_ms;        /* the last switchover's cost beyond its estimate */
    uint64_t overrun_waited_us; /* since all else first fit downtime-limit */
} DowntimeInputs;
typedef struct DowntimeEstimate {
    bool known;                 /* false until the inputs needed were measured */
    uint64_t data_ms;           /* moving the data left and writing it back */
    uint64_t flush_ms;          /* the destination's final flush (in both parts) */
    uint64_t overrun_ms;        /* what of it counts now (part of fixed_ms) */
    uint64_t fixed_ms;          /* what no waiting makes shorter */
    uint64_t total_ms;
} DowntimeEstimate;
void downtime_estimate(const DowntimeInputs *in, DowntimeEstimate *out);

/* channel.c: opening the transport named by a migration URI. */
typedef enum { MIG_CHANNEL_SOCKET, MIG_CHANNEL_FILE } MigChannelKind;
/* Connects (tcp:, unix:) or creates/truncates (file:); returns an fd. */
int mig_channel_open_outgoing(const char *uri, MigChannelKind *kind, GError **errp);
/* Listens (tcp:, unix:) or opens for reading (file:); returns an fd that
 * is a listening socket for MIG_CHANNEL_SOCKET. */
int mig_channel_open_incoming(const char *uri, MigChannelKind *kind, GError **errp);
/* URI with the port LISTEN_FD is bound to (for tcp:HOST:0). */
char *mig_channel_bound_uri(const char *uri, int listen_fd);
/* Send small writes at once (TCP_NODELAY) from now on: for the last bytes
 * before switchover, whose latency is downtime.  No-op for other fds. */
void mig_channel_set_nodelay(int fd);
/* The kernel's smoothed round-trip time of the TCP connection FD in
 * microseconds (0 for anything else). */
uint64_t mig_channel_rtt_us(int fd);
/* A stream (taking FD) for one connection of a migration: it fails
 * rather than wait once the link stalls for this side's link-timeout,
 * and TCP gives up on a dead peer as soon (keepalive, TCP_USER_TIMEOUT).
 * Any fd: the link timeout only applies to sockets. */
MigStream *mig_channel_stream_new(int fd, bool writer);

/* channel-tls.c: TLS on a socket migration's connections, as the
 * tls-creds, tls-hostname and tls-authz parameters say. */
/* Before a migration starts: the credentials exist for our role (checked
 * at once for a source, when set for a destination), and URI is not a
 * file: (which cannot be encrypted) when tls-creds is set. */
bool mig_channel_tls_check(const char *uri, bool outgoing, GError **errp);
/* The client handshake on a new outgoing connection to URI (no-op when
 * tls-creds is unset), within the link-timeout; false with *errp. */
bool mig_channel_secure_outgoing(MigStream *f, const char *uri, GError **errp);
/* The server handshake on a new accepted connection (no-op when
 * tls-creds is unset). */
bool mig_channel_secure_incoming(MigStream *f, GError **errp);

/* return-path.c: destination -> source messages on the migration socket:
 * be16 type, be16 len, payload. */
#define MIG_RP_MSG_SHUT  0x0001   /* be32 status, 0 = loaded and flushed */
#define MIG_RP_MSG_ERROR 0x0100   /* blkmig: UTF-8 error text */
/* blkmig: be64 disk bytes of block records the destination has written
 * and flushed; sent during the load to blkmig sources only (which show
 * they are by sending DEVICE_SIZE records).  The source counts what it
 * sent beyond that as part of the downtime. */
#define MIG_RP_MSG_DURABLE 0x0101
/* blkmig, block-resume: a resumed load's handler map (opaque to the core;
 * as many pieces as it takes), then RESUME_END (empty), before anything
 * else of the resumed stream is loaded. */
#define MIG_RP_MSG_RESUME_MAP 0x0102
#define MIG_RP_MSG_RESUME_END 0x0103
/* blkmig: be64 disk bytes the destination has compared with the source's
 * digests so far (disk verification, block-checksum); while they come
 * the source keeps waiting for the acknowledgement. */
#define MIG_RP_MSG_VERIFIED 0x0104
/* blkmig: be64 microseconds the destination's last flush of its drives
 * took, sent before the DURABLE it led to (to the same sources).  The
 * source counts a flush like it in every downtime: the destination's
 * final flush comes after the last byte. */
#define MIG_RP_MSG_FLUSHED 0x0105

typedef struct ReturnPath ReturnPath;
/* Source: read messages from FD (owned by the return path; another fd
 * on MAIN's socket, through MAIN's TLS session if it has one) in a
 * thread.  A destination ERROR shuts MAIN down so a blocked sender stops. */
ReturnPath *return_path_start(int fd, MigStream *main);
/* Wait for SHUT(0) until TIMEOUT_US passed without a VERIFIED message;
 * false with *errp set otherwise.  Ends early when the connection closes
 * or the stream is shut down. */
bool return_path_wait_ack(ReturnPath *rp, gint64 timeout_us, GError **errp);
/* The destination's error text if one arrives within TIMEOUT_US (caller
 * frees), else NULL. */
char *return_path_wait_error(ReturnPath *rp, gint64 timeout_us);
/* The destination said outright that it failed (so it did not start). */
bool return_path_dest_refused(ReturnPath *rp);
/* The last DURABLE count the destination sent; false when none came. */
bool return_path_durable(ReturnPath *rp, uint64_t *bytes);
/* block-resume: the whole resume map once RESUME_END came (within
 * TIMEOUT_US); NULL with *errp (code MIG_ERROR_IO when the connection
 * failed or nothing came) otherwise. */
GByteArray *return_path_wait_resume_map(ReturnPath *rp, gint64 timeout_us, GError **errp);
/* The last VERIFIED count (0 when none came). */
uint64_t return_path_verified(ReturnPath *rp);
/* The destination's last few flushes (FLUSHED): the quickest, in
 * microseconds (what its final flush costs at least), and the bytes they
 * made durable per second of flushing (0 when unknown); false when none
 * came. */
bool return_path_flush_cost(ReturnPath *rp, uint64_t *min_us, uint64_t *rate);
/* Stops the reader thread and frees. */
void return_path_free(ReturnPath *rp);
/* Destination: send on OUT (a writer on the migration socket). */
void return_path_send_shut(MigStream *out, uint32_t status);
void return_path_send_error(MigStream *out, const char *text);
/* One DURABLE message, flushed at once (OUT's link-timeout bounds how
 * long a source that reads nothing can hold it up). */
void return_path_send_durable(MigStream *out, uint64_t bytes);
/* The map in RESUME_MAP pieces, then RESUME_END, flushed. */
void return_path_send_resume_map(MigStream *out, const uint8_t *map, size_t len);
/* One VERIFIED message, flushed at once (bounded the same way). */
void return_path_send_verified(MigStream *out, uint64_t bytes);
/* One FLUSHED message, flushed at once (bounded the same way). */
void return_path_send_flushed(MigStream *out, uint64_t us);

/* channel-handlers.c: the registered channel handlers (savevm.h), for
 * the incoming side. */
/* The handler for connections starting with MAGIC; false when none. */
bool savevm_channel_find(uint32_t magic, SaveVMChannelOps *ops, void **opaque);
/* "a multifd channel (BMFD)" for each, joined with " nor "; caller frees;
 * NULL when none is registered. */
char *savevm_channels_describe(void);
/* Each handler's begin; ALL_ARRIVED(ARG) once every one of them expects
 * no further connection.  False (and no call) when none is registered. */
bool savevm_channels_begin(void (*all_arrived)(void *arg), void *arg);
void savevm_channels_failed(void);
void savevm_channels_abort(void);
void savevm_channels_end(void);
/* Forget every channel handler (savevm_unregister_all). */
void savevm_unregister_channels(void);

/* incoming-listener.c: accepts the connections of one incoming migration
 * and tells them apart by their first four bytes. */
typedef struct MigListener MigListener;
/* Takes LISTEN_FD. */
MigListener *mig_listener_start(int listen_fd);
/* The main connection's stream (owned by the listener), or NULL with
 * *errp when the listener failed or was shut down. */
MigStream *mig_listener_wait_main(MigListener *l, GError **errp);
/* Stop accepting (closes the listening socket). */
void mig_listener_stop_accepting(MigListener *l);
/* Stop accepting and shut every connection down. */
void mig_listener_shutdown(MigListener *l);
/* Join every thread, close every connection. */
void mig_listener_free(MigListener *l);

#endif
