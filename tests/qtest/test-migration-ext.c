/* blkmig's migration extensions between two real blkmigd daemons: SPAN
 * records at a 4 KiB dirty granularity, qemu-compat streams, multifd
 * channels (and hostile ones), compression.  Driven over QMP only and
 * checked on the real sparse disk files. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migration-framework.h"
#include "migration/block-migration.h"
#include "migration/savevm.h"
#include "util/bswap.h"
#include "../lib/stream-bytes.h"
#include "../lib/stream-decode.h"

#define CHUNK MIB

/* Text-like (compressible, never zero) data in every other MiB of the
 * first half of the disk at PATH. */
static void write_text(const char *path, uint64_t size)
{
    static const char words[] = "the guest keeps writing while its disk moves; ";
    g_autofree char *buf = g_malloc(CHUNK);
    int fd = open(path, O_WRONLY | O_CLOEXEC);

    g_assert_cmpint(fd, >=, 0);
    for (size_t i = 0; i < CHUNK; i++) {
        buf[i] = words[(i * 7 + i / 4096) % (sizeof(words) - 1)];
    }
    for (uint64_t off = 0; off < size / 2; off += 2 * CHUNK) {
        g_assert_cmpint(pwrite(fd, buf, CHUNK, off), ==, CHUNK);
    }
    close(fd);
}

/* ---- SPAN records for small guest writes ---- */

/* A guest writing 4 KiB blocks at 16 MiB/s; dirty-granularity 4096 and
 * the default max-bandwidth: each dirty block costs about its own size on
 * the wire, not a 1 MiB chunk. */
static void test_spans_small_writes(void)
{
    const double rate_mibs = 16;
    Migration m = { 0 };
    uint64_t size = 512 * MIB;
    mf_make_src_disk(&m, size, 21, 300, 512 * KIB);
    mf_start_pair(&m, size, "--workload drive=" MF_DRIVE_ID ",pattern=randwrite,bs=4k,rate=16,seed=5");
    qtest_set_caps(m.src, "block", "zero-blocks", NULL);
    qtest_set_params(m.src, "\"dirty-granularity\": 4096");
    g_autofree char *before = mf_snapshot_running_disk(&m);
    uint64_t initial = qtest_disk_nonzero_bytes(before);

    qtest_migrate_start(m.src, m.uri);
    JsonNode *info = mf_wait_completed(&m);
    mf_assert_identical(m.src_disk, m.dst_disk);
    mf_assert_thin(m.src_disk, m.dst_disk, 1);

    /* Each guest write is re-sent at most once per pass, as one 4 KiB
     * span; the rate bounds the writes. */
    double secs = qtest_json_int(info, "total-time") / 1000.0 + 0.5;
    uint64_t guest_bytes = rate_mibs * MIB * secs;
    uint64_t writes = guest_bytes / (4 * KIB);
    uint64_t bound = initial * 101 / 100 + (size / CHUNK) * 64 + guest_bytes * 11 / 10 + MIB;
    gint64 transferred = qtest_json_int(info, "disk.transferred");
    g_test_message("initial data %" G_GUINT64_FORMAT ", at most %" G_GUINT64_FORMAT
                   " guest writes; transferred %" G_GINT64_FORMAT ", bound %" G_GUINT64_FORMAT
                   "; a chunk per write would be %" G_GUINT64_FORMAT "; downtime %"
                   G_GINT64_FORMAT " ms", initial, writes, transferred, bound,
                   initial + writes * CHUNK, qtest_json_int(info, "downtime"));
    g_assert_cmpint(qtest_json_int(info, "disk.dirty-sync-count"), >=, 1);
    g_assert_cmpint(transferred, <=, bound);
    json_node_unref(info);
    unlink(before);
    mf_free(&m);
}

/* ---- qemu-compat: only QEMU 7.2's records ---- */

/* Every record of a qemu-compat stream is one QEMU 7.2 knows (DEVICE_BLOCK,
 * EOS, PROGRESS, ZERO_BLOCK) on a whole chunk: returns the data records. */
