/* Which ranges of a drive the storage check compares, and their digest
 * (the layout is in include/migration/storage-check.h).  Half the ranges
 * are spread evenly; the other half start where random places lead to
 * data, so a mostly empty source cannot pass for an empty destination. */
#include "block/block.h"
#include "migration/storage-check.h"
#include "block-internal.h"

/* Block status calls one search for data may make (a fragmented or
 * qcow2 drive answers in small runs): beyond, the place is used as is. */
#define MAX_STATUS_CALLS 1024

static void add_range(GArray *ranges, uint64_t off, uint64_t size)
{
    BlkRange r = { .off = ROUND_DOWN(off, BLK_GRAIN), .len = 0 };

    r.len = MIN((uint64_t)STORAGE_CHECK_RANGE_LEN, size - r.off);
    g_array_append_val(ranges, r);
}

/* The first data at or after POS (a failing block status counts as
 * data); -1 when none is found before END. */
static int64_t next_data(BlockDriverState *bs, uint64_t pos, uint64_t end)
{
    for (int calls = 0; pos < end && calls < MAX_STATUS_CALLS; calls++) {
        uint64_t pnum = 0;
        bool is_data = true;

        if (bdrv_block_status(bs, pos, end - pos, &pnum, &is_data) < 0 || pnum == 0 ||
            is_data) {
            return pos;
        }
        pos += pnum;
    }
    return -1;
}

/* A random place moved forward to data, wrapping round to the start;
 * the place itself on a drive without data. */
static uint64_t data_place(BlockDriverState *bs, uint64_t size)
{
    uint64_t place = MIN((uint64_t)(g_random_double() * size), size - 1);
    int64_t found = next_data(bs, place, size);

    if (found < 0) {
        found = next_data(bs, 0, MIN(place + 1, size));
    }
    return found < 0 ? place : (uint64_t)found;
}

static gint compare_ranges(gconstpointer a, gconstpointer b)
{
    const BlkRange *x = a, *y = b;

    return x->off < y->off ? -1 : x->off > y->off;
}

GArray *storage_sample_choose(BlockDriverState *bs)
{
    GArray *ranges = g_array_new(false, false, sizeof(BlkRange));
    uint64_t size = bdrv_getlength(bs);

    if (size == 0) {
        return ranges;
    }
    for (unsigned i = 0; i < STORAGE_CHECK_EVEN_RANGES; i++) {
        add_range(ranges, size / STORAGE_CHECK_EVEN_RANGES * i, size);
    }
    for (unsigned i = 0; i < STORAGE_CHECK_DATA_RANGES; i++) {
        add_range(ranges, data_place(bs, size), size);
    }
    g_array_sort(ranges, compare_ranges);
    return ranges;
}

int storage_sample_digest(BlockDriverState *bs, const GArray *ranges, uint64_t salt,
                          ChecksumDigest *out, GError **errp)
{
    uint8_t *buf = bdrv_buf_alloc(bs, STORAGE_CHECK_RANGE_LEN);
    Checksum *c = checksum_new(salt);
    int ret = 0;

    for (guint i = 0; i < ranges->len && ret == 0; i++) {
        const BlkRange *r = &g_array_index(ranges, BlkRange, i);

        ret = bdrv_pread(bs, r->off, buf, r->len);
        if (ret < 0) {
            g_set_error(errp, MIG_ERROR, 0, "storage check: reading drive '%s' at offset %"
                        G_GUINT64_FORMAT " failed: %s", bdrv_get_id(bs), r->off,
                        g_strerror(-ret));
            break;
        }
        checksum_update_be64(c, r->off);
        checksum_update_be64(c, r->len);
        checksum_update(c, buf, r->len);
    }
    checksum_digest(c, out);
    checksum_free(c);
    bdrv_buf_free(buf);
    return ret < 0 ? -1 : 0;
}
