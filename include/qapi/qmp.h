/* QMP server: JSON protocol over unix/tcp sockets, command table, events.
 *
 * Runs on the GLib main context of the thread that called qmp_server_start
 * (blkmigd's main thread); command handlers run there.  qmp_event_emit may
 * be called from any thread. */
#ifndef QAPI_QMP_H
#define QAPI_QMP_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdbool.h>

/* Error classes, as QEMU names them. */
#define QMP_ERROR_GENERIC           "GenericError"
#define QMP_ERROR_COMMAND_NOT_FOUND "CommandNotFound"
#define QMP_ERROR_DEVICE_NOT_FOUND  "DeviceNotFound"
#define QMP_ERROR_DEVICE_NOT_ACTIVE "DeviceNotActive"

GQuark qmp_error_quark(void);
#define QMP_ERROR qmp_error_quark()
typedef enum {
    QMP_ERR_GENERIC,
    QMP_ERR_COMMAND_NOT_FOUND,
    QMP_ERR_DEVICE_NOT_FOUND,
    QMP_ERR_DEVICE_NOT_ACTIVE,
} QmpErrorCode;

/* A handler gets the "arguments" object (never NULL; empty when absent) and
 * returns the "return" value (a new JsonNode, NULL meaning {}) or sets
 * *errp (QMP_ERROR domain picks the class; any other domain is
 * GenericError). */
typedef JsonNode *(*QmpCommandFn)(JsonObject *args, GError **errp);

void qmp_register_command(const char *name, QmpCommandFn fn);
/* Registers qmp_capabilities, query-version, query-commands, quit-less
 * core commands, object-add and object-del, block and migration
 * commands. */
void qmp_register_builtin_commands(void);

/* Listen on ENDPOINT_URI (unix:PATH or tcp:HOST:PORT); any number of
 * clients.  Returns false with errp on failure. */
bool qmp_server_start(const char *endpoint_uri, GError **errp);
/* The same over TLS when CREDS_ID (tcp: only) names tls-creds objects
 * with endpoint=server: each client's handshake must succeed within 10 s
 * (and, with AUTHZ_ID, its certificate pass that authz object), or it is
 * refused with a log line while the monitor goes on serving others. */
bool qmp_server_start_tls(const char *endpoint_uri, const char *creds_id,
                          const char *authz_id, GError **errp);
void qmp_server_stop(void);

/* Send {"event": NAME, "data": DATA, "timestamp": {...}} to every client
 * that finished capabilities negotiation.  Takes ownership of DATA (may be
 * NULL).  Thread-safe. */
void qmp_event_emit(const char *name, JsonObject *data);

/* Argument helpers: fetch with type check; missing optional -> default.
 * Errors read "Parameter 'uri' is missing" / "Parameter 'uri' expects a
 * string", matching QEMU. */
const char *qmp_arg_str(JsonObject *args, const char *name, bool required, GError **errp);

/* Added by qapi/: */

/* A JSON boolean member NAME ("Parameter 'blk' expects a boolean"); a
 * missing member leaves *OUT unchanged. */
bool qmp_arg_bool(JsonObject *args, const char *name, bool *out, GError **errp);
/* A JSON integer member NAME ("Parameter 'speed' expects an integer"); a
 * missing member leaves *OUT unchanged and *HAS (optional) false. */
bool qmp_arg_int(JsonObject *args, const char *name, bool *has, int64_t *out, GError **errp);
/* Fails with "Parameter 'foo' is unexpected" when ARGS has a member not in
 * the NULL-terminated list of names that follows ERRP. */
bool qmp_args_only(JsonObject *args, GError **errp, ...) G_GNUC_NULL_TERMINATED;

/* migrate-incoming is accepted only while FN returns true (blkmigd: the
 * runstate is inmigrate).  Without a predicate it is always refused with
 * "'-incoming' was not specified on the command line". */
typedef bool (*QmpIncomingAllowedFn)(void);
void qmp_set_incoming_allowed(QmpIncomingAllowedFn fn);

/* Deliver events queued by other threads now (blkmigd calls it after its
 * main loop ended, before qmp_server_stop). */
void qmp_events_flush(void);

/* Version string reported by query-version and the greeting. */
#define BLKMIG_VERSION_MAJOR 0
#define BLKMIG_VERSION_MINOR 1
#define BLKMIG_VERSION_MICRO 0

#endif
