/* The outgoing migration's contract with the emulator that hosts it, seen
 * from inside: the migration runs in this process on its own drive, with
 * this test's guest thread and vm-ops hooks, against a real blkmigd
 * destination.  It checks what QMP cannot show: the guest is stopped for
 * switchover and the outcome reported to the emulator (once, with the
 * right success and was-running flags) before the status says completed,
 * a failed or cancelled migration leaves the guest running, and a source
 * that never got the acknowledgement keeps its guest stopped. */
#include <glib/gstdio.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "migration-framework.h"
#include "migration/block-migration.h"
#include "migration/migration.h"
#include "migration/options.h"
#include "migration/storage-check.h"
#include "util/sockets.h"
#include "../lib/drives.h"
#include "../lib/files.h"

#define LIVE_DISK_SIZE (32 * MIB)
#define DRIVE "disk0"

/* The source's guest: random 4 KiB writes into a 4 MiB working set (so the
 * dirty phase converges under the downtime limit) until the migration
 * stops it. */
typedef struct Guest {
    BlockDriverState *bs;
    GThread *thread;
    gint stop;
    gint running;
    gint writes;
    GArray *statuses_at_finish;   /* migration status seen by source_finished */
    int finished_calls;
    bool finished_success;
    bool finished_was_running;
} Guest;

static Guest guest;

static gpointer guest_thread(gpointer opaque)
{
    GRand *rand = g_rand_new_with_seed(42);
    uint8_t buf[4096];

    while (!g_atomic_int_get(&guest.stop)) {
        uint64_t off = 8 * MIB + g_rand_int_range(rand, 0, 4 * MIB / 4096) * 4096ULL;
        td_fill(buf, sizeof(buf), g_atomic_int_add(&guest.writes, 1));
        g_assert_cmpint(bdrv_pwrite(guest.bs, off, buf, sizeof(buf), 0), ==, 0);
        g_usleep(3000);
    }
    g_rand_free(rand);
    return NULL;
}

static void guest_start(BlockDriverState *bs)
{
    guest.bs = bs;
    g_atomic_int_set(&guest.stop, 0);
    g_atomic_int_set(&guest.running, 1);
    guest.thread = g_thread_new("guest", guest_thread, NULL);
}

static void guest_stop(void)
{
    if (guest.thread) {
        g_atomic_int_set(&guest.stop, 1);
        g_thread_join(guest.thread);
        guest.thread = NULL;
    }
    g_atomic_int_set(&guest.running, 0);
}

static void vm_stop_for_switchover(void *opaque)
{
    guest_stop();
}

static void vm_source_finished(void *opaque, bool success, bool was_running)
{
    MigrationInfo info;

    migration_query(&info);
    g_array_append_val(guest.statuses_at_finish, info.status);
    migration_info_clear(&info);
    guest.finished_calls++;
    guest.finished_success = success;
    guest.finished_was_running = was_running;
}

static bool vm_guest_is_running(void *opaque)
{
    return g_atomic_int_get(&guest.running);
}

static const MigrationVmOps test_vm_ops = {
    .stop_for_switchover = vm_stop_for_switchover,
    .source_finished = vm_source_finished,
    .guest_is_running = vm_guest_is_running,
};

/* A blkmigd destination with a blank drive of SIZE on a unix socket (or
 * loading URI when given); m->dst_disk and m->uri are set. */
static void destination_start(Migration *m, uint64_t size, const char *uri)
{
    m->dst_disk = qtest_path("dst-disk0.raw");
    m->uri = uri ? g_strdup(uri) : g_strdup_printf("unix:%s/mig.sock", qtest_tmpdir());
    m->dst = mf_start_dst(m, "dst", size);
}

/* The destination's final query-migrate. */
static JsonNode *destination_finish(Migration *m)
{
    JsonNode *info = qtest_migrate_wait(m->dst, MF_MIGRATE_TIMEOUT_MS);
    mf_log_json("destination", info);
    return info;
}

