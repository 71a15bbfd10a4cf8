/* What a migration must never do to a guest's disks, between real
 * blkmigd daemons: without `block` the destination checks that its disks
 * are the source's (the storage check) and refuses to start its guest
 * when they are not, while shared storage still migrates. */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "libqtest.h"

#define KIB (UINT64_C(1) << 10)
#define MIB (UINT64_C(1) << 20)
#define GIB (UINT64_C(1) << 30)
/* Generous: ASan builds on two shared cores are slow. */
#define MIGRATE_TIMEOUT_MS 120000
#define STATE_TIMEOUT_MS 30000
#define DIFFER_HINT "the disks differ: enable the 'block' capability to copy the disks, " \
                    "or use shared storage"

/* ---- helpers ---- */

static void write_block(const char *path, uint64_t off, uint64_t len, int byte)
{
    g_autofree uint8_t *buf = g_malloc(len);
    int fd = open(path, O_WRONLY | O_CLOEXEC);

    g_assert_cmpint(fd, >=, 0);
    memset(buf, byte, len);
    g_assert_cmpint(pwrite(fd, buf, len, off), ==, (ssize_t)len);
    close(fd);
}

static void assert_contains(const char *text, const char *part)
{
    if (!text || !strstr(text, part)) {
        g_error("expected '%s' in '%s'", part, text ? text : "(null)");
    }
}

/* The source failed because the destination refused (its error names
 * WHY, and says HINT unless that is NULL), the source guest runs again
 * and the destination's does not. */
static void expect_refused(QTestDaemon *src, QTestDaemon *dst, const char *why,
                           const char *hint)
{
    JsonNode *s = qtest_migrate_wait(src, MIGRATE_TIMEOUT_MS);
    JsonNode *d = qtest_migrate_wait_status(dst, "failed", STATE_TIMEOUT_MS);
    const char *dst_error = qtest_json_str(d, "error-desc");
    g_autofree char *said = g_strdup_printf("destination failed: %s", dst_error);

    g_test_message("source: %s", qtest_json_str(s, "error-desc"));
    g_assert_cmpstr(qtest_json_str(s, "status"), ==, "failed");
    assert_contains(dst_error, why);
    if (hint) {
        assert_contains(dst_error, hint);
    }
    assert_contains(qtest_json_str(s, "error-desc"), said);
    qtest_wait_runstate(src, "running", STATE_TIMEOUT_MS);
    g_autofree char *dst_state = qtest_runstate(dst);
    g_assert_cmpstr(dst_state, ==, "inmigrate");
    json_node_unref(s);
    json_node_unref(d);
}

static void expect_completed(QTestDaemon *src, QTestDaemon *dst)
{
    JsonNode *s = qtest_migrate_wait(src, MIGRATE_TIMEOUT_MS);

    if (strcmp(qtest_json_str(s, "status"), "completed")) {
        g_error("migration %s: %s", qtest_json_str(s, "status"),
                qtest_json_str(s, "error-desc"));
    }
    json_node_unref(qtest_migrate_wait_status(dst, "completed", STATE_TIMEOUT_MS));
    qtest_wait_runstate(dst, "running", STATE_TIMEOUT_MS);
    qtest_wait_runstate(src, "postmigrate", STATE_TIMEOUT_MS);
    json_node_unref(s);
}

/* A destination waiting on URI and a source, each with its drive
 * options, started in that order; the migration (capabilities CAP, may
 * be NULL) begins. */
static void start_migration(QTestDaemon **src, QTestDaemon **dst, const char *src_drives,
                            const char *dst_drives, const char *cap)
{
    g_autofree char *uri = qtest_tcp_uri();

    *dst = qtest_daemon_start("dst", "%s --incoming %s", dst_drives, uri);
    *src = qtest_daemon_start("src", "%s", src_drives);
    if (cap) {
        qtest_set_caps(*src, cap, NULL);
    }
    qtest_migrate_start(*src, uri);
}

static char *drive_opt(const char *id, const char *path)
{
    return g_strdup_printf("--drive id=%s,file=%s", id, path);
}

/* ---- the storage check ---- */

/* Two disks of the same size holding different data: refused. */
static void test_different_disks(void)
{
    g_autofree char *a = qtest_path("a.raw"), *b = qtest_path("b.raw");
    g_autofree char *src_opt = drive_opt("disk0", a), *dst_opt = drive_opt("disk0", b);
    QTestDaemon *src, *dst;

    qtest_disk_create(a, 64 * MIB);
    qtest_disk_scatter(a, 3, 8, 64 * KIB);
    qtest_disk_create(b, 64 * MIB);
    qtest_disk_scatter(b, 4, 8, 64 * KIB);
    start_migration(&src, &dst, src_opt, dst_opt, NULL);
    expect_refused(src, dst, "drive 'disk0' does not match the source's", DIFFER_HINT);
    qtest_daemon_kill(src);
    qtest_daemon_kill(dst);
}

/* One file opened by both daemons (shared storage), written by the
 * source guest until it stops: the check passes, so it must be taken
 * with the guest stopped and its writes flushed. */
