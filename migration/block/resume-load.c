/* block-resume, destination side: how many records of each 1 MiB chunk
 * of each drive this side applied (and, in the journals beside the
 * drives, flushed) for the migration whose id the source's RESUME option
 * names; the map of them that a resumed load sends back to the source
 * (include/migration/block-migration.h); the journals' life: written
 * after flushes, read when a restarted destination is resumed, removed
 * when the migration completes or a new one starts. */
#include <string.h>

#include "migration/options.h"
#include "block-internal.h"
#include "util/bswap.h"

/* Journals are rewritten at most this often (a stale one only makes a
 * resume send more). */
#define JOURNAL_INTERVAL_US (G_USEC_PER_SEC / 2)

typedef struct LoadDrive {
    BlockDriverState *bs;
    char *id;
    uint64_t size;
    uint64_t nchunks;
    uint32_t *applied;          /* records applied, per chunk */
    char *journal;              /* NULL: not a local file */
} LoadDrive;

static struct {
    GMutex lock;
    GPtrArray *drives;          /* LoadDrive *; NULL: no resumable migration */
    uint8_t id[BLK_MIG_RESUME_ID_LEN];
    gint64 journal_us;          /* last written */
} rl;

static void drive_free(gpointer p)
{
    LoadDrive *d = p;

    g_free(d->applied);
    g_free(d->id);
    g_free(d->journal);
    g_free(d);
}

/* Every drive of ours, with nothing applied. */
static GPtrArray *drives_new(void)
{
    g_autoptr(GList) list = bdrv_list();
    GPtrArray *drives = g_ptr_array_new_with_free_func(drive_free);

    for (GList *l = list; l; l = l->next) {
        LoadDrive *d = g_new0(LoadDrive, 1);

        d->bs = l->data;
        d->id = g_strdup(bdrv_get_id(d->bs));
        d->size = bdrv_getlength(d->bs);
        d->nchunks = (d->size + BLK_CHUNK - 1) / BLK_CHUNK;
        d->applied = g_new0(uint32_t, d->nchunks ? d->nchunks : 1);
        d->journal = blk_resume_journal_path(d->bs);
        g_ptr_array_add(drives, d);
    }
    return drives;
}

/* The journal beside every drive of ours goes. */
static void remove_journals(void)
{
    g_autoptr(GList) list = bdrv_list();

    for (GList *l = list; l; l = l->next) {
        g_autofree char *path = blk_resume_journal_path(l->data);
        if (path) {
            blk_resume_journal_remove(path);
        }
    }
}

void blk_resume_load_forget(void)
{
    g_mutex_lock(&rl.lock);
    g_clear_pointer(&rl.drives, g_ptr_array_unref);
    g_mutex_unlock(&rl.lock);
    remove_journals();
}

bool blk_resume_load_resumable(void)
{
    bool on;

    g_mutex_lock(&rl.lock);
    on = rl.drives != NULL;
    g_mutex_unlock(&rl.lock);
    return on;
}

void blk_resume_load_applied(BlockDriverState *bs, uint64_t offset)
{
    g_mutex_lock(&rl.lock);
    for (guint i = 0; rl.drives && i < rl.drives->len; i++) {
        LoadDrive *d = rl.drives->pdata[i];
        if (d->bs == bs && offset / BLK_CHUNK < d->nchunks) {
            d->applied[offset / BLK_CHUNK]++;
            break;
        }
    }
    g_mutex_unlock(&rl.lock);
}

/* ---- journals ---- */

/* A copy of every drive's counts (rl.lock held). */
static GPtrArray *snapshot_locked(void)
{
    GPtrArray *snap = g_ptr_array_new_with_free_func(g_free);

    for (guint i = 0; i < rl.drives->len; i++) {
        LoadDrive *d = rl.drives->pdata[i];
        g_ptr_array_add(snap, g_memdup2(d->applied, 4 * MAX(d->nchunks, 1)));
    }
    return snap;
}

GPtrArray *blk_resume_load_snapshot(bool force)
{
    GPtrArray *snap = NULL;
    gint64 now = g_get_monotonic_time();

    g_mutex_lock(&rl.lock);
    if (rl.drives && (force || now - rl.journal_us >= JOURNAL_INTERVAL_US)) {
        rl.journal_us = now;
        snap = snapshot_locked();
    }
    g_mutex_unlock(&rl.lock);
    return snap;
}

/* What a journal write needs of a drive, copied under rl.lock. */
typedef struct JournalJob {
    char *path;
    uint64_t size, nchunks;
} JournalJob;

void blk_resume_load_commit(GPtrArray *snap)
{
    uint8_t id[BLK_MIG_RESUME_ID_LEN];
    g_autofree JournalJob *jobs = NULL;
    guint n = 0;

    if (!snap) {
        return;
    }
    g_mutex_lock(&rl.lock);
    jobs = g_new0(JournalJob, snap->len + 1);
    for (; rl.drives && n < rl.drives->len && n < snap->len; n++) {
        LoadDrive *d = rl.drives->pdata[n];
        jobs[n] = (JournalJob){ g_strdup(d->journal), d->size, d->nchunks };
    }
    memcpy(id, rl.id, sizeof(id));
    g_mutex_unlock(&rl.lock);
    /* Written outside the lock: the writers count on meanwhile. */
    for (guint i = 0; i < n; i++) {
        GError *err = NULL;
        if (jobs[i].path && !blk_resume_journal_write(jobs[i].path, id, jobs[i].size,
                                                      snap->pdata[i], jobs[i].nchunks, &err)) {
            g_warning("block migration: %s", err->message);
            g_error_free(err);
        }
        g_free(jobs[i].path);
    }
    g_ptr_array_unref(snap);
}

