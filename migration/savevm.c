/* The savevm container: the registry of handlers, section framing on the
 * source, validation and dispatch on the destination. */
#include <errno.h>
#include <string.h>

#include "migration/options.h"
#include "migration/savevm.h"
#include "migration-internal.h"

typedef struct SaveStateEntry {
    char *idstr;
    uint32_t instance;
    uint32_t version;
    uint32_t section_id;
    SaveVMHandlers ops;
    void *opaque;
    bool in_migration;      /* source: chosen at setup for this migration */
    bool selected;          /* ...for the running or last one; registry_lock */
} SaveStateEntry;

static GMutex registry_lock;
static GPtrArray *registry;     /* SaveStateEntry *, in registration order */

static void entry_free(gpointer p)
{
    SaveStateEntry *se = p;
    g_free(se->idstr);
    g_free(se);
}

void savevm_register(const char *idstr, uint32_t instance, uint32_t version,
                     const SaveVMHandlers *ops, void *opaque)
{
    SaveStateEntry *se = g_new0(SaveStateEntry, 1);

    g_assert(strlen(idstr) <= 255);
    se->idstr = g_strdup(idstr);
    se->instance = instance;
    se->version = version;
    se->ops = *ops;
    se->opaque = opaque;
    g_mutex_lock(&registry_lock);
    if (!registry) {
        registry = g_ptr_array_new_with_free_func(entry_free);
    }
    /* From 1: a QEMU destination takes a PART or END section with id 0
     * for its first handler's (its "timer", never iterative), whatever
     * START said. */
    se->section_id = registry->len + 1;
    g_ptr_array_add(registry, se);
    g_mutex_unlock(&registry_lock);
}

void savevm_unregister_all(void)
{
    g_mutex_lock(&registry_lock);
    g_clear_pointer(&registry, g_ptr_array_unref);
    g_mutex_unlock(&registry_lock);
    savevm_unregister_channels();
}

/* Snapshot of the registry (registration happens at start-up, before any
 * migration; entries are never freed while one runs). */
static GPtrArray *entries(void)
{
    GPtrArray *list = g_ptr_array_new();

    g_mutex_lock(&registry_lock);
    for (guint i = 0; registry && i < registry->len; i++) {
        g_ptr_array_add(list, registry->pdata[i]);
    }
    g_mutex_unlock(&registry_lock);
    return list;
}

/* ---- source ---- */

static bool choose(SaveStateEntry *se)
{
    bool active = !se->ops.is_active || se->ops.is_active(se->opaque);

    g_mutex_lock(&registry_lock);
    se->selected = active;
    g_mutex_unlock(&registry_lock);
    return active;
}

void savevm_state_select(void)
{
    g_autoptr(GPtrArray) list = entries();

    for (guint i = 0; i < list->len; i++) {
        choose(list->pdata[i]);
    }
}

static bool is_iterative(const SaveStateEntry *se)
{
    return se->ops.save_setup || se->ops.save_iterate;
}

static void put_section_header(MigStream *f, uint8_t type, const SaveStateEntry *se)
{
    mig_put_u8(f, type);
    mig_put_be32(f, se->section_id);
    if (type == QEMU_VM_SECTION_START || type == QEMU_VM_SECTION_FULL) {
        size_t len = strlen(se->idstr);
        mig_put_u8(f, len);
        mig_put_buffer(f, se->idstr, len);
        mig_put_be32(f, se->instance);
        mig_put_be32(f, se->version);
    }
}

static void put_section_footer(MigStream *f, const SaveStateEntry *se)
{
    mig_put_u8(f, QEMU_VM_SECTION_FOOTER);
    mig_put_be32(f, se->section_id);
}