static unsigned check_qemu_records(const guint8 *buf, size_t len)
{
    SdStream map;
    unsigned data = 0;

    sd_decode_or_die(buf, len, &map);
    for (guint i = 0; i < map.records->len; i++) {
        const SdRecord *r = sd_record(&map, i);
        g_assert_cmphex(r->flags & ~0x0fu, ==, 0);
        if (r->flags & BLK_MIG_FLAG_DEVICE_BLOCK) {
            g_assert_cmpuint(r->offset % CHUNK, ==, 0);
        }
        data += sd_is_data_record(r);
    }
    sd_stream_clear(&map);
    return data;
}

static void test_qemu_compat_stream(void)
{
    Migration m = { 0 };
    uint64_t size = 64 * MIB + 3 * 512;
    mf_make_src_disk(&m, size, 22, 40, 16 * KIB);
    g_autofree char *stream = qtest_path("compat.stream");
    g_autofree char *file_uri = g_strconcat("file:", stream, NULL);
    g_autofree char *desc = NULL;
    m.src = mf_start_src(&m, "");
    qtest_set_caps(m.src, "block", "zero-blocks", "qemu-compat", "multifd", NULL);
    qtest_set_params(m.src, "\"dirty-granularity\": 4096, \"max-bandwidth\": 0");

    /* Extensions cannot be combined with qemu-compat. */
    g_free(qtest_qmp_error(m.src, &desc, "{\"execute\": \"migrate\", \"arguments\":"
                           " {\"uri\": \"%s\"}}", file_uri));
    g_test_message("multifd + qemu-compat: %s", desc);
    g_assert_nonnull(strstr(desc, "'multifd' cannot be combined with 'qemu-compat'"));
    json_node_unref(qtest_qmp_ok(m.src, "{\"execute\": \"migrate-set-capabilities\", "
                                 "\"arguments\": {\"capabilities\": [{\"capability\": "
                                 "\"multifd\", \"state\": false}]}}"));

    qtest_migrate_start(m.src, file_uri);
    JsonNode *info = qtest_migrate_wait(m.src, MF_MIGRATE_TIMEOUT_MS);
    g_assert_cmpstr(qtest_json_str(info, "status"), ==, "completed");
    json_node_unref(info);

    g_autofree char *bytes = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(stream, &bytes, &len, NULL));
    unsigned data = check_qemu_records((const guint8 *)bytes, len);
    g_test_message("qemu-compat stream: %zu bytes, %u data records", (size_t)len, data);
    g_assert_cmpuint(data, ==, qtest_disk_data_chunks(m.src_disk));

    /* And it loads. */
    mf_load_saved(&m, file_uri, size);
    mf_assert_identical(m.src_disk, m.dst_disk);
    unlink(stream);
    mf_free(&m);
}

/* ---- multifd ---- */

static void test_multifd_sparse(void)
{
    Migration m = { 0 };
    uint64_t size = 512 * MIB;
    mf_make_src_disk(&m, size, 23, 150, 128 * KIB);
    mf_start_pair(&m, size, "");
    qtest_set_caps(m.src, "block", "zero-blocks", "multifd", NULL);
    qtest_set_params(m.src, "\"multifd-channels\": 4, \"max-bandwidth\": 0");

    JsonNode *p = qtest_qmp_ok(m.src, "{\"execute\": \"query-migrate-parameters\"}");
    g_assert_cmpint(qtest_json_int(p, "multifd-channels"), ==, 4);
    json_node_unref(p);

    qtest_migrate_start(m.src, m.uri);
    JsonNode *info = mf_wait_completed(&m);
    mf_assert_identical(m.src_disk, m.dst_disk);
    mf_assert_thin(m.src_disk, m.dst_disk, 0);
    g_assert_cmpint(qtest_json_int(info, "disk.transferred"), >=,
                    qtest_disk_nonzero_bytes(m.src_disk));
    json_node_unref(info);
    mf_free(&m);
}

/* A guest writing during a multifd migration with compression: every
 * version of a block reaches the destination in order. */
static void test_multifd_workload(void)
{
    Migration m = { 0 };
    uint64_t size = 256 * MIB;
    mf_make_src_disk(&m, size, 24, 64, 256 * KIB);
    mf_start_pair(&m, size, "--workload drive=" MF_DRIVE_ID ",pattern=randwrite,bs=4k,rate=30,"
                            "zero-frac=0.2,seed=9");
    qtest_set_caps(m.src, "block", "zero-blocks", "multifd", "compress", NULL);
    qtest_set_params(m.src, "\"multifd-channels\": 3, \"dirty-granularity\": 4096, "
               "\"max-bandwidth\": 67108864, \"downtime-limit\": 1000");
    g_autofree char *before = mf_snapshot_running_disk(&m);

    qtest_migrate_start(m.src, m.uri);
    JsonNode *info = mf_wait_completed(&m);
    mf_assert_identical(m.src_disk, m.dst_disk);
    g_assert_false(qtest_files_equal(before, m.src_disk, NULL));
    g_assert_cmpint(qtest_json_int(info, "disk.dirty-sync-count"), >=, 1);
    json_node_unref(info);
    unlink(before);
    mf_free(&m);
}

