/* Live block migration while a real NBD client (fio) writes to the source
 * export: every write fio saw acknowledged is on the destination, the two
 * files end identical, writes that arrive during switchover are held and
 * then refused on the source, and the destination's export holds requests
 * until the migrated disk is complete.
 *
 * How the timing is made deterministic: the migration starts with a low
 * max-bandwidth, so its bulk phase cannot end while the verifying fio job
 * runs (a fixed number of rate-limited writes).  Only when that job has
 * finished is max-bandwidth set to 0 (unlimited), with downtime-limit 2000,
 * and the migration converges and completes, while a second, open-ended
 * fio job keeps writing into the switchover. */
#include <json-glib/json-glib.h>
#include <string.h>
#include <unistd.h>

#include "../qtest/libqtest.h"
#include "fio.h"
#include "interop.h"
#include "nbd-raw.h"

#define MiB (UINT64_C(1) << 20)
#define DISK_SIZE (256 * MiB)
#define MIGRATE_TIMEOUT_MS 180000
#define MARK_OFF (200 * MiB)       /* a pattern the destination must read */
#define MARK_LEN (64 * 1024)
/* fio job 1: 2 connections x 2000 verified 4 KiB writes in [0, 64 MiB). */
#define FIO_JOBS 2
#define FIO_IOS 2000
#define FIO_IO_BYTES (FIO_JOBS * FIO_IOS * 4096)