/* Turn a handler's or the stream's failure into one error. */
static int save_failed(MigStream *f, const SaveStateEntry *se, const char *what,
                       GError **errp, GError *local)
{
    if (local) {
        g_propagate_error(errp, local);
    } else if (mig_stream_error(f)) {
        g_set_error(errp, MIG_ERROR, 0,
                    "writing the migration stream failed: %s",
                    mig_stream_error_msg(f));
    } else {
        g_set_error(errp, MIG_ERROR, 0,
                    "section '%s' failed in %s", se->idstr, what);
    }
    return -1;
}

int savevm_state_header(MigStream *f, GError **errp)
{
    mig_put_be32(f, QEMU_VM_FILE_MAGIC);
    mig_put_be32(f, QEMU_VM_FILE_VERSION);
    if (mig_cap_enabled(MIG_CAP_QEMU_COMPAT)) {
        savevm_put_configuration(f);
    }
    if (mig_stream_error(f)) {
        return save_failed(f, NULL, "header", errp, NULL);
    }
    return 0;
}

int savevm_state_setup(MigStream *f, GError **errp)
{
    g_autoptr(GPtrArray) list = entries();

    for (guint i = 0; i < list->len; i++) {
        SaveStateEntry *se = list->pdata[i];
        GError *local = NULL;

        se->in_migration = choose(se);
        if (!se->in_migration || !is_iterative(se)) {
            continue;
        }
        put_section_header(f, QEMU_VM_SECTION_START, se);
        if (se->ops.save_setup && se->ops.save_setup(f, se->opaque, &local) < 0) {
            return save_failed(f, se, "setup", errp, local);
        }
        put_section_footer(f, se);
        if (mig_stream_error(f)) {
            return save_failed(f, se, "setup", errp, NULL);
        }
    }
    return 0;
}

int savevm_state_iterate(MigStream *f, uint64_t max_bytes, GError **errp)
{
    g_autoptr(GPtrArray) list = entries();
    int all_done = 1;

    for (guint i = 0; i < list->len; i++) {
        SaveStateEntry *se = list->pdata[i];
        GError *local = NULL;
        int ret;

        if (!se->in_migration || !se->ops.save_iterate) {
            continue;
        }
        put_section_header(f, QEMU_VM_SECTION_PART, se);
        ret = se->ops.save_iterate(f, se->opaque, max_bytes, &local);
        if (ret < 0) {
            return save_failed(f, se, "iteration", errp, local);
        }
        put_section_footer(f, se);
        if (mig_stream_error(f)) {
            return save_failed(f, se, "iteration", errp, NULL);
        }
        if (ret == 0) {
            all_done = 0;
        }
    }
    return all_done;
}

uint64_t savevm_state_pending(void)
{
    g_autoptr(GPtrArray) list = entries();
    uint64_t pending = 0;

    for (guint i = 0; i < list->len; i++) {
        SaveStateEntry *se = list->pdata[i];
        if (se->in_migration && se->ops.save_pending) {
            pending += se->ops.save_pending(se->opaque);
        }
    }
    return pending;
}

uint64_t savevm_state_progress(void)
{
    g_autoptr(GPtrArray) list = entries();
    uint64_t progress = 0;

    for (guint i = 0; i < list->len; i++) {
        SaveStateEntry *se = list->pdata[i];
        if (se->in_migration && se->ops.save_progress) {
            progress += se->ops.save_progress(se->opaque);
        }
    }
    return progress;
}

void savevm_state_query(MigrationInfo *info)
{
    g_autoptr(GPtrArray) list = g_ptr_array_new();

    g_mutex_lock(&registry_lock);
    for (guint i = 0; registry && i < registry->len; i++) {
        SaveStateEntry *se = registry->pdata[i];
        if (se->selected && se->ops.query) {
            g_ptr_array_add(list, se);
        }
    }
    g_mutex_unlock(&registry_lock);
    for (guint i = 0; i < list->len; i++) {
        SaveStateEntry *se = list->pdata[i];
        se->ops.query(se->opaque, info);
    }
}

void savevm_state_stopping(void)
{
    g_autoptr(GPtrArray) list = entries();

    for (guint i = 0; i < list->len; i++) {
        SaveStateEntry *se = list->pdata[i];
        if (se->in_migration && se->ops.save_stopping) {
            se->ops.save_stopping(se->opaque);
        }
    }
}