static void test_multifd_file_refused(void)
{
    Migration m = { 0 };
    mf_make_src_disk(&m, 16 * MIB, 25, 4, 64 * KIB);
    g_autofree char *stream = qtest_path("multifd.stream");
    g_autofree char *desc = NULL;
    m.src = mf_start_src(&m, "");
    qtest_set_caps(m.src, "block", "multifd", NULL);
    g_free(qtest_qmp_error(m.src, &desc, "{\"execute\": \"migrate\", \"arguments\":"
                           " {\"uri\": \"file:%s\"}}", stream));
    g_test_message("multifd to a file: %s", desc);
    g_assert_nonnull(strstr(desc, "'multifd' is not supported with a file: URI"));
    g_assert_false(g_file_test(stream, G_FILE_TEST_EXISTS));
    mf_free(&m);
}

/* ---- hostile connections to a destination ---- */

typedef struct Hostile {
    const char *name;
    guint8 bytes[48];
    size_t len;
    const char *expect;         /* in the destination's error-desc */
} Hostile;

/* A multifd handshake with the given fields and a zero migration id. */
static Hostile handshake(const char *name, uint32_t magic, uint32_t version, uint32_t index,
                         uint32_t count, const char *expect)
{
    Hostile h = { .name = name, .len = 32, .expect = expect };

    st_be32(h.bytes, magic);
    st_be32(h.bytes + 4, version);
    st_be32(h.bytes + 8, index);
    st_be32(h.bytes + 12, count);
    return h;
}

static void check_hostile(const Hostile *h)
{
    Migration m = { .uri = qtest_tcp_uri() };
    m.dst_disk = qtest_path("dst.raw");
    m.src_disk = g_strdup("");
    m.dst = mf_start_dst(&m, "dst", 16 * MIB);

    int fd = qtest_connect(m.uri);
    g_assert_cmpint(write(fd, h->bytes, h->len), ==, (ssize_t)h->len);
    shutdown(fd, SHUT_WR);
    JsonNode *info = qtest_migrate_wait(m.dst, MF_STATE_TIMEOUT_MS);
    const char *desc = qtest_json_str(info, "error-desc");
    g_test_message("%s: %s", h->name, desc);
    g_assert_cmpstr(qtest_json_str(info, "status"), ==, "failed");
    if (!strstr(desc, h->expect)) {
        g_error("%s: error-desc '%s' does not contain '%s'", h->name, desc, h->expect);
    }
    json_node_unref(info);
    g_autofree char *state = qtest_runstate(m.dst);
    g_assert_cmpstr(state, ==, "inmigrate");
    close(fd);
    mf_free(&m);
}

static void test_hostile_connections(void)
{
    Hostile cases[] = {
        handshake("bad version", 0x424d4644, 7, 0, 2,
                  "multifd channel: unsupported handshake version 7 (expected 1)"),
        handshake("index beyond count", 0x424d4644, 1, 4, 4,
                  "multifd channel: handshake names channel 4 of 4"),
        handshake("too many channels", 0x424d4644, 1, 0, 17,
                  "handshake names channel 0 of 17, not one of 1 to 16 channels"),
        handshake("unknown magic", 0x47455420, 1, 0, 1,
                  "a connection started with 0x47455420, neither a migration stream"),
    };
    Hostile truncated = handshake("truncated handshake", 0x424d4644, 1, 0, 2,
                                  "multifd channel: reading the handshake failed: "
                                  "unexpected end of stream");
    truncated.len = 10;

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        check_hostile(&cases[i]);
    }
    check_hostile(&truncated);
}

/* A main connection's start as a source would send it: the setup part of
 * the block section, announcing N channels with migration id ID (no
 * announcement when N is 0). */