static MigrationInfo wait_for_final_status(int timeout_s)
{
    gint64 deadline = g_get_monotonic_time() + timeout_s * G_USEC_PER_SEC;
    MigrationInfo info;

    for (;;) {
        migration_query(&info);
        if (info.status == MIG_STATUS_COMPLETED || info.status == MIG_STATUS_FAILED ||
            info.status == MIG_STATUS_CANCELLED) {
            return info;
        }
        migration_info_clear(&info);
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(20 * 1000);
    }
}

/* The in-process source drive with data, the block capabilities and the
 * test's hooks. */
static BlockDriverState *live_source(Migration *m)
{
    BlockDriverState *bs;

    m->src_disk = qtest_path("src-disk0.raw");
    bs = td_open_drive(DRIVE, m->src_disk, LIVE_DISK_SIZE);
    td_populate(bs, LIVE_DISK_SIZE, 1);
    td_write_drive(bs, 8 * MIB, 6 * MIB, 2);
    mig_cap_set(MIG_CAP_BLOCK, true);
    mig_cap_set(MIG_CAP_ZERO_BLOCKS, true);
    guest.statuses_at_finish = g_array_new(false, false, sizeof(MigrationStatus));
    guest.finished_calls = 0;
    migration_set_vm_ops(&test_vm_ops);
    return bs;
}

static void set_bandwidth(uint64_t bytes_per_sec)
{
    MigrationParametersUpdate u = { .has_max_bandwidth = true };
    GError *err = NULL;

    u.p.max_bandwidth = bytes_per_sec;
    g_assert_true(mig_params_apply(&u, &err));
    g_assert_no_error(err);
}

static void live_cleanup(Migration *m)
{
    static const MigrationVmOps no_ops;

    guest_stop();
    migration_shutdown();
    migration_set_vm_ops(&no_ops);
    g_array_unref(guest.statuses_at_finish);
    set_bandwidth(MIG_DEFAULT_MAX_BANDWIDTH);
    bdrv_close_all();
    if (m->uri && g_str_has_prefix(m->uri, "unix:")) {
        g_unlink(m->uri + 5);
    }
    mf_free(m);
}

/* A guest writes during the whole migration; the destination ends equal to
 * the source at the moment the guest was stopped. */
static void test_live_migration(void)
{
    Migration m = { 0 };
    BlockDriverState *bs = live_source(&m);
    MigrationInfo info;
    GError *err = NULL;

    destination_start(&m, LIVE_DISK_SIZE, NULL);
    set_bandwidth(40 * MIB);
    guest_start(bs);
    g_assert_true(migration_start(m.uri, &err));
    g_assert_no_error(err);
    g_assert_true(migration_is_active());
    /* A second one is refused while this one runs. */
    g_assert_false(migration_start(m.uri, &err));
    g_assert_error(err, g_quark_from_static_string("blkmig-migration-error-quark"), 0);
    g_assert_cmpstr(err->message, ==, "There's a migration process in progress");
    g_clear_error(&err);

    info = wait_for_final_status(120);
    g_test_message("status %s (%s) after %" G_GINT64_FORMAT " ms, %" G_GUINT64_FORMAT
                   " bytes sent", mig_status_name(info.status),
                   info.error_desc ? info.error_desc : "no error", info.total_time,
                   info.disk.transferred);
    g_assert_cmpstr(mig_status_name(info.status), ==, "completed");
    g_assert_null(info.error_desc);
    g_assert_true(info.has_times && info.has_disk);
    g_test_message("total %" G_GINT64_FORMAT " ms, setup %" G_GINT64_FORMAT
                   " ms, downtime %" G_GINT64_FORMAT " ms, %d guest writes, %"
                   G_GUINT64_FORMAT " dirty passes, %.1f Mbit/s",
                   info.total_time, info.setup_time, info.downtime,
                   g_atomic_int_get(&guest.writes), info.disk.dirty_sync_count, info.disk.mbps);
    g_assert_cmpint(info.total_time, >=, info.setup_time);
    g_assert_cmpint(info.downtime, <=, info.total_time);
    g_assert_cmpuint(info.disk.total, ==, LIVE_DISK_SIZE);
    g_assert_cmpuint(info.disk.remaining, ==, 0);
    g_assert_cmpuint(info.disk.zero_blocks, >, 0);
    g_assert_cmpfloat(info.disk.mbps, >, 0);
    migration_info_clear(&info);
    /* The guest was stopped for switchover and the outcome reported
     * before the status said completed. */
    g_assert_false(vm_guest_is_running(NULL));
    g_assert_cmpint(guest.finished_calls, ==, 1);
    g_assert_true(guest.finished_success);
    g_assert_true(guest.finished_was_running);
    g_assert_cmpint(g_array_index(guest.statuses_at_finish, MigrationStatus, 0), !=,
                    MIG_STATUS_COMPLETED);

    g_autoptr(JsonNode) dinfo = destination_finish(&m);
    g_assert_cmpstr(qtest_json_str(dinfo, "status"), ==, "completed");
    g_assert_null(qtest_json_get(dinfo, "error-desc"));
    mf_assert_identical(m.src_disk, m.dst_disk);
    live_cleanup(&m);
}

