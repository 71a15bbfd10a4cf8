/* block-resume in-process: the destination's journal (resume-journal.c)
 * round-trips and refuses another migration's, another size's and a
 * truncated one with a reason; the source (resume-save.c) marks dirty
 * exactly the chunks a destination's resume map (built here by hand, as
 * include/migration/block-migration.h lays it out) shows incomplete:
 * fewer records than were sent, or a unit that never reached the wire;
 * a map that holds nothing marks every chunk sent. */
#include <glib.h>
#include <string.h>
#include <unistd.h>

#include "../../migration/block/block-internal.h"
#include "../lib/blk-mig-device.h"
#include "util/bswap.h"

#define CHUNKS 4
#define DRIVE_SIZE (CHUNKS * MiB)
#define GRAN 4096

typedef struct Fixture {
    TestBlkMigDevice d;
    GPtrArray *devs;
} Fixture;

static void fixture_setup(Fixture *f, gconstpointer data)
{
    tbd_open(&f->d, "test-block-resume-XXXXXX", DRIVE_SIZE, GRAN);
    f->d.dev.bulk_cursor = DRIVE_SIZE;
    f->devs = g_ptr_array_new();
    g_ptr_array_add(f->devs, &f->d.dev);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    blk_resume_save_stop();
    g_ptr_array_unref(f->devs);
    tbd_close(&f->d);
}

/* ---- the journal ---- */

static void test_journal(Fixture *f, gconstpointer data)
{
    g_autofree char *path = blk_resume_journal_path(f->d.dev.bs);
    g_autofree char *want = g_strdup_printf("%s.blkmig-resume", f->d.path);
    uint8_t id[BLK_MIG_RESUME_ID_LEN], other[BLK_MIG_RESUME_ID_LEN];
    uint32_t counts[CHUNKS] = { 1, 0, 7, 3 };
    g_autofree uint32_t *back = NULL;
    GError *err = NULL;
    uint64_t n = 0;

    g_assert_cmpstr(path, ==, want);
    memset(id, 0x5a, sizeof(id));
    memcpy(other, id, sizeof(id));
    other[3] ^= 1;
    g_assert_true(blk_resume_journal_write(path, id, DRIVE_SIZE, counts, CHUNKS, &err));
    back = blk_resume_journal_read(path, id, DRIVE_SIZE, &n, &err);
    g_assert_no_error(err);
    g_assert_cmpuint(n, ==, CHUNKS);
    g_assert_cmpmem(back, sizeof(counts), counts, sizeof(counts));

    g_assert_null(blk_resume_journal_read(path, other, DRIVE_SIZE, &n, &err));
    g_assert_nonnull(strstr(err->message, "refused: it was written for another migration"));
    g_clear_error(&err);
    g_assert_null(blk_resume_journal_read(path, id, DRIVE_SIZE * 2, &n, &err));
    g_assert_nonnull(strstr(err->message, "describes a drive of 4194304 bytes, the drive has "
                                          "8388608"));
    g_clear_error(&err);
    g_assert_no_errno(truncate(path, 50));
    g_assert_null(blk_resume_journal_read(path, id, DRIVE_SIZE, &n, &err));
    g_assert_nonnull(strstr(err->message, "truncated"));
    g_clear_error(&err);
    blk_resume_journal_remove(path);
    g_assert_false(g_file_test(path, G_FILE_TEST_EXISTS));
}

/* ---- the source and the map ---- */

/* A unit of chunk I that cleared dirty bits and, when SENT, went out
 * with RECORDS records. */
static void unit(Fixture *f, unsigned i, unsigned records, bool sent)
{
    BlkChunkJob *job = blk_chunk_job_new(f->d.dev.bs, "d0", i * MiB, DRIVE_SIZE);

    g_array_set_size(job->records, records);
    blk_resume_note_taken(job);
    blk_resume_note_sent(job, sent);
    blk_chunk_job_free(job);
}

