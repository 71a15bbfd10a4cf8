/* The parts of the savevm container that only QEMU's streams have around
 * the sections: the configuration section after the header (the machine
 * type, checked against blkmigd --machine), the device description after
 * QEMU's end marker, and the vmstate subsections a loader must refuse.
 * Read from a QEMU 7.2 source; written by a blkmigd source with
 * qemu-compat, since QEMU 7.2 refuses a stream without them. */
#include <string.h>

#include "migration/migration.h"
#include "migration-internal.h"

/* QEMU's machine type names are short; this bounds what a stream makes
 * us read into memory. */
#define MACHINE_NAME_MAX 256
/* The description only lists devices: a generous bound, skipped unread. */
#define VMDESC_MAX (64u << 20)
/* Its one line for a machine without devices, as QEMU writes it. */
#define VMDESC_EMPTY "{\"page_size\": 4096, \"devices\": []}"

static GMutex machine_lock;
static char *machine_name;

void migration_set_machine(const char *name)
{
    g_mutex_lock(&machine_lock);
    g_free(machine_name);
    machine_name = g_strdup(name);
    g_mutex_unlock(&machine_lock);
}

char *migration_get_machine(void)
{
    char *name;

    g_mutex_lock(&machine_lock);
    name = g_strdup(machine_name ? machine_name : MIGRATION_DEFAULT_MACHINE);
    g_mutex_unlock(&machine_lock);
    return name;
}

void savevm_put_configuration(MigStream *f)
{
    g_autofree char *name = migration_get_machine();

    mig_put_u8(f, QEMU_VM_CONFIGURATION);
    mig_put_be32(f, strlen(name));
    mig_put_buffer(f, name, strlen(name));
}

int savevm_refuse_subsection(MigStream *f, const char *section, GError **errp)
{
    uint64_t offset = mig_stream_bytes(f);
    uint8_t head[2];
    char name[256];

    if (!mig_stream_peek(f, head, 1)) {
        return savevm_load_error(f, offset, errp, "section '%s': reading its end", section);
    }
    if (head[0] != QEMU_VM_SUBSECTION) {
        return 0;
    }
    mig_get_buffer(f, head, 2);
    mig_get_buffer(f, name, head[1]);
    name[head[1]] = '\0';
    if (mig_stream_error(f)) {
        return savevm_load_error(f, offset, errp, "section '%s': reading a subsection",
                               section);
    }
    g_autofree char *shown = g_utf8_make_valid(name, -1);
    return savevm_load_error(f, offset, errp, "section '%s': subsection '%s' is not supported",
                           section, shown);
}

int savevm_load_configuration(MigStream *f, GError **errp)
{
    uint64_t offset = mig_stream_bytes(f);
    g_autofree char *ours = migration_get_machine();
    char name[MACHINE_NAME_MAX + 1];
    uint32_t len = mig_get_be32(f);

    if (mig_stream_error(f)) {
        return savevm_load_error(f, offset, errp, "reading the configuration section");
    }
    if (len > MACHINE_NAME_MAX) {
        return savevm_load_error(f, offset, errp, "configuration section: machine name of "
                               "%u bytes (at most %d)", len, MACHINE_NAME_MAX);
    }
    mig_get_buffer(f, name, len);
    name[len] = '\0';
    if (mig_stream_error(f)) {
        return savevm_load_error(f, offset, errp, "reading the configuration section");
    }
    if (strlen(name) != len || strcmp(name, ours) != 0) {
        g_autofree char *shown = g_utf8_make_valid(name, -1);
        return savevm_load_error(f, offset, errp, "configuration section: the source's "
                               "machine type is '%s', this destination's is '%s' "
                               "(blkmigd --machine)", shown, ours);
    }
    return savevm_refuse_subsection(f, "configuration", errp);
}

void savevm_put_vmdesc(MigStream *f)
{
    mig_put_u8(f, QEMU_VM_VMDESCRIPTION);
    mig_put_be32(f, strlen(VMDESC_EMPTY));
    mig_put_buffer(f, VMDESC_EMPTY, strlen(VMDESC_EMPTY));
}

int savevm_load_vmdesc(MigStream *f, GError **errp)
{
    uint64_t offset = mig_stream_bytes(f);
    uint8_t type;
    uint32_t len;

    if (mig_at_eof(f)) {
        return 0;       /* machines that suppress it send nothing */
    }
    type = mig_get_u8(f);
    if (!mig_stream_error(f) && type != QEMU_VM_VMDESCRIPTION) {
        return savevm_load_error(f, offset, errp, "expected the device description (0x%02x) "
                               "after the end of the stream, got 0x%02x",
                               QEMU_VM_VMDESCRIPTION, type);
    }
    len = mig_get_be32(f);
    if (!mig_stream_error(f) && len > VMDESC_MAX) {
        return savevm_load_error(f, offset, errp, "device description of %u bytes (at most %u)",
                               len, VMDESC_MAX);
    }
    mig_skip(f, len);
    if (mig_stream_error(f)) {
        return savevm_load_error(f, offset, errp, "reading the device description");
    }
    return 0;
}
