/* The handler seam: the savevm container (QEMU format version 3), the
 * registry of the handlers that fill its sections (QEMU's SaveVMHandlers)
 * and of the channel handlers that take a migration's extra connections,
 * and the services the core offers its handlers.  The core reaches a
 * handler (migration/block/ is one) only through these tables; a handler
 * reaches the core only through this header.
 *
 *   be32 0x5145564d  be32 3
 *   START 0x01 / FULL 0x04: be32 id, u8 len + idstr, be32 instance, be32 version
 *   PART 0x02 / END 0x03:   be32 id
 *   every section ends with 0x7e + be32 id
 *   EOF 0x10 (blkmig's end marker)
 *
 * A QEMU 7.2 stream (and a blkmigd source's with qemu-compat) also has,
 * right after the header, a configuration section (0x07: be32 length +
 * machine name, no footer), and ends with QEMU's own end marker 0x00
 * followed by the device description (0x06: be32 length + JSON).  Its
 * sections are vmstate: fields, then optional subsections (0x05: u8 len +
 * name, be32 version, fields) until the footer.  A destination accepts
 * both end markers; a source writes 0x00 and the description only with
 * qemu-compat (where QEMU reads 0x10 as an unknown section type).
 *
 * blkmig's own type bytes start at 0x40, clear of QEMU's (0x01..0x10,
 * 0x7e); they are never sent with qemu-compat, and an older destination
 * fails on them as on any unknown type:
 *   CANCELLED 0x40  in place of a section: the source's operator cancelled
 *                   the migration; nothing follows and the source closes
 *                   the connections once the destination answered (or
 *                   after 2 s).  The destination fails the migration with
 *                   "the source cancelled the migration".                */
#ifndef MIGRATION_SAVEVM_H
#define MIGRATION_SAVEVM_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include "migration/migration.h"
#include "migration/stream.h"

#define QEMU_VM_FILE_MAGIC       0x5145564d
#define QEMU_VM_FILE_VERSION     0x00000003
#define BLKMIG_VM_EOF            0x10
#define QEMU_VM_EOF              0x00
#define QEMU_VM_SECTION_START    0x01
#define QEMU_VM_SECTION_PART     0x02
#define QEMU_VM_SECTION_END      0x03
#define QEMU_VM_SECTION_FULL     0x04
#define QEMU_VM_SECTION_FOOTER   0x7e
#define QEMU_VM_SUBSECTION       0x05
#define QEMU_VM_VMDESCRIPTION    0x06
#define QEMU_VM_CONFIGURATION    0x07
#define QEMU_VM_COMMAND          0x08
#define BLKMIG_VM_CANCELLED      0x40

/* Destination: what the core hands every handler when a load starts
 * (load_setup); valid until that load ends (after load_end and cleanup). */
typedef struct SaveVMLoadContext {
    /* Tell the source that BYTES (a running total, in the unit of the
     * handler's save_progress) are written and flushed here: one DURABLE
     * return-path message when the source listens (a socket load of a
     * blkmig source), nothing otherwise.  Any thread; it does not block
     * longer than the link-timeout. */
    void (*report_durable)(void *opaque, uint64_t bytes);
    /* block-resume: send the source the handler's resume map (what this
     * side holds, in the handler's own encoding): RESUME_MAP messages of
     * LEN bytes in all, then RESUME_END.  Returns false when there is no
     * return path (a file load, a QEMU source).  Load thread. */
    bool (*send_resume_map)(void *opaque, const uint8_t *map, size_t len);
    /* Tell the source that BYTES (a running total of disk bytes) were
     * compared with its digests and found equal: one VERIFIED message,
     * under the same conditions; while they come the source waits for
     * the acknowledgement however long the comparison takes. */
    void (*report_verified)(void *opaque, uint64_t bytes);
    /* Tell the source how long a flush of every drive just took (US
     * microseconds), before the report_durable it led to: one FLUSHED
     * message, under the same conditions. */
    void (*report_flushed)(void *opaque, uint64_t us);
    void *opaque;
} SaveVMLoadContext;

/* Save-side callbacks return 0 or -errno (with the stream's error latched
 * or *errp set); load returns 0 or -1 with *errp set. */
