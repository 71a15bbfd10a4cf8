/* Hostile vmdk images, built byte by byte: every header field, footer,
 * descriptor, directory and table entry that does not make sense fails
 * the open (or the request that meets it) with a message naming it; the
 * file is never written, and nothing crashes, also under a seeded
 * mutation loop.  The two valid baselines are a monolithicSparse image
 * and a streamOptimized one with its grain directory at the end (VMware's
 * layout, which qemu-img does not write). */
#include <errno.h>
#include <gio/gio.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <zlib.h>

#include "block/block.h"
#include "../lib/files.h"
#include "util/size.h"

/* 1 MiB disk of 8 KiB grains: one grain table covers it.
 * Sparse layout (sectors): 0 header, 1-2 descriptor, 3 directory,
 * 4-7 grain table, 8-23 grain 0 (data), 24-39 grain 3 (data); grain 1 is
 * a zero grain, the others are unallocated. */
#define SEC 512u
#define S(n) ((uint64_t)(n) * SEC)
#define GRAIN_SECTORS 16u
#define GRAIN (GRAIN_SECTORS * SEC)
#define CAPACITY 2048u
#define SPARSE_SECTORS 40u
#define BYTE0 0x5a
#define BYTE3 0xa5

/* Header field offsets (VMware Virtual Disk Format 1.1). */
enum {
    H_MAGIC = 0, H_VERSION = 4, H_FLAGS = 8, H_CAPACITY = 12, H_GRAIN = 20, H_DESC_OFF = 28,
    H_DESC_SIZE = 36, H_GTES = 44, H_RGD = 48, H_GD = 56, H_OVERHEAD = 64, H_CHECK = 73,
    H_ALGO = 77,
};
#define F_NL 1u
#define F_ZERO_GRAIN 4u
#define F_COMPRESSED (1u << 16)
#define F_MARKERS (1u << 17)
#define GD_AT_END UINT64_C(0xffffffffffffffff)

static const char descriptor[] =
    "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n"
    "createType=\"%s\"\n\n# Extent description\nRW 2048 SPARSE \"x.vmdk\"\n%s";

static void set16(uint8_t *img, uint64_t off, uint16_t v)
{
    v = GUINT16_TO_LE(v);
    memcpy(img + off, &v, 2);
}

static void set32(uint8_t *img, uint64_t off, uint32_t v)
{
    v = GUINT32_TO_LE(v);
    memcpy(img + off, &v, 4);
}

static void set64(uint8_t *img, uint64_t off, uint64_t v)
{
    v = GUINT64_TO_LE(v);
    memcpy(img + off, &v, 8);
}

static void put_header(uint8_t *h, uint32_t flags, uint64_t gd, uint64_t overhead,
                       uint16_t algo)
{
    memcpy(h + H_MAGIC, "KDMV", 4);
    set32(h, H_VERSION, 1);
    set32(h, H_FLAGS, flags);
    set64(h, H_CAPACITY, CAPACITY);
    set64(h, H_GRAIN, GRAIN_SECTORS);
    set64(h, H_DESC_OFF, 1);
    set64(h, H_DESC_SIZE, 2);
    set32(h, H_GTES, 512);
    set64(h, H_GD, gd);
    set64(h, H_OVERHEAD, overhead);
    memcpy(h + H_CHECK, "\n \r\n", 4);
    set16(h, H_ALGO, algo);
}

static void put_descriptor(uint8_t *img, const char *type, const char *extra)
{
    g_autofree char *text = g_strdup_printf(descriptor, type, extra);
    g_assert_cmpuint(strlen(text), <, S(2));
    memset(img + S(1), 0, S(2));
    memcpy(img + S(1), text, strlen(text));
}

static uint8_t *sparse_image(void)
{
    uint8_t *img = g_malloc0(S(SPARSE_SECTORS));

    put_header(img, F_NL | F_ZERO_GRAIN, 3, 8, 0);
    put_descriptor(img, "monolithicSparse", "");
    set32(img, S(3), 4);                            /* the grain table */
    set32(img, S(4) + 0 * 4, 8);                    /* grain 0 */
    set32(img, S(4) + 1 * 4, 1);                    /* grain 1: zero */
    set32(img, S(4) + 3 * 4, 24);                   /* grain 3 */
    memset(img + S(8), BYTE0, GRAIN);
    memset(img + S(24), BYTE3, GRAIN);
    return img;
}

