/* What the pieces of the stream fuzz test share (test-stream-fuzz.c and
 * its stream-fuzz-*.c helpers): the drives, the valid streams and their
 * maps, the scratch environment of the run, and loading a stream with a
 * verdict on what the load did. */
#ifndef TESTS_FUZZ_STREAM_FUZZ_H
#define TESTS_FUZZ_STREAM_FUZZ_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"
#include "migration/block-migration.h"
#include "migration/options.h"

#define MiB (1024 * 1024)
#define CHUNK BLK_MIG_CHUNK_SIZE

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

typedef struct DriveSpec {
    const char *id;
    uint64_t size;
} DriveSpec;

#define NDRIVES 2
extern const DriveSpec specs[NDRIVES];

typedef struct Span {
    size_t off;
    size_t len;
} Span;

/* A map of a valid stream, to aim mutations at its framing. */
typedef struct StreamMap {
    GArray *framing;        /* size_t: every byte that is not payload */
    GArray *len_bytes;      /* size_t: u8 length fields (idstr, drive id) */
    GArray *span_lens;      /* size_t: be32 SPAN lengths */
    GArray *comp_lens;      /* size_t: be32 COMPRESSED lengths */
    GArray *comp_payloads;  /* Span: compressed data */
    GArray *rec_headers;    /* size_t: be64 record headers */
    GArray *sections;       /* size_t: section type bytes */
    GArray *records;        /* Span: whole block records */
    GArray *cuts;           /* size_t: start of every field, for prefix cuts */
} StreamMap;

/* One way the source can be configured, and the valid stream it made. */
typedef struct Flavour {
    const char *name;
    bool zero_blocks;
    bool qemu_compat;
    bool compress;
    MigrationCompressAlgorithm algo;
    bool checksum;              /* block-checksum: digests, disk verification */
    bool fuzz;                  /* mutated (qemu-compat: whole 1 MiB chunks, slow) */
    GBytes *stream;
    StreamMap *map;
} Flavour;

#define NFLAVOURS 5
extern Flavour flavours[NFLAVOURS];

typedef struct FuzzEnv {
    char *tmpdir;
    char *src_path[NDRIVES];
    char *dst_path[NDRIVES];
    char *stream_path;
    uint8_t *pattern[NDRIVES];      /* each destination before a load */
    uint8_t *source[NDRIVES];       /* source contents after the save */
    BlockDriverState *dst[NDRIVES];
    GPtrArray *fuzzed;              /* Flavour *: those the mutation loop uses */
    bool keep_tmp;                  /* KEEP_TMP: leave the scratch files */
    bool no_watchdog;               /* loads set no alarm (libFuzzer has
                                     * its own -timeout on ITIMER_REAL) */
} FuzzEnv;

extern FuzzEnv env;

typedef struct LoadResult {
    int ret;
    GError *err;
    gint64 elapsed_us;
    char *violation;            /* what the load broke, or NULL */
} LoadResult;

/* stream-fuzz-env.c: the run's drives, valid streams and files. */
void setup_env(void);
void teardown_env(void);

/* stream-fuzz-load.c: loading a stream and judging what the load did. */
void install_death_reports(void);
void remove_scratch(void);
LoadResult load_bytes(const uint8_t *data, size_t len, const char *what);
void load_result_clear(LoadResult *r);
void assert_clean(const LoadResult *r, const char *what);
void assert_destinations_equal(uint8_t *const *expected, const char *what);
void check_valid_load(GBytes *stream, const char *what);

/* stream-fuzz-map.c */
StreamMap *map_stream(GBytes *stream);
void stream_map_free(StreamMap *m);

/* stream-fuzz-hostile.c and stream-fuzz-hostile-ext.c: hand-built hostile
 * streams.  Each builder makes the stream and the exact message it must
 * fail with (positions are only known while building). */
typedef void (*HostileBuilder)(GByteArray *b, GString *expected);

typedef struct HostileCase {
    const char *name;
    HostileBuilder build;
} HostileCase;

#define SECTION0_RECORDS 27     /* header 8 + START 19: where records begin */

extern const HostileCase hostile_cases[];
extern const guint n_hostile_cases;
extern const HostileCase hostile_ext_cases[];
extern const guint n_hostile_ext_cases;
/* stream-fuzz-hostile-qemu.c: streams as QEMU 7.2 writes them. */
extern const HostileCase hostile_qemu_cases[];
extern const guint n_hostile_qemu_cases;
void test_qemu_stream_valid(void);
void test_hostile(gconstpointer data);

void begin_section(GByteArray *b, uint32_t id, const char *idstr,
                   uint32_t instance, uint32_t version);
void rec_size(GByteArray *b, const char *id, uint64_t size);
void setup_section(GByteArray *b);
void garbage_id(char *id);
void build_garbage_drive_id(GByteArray *b, GString *expected);
uint8_t *zlib_of(const uint8_t *data, size_t len, size_t *out_len);
void compressed_span(GByteArray *b, uint8_t algo, const uint8_t *data, size_t len);

/* stream-fuzz-strict.c */
typedef struct StrictCase {
    const char *name;
    void (*build)(GByteArray *b);
    const char *todo;           /* why accepting it is wrong */
} StrictCase;

extern const StrictCase strict_cases[];
extern const guint n_strict_cases;
void test_strict(gconstpointer data);
void test_error_text_is_utf8(void);

/* stream-fuzz-mutate.c */
void test_mutations(void);

#endif
