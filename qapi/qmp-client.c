/* Blocking QMP client (see include/qapi/qmp-client.h). */
#include "qapi/qmp-client.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "util/sockets.h"
#include "util/tls.h"

/* Where the brace scanner stopped, so bytes that arrive in pieces are
 * scanned once. */
typedef struct FrameScan {
    size_t pos;        /* next byte of buf to look at */
    size_t start;      /* first byte of the current message */
    int depth;         /* nesting of {} and [] outside strings */
    bool in_string;
    bool escaped;      /* previous byte was a backslash inside a string */
} FrameScan;

struct QmpClient {
    int fd;
    TlsSession *tls;     /* NULL: in the clear */
    GByteArray *buf;     /* received bytes not yet returned as messages */
    FrameScan scan;
    GQueue events;       /* JsonNode * in arrival order */
    JsonNode *greeting;
    int timeout_ms;
    gint64 next_id;
};

G_DEFINE_QUARK(qmp-client-error-quark, qmp_client_error)

static gint64 deadline_after(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : g_get_monotonic_time() + (gint64)timeout_ms * 1000;
}

/* Milliseconds left until DEADLINE for poll(): -1 forever, 0 expired. */
static int ms_until(gint64 deadline)
{
    if (deadline < 0) {
        return -1;
    }
    gint64 left = deadline - g_get_monotonic_time();
    return left <= 0 ? 0 : (int)((left + 999) / 1000);
}

char *qmp_json_to_string(JsonNode *node, bool pretty)
{
    JsonGenerator *gen = json_generator_new();
    json_generator_set_root(gen, node);
    json_generator_set_pretty(gen, pretty);
    char *text = json_generator_to_data(gen, NULL);
    g_object_unref(gen);
    return text;
}

/* Advance the scanner over the buffered bytes.  Returns the length of a
 * complete message starting at scan.start (> 0), 0 when more bytes are
 * needed, or -1 when the stream is not a sequence of JSON objects. */
static gssize scan_frame(QmpClient *c)
{
    FrameScan *s = &c->scan;
    const char *p = (const char *)c->buf->data;

    for (; s->pos < c->buf->len; s->pos++) {
        char ch = p[s->pos];
        if (s->depth == 0) {
            if (g_ascii_isspace(ch)) {
                s->start = s->pos + 1;  /* separators between messages */
                continue;
            }
            if (ch != '{') {
                return -1;
            }
        }
        if (s->in_string) {
            if (s->escaped) {
                s->escaped = false;
            } else if (ch == '\\') {
                s->escaped = true;
            } else if (ch == '"') {
                s->in_string = false;
            }
            continue;
        }
        if (ch == '"') {
            s->in_string = true;
        } else if (ch == '{' || ch == '[') {
            s->depth++;
        } else if (ch == '}' || ch == ']') {
            if (--s->depth == 0) {
                s->pos++;
                return (gssize)(s->pos - s->start);
            }
        }
    }
    return 0;
}

/* Take the message found by scan_frame out of the buffer and parse it. */
static JsonNode *take_frame(QmpClient *c, size_t len, GError **errp)
{
    char *text = g_strndup((const char *)c->buf->data + c->scan.start, len);
    g_byte_array_remove_range(c->buf, 0, c->scan.start + len);
    memset(&c->scan, 0, sizeof(c->scan));

    GError *err = NULL;
    JsonNode *node = json_from_string(text, &err);
    if (!node || !JSON_NODE_HOLDS_OBJECT(node)) {
        g_set_error(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERR_PROTOCOL,
                    "malformed message from server (%s): %.200s",
                    err ? err->message : "not an object", text);
        g_clear_error(&err);
        if (node) {
            json_node_unref(node);
        }
        node = NULL;
    }
    g_free(text);
    return node;
}

/* Wait until DEADLINE for bytes to read (a TLS session may hold some
 * already, which poll() cannot see). */
static bool wait_readable(QmpClient *c, gint64 deadline, GError **errp)
{
    struct pollfd pfd = { .fd = c->fd, .events = POLLIN };
    int r;

    if (c->tls && tls_session_pending(c->tls) > 0) {
        return true;
    }
    do {
        r = poll(&pfd, 1, ms_until(deadline));
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        g_set_error(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERR_IO, "poll: %s", g_strerror(errno));
        return false;
    }
    if (r == 0) {
        g_set_error_literal(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERR_TIMEOUT,
                            "timed out waiting for the QMP server");
        return false;
    }
    return true;
}