/* ---- streamOptimized, directory at the end ---- */

typedef struct Stream {
    uint8_t *img;
    size_t len;                 /* bytes, whole sectors */
    uint64_t grain0;            /* sector of grain 0's marker */
} Stream;

/* A metadata marker: sectors, 0, type. */
static void marker(uint8_t *at, uint64_t val, uint32_t size, uint32_t type)
{
    set64(at, 0, val);
    set32(at, 8, size);
    set32(at, 12, type);
}

static uint64_t stream_grain(Stream *st, uint64_t sector, uint64_t lba, uint8_t byte)
{
    uint8_t data[GRAIN];
    uLongf clen = compressBound(GRAIN);
    uint8_t *at = st->img + S(sector);

    memset(data, byte, GRAIN);
    g_assert_cmpint(compress(at + 12, &clen, data, GRAIN), ==, Z_OK);
    set64(at, 0, lba);                      /* a grain marker: LBA, size, data */
    set32(at, 8, (uint32_t)clen);
    return sector + (12 + clen + SEC - 1) / SEC;
}

static Stream stream_image(void)
{
    Stream st = { .img = g_malloc0(S(64)) };
    uint32_t flags = F_NL | F_COMPRESSED | F_MARKERS;
    uint64_t sec;

    put_header(st.img, flags, GD_AT_END, 3, 1);
    put_descriptor(st.img, "streamOptimized", "");
    st.grain0 = 3;
    sec = stream_grain(&st, 3, 0, BYTE0);
    uint64_t grain3 = sec;
    sec = stream_grain(&st, sec, 3 * GRAIN_SECTORS, BYTE3);
    marker(st.img + S(sec), 4, 0, 1);                /* grain table */
    uint64_t gt = sec + 1;
    set32(st.img, S(gt), 3);
    set32(st.img, S(gt) + 3 * 4, (uint32_t)grain3);
    marker(st.img + S(gt + 4), 1, 0, 2);             /* grain directory */
    uint64_t gd = gt + 5;
    set32(st.img, S(gd), (uint32_t)gt);
    marker(st.img + S(gd + 1), 1, 0, 3);             /* footer */
    put_header(st.img + S(gd + 2), flags, gd, 3, 1);
    marker(st.img + S(gd + 3), 0, 0, 0);             /* end of stream */
    st.len = S(gd + 4);
    g_assert_cmpuint(st.len, <=, S(64));
    return st;
}

/* ---- Fixture ---- */

typedef struct Fixture {
    char *dir;
    char *path;
    uint8_t *img;
    size_t len;
} Fixture;

static void fixture_setup(Fixture *f, gconstpointer data)
{
    GError *err = NULL;
    f->dir = g_dir_make_tmp("test-vmdk-hostile-XXXXXX", &err);
    g_assert_no_error(err);
    f->path = g_build_filename(f->dir, "x.vmdk", NULL);
    f->img = sparse_image();
    f->len = S(SPARSE_SECTORS);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    bdrv_close_all();
    g_unlink(f->path);
    g_rmdir(f->dir);
    g_free(f->dir);
    g_free(f->path);
    g_free(f->img);
}

static void use_stream(Fixture *f)
{
    Stream st = stream_image();
    g_free(f->img);
    f->img = st.img;
    f->len = st.len;
}

static void save(Fixture *f)
{
    g_assert_true(g_file_set_contents(f->path, (const char *)f->img, f->len, NULL));
}

static BlockDriverState *try_open(Fixture *f, const char *format, bool read_only, GError **errp)
{
    BlockOptions opts = { .id = "v", .filename = f->path, .format = format,
                          .read_only = read_only };
    return bdrv_open(&opts, errp);
}

static void assert_untouched(Fixture *f)
{
    gsize len;
    g_autofree uint8_t *after = tf_read_file(f->path, &len);
    g_assert_cmpmem(after, len, f->img, f->len);
}

