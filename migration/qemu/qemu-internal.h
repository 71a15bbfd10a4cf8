/* Private interfaces between the files of migration/qemu/: the sections
 * of a QEMU 7.2 stream besides "block" (include/migration/qemu-sections.h).
 * Like any handler they reach the core only through savevm.h. */
#ifndef MIGRATION_QEMU_INTERNAL_H
#define MIGRATION_QEMU_INTERNAL_H

#include <glib.h>
#include <stdint.h>
#include "migration/qemu-sections.h"
#include "migration/savevm.h"
#include "migration/stream.h"

/* Fail the load: "section 'SECTION': MSG at stream offset N" (or with the
 * stream's own error as the reason).  Returns -1. */
int qemu_section_error(MigStream *f, uint64_t offset, const char *section, GError **errp,
                       const char *fmt, ...) G_GNUC_PRINTF(5, 6);

/* ram.c, vmstate.c: each registers its handlers. */
void qemu_ram_register(void);
void qemu_vmstate_register(QemuRunstateListener runstate, void *opaque);

#endif
