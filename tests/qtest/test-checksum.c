/* End-to-end integrity between real blkmigd daemons (capability
 * block-checksum, issue 13):
 *   - a bit flipped in flight inside a data record (a TCP proxy between
 *     the daemons damages one byte, on the main connection or on a
 *     multifd channel) fails the migration naming the drive and the
 *     offset, nothing of that record applied, the source guest running;
 *   - a destination disk changed behind the migration's back between the
 *     bulk copy and the switchover is caught by the comparison of the
 *     per-chunk hash lists, which names the range;
 *   - a clean migration reports disk.verified == disk.total (plain, with
 *     multifd and compression);
 *   - with qemu-compat the stream stays QEMU 7.2's. */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "migration-framework.h"
#include "migration/block-migration.h"
#include "../lib/stream-decode.h"

#define CHUNK MIB
/* Generous: ASan builds on two shared cores are slow. */
#define STATE_TIMEOUT_MS 30000

/* ---- helpers ---- */

/* A fresh Migration with a source disk of SIZE full of data and the
 * daemons started (the destination behind a proxy when PROXY is set). */
static void start_full(Migration *m, uint64_t size, QTestProxy **proxy)
{
    *m = (Migration){ .state_timeout_ms = STATE_TIMEOUT_MS };
    mf_make_src_disk(m, size, 1, 0, 0);
    qtest_disk_fill(m->src_disk, size, 13);
    mf_start_pair(m, size, "");
    qtest_set_caps(m->src, "block", "zero-blocks", "block-checksum", NULL);
    if (proxy) {
        *proxy = qtest_proxy_start(m->uri);
    }
}

/* Bytes [OFF, OFF + LEN) of PATH read as zeroes. */
static bool range_is_zero(const char *path, uint64_t off, uint64_t len)
{
    g_autofree uint8_t *buf = g_malloc(len);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    bool zero = true;

    g_assert_cmpint(fd, >=, 0);
    g_assert_cmpint(pread(fd, buf, len, off), ==, (ssize_t)len);
    close(fd);
    for (uint64_t i = 0; i < len && zero; i++) {
        zero = buf[i] == 0;
    }
    return zero;
}

/* ---- a bit flipped in flight ---- */

/* One byte in the middle of the first data record (chunk 0, 1 MiB of
 * data: the disk is full) on the main connection. */
static void test_flipped_bit(void)
{
    QTestProxy *proxy;
    Migration m;

    start_full(&m, 16 * MIB, &proxy);
    qtest_proxy_corrupt(proxy, 0, 512 * KIB, 0x10);
    qtest_migrate_start(m.src, qtest_proxy_uri(proxy));
    mf_expect_refused(&m, "drive 'disk0': checksum mismatch in the record of 1048576 bytes "
                      "at offset 0 (stream offset", "nothing of it was applied");
    g_assert_true(qtest_proxy_corrupted(proxy));
    /* The destination disk was blank: chunk 0 must still be. */
    g_assert_true(range_is_zero(m.dst_disk, 0, CHUNK));
    qtest_proxy_stop(proxy);
    mf_free(&m);
}

/* The same on a multifd channel (connection 1, the first channel). */
static void test_flipped_bit_multifd(void)
{
    QTestProxy *proxy;
    Migration m;

    start_full(&m, 16 * MIB, &proxy);
    qtest_set_caps(m.src, "multifd", NULL);
    qtest_proxy_corrupt(proxy, 1, 512 * KIB, 0x01);
    qtest_migrate_start(m.src, qtest_proxy_uri(proxy));
    mf_expect_refused(&m, "multifd channel", "drive 'disk0': checksum mismatch in the "
                      "record of 1048576 bytes at offset ");
    g_assert_true(qtest_proxy_corrupted(proxy));
    qtest_proxy_stop(proxy);
    mf_free(&m);
}

/* ---- the switchover comparison ---- */

static uint64_t bulk_copied(QTestDaemon *d)
{
    JsonNode *info = qtest_query_migrate(d);
    uint64_t copied = qtest_json_get(info, "disk") ? qtest_json_int(info, "disk.bulk-copied") : 0;

    json_node_unref(info);
    return copied;
}

/* 4 KiB of chunk 4 of the destination file rewritten once the bulk copy
 * is well past it (and no guest writes there): every record arrived
 * intact, only the comparison can see it. */
static void test_altered_destination(void)
{
    uint64_t size = 64 * MIB;
    gint64 deadline = g_get_monotonic_time() + MF_MIGRATE_TIMEOUT_MS * 1000LL;
    Migration m;

    start_full(&m, size, NULL);
    qtest_set_params(m.src, "\"max-bandwidth\": %" G_GUINT64_FORMAT, 16 * MIB);
    qtest_migrate_start(m.src, m.uri);
    while (bulk_copied(m.src) < size / 2) {
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(MF_POLL_US);
    }
    qtest_disk_set(m.dst_disk, 4 * CHUNK + 8 * KIB, 4 * KIB, 0xa5);
    mf_expect_refused(&m, "disk verification: drive 'disk0': 1048576 bytes at offset 4194304 "
                      "differ from the source's", "the guest does not start here");
    mf_free(&m);
}

/* ---- clean migrations ---- */

