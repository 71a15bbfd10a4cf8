/* Private interfaces between the files of migration/. */
#ifndef MIGRATION_INTERNAL_H
#define MIGRATION_INTERNAL_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include "migration/migration.h"
#include "migration/stream.h"

/* status.c: the error domain of every migration GError. */
GQuark mig_error_quark(void);
#define MIG_ERROR mig_error_quark()

/* status.c: hooks registered by the emulator, shared by both directions. */
/* Calls the status listener (never with a migration lock held). */
void migration_notify_status(MigrationStatus status);
/* The registered VM hooks; every member may be NULL. */
MigrationVmOps migration_get_vm_ops(void);

/* migration.c (outgoing) and incoming.c report into migration_query. */
bool outgoing_query(MigrationInfo *out);   /* false if never started */
void incoming_query(MigrationInfo *out);
bool incoming_is_busy(void);               /* listening or loading */
void outgoing_shutdown(void);
void incoming_shutdown(void);

/* channel.c: opening the transport named by a migration URI. */
typedef enum { MIG_CHANNEL_SOCKET, MIG_CHANNEL_FILE } MigChannelKind;
/* Connects (tcp:, unix:) or creates/truncates (file:); returns an fd. */
int mig_channel_open_outgoing(const char *uri, MigChannelKind *kind, GError **errp);
/* Listens (tcp:, unix:) or opens for reading (file:); returns an fd that
 * is a listening socket for MIG_CHANNEL_SOCKET. */
int mig_channel_open_incoming(const char *uri, MigChannelKind *kind, GError **errp);

/* return-path.c: destination -> source messages on the migration socket:
 * be16 type, be16 len, payload. */
#define MIG_RP_MSG_SHUT  0x0001   /* be32 status, 0 = loaded and flushed */
#define MIG_RP_MSG_ERROR 0x0100   /* blkmig: UTF-8 error text */

typedef struct ReturnPath ReturnPath;
/* Source: read messages from FD (owned by the return path) in a thread.
 * A destination ERROR shuts MAIN down so a blocked sender stops. */
ReturnPath *return_path_start(int fd, MigStream *main);
/* Wait up to TIMEOUT_US for SHUT(0); false with *errp set otherwise.
 * Ends early when the connection closes or the stream is shut down. */
bool return_path_wait_ack(ReturnPath *rp, gint64 timeout_us, GError **errp);
/* The destination's error text if one arrives within TIMEOUT_US (caller
 * frees), else NULL. */
char *return_path_wait_error(ReturnPath *rp, gint64 timeout_us);
/* The destination said outright that it failed (so it did not start). */
bool return_path_dest_refused(ReturnPath *rp);
/* Stops the reader thread and frees. */
void return_path_free(ReturnPath *rp);
/* Destination: send on OUT (a writer on the migration socket). */
void return_path_send_shut(MigStream *out, uint32_t status);
void return_path_send_error(MigStream *out, const char *text);

/* block-migration.c: disk bytes walked so far (bulk chunks and dirty
 * chunks, zero or not), the unit in which pending is counted. */
uint64_t block_migration_processed_bytes(void);

/* block-load.c: the load side of the "block" handler. */
int block_load_state(MigStream *f, void *opaque, int version_id, GError **errp);
int block_load_finish(void *opaque, GError **errp);
/* Ends a load that failed (called from the handler's cleanup). */
void block_load_cleanup(void);

/* load-flusher.c: flushes the drives in the background while a load
 * writes them. */
typedef struct LoadFlusher LoadFlusher;
LoadFlusher *load_flusher_start(void);
void load_flusher_written(LoadFlusher *fl, uint64_t bytes);
/* Stops (NULL is fine); -1 with *errp set if a background flush failed. */
int load_flusher_stop(LoadFlusher *fl, GError **errp);

#endif
