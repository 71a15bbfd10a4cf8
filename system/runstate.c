/* The emulator's runstate, the guest devices it starts and stops, and
 * the request to shut the emulator down.
 *
 * Two locks: transition_lock serialises starting/stopping the guest (the
 * migration thread stops it for switchover while the main thread may run
 * "cont"), and is held while devices are told, so a device's on_stop has
 * returned before anyone sees the new state.  state_lock only guards the
 * state value, so queries never wait for a transition. */
#include "system/runstate.h"

#include <glib.h>
#include <string.h>

#include "qapi/qmp.h"
#include "system-internal.h"

static GMutex transition_lock;
static GMutex state_lock;
static RunState current_state = RUN_STATE_PRELAUNCH;
static bool guest_running;          /* devices were told to start */
static GArray *devices;             /* GuestDeviceOps, in registration order */
static RunstateEventFn event_sink;
static void *event_sink_opaque;
static bool shutdown_requested;     /* main thread only */
static void (*shutdown_handler)(void);

static const char *const state_names[] = {
    [RUN_STATE_PRELAUNCH] = "prelaunch",
    [RUN_STATE_RUNNING] = "running",
    [RUN_STATE_PAUSED] = "paused",
    [RUN_STATE_INMIGRATE] = "inmigrate",
    [RUN_STATE_POSTMIGRATE] = "postmigrate",
    [RUN_STATE_FINISH_MIGRATE] = "finish-migrate",
    [RUN_STATE_SHUTDOWN] = "shutdown",
};

const char *runstate_name(RunState s)
{
    return (unsigned)s < G_N_ELEMENTS(state_names) ? state_names[s] : "unknown";
}

RunState runstate_get(void)
{
    g_mutex_lock(&state_lock);
    RunState s = current_state;
    g_mutex_unlock(&state_lock);
    return s;
}

bool runstate_is_running(void)
{
    return runstate_get() == RUN_STATE_RUNNING;
}

void runstate_set(RunState s)
{
    g_mutex_lock(&state_lock);
    current_state = s;
    g_mutex_unlock(&state_lock);
}

void runstate_set_event_sink(RunstateEventFn fn, void *opaque)
{
    event_sink = fn;
    event_sink_opaque = opaque;
}

static void emit(bool running)
{
    if (event_sink) {
        event_sink(running, event_sink_opaque);
    }
}

/* ---- devices (transition_lock held) ---- */

static void start_devices(void)
{
    guest_running = true;
    for (guint i = 0; devices && i < devices->len; i++) {
        GuestDeviceOps *d = &g_array_index(devices, GuestDeviceOps, i);
        d->on_start(d->opaque);
    }
}

/* In reverse order: the last device started is the first stopped. */
static void stop_devices(void)
{
    for (guint i = devices ? devices->len : 0; i-- > 0;) {
        GuestDeviceOps *d = &g_array_index(devices, GuestDeviceOps, i);
        d->on_stop(d->opaque);
    }
    guest_running = false;
}

void runstate_add_device(const GuestDeviceOps *ops)
{
    g_mutex_lock(&transition_lock);
    if (!devices) {
        devices = g_array_new(FALSE, FALSE, sizeof(GuestDeviceOps));
    }
    g_array_append_val(devices, *ops);
    if (guest_running) {
        ops->on_start(ops->opaque);
    }
    g_mutex_unlock(&transition_lock);
}

void runstate_remove_device(const GuestDeviceOps *ops)
{
    g_mutex_lock(&transition_lock);
    for (guint i = devices ? devices->len : 0; i-- > 0;) {
        GuestDeviceOps *d = &g_array_index(devices, GuestDeviceOps, i);
        if (d->on_start == ops->on_start && d->on_stop == ops->on_stop &&
            d->opaque == ops->opaque) {
            g_array_remove_index(devices, i);
            break;
        }
    }
    if (devices && devices->len == 0) {
        g_clear_pointer(&devices, g_array_unref);
    }
    g_mutex_unlock(&transition_lock);
}

/* ---- transitions ---- */

void vm_stop(RunState state)
{
    g_mutex_lock(&transition_lock);
    bool was_running = guest_running;
    if (was_running) {
        stop_devices();
    }
    runstate_set(state);
    if (was_running) {
        emit(false);
    }
    g_mutex_unlock(&transition_lock);
}

/* Why "cont" may not start the guest in STATE, or NULL. */
static const char *start_refusal(RunState state)
{
    switch (state) {
    case RUN_STATE_INMIGRATE:
        return "Guest is waiting for an incoming migration";
    case RUN_STATE_POSTMIGRATE:
        return "Migration has completed: the guest now runs on the destination";
    case RUN_STATE_FINISH_MIGRATE:
        return "Migration is completing: the guest stays stopped until it ends";
    case RUN_STATE_SHUTDOWN:
        return "The emulator is shutting down";
    default:
        return NULL;
    }
}

/* transition_lock held */
static void start_locked(void)
{
    if (!guest_running) {
        start_devices();
        runstate_set(RUN_STATE_RUNNING);
        emit(true);
    } else {
        runstate_set(RUN_STATE_RUNNING);
    }
}

bool vm_start(const char **why_not)
{
    g_mutex_lock(&transition_lock);
    const char *why = start_refusal(runstate_get());
    if (!why) {
        start_locked();
    }
    g_mutex_unlock(&transition_lock);
    if (why_not) {
        *why_not = why;
    }
    return why == NULL;
}

void vm_start_force(void)
{
    g_mutex_lock(&transition_lock);
    if (runstate_get() != RUN_STATE_SHUTDOWN) {
        start_locked();
    }
    g_mutex_unlock(&transition_lock);
}

void vm_shutdown(void)
{
    g_mutex_lock(&transition_lock);
    if (guest_running) {
        stop_devices();
    }
    runstate_set(RUN_STATE_SHUTDOWN);
    g_mutex_unlock(&transition_lock);
}

/* ---- shutdown ---- */

void system_set_shutdown_handler(void (*handler)(void))
{
    shutdown_handler = handler;
}

void system_shutdown_request(const char *reason)
{
    if (shutdown_requested) {
        return;
    }
    shutdown_requested = true;
    JsonObject *data = json_object_new();
    json_object_set_boolean_member(data, "guest", FALSE);
    json_object_set_string_member(data, "reason", reason);
    qmp_event_emit("SHUTDOWN", data);
    if (shutdown_handler) {
        shutdown_handler();
    }
}