int savevm_state_complete(MigStream *f, GError **errp)
{
    g_autoptr(GPtrArray) list = entries();

    for (guint i = 0; i < list->len; i++) {
        SaveStateEntry *se = list->pdata[i];
        GError *local = NULL;

        if (!se->in_migration || (!is_iterative(se) && !se->ops.save_complete)) {
            continue;
        }
        put_section_header(f, is_iterative(se) ? QEMU_VM_SECTION_END
                                               : QEMU_VM_SECTION_FULL, se);
        if (se->ops.save_complete && se->ops.save_complete(f, se->opaque, &local) < 0) {
            return save_failed(f, se, "completion", errp, local);
        }
        put_section_footer(f, se);
    }
    if (mig_cap_enabled(MIG_CAP_QEMU_COMPAT)) {
        mig_put_u8(f, QEMU_VM_EOF);
        savevm_put_vmdesc(f);
    } else {
        mig_put_u8(f, BLKMIG_VM_EOF);
    }
    if (mig_stream_flush(f) < 0) {
        return save_failed(f, NULL, "completion", errp, NULL);
    }
    return 0;
}

int savevm_state_cancel(MigStream *f)
{
    mig_put_u8(f, BLKMIG_VM_CANCELLED);
    return mig_stream_flush(f) < 0 ? -1 : 0;
}

void savevm_state_cleanup(void)
{
    g_autoptr(GPtrArray) list = entries();

    for (guint i = 0; i < list->len; i++) {
        SaveStateEntry *se = list->pdata[i];
        if (se->in_migration && se->ops.cleanup) {
            se->ops.cleanup(se->opaque);
        }
        se->in_migration = false;
    }
}

/* ---- source: block-resume ---- */

/* Handlers that write a START section must know how to pause. */
bool savevm_state_can_pause(void)
{
    g_autoptr(GPtrArray) list = entries();

    for (guint i = 0; i < list->len; i++) {
        SaveStateEntry *se = list->pdata[i];
        if (se->in_migration && is_iterative(se) &&
            (!se->ops.save_pause || !se->ops.save_resume_setup || !se->ops.save_resume_map)) {
            return false;
        }
    }
    return true;
}

void savevm_state_pause(void)
{
    g_autoptr(GPtrArray) list = entries();

    for (guint i = 0; i < list->len; i++) {
        SaveStateEntry *se = list->pdata[i];
        if (se->in_migration && se->ops.save_pause) {
            se->ops.save_pause(se->opaque);
        }
    }
}

int savevm_state_resume_setup(MigStream *f, GError **errp)
{
    g_autoptr(GPtrArray) list = entries();

    for (guint i = 0; i < list->len; i++) {
        SaveStateEntry *se = list->pdata[i];
        GError *local = NULL;

        if (!se->in_migration || !se->ops.save_resume_setup) {
            continue;
        }
        put_section_header(f, QEMU_VM_SECTION_START, se);
        if (se->ops.save_resume_setup(f, se->opaque, &local) < 0) {
            return save_failed(f, se, "resume setup", errp, local);
        }
        put_section_footer(f, se);
        if (mig_stream_error(f)) {
            return save_failed(f, se, "resume setup", errp, NULL);
        }
    }
    return 0;
}

int savevm_state_resume_map(const uint8_t *map, size_t len, GError **errp)
{
    g_autoptr(GPtrArray) list = entries();

    for (guint i = 0; i < list->len; i++) {
        SaveStateEntry *se = list->pdata[i];
        if (se->in_migration && se->ops.save_resume_map &&
            se->ops.save_resume_map(se->opaque, map, len, errp) < 0) {
            return -1;
        }
    }
    return 0;
}

/* ---- destination ---- */

