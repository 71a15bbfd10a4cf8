/* libFuzzer target: the QMP server, from bytes on a client's socket
 * through the real framing, dispatcher and command handlers (qapi/ and
 * system/'s runstate commands), as blkmigd registers them, with a 1 MiB
 * drive to report and to migrate.  Each input is one client connection
 * (a socketpair served on this thread's main context): written whole,
 * then the write side is shut; replies are read and dropped until the
 * server hangs up.
 *
 * What could leave the process is kept in: inputs run in a scratch
 * directory, emptied after every input; as root it runs in a
 * network namespace of its own with nothing in it (not even a loopback
 * that is up), so "migrate" to tcp: reaches nobody; "migrate" to unix:
 * or file: runs only for a plain name (in the scratch directory), any
 * other path is refused by a guard in front of the real handler (which
 * still parses it).  migrate-incoming is refused as blkmigd without
 * --incoming refuses it.  "quit" reaches a shutdown handler that only
 * counts.  After each input a running migration is cancelled and waited
 * for, and capabilities, parameters, objects and the runstate go back to
 * how they started, so an input does the same whatever ran before it. */
#include <glib.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "block/block.h"
#include "migration/block-migration.h"
#include "migration/migration.h"
#include "migration/options.h"
#include "migration/savevm.h"
#include "migration/disk-verify.h"
#include "migration/storage-check.h"
#include "qapi/qmp.h"
#include "system/runstate.h"
#include "util/sockets.h"
#include "util/user-object.h"
#include "../../../qapi/qmp-internal.h"
#include "../../../system/system-internal.h"
#include "../../lib/drives.h"
#include "harness.h"

#define DRIVE_SIZE (1024 * 1024)
#define CONVERSE_TIMEOUT_MS 10000
#define SETTLE_TIMEOUT_US (10 * G_USEC_PER_SEC)

static QmpCommandFn real_migrate;
static bool net_sandboxed;
static char *work_dir;
static bool caps_at_start[MIG_CAP__MAX];
static MigrationParameters params_at_start;
static unsigned shutdowns;

/* ---- the sandbox ---- */

/* Root: a network namespace of our own, holding only a loopback that is
 * down.  Anyone else: no tcp: at all (see uri_allowed). */
static void sandbox_network(void)
{
    net_sandboxed = geteuid() == 0 && unshare(CLONE_NEWNET) == 0;
}

/* A plain file name: no directory part, not "." or "..". */
static bool plain_name(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > 64 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) {
        return false;
    }
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

static bool uri_allowed(const char *uri)
{
    if (g_str_has_prefix(uri, "tcp:")) {
        return net_sandboxed;
    }
    if (g_str_has_prefix(uri, "unix:") || g_str_has_prefix(uri, "file:")) {
        return plain_name(strchr(uri, ':') + 1);
    }
    return true;                /* no transport: the real handler refuses it */
}

/* In front of "migrate": the real handler, unless the URI leads out of
 * the sandbox; then only the URI parser sees it. */
static JsonNode *guarded_migrate(JsonObject *args, GError **errp)
{
    JsonNode *uri = json_object_get_member(args, "uri");
    const char *s = uri && JSON_NODE_HOLDS_VALUE(uri) &&
                    json_node_get_value_type(uri) == G_TYPE_STRING
                    ? json_node_get_string(uri) : NULL;
    Endpoint ep;

    if (!s || uri_allowed(s)) {
        return real_migrate(args, errp);
    }
    if (endpoint_parse(s, ~0u, &ep, NULL)) {
        endpoint_clear(&ep);
    }
    qmp_set_error(errp, QMP_ERR_GENERIC, "fuzz sandbox: '%s' would leave the process", s);
    return NULL;
}

/* ---- blkmigd's set-up, as system/main.c does it ---- */

static void forward_runstate_event(bool running, void *opaque)
{
    qmp_event_emit(running ? "RESUME" : "STOP", NULL);
}

static void count_shutdown(void)
{
    shutdowns++;
}

static void open_drive(void)
{
    g_autofree char *dir = fuzz_scratch_path("drive");
    g_autofree char *path = g_build_filename(dir, "disk0.raw", NULL);

    g_mkdir(dir, 0700);
    td_open_drive("disk0", path, DRIVE_SIZE);
    td_write_drive(bdrv_find("disk0"), 65536, 8192, 7);
}

