/* Registering the QEMU sections' handlers, and how they fail. */
#include "qemu-internal.h"

int qemu_section_error(MigStream *f, uint64_t offset, const char *section, GError **errp,
                       const char *fmt, ...)
{
    va_list ap;
    g_autofree char *msg = NULL;

    va_start(ap, fmt);
    msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    return savevm_load_error(f, offset, errp, "section '%s': %s", section, msg);
}

void qemu_sections_register(QemuRunstateListener runstate, void *opaque)
{
    qemu_ram_register();
    qemu_vmstate_register(runstate, opaque);
}
