/* Private interfaces between the files of blkmigd (system/). */
#ifndef SYSTEM_INTERNAL_H
#define SYSTEM_INTERNAL_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#define BLKMIGD_ERROR g_quark_from_static_string("blkmigd-error")

/* cmdline.c: the command line, syntax-checked. */
typedef struct BlkmigdConfig {
    GPtrArray *drives;      /* --drive option strings */
    GPtrArray *qmp;         /* --qmp endpoint URIs */
    GPtrArray *workloads;   /* --workload option strings */
    GPtrArray *objects;     /* --object option strings */
    char *nbd;
    char *incoming;
    char *pidfile;
    char *log;
    char *machine;          /* --machine, or NULL (the default) */
    bool paused;
    bool daemonize;
} BlkmigdConfig;

/* Returns -1 to go on with CFG filled in, or the exit code (0 after
 * --help/--version, 64 after a message on stderr). */
int cmdline_parse(int argc, char **argv, BlkmigdConfig *cfg);
void cmdline_config_clear(BlkmigdConfig *cfg);

/* keyval.c: "key=value,key=value" option strings (",," is a literal
 * comma).  OPTION names the command-line option in messages. */
typedef struct KeyValue {
    char *key;
    char *value;
} KeyValue;
/* Array of KeyValue *, in order, keys unique; g_ptr_array_unref frees. */
GPtrArray *keyval_parse(const char *option, const char *str, GError **errp);
/* on/off (also yes/no, true/false). */
bool keyval_bool(const char *option, const KeyValue *kv, bool *out, GError **errp);

/* object-opts.c: --object TYPE,id=ID,... or a JSON object.  Check the
 * syntax only, or create and register the object. */
bool object_option_check(const char *arg, GError **errp);
bool object_option_add(const char *arg, GError **errp);

/* socket-opts.c: --qmp URI[,tls-creds=ID][,tls-authz=ID].  Check the
 * syntax only, or start serving QMP there. */
bool qmp_option_check(const char *arg, GError **errp);
bool qmp_option_start(const char *arg, GError **errp);
/* --nbd URI[,tls-creds=ID][,tls-authz=ID][,tls=off|on|require] (TLS also
 * on unix: sockets, as nbds+unix:// clients use it). */
bool nbd_option_check(const char *arg, GError **errp);
bool nbd_option_start(const char *arg, GError **errp);

/* runstate.c, beyond include/system/runstate.h: */
/* Start the guest whatever the state (migration outcomes), except while
 * shutting down. */
void vm_start_force(void);
/* Stop the guest for good, without a STOP event; state shutdown. */
void vm_shutdown(void);

/* vm-ops.c: migration's hooks into the guest. */
void vm_ops_install(bool autostart);
/* "stop" while waiting for an incoming migration: stay paused after it. */
void vm_ops_set_autostart(bool autostart);
/* The runstate a QEMU source had (its globalstate section; NULL: none
 * sent): anything but "running" leaves the guest paused after the
 * incoming migration, as QEMU does. */
void vm_ops_source_runstate(const char *runstate, void *opaque);
/* An NBD export runs: a completed migration must refuse its writes. */
void vm_ops_set_nbd_in_use(bool in_use);

/* guest-nbd.c: the NBD export as a guest device. */
typedef struct NbdServerTls NbdServerTls;
bool guest_nbd_start(const char *uri, const NbdServerTls *tls, GError **errp);
void guest_nbd_stop(void);

/* qmp-runstate.c: stop, cont, query-status, quit. */
void qmp_register_runstate_commands(void);

/* runstate.c: a SHUTDOWN event giving REASON ("host-qmp-quit",
 * "host-signal"), then the shutdown handler (main.c ends its main loop);
 * only the first request counts.  Main thread only. */
void system_shutdown_request(const char *reason);
void system_set_shutdown_handler(void (*handler)(void));

/* daemonize.c */
/* Fork; the parent waits until the child calls daemonize_ready (exit 0)
 * or dies (its exit code).  Returns in the child only. */
bool daemonize_start(GError **errp);
/* Start-up is complete: release the parent and detach from the terminal.
 * No-op without daemonize_start. */
void daemonize_ready(void);
/* Write our pid to PATH (kept locked while we run) / remove it. */
bool pidfile_write(const char *path, GError **errp);
void pidfile_remove(void);

#endif
