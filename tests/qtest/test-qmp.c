/* QMP protocol smoke tests against a real blkmigd. */
#include <string.h>
#include <sys/wait.h>

#include "libqtest.h"
#include "qapi/qmp-client.h"

#define DISK_SIZE (64u << 20)
#define EVENT_TIMEOUT_MS 5000

/* A daemon with one fresh 64 MiB drive "disk0" plus EXTRA arguments. */
static QTestDaemon *start(const char *name, const char *extra)
{
    g_autofree char *raw = g_strdup_printf("%s.raw", name);
    g_autofree char *disk = qtest_path(raw);
    return qtest_daemon_start(name, "--drive id=disk0,file=%s,size=%u,create=on %s",
                              disk, DISK_SIZE, extra);
}

/* A second connection to D, not negotiated. */
static QmpClient *raw_client(QTestDaemon *d)
{
    GError *err = NULL;
    QmpClient *c = qmp_client_connect(qtest_daemon_qmp_path(d), &err);
    g_assert_no_error(err);
    return c;
}

/* Run COMMAND on C and return the error class (asserting it failed). */
static char *raw_error(QmpClient *c, const char *command, char **desc)
{
    GError *err = NULL;
    char *cls = NULL;
    JsonNode *ret = qmp_client_execute(c, command, NULL, &cls, &err);
    g_assert_null(ret);
    g_assert_error(err, QMP_CLIENT_ERROR, QMP_CLIENT_ERR_COMMAND);
    if (desc) {
        *desc = g_strdup(err->message);
    }
    g_error_free(err);
    return cls;
}

static JsonNode *raw_ok(QmpClient *c, const char *command)
{
    GError *err = NULL;
    JsonNode *ret = qmp_client_execute(c, command, NULL, NULL, &err);
    g_assert_no_error(err);
    return ret;
}

/* Send TEXT raw and return the next reply. */
static JsonNode *raw_exchange(QmpClient *c, const char *text)
{
    GError *err = NULL;
    g_assert_true(qmp_client_send_raw(c, text, &err));
    JsonNode *reply = qmp_client_read_reply(c, EVENT_TIMEOUT_MS, &err);
    g_assert_no_error(err);
    return reply;
}

static void assert_usable(QTestDaemon *d)
{
    g_autofree char *state = qtest_runstate(d);
    g_assert_cmpstr(state, ==, "running");
}

static void test_greeting(void)
{
    QTestDaemon *d = start("greeting", "");
    QmpClient *c = raw_client(d);
    JsonNode *greeting = qmp_client_greeting(c);

    JsonNode *caps = qtest_json_get(greeting, "QMP.capabilities");
    g_assert_nonnull(caps);
    g_assert_true(JSON_NODE_HOLDS_ARRAY(caps));
    JsonNode *version = qtest_json_get(greeting, "QMP.version");
    g_assert_nonnull(version);
    g_assert_cmpint(qtest_json_int(version, "qemu.major"), >=, 0);
    g_assert_cmpint(qtest_json_int(version, "qemu.minor"), >=, 0);
    g_assert_cmpint(qtest_json_int(version, "qemu.micro"), >=, 0);

    /* The greeting announces the same version query-version reports. */
    JsonNode *qv = qtest_qmp_ok(d, "{\"execute\": \"query-version\"}");
    g_assert_true(json_node_equal(qtest_json_get(qv, "qemu"),
                                  qtest_json_get(version, "qemu")));
    json_node_unref(qv);
    qmp_client_close(c);
    qtest_daemon_quit(d);
}

