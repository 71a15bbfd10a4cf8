/* block-resume, source side: which records of each 1 MiB chunk the
 * destination may hold, so that a resumed migration sends only what it
 * lacks.  Per chunk the source counts the records it sent and the units
 * not yet settled (their dirty bits cleared, records not yet handed to
 * the wire, or dropped).  The records of a chunk travel in order on one
 * connection and the destination counts those it applied and flushed, so
 * a chunk whose counts agree and that has no unsettled unit is whole
 * there; any other chunk below the bulk cursor is marked dirty again. */
#include <string.h>

#include "block-internal.h"
#include "util/bswap.h"

typedef struct ResumeDrive {
    uint64_t nchunks;
    uint32_t *records;          /* records sent, per chunk */
    uint32_t *unsettled;        /* units taken and not yet sent, per chunk */
} ResumeDrive;

static struct {
    GMutex lock;
    GHashTable *drives;         /* BlockDriverState * -> ResumeDrive *; NULL: off */
    uint8_t id[BLK_MIG_RESUME_ID_LEN];
} rs;

static void drive_free(gpointer p)
{
    ResumeDrive *d = p;

    g_free(d->records);
    g_free(d->unsettled);
    g_free(d);
}

void blk_resume_save_start(GPtrArray *devs)
{
    GHashTable *drives = g_hash_table_new_full(NULL, NULL, NULL, drive_free);

    for (guint i = 0; i < devs->len; i++) {
        BlkMigDevice *dev = devs->pdata[i];
        ResumeDrive *d = g_new0(ResumeDrive, 1);

        d->nchunks = (dev->size + BLK_CHUNK - 1) / BLK_CHUNK;
        d->records = g_new0(uint32_t, d->nchunks);
        d->unsettled = g_new0(uint32_t, d->nchunks);
        g_hash_table_insert(drives, dev->bs, d);
    }
    g_mutex_lock(&rs.lock);
    if (rs.drives) {
        g_hash_table_unref(rs.drives);
    }
    rs.drives = drives;
    for (size_t i = 0; i < sizeof(rs.id); i++) {
        rs.id[i] = g_random_int_range(0, 256);
    }
    g_mutex_unlock(&rs.lock);
}

void blk_resume_save_stop(void)
{
    g_mutex_lock(&rs.lock);
    g_clear_pointer(&rs.drives, g_hash_table_unref);
    g_mutex_unlock(&rs.lock);
}

bool blk_resume_save_id(uint8_t *id)
{
    bool on;

    g_mutex_lock(&rs.lock);
    on = rs.drives != NULL;
    memcpy(id, rs.id, sizeof(rs.id));
    g_mutex_unlock(&rs.lock);
    return on;
}

/* rs.lock held: JOB's drive and chunk index, or NULL. */
static ResumeDrive *job_drive_locked(const BlkChunkJob *job, uint64_t *index)
{
    ResumeDrive *d = rs.drives ? g_hash_table_lookup(rs.drives, job->bs) : NULL;

    *index = job->chunk / BLK_CHUNK;
    return d && *index < d->nchunks ? d : NULL;
}

void blk_resume_note_taken(const BlkChunkJob *job)
{
    uint64_t i;
    ResumeDrive *d;

    g_mutex_lock(&rs.lock);
    d = job_drive_locked(job, &i);
    if (d) {
        d->unsettled[i]++;
    }
    g_mutex_unlock(&rs.lock);
}

void blk_resume_note_sent(const BlkChunkJob *job, bool sent)
{
    uint64_t i;
    ResumeDrive *d;

    if (!sent) {
        return;     /* stays unsettled: its chunk goes again on resume */
    }
    g_mutex_lock(&rs.lock);
    d = job_drive_locked(job, &i);
    if (d) {
        d->records[i] += job->records->len;
        d->unsettled[i] -= d->unsettled[i] > 0;
    }
    g_mutex_unlock(&rs.lock);
}

/* ---- the destination's map ---- */

/* A cursor over the map's bytes. */
typedef struct MapReader {
    const uint8_t *p;
    size_t left;
} MapReader;

static bool map_take(MapReader *r, void *out, size_t n)
{
    if (r->left < n) {
        return false;
    }
    memcpy(out, r->p, n);
    r->p += n;
    r->left -= n;
    return true;
}

