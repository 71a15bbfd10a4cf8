/* Events: stamped when emitted (from any thread), delivered from the main
 * thread only, since the client list belongs to it.  Emitters off the main
 * thread queue the finished line and wake the main context; the main
 * thread itself delivers at once, so an event caused by a command (STOP
 * from "stop") reaches clients before that command's reply, as in QEMU. */
#include "qmp-internal.h"

static GAsyncQueue *pending;      /* char * lines */
static gint delivery_scheduled;   /* an idle callback is attached */
static GOnce init_once = G_ONCE_INIT;

static gpointer init_queue(gpointer unused)
{
    pending = g_async_queue_new_full(g_free);
    return NULL;
}

static GAsyncQueue *queue(void)
{
    g_once(&init_once, init_queue, NULL);
    return pending;
}

void qmp_events_flush(void)
{
    char *line;
    while ((line = g_async_queue_try_pop(queue()))) {
        qmp_server_broadcast(line);
        g_free(line);
    }
}

static gboolean deliver_pending(gpointer unused)
{
    /* Reset first: an event queued after this point schedules a new run. */
    g_atomic_int_set(&delivery_scheduled, 0);
    qmp_events_flush();
    return G_SOURCE_REMOVE;
}

static void schedule_delivery(void)
{
    if (g_atomic_int_compare_and_exchange(&delivery_scheduled, 0, 1)) {
        GSource *idle = g_idle_source_new();
        g_source_set_callback(idle, deliver_pending, NULL, NULL);
        g_source_attach(idle, qmp_server_context());
        g_source_unref(idle);
    }
}

static JsonObject *timestamp_now(void)
{
    gint64 now = g_get_real_time();
    JsonObject *ts = json_object_new();
    json_object_set_int_member(ts, "seconds", now / G_USEC_PER_SEC);
    json_object_set_int_member(ts, "microseconds", now % G_USEC_PER_SEC);
    return ts;
}

static char *event_line(const char *name, JsonObject *data)
{
    JsonObject *event = json_object_new();
    json_object_set_string_member(event, "event", name);
    if (data) {
        json_object_set_object_member(event, "data", data);
    }
    json_object_set_object_member(event, "timestamp", timestamp_now());
    JsonNode *node = qmp_node_take_object(event);
    char *line = qmp_message_to_line(node);
    json_node_unref(node);
    return line;
}

void qmp_event_emit(const char *name, JsonObject *data)
{
    g_async_queue_push(queue(), event_line(name, data));
    if (qmp_server_in_main_thread()) {
        qmp_events_flush();
    } else {
        schedule_delivery();
    }
}