static void test_capabilities_negotiation(void)
{
    QTestDaemon *d = start("negotiation", "");
    QmpClient *c = raw_client(d);

    /* Nothing but qmp_capabilities before negotiation. */
    g_autofree char *desc = NULL;
    g_autofree char *cls = raw_error(c, "query-status", &desc);
    g_assert_cmpstr(cls, ==, "CommandNotFound");
    g_assert_nonnull(strstr(desc, "qmp_capabilities"));

    /* Events are for negotiated clients only: a STOP caused by the other
     * client must not reach this one. */
    json_node_unref(qtest_qmp_ok(d, "{\"execute\": \"stop\"}"));
    g_free(raw_error(c, "query-status", NULL));
    g_assert_null(qmp_client_event_pop(c, NULL));

    GError *err = NULL;
    g_assert_true(qmp_client_negotiate(c, &err));
    g_assert_no_error(err);

    /* A second negotiation is refused, the session goes on. */
    g_autofree char *cls2 = raw_error(c, "qmp_capabilities", NULL);
    g_assert_cmpstr(cls2, ==, "CommandNotFound");
    json_node_unref(raw_ok(c, "query-status"));

    /* Unknown capabilities cannot be enabled. */
    QmpClient *c2 = raw_client(d);
    JsonNode *reply = raw_exchange(c2, "{\"execute\": \"qmp_capabilities\", "
                                   "\"arguments\": {\"enable\": [\"no-such-cap\"]}, "
                                   "\"id\": 5}");
    const char *ecls;
    g_assert_true(qmp_reply_is_error(reply, &ecls, NULL));
    g_assert_cmpstr(ecls, ==, "GenericError");
    json_node_unref(reply);

    qmp_client_close(c2);
    qmp_client_close(c);
    qtest_daemon_quit(d);
}

static void test_unknown_command(void)
{
    QTestDaemon *d = start("unknown", "");
    g_autofree char *desc = NULL;
    g_autofree char *cls = qtest_qmp_error(d, &desc, "{\"execute\": \"no-such-command\"}");
    g_assert_cmpstr(cls, ==, "CommandNotFound");
    g_assert_nonnull(strstr(desc, "no-such-command"));
    assert_usable(d);
    qtest_daemon_quit(d);
}

static void expect_generic_error(QmpClient *c, const char *text)
{
    JsonNode *reply = raw_exchange(c, text);
    const char *cls, *desc;
    if (!qmp_reply_is_error(reply, &cls, &desc)) {
        g_autofree char *got = qmp_json_to_string(reply, false);
        g_error("'%s' was accepted: %s", text, got);
    }
    g_assert_cmpstr(cls, ==, "GenericError");
    g_assert_cmpstr(desc, !=, "");
    json_node_unref(reply);
}

static void test_malformed_input(void)
{
    QTestDaemon *d = start("malformed", "");
    QmpClient *c = qtest_daemon_client(d);

    expect_generic_error(c, "{\"execute\": \"query-status\",,}");
    expect_generic_error(c, "{\"execute\": 42}");
    expect_generic_error(c, "{\"arguments\": {}}");
    expect_generic_error(c, "{\"execute\": \"query-status\", \"arguments\": [1]}");
    expect_generic_error(c, "{\"execute\": \"query-status\", \"bogus\": 1}");
    expect_generic_error(c, "[1, 2]");
    assert_usable(d);

    /* Two commands in one write, one split across writes: each gets its
     * own reply, in order. */
    GError *err = NULL;
    g_assert_true(qmp_client_send_raw(c, "{\"execute\": \"query-status\", \"id\": 1}"
                                      "{\"execute\": \"query-status\", \"id\": 2}\r\n"
                                      "{\"execute\": \"query-", &err));
    g_assert_true(qmp_client_send_raw(c, "status\", \"id\": 3}", &err));
    for (int id = 1; id <= 3; id++) {
        JsonNode *reply = qmp_client_read_reply(c, EVENT_TIMEOUT_MS, &err);
        g_assert_no_error(err);
        g_assert_cmpint(qtest_json_int(reply, "id"), ==, id);
        g_assert_true(qtest_json_bool(reply, "return.running"));
        json_node_unref(reply);
    }
    assert_usable(d);
    qtest_daemon_quit(d);
}

static void test_id_echo(void)
{
    QTestDaemon *d = start("id-echo", "");
    QmpClient *c = qtest_daemon_client(d);
    const char *ids[] = { "\"abc\"", "17", "{\"nested\": [1, \"x\", null]}", "-1.5" };

    for (size_t i = 0; i < G_N_ELEMENTS(ids); i++) {
        for (int fail = 0; fail <= 1; fail++) {
            g_autofree char *text = g_strdup_printf("{\"execute\": \"%s\", \"id\": %s}",
                                                    fail ? "nope" : "query-status", ids[i]);
            JsonNode *reply = raw_exchange(c, text);
            JsonNode *want = json_from_string(ids[i], NULL);
            g_assert_true(json_node_equal(qtest_json_get(reply, "id"), want));
            g_assert_cmpint(qmp_reply_is_error(reply, NULL, NULL), ==, fail);
            json_node_unref(want);
            json_node_unref(reply);
        }
    }
    /* Without an id the reply has none. */
    JsonNode *reply = raw_exchange(c, "{\"execute\": \"query-status\"}");
    g_assert_null(qtest_json_get(reply, "id"));
    json_node_unref(reply);
    qtest_daemon_quit(d);
}

