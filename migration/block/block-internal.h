/* Private interfaces between the files of the block handler
 * (migration/block/): the "block" savevm section, its multifd channels
 * and the storage check.  It reaches the migration core only through
 * include/migration/savevm.h. */
#ifndef MIGRATION_BLOCK_INTERNAL_H
#define MIGRATION_BLOCK_INTERNAL_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include "block/block.h"
#include "block/dirty-bitmap.h"
#include "migration/block-migration.h"
#include "migration/savevm.h"
#include "migration/stream.h"
#include "util/checksum.h"
#include "util/compress.h"
#include "util/size.h"

/* The handler's units, in one place. */
/* A chunk: what the bulk phase walks at a time, what a multifd channel
 * is chosen by, the most one record covers. */
#define BLK_CHUNK BLK_MIG_CHUNK_SIZE
/* Record offsets and span lengths are whole sectors. */
#define BLK_SECTOR BLK_MIG_SECTOR_SIZE
/* The file system block: the grain of zero detection inside data on
 * both sides, the smallest hole a destination can keep. */
#define BLK_GRAIN 4096

/* flush.c: flush one drive / every drive; false with *errp set ("WHAT:
 * flushing drive 'ID' failed: ...") at the first failure. */
bool blk_flush_drive(BlockDriverState *bs, const char *what, GError **errp);
bool blk_flush_all_drives(const char *what, GError **errp);

/* save.c: disk bytes walked so far (bulk chunks and dirty chunks, zero
 * or not; not what block-incremental leaves out), the unit in which
 * pending is counted. */
uint64_t block_migration_processed_bytes(void);

/* load.c: the load side of the "block" handler. */
void block_load_setup(const SaveVMLoadContext *ctx);
int block_load_state(MigStream *f, void *opaque, int version_id, GError **errp);
int block_load_finish(void *opaque, GError **errp);
/* Wait until every record loaded so far (main connection and channels)
 * is written; false with *errp set when a write or a channel failed. */
bool block_load_wait_written(GError **errp);
/* Ends a load that failed (called from the handler's cleanup). */
void block_load_cleanup(void);

/* load-flusher.c: flushes the drives in the background while a load
 * writes them. */
typedef struct LoadFlusher LoadFlusher;
/* After each flush, once told to (report_progress), it reports what is
 * durable through CTX. */
LoadFlusher *load_flusher_start(const SaveVMLoadContext *ctx);
void load_flusher_written(LoadFlusher *fl, uint64_t bytes);
/* From now on tell the source after each flush what is durable. */
void load_flusher_report_progress(LoadFlusher *fl);
/* Stops (NULL is fine); -1 with *errp set if a background flush failed. */
int load_flusher_stop(LoadFlusher *fl, GError **errp);

/* ---- destination: applying records, multifd channels, connections ---- */

/* load-budget.c: a byte budget for the payloads of records received and
 * not yet written, shared by every connection of a load. */
typedef struct BlkApplyBudget BlkApplyBudget;
BlkApplyBudget *blk_apply_budget_new(uint64_t bytes);
void blk_apply_budget_free(BlkApplyBudget *b);
/* A buffer of LEN bytes once the budget has room (one always fits);
 * NULL once the budget was aborted. */
uint8_t *blk_apply_budget_alloc(BlkApplyBudget *b, size_t len);
/* LEN is what was asked of alloc. */
void blk_apply_budget_release(BlkApplyBudget *b, uint8_t *buf, size_t len);
/* Bytes of the budget a buffer of LEN bytes takes. */
size_t blk_apply_budget_cost(size_t len);
/* The accounting alone: wait for COST bytes of room (false once
 * aborted); give them back. */
bool blk_apply_budget_take(BlkApplyBudget *b, size_t cost);
void blk_apply_budget_give(BlkApplyBudget *b, size_t cost);
/* Wake every waiting alloc, and fail all later ones. */
void blk_apply_budget_abort(BlkApplyBudget *b);

