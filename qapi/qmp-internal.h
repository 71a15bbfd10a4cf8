/* Private interfaces between the files of the QMP server (qapi/). */
#ifndef QAPI_QMP_INTERNAL_H
#define QAPI_QMP_INTERNAL_H

#include <glib.h>
#include <glib-unix.h>
#include <json-glib/json-glib.h>
#include <stdbool.h>
#include <stddef.h>
#include "jobs/job.h"
#include "qapi/qmp.h"
#include "util/tls.h"

/* framing.c: cuts a byte stream into top-level JSON texts by balancing
 * braces and brackets outside strings.  One message may not exceed
 * QMP_MAX_MESSAGE bytes nor nest deeper than QMP_MAX_NESTING: the splitter
 * reports an error and discards the rest of that message. */
#define QMP_MAX_MESSAGE (1024 * 1024)
#define QMP_MAX_NESTING 1024

typedef struct QmpSplitter QmpSplitter;
typedef void (*QmpTextFn)(const char *text, size_t len, void *opaque);
typedef void (*QmpFramingErrorFn)(const char *desc, void *opaque);

QmpSplitter *qmp_splitter_new(QmpTextFn on_text, QmpFramingErrorFn on_error, void *opaque);
void qmp_splitter_feed(QmpSplitter *s, const char *buf, size_t len);
void qmp_splitter_free(QmpSplitter *s);

/* message.c: wire form of messages. */
/* NODE as compact JSON followed by "\r\n"; caller frees. */
char *qmp_message_to_line(JsonNode *node);
/* {"error": {"class": ..., "desc": ...}} (+ "id" when ID is not NULL;
 * the id is copied). */
JsonNode *qmp_error_reply(const GError *err, JsonNode *id);
/* Wrap OBJ / ARR in a new node, taking over the caller's reference. */
JsonNode *qmp_node_take_object(JsonObject *obj);
JsonNode *qmp_node_take_array(JsonArray *arr);
/* A GError in the QMP domain. */
void qmp_set_error(GError **errp, QmpErrorCode code, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

/* dispatch.c: one client's protocol state and command execution. */
typedef struct QmpSession {
    bool negotiated;        /* qmp_capabilities succeeded */
} QmpSession;
/* Run one input text; returns the reply line (caller frees). */
char *qmp_dispatch_text(QmpSession *session, const char *text, size_t len);
/* The reply line to a framing error (message too large, ...). */
char *qmp_framing_error_line(const char *desc);

/* commands.c: the command table. */
QmpCommandFn qmp_find_command(const char *name);
/* Registered names, sorted; caller frees the list, not the strings. */
GList *qmp_command_names(void);

/* greeting.c */
char *qmp_greeting_line(void);
/* {"qemu": {"micro", "minor", "major"}, "package": "blkmig"} */
JsonNode *qmp_version_node(void);

/* server.c: watches on the server's context. */
GSource *qmp_watch_fd(int fd, GIOCondition cond, GUnixFDSourceFunc fn, gpointer data);
/* Destroy and drop *SRC (NULL is fine); *SRC becomes NULL. */
void qmp_unwatch(GSource **src);
/* Serve a new client on FD: greeting, then commands.  TLS (may be NULL)
 * is its established session and PEER (may be NULL) its name for log
 * lines; the connection takes both. */
void qmp_server_conn_new(int fd, TlsSession *tls, char *peer);
/* server.c: write LINE to every negotiated client (main thread only). */
void qmp_server_broadcast(const char *line);
/* The main context the server runs on (the default one until started). */
GMainContext *qmp_server_context(void);
/* True when called from the thread that runs the server's context. */
bool qmp_server_in_main_thread(void);

/* server-tls.c: run the TLS handshake of the client accepted on FD
 * without blocking the loop, then hand it to qmp_server_conn_new; a
 * client that fails it is refused with a log line.  AUTHZ_ID (may be
 * NULL) names the authz object its certificate must pass. */
void qmp_tls_accept(int fd, TlsCreds *creds, const char *authz_id);
/* Drop the handshakes in progress (server stop). */
void qmp_tls_accept_stop(void);

/* commands-*.c */
void qmp_register_core_commands(void);
void qmp_register_object_commands(void);
void qmp_register_block_commands(void);
void qmp_register_migration_commands(void);
void qmp_register_migration_option_commands(void);
/* migration-events.c: MIGRATION events. */
void qmp_migration_events_init(void);
/* commands-jobs.c (block-job-*, query-jobs; with job-events.c's events),
 * commands-stream.c (block-stream, x-block-stream-range). */
void qmp_register_job_commands(void);
void qmp_register_stream_commands(void);
/* job-events.c: JOB_STATUS_CHANGE, BLOCK_JOB_* events. */
void qmp_job_events_init(void);
/* The members BLOCK_JOB_COMPLETED, _CANCELLED and _READY share, which
 * query-block-jobs' BlockJobInfo starts from. */
JsonObject *qmp_block_job_members(const JobInfo *info);

#endif