/* ---- a resumed load ---- */

/* The counts of every drive from its journal; false with *errp naming the
 * first journal that is missing or does not match. */
static bool read_journals(GPtrArray *drives, const uint8_t *id, GError **errp)
{
    for (guint i = 0; i < drives->len; i++) {
        LoadDrive *d = drives->pdata[i];
        uint64_t n = 0;
        uint32_t *counts;

        if (!d->journal) {
            g_set_error(errp, MIG_ERROR, 0, "drive '%s' is not a local file, so it has no "
                        "resume journal", d->id);
            return false;
        }
        counts = blk_resume_journal_read(d->journal, id, d->size, &n, errp);
        if (!counts) {
            return false;
        }
        g_free(d->applied);
        d->applied = counts;
    }
    return true;
}

/* rl.lock held: the drives of the migration ID, from memory or from the
 * journals; *WHY says why none could be had (then all start from zero). */
static void recover_locked(const uint8_t *id, char **why)
{
    GPtrArray *drives;
    GError *err = NULL;

    if (rl.drives && memcmp(rl.id, id, sizeof(rl.id)) == 0) {
        return;
    }
    g_clear_pointer(&rl.drives, g_ptr_array_unref);
    drives = drives_new();
    if (!read_journals(drives, id, &err)) {
        *why = g_strdup(err->message);
        g_error_free(err);
        g_ptr_array_unref(drives);
        drives = drives_new();
    }
    rl.drives = drives;
    memcpy(rl.id, id, sizeof(rl.id));
}

/* rl.lock held: the map (block-migration.h) with RESUMED and WHY. */
static GByteArray *map_locked(bool resumed, const char *why)
{
    GByteArray *b = g_byte_array_new();
    size_t wlen = MIN(strlen(why), 1024);
    uint8_t head[8];

    head[0] = BLK_MIG_RESUME_MAP_VERSION;
    head[1] = resumed;
    st_be16(head + 2, wlen);
    g_byte_array_append(b, head, 4);
    g_byte_array_append(b, (const uint8_t *)why, wlen);
    st_be32(head, rl.drives->len);
    g_byte_array_append(b, head, 4);
    for (guint i = 0; i < rl.drives->len; i++) {
        LoadDrive *d = rl.drives->pdata[i];
        uint8_t idlen = strlen(d->id);
        guint at;

        g_byte_array_append(b, &idlen, 1);
        g_byte_array_append(b, (const uint8_t *)d->id, idlen);
        st_be64(head, d->nchunks);
        g_byte_array_append(b, head, 8);
        at = b->len;
        g_byte_array_set_size(b, at + 4 * d->nchunks);
        for (uint64_t c = 0; c < d->nchunks; c++) {
            st_be32(b->data + at + 4 * c, d->applied[c]);
        }
    }
    return b;
}

/* A resumed load: recover the counts, make what they count durable, and
 * tell the source. */
static bool resume(const uint8_t *id, const SaveVMLoadContext *ctx, GError **errp)
{
    g_autofree char *why = NULL;
    GByteArray *map;
    bool sent;

    g_mutex_lock(&rl.lock);
    recover_locked(id, &why);
    g_mutex_unlock(&rl.lock);
    if (why) {
        g_warning("block migration: %s; the migration starts again from scratch", why);
    }
    if (!blk_flush_all_drives("block migration", errp)) {
        return false;
    }
    blk_resume_load_commit(blk_resume_load_snapshot(true));
    g_mutex_lock(&rl.lock);
    map = map_locked(!why, why ? why : "");
    g_mutex_unlock(&rl.lock);
    sent = ctx->send_resume_map(ctx->opaque, map->data, map->len);
    g_byte_array_unref(map);
    if (!sent) {
        g_set_error(errp, MIG_ERROR, 0, "block migration: a resumed migration needs the "
                    "return path (a socket migration)");
    }
    return sent;
}

/* A new migration: nothing applied yet, old journals go. */
static void start_new(const uint8_t *id)
{
    blk_resume_load_forget();
    g_mutex_lock(&rl.lock);
    rl.drives = drives_new();
    memcpy(rl.id, id, sizeof(rl.id));
    rl.journal_us = 0;
    g_mutex_unlock(&rl.lock);
}

bool blk_resume_load_option(const uint8_t *payload, uint32_t len,
                            const SaveVMLoadContext *ctx, GError **errp)
{
    if (len != BLK_MIG_RESUME_ID_LEN + 1 || payload[BLK_MIG_RESUME_ID_LEN] > 1) {
        g_set_error(errp, MIG_ERROR, 0, "block migration: malformed RESUME option");
        return false;
    }
    if (!mig_cap_enabled(MIG_CAP_BLOCK_RESUME)) {
        g_set_error(errp, MIG_ERROR, 0, "block migration: the source migrates with "
                    "block-resume; set the capability block-resume on the destination too");
        return false;
    }
    if (payload[BLK_MIG_RESUME_ID_LEN] == 0) {
        start_new(payload);
        return true;
    }
    return resume(payload, ctx, errp);
}