/* A validated record for the writer thread. */
typedef struct BlkApplyItem {
    BlockDriverState *bs;
    uint64_t offset;
    uint64_t len;               /* bytes to apply, inside the drive */
    uint8_t *data;              /* NULL: zeroes; else from the budget */
    size_t data_cap;            /* bytes allocated at data */
} BlkApplyItem;

/* apply.c: one connection's writer thread, so receiving and
 * writing overlap.  Zero ranges coalesce across records and skip what
 * reads as zeroes already. */
typedef struct BlkApplier BlkApplier;
BlkApplier *blk_applier_new(BlkApplyBudget *budget, LoadFlusher *flusher);
/* Queue ITEM (copied; its data is taken); false with *errp, ITEM's data
 * released, if an earlier write failed. */
bool blk_applier_push(BlkApplier *a, const BlkApplyItem *item, GError **errp);
/* Wait until everything queued is written; false with *errp if a write
 * failed. */
bool blk_applier_drain(BlkApplier *a, GError **errp);
/* Stop: what is still queued is dropped. */
void blk_applier_free(BlkApplier *a);

/* load.c: decoding records on a multifd channel (once the main
 * connection's setup part has loaded). */
typedef struct BlkLoader BlkLoader;
BlkLoader *block_load_channel_new(unsigned index);
void block_load_channel_free(BlkLoader *l);
/* One record from F: validated and queued for writing.  At the end marker
 * everything queued is written first and *END is set. */
bool block_load_channel_next(BlkLoader *l, MigStream *f, bool *end, GError **errp);

/* multifd-recv.c: what the destination knows about the extra connections
 * of the incoming migration.  All functions are no-ops (or fail, for
 * announcements) outside a socket incoming migration; failures go to the
 * core (migration_incoming_fail). */
/* Registers the channel handler for "BMFD" connections with the core. */
void multifd_recv_register(void);
/* A CHANNELS record. */
bool multifd_recv_expect(unsigned n, const uint8_t *id, GError **errp);
/* The main connection's setup part loaded: channels may apply records. */
bool multifd_recv_setup_done(GError **errp);
/* Wait until every announced channel ended (all applied). */
bool multifd_recv_wait_all(GError **errp);
/* Stop every channel; returns once none applies records any more. */
void multifd_recv_abort(void);

/* ---- block-resume ---- */

/* resume-journal.c: the journal beside a drive file (NULL path: the drive
 * is no local file). */
char *blk_resume_journal_path(BlockDriverState *bs);
bool blk_resume_journal_write(const char *path, const uint8_t *id, uint64_t size,
                              const uint32_t *counts, uint64_t n, GError **errp);
/* The N counts, or NULL with *errp when the journal is missing or was not
 * written for migration ID and a drive of SIZE bytes ("resume journal
 * PATH refused: ..."). */
uint32_t *blk_resume_journal_read(const char *path, const uint8_t *id, uint64_t size,
                                  uint64_t *n, GError **errp);
void blk_resume_journal_remove(const char *path);

/* resume-load.c: the destination's counts of records applied per chunk. */
/* A RESUME option (block-migration.h): a new migration, or a resumed one
 * (then the map goes to the source through CTX). */
bool blk_resume_load_option(const uint8_t *payload, uint32_t len,
                            const SaveVMLoadContext *ctx, GError **errp);
/* No resumable migration any more (completed, or a new one without
 * block-resume): the counts and every drive's journal go. */
void blk_resume_load_forget(void);
bool blk_resume_load_resumable(void);
/* A record for the chunk at OFFSET of BS was written. */
void blk_resume_load_applied(BlockDriverState *bs, uint64_t offset);
/* Before a flush: the counts it will make durable (NULL when no journal
 * is due, unless FORCE); after it succeeded, commit writes the journals
 * (and frees SNAP; NULL is fine). */
