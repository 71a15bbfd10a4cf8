/* Migration capabilities and parameters (QEMU names and units, plus
 * blkmig's own, documented in README). Thread-safe getters. */
#ifndef MIGRATION_OPTIONS_H
#define MIGRATION_OPTIONS_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum {
    MIG_CAP_BLOCK,          /* copy disk contents */
    MIG_CAP_ZERO_BLOCKS,    /* all-zero chunks as a flag */
    MIG_CAP_EVENTS,         /* MIGRATION events */
    MIG_CAP_RETURN_PATH,    /* destination acknowledges; blkmig default on */
    MIG_CAP_QEMU_COMPAT,    /* blkmig: only QEMU 7.2 records on the wire */
    MIG_CAP_MULTIFD,        /* block records on multifd-channels extra connections */
    MIG_CAP_COMPRESS,       /* COMPRESSED records (compress-algorithm/-level) */
    MIG_CAP_AUTO_CONVERGE,  /* throttle guest writes while dirtying outpaces the link */
    MIG_CAP_BLOCK_RESUME,   /* blkmig: a lost connection pauses; resume sends what is missing */
    MIG_CAP_BLOCK_CHECKSUM, /* blkmig: checksummed data records, hash lists compared
                             * at switchover (ignored with qemu-compat) */
    MIG_CAP__MAX
} MigrationCapability;

const char *mig_cap_name(MigrationCapability cap);
/* -1 when NAME is unknown. */
int mig_cap_from_name(const char *name);
bool mig_cap_enabled(MigrationCapability cap);
void mig_cap_set(MigrationCapability cap, bool on);

/* compress-algorithm values. */
typedef enum {
    MIG_COMPRESS_ZSTD,          /* default */
    MIG_COMPRESS_ZLIB,
    MIG_COMPRESS__MAX
} MigrationCompressAlgorithm;

const char *mig_compress_algorithm_name(MigrationCompressAlgorithm algo);
/* -1 when NAME is unknown. */
int mig_compress_algorithm_from_name(const char *name);

/* block-copy-mode values (blkmig's; QEMU's mirror copy-mode names). */
typedef enum {
    MIG_COPY_MODE_BACKGROUND,       /* default: dirty passes re-send guest writes */
    MIG_COPY_MODE_WRITE_BLOCKING,   /* a guest write to a copied range is sent
                                     * before it completes */
    MIG_COPY_MODE__MAX
} MigrationCopyMode;

/* timeout-action values (blkmig's). */
typedef enum {
    MIG_TIMEOUT_ACTION_CANCEL,          /* default: fail the migration */
    MIG_TIMEOUT_ACTION_WRITE_BLOCKING,  /* switch block-copy-mode and finish */
    MIG_TIMEOUT_ACTION__MAX
} MigrationTimeoutAction;

const char *mig_copy_mode_name(MigrationCopyMode mode);
const char *mig_timeout_action_name(MigrationTimeoutAction action);
/* -1 when NAME is unknown. */
int mig_copy_mode_from_name(const char *name);
int mig_timeout_action_from_name(const char *name);

typedef struct MigrationParameters {
    uint64_t max_bandwidth;     /* bytes/s; 0 = unlimited; default 128 MiB/s */
    uint64_t downtime_limit;    /* ms; default 300 */
    uint64_t dirty_granularity; /* blkmig: bytes, power of two 4 KiB..1 MiB; default 4 KiB */
    uint64_t multifd_channels;  /* QEMU: 1..16, default 2 */
    uint64_t compress_level;    /* QEMU: zlib level 0..9 (0 = fastest, as 1); default 1 */
    uint64_t compress_zstd_level;   /* blkmig: 1..19; default 1 */
    MigrationCompressAlgorithm compress_algorithm; /* blkmig; default zstd */
    uint64_t max_inflight;      /* blkmig: bytes of chunk buffers in flight; default 8 MiB */
    uint64_t link_timeout;      /* blkmig: seconds a stalled link is tolerated; default 20 */
    bool block_incremental;     /* QEMU: only the top layer of each drive; default false */
    MigrationCopyMode block_copy_mode;  /* blkmig; default background */
    uint64_t progress_timeout;  /* blkmig: s without a new least remaining; 0 = none */
    uint64_t completion_timeout;    /* blkmig: s from start to completion; 0 = none */
    uint64_t resume_timeout;    /* blkmig: s a paused source waits for a resume; default 600 */
    MigrationTimeoutAction timeout_action;  /* blkmig; default cancel */
    /* auto-converge (QEMU's names): percent of the guest's write
     * throughput withheld, first and per step, and at most; the percent
     * of the bytes sent in a period that the guest may dirty before it
     * is throttled. */
    uint64_t cpu_throttle_initial;      /* 1..99, default 20 */
    uint64_t cpu_throttle_increment;    /* 1..99, default 10 */
    uint64_t max_cpu_throttle;          /* 1..99, default 99 */
    uint64_t throttle_trigger_threshold;    /* 1..100, default 50 */
} MigrationParameters;