typedef struct SaveVMHandlers {
    /* Contents of the START section (may write nothing). */
    int (*save_setup)(MigStream *f, void *opaque, GError **errp);
    /* Contents of one PART section, at most MAX_BYTES of payload where
     * possible.  Returns 1 when the bulk phase is complete, 0 otherwise,
     * negative on error. */
    int (*save_iterate)(MigStream *f, void *opaque, uint64_t max_bytes, GError **errp);
    /* Bytes still to send if we stopped the guest now. */
    uint64_t (*save_pending)(void *opaque);
    /* Optional: bytes walked so far (for "block": disk bytes of the chunks
     * sent, holes and zeroes too, but not the ranges block-incremental
     * leaves to the destination's backing image), the unit save_pending
     * counts in.  The
     * core sums it over the handlers to measure the migration's bandwidth
     * and compares it with what the destination reports durable.
     * Migration thread. */
    uint64_t (*save_progress)(void *opaque);
    /* Optional: the handler's part of query-migrate for the running or
     * last outgoing migration it took part in.  INFO has the status and
     * times filled in; "block" fills INFO->disk and sets has_disk.  Any
     * thread. */
    void (*query)(void *opaque, MigrationInfo *info);
    /* Optional: the guest is about to stop for the switchover (the last
     * iteration is over): from now on no guest write may wait for the
     * migration thread, which is busy stopping the guest.  Migration
     * thread. */
    void (*save_stopping)(void *opaque);
    /* Contents of the END section; guest is stopped. */
    int (*save_complete)(MigStream *f, void *opaque, GError **errp);
    /* Destination: called once for every registered handler when a load
     * starts, before any section is read. */
    void (*load_setup)(void *opaque, const SaveVMLoadContext *ctx);
    /* Consume one section's contents (START/PART/END/FULL). */
    int (*load_state)(MigStream *f, void *opaque, int version_id, GError **errp);
    /* Destination: called once after EOF was read, before the ack. */
    int (*load_finish)(void *opaque, GError **errp);
    /* Destination: called once at the end of every load for every
     * registered handler, whether its section came or not: after every
     * load_finish succeeded (OK true: return -1 with *errp set to refuse
     * the stream all the same), or after the load failed (OK false;
     * ERRP is NULL and the result is ignored).  Runs before the guest
     * may start. */
    int (*load_end)(void *opaque, bool ok, GError **errp);
    /* Called once on either side when the migration ends (any outcome). */
    void (*cleanup)(void *opaque);
    /* Optional: whether to include the handler in this migration. */
    bool (*is_active)(void *opaque);
    /* block-resume (optional; a migration whose handlers lack them never
     * pauses).  Source: the connection was lost before the switchover;
     * stop sending but keep what a resume needs (the guest runs on, its
     * writes still tracked).  Migration thread. */
    void (*save_pause)(void *opaque);
    /* Source: contents of the START section on the new connection of a
     * resumed migration (instead of save_setup). */
    int (*save_resume_setup)(MigStream *f, void *opaque, GError **errp);
    /* Source: the destination's resume map (load context's
     * send_resume_map) arrived: plan to send what it lacks. */
    int (*save_resume_map)(void *opaque, const uint8_t *map, size_t len, GError **errp);
    /* Destination: the load that just failed on a lost connection can be
     * continued by a later one (its handler keeps what it received). */
    bool (*load_resumable)(void *opaque);
} SaveVMHandlers;

void savevm_register(const char *idstr, uint32_t instance, uint32_t version,
                     const SaveVMHandlers *ops, void *opaque);
void savevm_unregister_all(void);

/* Extra connections of an incoming socket migration.  The listener
 * reads the first four bytes of every connection: "QEVM" is the main one
 * (the savevm stream); a connection that starts with the MAGIC of a
 * channel handler runs that handler's run() on the connection's own
 * thread; anything else fails the migration.  Every member is required. */
typedef struct SaveVMChannelOps {
    /* A socket incoming migration starts.  The handler calls
     * ALL_ARRIVED(ARG) once (from any thread) when it expects no further
     * connection, so the listener stops accepting. */
    void (*begin)(void *opaque, void (*all_arrived)(void *arg), void *arg);
    /* One of its connections (the MAGIC not yet consumed); returns when
     * the channel ends. */
    void (*run)(void *opaque, MigStream *f);
    /* The incoming migration failed (migration_incoming_fail): wake
     * whatever waits.  Called without any lock of the core held. */
    void (*failed)(void *opaque);
    /* The load ended: stop every channel; return once none runs. */
    void (*abort)(void *opaque);
    /* The incoming migration is over (no run() is left). */
    void (*end)(void *opaque);
} SaveVMChannelOps;

/* WHAT names such connections in errors, e.g. "a multifd channel (BMFD)". */
void savevm_register_channel(uint32_t magic, const char *what, const SaveVMChannelOps *ops,
                             void *opaque);

/* Source side, in order.  Each returns 0 or -1 with *errp set. */
/* The handlers that take part in the next outgoing migration (is_active):
 * chosen when it starts, so query-migrate describes them from then on
 * (savevm_state_setup chooses again). */