GPtrArray *blk_resume_load_snapshot(bool force);
void blk_resume_load_commit(GPtrArray *snap);

/* ---- source: chunks, records, the read pipeline, multifd ---- */

/* One block record (include/migration/block-migration.h): what the
 * source builds from a chunk (records.c puts it on the wire) and what
 * the destination decodes (load.c). */
typedef struct BlkRecord {
    uint64_t offset;            /* byte offset in the drive (percent with PROGRESS) */
    uint32_t len;               /* source: bytes it covers (span length with SPAN) */
    unsigned flags;             /* BLK_MIG_FLAG_*; the source sends DEVICE_BLOCK
                                 * [| SPAN | ZERO_BLOCK | COMPRESSED] */
    uint8_t algo;               /* source: BLK_MIG_COMPRESS_* with COMPRESSED */
    const uint8_t *data;        /* source: payload unless ZERO_BLOCK */
    uint32_t data_len;          /* source: payload bytes (compressed length with COMPRESSED) */
    bool has_sum;               /* carries a checksum (the CHECKSUM option) */
    ChecksumDigest sum;         /* of the uncompressed payload, seeded with offset */
    /* Destination only. */
    uint64_t stream_offset;     /* where the record starts */
    const char *id;             /* its drive id, as read (NUL-terminated) */
    BlockDriverState *bs;       /* our drive of that id */
} BlkRecord;

/* Bytes R takes on the wire for drive ID. */
uint64_t blk_record_wire_size(const char *id, const BlkRecord *r);
/* Put R for drive ID on F (errors latch in F). */
void blk_record_put(MigStream *f, const char *id, const BlkRecord *r);
/* The checksum of a data record at OFFSET over its LEN uncompressed
 * bytes DATA: what the source sends and the destination recomputes. */
void blk_record_checksum(uint64_t offset, const void *data, size_t len, ChecksumDigest *out);

/* chunk.c: a unit of work of the read pipeline: the parts of one
 * 1 MiB chunk to send, then what to send for them. */
typedef struct BlkRange {
    uint64_t off;
    uint64_t len;
} BlkRange;

/* storage-sample.c: the ranges of a drive the storage check compares
 * (include/migration/storage-check.h), sorted by offset, and their
 * digest seeded with SALT (-1 with *errp when a read fails). */
GArray *storage_sample_choose(BlockDriverState *bs);
int storage_sample_digest(BlockDriverState *bs, const GArray *ranges, uint64_t salt,
                          ChecksumDigest *out, GError **errp);

/* storage-check.c: drive ID of ours got disk contents from the stream
 * being loaded (block records); LISTED when the source named it in a list
 * of all its drives (DEVICE_SIZE), so a drive it never named is not on the
 * source.  Load thread only; the record ends with the load. */
void storage_check_note_loaded(const char *id, bool listed);
/* storage-check.c: the drive entries of blkmig's own sections (the
 * storage check, disk verification): u8 len + drive id, be64 size.  WHAT
 * starts error messages.  Reading checks the id (no NUL, UTF-8); -1 with
 * *errp set on a bad id or a stream error. */
bool blk_section_put_drive(MigStream *f, BlockDriverState *bs, const char *what,
                           GError **errp);
int blk_section_read_drive(MigStream *f, const char *what, char id[256], uint64_t *size,
                           GError **errp);
/* A section's load error: "WHAT: message", with F's stream error after
 * it when F failed.  Returns -1. */
int blk_section_failv(MigStream *f, GError **errp, const char *what, const char *fmt,
                      va_list ap) G_GNUC_PRINTF(4, 0);
/* A section's body on the source, guest stopped: a fresh random be64
 * salt, be32 drive count, then PUT's entry for every drive.  0, or -1
 * with *errp set. */
typedef bool (*BlkSectionPutEntry)(MigStream *f, BlockDriverState *bs, uint64_t salt,
                                   GError **errp);