static void test_query_status(void)
{
    QTestDaemon *d = start("status", "");
    JsonNode *ret = qtest_qmp_ok(d, "{\"execute\": \"query-status\"}");
    g_assert_true(qtest_json_bool(ret, "running"));
    g_assert_cmpstr(qtest_json_str(ret, "status"), ==, "running");
    json_node_unref(ret);
    qtest_daemon_quit(d);

    /* --paused is QEMU's -S: prelaunch until cont. */
    d = start("status-paused", "--paused");
    ret = qtest_qmp_ok(d, "{\"execute\": \"query-status\"}");
    g_assert_false(qtest_json_bool(ret, "running"));
    g_assert_cmpstr(qtest_json_str(ret, "status"), ==, "prelaunch");
    json_node_unref(ret);
    json_node_unref(qtest_qmp_ok(d, "{\"execute\": \"cont\"}"));
    assert_usable(d);
    qtest_daemon_quit(d);
}

static void test_query_block(void)
{
    g_autofree char *ro_path = qtest_path("block-ro.raw");
    qtest_disk_create(ro_path, 3 << 20);
    g_autofree char *extra = g_strdup_printf("--drive id=ro1,file=%s,read-only=on", ro_path);
    QTestDaemon *d = start("block", extra);
    g_autofree char *disk = qtest_path("block.raw");

    JsonNode *ret = qtest_qmp_ok(d, "{\"execute\": \"query-block\"}");
    g_assert_true(JSON_NODE_HOLDS_ARRAY(ret));
    JsonArray *list = json_node_get_array(ret);
    g_assert_cmpuint(json_array_get_length(list), ==, 2);

    JsonNode *b0 = json_array_get_element(list, 0);
    g_assert_cmpstr(qtest_json_str(b0, "device"), ==, "disk0");
    g_assert_cmpstr(qtest_json_str(b0, "inserted.file"), ==, disk);
    g_assert_cmpstr(qtest_json_str(b0, "inserted.drv"), ==, "raw");
    g_assert_false(qtest_json_bool(b0, "inserted.ro"));
    g_assert_cmpint(qtest_json_int(b0, "inserted.image.virtual-size"), ==, DISK_SIZE);
    g_assert_cmpint(qtest_json_int(b0, "inserted.image.actual-size"), ==,
                    qtest_allocated_bytes(disk));

    JsonNode *b1 = json_array_get_element(list, 1);
    g_assert_cmpstr(qtest_json_str(b1, "device"), ==, "ro1");
    g_assert_true(qtest_json_bool(b1, "inserted.ro"));
    g_assert_cmpint(qtest_json_int(b1, "inserted.image.virtual-size"), ==, 3 << 20);
    json_node_unref(ret);
    qtest_daemon_quit(d);
}

static void assert_event_shape(JsonNode *ev, const char *name)
{
    g_assert_nonnull(ev);
    g_assert_cmpstr(qtest_json_str(ev, "event"), ==, name);
    g_assert_cmpint(qtest_json_int(ev, "timestamp.seconds"), >, 1500000000);
    g_assert_cmpint(qtest_json_int(ev, "timestamp.microseconds"), <, 1000000);
}

static void test_stop_cont(void)
{
    QTestDaemon *d = start("stopcont", "");

    json_node_unref(qtest_qmp_ok(d, "{\"execute\": \"stop\"}"));
    JsonNode *ev = qtest_event_wait(d, "STOP", EVENT_TIMEOUT_MS);
    assert_event_shape(ev, "STOP");
    json_node_unref(ev);
    g_autofree char *paused = qtest_runstate(d);
    g_assert_cmpstr(paused, ==, "paused");

    json_node_unref(qtest_qmp_ok(d, "{\"execute\": \"cont\"}"));
    ev = qtest_event_wait(d, "RESUME", EVENT_TIMEOUT_MS);
    assert_event_shape(ev, "RESUME");
    json_node_unref(ev);
    assert_usable(d);
    qtest_daemon_quit(d);
}