void savevm_state_select(void);
int savevm_state_header(MigStream *f, GError **errp);
int savevm_state_setup(MigStream *f, GError **errp);
/* One PART section per active handler; returns 1 when all handlers finished
 * their bulk phase, 0 if not, -1 on error. */
int savevm_state_iterate(MigStream *f, uint64_t max_bytes, GError **errp);
uint64_t savevm_state_pending(void);
/* The sum of save_progress over the handlers of this migration. */
uint64_t savevm_state_progress(void);
/* Each query callback of the handlers chosen for the running or last
 * migration.  Any thread. */
void savevm_state_query(MigrationInfo *info);
/* Each save_stopping, before the guest stops for the switchover. */
void savevm_state_stopping(void);
/* END sections and EOF. */
int savevm_state_complete(MigStream *f, GError **errp);
/* Instead of the rest: CANCELLED, flushed (at a section boundary, to a
 * blkmig destination only).  Returns 0 or -1 when it could not be sent. */
int savevm_state_cancel(MigStream *f);
void savevm_state_cleanup(void);
/* block-resume, source side: whether every handler of the migration can
 * pause; each one's save_pause; on the new connection the START sections
 * (save_resume_setup), then the destination's map for each
 * (save_resume_map).  0 or -1 with *errp set. */
bool savevm_state_can_pause(void);
void savevm_state_pause(void);
int savevm_state_resume_setup(MigStream *f, GError **errp);
int savevm_state_resume_map(const uint8_t *map, size_t len, GError **errp);
/* Destination: a handler can continue the load that just failed. */
bool savevm_load_resumable(void);

/* Destination: read a whole stream, validating every header and footer;
 * CTX (NULL: report nothing) goes to every handler's load_setup.
 * Errors name what was wrong, e.g. "invalid stream magic 0x12345678",
 * "unknown section 'foo' instance 0", "section footer mismatch: expected
 * 0x7e for section 2, got 0x41", "unknown section type 0x55". */
int savevm_load(MigStream *f, const SaveVMLoadContext *ctx, GError **errp);

/* ---- services of the core for its handlers ---- */

/* The error domain of every migration GError. */
GQuark mig_error_quark(void);
#define MIG_ERROR mig_error_quark()
/* Error codes: anything (0), or a connection of the migration failed, so
 * the peer may have said why on the return path, or a cancel. */
#define MIG_ERROR_FAILED 0
#define MIG_ERROR_IO 1
/* The operator cancelled (the thread stopped at a section boundary). */
#define MIG_ERROR_CANCELLED 2
/* A limit ran out (progress-timeout, completion-timeout): the source gave
 * up at a section boundary. */
#define MIG_ERROR_TIMEOUT 3

/* Source: the URI of the running outgoing migration (caller frees; NULL
 * when none), for a handler's extra connections. */
char *migration_outgoing_uri(void);
/* Source: a new pass over the disks started (1 is the first): the
 * MIGRATION_PASS event.  Migration thread. */
void migration_notify_pass(uint64_t pass);
/* Source: one more connection to URI (tcp:, unix:) as a writer, with the
 * migration's link settings (link-timeout, keepalive); NULL with *errp
 * when it cannot connect. */
MigStream *migration_connect_extra(const char *uri, GError **errp);

/* Destination: fail a load with MSG "at stream offset OFFSET", or, when
 * F latched an error (truncation, I/O), with MSG as that error's
 * context.  Returns -1. */
int savevm_load_error(MigStream *f, uint64_t offset, GError **errp, const char *fmt, ...)
    G_GNUC_PRINTF(4, 5);
/* Destination: a vmstate section whose fields were read ends here (at
 * its footer); a subsection (0x05) fails naming it, e.g. "section
 * 'timer': subsection 'timer/icount' is not supported".  0, or -1 with
 * *errp set. */
int savevm_refuse_subsection(MigStream *f, const char *section, GError **errp);

/* Destination: the incoming migration's first failure.  Fail it with ERR
 * (taken) unless it failed already or its load has ended: the main
 * connection is shut down for reading so its thread stops at once (it
 * still sends the source the reason), and the channel handlers are told
 * (failed). */
void migration_incoming_fail(GError *err);
/* The first failure, copied to *errp (may be NULL); false when none. */
bool migration_incoming_failed(GError **errp);
/* Destination: when connection F itself failed (the source closed it
 * mid-stream, or the link stalled), that is the news, not where the parser
 * was: replace *ERR by it, prefixed with WHERE. */
void migration_explain_link_error(MigStream *f, const char *where, GError **err);

#endif
