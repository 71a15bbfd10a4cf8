/* Blocking QMP client: connect, negotiate, run commands, collect events.
 *
 * One client owns one socket.  Messages are framed by balanced braces (the
 * server's "\r\n" separators are only whitespace), so a reply split across
 * reads or several messages in one read are both handled.  Events that
 * arrive while waiting for a reply are queued in arrival order.  Not
 * thread-safe: use one client per thread. */
#ifndef QAPI_QMP_CLIENT_H
#define QAPI_QMP_CLIENT_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdbool.h>

#include "util/tls.h"

typedef struct QmpClient QmpClient;

GQuark qmp_client_error_quark(void);
#define QMP_CLIENT_ERROR qmp_client_error_quark()
typedef enum {
    QMP_CLIENT_ERR_IO,        /* connect/read/write failed, or EOF */
    QMP_CLIENT_ERR_TIMEOUT,   /* nothing arrived within the timeout */
    QMP_CLIENT_ERR_PROTOCOL,  /* malformed message, unexpected reply id */
    QMP_CLIENT_ERR_COMMAND,   /* the server answered with an error */
} QmpClientErrorCode;

/* Default time to wait for a reply; can be changed per client. */
#define QMP_CLIENT_DEFAULT_TIMEOUT_MS 60000

/* Connect to unix:PATH or tcp:HOST:PORT (a string without either prefix is
 * taken as a unix socket path) and read the greeting.  The client is not
 * negotiated yet: call qmp_client_negotiate (or use qmp_client_open). */
QmpClient *qmp_client_connect(const char *uri, GError **errp);
/* qmp_client_connect + qmp_client_negotiate. */
QmpClient *qmp_client_open(const char *uri, GError **errp);
/* The same over TLS (tcp: only) with CREDS (endpoint=client; NULL: in
 * the clear).  HOSTNAME (NULL: the HOST of the URI) is the name the
 * server's certificate must carry when CREDS verify the peer.  A refusal
 * by either side fails the connect with the reason (e.g. "... the server
 * sent alert 'Certificate is required': it requires a client certificate
 * ..."). */
QmpClient *qmp_client_connect_tls(const char *uri, TlsCreds *creds, const char *hostname,
                                  GError **errp);
QmpClient *qmp_client_open_tls(const char *uri, TlsCreds *creds, const char *hostname,
                               GError **errp);
/* Close the socket and free queued events.  NULL is a no-op. */
void qmp_client_close(QmpClient *c);

/* The greeting object, borrowed (valid until close). */
JsonNode *qmp_client_greeting(QmpClient *c);
/* Run qmp_capabilities. */
bool qmp_client_negotiate(QmpClient *c, GError **errp);
/* Reply timeout in ms; negative waits forever. */
void qmp_client_set_timeout(QmpClient *c, int timeout_ms);

/* Send REQUEST (an object with "execute" and optional "arguments"; not
 * modified), adding an "id" when it has none, and read until the reply with
 * that id.  Returns the whole reply object (caller unrefs); a reply carrying
 * "error" is still returned, not turned into a GError.  A reply with
 * another id or none is a protocol error: this client keeps one request in
 * flight. */
JsonNode *qmp_client_request(QmpClient *c, JsonNode *request, GError **errp);
/* Build {"execute": COMMAND, "arguments": ARGS} (ARGS may be NULL; borrowed)
 * and return the reply's "return" member (new reference).  An error reply
 * sets QMP_CLIENT_ERR_COMMAND with the server's desc as the message; the
 * class is stored in *error_class when given (caller frees). */
JsonNode *qmp_client_execute(QmpClient *c, const char *command, JsonObject *args,
                             char **error_class, GError **errp);

/* Raw access for protocol tests: send TEXT exactly as given (nothing is
 * appended, so one message may be sent in pieces), and read the next
 * non-event message (events are queued). */
bool qmp_client_send_raw(QmpClient *c, const char *text, GError **errp);
JsonNode *qmp_client_read_reply(QmpClient *c, int timeout_ms, GError **errp);

/* First queued event named NAME (NULL: any), removed from the queue, or
 * NULL.  Caller unrefs. */
JsonNode *qmp_client_event_pop(QmpClient *c, const char *name);
/* Like qmp_client_event_pop, reading from the socket for up to TIMEOUT_MS
 * (negative: forever) if no such event is queued.  NULL with
 * QMP_CLIENT_ERR_TIMEOUT on timeout; a reply arriving meanwhile is a
 * protocol error. */
JsonNode *qmp_client_event_wait(QmpClient *c, const char *name, int timeout_ms,
                                GError **errp);

/* Helpers for reply objects.  True when REPLY is {"error": ...}; *cls and
 * *desc (optional) are borrowed from REPLY. */
bool qmp_reply_is_error(JsonNode *reply, const char **cls, const char **desc);

/* Serialize NODE compactly (caller frees). */
char *qmp_json_to_string(JsonNode *node, bool pretty);

#endif