int blk_section_put_drives(MigStream *f, BlkSectionPutEntry put, GError **errp);

typedef struct BlkExtent {
    uint64_t off;
    uint64_t len;
    bool is_data;
} BlkExtent;

typedef struct BlkChunkOptions {
    bool whole_chunks;          /* qemu-compat: 1 MiB records only */
    bool zero_blocks;           /* zeroes may travel as ZERO_BLOCK */
    bool incremental;           /* block-incremental: the top layer only */
    bool compress;
    bool checksum;              /* block-checksum: data records carry digests */
    CompressAlgo compress_algo;
    int compress_level;
} BlkChunkOptions;

typedef struct BlkChunkJob {
    /* Set by the submitter. */
    BlockDriverState *bs;
    const char *id;             /* the drive's; outlives the job */
    uint64_t chunk;             /* chunk start */
    uint64_t drive_size;
    bool resend;                /* a dirty pass's job (not the bulk phase's) */
    GArray *ranges;             /* BlkRange: what to send, inside the drive */
    GArray *extents;            /* BlkExtent: what of the ranges is sent, and how */
    uint64_t walked;            /* disk bytes the job accounts for */
    uint64_t left_out;          /* ...of which the plan sends nothing
                                 * (block-incremental): the destination
                                 * never counts them as written */
    bool needs_worker;          /* something to read or compress */
    uint8_t *buf;               /* chunk-sized, from the pipeline's pool (a
                                 * mirrored write's: as long as its ranges) */
    uint64_t buf_off;           /* the drive offset buf[0] holds: the chunk's
                                 * start unless a mirrored write says otherwise */
    uint8_t *cbuf;              /* compressed payloads, when compressing */
    /* Longest data record, 0 for a chunk: write-blocking keeps records
     * short, so that a mirrored guest write waits little behind one. */
    uint32_t max_record;
    /* order.c: its place among the units of its chunk (taken when its
     * dirty bits were cleared); mirror.c: a mirrored guest write's unit
     * (not a pipeline job) and the write waiting for it (or NULL). */
    uint64_t seq;
    bool mirrored;
    struct BlkMirrorWrite *waiter;
    /* Results. */
    GArray *records;            /* BlkRecord, pointing into buf / cbuf */
    uint64_t wire_bytes;
    bool has_data;              /* counts as a data block (else a zero block) */
    char *error;                /* a read failed: what happened */
    bool done;                  /* read: guarded by the pipeline's lock (a
                                 * mirrored write's unit: the order lock) */
} BlkChunkJob;

BlkChunkJob *blk_chunk_job_new(BlockDriverState *bs, const char *id, uint64_t chunk,
                               uint64_t drive_size);
void blk_chunk_job_free(BlkChunkJob *job);
/* Submitter: add a range (clipped to the drive by the caller). */
void blk_chunk_add_range(BlkChunkJob *job, uint64_t off, uint64_t len);
/* Submitter, after the ranges' dirty bits were cleared: block status of
 * the ranges; sets needs_worker.  What it leaves out (block-incremental)
 * gets no record: a job may end with none. */
void blk_chunk_plan(BlkChunkJob *job, const BlkChunkOptions *o);
/* Read what the plan says is data and build the records; C (NULL unless
 * compressing) is the caller's thread's compressor. */
void blk_chunk_prepare(BlkChunkJob *job, const BlkChunkOptions *o, Compressor *c);

/* pipeline.c: reader threads filling chunk jobs, oldest first out,
 * with the memory of the jobs in flight bounded. */
typedef struct BlkPipeline BlkPipeline;
BlkPipeline *blk_pipeline_new(const BlkChunkOptions *o, uint64_t max_inflight);
/* Wake the sender waiting in blk_pipeline_wait (a mirrored write is
 * ready).  Any thread. */
