/* QEMU's small vmstate sections of a -machine none stream, read by their
 * known layout (include/migration/qemu-sections.h): "timer", whose
 * clocks mean nothing without guest CPUs, and "globalstate", the source's
 * runstate, which decides whether the guest runs after the migration. */
#include <string.h>

#include "qemu-internal.h"

#define TIMER_VERSION 2
#define GLOBALSTATE_VERSION 1
#define RUNSTATE_LEN 100

/* QEMU 7.2's RunState names. */
static const char *const runstates[] = {
    "debug", "inmigrate", "internal-error", "io-error", "paused", "postmigrate",
    "prelaunch", "finish-migrate", "restore-vm", "running", "save-vm", "shutdown",
    "suspended", "watchdog", "guest-panicked", "colo",
};

static struct {
    QemuRunstateListener listener;
    void *opaque;
    bool received;
    char runstate[RUNSTATE_LEN + 1];
} global;

static int timer_load_state(MigStream *f, void *opaque, int version_id, GError **errp)
{
    uint64_t offset = mig_stream_bytes(f);

    /* cpu_ticks_offset, 8 unused bytes, cpu_clock_offset (version 2) */
    mig_skip(f, version_id >= 2 ? 24 : 16);
    if (mig_stream_error(f)) {
        return qemu_section_error(f, offset, "timer", errp, "its fields");
    }
    return savevm_refuse_subsection(f, "timer", errp);
}

static bool runstate_known(const char *name)
{
    for (size_t i = 0; i < G_N_ELEMENTS(runstates); i++) {
        if (strcmp(name, runstates[i]) == 0) {
            return true;
        }
    }
    return false;
}

static int globalstate_load_state(MigStream *f, void *opaque, int version_id, GError **errp)
{
    uint64_t offset = mig_stream_bytes(f);
    char buf[RUNSTATE_LEN + 1] = "";

    mig_get_be32(f);    /* the name's length with its NUL: the name says it */
    mig_get_buffer(f, buf, RUNSTATE_LEN);
    if (mig_stream_error(f)) {
        return qemu_section_error(f, offset, "globalstate", errp, "its fields");
    }
    if (!memchr(buf, '\0', RUNSTATE_LEN) || !runstate_known(buf)) {
        g_autofree char *shown = g_utf8_make_valid(buf, -1);
        return qemu_section_error(f, offset, "globalstate", errp, "unknown runstate '%s'",
                                  shown);
    }
    memcpy(global.runstate, buf, sizeof(buf));
    global.received = true;
    return savevm_refuse_subsection(f, "globalstate", errp);
}

static void globalstate_load_setup(void *opaque, const SaveVMLoadContext *ctx)
{
    global.received = false;
}

static int globalstate_load_end(void *opaque, bool ok, GError **errp)
{
    if (ok && global.listener) {
        global.listener(global.received ? global.runstate : NULL, global.opaque);
    }
    return 0;
}

void qemu_vmstate_register(QemuRunstateListener runstate, void *opaque)
{
    static const SaveVMHandlers timer_ops = {
        .load_state = timer_load_state,
    };
    static const SaveVMHandlers globalstate_ops = {
        .load_setup = globalstate_load_setup,
        .load_state = globalstate_load_state,
        .load_end = globalstate_load_end,
    };

    global.listener = runstate;
    global.opaque = opaque;
    savevm_register("timer", 0, TIMER_VERSION, &timer_ops, NULL);
    savevm_register("globalstate", 0, GLOBALSTATE_VERSION, &globalstate_ops, NULL);
}
