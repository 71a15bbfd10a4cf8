/* Whole-daemon harness: QMP commands and events to a daemon, and the
 * query-migrate / query-status / migrate conveniences over them. */
#include <string.h>
#include <unistd.h>

#include "libqtest-internal.h"

#define POLL_INTERVAL_US (20 * 1000)

static void G_GNUC_NORETURN fail_qmp(QTestDaemon *d, const char *cmd, GError *err)
{
    if (qtest_reap_nohang(d)) {
        qtest_fail_dead(d, "during a QMP command");
    }
    g_autofree char *tail = qtest_daemon_log_tail(d);
    qtest_fail("QMP to '%s' failed (%s) for %s; log ends with:\n%s",
               d->name, err->message, cmd, tail);
}

static JsonNode *qmp_vsend(QTestDaemon *d, const char *fmt, va_list ap)
{
    g_autofree char *text = g_strdup_vprintf(fmt, ap);
    GError *err = NULL;
    JsonNode *request = json_from_string(text, &err);
    if (!request || !JSON_NODE_HOLDS_OBJECT(request)) {
        qtest_fail("test bug: not a JSON object: %s (%s)", text,
                   err ? err->message : "not an object");
    }
    JsonNode *reply = qmp_client_request(d->qmp, request, &err);
    json_node_unref(request);
    if (!reply) {
        fail_qmp(d, text, err);
    }
    return reply;
}

JsonNode *qtest_qmp(QTestDaemon *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    JsonNode *reply = qmp_vsend(d, fmt, ap);
    va_end(ap);
    return reply;
}

JsonNode *qtest_qmp_ok(QTestDaemon *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    JsonNode *reply = qmp_vsend(d, fmt, ap);
    va_end(ap);

    const char *cls, *desc;
    if (qmp_reply_is_error(reply, &cls, &desc)) {
        g_autofree char *text = qmp_json_to_string(reply, false);
        qtest_fail("QMP command to '%s' failed: %s", d->name, text);
    }
    JsonNode *ret = json_object_get_member(json_node_get_object(reply), "return");
    if (!ret) {
        g_autofree char *text = qmp_json_to_string(reply, false);
        qtest_fail("QMP reply from '%s' has no return: %s", d->name, text);
    }
    ret = json_node_ref(ret);
    json_node_unref(reply);
    return ret;
}

char *qtest_qmp_error(QTestDaemon *d, char **desc_out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    JsonNode *reply = qmp_vsend(d, fmt, ap);
    va_end(ap);

    const char *cls, *desc;
    if (!qmp_reply_is_error(reply, &cls, &desc)) {
        g_autofree char *text = qmp_json_to_string(reply, false);
        qtest_fail("QMP command to '%s' was expected to fail: %s", d->name, text);
    }
    char *cls_copy = g_strdup(cls);
    if (desc_out) {
        *desc_out = g_strdup(desc);
    }
    json_node_unref(reply);
    return cls_copy;
}

JsonNode *qtest_event_wait(QTestDaemon *d, const char *name, int timeout_ms)
{
    GError *err = NULL;
    JsonNode *ev = qmp_client_event_wait(d->qmp, name, timeout_ms, &err);
    if (!ev) {
        if (!g_error_matches(err, QMP_CLIENT_ERROR, QMP_CLIENT_ERR_TIMEOUT)) {
            fail_qmp(d, name, err);
        }
        g_error_free(err);
    }
    return ev;
}

char *qtest_runstate(QTestDaemon *d)
{
    JsonNode *ret = qtest_qmp_ok(d, "{\"execute\": \"query-status\"}");
    char *state = g_strdup(qtest_json_str(ret, "status"));
    json_node_unref(ret);
    return state;
}

JsonNode *qtest_query_migrate(QTestDaemon *d)
{
    return qtest_qmp_ok(d, "{\"execute\": \"query-migrate\"}");
}

static bool status_is_final(const char *status)
{
    return !strcmp(status, "completed") || !strcmp(status, "failed") ||
           !strcmp(status, "cancelled");
}

static JsonNode *migrate_poll(QTestDaemon *d, const char *want, int timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    for (;;) {
        JsonNode *info = qtest_query_migrate(d);
        JsonNode *st = qtest_json_get(info, "status");
        const char *status = st ? json_node_get_string(st) : "(none)";
        if (want ? !strcmp(status, want) : status_is_final(status)) {
            return info;
        }
        if (want && status_is_final(status)) {
            g_autofree char *text = qmp_json_to_string(info, false);
            g_autofree char *tail = qtest_daemon_log_tail(d);
            qtest_fail("'%s' migration ended '%s' while waiting for '%s': %s\nlog:\n%s",
                       d->name, status, want, text, tail);
        }
        if (g_get_monotonic_time() > deadline) {
            g_autofree char *text = qmp_json_to_string(info, false);
            g_autofree char *tail = qtest_daemon_log_tail(d);
            qtest_fail("'%s' migration still '%s' after %d ms: %s\nlog:\n%s",
                       d->name, status, timeout_ms, text, tail);
        }
        json_node_unref(info);
        g_usleep(POLL_INTERVAL_US);
    }
}

JsonNode *qtest_migrate_wait(QTestDaemon *d, int timeout_ms)
{
    return migrate_poll(d, NULL, timeout_ms);
}

JsonNode *qtest_migrate_wait_status(QTestDaemon *d, const char *status, int timeout_ms)
{
    return migrate_poll(d, status, timeout_ms);
}

void qtest_wait_runstate(QTestDaemon *d, const char *state, int timeout_ms)
{
    gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
    for (;;) {
        g_autofree char *now = qtest_runstate(d);
        if (!strcmp(now, state)) {
            return;
        }
        if (g_get_monotonic_time() > deadline) {
            qtest_fail("'%s' runstate is '%s', expected '%s' within %d ms",
                       d->name, now, state, timeout_ms);
        }
        g_usleep(POLL_INTERVAL_US);
    }
}

void qtest_set_caps(QTestDaemon *d, ...)
{
    GString *caps = g_string_new("");
    va_list ap;
    va_start(ap, d);
    for (const char *name = va_arg(ap, const char *); name; name = va_arg(ap, const char *)) {
        g_string_append_printf(caps, "%s{\"capability\": \"%s\", \"state\": true}",
                               caps->len ? ", " : "", name);
    }
    va_end(ap);
    JsonNode *ret = qtest_qmp_ok(d, "{\"execute\": \"migrate-set-capabilities\","
                                 " \"arguments\": {\"capabilities\": [%s]}}", caps->str);
    json_node_unref(ret);
    g_string_free(caps, TRUE);
}

void qtest_set_params(QTestDaemon *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *members = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    json_node_unref(qtest_qmp_ok(d, "{\"execute\": \"migrate-set-parameters\","
                                 " \"arguments\": {%s}}", members));
}

void qtest_migrate_start(QTestDaemon *src, const char *uri)
{
    json_node_unref(qtest_qmp_ok(src, "{\"execute\": \"migrate\", \"arguments\":"
                                 " {\"uri\": \"%s\"}}", uri));
}

char *qtest_tcp_uri(void)
{
    return g_strdup_printf("tcp:127.0.0.1:%d", qtest_free_port());
}