/* State of capability NAME from query-migrate-capabilities. */
static bool cap_state(QTestDaemon *d, const char *name)
{
    JsonNode *ret = qtest_qmp_ok(d, "{\"execute\": \"query-migrate-capabilities\"}");
    JsonArray *list = json_node_get_array(ret);
    int state = -1;
    for (guint i = 0; i < json_array_get_length(list); i++) {
        JsonNode *cap = json_array_get_element(list, i);
        if (!strcmp(qtest_json_str(cap, "capability"), name)) {
            state = qtest_json_bool(cap, "state");
        }
    }
    json_node_unref(ret);
    if (state < 0) {
        g_error("capability '%s' not listed", name);
    }
    return state;
}

static void test_capabilities_unknown(void)
{
    QTestDaemon *d = start("caps", "");
    const char *known[] = { "block", "zero-blocks", "events", "return-path" };
    for (size_t i = 0; i < G_N_ELEMENTS(known); i++) {
        cap_state(d, known[i]);
    }
    g_assert_false(cap_state(d, "block"));

    g_autofree char *desc = NULL;
    g_autofree char *cls = qtest_qmp_error(d, &desc,
        "{\"execute\": \"migrate-set-capabilities\", \"arguments\": {\"capabilities\": ["
        "{\"capability\": \"block\", \"state\": true},"
        "{\"capability\": \"no-such-cap\", \"state\": true}]}}");
    g_assert_cmpstr(cls, ==, "GenericError");
    g_assert_nonnull(strstr(desc, "no-such-cap"));
    g_assert_false(cap_state(d, "block"));  /* all or nothing */

    qtest_set_caps(d, "block", "zero-blocks", NULL);
    g_assert_true(cap_state(d, "block"));
    g_assert_true(cap_state(d, "zero-blocks"));
    qtest_daemon_quit(d);
}

static void test_parameters(void)
{
    QTestDaemon *d = start("params", "");
    JsonNode *p = qtest_qmp_ok(d, "{\"execute\": \"query-migrate-parameters\"}");
    g_assert_cmpint(qtest_json_int(p, "max-bandwidth"), ==, 128 << 20);
    g_assert_cmpint(qtest_json_int(p, "downtime-limit"), ==, 300);
    json_node_unref(p);

    json_node_unref(qtest_qmp_ok(d, "{\"execute\": \"migrate-set-parameters\", \"arguments\":"
                                 " {\"max-bandwidth\": 12345678, \"downtime-limit\": 777}}"));
    p = qtest_qmp_ok(d, "{\"execute\": \"query-migrate-parameters\"}");
    g_assert_cmpint(qtest_json_int(p, "max-bandwidth"), ==, 12345678);
    g_assert_cmpint(qtest_json_int(p, "downtime-limit"), ==, 777);
    json_node_unref(p);

    /* An invalid value in the set rejects the whole set. */
    g_free(qtest_qmp_error(d, NULL, "{\"execute\": \"migrate-set-parameters\", \"arguments\":"
                           " {\"max-bandwidth\": 1000, \"downtime-limit\": 2000001}}"));
    g_free(qtest_qmp_error(d, NULL, "{\"execute\": \"migrate-set-parameters\", \"arguments\":"
                           " {\"max-bandwidth\": -1}}"));
    g_free(qtest_qmp_error(d, NULL, "{\"execute\": \"migrate-set-parameters\", \"arguments\":"
                           " {\"downtime-limit\": \"fast\"}}"));
    p = qtest_qmp_ok(d, "{\"execute\": \"query-migrate-parameters\"}");
    g_assert_cmpint(qtest_json_int(p, "max-bandwidth"), ==, 12345678);
    g_assert_cmpint(qtest_json_int(p, "downtime-limit"), ==, 777);
    json_node_unref(p);
    qtest_daemon_quit(d);
}

static void test_migrate_errors(void)
{
    QTestDaemon *d = start("migerr", "");
    g_autofree char *desc = NULL;
    g_autofree char *cls = qtest_qmp_error(d, &desc, "{\"execute\": \"migrate\"}");
    g_assert_cmpstr(cls, ==, "GenericError");
    g_assert_nonnull(strstr(desc, "uri"));
    g_free(qtest_qmp_error(d, NULL, "{\"execute\": \"migrate\", \"arguments\":"
                           " {\"uri\": \"bogus:thing\"}}"));
    /* Nobody listens on a port we just found free: refused at once. */
    g_free(qtest_qmp_error(d, NULL, "{\"execute\": \"migrate\", \"arguments\":"
                           " {\"uri\": \"tcp:127.0.0.1:%d\"}}", qtest_free_port()));
    assert_usable(d);
    qtest_daemon_quit(d);
}

