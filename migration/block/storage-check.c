/* The storage check section (include/migration/storage-check.h): without
 * the `block` capability the source describes each drive (size, digest
 * of sampled ranges) at switchover, and the destination compares its
 * own.  At the end of every load the destination also refuses to start
 * its guest when one of its drives got neither disk contents nor a
 * passing check. */
#include <string.h>

#include "block/block.h"
#include "migration/options.h"
#include "migration/storage-check.h"
#include "block-internal.h"

#define DIFFER_HINT "the disks differ: enable the 'block' capability to copy the disks, " \
                    "or use shared storage"
#define SAME_DRIVES_HINT "start the destination with the same drives as the source"

/* What the load in progress learned about the drives (load thread only). */
typedef struct Coverage {
    GHashTable *loaded;         /* ids of our drives that got contents or passed */
    bool listed;                /* the source named all its drives */
} Coverage;

static Coverage coverage;

void storage_check_note_loaded(const char *id, bool listed)
{
    if (!coverage.loaded) {
        coverage.loaded = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    }
    g_hash_table_add(coverage.loaded, g_strdup(id));
    coverage.listed |= listed;
}

static bool is_loaded(const char *id)
{
    return coverage.loaded && g_hash_table_contains(coverage.loaded, id);
}

/* ---- source ---- */

static bool check_is_active(void *opaque)
{
    return !mig_cap_enabled(MIG_CAP_BLOCK) && !mig_cap_enabled(MIG_CAP_QEMU_COMPAT);
}

bool blk_section_put_drive(MigStream *f, BlockDriverState *bs, const char *what,
                           GError **errp)
{
    const char *id = bdrv_get_id(bs);

    if (strlen(id) > 255) {
        g_set_error(errp, MIG_ERROR, 0, "%s: drive id '%s' is longer than 255 bytes",
                    what, id);
        return false;
    }
    mig_put_u8(f, strlen(id));
    mig_put_buffer(f, id, strlen(id));
    mig_put_be64(f, bdrv_getlength(bs));
    return true;
}

/* One drive's entry: flushed first, so a destination on the same storage
 * reads what the stopped guest wrote. */
static bool put_drive(MigStream *f, BlockDriverState *bs, uint64_t salt, GError **errp)
{
    g_autoptr(GArray) ranges = NULL;
    ChecksumDigest digest;

    if (!blk_flush_drive(bs, "storage check", errp)) {
        return false;
    }
    ranges = storage_sample_choose(bs);
    if (storage_sample_digest(bs, ranges, salt, &digest, errp) < 0) {
        return false;
    }
    if (!blk_section_put_drive(f, bs, "storage check", errp)) {
        return false;
    }
    mig_put_be32(f, ranges->len);
    for (guint i = 0; i < ranges->len; i++) {
        const BlkRange *r = &g_array_index(ranges, BlkRange, i);
        mig_put_be64(f, r->off);
        mig_put_be32(f, r->len);
    }
    mig_put_buffer(f, digest.bytes, CHECKSUM_LEN);
    return true;
}

int blk_section_put_drives(MigStream *f, BlkSectionPutEntry put, GError **errp)
{
    g_autoptr(GList) drives = bdrv_list();
    uint64_t salt = (uint64_t)g_random_int() << 32 | g_random_int();

    mig_put_be64(f, salt);
    mig_put_be32(f, g_list_length(drives));
    for (GList *l = drives; l; l = l->next) {
        if (!put(f, l->data, salt, errp)) {
            return -1;
        }
    }
    return mig_stream_error(f) ? -1 : 0;
}

/* Guest stopped: every drive's entry. */
static int check_save_complete(MigStream *f, void *opaque, GError **errp)
{
    return blk_section_put_drives(f, put_drive, errp);
}

/* ---- destination ---- */

/* One drive's entry as it came. */
typedef struct CheckEntry {
    char id[256];
    uint64_t size;
    GArray *ranges;             /* BlkRange */
    ChecksumDigest digest;
} CheckEntry;