/* One read (-1 with errno EAGAIN: nothing yet, TLS only). */
static ssize_t read_some(QmpClient *c, guint8 *buf, size_t len, GError **errp)
{
    ssize_t n;
    GError *err = NULL;

    if (c->tls) {
        n = tls_session_recv(c->tls, buf, len, &err);
        if (err) {
            g_set_error(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERR_IO, "%s", err->message);
            g_error_free(err);
        }
        return n;
    }
    do {
        n = read(c->fd, buf, len);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        g_set_error(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERR_IO, "read: %s", g_strerror(errno));
    }
    return n;
}

/* Read more bytes into the buffer, waiting until DEADLINE. */
static bool fill_buffer(QmpClient *c, gint64 deadline, GError **errp)
{
    guint8 chunk[16384];
    ssize_t n;

    do {
        if (!wait_readable(c, deadline, errp)) {
            return false;
        }
        n = read_some(c, chunk, sizeof(chunk), errp);
    } while (n < 0 && errno == EAGAIN && c->tls);
    if (n < 0) {
        return false;
    }
    if (n == 0) {
        g_set_error_literal(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERR_IO,
                            "connection closed by the QMP server");
        return false;
    }
    g_byte_array_append(c->buf, chunk, (guint)n);
    return true;
}

/* Next message of any kind. */
static JsonNode *read_message(QmpClient *c, gint64 deadline, GError **errp)
{
    for (;;) {
        gssize len = scan_frame(c);
        if (len > 0) {
            return take_frame(c, (size_t)len, errp);
        }
        if (len < 0) {
            g_set_error(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERR_PROTOCOL,
                        "server sent something that is not a JSON object: %.200s",
                        (const char *)c->buf->data + c->scan.start);
            return NULL;
        }
        if (!fill_buffer(c, deadline, errp)) {
            return NULL;
        }
    }
}

static bool is_event(JsonNode *msg)
{
    return json_object_has_member(json_node_get_object(msg), "event");
}

/* Next message that is not an event; events are queued. */
static JsonNode *read_non_event(QmpClient *c, gint64 deadline, GError **errp)
{
    for (;;) {
        JsonNode *msg = read_message(c, deadline, errp);
        if (!msg || !is_event(msg)) {
            return msg;
        }
        g_queue_push_tail(&c->events, msg);
    }
}

JsonNode *qmp_client_read_reply(QmpClient *c, int timeout_ms, GError **errp)
{
    return read_non_event(c, deadline_after(timeout_ms), errp);
}

static bool write_all(int fd, const char *data, size_t len, GError **errp)
{
    while (len > 0) {
        /* MSG_NOSIGNAL: a dead daemon must give an error, not kill us. */
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n < 0) {
            g_set_error(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERR_IO,
                        "write to QMP server: %s", g_strerror(errno));
            return false;
        }
        data += n;
        len -= (size_t)n;
    }
    return true;
}

bool qmp_client_send_raw(QmpClient *c, const char *text, GError **errp)
{
    GError *err = NULL;

    if (!c->tls) {
        return write_all(c->fd, text, strlen(text), errp);
    }
    if (!tls_session_write_all(c->tls, text, strlen(text), c->timeout_ms, &err)) {
        g_set_error(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERR_IO, "write to QMP server: %s",
                    err->message);
        g_error_free(err);
        return false;
    }
    return true;
}

static char *canonical_uri(const char *uri)
{
    if (g_str_has_prefix(uri, "unix:") || g_str_has_prefix(uri, "tcp:")) {
        return g_strdup(uri);
    }
    return g_strconcat("unix:", uri, NULL);
}

/* Connect to URI; *HOST (optional) gets the host of a tcp: URI. */
static int connect_uri(const char *uri, char **host, GError **errp)
{
    g_autofree char *full = canonical_uri(uri);
    Endpoint ep = { 0 };
    if (!endpoint_parse(full, (1u << ENDPOINT_TCP) | (1u << ENDPOINT_UNIX), &ep, errp)) {
        return -1;
    }
    int fd = endpoint_connect(&ep, errp);
    if (host) {
        *host = ep.kind == ENDPOINT_TCP ? g_strdup(ep.host) : NULL;
    }
    endpoint_clear(&ep);
    return fd;
}