typedef struct LoadState {
    MigStream *f;
    GPtrArray *list;            /* registry snapshot */
    GHashTable *by_id;          /* source's section id -> SaveStateEntry * */
    GHashTable *versions;       /* source's section id -> its version_id */
    GPtrArray *seen;            /* entries that had a START/FULL, in order */
} LoadState;

static int load_error_v(MigStream *f, uint64_t offset, GError **errp, const char *fmt,
                        va_list ap)
{
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);

    if (mig_stream_error(f)) {
        g_set_error(errp, MIG_ERROR, 0, "%s: %s", msg, mig_stream_error_msg(f));
    } else {
        g_set_error(errp, MIG_ERROR, 0,
                    "%s at stream offset %" G_GUINT64_FORMAT, msg, offset);
    }
    return -1;
}

int savevm_load_error(MigStream *f, uint64_t offset, GError **errp, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    load_error_v(f, offset, errp, fmt, ap);
    va_end(ap);
    return -1;
}

static int G_GNUC_PRINTF(4, 5)
load_error(LoadState *ls, uint64_t offset, GError **errp, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    load_error_v(ls->f, offset, errp, fmt, ap);
    va_end(ap);
    return -1;
}

static SaveStateEntry *find_entry(LoadState *ls, const char *idstr, uint32_t instance)
{
    for (guint i = 0; i < ls->list->len; i++) {
        SaveStateEntry *se = ls->list->pdata[i];
        if (se->instance == instance && strcmp(se->idstr, idstr) == 0) {
            return se;
        }
    }
    return NULL;
}

/* START/FULL header after the type byte: id, idstr, instance, version. */
static SaveStateEntry *load_section_start(LoadState *ls, uint32_t *id,
                                          uint32_t *version_id, GError **errp)
{
    uint64_t offset = mig_stream_bytes(ls->f);
    uint8_t len;
    char idstr[256];
    uint32_t instance;
    SaveStateEntry *se;

    *id = mig_get_be32(ls->f);
    len = mig_get_u8(ls->f);
    mig_get_buffer(ls->f, idstr, len);
    idstr[len] = '\0';
    instance = mig_get_be32(ls->f);
    *version_id = mig_get_be32(ls->f);
    if (mig_stream_error(ls->f)) {
        load_error(ls, offset, errp, "reading a section header");
        return NULL;
    }
    if (memchr(idstr, '\0', len)) {
        load_error(ls, offset, errp, "section idstr with a NUL byte");
        return NULL;
    }
    se = find_entry(ls, idstr, instance);
    if (!se) {
        /* Error texts go out as JSON: only valid UTF-8. */
        g_autofree char *shown = g_utf8_make_valid(idstr, -1);
        load_error(ls, offset, errp, "unknown section '%s' instance %u", shown, instance);
        return NULL;
    }
    if (*version_id > se->version) {
        load_error(ls, offset, errp,
                   "section '%s' has version %u but at most %u is supported",
                   idstr, *version_id, se->version);
        return NULL;
    }
    if (g_hash_table_contains(ls->by_id, GUINT_TO_POINTER(*id))) {
        load_error(ls, offset, errp, "duplicate section id %u", *id);
        return NULL;
    }
    /* Ids are the source's numbering: map them to our entries. */
    g_hash_table_insert(ls->by_id, GUINT_TO_POINTER(*id), se);
    g_hash_table_insert(ls->versions, GUINT_TO_POINTER(*id), GUINT_TO_POINTER(*version_id));
    if (!g_ptr_array_find(ls->seen, se, NULL)) {
        g_ptr_array_add(ls->seen, se);
    }
    return se;
}