int blk_section_failv(MigStream *f, GError **errp, const char *what, const char *fmt,
                      va_list ap)
{
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);

    if (f && mig_stream_error(f)) {
        g_set_error(errp, MIG_ERROR, 0, "%s: %s: %s", what, msg, mig_stream_error_msg(f));
    } else {
        g_set_error(errp, MIG_ERROR, 0, "%s: %s", what, msg);
    }
    return -1;
}

static int G_GNUC_PRINTF(3, 4)
check_fail(MigStream *f, GError **errp, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    blk_section_failv(f, errp, "storage check", fmt, ap);
    va_end(ap);
    return -1;
}

static int read_ranges(MigStream *f, CheckEntry *e, GError **errp)
{
    uint32_t count = mig_get_be32(f);

    if (!mig_stream_error(f) && count > STORAGE_CHECK_MAX_RANGES) {
        return check_fail(f, errp, "drive '%s': %u ranges, at most %u allowed", e->id, count,
                          STORAGE_CHECK_MAX_RANGES);
    }
    for (uint32_t i = 0; i < count && !mig_stream_error(f); i++) {
        BlkRange r = { .off = mig_get_be64(f), .len = mig_get_be32(f) };

        if (!mig_stream_error(f) &&
            (r.len == 0 || r.len > STORAGE_CHECK_RANGE_LEN || r.off > e->size ||
             r.len > e->size - r.off)) {
            return check_fail(f, errp, "drive '%s': range of %" G_GUINT64_FORMAT " bytes at "
                              "offset %" G_GUINT64_FORMAT " is not inside its %"
                              G_GUINT64_FORMAT " bytes or longer than %u", e->id, r.len,
                              r.off, e->size, STORAGE_CHECK_RANGE_LEN);
        }
        g_array_append_val(e->ranges, r);
    }
    return 0;
}

int blk_section_read_drive(MigStream *f, const char *what, char id[256], uint64_t *size,
                           GError **errp)
{
    uint8_t len = mig_get_u8(f);
    const char *bad = NULL;

    mig_get_buffer(f, id, len);
    id[len] = '\0';
    *size = mig_get_be64(f);
    if (mig_stream_error(f)) {
        g_set_error(errp, MIG_ERROR, 0, "%s: reading the entry of a drive: %s", what,
                    mig_stream_error_msg(f));
        return -1;
    }
    if (memchr(id, '\0', len)) {
        bad = "with a NUL byte";
    } else if (!g_utf8_validate(id, -1, NULL)) {
        /* Error texts go out as JSON: only valid UTF-8. */
        bad = "that is not UTF-8";
    }
    if (bad) {
        g_set_error(errp, MIG_ERROR, 0, "%s: drive id %s", what, bad);
        return -1;
    }
    return 0;
}

static int read_entry(MigStream *f, CheckEntry *e, GError **errp)
{
    if (blk_section_read_drive(f, "storage check", e->id, &e->size, errp) < 0) {
        return -1;
    }
    if (read_ranges(f, e, errp) < 0) {
        return -1;
    }
    mig_get_buffer(f, e->digest.bytes, CHECKSUM_LEN);
    if (mig_stream_error(f)) {
        return check_fail(f, errp, "reading the entry of a drive");
    }
    return 0;
}

static uint64_t ranges_bytes(const GArray *ranges)
{
    uint64_t bytes = 0;

    for (guint i = 0; i < ranges->len; i++) {
        bytes += g_array_index(ranges, BlkRange, i).len;
    }
    return bytes;
}

