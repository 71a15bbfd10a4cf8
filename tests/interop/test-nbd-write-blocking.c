/* Write-blocking migration with a real guest writing through NBD (fio's
 * nbd engine): fio writes as fast as write-blocking lets it while a disk
 * full of data moves at 32 MiB/s, most of its writes landing on ranges
 * already copied; every write fio saw acknowledged is on the destination
 * (fio verifies it there through the destination's export), the two
 * files end identical, and a second fio job writing into the switchover
 * neither hangs it (its writes waiting for the migration thread while
 * that thread stops the guest) nor lands after the hand-over. */
#include <json-glib/json-glib.h>
#include <string.h>

#include "../qtest/libqtest.h"
#include "fio.h"
#include "interop.h"

#define MiB (UINT64_C(1) << 20)
#define DISK_SIZE (256 * MiB)
#define MIGRATE_TIMEOUT_MS 180000
/* fio job 1: 2 connections x 1500 verified 4 KiB writes in [0, 64 MiB),
 * copied first by the bulk phase. */
#define FIO_JOBS 2
#define FIO_IOS 1500
#define FIO_SLICE_MIB 32
#define FIO_IO_BYTES (FIO_JOBS * FIO_IOS * 4096)

typedef struct Setup {
    char *src_img, *dst_img, *src_sock, *dst_sock, *src_uri, *dst_uri, *mig_uri;
    QTestDaemon *src, *dst;
} Setup;

static void setup_start(Setup *s)
{
    s->src_img = qtest_path("wb-src.img");
    s->dst_img = qtest_path("wb-dst.img");
    s->src_sock = qtest_path("wb-src.nbd");
    s->dst_sock = qtest_path("wb-dst.nbd");
    s->src_uri = interop_nbd_uri(s->src_sock, "disk0");
    s->dst_uri = interop_nbd_uri(s->dst_sock, "disk0");
    s->mig_uri = g_strdup_printf("tcp:127.0.0.1:%d", qtest_free_port());
    qtest_disk_fill(s->src_img, DISK_SIZE, 17);
    s->dst = qtest_daemon_start("wb-dst", "--drive id=disk0,file=%s,size=%" G_GUINT64_FORMAT
                                ",create=on --nbd unix:%s --incoming %s", s->dst_img,
                                (uint64_t)DISK_SIZE, s->dst_sock, s->mig_uri);
    s->src = qtest_daemon_start("wb-src", "--drive id=disk0,file=%s --nbd unix:%s",
                                s->src_img, s->src_sock);
    qtest_wait_runstate(s->src, "running", 10000);
    qtest_set_caps(s->src, "block", "zero-blocks", NULL);
    qtest_set_params(s->src, "\"max-bandwidth\": 33554432, "
                     "\"block-copy-mode\": \"write-blocking\"");
}

static void setup_clear(Setup *s)
{
    g_free(s->src_img);
    g_free(s->dst_img);
    g_free(s->src_sock);
    g_free(s->dst_sock);
    g_free(s->src_uri);
    g_free(s->dst_uri);
    g_free(s->mig_uri);
}

/* fio finds every block it wrote on the destination. */
static void verify_on_destination(Setup *s)
{
    g_autofree char *verify_log = qtest_path("wb-verify.json");
    g_autoptr(GPtrArray) args = fio_verified_args(s->dst_uri, FIO_JOBS, FIO_IOS, FIO_SLICE_MIB);

    g_ptr_array_add(args, g_strdup_printf("--output=%s", verify_log));
    fio_wait_ok(fio_spawn(NULL, args, "--verify_only=1", "--output-format=json", NULL),
                verify_log, MIGRATE_TIMEOUT_MS, "verify_only on the destination");
    g_assert_cmpint(fio_read_bytes(verify_log), ==, FIO_IO_BYTES);
}

static void test_fio_write_blocking(void)
{
    g_autofree char *fio1_log = qtest_path("wb-fio-write.log");
    g_autofree char *fio2_log = qtest_path("wb-fio-switchover.log");
    g_autoptr(GPtrArray) fio1_args = NULL;
    g_autofree char *uri_opt = NULL;
    g_autoptr(JsonNode) info = NULL;
    Setup s = { 0 };
    uint64_t diff = 0;
    pid_t fio1, fio2;
    int status;

    if (!interop_need("fio")) {
        return;
    }
    setup_start(&s);
    uri_opt = g_strdup_printf("--uri=%s", s.src_uri);
    json_node_unref(qtest_qmp_ok(s.src, "{\"execute\": \"migrate\", \"arguments\":"
                                 " {\"uri\": \"%s\"}}", s.mig_uri));
    /* Verified writes, unpaced: write-blocking sets the pace. */
    fio1_args = fio_verified_args(s.src_uri, FIO_JOBS, FIO_IOS, FIO_SLICE_MIB);
    fio1 = fio_spawn(fio1_log, fio1_args, "--do_verify=0", NULL);
    /* Writes into the switchover: held while the guest is stopped, then
     * refused.  This job cannot end well; it must end. */
    fio2 = interop_spawn(fio2_log, "fio", "--name=switchover", "--ioengine=nbd", uri_opt,
                         "--rw=randwrite", "--bs=4k", "--iodepth=4", "--offset=128M",
                         "--size=128M", "--time_based", "--runtime=150", NULL);
    fio_wait_ok(fio1, fio1_log, MIGRATE_TIMEOUT_MS, "writes during migration");

    info = qtest_migrate_wait(s.src, MIGRATE_TIMEOUT_MS);
    if (strcmp(qtest_json_str(info, "status"), "completed")) {
        g_autofree char *text = json_to_string(info, FALSE);
        g_error("migration did not complete: %s", text);
    }
    g_assert_cmpint(qtest_json_int(info, "downtime"), <, 300);
    json_node_unref(qtest_migrate_wait_status(s.dst, "completed", 10000));
    qtest_wait_runstate(s.dst, "running", 10000);
    status = interop_wait(fio2, 60000);
    if (status == -2) {
        interop_kill(fio2);
    }
    g_assert_cmpint(status, >, 0);

    /* Nothing reached the source after it handed over. */
    if (!qtest_files_equal(s.src_img, s.dst_img, &diff)) {
        g_error("source and destination differ at byte %" G_GUINT64_FORMAT, diff);
    }
    verify_on_destination(&s);
    qtest_daemon_quit(s.src);
    qtest_daemon_quit(s.dst);
    setup_clear(&s);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_tmpdir();
    g_test_add_func("/nbd-write-blocking/fio", test_fio_write_blocking);
    return g_test_run();
}
