/* The savevm container (QEMU format version 3) and the handler registry.
 *
 *   be32 0x5145564d  be32 3
 *   START 0x01 / FULL 0x04: be32 id, u8 len + idstr, be32 instance, be32 version
 *   PART 0x02 / END 0x03:   be32 id
 *   every section ends with 0x7e + be32 id
 *   EOF 0x10
 *
 * blkmig's own type bytes start at 0x40, clear of QEMU's (0x01..0x10,
 * 0x7e); they are never sent with qemu-compat, and an older destination
 * fails on them as on any unknown type:
 *   CANCELLED 0x40  in place of a section: the source's operator cancelled
 *                   the migration; nothing follows and the source closes
 *                   the connections once the destination answered (or
 *                   after 2 s).  The destination fails the migration with
 *                   "the source cancelled the migration".                */
#ifndef MIGRATION_SAVEVM_H
#define MIGRATION_SAVEVM_H

#include <glib.h>
#include <stdint.h>
#include "migration/stream.h"

#define QEMU_VM_FILE_MAGIC       0x5145564d
#define QEMU_VM_FILE_VERSION     0x00000003
#define QEMU_VM_EOF              0x10
#define QEMU_VM_SECTION_START    0x01
#define QEMU_VM_SECTION_PART     0x02
#define QEMU_VM_SECTION_END      0x03
#define QEMU_VM_SECTION_FULL     0x04
#define QEMU_VM_SECTION_FOOTER   0x7e
#define BLKMIG_VM_CANCELLED      0x40

/* Save-side callbacks return 0 or -errno (with the stream's error latched
 * or *errp set); load returns 0 or -1 with *errp set. */
typedef struct SaveVMHandlers {
    /* Contents of the START section (may write nothing). */
    int (*save_setup)(MigStream *f, void *opaque, GError **errp);
    /* Contents of one PART section, at most MAX_BYTES of payload where
     * possible.  Returns 1 when the bulk phase is complete, 0 otherwise,
     * negative on error. */
    int (*save_iterate)(MigStream *f, void *opaque, uint64_t max_bytes, GError **errp);
    /* Bytes still to send if we stopped the guest now. */
    uint64_t (*save_pending)(void *opaque);
    /* Contents of the END section; guest is stopped. */
    int (*save_complete)(MigStream *f, void *opaque, GError **errp);
    /* Consume one section's contents (START/PART/END/FULL). */
    int (*load_state)(MigStream *f, void *opaque, int version_id, GError **errp);
    /* Destination: called once after EOF was read, before the ack. */
    int (*load_finish)(void *opaque, GError **errp);
    /* Destination: called once at the end of every load for every
     * registered handler, whether its section came or not: after every
     * load_finish succeeded (OK true: return -1 with *errp set to refuse
     * the stream all the same), or after the load failed (OK false;
     * ERRP is NULL and the result is ignored).  Runs before the guest
     * may start. */
    int (*load_end)(void *opaque, bool ok, GError **errp);
    /* Called once on either side when the migration ends (any outcome). */
    void (*cleanup)(void *opaque);
    /* Optional: whether to include the handler in this migration. */
    bool (*is_active)(void *opaque);
} SaveVMHandlers;

void savevm_register(const char *idstr, uint32_t instance, uint32_t version,
                     const SaveVMHandlers *ops, void *opaque);
void savevm_unregister_all(void);

/* Source side, in order.  Each returns 0 or -1 with *errp set. */
int savevm_state_header(MigStream *f, GError **errp);
int savevm_state_setup(MigStream *f, GError **errp);
/* One PART section per active handler; returns 1 when all handlers finished
 * their bulk phase, 0 if not, -1 on error. */
int savevm_state_iterate(MigStream *f, uint64_t max_bytes, GError **errp);
uint64_t savevm_state_pending(void);
/* END sections and EOF. */
int savevm_state_complete(MigStream *f, GError **errp);
/* Instead of the rest: CANCELLED, flushed (at a section boundary, to a
 * blkmig destination only).  Returns 0 or -1 when it could not be sent. */
int savevm_state_cancel(MigStream *f);
void savevm_state_cleanup(void);

/* Destination: read a whole stream, validating every header and footer.
 * Errors name what was wrong, e.g. "invalid stream magic 0x12345678",
 * "unknown section 'foo' instance 0", "section footer mismatch: expected
 * 0x7e for section 2, got 0x41", "unknown section type 0x55". */
int savevm_load(MigStream *f, GError **errp);

#endif