/* Our drive of E's id against E. */
static int compare_entry(const CheckEntry *e, uint64_t salt, GError **errp)
{
    BlockDriverState *bs = bdrv_find(e->id);
    ChecksumDigest ours;
    uint64_t size;

    if (!bs) {
        return check_fail(NULL, errp, "the source has a drive '%s' that this destination "
                          "lacks: " SAME_DRIVES_HINT, e->id);
    }
    if (is_loaded(e->id)) {
        return check_fail(NULL, errp, "drive '%s' is described twice", e->id);
    }
    size = bdrv_getlength(bs);
    if (size != e->size) {
        return check_fail(NULL, errp, "drive '%s' is %" G_GUINT64_FORMAT " bytes at the "
                          "source but %" G_GUINT64_FORMAT " bytes here: " DIFFER_HINT,
                          e->id, e->size, size);
    }
    if (storage_sample_digest(bs, e->ranges, salt, &ours, errp) < 0) {
        return -1;
    }
    if (memcmp(ours.bytes, e->digest.bytes, CHECKSUM_LEN) != 0) {
        return check_fail(NULL, errp, "drive '%s' does not match the source's (digest of %u "
                          "sampled ranges, %" G_GUINT64_FORMAT " bytes): " DIFFER_HINT,
                          e->id, e->ranges->len, ranges_bytes(e->ranges));
    }
    storage_check_note_loaded(e->id, true);
    return 0;
}

static int check_load_state(MigStream *f, void *opaque, int version_id, GError **errp)
{
    uint64_t salt = mig_get_be64(f);
    uint32_t count = mig_get_be32(f);
    int ret = 0;

    if (mig_stream_error(f)) {
        return check_fail(f, errp, "reading the section");
    }
    coverage.listed = true;
    for (uint32_t i = 0; i < count && ret == 0; i++) {
        CheckEntry e = { .ranges = g_array_new(false, false, sizeof(BlkRange)) };

        ret = read_entry(f, &e, errp);
        if (ret == 0) {
            ret = compare_entry(&e, salt, errp);
        }
        g_array_unref(e.ranges);
    }
    return ret;
}

/* The ids the source named, for messages; caller frees. */
static char *loaded_list(void)
{
    g_autofree const char **ids = coverage.loaded
        ? (const char **)g_hash_table_get_keys_as_array(coverage.loaded, NULL) : NULL;

    return ids && ids[0] ? g_strjoinv(", ", (char **)ids) : g_strdup("none");
}

static int refuse_unloaded(const char *id, GError **errp)
{
    g_autofree char *names = NULL;

    if (!coverage.loaded && !coverage.listed) {
        return check_fail(NULL, errp, "drive '%s' got neither disk contents nor a storage "
                          "check from the source (a QEMU source, or blkmigd with "
                          "'qemu-compat', sends no check): its disk may not be the source's, "
                          "so the guest does not start; enable the 'block' capability", id);
    }
    names = loaded_list();
    if (!coverage.listed) {
        return check_fail(NULL, errp, "drive '%s' got no disk contents from the source, which "
                          "sent only drives %s: " SAME_DRIVES_HINT, id, names);
    }
    return check_fail(NULL, errp, "drive '%s' of this destination is not on the source "
                      "(which has: %s): " SAME_DRIVES_HINT, id, names);
}

/* Every drive of ours got contents or passed the check; the record is
 * cleared for the next load either way. */
static int check_load_end(void *opaque, bool ok, GError **errp)
{
    g_autoptr(GList) drives = ok ? bdrv_list() : NULL;
    int ret = 0;

    for (GList *l = drives; l && ret == 0; l = l->next) {
        const char *id = bdrv_get_id(l->data);
        if (!is_loaded(id)) {
            ret = refuse_unloaded(id, errp);
        }
    }
    g_clear_pointer(&coverage.loaded, g_hash_table_unref);
    coverage.listed = false;
    return ret;
}

static const SaveVMHandlers check_handlers = {
    .save_complete = check_save_complete,
    .load_state = check_load_state,
    .load_end = check_load_end,
    .is_active = check_is_active,
};

void storage_check_register(void)
{
    savevm_register(STORAGE_CHECK_IDSTR, 0, STORAGE_CHECK_VERSION, &check_handlers, NULL);
}