static GByteArray *main_setup(unsigned n, guint8 id_byte)
{
    GByteArray *b = sb_block_stream_begin();

    if (n) {
        sb_put_channels(b, n, id_byte);
    }
    sb_put_block_section_end(b);
    return b;
}

typedef struct Conversation {
    const char *name;
    unsigned announced;             /* CHANNELS count; 0: none */
    Hostile channels[2];            /* sent after the main connection */
    size_t nchannels;
    const char *expect;
    bool channels_first;            /* connect them before the main one */
} Conversation;

static Hostile channel(uint32_t index, uint32_t count, guint8 id_byte)
{
    Hostile h = handshake("", 0x424d4644, 1, index, count, "");
    memset(h.bytes + 16, id_byte, 16);
    return h;
}

/* A main connection, then the channels, against a fresh destination. */
static void check_conversation(const Conversation *c)
{
    Migration m = { .uri = qtest_tcp_uri() };
    g_autoptr(GByteArray) setup = main_setup(c->announced, 0xaa);
    int fds[3];

    m.dst_disk = qtest_path("dst.raw");
    m.src_disk = g_strdup("");
    m.dst = mf_start_dst(&m, "dst", 16 * MIB);
    for (size_t i = 0; i < c->nchannels && c->channels_first; i++) {
        fds[i + 1] = qtest_connect(m.uri);
        g_assert_cmpint(write(fds[i + 1], c->channels[i].bytes, c->channels[i].len), ==,
                        (ssize_t)c->channels[i].len);
    }
    if (c->channels_first) {
        g_usleep(200 * 1000);
    }
    fds[0] = qtest_connect(m.uri);
    g_assert_cmpint(write(fds[0], setup->data, setup->len), ==, (ssize_t)setup->len);
    /* Otherwise the destination takes the main connection first. */
    for (size_t i = 0; i < c->nchannels && !c->channels_first; i++) {
        if (i == 0) {
            json_node_unref(qtest_migrate_wait_status(m.dst, "active", MF_STATE_TIMEOUT_MS));
        }
        fds[i + 1] = qtest_connect(m.uri);
        g_assert_cmpint(write(fds[i + 1], c->channels[i].bytes, c->channels[i].len), ==,
                        (ssize_t)c->channels[i].len);
    }
    JsonNode *info = qtest_migrate_wait(m.dst, MF_STATE_TIMEOUT_MS);
    const char *desc = qtest_json_str(info, "error-desc");
    g_test_message("%s: %s", c->name, desc);
    g_assert_cmpstr(qtest_json_str(info, "status"), ==, "failed");
    if (!strstr(desc, c->expect)) {
        g_error("%s: error-desc '%s' does not contain '%s'", c->name, desc, c->expect);
    }
    json_node_unref(info);
    for (size_t i = 0; i <= c->nchannels; i++) {
        close(fds[i]);
    }
    mf_free(&m);
}

static void test_hostile_channels(void)
{
    Conversation cases[] = {
        { "id mismatch", 1, { channel(0, 1, 0xbb) }, 1,
          "multifd channel 0 (of 1): its migration id differs from the announced one", false },
        { "count mismatch", 2, { channel(0, 3, 0xaa) }, 1,
          "multifd channel 0 (of 3): its channel count differs from the announced one", false },
        { "duplicate index", 2, { channel(1, 2, 0xaa), channel(1, 2, 0xaa) }, 2,
          "multifd channel 1 connected twice", false },
        /* Once the setup part announced none, no connection is taken. */
        { "not announced", 0, { channel(0, 1, 0xaa) }, 1,
          "a multifd channel connected, but the migration stream announced no multifd "
          "channels", true },
        { "second main", 2, { { .bytes = "QEVM", .len = 4 } }, 1,
          "a second migration stream (QEVM) connection arrived", false },
    };
    /* A channel sending something other than block data. */
    Conversation bad_record = { "setup record on a channel", 1, { channel(0, 1, 0xaa) }, 1,
                                "multifd channel 0: record with flags 0x10 at stream offset "
                                "32 is neither block data nor the end marker", false };
    Hostile *h = &bad_record.channels[0];
    st_be32(h->bytes + 32, 0);
    st_be32(h->bytes + 36, 0x10);  /* DEVICE_SIZE */
    h->len = 40;

    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        check_conversation(&cases[i]);
    }
    check_conversation(&bad_record);
}

