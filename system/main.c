/* blkmigd: start-up, the main loop, and an orderly shutdown. */
#include <glib-unix.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "block/block.h"
#include "jobs/job.h"
#include "migration/block-migration.h"
#include "migration/disk-verify.h"
#include "migration/migration.h"
#include "migration/qemu-sections.h"
#include "migration/storage-check.h"
#include "qapi/qmp.h"
#include "system/drive.h"
#include "system/runstate.h"
#include "system/workload.h"
#include "system-internal.h"
#include "util/log.h"
#include "util/user-object.h"

static GMainLoop *main_loop;
static guint signal_sources[3];
static const int shutdown_signals[3] = { SIGINT, SIGTERM, SIGHUP };

/* What a shutdown request does here: end the main loop. */
static void quit_main_loop(void)
{
    if (main_loop) {
        g_main_loop_quit(main_loop);
    }
}

static gboolean on_signal(gpointer unused)
{
    g_message("signal received, shutting down");
    system_shutdown_request("host-signal");
    return G_SOURCE_CONTINUE;
}

/* STOP / RESUME, from whichever thread changed the runstate. */
static void forward_runstate_event(bool running, void *opaque)
{
    qmp_event_emit(running ? "RESUME" : "STOP", NULL);
}

static bool incoming_allowed(void)
{
    return runstate_get() == RUN_STATE_INMIGRATE;
}

static void install_hooks(const BlkmigdConfig *cfg)
{
    /* The handlers of the migration stream, in section order. */
    block_migration_register();
    disk_verify_register();
    storage_check_register();
    qemu_sections_register(vm_ops_source_runstate, NULL);
    if (cfg->machine) {
        migration_set_machine(cfg->machine);
    }
    migration_set_blocker_check(job_check_migration);
    runstate_set_event_sink(forward_runstate_event, NULL);
    system_set_shutdown_handler(quit_main_loop);
    vm_ops_install(!cfg->paused);
    qmp_register_builtin_commands();
    qmp_register_runstate_commands();
    qmp_set_incoming_allowed(incoming_allowed);
}

typedef bool (*StartFn)(const char *value, GError **errp);

/* Failures name the option unless the message already does. */
static bool start_option(const char *option, StartFn start, const char *value, GError **errp)
{
    GError *err = NULL;
    if (start(value, &err)) {
        return true;
    }
    if (g_str_has_prefix(err->message, option)) {
        g_propagate_error(errp, err);
    } else {
        g_set_error(errp, BLKMIGD_ERROR, 0, "%s %s: %s", option, value, err->message);
        g_error_free(err);
    }
    return false;
}

static bool start_each(const char *option, StartFn start, GPtrArray *values, GError **errp)
{
    for (guint i = 0; i < values->len; i++) {
        if (!start_option(option, start, values->pdata[i], errp)) {
            return false;
        }
    }
    return true;
}

static bool start_workload(const char *optstr, GError **errp)
{
    WorkloadOptions opts;
    if (!workload_parse(optstr, &opts, errp)) {
        return false;
    }
    bool ok = workload_start(&opts, errp);
    workload_options_clear(&opts);
    return ok;
}

static bool start_incoming(const char *uri, GError **errp)
{
    runstate_set(RUN_STATE_INMIGRATE);
    return strcmp(uri, "defer") == 0 || migration_incoming_start_relistening(uri, errp);
}

/* Objects and drives first (everything else refers to them), then the
 * sockets, then the guest. */
static bool start_up(const BlkmigdConfig *cfg, GError **errp)
{
    install_hooks(cfg);
    if (!start_each("--object", object_option_add, cfg->objects, errp) ||
        !start_each("--drive", drive_add, cfg->drives, errp) ||
        !start_each("--qmp", qmp_option_start, cfg->qmp, errp) ||
        (cfg->nbd && !start_option("--nbd", nbd_option_start, cfg->nbd, errp)) ||
        (cfg->incoming && !start_option("--incoming", start_incoming, cfg->incoming, errp)) ||
        !start_each("--workload", start_workload, cfg->workloads, errp) ||
        (cfg->pidfile && !pidfile_write(cfg->pidfile, errp))) {
        return false;
    }
    if (!cfg->incoming && !cfg->paused) {
        vm_start_force();
    }
    return true;
}

static void watch_signals(void)
{
    for (unsigned i = 0; i < G_N_ELEMENTS(shutdown_signals); i++) {
        signal_sources[i] = g_unix_signal_add(shutdown_signals[i], on_signal, NULL);
    }
}

static void unwatch_signals(void)
{
    for (unsigned i = 0; i < G_N_ELEMENTS(signal_sources); i++) {
        if (signal_sources[i]) {
            g_source_remove(signal_sources[i]);
            signal_sources[i] = 0;
        }
    }
}

/* Guest first (no new writes), then migration (its threads may still call
 * the VM hooks) and block jobs, then the devices, the QMP clients (who get
 * the last events) and the disks. */
static void tear_down(void)
{
    vm_shutdown();
    migration_cancel();
    migration_shutdown();
    job_cancel_all_sync();
    workload_stop_all();
    guest_nbd_stop();
    qmp_events_flush();
    qmp_server_stop();
    user_objects_clear();
    bdrv_close_all();
    pidfile_remove();
}

static int run(const BlkmigdConfig *cfg)
{
    GError *err = NULL;

    if (!log_setup(cfg->log, &err) || (cfg->daemonize && !daemonize_start(&err))) {
        fprintf(stderr, "blkmigd: %s\n", err->message);
        g_error_free(err);
        return 1;
    }
    if (!start_up(cfg, &err)) {
        fprintf(stderr, "blkmigd: %s\n", err->message);
        if (cfg->log) {
            g_warning("start-up failed: %s", err->message);
        }
        g_error_free(err);
        tear_down();
        drive_remove_created_files();
        return 1;
    }
    main_loop = g_main_loop_new(NULL, FALSE);
    watch_signals();
    g_message("blkmigd %d.%d.%d ready, guest %s", BLKMIG_VERSION_MAJOR,
              BLKMIG_VERSION_MINOR, BLKMIG_VERSION_MICRO, runstate_name(runstate_get()));
    daemonize_ready();
    g_main_loop_run(main_loop);
    unwatch_signals();
    tear_down();
    g_clear_pointer(&main_loop, g_main_loop_unref);
    return 0;
}

int main(int argc, char **argv)
{
    BlkmigdConfig cfg;
    int rc = cmdline_parse(argc, argv, &cfg);

    if (rc < 0) {
        signal(SIGPIPE, SIG_IGN);   /* a vanished peer is an error, not death */
        rc = run(&cfg);
    }
    cmdline_config_clear(&cfg);
    return rc;
}