static void expect_open_error(Fixture *f, const char *message)
{
    GError *err = NULL;

    save(f);
    for (int fmt = 0; fmt < 2; fmt++) {
        g_assert_null(try_open(f, fmt ? "vmdk" : "auto", true, &err));
        g_assert_nonnull(err);
        if (!strstr(err->message, message)) {
            g_error("'%s' does not say '%s'", err->message, message);
        }
        g_clear_error(&err);
    }
    assert_untouched(f);
}

/* ---- The baselines ---- */

static void check_contents(BlockDriverState *bs)
{
    g_autofree uint8_t *buf = g_malloc(S(CAPACITY));
    g_autofree uint8_t *want = g_malloc0(S(CAPACITY));

    memset(want, BYTE0, GRAIN);
    memset(want + 3 * GRAIN, BYTE3, GRAIN);
    g_assert_cmpint(bdrv_getlength(bs), ==, S(CAPACITY));
    g_assert_cmpint(bdrv_pread(bs, 0, buf, S(CAPACITY)), ==, 0);
    g_assert_cmpmem(buf, S(CAPACITY), want, S(CAPACITY));
    /* Unaligned pieces across grains. */
    g_assert_cmpint(bdrv_pread(bs, GRAIN - 3, buf, 2 * GRAIN + 10), ==, 0);
    g_assert_cmpmem(buf, 2 * GRAIN + 10, want + GRAIN - 3, 2 * GRAIN + 10);
}

static void expect_run(BdrvWalk *w, uint64_t off, uint64_t len, BdrvStatus status)
{
    BdrvExtent e;
    g_assert_cmpint(bdrv_walk_next(w, &e), ==, 1);
    g_assert_cmpuint(e.off, ==, off);
    g_assert_cmpuint(e.len, ==, len);
    g_assert_cmpint(e.status, ==, status);
}

static void test_valid_sparse(Fixture *f, gconstpointer data)
{
    GError *err = NULL;
    BdrvWalk w;

    save(f);
    BlockDriverState *bs = try_open(f, "auto", true, &err);
    g_assert_no_error(err);
    g_assert_cmpstr(bdrv_get_format(bs), ==, "vmdk");
    g_assert_cmpuint(bdrv_get_cluster_size(bs), ==, GRAIN);
    check_contents(bs);
    bdrv_walk_init(&w, bs, 0, S(CAPACITY), BDRV_WALK_DEPTH, 0);
    expect_run(&w, 0, GRAIN, BDRV_STATUS_DATA);
    expect_run(&w, GRAIN, GRAIN, BDRV_STATUS_ZERO);
    expect_run(&w, 2 * GRAIN, GRAIN, BDRV_STATUS_UNALLOCATED);
    expect_run(&w, 3 * GRAIN, GRAIN, BDRV_STATUS_DATA);
    expect_run(&w, 4 * GRAIN, S(CAPACITY) - 4 * GRAIN, BDRV_STATUS_UNALLOCATED);
    bdrv_close(bs);
    assert_untouched(f);
}

static void test_valid_stream(Fixture *f, gconstpointer data)
{
    GError *err = NULL;
    BdrvWalk w;

    use_stream(f);
    save(f);
    BlockDriverState *bs = try_open(f, "vmdk", true, &err);
    g_assert_no_error(err);
    check_contents(bs);
    bdrv_walk_init(&w, bs, 0, S(CAPACITY), BDRV_WALK_GUEST, 0);
    expect_run(&w, 0, GRAIN, BDRV_STATUS_DATA);
    expect_run(&w, GRAIN, 2 * GRAIN, BDRV_STATUS_ZERO);
    expect_run(&w, 3 * GRAIN, GRAIN, BDRV_STATUS_DATA);
    bdrv_close(bs);
}

