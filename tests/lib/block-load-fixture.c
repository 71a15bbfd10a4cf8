/* The load-side block-migration fixture (see block-load-fixture.h). */
#include "block-load-fixture.h"

#include <glib/gstdio.h>
#include <string.h>

#include "drives.h"
#include "files.h"
#include "migration/block-migration.h"
#include "migration/options.h"
#include "migration/savevm.h"
#include "stream-bytes.h"
#include "util/size.h"

static char *scratch_dir;

void blf_init(const char *template)
{
    GError *err = NULL;

    scratch_dir = g_dir_make_tmp(template, &err);
    g_assert_no_error(err);
}

const char *blf_dir(void)
{
    return scratch_dir;
}

int blf_run(void)
{
    int ret = g_test_run();

    g_rmdir(scratch_dir);
    g_clear_pointer(&scratch_dir, g_free);
    return ret;
}

void blf_setup(BlockLoadFixture *fx, gconstpointer data)
{
    fx->disk_path = g_build_filename(scratch_dir, "disk0.raw", NULL);
    fx->stream_path = g_build_filename(scratch_dir, "stream", NULL);
    fx->disk = td_open_drive("disk0", fx->disk_path, BLF_DISK_SIZE);
    block_migration_register();
}

static void reset_migration_settings(void)
{
    MigrationParametersUpdate u = { .has_dirty_granularity = true };

    for (int i = 0; i < MIG_CAP__MAX; i++) {
        mig_cap_set(i, i == MIG_CAP_RETURN_PATH);
    }
    u.p.dirty_granularity = MIG_DEFAULT_DIRTY_GRANULARITY;
    g_assert_true(mig_params_apply(&u, NULL));
}

void blf_teardown(BlockLoadFixture *fx, gconstpointer data)
{
    savevm_unregister_all();
    bdrv_close_all();
    g_unlink(fx->disk_path);
    g_unlink(fx->stream_path);
    g_free(fx->disk_path);
    g_free(fx->stream_path);
    reset_migration_settings();
}

void blf_assert_rejected(BlockLoadFixture *fx, const GByteArray *b, const char *expected)
{
    gsize len_before, len_after;
    g_autofree uint8_t *before = NULL, *after = NULL;
    GError *err;

    td_write_drive(fx->disk, 0, BLK_MIG_CHUNK_SIZE, 3);
    td_write_drive(fx->disk, 7 * MiB, BLK_MIG_CHUNK_SIZE, 4);
    before = tf_read_file(fx->disk_path, &len_before);
    err = sb_load_file(fx->stream_path, b);
    g_assert_nonnull(err);
    g_test_message("error: %s", err->message);
    if (!strstr(err->message, expected)) {
        g_error("expected '%s' in '%s'", expected, err->message);
    }
    after = tf_read_file(fx->disk_path, &len_after);
    g_assert_cmpmem(before, len_before, after, len_after);
    g_error_free(err);
}