/* The TLS handshake on C's socket, checking HOSTNAME (NULL: the URI's). */
static bool start_tls(QmpClient *c, TlsCreds *creds, const char *hostname,
                      const char *uri_host, GError **errp)
{
    GError *err = NULL;

    if (!uri_host) {
        g_set_error_literal(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERR_IO,
                            "TLS needs a tcp: address");
        return false;
    }
    c->tls = tls_session_new(creds, c->fd, hostname ? hostname : uri_host, NULL, &err);
    if (!c->tls || !tls_session_handshake(c->tls, MIN(c->timeout_ms, TLS_HANDSHAKE_TIMEOUT_MS),
                                          &err)) {
        g_set_error(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERR_IO, "%s", err->message);
        g_error_free(err);
        return false;
    }
    return true;
}

static QmpClient *client_new(int fd)
{
    QmpClient *c = g_new0(QmpClient, 1);

    c->fd = fd;
    c->buf = g_byte_array_new();
    g_queue_init(&c->events);
    c->timeout_ms = QMP_CLIENT_DEFAULT_TIMEOUT_MS;
    c->next_id = 1;
    return c;
}

QmpClient *qmp_client_connect(const char *uri, GError **errp)
{
    return qmp_client_connect_tls(uri, NULL, NULL, errp);
}

QmpClient *qmp_client_connect_tls(const char *uri, TlsCreds *creds, const char *hostname,
                                  GError **errp)
{
    g_autofree char *uri_host = NULL;
    int fd = connect_uri(uri, &uri_host, errp);
    if (fd < 0) {
        return NULL;
    }
    QmpClient *c = client_new(fd);
    GError *err = NULL;
    JsonNode *greeting = NULL;

    if (!creds || start_tls(c, creds, hostname, uri_host, &err)) {
        greeting = read_message(c, deadline_after(c->timeout_ms), &err);
    }
    if (greeting && !json_object_has_member(json_node_get_object(greeting), "QMP")) {
        g_set_error(&err, QMP_CLIENT_ERROR, QMP_CLIENT_ERR_PROTOCOL,
                    "first message from %s is not a QMP greeting", uri);
        json_node_unref(greeting);
        greeting = NULL;
    }
    if (!greeting && !creds && uri_host && err->code == QMP_CLIENT_ERR_IO) {
        /* A TLS server waits for our handshake and, after its timeout,
         * closes: say so. */
        char *msg = g_strconcat(err->message, " before its greeting (if it serves QMP over "
                                "TLS, connect with TLS credentials)", NULL);
        g_free(err->message);
        err->message = msg;
    }
    if (!greeting) {
        g_propagate_prefixed_error(errp, err, "%s: ", uri);
        qmp_client_close(c);
        return NULL;
    }
    c->greeting = greeting;
    return c;
}

QmpClient *qmp_client_open(const char *uri, GError **errp)
{
    return qmp_client_open_tls(uri, NULL, NULL, errp);
}

QmpClient *qmp_client_open_tls(const char *uri, TlsCreds *creds, const char *hostname,
                               GError **errp)
{
    QmpClient *c = qmp_client_connect_tls(uri, creds, hostname, errp);
    if (c && !qmp_client_negotiate(c, errp)) {
        qmp_client_close(c);
        return NULL;
    }
    return c;
}

void qmp_client_close(QmpClient *c)
{
    if (!c) {
        return;
    }
    if (c->tls) {
        tls_session_bye(c->tls, 0, NULL);
        tls_session_free(c->tls);
    }
    close(c->fd);
    g_byte_array_unref(c->buf);
    g_queue_clear_full(&c->events, (GDestroyNotify)json_node_unref);
    if (c->greeting) {
        json_node_unref(c->greeting);
    }
    g_free(c);
}

JsonNode *qmp_client_greeting(QmpClient *c)
{
    return c->greeting;
}

void qmp_client_set_timeout(QmpClient *c, int timeout_ms)
{
    c->timeout_ms = timeout_ms;
}

bool qmp_client_negotiate(QmpClient *c, GError **errp)
{
    JsonNode *ret = qmp_client_execute(c, "qmp_capabilities", NULL, NULL, errp);
    if (!ret) {
        return false;
    }
    json_node_unref(ret);
    return true;
}

/* The request as sent: a copy of REQUEST with an id. */
static JsonNode *with_id(QmpClient *c, JsonNode *request)
{
    JsonNode *copy = json_node_copy(request);
    JsonObject *obj = json_node_get_object(copy);
    if (!json_object_has_member(obj, "id")) {
        json_object_set_int_member(obj, "id", c->next_id++);
    }
    return copy;
}