/* The destination rejects the stream: the source fails with the
 * destination's own words and its guest never stopped. */
static void test_live_destination_error(void)
{
    Migration m = { 0 };
    BlockDriverState *bs = live_source(&m);
    MigrationInfo info;
    GError *err = NULL;
    const char *dest_msg = "block migration: drive 'disk0' is 33554432 bytes at the "
                           "source but only 16777216 bytes at the destination";
    g_autofree char *src_msg = g_strdup_printf("destination failed: %s", dest_msg);

    destination_start(&m, LIVE_DISK_SIZE / 2, NULL);
    guest_start(bs);
    g_assert_true(migration_start(m.uri, &err));
    g_assert_no_error(err);
    info = wait_for_final_status(60);
    g_assert_cmpstr(mig_status_name(info.status), ==, "failed");
    g_assert_cmpstr(info.error_desc, ==, src_msg);
    migration_info_clear(&info);
    g_assert_cmpint(guest.finished_calls, ==, 1);
    g_assert_false(guest.finished_success);
    g_assert_false(guest.finished_was_running);     /* never stopped it */
    g_assert_true(vm_guest_is_running(NULL));

    g_autoptr(JsonNode) dinfo = destination_finish(&m);
    g_assert_cmpstr(qtest_json_str(dinfo, "status"), ==, "failed");
    g_assert_nonnull(strstr(qtest_json_str(dinfo, "error-desc"), dest_msg));
    live_cleanup(&m);
}

/* Cancel in the middle of a slow migration: cancelled quickly, guest still
 * running here, destination failed. */
static void test_live_cancel(void)
{
    Migration m = { 0 };
    BlockDriverState *bs = live_source(&m);
    MigrationInfo info;
    GError *err = NULL;
    gint64 start;

    destination_start(&m, LIVE_DISK_SIZE, NULL);
    set_bandwidth(2 * MIB);                         /* ~4 s for the data */
    guest_start(bs);
    g_assert_true(migration_start(m.uri, &err));
    g_assert_no_error(err);
    g_usleep(500 * 1000);
    migration_query(&info);
    g_assert_cmpstr(mig_status_name(info.status), ==, "active");
    g_assert_cmpuint(info.disk.transferred, >, 0);
    g_assert_cmpuint(info.disk.remaining, >, 0);
    migration_info_clear(&info);

    start = g_get_monotonic_time();
    migration_cancel();
    info = wait_for_final_status(10);
    g_assert_cmpint(g_get_monotonic_time() - start, <, G_USEC_PER_SEC);
    g_assert_cmpstr(mig_status_name(info.status), ==, "cancelled");
    migration_info_clear(&info);
    g_assert_cmpint(guest.finished_calls, ==, 1);
    g_assert_false(guest.finished_success);
    g_assert_true(vm_guest_is_running(NULL));

    g_autoptr(JsonNode) dinfo = destination_finish(&m);
    g_assert_cmpstr(qtest_json_str(dinfo, "status"), ==, "failed");
    live_cleanup(&m);
}

static void test_connect_refused(void)
{
    g_autofree char *sock = qtest_path("nobody.sock");
    g_autofree char *uri = g_strdup_printf("unix:%s", sock);
    GError *err = NULL;

    g_assert_false(migration_start(uri, &err));
    g_assert_nonnull(err);
    g_test_message("error: %s", err->message);
    g_assert_nonnull(strstr(err->message, sock));
    g_error_free(err);
    g_assert_false(migration_is_active());
}