static void test_query_commands(void)
{
    QTestDaemon *d = start("commands", "");
    const char *want[] = { "qmp_capabilities", "query-version", "query-commands",
                           "query-status", "stop", "cont", "quit", "query-block",
                           "migrate-set-capabilities", "query-migrate-capabilities",
                           "migrate-set-parameters", "query-migrate-parameters",
                           "migrate", "migrate-incoming", "migrate_cancel",
                           "query-migrate" };
    JsonNode *ret = qtest_qmp_ok(d, "{\"execute\": \"query-commands\"}");
    JsonArray *list = json_node_get_array(ret);
    for (size_t i = 0; i < G_N_ELEMENTS(want); i++) {
        bool found = false;
        for (guint j = 0; j < json_array_get_length(list); j++) {
            found |= !strcmp(qtest_json_str(json_array_get_element(list, j), "name"), want[i]);
        }
        if (!found) {
            g_error("query-commands lacks '%s'", want[i]);
        }
    }
    json_node_unref(ret);
    qtest_daemon_quit(d);
}

static void test_two_clients(void)
{
    QTestDaemon *d = start("two", "");
    GError *err = NULL;
    QmpClient *c2 = qmp_client_open(qtest_daemon_qmp_path(d), &err);
    g_assert_no_error(err);

    json_node_unref(raw_ok(c2, "stop"));
    JsonNode *ev1 = qtest_event_wait(d, "STOP", EVENT_TIMEOUT_MS);
    JsonNode *ev2 = qmp_client_event_wait(c2, "STOP", EVENT_TIMEOUT_MS, &err);
    g_assert_no_error(err);
    assert_event_shape(ev1, "STOP");
    assert_event_shape(ev2, "STOP");
    json_node_unref(ev1);
    json_node_unref(ev2);

    g_autofree char *state = qtest_runstate(d);
    g_assert_cmpstr(state, ==, "paused");
    json_node_unref(qtest_qmp_ok(d, "{\"execute\": \"cont\"}"));
    JsonNode *st = raw_ok(c2, "query-status");
    g_assert_cmpstr(qtest_json_str(st, "status"), ==, "running");
    json_node_unref(st);

    /* One client leaving does not disturb the other. */
    qmp_client_close(c2);
    assert_usable(d);
    qtest_daemon_quit(d);
}

static void test_quit(void)
{
    QTestDaemon *d = start("quit", "");
    json_node_unref(qtest_qmp_ok(d, "{\"execute\": \"quit\"}"));
    JsonNode *ev = qtest_event_wait(d, "SHUTDOWN", EVENT_TIMEOUT_MS);
    assert_event_shape(ev, "SHUTDOWN");
    json_node_unref(ev);
    int status = qtest_daemon_wait_exit(d, 10000);
    g_assert_cmpint(status, !=, -1);
    g_assert_true(WIFEXITED(status));
    g_assert_cmpint(WEXITSTATUS(status), ==, 0);
    g_assert_false(qtest_daemon_alive(d));
    qtest_daemon_kill(d);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/qmp/greeting", test_greeting);
    g_test_add_func("/qmp/capabilities-negotiation", test_capabilities_negotiation);
    g_test_add_func("/qmp/unknown-command", test_unknown_command);
    g_test_add_func("/qmp/malformed-input", test_malformed_input);
    g_test_add_func("/qmp/id-echo", test_id_echo);
    g_test_add_func("/qmp/query-status", test_query_status);
    g_test_add_func("/qmp/query-block", test_query_block);
    g_test_add_func("/qmp/query-commands", test_query_commands);
    g_test_add_func("/qmp/stop-cont", test_stop_cont);
    g_test_add_func("/qmp/migrate-capabilities-unknown", test_capabilities_unknown);
    g_test_add_func("/qmp/migrate-parameters", test_parameters);
    g_test_add_func("/qmp/migrate-errors", test_migrate_errors);
    g_test_add_func("/qmp/two-clients", test_two_clients);
    g_test_add_func("/qmp/quit", test_quit);
    return g_test_run();
}
