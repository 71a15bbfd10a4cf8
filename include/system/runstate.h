/* Emulator runstate, as QEMU names them.  Thread-safe. */
#ifndef SYSTEM_RUNSTATE_H
#define SYSTEM_RUNSTATE_H

#include <stdbool.h>

typedef enum {
    RUN_STATE_PRELAUNCH,
    RUN_STATE_RUNNING,
    RUN_STATE_PAUSED,
    RUN_STATE_INMIGRATE,
    RUN_STATE_POSTMIGRATE,
    RUN_STATE_FINISH_MIGRATE,
    RUN_STATE_SHUTDOWN,
} RunState;

const char *runstate_name(RunState s);
RunState runstate_get(void);
bool runstate_is_running(void);

/* Guest devices (workload, NBD export) register to be told when the guest
 * starts or stops.  on_stop must return only once the device has no write
 * in flight and will issue none until on_start. */
typedef struct GuestDeviceOps {
    void (*on_start)(void *opaque);
    void (*on_stop)(void *opaque);
    void *opaque;
} GuestDeviceOps;
void runstate_add_device(const GuestDeviceOps *ops);
/* Added by system/: unregister a device added with runstate_add_device
 * (matched by its callbacks and opaque); it gets no more calls. */
void runstate_remove_device(const GuestDeviceOps *ops);

/* Stop the guest (STOP event) and enter STATE (paused, finish-migrate,
 * postmigrate, ...).  Stopping an already stopped guest only changes the
 * state. */
void vm_stop(RunState state);
/* Start the guest (RESUME event), state running.  Fails (returns false)
 * in inmigrate/postmigrate/shutdown states, as QEMU's cont does, with a
 * message. */
bool vm_start(const char **why_not);
/* Force a state without starting/stopping devices (startup, migration). */
void runstate_set(RunState s);

/* Event sink for STOP/RESUME (registered by main, which forwards to QMP). */
typedef void (*RunstateEventFn)(bool running, void *opaque);
void runstate_set_event_sink(RunstateEventFn fn, void *opaque);

#endif