/* rs.lock held: chunk I of DEV is whole at the destination, which holds
 * DEST records of it; the counts agree from now on. */
static bool chunk_is_whole_locked(ResumeDrive *d, uint64_t i, uint32_t dest)
{
    bool whole = d->unsettled[i] == 0 && d->records[i] == dest;

    d->records[i] = dest;
    d->unsettled[i] = 0;
    return whole;
}

/* rs.lock held: mark DEV's chunks below its bulk cursor that the
 * destination lacks (DEST: its counts, N of them; NULL: it has none)
 * dirty.  Returns the bytes marked. */
static uint64_t redirty_locked(BlkMigDevice *dev, ResumeDrive *d, const uint8_t *dest,
                               uint64_t n)
{
    uint64_t marked = 0;

    for (uint64_t i = 0; i < d->nchunks && i * BLK_CHUNK < dev->bulk_cursor; i++) {
        uint32_t held = dest && i < n ? ld_be32(dest + 4 * i) : 0;
        uint64_t off = i * BLK_CHUNK, len = MIN(BLK_CHUNK, dev->size - off);

        if (!chunk_is_whole_locked(d, i, held)) {
            dirty_bitmap_mark(dev->bitmap, off, len);
            marked += len;
        }
    }
    return marked;
}

/* The entry of drive DEV in the map: its counts and how many, or NULL. */
static const uint8_t *find_drive(const uint8_t *map, size_t len, const BlkMigDevice *dev,
                                 uint64_t *n)
{
    MapReader r = { map, len };
    uint32_t drives = 0;

    if (!map_take(&r, &drives, 4)) {
        return NULL;
    }
    drives = ld_be32((uint8_t *)&drives);
    for (uint32_t k = 0; k < drives; k++) {
        uint8_t idlen, size[8];
        char id[256];

        if (!map_take(&r, &idlen, 1) || !map_take(&r, id, idlen) || !map_take(&r, size, 8)) {
            return NULL;
        }
        id[idlen] = '\0';
        *n = ld_be64(size);
        if (*n > r.left / 4) {
            return NULL;
        }
        if (strcmp(id, dev->id) == 0) {
            return r.p;
        }
        r.p += 4 * *n;
        r.left -= 4 * *n;
    }
    return NULL;
}

/* The map's header: whether the destination resumed, and if not why;
 * the drives part follows at *REST. */
static bool read_header(const uint8_t *map, size_t len, bool *resumed, char **why,
                        MapReader *rest, GError **errp)
{
    MapReader r = { map, len };
    uint8_t version, flag, wlen[2];
    uint16_t n;

    if (!map_take(&r, &version, 1) || !map_take(&r, &flag, 1) || !map_take(&r, wlen, 2) ||
        version != BLK_MIG_RESUME_MAP_VERSION || r.left < (n = ld_be16(wlen))) {
        g_set_error(errp, MIG_ERROR, 0, "block migration: the destination's resume map is "
                    "malformed");
        return false;
    }
    *resumed = flag == 1;
    *why = g_strndup((const char *)r.p, n);
    rest->p = r.p + n;
    rest->left = r.left - n;
    return true;
}

int blk_resume_apply_map(GPtrArray *devs, const uint8_t *map, size_t len, GError **errp)
{
    g_autofree char *why = NULL;
    uint64_t marked = 0;
    MapReader rest;
    bool resumed;

    if (!read_header(map, len, &resumed, &why, &rest, errp)) {
        return -1;
    }
    if (!resumed) {
        g_warning("block migration: the destination holds nothing it can resume from (%s): "
                  "sending everything again", why);
    }
    g_mutex_lock(&rs.lock);
    for (guint i = 0; rs.drives && i < devs->len; i++) {
        BlkMigDevice *dev = devs->pdata[i];
        ResumeDrive *d = g_hash_table_lookup(rs.drives, dev->bs);
        uint64_t n = 0;
        const uint8_t *counts = resumed ? find_drive(rest.p, rest.left, dev, &n) : NULL;

        if (d) {
            marked += redirty_locked(dev, d, counts, n);
        }
    }
    g_mutex_unlock(&rs.lock);
    g_message("block migration: resuming; %" G_GUINT64_FORMAT " bytes of the chunks sent "
              "are missing at the destination and go again", marked);
    return 0;
}