static void install_blkmigd(void)
{
    const char *why = NULL;

    block_migration_register();
    disk_verify_register();
    storage_check_register();
    runstate_set_event_sink(forward_runstate_event, NULL);
    system_set_shutdown_handler(count_shutdown);
    vm_ops_install(true);
    qmp_register_builtin_commands();
    qmp_register_runstate_commands();
    real_migrate = qmp_find_command("migrate");
    qmp_register_command("migrate", guarded_migrate);
    g_assert_true(vm_start(&why));
}

/* A listener nobody uses makes this thread the server's (events from
 * migration threads are then queued for it, as in blkmigd); the inputs'
 * connections are handed over as if it had accepted them. */
static void start_server(void)
{
    g_autofree char *path = fuzz_scratch_path("qmp.sock");
    g_autofree char *uri = g_strdup_printf("unix:%s", path);
    GError *err = NULL;

    g_assert_true(qmp_server_start(uri, &err));
    g_assert_no_error(err);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_init();
    sandbox_network();
    open_drive();
    work_dir = fuzz_scratch_path("work");
    g_mkdir(work_dir, 0700);
    install_blkmigd();
    start_server();
    for (int i = 0; i < MIG_CAP__MAX; i++) {
        caps_at_start[i] = mig_cap_enabled(i);
    }
    mig_params_get(&params_at_start);
    return 0;
}

/* ---- one input ---- */

static void pump(void)
{
    for (int i = 0; i < 64 && g_main_context_iteration(NULL, FALSE); i++) {
    }
}

/* Let the main context run until nothing is left to do now and no
 * migration runs (cancelled first, its thread joined: a thread still
 * exiting when libFuzzer looks for leaks would show its GSlice
 * magazines as one). */
static void settle(void)
{
    gint64 deadline = g_get_monotonic_time() + SETTLE_TIMEOUT_US;
    bool joined = false;

    migration_cancel();
    while (migration_is_active() || g_main_context_pending(NULL) || !joined) {
        if (!migration_is_active() && !joined) {
            migration_shutdown();
            joined = true;
        }
        if (g_get_monotonic_time() > deadline) {
            fprintf(stderr, "a migration or the main loop did not settle within %d s\n",
                    (int)(SETTLE_TIMEOUT_US / G_USEC_PER_SEC));
            abort();
        }
        pump();
        g_usleep(1000);
    }
}

static void restore_options(void)
{
    MigrationParametersUpdate u = {
        .p = params_at_start,
        .has_max_bandwidth = true, .has_downtime_limit = true,
        .has_dirty_granularity = true, .has_multifd_channels = true,
        .has_compress_level = true, .has_compress_zstd_level = true,
        .has_compress_algorithm = true, .has_max_inflight = true,
        .has_link_timeout = true,
    };
    GError *err = NULL;

    for (int i = 0; i < MIG_CAP__MAX; i++) {
        mig_cap_set(i, caps_at_start[i]);
    }
    g_assert_true(mig_params_apply(&u, &err));
    g_assert_no_error(err);
}

/* Whatever the input made in the scratch directory (file: streams). */
static void empty_work_dir(void)
{
    GDir *d = g_dir_open(work_dir, 0, NULL);
    const char *name;

    while (d && (name = g_dir_read_name(d))) {
        g_autofree char *path = g_build_filename(work_dir, name, NULL);
        g_unlink(path);
    }
    if (d) {
        g_dir_close(d);
    }
}

static void restore_state(void)
{
    settle();
    restore_options();
    user_objects_clear();
    if (!runstate_is_running()) {
        vm_start_force();
    }
    empty_work_dir();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fds[2];
    int cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    /* Plain names in URIs land in the scratch directory (libFuzzer reads
     * its own arguments relative to where it was started: go back). */
    g_assert_cmpint(chdir(work_dir), ==, 0);
    fuzz_socketpair(fds);
    qmp_server_conn_new(fds[0], NULL, g_strdup("fuzz"));
    fuzz_converse(fds[1], data, size, pump, CONVERSE_TIMEOUT_MS);
    restore_state();
    g_assert_cmpint(fchdir(cwd), ==, 0);
    close(cwd);
    return 0;
}