/* PART/END header after the type byte: an id a START already named. */
static SaveStateEntry *load_section_part(LoadState *ls, uint32_t *id,
                                         uint32_t *version_id, GError **errp)
{
    uint64_t offset = mig_stream_bytes(ls->f);
    SaveStateEntry *se;

    *id = mig_get_be32(ls->f);
    if (mig_stream_error(ls->f)) {
        load_error(ls, offset, errp, "reading a section header");
        return NULL;
    }
    se = g_hash_table_lookup(ls->by_id, GUINT_TO_POINTER(*id));
    if (!se) {
        load_error(ls, offset, errp, "unknown section id %u", *id);
        return NULL;
    }
    *version_id = GPOINTER_TO_UINT(g_hash_table_lookup(ls->versions, GUINT_TO_POINTER(*id)));
    return se;
}

static int load_section_footer(LoadState *ls, uint32_t id, GError **errp)
{
    uint64_t offset = mig_stream_bytes(ls->f);
    uint8_t marker = mig_get_u8(ls->f);
    uint32_t footer_id;

    if (mig_stream_error(ls->f)) {
        return load_error(ls, offset, errp, "reading a section footer");
    }
    if (marker != QEMU_VM_SECTION_FOOTER) {
        return load_error(ls, offset, errp,
                          "section footer mismatch: expected 0x%02x for section %u, got 0x%02x",
                          QEMU_VM_SECTION_FOOTER, id, marker);
    }
    footer_id = mig_get_be32(ls->f);
    if (mig_stream_error(ls->f)) {
        return load_error(ls, offset, errp, "reading a section footer");
    }
    if (footer_id != id) {
        return load_error(ls, offset, errp,
                          "section footer mismatch: expected section id %u, got %u",
                          id, footer_id);
    }
    return 0;
}

static int load_header(LoadState *ls, GError **errp)
{
    uint32_t magic = mig_get_be32(ls->f);
    uint32_t version;

    if (mig_stream_error(ls->f)) {
        return load_error(ls, 0, errp, "reading the stream header");
    }
    if (magic != QEMU_VM_FILE_MAGIC) {
        return load_error(ls, 0, errp, "invalid stream magic 0x%08x", magic);
    }
    version = mig_get_be32(ls->f);
    if (mig_stream_error(ls->f)) {
        return load_error(ls, 4, errp, "reading the stream header");
    }
    if (version != QEMU_VM_FILE_VERSION) {
        return load_error(ls, 4, errp, "unsupported stream version %u", version);
    }
    return 0;
}

/* One section, its type byte already read. */
static int load_section(LoadState *ls, uint8_t type, GError **errp)
{
    bool starts = type == QEMU_VM_SECTION_START || type == QEMU_VM_SECTION_FULL;
    uint32_t id, version_id;
    SaveStateEntry *se;
    GError *local = NULL;

    se = starts ? load_section_start(ls, &id, &version_id, errp)
                : load_section_part(ls, &id, &version_id, errp);
    if (!se) {
        return -1;
    }
    if (se->ops.load_state &&
        se->ops.load_state(ls->f, se->opaque, version_id, &local) < 0) {
        if (!local) {
            return load_error(ls, mig_stream_bytes(ls->f), errp,
                              "section '%s' failed to load", se->idstr);
        }
        g_propagate_error(errp, local);
        return -1;
    }
    return load_section_footer(ls, id, errp);
}

/* The configuration section, only right after the header. */
static int load_configuration(LoadState *ls, uint64_t offset, GError **errp)
{
    if (offset != 8) {
        return load_error(ls, offset, errp, "configuration section (0x%02x) after the "
                          "first section", QEMU_VM_CONFIGURATION);
    }
    return savevm_load_configuration(ls->f, errp);
}