void blk_pipeline_kick(BlkPipeline *p);
/* Waits for the workers and frees every job still held. */
void blk_pipeline_free(BlkPipeline *p);
/* Whether one more job of any kind fits the memory budget now.  The
 * submitter (one thread) checks before it clears dirty bits for a job. */
bool blk_pipeline_has_room(BlkPipeline *p);
/* Takes JOB (planned; prepared already unless it needs a worker). */
void blk_pipeline_submit(BlkPipeline *p, BlkChunkJob *job);
/* The oldest job if it is ready, removed from the pipeline; else NULL. */
BlkChunkJob *blk_pipeline_pop_ready(BlkPipeline *p);
/* The same without removing it (the sender, the only one that pops). */
BlkChunkJob *blk_pipeline_peek_ready(BlkPipeline *p);
/* JOB, out of its turn, if it is ready (removed from the pipeline); else
 * false.  For a job a mirrored write waits for (the sender). */
bool blk_pipeline_take(BlkPipeline *p, BlkChunkJob *job);
bool blk_pipeline_is_empty(BlkPipeline *p);
/* Wait up to TIMEOUT_US for a job to become ready or memory to free,
 * unless that happened since the submitter last looked. */
void blk_pipeline_wait(BlkPipeline *p, gint64 timeout_us);
/* JOB was sent (or dropped): free it and return its memory.  Any thread. */
void blk_pipeline_release(BlkPipeline *p, BlkChunkJob *job);

/* ---- source: write-blocking, auto-converge, passes ---- */

/* A drive of the running outgoing migration (save.c owns them). */
typedef struct BlkMigDevice {
    BlockDriverState *bs;
    char *id;
    uint64_t size;
    DirtyBitmap *bitmap;
    /* Next chunk the bulk phase walks; the chunks below it were
     * submitted.  Changes under the order lock and the handler's lock. */
    uint64_t bulk_cursor;
} BlkMigDevice;

/* order.c: the order in which the units of one chunk (pipeline jobs and
 * mirrored guest writes) reach the destination: the order in which they
 * cleared its dirty bits.  See mirror.c for why that is enough. */
typedef struct BlkOrder BlkOrder;
BlkOrder *blk_order_new(void);
void blk_order_free(BlkOrder *o);
/* Held while a unit clears dirty bits and takes its place (and while
 * the bulk cursor moves). */
void blk_order_lock(BlkOrder *o);
void blk_order_unlock(BlkOrder *o);
/* Lock held: clear DEV's dirty bits of [OFF, OFF + LEN) (inside JOB's
 * chunk) and add their runs to JOB's ranges; WHOLE (qemu-compat): clear
 * the whole chunk and add it whole if any bit was set. */
void blk_order_take_dirty_locked(BlkMigDevice *dev, BlkChunkJob *job, uint64_t off,
                                 uint64_t len, bool whole);
/* Lock held: JOB becomes the last unit of its chunk. */
void blk_order_enter_locked(BlkOrder *o, BlkChunkJob *job);
/* Lock held: every unit of JOB's chunk before it has been handed on. */
bool blk_order_is_first_locked(BlkOrder *o, const BlkChunkJob *job);
/* The first unit of JOB's chunk (JOB itself when it is first). */
BlkChunkJob *blk_order_first_locked(BlkOrder *o, const BlkChunkJob *job);
/* Lock held: JOB was handed to its connection (or dropped). */
void blk_order_leave_locked(BlkOrder *o, BlkChunkJob *job);
/* The same, taking the lock. */
bool blk_order_is_first(BlkOrder *o, const BlkChunkJob *job);
void blk_order_leave(BlkOrder *o, BlkChunkJob *job);

/* mirror.c: write-blocking: a guest write to a range already copied is
 * re-read and queued as a unit of its chunk, and the write waits until
 * that unit is on the wire. */
typedef struct BlkMirror BlkMirror;
/* Units read with options O and at most BUDGET bytes of buffers; WAKE
 * is the pipeline whose sender waits for them. */