/* A map for drive d0 with COUNTS (NULL: "resumed" 0, nothing held). */
static GByteArray *map(const uint32_t *counts)
{
    GByteArray *b = g_byte_array_new();
    uint8_t buf[8] = { BLK_MIG_RESUME_MAP_VERSION, counts != NULL, 0, 0 };

    g_byte_array_append(b, buf, 4);
    st_be32(buf, 1);
    g_byte_array_append(b, buf, 4);
    g_byte_array_append(b, (const uint8_t *)"\x02" "d0", 3);
    st_be64(buf, CHUNKS);
    g_byte_array_append(b, buf, 8);
    for (unsigned i = 0; i < CHUNKS; i++) {
        st_be32(buf, counts ? counts[i] : 0);
        g_byte_array_append(b, buf, 4);
    }
    return b;
}

static bool chunk_dirty(Fixture *f, unsigned i)
{
    int64_t next = dirty_bitmap_next_dirty(f->d.dev.bitmap, i * MiB);

    return next >= 0 && (uint64_t)next < (i + 1) * MiB;
}

/* Chunk 0 whole there; chunk 1 lost its second record; chunk 2's unit
 * never went out; chunk 3 whole after two units. */
static void sent_four_chunks(Fixture *f)
{
    blk_resume_save_start(f->devs);
    unit(f, 0, 1, true);
    unit(f, 1, 2, true);
    unit(f, 2, 1, false);
    unit(f, 3, 1, true);
    unit(f, 3, 2, true);
}

static void test_map(Fixture *f, gconstpointer data)
{
    static const uint32_t held[CHUNKS] = { 1, 1, 0, 3 };
    GByteArray *m = map(held);
    GError *err = NULL;

    sent_four_chunks(f);
    g_assert_cmpint(blk_resume_apply_map(f->devs, m->data, m->len, &err), ==, 0);
    g_assert_no_error(err);
    g_assert_false(chunk_dirty(f, 0));
    g_assert_true(chunk_dirty(f, 1));
    g_assert_true(chunk_dirty(f, 2));
    g_assert_false(chunk_dirty(f, 3));
    g_assert_cmpuint(dirty_bitmap_dirty_bytes(f->d.dev.bitmap), ==, 2 * MiB);
    /* The counts agree from now on: the same map marks nothing more. */
    dirty_bitmap_clear_all(f->d.dev.bitmap);
    g_assert_cmpint(blk_resume_apply_map(f->devs, m->data, m->len, &err), ==, 0);
    g_assert_cmpuint(dirty_bitmap_dirty_bytes(f->d.dev.bitmap), ==, 0);
    g_byte_array_unref(m);
}

static void test_map_from_scratch(Fixture *f, gconstpointer data)
{
    GByteArray *m = map(NULL);
    GError *err = NULL;

    sent_four_chunks(f);
    g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING, "*holds nothing it can resume*");
    g_assert_cmpint(blk_resume_apply_map(f->devs, m->data, m->len, &err), ==, 0);
    g_test_assert_expected_messages();
    g_assert_cmpuint(dirty_bitmap_dirty_bytes(f->d.dev.bitmap), ==, DRIVE_SIZE);
    g_byte_array_set_size(m, 3);
    g_assert_cmpint(blk_resume_apply_map(f->devs, m->data, m->len, &err), ==, -1);
    g_assert_nonnull(strstr(err->message, "malformed"));
    g_clear_error(&err);
    g_byte_array_unref(m);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add("/block-resume/journal", Fixture, NULL, fixture_setup, test_journal,
               fixture_teardown);
    g_test_add("/block-resume/map", Fixture, NULL, fixture_setup, test_map, fixture_teardown);
    g_test_add("/block-resume/map-from-scratch", Fixture, NULL, fixture_setup,
               test_map_from_scratch, fixture_teardown);
    return g_test_run();
}