static int load_sections(LoadState *ls, GError **errp)
{
    for (;;) {
        uint64_t offset = mig_stream_bytes(ls->f);
        uint8_t type = mig_get_u8(ls->f);

        if (mig_stream_error(ls->f)) {
            return load_error(ls, offset, errp, "reading a section type");
        }
        switch (type) {
        case BLKMIG_VM_EOF:
            return 0;
        case QEMU_VM_EOF:
            return savevm_load_vmdesc(ls->f, errp);
        case QEMU_VM_CONFIGURATION:
            if (load_configuration(ls, offset, errp) < 0) {
                return -1;
            }
            break;
        case QEMU_VM_COMMAND:
            return load_error(ls, offset, errp, "QEMU command section (0x%02x: return path, "
                              "postcopy or colo) is not supported", type);
        case BLKMIG_VM_CANCELLED:
            g_set_error(errp, MIG_ERROR, 0, "the source cancelled the migration");
            return -1;
        case QEMU_VM_SECTION_START:
        case QEMU_VM_SECTION_PART:
        case QEMU_VM_SECTION_END:
        case QEMU_VM_SECTION_FULL:
            if (load_section(ls, type, errp) < 0) {
                return -1;
            }
            break;
        default:
            return load_error(ls, offset, errp, "unknown section type 0x%02x", type);
        }
    }
}

static int load_finish_all(LoadState *ls, GError **errp)
{
    for (guint i = 0; i < ls->seen->len; i++) {
        SaveStateEntry *se = ls->seen->pdata[i];
        GError *local = NULL;

        if (se->ops.load_finish && se->ops.load_finish(se->opaque, &local) < 0) {
            if (!local) {
                g_set_error(&local, MIG_ERROR, 0,
                            "section '%s' failed to finish loading", se->idstr);
            }
            g_propagate_error(errp, local);
            return -1;
        }
    }
    return 0;
}

/* Every handler's load_end, seen or not; the first refusal counts. */
static int load_end_all(LoadState *ls, int ret, GError **errp)
{
    for (guint i = 0; i < ls->list->len; i++) {
        SaveStateEntry *se = ls->list->pdata[i];

        if (!se->ops.load_end) {
            continue;
        }
        if (ret < 0) {
            se->ops.load_end(se->opaque, false, NULL);
        } else if (se->ops.load_end(se->opaque, true, errp) < 0) {
            ret = -1;
        }
    }
    return ret;
}

static void report_nothing(void *opaque, uint64_t bytes)
{
}

static bool send_no_map(void *opaque, const uint8_t *map, size_t len)
{
    return false;
}

/* Every handler's load_setup. */
static void load_setup_all(LoadState *ls, const SaveVMLoadContext *ctx)
{
    static const SaveVMLoadContext silent = { .report_durable = report_nothing,
                                              .send_resume_map = send_no_map,
                                              .report_flushed = report_nothing };

    for (guint i = 0; i < ls->list->len; i++) {
        SaveStateEntry *se = ls->list->pdata[i];
        if (se->ops.load_setup) {
            se->ops.load_setup(se->opaque, ctx ? ctx : &silent);
        }
    }
}

int savevm_load(MigStream *f, const SaveVMLoadContext *ctx, GError **errp)
{
    LoadState ls = {
        .f = f,
        .list = entries(),
        .by_id = g_hash_table_new(NULL, NULL),
        .versions = g_hash_table_new(NULL, NULL),
        .seen = g_ptr_array_new(),
    };
    int ret;

    load_setup_all(&ls, ctx);
    ret = load_header(&ls, errp);
    if (ret == 0) {
        ret = load_sections(&ls, errp);
    }
    if (ret == 0) {
        ret = load_finish_all(&ls, errp);
    }
    ret = load_end_all(&ls, ret, errp);
    for (guint i = 0; i < ls.seen->len; i++) {
        SaveStateEntry *se = ls.seen->pdata[i];
        if (se->ops.cleanup) {
            se->ops.cleanup(se->opaque);
        }
    }
    g_ptr_array_unref(ls.seen);
    g_hash_table_unref(ls.versions);
    g_hash_table_unref(ls.by_id);
    g_ptr_array_unref(ls.list);
    return ret;
}

bool savevm_load_resumable(void)
{
    g_autoptr(GPtrArray) list = entries();

    for (guint i = 0; i < list->len; i++) {
        SaveStateEntry *se = list->pdata[i];
        if (se->ops.load_resumable && se->ops.load_resumable(se->opaque)) {
            return true;
        }
    }
    return false;
}