BlkMirror *blk_mirror_new(BlkOrder *order, const BlkChunkOptions *o, uint64_t budget,
                          BlkPipeline *wake);
/* Drops every unit still queued (no guest write may be inside any more). */
void blk_mirror_free(BlkMirror *m);
/* Migration thread: mirror new guest writes from now on (or not), with
 * data records of at most MAX_RECORD bytes. */
void blk_mirror_set_active(BlkMirror *m, bool active, uint32_t max_record);
bool blk_mirror_is_active(BlkMirror *m);
/* Guest write thread (write notifier). */
void blk_mirror_write(BlkMirror *m, BlkMigDevice *dev, uint64_t off, uint64_t len);
/* The guest stops for the switchover, or the migration ends: no write
 * waits any more and new ones are not mirrored; queued units stay. */
void blk_mirror_stop_waiting(BlkMirror *m);
/* Migration thread: the oldest unit that is read and first of its chunk,
 * removed from the order; NULL when none. */
BlkChunkJob *blk_mirror_take(BlkMirror *m);
/* A pipeline job that a mirrored write, read already, waits for (it is
 * first of the write's chunk), or NULL. */
BlkChunkJob *blk_mirror_blocker(BlkMirror *m);
/* JOB (taken) is on the wire and flushed (SENT), or was dropped: its
 * write may complete; JOB is freed.  Any thread. */
void blk_mirror_done(BlkMirror *m, BlkChunkJob *job, bool sent);
/* No unit queued (read or not). */
bool blk_mirror_is_empty(BlkMirror *m);
/* Disk bytes of the units not yet done. */
uint64_t blk_mirror_pending(BlkMirror *m);

/* resume-save.c: the source's counts of records sent per chunk (see
 * there).  start: a new migration with block-resume on DEVS (and a new
 * migration id); stop: none any more. */
void blk_resume_save_start(GPtrArray *devs);
void blk_resume_save_stop(void);
/* The migration id into ID; false when block-resume is off. */
bool blk_resume_save_id(uint8_t *id);
/* A unit of JOB's chunk cleared dirty bits (order lock held). */
void blk_resume_note_taken(const BlkChunkJob *job);
/* JOB's records were handed to the wire (SENT), or it was dropped. */
void blk_resume_note_sent(const BlkChunkJob *job, bool sent);
/* The destination's resume map: every chunk of DEVS below the bulk
 * cursor that it lacks is marked dirty.  0, or -1 with *errp. */
int blk_resume_apply_map(GPtrArray *devs, const uint8_t *map, size_t len, GError **errp);

/* converge.c: auto-converge. */
typedef struct BlkConverge BlkConverge;
BlkConverge *blk_converge_new(void);
void blk_converge_free(BlkConverge *c);
/* Migration thread, each iteration: the bytes the guest wrote and the
 * bytes sent so far.  Once a period of at least a second is over, a
 * guest that dirtied more than throttle-trigger-threshold percent of what
 * was sent (in two periods, as QEMU counts) is throttled, or more. */
void blk_converge_tick(BlkConverge *c, uint64_t written, uint64_t transferred);
/* Guest write thread: hold back a write of LEN bytes as the throttle says. */
void blk_converge_throttle(BlkConverge *c, uint64_t len);
/* No more throttling from now on (switchover, end); wakes the held. */
void blk_converge_lift(BlkConverge *c);
/* Percent of the guest's write throughput withheld now; 0: none. */
uint64_t blk_converge_percentage(BlkConverge *c);

/* guest-write.c: what every guest write meets during a migration, through
 * a write notifier on each drive: counted, mirrored, throttled. */
typedef struct BlkGuestWrites BlkGuestWrites;
BlkGuestWrites *blk_guest_writes_new(BlkMirror *mirror, BlkConverge *converge);
void blk_guest_writes_attach(BlkGuestWrites *g, BlkMigDevice *dev);
/* Bytes the guest wrote since the migration started.  Any thread. */
uint64_t blk_guest_writes_bytes(BlkGuestWrites *g);
/* Detach from every drive; returns once no write is inside any more
 * (the mirror and the throttle must not hold writes back by then). */