/* vmdk is read-only in blkmig, and cannot be created. */
static void test_read_only(Fixture *f, gconstpointer data)
{
    GError *err = NULL;
    BlockOptions opts = { .id = "n", .filename = f->path, .format = "vmdk", .create = true,
                          .size = MiB };

    save(f);
    g_assert_null(try_open(f, "auto", false, &err));
    g_assert_nonnull(strstr(err->message, "read-only"));
    g_clear_error(&err);
    g_unlink(f->path);
    g_assert_null(bdrv_open(&opts, &err));
    g_assert_nonnull(strstr(err->message, "cannot create"));
    g_assert_false(g_file_test(f->path, G_FILE_TEST_EXISTS));
}

/* ---- Header fields ---- */

typedef struct Mutation {
    const char *name;
    uint64_t offset;
    int width;               /* 2, 4 or 8 */
    uint64_t value;
    const char *message;
} Mutation;

static const Mutation header_cases[] = {
    { "version-0", H_VERSION, 4, 0, "unsupported version 0" },
    { "version-4", H_VERSION, 4, 4, "unsupported version 4" },
    { "check-bytes", H_CHECK, 4, 0x0a0d0a0a, "newline check bytes" },
    { "algorithm", H_ALGO, 2, 2, "unknown compression algorithm 2" },
    { "compressed-flag", H_FLAGS, 4, F_NL | F_COMPRESSED, "compressed-grains flag" },
    { "no-markers", H_ALGO, 2, 1, "without markers" },
    { "grain-0", H_GRAIN, 8, 0, "grain size 0" },
    { "grain-odd", H_GRAIN, 8, 24, "grain size 24" },
    { "grain-huge", H_GRAIN, 8, 4096, "grain size 4096" },
    { "gtes-0", H_GTES, 4, 0, "0 entries per grain table" },
    { "gtes-513", H_GTES, 4, 513, "513 entries per grain table" },
    { "capacity-0", H_CAPACITY, 8, 0, "capacity 0" },
    { "capacity-huge", H_CAPACITY, 8, UINT64_C(1) << 60, "grain tables (at most" },
    { "overhead", H_OVERHEAD, 8, 1000, "truncated" },
    { "gd-far", H_GD, 8, UINT64_C(1) << 40, "grain directory at sector" },
    { "gd-header", H_GD, 8, 0, "grain directory at sector 0" },
    { "gd-at-end", H_GD, 8, GD_AT_END, "footer markers are damaged" },
    { "desc-huge", H_DESC_SIZE, 8, 1 << 20, "descriptor of 1048576 sectors" },
    { "desc-past-end", H_DESC_OFF, 8, 39, "descriptor (1024 bytes" },
};

static void set_field(uint8_t *img, const Mutation *m)
{
    switch (m->width) {
    case 2: set16(img, m->offset, (uint16_t)m->value); break;
    case 4: set32(img, m->offset, (uint32_t)m->value); break;
    default: set64(img, m->offset, m->value);
    }
}

static void test_header_field(Fixture *f, gconstpointer data)
{
    const Mutation *m = data;
    set_field(f->img, m);
    expect_open_error(f, m->message);
}

/* 200 grain tables' worth of capacity: 800 bytes of directory from
 * sector 39, which the 40-sector file cannot hold. */
static void test_gd_entries_outside(Fixture *f, gconstpointer data)
{
    set64(f->img, H_CAPACITY, 200 * 512 * GRAIN_SECTORS);
    set64(f->img, H_GD, 39);
    expect_open_error(f, "the grain directory (800 bytes at offset 19968) lies past the end");
}

/* ---- Other vmdk kinds, refused by name ---- */

static void test_cowd(Fixture *f, gconstpointer data)
{
    memcpy(f->img, "COWD", 4);
    expect_open_error(f, "ESX vmfsSparse extent (COWD)");
}

static void test_descriptor_file(Fixture *f, gconstpointer data)
{
    g_autofree char *text = g_strdup_printf(descriptor, "monolithicFlat", "");
    memset(f->img, 0, f->len);
    memcpy(f->img, text, strlen(text));
    expect_open_error(f, "a descriptor file (createType \"monolithicFlat\")");
}

static void test_create_type(Fixture *f, gconstpointer data)
{
    put_descriptor(f->img, "vmfsSparse", "");
    expect_open_error(f, "createType \"vmfsSparse\" is not supported");
}