static void test_shared_storage(void)
{
    g_autofree char *disk = qtest_path("shared.raw");
    g_autofree char *opt = drive_opt("disk0", disk);
    g_autofree char *src_opt = g_strdup_printf("%s --workload drive=disk0,rate=20,seed=7", opt);
    QTestDaemon *src, *dst;

    qtest_disk_create(disk, 256 * MIB);
    qtest_disk_scatter(disk, 5, 40, 256 * KIB);
    start_migration(&src, &dst, src_opt, opt, NULL);
    expect_completed(src, dst);
    qtest_daemon_kill(src);
    qtest_daemon_kill(dst);
}

/* Different sizes: refused, naming both. */
static void test_different_sizes(void)
{
    g_autofree char *a = qtest_path("a.raw"), *b = qtest_path("b.raw");
    g_autofree char *src_opt = drive_opt("disk0", a), *dst_opt = drive_opt("disk0", b);
    QTestDaemon *src, *dst;

    qtest_disk_create(a, 64 * MIB);
    qtest_disk_create(b, 32 * MIB);
    start_migration(&src, &dst, src_opt, dst_opt, NULL);
    expect_refused(src, dst, "drive 'disk0' is 67108864 bytes at the source but "
                   "33554432 bytes here: ", DIFFER_HINT);
    qtest_daemon_kill(src);
    qtest_daemon_kill(dst);
}

/* A sparse 1 GiB source with three 4 KiB blocks of data, none inside an
 * evenly spread range (those start at multiples of size / 32 and are
 * 64 KiB long), against an empty destination: only the ranges that seek
 * data can tell them apart, and they must, every time. */
static void test_sparse_source_empty_destination(void)
{
    static const uint64_t data_at[] = { 16 * MIB + 12 * KIB, 300 * MIB, 1000 * MIB + 8 * KIB };
    g_autofree char *a = qtest_path("a.raw"), *b = qtest_path("b.raw");
    g_autofree char *src_opt = drive_opt("disk0", a), *dst_opt = drive_opt("disk0", b);

    qtest_disk_create(a, GIB);
    qtest_disk_create(b, GIB);
    for (size_t i = 0; i < G_N_ELEMENTS(data_at); i++) {
        g_assert_cmpuint(data_at[i] % (GIB / 32), >=, 64 * KIB);
        write_block(a, data_at[i], 4 * KIB, 0x5a + i);
    }
    for (int round = 0; round < 3; round++) {
        QTestDaemon *src, *dst;
        start_migration(&src, &dst, src_opt, dst_opt, NULL);
        expect_refused(src, dst, "drive 'disk0' does not match the source's", DIFFER_HINT);
        qtest_daemon_kill(src);
        qtest_daemon_kill(dst);
    }
}

/* A drive on one side only, without `block` (the other drive is shared)
 * and with it: refused, naming the drive. */
static void test_drive_on_one_side(void)
{
    g_autofree char *shared = qtest_path("shared.raw"), *extra = qtest_path("extra.raw");
    g_autofree char *d0 = drive_opt("disk0", shared), *d1 = drive_opt("disk1", extra);
    g_autofree char *both = g_strdup_printf("%s %s", d0, d1);
    g_autofree char *dst_disk = qtest_path("dst.raw");
    g_autofree char *dst_both = g_strdup_printf("--drive id=disk0,file=%s,size=%" G_GUINT64_FORMAT
                                                ",create=on %s", dst_disk, 16 * MIB, d1);
    QTestDaemon *src, *dst;

    qtest_disk_create(shared, 16 * MIB);
    qtest_disk_scatter(shared, 9, 4, 64 * KIB);
    qtest_disk_create(extra, 16 * MIB);

    start_migration(&src, &dst, both, d0, NULL);
    expect_refused(src, dst, "the source has a drive 'disk1' that this destination lacks",
                   NULL);
    qtest_daemon_kill(src);
    qtest_daemon_kill(dst);

    start_migration(&src, &dst, d0, both, NULL);
    expect_refused(src, dst, "drive 'disk1' of this destination is not on the source "
                   "(which has: disk0)", NULL);
    qtest_daemon_kill(src);
    qtest_daemon_kill(dst);

    start_migration(&src, &dst, d0, dst_both, "block");
    expect_refused(src, dst, "drive 'disk1' of this destination is not on the source", NULL);
    qtest_daemon_kill(src);
    qtest_daemon_kill(dst);
}

/* qemu-compat without `block` sends no check: the destination cannot
 * know its disk is the source's and does not start. */
static void test_compat_without_block(void)
{
    g_autofree char *disk = qtest_path("shared.raw");
    g_autofree char *opt = drive_opt("disk0", disk);
    QTestDaemon *src, *dst;

    qtest_disk_create(disk, 16 * MIB);
    start_migration(&src, &dst, opt, opt, "qemu-compat");
    expect_refused(src, dst, "drive 'disk0' got neither disk contents nor a storage check",
                   "enable the 'block' capability");
    qtest_daemon_kill(src);
    qtest_daemon_kill(dst);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/storage-check/different-disks", test_different_disks);
    g_test_add_func("/storage-check/shared-storage", test_shared_storage);
    g_test_add_func("/storage-check/different-sizes", test_different_sizes);
    g_test_add_func("/storage-check/sparse-source-empty-destination",
                    test_sparse_source_empty_destination);
    g_test_add_func("/storage-check/drive-on-one-side", test_drive_on_one_side);
    g_test_add_func("/storage-check/qemu-compat-without-block", test_compat_without_block);
    return g_test_run();
}