void blk_guest_writes_free(BlkGuestWrites *g);

/* passes.c: the passes over the disks (pass 1: the bulk copy) and the
 * guest's dirty rate over each. */
typedef struct BlkPasses {
    uint64_t pass;
    gint64 start_us;            /* of the migration */
    gint64 pass_start_us;
    uint64_t written_at_start;  /* guest bytes written when the pass began */
    uint64_t dirty_rate;        /* bytes/s over the last pass ended */
    bool rate_known;
} BlkPasses;
/* Pass 1 begins; WRITTEN: the guest's bytes written so far. */
void blk_passes_start(BlkPasses *p, uint64_t written);
/* A walk over the dirty bitmaps begins: true when it is the next pass,
 * not when the current one began less than a second ago (FORCE: the bulk
 * copy ended). */
bool blk_passes_walk(BlkPasses *p, uint64_t written, bool force);
/* bytes/s over the last pass, or so far when none ended yet. */
uint64_t blk_passes_dirty_rate(const BlkPasses *p, uint64_t written);

/* send.c: hands units that are ready to the wire, pipeline jobs and
 * mirrored writes together, in each chunk's order, mirrored writes first
 * but the background copy keeping a quarter of the link while it has
 * work. */
typedef struct BlkSender {
    BlkPipeline *pipeline;
    BlkMirror *mirror;
    BlkOrder *order;
    struct MultifdSend *multifd;    /* NULL: everything on the main stream */
    /* Called once a unit is on the wire (main stream: flushed too for
     * mirrored writes) or was dropped, with the wire bytes a channel sent. */
    void (*sent)(BlkChunkJob *job, bool sent, uint64_t wire_bytes, void *opaque);
    int64_t balance;            /* mirrored minus weighted background bytes, bounded */
    char *error;                /* a unit that failed to read: why */
} BlkSender;
/* Send ready units on F (or their channels) until *SENT (wire bytes
 * added) reaches MAX_BYTES; returns how many, or -1 with *errp when one
 * failed to read. */
int blk_send_ready(BlkSender *s, MigStream *f, uint64_t *sent, uint64_t max_bytes,
                   GError **errp);

/* multifd-send.c: the source's extra connections. */
typedef struct MultifdSend MultifdSend;
/* Called by a channel's thread once JOB's records are on its stream
 * (SENT, WIRE_BYTES) or were dropped after a failure (!SENT). */
typedef void (*MultifdSentFn)(BlkChunkJob *job, bool sent, uint64_t wire_bytes,
                              void *opaque);
/* Connect N channels to URI, each sending its handshake; channel streams
 * share MAIN's rate limit. */
MultifdSend *multifd_send_start(const char *uri, unsigned n, const uint8_t *id,
                                MigStream *main, MultifdSentFn sent, void *opaque,
                                GError **errp);
unsigned multifd_send_channels(MultifdSend *m);
/* Bytes the channels' sockets hold for the destination.  Any thread. */
uint64_t multifd_send_unsent_bytes(MultifdSend *m);
void multifd_send_queue(MultifdSend *m, unsigned channel, BlkChunkJob *job);
/* Wire bytes of the jobs queued on CHANNEL and not written yet. */
uint64_t multifd_send_queued_bytes(MultifdSend *m, unsigned channel);
/* The first channel failure, as an error; false when none. */
bool multifd_send_failed(MultifdSend *m, GError **errp);
/* End markers on every channel after what is queued; waits until they are
 * written (or a channel fails, or MAIN is shut down). */
bool multifd_send_finish(MultifdSend *m, MigStream *main, GError **errp);
/* Shut every channel down, drop what is queued, join, free. */
void multifd_send_free(MultifdSend *m);

#endif