/* ---- compression ---- */

static void test_compress(gconstpointer data)
{
    const char *algo = data;
    Migration m = { 0 };
    uint64_t size = 256 * MIB;
    mf_make_src_disk(&m, size, 26, 20, 256 * KIB);
    write_text(m.src_disk, size);
    uint64_t nonzero = qtest_disk_nonzero_bytes(m.src_disk);
    mf_start_pair(&m, size, "");
    qtest_set_caps(m.src, "block", "zero-blocks", "compress", NULL);
    qtest_set_params(m.src, "\"compress-algorithm\": \"%s\", \"max-bandwidth\": 0", algo);

    qtest_migrate_start(m.src, m.uri);
    JsonNode *info = mf_wait_completed(&m);
    mf_assert_identical(m.src_disk, m.dst_disk);
    mf_assert_thin(m.src_disk, m.dst_disk, 0);
    gint64 transferred = qtest_json_int(info, "disk.transferred");
    g_test_message("%s: %" G_GUINT64_FORMAT " non-zero bytes, %" G_GINT64_FORMAT
                   " transferred", algo, nonzero, transferred);
    /* Text compresses several times; the random runs do not. */
    g_assert_cmpint(transferred, <, nonzero / 2);
    json_node_unref(info);
    mf_free(&m);
}

static void test_parameters(void)
{
    Migration m = { 0 };
    mf_make_src_disk(&m, 16 * MIB, 27, 1, 4 * KIB);
    m.src = mf_start_src(&m, "");
    JsonNode *p = qtest_qmp_ok(m.src, "{\"execute\": \"query-migrate-parameters\"}");
    g_assert_cmpint(qtest_json_int(p, "multifd-channels"), ==, 2);
    g_assert_cmpint(qtest_json_int(p, "compress-level"), ==, 1);
    g_assert_cmpint(qtest_json_int(p, "compress-zstd-level"), ==, 1);
    g_assert_cmpstr(qtest_json_str(p, "compress-algorithm"), ==, "zstd");
    g_assert_cmpint(qtest_json_int(p, "max-inflight"), ==, 8 * MIB);
    json_node_unref(p);

    qtest_set_params(m.src, "\"multifd-channels\": 16, \"compress-level\": 9, "
               "\"compress-algorithm\": \"zlib\", \"max-inflight\": 8388608");
    static const char *const bad[] = {
        "\"multifd-channels\": 0", "\"multifd-channels\": 17", "\"compress-level\": 10",
        "\"compress-zstd-level\": 20", "\"compress-algorithm\": \"lz4\"",
        "\"max-inflight\": 1024",
    };
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autofree char *desc = NULL;
        g_free(qtest_qmp_error(m.src, &desc, "{\"execute\": \"migrate-set-parameters\", "
                               "\"arguments\": {%s}}", bad[i]));
        g_test_message("%s: %s", bad[i], desc);
    }
    p = qtest_qmp_ok(m.src, "{\"execute\": \"query-migrate-parameters\"}");
    g_assert_cmpint(qtest_json_int(p, "multifd-channels"), ==, 16);
    g_assert_cmpint(qtest_json_int(p, "compress-level"), ==, 9);
    g_assert_cmpstr(qtest_json_str(p, "compress-algorithm"), ==, "zlib");
    g_assert_cmpint(qtest_json_int(p, "max-inflight"), ==, 8 * MIB);
    json_node_unref(p);
    mf_free(&m);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/migration-ext/parameters", test_parameters);
    g_test_add_func("/migration-ext/spans-small-writes", test_spans_small_writes);
    g_test_add_func("/migration-ext/qemu-compat-stream", test_qemu_compat_stream);
    g_test_add_func("/migration-ext/multifd-sparse", test_multifd_sparse);
    g_test_add_func("/migration-ext/multifd-workload", test_multifd_workload);
    g_test_add_func("/migration-ext/multifd-file-refused", test_multifd_file_refused);
    g_test_add_func("/migration-ext/multifd-hostile", test_hostile_connections);
    g_test_add_func("/migration-ext/multifd-hostile-channels", test_hostile_channels);
    g_test_add_data_func("/migration-ext/compress/zstd", "zstd", test_compress);
    g_test_add_data_func("/migration-ext/compress/zlib", "zlib", test_compress);
    return g_test_run();
}