static bool ids_match(JsonObject *request, JsonObject *reply)
{
    JsonNode *want = json_object_get_member(request, "id");
    JsonNode *got = json_object_get_member(reply, "id");
    return got && json_node_equal(want, got);
}

JsonNode *qmp_client_request(QmpClient *c, JsonNode *request, GError **errp)
{
    g_return_val_if_fail(JSON_NODE_HOLDS_OBJECT(request), NULL);
    JsonNode *sent = with_id(c, request);
    g_autofree char *text = qmp_json_to_string(sent, false);
    g_autofree char *line = g_strconcat(text, "\r\n", NULL);
    JsonNode *reply = NULL;

    if (qmp_client_send_raw(c, line, errp)) {
        reply = read_non_event(c, deadline_after(c->timeout_ms), errp);
    }
    if (reply && !ids_match(json_node_get_object(sent), json_node_get_object(reply))) {
        g_autofree char *got = qmp_json_to_string(reply, false);
        g_set_error(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERR_PROTOCOL,
                    "reply does not echo the request id: sent %s, got %.300s", text, got);
        json_node_unref(reply);
        reply = NULL;
    }
    json_node_unref(sent);
    return reply;
}

bool qmp_reply_is_error(JsonNode *reply, const char **cls, const char **desc)
{
    JsonObject *obj = json_node_get_object(reply);
    JsonNode *err = json_object_get_member(obj, "error");
    if (!err || !JSON_NODE_HOLDS_OBJECT(err)) {
        return false;
    }
    JsonObject *e = json_node_get_object(err);
    if (cls) {
        *cls = json_object_get_string_member_with_default(e, "class", "");
    }
    if (desc) {
        *desc = json_object_get_string_member_with_default(e, "desc", "");
    }
    return true;
}

static JsonNode *build_command(const char *command, JsonObject *args)
{
    JsonObject *obj = json_object_new();
    json_object_set_string_member(obj, "execute", command);
    if (args) {
        json_object_set_object_member(obj, "arguments", json_object_ref(args));
    }
    JsonNode *node = json_node_new(JSON_NODE_OBJECT);
    json_node_take_object(node, obj);
    return node;
}

JsonNode *qmp_client_execute(QmpClient *c, const char *command, JsonObject *args,
                             char **error_class, GError **errp)
{
    JsonNode *request = build_command(command, args);
    JsonNode *reply = qmp_client_request(c, request, errp);
    json_node_unref(request);
    if (!reply) {
        return NULL;
    }

    const char *cls, *desc;
    JsonNode *ret = NULL;
    if (qmp_reply_is_error(reply, &cls, &desc)) {
        if (error_class) {
            *error_class = g_strdup(cls);
        }
        g_set_error(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERR_COMMAND, "%s", desc);
    } else {
        JsonNode *r = json_object_get_member(json_node_get_object(reply), "return");
        if (r) {
            ret = json_node_copy(r);
        } else {
            g_set_error(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERR_PROTOCOL,
                        "reply to '%s' has neither return nor error", command);
        }
    }
    json_node_unref(reply);
    return ret;
}

static bool event_named(JsonNode *ev, const char *name)
{
    if (!name) {
        return true;
    }
    const char *got = json_object_get_string_member_with_default(json_node_get_object(ev),
                                                                 "event", "");
    return strcmp(got, name) == 0;
}

JsonNode *qmp_client_event_pop(QmpClient *c, const char *name)
{
    for (GList *l = c->events.head; l; l = l->next) {
        if (event_named(l->data, name)) {
            JsonNode *ev = l->data;
            g_queue_delete_link(&c->events, l);
            return ev;
        }
    }
    return NULL;
}

JsonNode *qmp_client_event_wait(QmpClient *c, const char *name, int timeout_ms,
                                GError **errp)
{
    JsonNode *ev = qmp_client_event_pop(c, name);
    gint64 deadline = deadline_after(timeout_ms);
    while (!ev) {
        JsonNode *msg = read_message(c, deadline, errp);
        if (!msg) {
            return NULL;
        }
        if (!is_event(msg)) {
            g_autofree char *text = qmp_json_to_string(msg, false);
            g_set_error(errp, QMP_CLIENT_ERROR, QMP_CLIENT_ERR_PROTOCOL,
                        "unexpected reply while waiting for event: %.300s", text);
            json_node_unref(msg);
            return NULL;
        }
        if (event_named(msg, name)) {
            ev = msg;
        } else {
            g_queue_push_tail(&c->events, msg);
        }
    }
    return ev;
}