static void check_clean(const char *extra_cap)
{
    Migration m = { 0 };
    uint64_t size = 48 * MIB + 5 * 512;
    JsonNode *info;

    mf_make_src_disk(&m, size, 7, 24, 96 * KIB);
    /* Data that compresses, so compressed records are checked too. */
    qtest_disk_set(m.src_disk, 40 * MIB, 3 * MIB, 0x5a);
    /* Zeroes written at the source arrive as holes: they must compare
     * equal all the same. */
    qtest_disk_set(m.src_disk, 30 * MIB + 4 * KIB, 2 * MIB, 0);
    mf_start_pair(&m, size, "");
    qtest_set_caps(m.src, "block", "zero-blocks", "block-checksum", extra_cap, NULL);
    qtest_migrate_start(m.src, m.uri);
    info = mf_wait_completed(&m);
    mf_assert_identical(m.src_disk, m.dst_disk);
    g_assert_cmpint(qtest_json_int(info, "disk.total"), ==, (gint64)size);
    g_assert_cmpint(qtest_json_int(info, "disk.verified"), ==, (gint64)size);
    if (extra_cap && !strcmp(extra_cap, "compress")) {
        g_assert_cmpint(qtest_json_int(info, "disk.transferred"), <,
                        (gint64)qtest_disk_nonzero_bytes(m.src_disk) - 2 * MIB);
    }
    json_node_unref(info);
    mf_free(&m);
}

static void test_clean(void)
{
    check_clean(NULL);
}

static void test_clean_multifd(void)
{
    check_clean("multifd");
}

static void test_clean_compress(void)
{
    check_clean("compress");
}

/* The operator's tool: `blkmig migrate --checksum` turns it on and
 * says what was verified. */
static void test_tool(void)
{
    Migration m = { 0 };
    uint64_t size = 16 * MIB;
    g_autofree char *src = NULL, *dst = NULL, *out = NULL, *want = NULL;
    QTestTool t;

    mf_make_src_disk(&m, size, 3, 8, 256 * KIB);
    mf_start_pair(&m, size, "");
    src = g_strdup_printf("unix:%s", qtest_daemon_qmp_path(m.src));
    dst = g_strdup_printf("unix:%s", qtest_daemon_qmp_path(m.dst));
    t = qtest_tool_start("checksum-tool.log", (char *[]){ "migrate", "--src", src, "--dst", dst,
                         "--uri", m.uri, "--zero-blocks", "--checksum", NULL }, 120);
    g_assert_cmpint(qtest_tool_wait(&t), ==, 0);
    out = qtest_tool_output(&t);
    want = g_strdup_printf("disk verified:    %" G_GUINT64_FORMAT " bytes", size);
    mf_assert_contains(out, want);
    mf_assert_identical(m.src_disk, m.dst_disk);
    qtest_tool_clear(&t);
    mf_free(&m);
}

/* ---- saved streams ---- */

/* A stream saved to a file carries the checksums and the hash lists and
 * loads; the source cannot know that it was verified: verified 0. */
static void test_file_stream(void)
{
    Migration m = { 0 };
    uint64_t size = 24 * MIB;
    g_autofree char *stream = qtest_path("cksum.stream");
    g_autofree char *file_uri = g_strconcat("file:", stream, NULL);
    JsonNode *info;

    mf_make_src_disk(&m, size, 9, 12, 128 * KIB);
    m.src = mf_start_src(&m, "");
    qtest_set_caps(m.src, "block", "zero-blocks", "block-checksum", NULL);
    qtest_migrate_start(m.src, file_uri);
    info = qtest_migrate_wait(m.src, MF_MIGRATE_TIMEOUT_MS);
    g_assert_cmpstr(qtest_json_str(info, "status"), ==, "completed");
    g_assert_cmpint(qtest_json_int(info, "disk.verified"), ==, 0);
    json_node_unref(info);
    mf_load_saved(&m, file_uri, size);
    mf_assert_identical(m.src_disk, m.dst_disk);
    unlink(stream);
    mf_free(&m);
}

/* ---- qemu-compat ---- */

/* block-checksum is ignored with qemu-compat: the saved stream holds
 * only QEMU 7.2's records and sections (the decoder refuses any section
 * but "block"), and nothing is verified. */
static void test_qemu_compat_ignores(void)
{
    Migration m = { 0 };
    g_autofree char *stream = qtest_path("compat-cksum.stream");
    g_autofree char *file_uri = g_strconcat("file:", stream, NULL);
    g_autofree char *bytes = NULL;
    gsize len = 0;
    SdStream map;
    JsonNode *info;

    mf_make_src_disk(&m, 8 * MIB, 5, 8, 64 * KIB);
    m.src = mf_start_src(&m, "");
    qtest_set_caps(m.src, "block", "zero-blocks", "qemu-compat", "block-checksum", NULL);
    qtest_migrate_start(m.src, file_uri);
    info = qtest_migrate_wait(m.src, MF_MIGRATE_TIMEOUT_MS);
    g_assert_cmpstr(qtest_json_str(info, "status"), ==, "completed");
    g_assert_cmpint(qtest_json_int(info, "disk.verified"), ==, 0);
    g_assert_true(g_file_get_contents(stream, &bytes, &len, NULL));
    sd_decode_or_die((const guint8 *)bytes, len, &map);
    for (guint i = 0; i < map.records->len; i++) {
        g_assert_cmphex(sd_record(&map, i)->flags & ~0x0fu, ==, 0);
    }
    sd_stream_clear(&map);
    json_node_unref(info);
    unlink(stream);
    mf_free(&m);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/checksum/flipped-bit", test_flipped_bit);
    g_test_add_func("/checksum/flipped-bit-multifd", test_flipped_bit_multifd);
    g_test_add_func("/checksum/altered-destination", test_altered_destination);
    g_test_add_func("/checksum/clean", test_clean);
    g_test_add_func("/checksum/clean-multifd", test_clean_multifd);
    g_test_add_func("/checksum/clean-compress", test_clean_compress);
    g_test_add_func("/checksum/tool", test_tool);
    g_test_add_func("/checksum/file-stream", test_file_stream);
    g_test_add_func("/checksum/qemu-compat-ignores", test_qemu_compat_ignores);
    return g_test_run();
}