/* Saving to a file stops the guest for good; loading the file elsewhere
 * gives the same disk. */
static void test_file_migration(void)
{
    Migration m = { 0 };
    BlockDriverState *bs = live_source(&m);
    g_autofree char *file = qtest_path("saved.stream");
    g_autofree char *uri = g_strdup_printf("file:%s", file);
    MigrationInfo info;
    GError *err = NULL;

    set_bandwidth(0);
    guest_start(bs);
    g_assert_true(migration_start(uri, &err));
    g_assert_no_error(err);
    info = wait_for_final_status(60);
    g_assert_cmpstr(mig_status_name(info.status), ==, "completed");
    migration_info_clear(&info);
    g_assert_true(guest.finished_success);
    g_assert_true(guest.finished_was_running);
    g_assert_false(vm_guest_is_running(NULL));

    destination_start(&m, LIVE_DISK_SIZE, uri);
    g_autoptr(JsonNode) dinfo = destination_finish(&m);
    g_assert_cmpstr(qtest_json_str(dinfo, "status"), ==, "completed");
    g_assert_null(qtest_json_get(dinfo, "error-desc"));
    mf_assert_identical(m.src_disk, m.dst_disk);
    g_unlink(file);
    live_cleanup(&m);
}

/* A destination that takes everything but never confirms: the source
 * fails after switchover, and since the destination may have started the
 * guest, the source guest must not run again (no split brain). */
static gpointer silent_destination(gpointer opaque)
{
    int listen_fd = GPOINTER_TO_INT(opaque);
    int fd = socket_accept(listen_fd);
    char *buf = g_malloc(1 << 16);
    struct pollfd pfd = { .fd = fd, .events = POLLIN };

    close(listen_fd);
    /* Read until the source has been quiet for a while (it then waits for
     * the acknowledgement), then hang up. */
    while (poll(&pfd, 1, 500) > 0 && read(fd, buf, 1 << 16) > 0) {
    }
    close(fd);
    g_free(buf);
    return NULL;
}

static void test_missing_ack(void)
{
    Migration m = { 0 };
    BlockDriverState *bs = live_source(&m);
    g_autofree char *sock = qtest_path("silent.sock");
    Endpoint ep;
    GThread *dest;
    MigrationInfo info;
    GError *err = NULL;

    m.uri = g_strdup_printf("unix:%s", sock);
    g_assert_true(endpoint_parse(m.uri, 1u << ENDPOINT_UNIX, &ep, &err));
    dest = g_thread_new("silent", silent_destination,
                        GINT_TO_POINTER(endpoint_listen(&ep, &err)));
    g_assert_no_error(err);
    endpoint_clear(&ep);
    set_bandwidth(0);
    guest_start(bs);
    g_assert_true(migration_start(m.uri, &err));
    g_assert_no_error(err);
    info = wait_for_final_status(60);
    g_assert_cmpstr(mig_status_name(info.status), ==, "failed");
    g_assert_cmpstr(info.error_desc, ==,
                    "destination closed the connection without confirming the migration; "
                    "the destination may be running the guest, so the source guest "
                    "stays stopped");
    migration_info_clear(&info);
    g_thread_join(dest);
    g_assert_cmpint(guest.finished_calls, ==, 1);
    g_assert_false(guest.finished_success);
    g_assert_false(guest.finished_was_running);
    live_cleanup(&m);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    /* Failed migrations are logged as warnings; the tests expect some. */
    g_log_set_always_fatal(G_LOG_FATAL_MASK | G_LOG_LEVEL_CRITICAL);
    block_migration_register();
    storage_check_register();
    g_test_add_func("/migration-source/live", test_live_migration);
    g_test_add_func("/migration-source/destination-error", test_live_destination_error);
    g_test_add_func("/migration-source/cancel", test_live_cancel);
    g_test_add_func("/migration-source/connect-refused", test_connect_refused);
    g_test_add_func("/migration-source/file", test_file_migration);
    g_test_add_func("/migration-source/missing-ack", test_missing_ack);
    return g_test_run();
}