#define MIG_DEFAULT_MAX_BANDWIDTH (128ULL << 20)
#define MIG_DEFAULT_DOWNTIME_LIMIT 300
#define MIG_MAX_DOWNTIME_LIMIT 2000000
/* The guest's usual write size: a 4 KiB write re-sends 4 KiB, not a
 * larger block around it (64 KiB blocks made a guest writing 20 MiB/s of
 * 4 KiB blocks cost 320 MiB/s of re-sends).  The bitmap costs 32 MiB per
 * TiB of drive, and at most 32 MiB per drive (migration/block/save.c). */
#define MIG_DEFAULT_DIRTY_GRANULARITY 4096
#define MIG_DEFAULT_MULTIFD_CHANNELS 2
#define MIG_MAX_MULTIFD_CHANNELS 16
#define MIG_DEFAULT_COMPRESS_LEVEL 1
#define MIG_MAX_COMPRESS_LEVEL 9
#define MIG_DEFAULT_COMPRESS_ZSTD_LEVEL 1
#define MIG_MAX_COMPRESS_ZSTD_LEVEL 19
/* Small enough that a chunk buffer is still in the CPU cache when it is
 * sent (4 GiB, 10% data, on tmpfs: 8 MiB was 12% faster than 32 MiB), and
 * still 8 chunks, so every reader thread has a read in flight. */
#define MIG_DEFAULT_MAX_INFLIGHT (8ULL << 20)
#define MIG_MIN_MAX_INFLIGHT (4ULL << 20)
#define MIG_MAX_MAX_INFLIGHT (1ULL << 30)
/* Each side fails its migration once no byte moved on a connection for
 * this long (and TCP gives up on unacknowledged data as soon): well under
 * the minutes TCP's own defaults take, well over any pause of a healthy
 * link. */
#define MIG_DEFAULT_LINK_TIMEOUT 20
#define MIG_MAX_LINK_TIMEOUT 3600
/* progress-timeout and completion-timeout: a week at most. */
#define MIG_MAX_TIMEOUT (7 * 24 * 3600)
/* block-resume: how long a paused source waits to be resumed before it
 * fails (the guest keeps running either way). */
#define MIG_DEFAULT_RESUME_TIMEOUT 600
#define MIG_DEFAULT_CPU_THROTTLE_INITIAL 20
#define MIG_DEFAULT_CPU_THROTTLE_INCREMENT 10
#define MIG_DEFAULT_MAX_CPU_THROTTLE 99
#define MIG_DEFAULT_THROTTLE_TRIGGER_THRESHOLD 50

void mig_params_get(MigrationParameters *out);

/* The TLS parameters (QEMU's names and meaning; "" = unset, the
 * default): tls-creds, the id of a tls-creds-x509/-psk object (set: every
 * connection of a socket migration goes through TLS; the source's object
 * must be endpoint=client, the destination's endpoint=server);
 * tls-hostname, the name the destination's certificate must carry (""
 * on the source: the host of the tcp: URI); tls-authz, on the
 * destination, the id of an authz object the source's certificate name
 * must pass. */
typedef struct MigrationTlsParameters {
    char *creds;
    char *hostname;
    char *authz;
} MigrationTlsParameters;
/* A copy (never NULL members); free with mig_tls_params_clear. */
void mig_tls_params_get(MigrationTlsParameters *out);
void mig_tls_params_clear(MigrationTlsParameters *p);
/* Validate-then-apply; on error nothing changes.  Only fields whose has_*
 * bit is set are applied. */
typedef struct MigrationParametersUpdate {
    bool has_max_bandwidth, has_downtime_limit, has_dirty_granularity;
    bool has_multifd_channels, has_compress_level, has_compress_zstd_level;
    bool has_compress_algorithm, has_max_inflight, has_link_timeout;
    bool has_block_incremental;
    bool has_block_copy_mode, has_progress_timeout, has_completion_timeout;
    bool has_timeout_action, has_cpu_throttle_initial, has_cpu_throttle_increment;
    bool has_max_cpu_throttle, has_throttle_trigger_threshold;
    bool has_resume_timeout;
    MigrationParameters p;
    const char *tls_creds;      /* NULL: unchanged; "" unsets */
    const char *tls_hostname;
    const char *tls_authz;
} MigrationParametersUpdate;
bool mig_params_apply(const MigrationParametersUpdate *u, GError **errp);

#endif