static void test_delta_disk(Fixture *f, gconstpointer data)
{
    put_descriptor(f->img, "monolithicSparse", "parentFileNameHint=\"base.vmdk\"\n");
    expect_open_error(f, "delta disk of \"base.vmdk\"");
}

static void test_footer_loop(Fixture *f, gconstpointer data)
{
    use_stream(f);
    set64(f->img, f->len - S(2) + H_GD, GD_AT_END);     /* the footer's header */
    expect_open_error(f, "at the end again");
}

static void test_footer_marker(Fixture *f, gconstpointer data)
{
    use_stream(f);
    set32(f->img, f->len - S(3) + 12, 2);               /* footer marker type */
    expect_open_error(f, "footer markers are damaged");
}

/* ---- Entries met by requests ---- */

/* The open succeeds; a read of grain 0 fails with EIO and a warning
 * naming guest offset 0 and MESSAGE; other grains still read. */
static void expect_request_error(Fixture *f, const char *message)
{
    GError *err = NULL;
    uint8_t buf[GRAIN];

    save(f);
    BlockDriverState *bs = try_open(f, "vmdk", true, &err);
    g_assert_no_error(err);
    g_autofree char *pattern = g_strdup_printf("*guest offset 0 (grain 0): *%s*", message);
    g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING, pattern);
    g_assert_cmpint(bdrv_pread(bs, 0, buf, GRAIN), ==, -EIO);
    g_test_assert_expected_messages();
    g_assert_cmpint(bdrv_pread(bs, 3 * GRAIN, buf, GRAIN), ==, 0);
    g_assert_cmpint(buf[0], ==, BYTE3);
    bdrv_close(bs);
    assert_untouched(f);
}

static void test_gte_past_end(Fixture *f, gconstpointer data)
{
    set32(f->img, S(4), 36);                        /* 16 sectors from 36 > 40 */
    expect_request_error(f, "its data (sector 36) lies past the end");
}

static void test_gt_past_end(Fixture *f, gconstpointer data)
{
    set32(f->img, S(3), 1000);
    set32(f->img, S(4) + 3 * 4, 0);                 /* the whole table is gone */
    save(f);
    GError *err = NULL;
    uint8_t buf[GRAIN];
    BlockDriverState *bs = try_open(f, "vmdk", true, &err);
    g_assert_no_error(err);
    g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING,
                          "*guest offset 0 (grain 0): its grain table (sector 1000) lies past*");
    g_assert_cmpint(bdrv_pread(bs, 0, buf, GRAIN), ==, -EIO);
    g_test_assert_expected_messages();
}

/* The stream image's grain 0 marker at sector 3: LBA, then size. */
static void test_marker_lba(Fixture *f, gconstpointer data)
{
    use_stream(f);
    set64(f->img, S(3), 16);
    expect_request_error(f, "its marker names sector 16");
}

static void test_marker_size(Fixture *f, gconstpointer data)
{
    use_stream(f);
    set32(f->img, S(3) + 8, 3 * GRAIN);
    expect_request_error(f, "its marker says 24576 bytes");
}

static void test_marker_garbage(Fixture *f, gconstpointer data)
{
    use_stream(f);
    memset(f->img + S(3) + 12, 0x77, 64);
    expect_request_error(f, "does not inflate");
}

static void test_marker_short(Fixture *f, gconstpointer data)
{
    uint8_t half[GRAIN / 2];
    uLongf clen = compressBound(sizeof(half));

    use_stream(f);
    memset(half, BYTE0, sizeof(half));
    g_assert_cmpint(compress(f->img + S(3) + 12, &clen, half, sizeof(half)), ==, Z_OK);
    set32(f->img, S(3) + 8, (uint32_t)clen);
    expect_request_error(f, "short of the grain");
}

/* ---- Mutation loop ---- */

static unsigned opened, warnings_seen;

static void count_warning(const gchar *domain, GLogLevelFlags level, const gchar *msg,
                          gpointer data)
{
    warnings_seen++;
}

