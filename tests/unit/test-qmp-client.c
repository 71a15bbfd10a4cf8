/* qmp-client against a scripted fake server on a real unix socket:
 * framing by braces, events queued around replies, id matching, errors. */
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "qapi/qmp-client.h"

#define GREETING "{\"QMP\": {\"version\": {\"qemu\": {\"major\": 0, \"minor\": 1, " \
                 "\"micro\": 0}}, \"capabilities\": []}}\r\n"

typedef void (*ServerScript)(int fd);

typedef struct FakeServer {
    char *dir;
    char *path;
    int listen_fd;
    ServerScript script;
    GThread *thread;
} FakeServer;

static void send_text(int fd, const char *text)
{
    size_t len = strlen(text);
    g_assert_cmpint(send(fd, text, len, MSG_NOSIGNAL), ==, (ssize_t)len);
}

/* One request line from the client, parsed. */
static JsonNode *recv_request(int fd)
{
    GString *line = g_string_new("");
    char ch;
    while (read(fd, &ch, 1) == 1 && ch != '\n') {
        g_string_append_c(line, ch);
    }
    JsonNode *node = json_from_string(line->str, NULL);
    g_assert_nonnull(node);
    g_string_free(line, TRUE);
    return node;
}

/* The id of a request, as JSON text. */
static char *request_id(JsonNode *req)
{
    JsonNode *id = json_object_get_member(json_node_get_object(req), "id");
    g_assert_nonnull(id);
    return json_to_string(id, FALSE);
}

/* Answer one request with REPLY_FMT (a printf format taking the id). */
static void answer(int fd, const char *reply_fmt)
{
    JsonNode *req = recv_request(fd);
    g_autofree char *id = request_id(req);
    g_autofree char *reply = g_strdup_printf(reply_fmt, id);
    send_text(fd, reply);
    json_node_unref(req);
}

static gpointer server_thread(gpointer opaque)
{
    FakeServer *s = opaque;
    int fd = accept(s->listen_fd, NULL, NULL);
    g_assert_cmpint(fd, >=, 0);
    s->script(fd);
    close(fd);
    return NULL;
}

static void server_start(FakeServer *s, ServerScript script)
{
    s->dir = g_dir_make_tmp("qmp-client-XXXXXX", NULL);
    s->path = g_build_filename(s->dir, "qmp.sock", NULL);
    s->script = script;
    s->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr = { .sun_family = AF_UNIX };
    g_strlcpy(addr.sun_path, s->path, sizeof(addr.sun_path));
    g_assert_cmpint(bind(s->listen_fd, (struct sockaddr *)&addr, sizeof(addr)), ==, 0);
    g_assert_cmpint(listen(s->listen_fd, 1), ==, 0);
    s->thread = g_thread_new("fake-qmp", server_thread, s);
}

static void server_stop(FakeServer *s)
{
    g_thread_join(s->thread);
    close(s->listen_fd);
    unlink(s->path);
    rmdir(s->dir);
    g_free(s->path);
    g_free(s->dir);
}

/* Greeting in pieces, an event before and after the capabilities reply
 * (all in one write), braces and quotes inside strings. */
static void script_framing(int fd)
{
    send_text(fd, "{\"QMP\": {\"version\": {\"qemu\": {\"ma");
    g_usleep(20000);
    send_text(fd, "jor\": 0, \"minor\": 1, \"micro\": 0}}, \"capabilities\": []}}\r");
    g_usleep(20000);
    send_text(fd, "\n");
    answer(fd, "{\"event\": \"E1\", \"data\": {\"s\": \"} { \\\" ]\"}}\r\n"
               "{\"return\": {}, \"id\": %s}\r\n"
               "{\"event\": \"E2\"}\r\n");
    answer(fd, "{\"return\": {\"text\": \"a}b{c\\\\\"}, \"id\": %s}\r\n");
}

