/* The environment of the stream fuzz run: the drives and their contents,
 * the valid streams the real save path makes of them (one per Flavour),
 * and the scratch directory. */
#include <fcntl.h>
#include <glib.h>
#include <string.h>
#include <unistd.h>

#include "block/block.h"
#include "migration/block-migration.h"
#include "migration/disk-verify.h"
#include "migration/options.h"
#include "migration/qemu-sections.h"
#include "migration/savevm.h"
#include "migration/stream.h"
#include "../lib/drives.h"
#include "../lib/files.h"
#include "stream-fuzz.h"

/* Two drives, so records must name the right one; the first ends in a
 * partial chunk, the second id is long enough to be worth corrupting.
 * Small, because every iteration copies the stream and both disks. */
const DriveSpec specs[NDRIVES] = {
    { "disk0", 3 * MiB + 3 * 512 },
    { "virtio-blk.scsi0-hd1", 2 * MiB },
};

Flavour flavours[NFLAVOURS] = {
    { "zero-blocks", .zero_blocks = true, .fuzz = true },
    { "qemu-compat", .qemu_compat = true },
    { "zstd", .zero_blocks = true, .compress = true, .algo = MIG_COMPRESS_ZSTD, .fuzz = true },
    { "zlib", .zero_blocks = true, .compress = true, .algo = MIG_COMPRESS_ZLIB, .fuzz = true },
    { "checksum", .zero_blocks = true, .compress = true, .algo = MIG_COMPRESS_ZSTD,
      .checksum = true, .fuzz = true },
};

FuzzEnv env;

/* ---- drives ---- */

static void pwrite_fill(BlockDriverState *bs, uint64_t off, size_t len, uint8_t seed)
{
    uint8_t *buf = g_malloc(len);

    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(seed + i * 13 + (i >> 9)) | 1;      /* never zero */
    }
    g_assert_cmpint(bdrv_pwrite(bs, off, buf, len, 0), ==, 0);
    g_free(buf);
}

static void pwrite_zeros(BlockDriverState *bs, uint64_t off, size_t len)
{
    uint8_t *zeros = g_malloc0(len);

    g_assert_cmpint(bdrv_pwrite(bs, off, zeros, len, 0), ==, 0);
    g_free(zeros);
}

/* Data that does not compress, so compressed streams mix COMPRESSED and
 * plain records. */
static void pwrite_random(BlockDriverState *bs, uint64_t off, size_t len, guint32 seed)
{
    GRand *rng = g_rand_new_with_seed(seed);
    uint8_t *buf = g_malloc(len);

    for (size_t i = 0; i < len; i++) {
        buf[i] = g_rand_int_range(rng, 1, 256);
    }
    g_assert_cmpint(bdrv_pwrite(bs, off, buf, len, 0), ==, 0);
    g_free(buf);
    g_rand_free(rng);
}

/* Scattered data, explicitly written (allocated) zeros that must travel
 * as ZERO_BLOCK, holes, and data in the last sector.  Idempotent, so
 * every save sees the same disks. */
static void populate(BlockDriverState *bs, int i)
{
    uint64_t size = specs[i].size;

    if (i == 0) {
        pwrite_fill(bs, 8192, 4096, 1);
        pwrite_zeros(bs, 1 * MiB, CHUNK);
        pwrite_fill(bs, size - 512, 512, 3);
    } else {
        pwrite_fill(bs, 1 * MiB + 300 * 512, 70000, 4);
        pwrite_zeros(bs, 1 * MiB + 600 * 512, 4096);
        pwrite_random(bs, 1 * MiB + 512 * 1024, 8192, 42);
    }
}

/* ---- the source side: real save path ---- */

static void set_caps(const Flavour *fl)
{
    MigrationParametersUpdate u = {
        .has_compress_algorithm = true,
        .p.compress_algorithm = fl ? fl->algo : MIG_COMPRESS_ZSTD,
    };
    GError *err = NULL;

    mig_cap_set(MIG_CAP_BLOCK, fl != NULL);
    mig_cap_set(MIG_CAP_ZERO_BLOCKS, fl && fl->zero_blocks);
    mig_cap_set(MIG_CAP_QEMU_COMPAT, fl && fl->qemu_compat);
    mig_cap_set(MIG_CAP_COMPRESS, fl && fl->compress);
    mig_cap_set(MIG_CAP_BLOCK_CHECKSUM, fl && fl->checksum);
    g_assert_true(mig_params_apply(&u, &err));
    g_assert_no_error(err);
}