/* Reads all and walks the status of whatever opened. */
static void exercise(BlockDriverState *bs)
{
    uint64_t size = MIN((uint64_t)bdrv_getlength(bs), 4 * MiB);
    g_autofree uint8_t *buf = g_malloc0(size ? size : 1);
    BdrvWalk w;
    BdrvExtent e;

    bdrv_pread(bs, 0, buf, size);
    bdrv_walk_init(&w, bs, 0, size, BDRV_WALK_DEPTH, 0);
    for (int i = 0; i < 64 && size && bdrv_walk_next(&w, &e) == 1; i++) {
    }
}

static void mutate_once(Fixture *f, GRand *rand, bool stream)
{
    if (stream) {
        use_stream(f);
    } else {
        g_free(f->img);
        f->img = sparse_image();
        f->len = S(SPARSE_SECTORS);
    }
    for (int n = g_rand_int_range(rand, 1, 4); n > 0; n--) {
        uint64_t off = g_rand_boolean(rand) ? (uint64_t)g_rand_int_range(rand, 0, 80)
                                            : (uint64_t)g_rand_int_range(rand, S(3), f->len);
        f->img[off] ^= (uint8_t)(1u << g_rand_int_range(rand, 0, 8));
    }
    save(f);
    GError *err = NULL;
    BlockDriverState *bs = try_open(f, "vmdk", true, &err);
    g_clear_error(&err);
    if (bs) {
        opened++;
        exercise(bs);
        bdrv_close(bs);
    }
    assert_untouched(f);
}

static void test_mutations(Fixture *f, gconstpointer data)
{
    GRand *rand = g_rand_new_with_seed(2025);
    GLogLevelFlags fatal = g_log_set_always_fatal(G_LOG_FATAL_MASK);
    guint handler = g_log_set_handler(NULL, G_LOG_LEVEL_WARNING, count_warning, NULL);

    for (int i = 0; i < 1000; i++) {
        mutate_once(f, rand, i % 2);
    }
    g_log_remove_handler(NULL, handler);
    g_log_set_always_fatal(fatal);
    g_test_message("%u of 1000 opened, %u warnings", opened, warnings_seen);
    g_assert_cmpuint(opened, >, 0);
    g_assert_cmpuint(warnings_seen, >, 0);
    g_rand_free(rand);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define ADD(path, fn, d) g_test_add(path, Fixture, d, fixture_setup, fn, fixture_teardown)
    ADD("/vmdk-hostile/valid/sparse", test_valid_sparse, NULL);
    ADD("/vmdk-hostile/valid/stream", test_valid_stream, NULL);
    ADD("/vmdk-hostile/read-only", test_read_only, NULL);
    for (size_t i = 0; i < G_N_ELEMENTS(header_cases); i++) {
        char *path = g_strdup_printf("/vmdk-hostile/field/%s", header_cases[i].name);
        ADD(path, test_header_field, &header_cases[i]);
        g_free(path);
    }
    ADD("/vmdk-hostile/gd-entries-outside", test_gd_entries_outside, NULL);
    ADD("/vmdk-hostile/kind/cowd", test_cowd, NULL);
    ADD("/vmdk-hostile/kind/descriptor-file", test_descriptor_file, NULL);
    ADD("/vmdk-hostile/kind/create-type", test_create_type, NULL);
    ADD("/vmdk-hostile/kind/delta-disk", test_delta_disk, NULL);
    ADD("/vmdk-hostile/footer/loop", test_footer_loop, NULL);
    ADD("/vmdk-hostile/footer/marker", test_footer_marker, NULL);
    ADD("/vmdk-hostile/request/gte-past-end", test_gte_past_end, NULL);
    ADD("/vmdk-hostile/request/gt-past-end", test_gt_past_end, NULL);
    ADD("/vmdk-hostile/request/marker-lba", test_marker_lba, NULL);
    ADD("/vmdk-hostile/request/marker-size", test_marker_size, NULL);
    ADD("/vmdk-hostile/request/marker-garbage", test_marker_garbage, NULL);
    ADD("/vmdk-hostile/request/marker-short", test_marker_short, NULL);
    ADD("/vmdk-hostile/mutations", test_mutations, NULL);
    return g_test_run();
}