static void test_framing(void)
{
    FakeServer s = { 0 };
    server_start(&s, script_framing);
    GError *err = NULL;
    QmpClient *c = qmp_client_open(s.path, &err);
    g_assert_no_error(err);
    g_assert_nonnull(qmp_client_greeting(c));

    JsonNode *ret = qmp_client_execute(c, "query-x", NULL, NULL, &err);
    g_assert_no_error(err);
    const char *text = json_object_get_string_member(json_node_get_object(ret), "text");
    g_assert_cmpstr(text, ==, "a}b{c\\");
    json_node_unref(ret);

    /* E1 arrived before the first reply, E2 after it: both queued. */
    JsonNode *e2 = qmp_client_event_pop(c, "E2");
    JsonNode *e1 = qmp_client_event_wait(c, NULL, 0, &err);
    g_assert_no_error(err);
    g_assert_nonnull(e1);
    g_assert_nonnull(e2);
    JsonObject *d = json_object_get_object_member(json_node_get_object(e1), "data");
    g_assert_cmpstr(json_object_get_string_member(d, "s"), ==, "} { \" ]");
    g_assert_null(qmp_client_event_pop(c, NULL));
    json_node_unref(e1);
    json_node_unref(e2);
    qmp_client_close(c);
    server_stop(&s);
}

static void script_errors(int fd)
{
    send_text(fd, GREETING);
    answer(fd, "{\"return\": {}, \"id\": %s}\n");
    answer(fd, "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"no such\"},"
               " \"id\": %s}\n");
    answer(fd, "{\"return\": {}, \"id\": \"not-%s\"}\n");
}

static void test_errors(void)
{
    FakeServer s = { 0 };
    server_start(&s, script_errors);
    GError *err = NULL;
    QmpClient *c = qmp_client_open(s.path, &err);
    g_assert_no_error(err);

    g_autofree char *cls = NULL;
    g_assert_null(qmp_client_execute(c, "bad", NULL, &cls, &err));
    g_assert_error(err, QMP_CLIENT_ERROR, QMP_CLIENT_ERR_COMMAND);
    g_assert_cmpstr(err->message, ==, "no such");
    g_assert_cmpstr(cls, ==, "CommandNotFound");
    g_clear_error(&err);

    /* A reply that does not echo our id is refused. */
    g_assert_null(qmp_client_execute(c, "x", NULL, NULL, &err));
    g_assert_error(err, QMP_CLIENT_ERROR, QMP_CLIENT_ERR_PROTOCOL);
    g_clear_error(&err);
    qmp_client_close(c);
    server_stop(&s);
}

/* Negotiates, then holds the next request unanswered until the client
 * gives up, then closes. */
static void script_silent(int fd)
{
    send_text(fd, GREETING);
    answer(fd, "{\"return\": {}, \"id\": %s}\n");
    json_node_unref(recv_request(fd));
    json_node_unref(recv_request(fd));
}

static void test_timeout_and_eof(void)
{
    FakeServer s = { 0 };
    server_start(&s, script_silent);
    GError *err = NULL;
    QmpClient *c = qmp_client_open(s.path, &err);
    g_assert_no_error(err);

    qmp_client_set_timeout(c, 100);
    gint64 t0 = g_get_monotonic_time();
    g_assert_null(qmp_client_execute(c, "slow", NULL, NULL, &err));
    g_assert_error(err, QMP_CLIENT_ERROR, QMP_CLIENT_ERR_TIMEOUT);
    g_assert_cmpint(g_get_monotonic_time() - t0, >=, 90000);
    g_clear_error(&err);

    /* The server reads one more request and hangs up. */
    qmp_client_set_timeout(c, 5000);
    g_assert_null(qmp_client_execute(c, "again", NULL, NULL, &err));
    g_assert_error(err, QMP_CLIENT_ERROR, QMP_CLIENT_ERR_IO);
    g_clear_error(&err);
    qmp_client_close(c);
    server_stop(&s);
}

static void script_garbage(int fd)
{
    send_text(fd, "hello there\r\n");
}

static void test_garbage_greeting(void)
{
    FakeServer s = { 0 };
    server_start(&s, script_garbage);
    GError *err = NULL;
    g_assert_null(qmp_client_open(s.path, &err));
    g_assert_error(err, QMP_CLIENT_ERROR, QMP_CLIENT_ERR_PROTOCOL);
    g_clear_error(&err);
    server_stop(&s);
}

static void test_connect_refused(void)
{
    GError *err = NULL;
    g_assert_null(qmp_client_open("unix:/nonexistent/qmp.sock", &err));
    g_assert_nonnull(err);
    g_clear_error(&err);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/qmp-client/framing", test_framing);
    g_test_add_func("/qmp-client/errors", test_errors);
    g_test_add_func("/qmp-client/timeout-and-eof", test_timeout_and_eof);
    g_test_add_func("/qmp-client/garbage-greeting", test_garbage_greeting);
    g_test_add_func("/qmp-client/connect-refused", test_connect_refused);
    return g_test_run();
}