static void test_fio_live_migration(void)
{
    g_autofree char *src_img = qtest_path("mig-src.img");
    g_autofree char *dst_img = qtest_path("mig-dst.img");
    g_autofree char *src_sock = qtest_path("mig-src.nbd");
    g_autofree char *dst_sock = qtest_path("mig-dst.nbd");
    g_autofree char *fio1_log = qtest_path("fio-write.log");
    g_autofree char *fio2_log = qtest_path("fio-switchover.log");
    g_autofree char *verify_log = qtest_path("fio-verify.json");
    g_autofree char *reader_log = qtest_path("dst-reader.log");
    g_autofree char *src_uri = interop_nbd_uri(src_sock, "disk0");
    g_autofree char *dst_uri = interop_nbd_uri(dst_sock, "disk0");
    g_autofree char *mig_uri = g_strdup_printf("tcp:127.0.0.1:%d", qtest_free_port());
    g_autofree char *uri_opt = g_strdup_printf("--uri=%s", src_uri);
    g_autoptr(GPtrArray) fio1_args = NULL;
    g_autoptr(GPtrArray) verify_args = NULL;
    g_autoptr(JsonNode) info = NULL;
    QTestDaemon *src, *dst;
    pid_t fio1, fio2, reader;
    uint64_t diff = 0;
    int status;

    if (!interop_need("fio") || !interop_need("qemu-io")) {
        return;
    }
    qtest_disk_create(src_img, DISK_SIZE);
    qtest_disk_scatter(src_img, 7, 48, MiB);
    qtest_disk_set(src_img, MARK_OFF, MARK_LEN, 0x5c);

    dst = qtest_daemon_start("mig-dst", "--drive id=disk0,file=%s,size=%" G_GUINT64_FORMAT
                             ",create=on --nbd unix:%s --incoming %s",
                             dst_img, (uint64_t)DISK_SIZE, dst_sock, mig_uri);
    src = qtest_daemon_start("mig-src", "--drive id=disk0,file=%s --nbd unix:%s",
                             src_img, src_sock);
    qtest_wait_runstate(src, "running", 10000);
    qtest_set_caps(src, "block", "zero-blocks", NULL);
    qtest_set_params(src, "\"max-bandwidth\": 1048576, \"downtime-limit\": 2000");

    /* The destination's export answers the handshake but holds the read
     * until the migrated disk is there: it must see the source's data. */
    reader = interop_spawn(reader_log, "qemu-io", "-f", "raw", dst_uri,
                           "-c", "read -P 0x5c 200M 64k", NULL);

    fio1_args = fio_verified_args(src_uri, FIO_JOBS, FIO_IOS, 32);
    fio1 = fio_spawn(fio1_log, fio1_args, "--rate_iops=500", "--do_verify=0", NULL);
    json_node_unref(qtest_qmp_ok(src, "{\"execute\": \"migrate\", \"arguments\":"
                                 " {\"uri\": \"%s\"}}", mig_uri));

    /* Every one of fio's writes completes while the migration is active. */
    fio_wait_ok(fio1, fio1_log, MIGRATE_TIMEOUT_MS, "writes during migration");
    info = qtest_query_migrate(src);
    g_assert_cmpstr(qtest_json_str(info, "status"), ==, "active");
    g_assert_cmpint(interop_wait(reader, 0), ==, -2);

    /* Writes into the switchover: held while the guest is stopped, then
     * refused.  This job cannot end well; it must end. */
    fio2 = interop_spawn(fio2_log, "fio", "--name=switchover", "--ioengine=nbd", uri_opt,
                         "--rw=randwrite", "--bs=4k", "--iodepth=4", "--offset=128M",
                         "--size=64M", "--time_based", "--runtime=120", "--rate_iops=200",
                         NULL);
    g_usleep(500 * 1000);
    qtest_set_params(src, "\"max-bandwidth\": 0");
    g_clear_pointer(&info, json_node_unref);
    info = qtest_migrate_wait(src, MIGRATE_TIMEOUT_MS);
    g_assert_cmpstr(qtest_json_str(info, "status"), ==, "completed");
    json_node_unref(qtest_migrate_wait_status(dst, "completed", 10000));
    qtest_wait_runstate(dst, "running", 10000);

    status = interop_wait(fio2, 60000);
    if (status == -2) {
        interop_kill(fio2);
    }
    g_assert_cmpint(status, >, 0);

    /* Nothing reached the source after it handed over. */
    if (!qtest_files_equal(src_img, dst_img, &diff)) {
        g_error("source and destination differ at byte %" G_GUINT64_FORMAT, diff);
    }

    /* The held read on the destination got the migrated data. */
    g_assert_cmpint(interop_wait(reader, 30000), ==, 0);
    {
        g_autofree char *text = fio_read_log(reader_log);
        g_assert_nonnull(strstr(text, "read 65536/65536"));
    }

    /* fio finds every block it wrote on the destination. */
    verify_args = fio_verified_args(dst_uri, FIO_JOBS, FIO_IOS, 32);
    g_ptr_array_add(verify_args, g_strdup_printf("--output=%s", verify_log));
    fio_wait_ok(fio_spawn(NULL, verify_args, "--verify_only=1", "--output-format=json", NULL),
                verify_log, MIGRATE_TIMEOUT_MS, "verify_only on the destination");
    g_assert_cmpint(fio_read_bytes(verify_log), ==, FIO_IO_BYTES);

    /* The source, stopped for good: reads served, writes ESHUTDOWN. */
    {
        RawConn *c = raw_open(src_sock, "disk0", true, false);
        g_autofree uint8_t *buf = g_malloc0(MARK_LEN);
        g_assert_cmpuint(raw_cmd(c, 0, RAW_CMD_READ, MARK_OFF, MARK_LEN, NULL, buf), ==, 0);
        g_assert_cmpuint(buf[0], ==, 0x5c);
        g_assert_cmpuint(raw_cmd(c, 0, RAW_CMD_WRITE, 0, 4096, buf, NULL), ==, RAW_ESHUTDOWN);
        g_assert_cmpuint(raw_cmd(c, 0, RAW_CMD_WRITE_ZEROES, 0, 4096, NULL, NULL), ==,
                         RAW_ESHUTDOWN);
        raw_close(c);
    }
    /* The destination runs the guest now: its export takes writes. */
    {
        RawConn *c = raw_open(dst_sock, "disk0", false, false);
        uint8_t buf[512];
        memset(buf, 0x99, sizeof(buf));
        g_assert_cmpuint(raw_cmd(c, 0, RAW_CMD_WRITE, 0, sizeof(buf), buf, NULL), ==, 0);
        raw_close(c);
        g_assert_true(interop_file_has(dst_img, 0, sizeof(buf), 0x99));
    }
    qtest_daemon_quit(src);
    qtest_daemon_quit(dst);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_tmpdir();
    g_test_add_func("/nbd-migration/fio-live-migration", test_fio_live_migration);
    return g_test_run();
}