/* Bulk phase in several PART sections, a dirty pass re-sending a data
 * chunk after a guest write, and END re-sending a chunk that became
 * allocated zeros: every section type the source produces. */
static void run_save(MigStream *f, BlockDriverState **src)
{
    GError *err = NULL;
    int ret, rounds = 0;

    g_assert_cmpint(savevm_state_header(f, &err), ==, 0);
    g_assert_cmpint(savevm_state_setup(f, &err), ==, 0);
    g_assert_no_error(err);
    do {
        ret = savevm_state_iterate(f, 3 * MiB / 2, &err);
        g_assert_no_error(err);
        g_assert_cmpint(++rounds, <, 100);
    } while (ret == 0);
    g_assert_cmpint(ret, ==, 1);
    pwrite_fill(src[0], 4096, 512, 9);
    g_assert_cmpint(savevm_state_iterate(f, 64 * MiB, &err), ==, 1);
    g_assert_no_error(err);
    pwrite_zeros(src[1], 8192, 1024);
    g_assert_cmpint(savevm_state_complete(f, &err), ==, 0);
    g_assert_no_error(err);
    savevm_state_cleanup();
}

static GBytes *save_stream(const Flavour *fl)
{
    BlockDriverState *src[NDRIVES];
    MigStream *f;
    uint8_t *bytes;
    gsize len;

    for (guint i = 0; i < NDRIVES; i++) {
        src[i] = td_open_drive(specs[i].id, env.src_path[i], specs[i].size);
        populate(src[i], i);
    }
    set_caps(fl);
    f = mig_stream_new_writer(open(env.stream_path, O_WRONLY | O_CREAT | O_TRUNC, 0600));
    run_save(f, src);
    mig_stream_close(f);
    for (guint i = 0; i < NDRIVES; i++) {
        bdrv_close(src[i]);
    }
    set_caps(NULL);
    bytes = tf_read_file(env.stream_path, &len);
    return g_bytes_new_take(bytes, len);
}

/* ---- set-up and tear-down of the whole run ---- */

static void make_pattern(guint i)
{
    env.pattern[i] = g_malloc(specs[i].size);
    for (uint64_t off = 0; off < specs[i].size; off++) {
        env.pattern[i][off] = (uint8_t)(0xa5 ^ (off * 29) ^ (off >> 11) ^ i) | 0x80;
    }
}

void setup_env(void)
{
    GError *err = NULL;

    env.tmpdir = g_dir_make_tmp("blkmig-fuzz-XXXXXX", &err);
    g_assert_no_error(err);
    env.keep_tmp = g_getenv("KEEP_TMP") != NULL;
    env.stream_path = g_build_filename(env.tmpdir, "stream", NULL);
    for (guint i = 0; i < NDRIVES; i++) {
        g_autofree char *src = g_strdup_printf("src-%s.raw", specs[i].id);
        g_autofree char *dst = g_strdup_printf("dst-%s.raw", specs[i].id);
        env.src_path[i] = g_build_filename(env.tmpdir, src, NULL);
        env.dst_path[i] = g_build_filename(env.tmpdir, dst, NULL);
        make_pattern(i);
    }
    block_migration_register();
    disk_verify_register();
    qemu_sections_register(NULL, NULL);
    env.fuzzed = g_ptr_array_new();
    for (guint i = 0; i < NFLAVOURS; i++) {
        flavours[i].stream = save_stream(&flavours[i]);
        flavours[i].map = map_stream(flavours[i].stream);
        if (flavours[i].fuzz) {
            g_ptr_array_add(env.fuzzed, &flavours[i]);
        }
    }
    for (guint i = 0; i < NDRIVES; i++) {
        gsize len;
        env.source[i] = tf_read_file(env.src_path[i], &len);
        g_assert_cmpuint(len, ==, specs[i].size);
        env.dst[i] = td_open_drive(specs[i].id, env.dst_path[i], specs[i].size);
    }
}

void teardown_env(void)
{
    bdrv_close_all();
    savevm_unregister_all();
    if (env.keep_tmp) {
        g_test_message("scratch files kept in %s", env.tmpdir);
    } else {
        remove_scratch();
    }
    for (guint i = 0; i < NDRIVES; i++) {
        g_free(env.src_path[i]);
        g_free(env.dst_path[i]);
        g_free(env.pattern[i]);
        g_free(env.source[i]);
    }
    g_free(env.tmpdir);
    g_free(env.stream_path);
    for (guint i = 0; i < NFLAVOURS; i++) {
        g_bytes_unref(flavours[i].stream);
        stream_map_free(flavours[i].map);
    }
    g_ptr_array_unref(env.fuzzed);
}
