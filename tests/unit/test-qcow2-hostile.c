/* Hostile qcow2 images, built byte by byte: every header field, table
 * entry and chain that does not make sense fails the open (or the request)
 * with a message naming it; nothing is written outside the image and
 * nothing crashes, also under a seeded mutation loop. */
#include <errno.h>
#include <gio/gio.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/stat.h>

#include "block/block.h"
#include "../lib/files.h"
#include "../lib/qemu-tools.h"
#include "util/size.h"

/* The valid image every case starts from: 4 KiB clusters, 1 MiB disk.
 * Cluster 0 header, 1 refcount table, 2 refcount block, 3 L1 table,
 * 4 L2 table, 5 data of guest cluster 0. */
#define CS 4096u
#define NCLUSTERS 6
#define C(n) ((uint64_t)(n) * CS)
#define DATA_BYTE 0x5a

/* Header field offsets (docs/interop/qcow2.txt). */
enum {
    H_MAGIC = 0, H_VERSION = 4, H_BACKING_OFF = 8, H_BACKING_SIZE = 16, H_CLUSTER_BITS = 20,
    H_SIZE = 24, H_CRYPT = 32, H_L1_SIZE = 36, H_L1_OFF = 40, H_RT_OFF = 48,
    H_RT_CLUSTERS = 56, H_NB_SNAPSHOTS = 60, H_SNAPSHOTS_OFF = 64, H_INCOMPAT = 72,
    H_COMPAT = 80, H_AUTOCLEAR = 88, H_REFCOUNT_ORDER = 96, H_HEADER_LEN = 100,
    H_EXTENSIONS = 104,
};

static void set32(uint8_t *img, uint64_t off, uint32_t v)
{
    v = GUINT32_TO_BE(v);
    memcpy(img + off, &v, 4);
}

static void set64(uint8_t *img, uint64_t off, uint64_t v)
{
    v = GUINT64_TO_BE(v);
    memcpy(img + off, &v, 8);
}

static uint8_t *valid_image(void)
{
    uint8_t *img = g_malloc0(C(NCLUSTERS));

    set32(img, H_MAGIC, 0x514649fb);
    set32(img, H_VERSION, 3);
    set32(img, H_CLUSTER_BITS, 12);
    set64(img, H_SIZE, MiB);
    set32(img, H_L1_SIZE, 1);
    set64(img, H_L1_OFF, C(3));
    set64(img, H_RT_OFF, C(1));
    set32(img, H_RT_CLUSTERS, 1);
    set32(img, H_REFCOUNT_ORDER, 4);
    set32(img, H_HEADER_LEN, 104);
    set64(img, C(1), C(2));
    for (int c = 0; c < NCLUSTERS; c++) {
        img[C(2) + 2 * c + 1] = 1;                      /* 16-bit refcounts */
    }
    set64(img, C(3), C(4) | (1ULL << 63));
    set64(img, C(4), C(5) | (1ULL << 63));
    memset(img + C(5), DATA_BYTE, CS);
    return img;
}

typedef struct Fixture {
    char *dir;
    char *path;
    uint8_t *img;
} Fixture;

static void fixture_setup(Fixture *f, gconstpointer data)
{
    GError *err = NULL;
    f->dir = g_dir_make_tmp("test-qcow2-hostile-XXXXXX", &err);
    g_assert_no_error(err);
    f->path = g_build_filename(f->dir, "hostile.qcow2", NULL);
    f->img = valid_image();
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    bdrv_close_all();
    g_free(qt_run("rm -rf %s", f->dir));
    g_free(f->dir);
    g_free(f->path);
    g_free(f->img);
}

static void save(Fixture *f)
{
    g_assert_true(g_file_set_contents(f->path, (const char *)f->img, C(NCLUSTERS), NULL));
}

static BlockDriverState *try_open(Fixture *f, bool read_only, GError **errp)
{
    BlockOptions opts = { .id = "h", .filename = f->path, .format = "qcow2",
                          .read_only = read_only };
    return bdrv_open(&opts, errp);
}

/* ---- Header fields ---- */

typedef struct Mutation {
    const char *name;
    uint64_t offset;
    int width;               /* 4 or 8 */
    uint64_t value;
    const char *message;     /* the open fails with a message holding this */
} Mutation;

static const Mutation header_cases[] = {
    { "magic", H_MAGIC, 4, 0x514649fa, "not a qcow2 image" },
    { "version", H_VERSION, 4, 4, "qcow2 version 4" },
    { "version-1", H_VERSION, 4, 1, "qcow2 version 1" },
    { "cluster-bits-small", H_CLUSTER_BITS, 4, 8, "cluster_bits 8" },
    { "cluster-bits-large", H_CLUSTER_BITS, 4, 22, "cluster_bits 22" },
    { "header-length-short", H_HEADER_LEN, 4, 100, "header_length 100" },
    { "header-length-long", H_HEADER_LEN, 4, CS + 8, "header_length" },
    { "header-length-odd", H_HEADER_LEN, 4, 108, "header_length 108" },
    { "refcount-order", H_REFCOUNT_ORDER, 4, 7, "refcount_order 7" },
    { "crypt-method", H_CRYPT, 4, 2, "crypt_method 2" },
    { "size-huge", H_SIZE, 8, 1ULL << 63, "size" },
    { "size-beyond-l1", H_SIZE, 8, 4 * MiB, "l1_size 1 is too small" },
    { "l1-size-huge", H_L1_SIZE, 4, 0x10000000, "l1_size 268435456 is too large" },
    { "l1-offset-past-end", H_L1_OFF, 8, C(100), "l1_table_offset" },
    { "l1-offset-misaligned", H_L1_OFF, 8, C(3) + 8, "l1_table_offset" },
    { "l1-offset-header", H_L1_OFF, 8, 0, "l1_table_offset" },
    { "l1-on-reftable", H_L1_OFF, 8, C(1), "overlap" },
    { "reftable-past-end", H_RT_OFF, 8, C(1000), "refcount_table_offset" },
    { "reftable-header", H_RT_OFF, 8, 0, "refcount_table_offset" },
    { "reftable-clusters-zero", H_RT_CLUSTERS, 4, 0, "refcount_table_clusters 0" },
    { "reftable-clusters-huge", H_RT_CLUSTERS, 4, 0x7fffffff, "refcount_table_clusters" },
    { "snapshots-many", H_NB_SNAPSHOTS, 4, 1000000, "nb_snapshots" },
    { "snapshots-offset", H_NB_SNAPSHOTS, 4, 1, "snapshots_offset" },
    { "backing-offset", H_BACKING_OFF, 8, CS - 4, "backing_file" },
    { "incompat-unknown", H_INCOMPAT, 8, 1ULL << 5, "unknown incompatible feature bit 5" },
    { "incompat-extl2", H_INCOMPAT, 8, 1ULL << 4, "extended L2 entries" },
    { "incompat-data-file", H_INCOMPAT, 8, 1ULL << 2, "external data file" },
    { "compression-bit", H_INCOMPAT, 8, 1ULL << 3, "compression_type" },
    /* Table entries checked at open */
    { "l1-entry-reserved", C(3), 8, C(4) | 1, "L1 entry 0 has reserved bits" },
    { "l1-entry-past-end", C(3), 8, C(64), "L1 entry 0 points to past the end" },
    { "l1-entry-misaligned", C(3), 8, C(4) + 512, "L1 entry 0 points to a misaligned" },
    { "l1-entry-self", C(3), 8, C(3), "L1 entry 0 points to the L1 table" },
    { "l1-entry-reftable", C(3), 8, C(1), "L1 entry 0 points to the refcount table" },
    { "l1-entry-refblock", C(3), 8, C(2), "another entry already points to" },
    { "reftable-entry-reserved", C(1), 8, C(2) | 5, "refcount table entry 0 has reserved" },
    { "reftable-entry-past-end", C(1), 8, C(99), "refcount table entry 0 points to past" },
    { "reftable-entry-header", C(1), 8, 512, "refcount table entry 0 points to" },
    { "reftable-entry-l2", C(1), 8, C(4), "another entry already points to" },
};

static void test_header_field(Fixture *f, gconstpointer data)
{
    const Mutation *m = data;
    GError *err = NULL;

    if (m->width == 4) {
        set32(f->img, m->offset, (uint32_t)m->value);
    } else {
        set64(f->img, m->offset, m->value);
    }
    save(f);
    for (int ro = 0; ro < 2; ro++) {
        g_assert_null(try_open(f, ro, &err));
        g_assert_nonnull(err);
        if (!strstr(err->message, m->message)) {
            g_error("'%s' does not say '%s'", err->message, m->message);
        }
        g_clear_error(&err);
    }
    gsize len;
    uint8_t *after = tf_read_file(f->path, &len);
    g_assert_cmpmem(after, len, f->img, C(NCLUSTERS));      /* untouched */
    g_free(after);
}

/* The baseline the mutations start from is a good image. */
static void test_valid(Fixture *f, gconstpointer data)
{
    uint8_t buf[CS], want[CS];
    GError *err = NULL;

    save(f);
    BlockDriverState *bs = try_open(f, false, &err);
    g_assert_no_error(err);
    g_assert_cmpint(bdrv_pread(bs, 0, buf, CS), ==, 0);
    memset(want, DATA_BYTE, CS);
    g_assert_cmpmem(buf, CS, want, CS);
    g_assert_cmpint(bdrv_pwrite(bs, 512 * KiB, buf, CS, 0), ==, 0);
    bdrv_close(bs);
    g_assert_cmpint(qt_check(f->path), ==, 0);
}

/* ---- Header extensions and feature names ---- */

static void put_extension(Fixture *f, uint64_t pos, uint32_t type, const void *data, uint32_t len)
{
    set32(f->img, pos, type);
    set32(f->img, pos + 4, len);
    memcpy(f->img + pos + 8, data, len);
}

static void expect_open_error(Fixture *f, const char *message)
{
    GError *err = NULL;
    save(f);
    g_assert_null(try_open(f, true, &err));
    g_assert_nonnull(err);
    if (!strstr(err->message, message)) {
        g_error("'%s' does not say '%s'", err->message, message);
    }
    g_error_free(err);
}

static void test_extension_overrun(Fixture *f, gconstpointer data)
{
    set32(f->img, H_EXTENSIONS, 0x6803f857);
    set32(f->img, H_EXTENSIONS + 4, CS);
    expect_open_error(f, "header extension 0x6803f857");
}

static void test_feature_name(Fixture *f, gconstpointer data)
{
    uint8_t entry[48] = { 0, 6 };
    memcpy(entry + 2, "frobnication", 12);
    put_extension(f, H_EXTENSIONS, 0x6803f857, entry, sizeof(entry));
    set64(f->img, H_INCOMPAT, 1ULL << 6);
    expect_open_error(f, "frobnication");
}

static void test_backing_format_long(Fixture *f, gconstpointer data)
{
    put_extension(f, H_EXTENSIONS, 0xe2792aca, "a-very-long-format-name", 23);
    expect_open_error(f, "backing format extension");
}

/* ---- Backing chains ---- */

static void set_backing(uint8_t *img, const char *name)
{
    uint64_t off = 1024;
    set64(img, H_BACKING_OFF, off);
    set32(img, H_BACKING_SIZE, (uint32_t)strlen(name));
    memcpy(img + off, name, strlen(name));
}

static void write_image(Fixture *f, const char *name, const uint8_t *img)
{
    char *path = g_build_filename(f->dir, name, NULL);
    g_assert_true(g_file_set_contents(path, (const char *)img, C(NCLUSTERS), NULL));
    g_free(path);
}

static void test_backing_self(Fixture *f, gconstpointer data)
{
    set_backing(f->img, "hostile.qcow2");
    expect_open_error(f, "loops");
}

static void test_backing_loop(Fixture *f, gconstpointer data)
{
    uint8_t *other = valid_image();
    set_backing(other, "hostile.qcow2");
    write_image(f, "other.qcow2", other);
    set_backing(f->img, "other.qcow2");
    expect_open_error(f, "loops");
    g_free(other);
}

static void test_backing_missing(Fixture *f, gconstpointer data)
{
    set_backing(f->img, "nowhere.qcow2");
    expect_open_error(f, "nowhere.qcow2");
}

static void test_backing_too_deep(Fixture *f, gconstpointer data)
{
    for (int i = 0; i < 70; i++) {
        uint8_t *img = valid_image();
        char name[32], below[32];
        g_snprintf(name, sizeof(name), "chain%d.qcow2", i);
        g_snprintf(below, sizeof(below), "chain%d.qcow2", i + 1);
        set_backing(img, below);
        write_image(f, name, img);
        g_free(img);
    }
    set_backing(f->img, "chain0.qcow2");
    expect_open_error(f, "deeper than");
}

static void test_dirty_bit(Fixture *f, gconstpointer data)
{
    GError *err = NULL;

    set64(f->img, H_INCOMPAT, 1);
    save(f);
    g_assert_null(try_open(f, false, &err));
    g_assert_nonnull(strstr(err->message, "qemu-img check -r all"));
    g_clear_error(&err);
    BlockDriverState *bs = try_open(f, true, &err);
    g_assert_no_error(err);
    bdrv_close(bs);
}

/* A corrupt image opens read-only, with a message. */
static void test_corrupt_bit(Fixture *f, gconstpointer data)
{
    GError *err = NULL;
    uint8_t buf[512];

    set64(f->img, H_INCOMPAT, 2);
    save(f);
    g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING, "*is marked corrupt*read-only*");
    BlockDriverState *bs = try_open(f, false, &err);
    g_test_assert_expected_messages();
    g_assert_no_error(err);
    g_assert_true(bdrv_is_read_only(bs));
    g_assert_cmpint(bdrv_pread(bs, 0, buf, sizeof(buf)), ==, 0);
    g_assert_cmpint(bdrv_pwrite(bs, 0, buf, sizeof(buf), 0), ==, -EPERM);
}

/* ---- Entries found bad during requests ---- */

/* An L2 entry that is wrong fails the requests that meet it, names the
 * guest offset, marks the image corrupt (no more writes), and changes
 * nothing but the corrupt bit. */
static void expect_request_error(Fixture *f, uint64_t l2_entry, const char *message)
{
    GError *err = NULL;
    uint8_t buf[CS];

    set64(f->img, C(4), l2_entry);
    save(f);
    BlockDriverState *bs = try_open(f, false, &err);
    g_assert_no_error(err);
    g_autofree char *pattern = g_strdup_printf("*guest offset 0 (*%s*", message);
    g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING, pattern);
    g_assert_cmpint(bdrv_pread(bs, 0, buf, CS), ==, -EIO);
    g_test_assert_expected_messages();
    g_assert_cmpint(bdrv_pwrite(bs, 0, buf, CS, 0), ==, -EIO);
    g_assert_cmpint(bdrv_pwrite(bs, 512 * KiB, buf, CS, 0), ==, -EIO);
    g_assert_cmpint(bdrv_pread(bs, 512 * KiB, buf, CS), ==, 0);     /* the rest reads */
    bdrv_close(bs);

    gsize len;
    uint8_t *after = tf_read_file(f->path, &len);
    g_assert_cmpuint(len, ==, C(NCLUSTERS));
    g_assert_cmpint(after[H_INCOMPAT + 7], ==, 2);               /* corrupt bit */
    after[H_INCOMPAT + 7] = 0;
    g_assert_cmpmem(after, len, f->img, C(NCLUSTERS));
    g_free(after);
}

static void test_l2_past_end(Fixture *f, gconstpointer data)
{
    expect_request_error(f, C(1000) | (1ULL << 63), "past the end");
}

static void test_l2_on_metadata(Fixture *f, gconstpointer data)
{
    expect_request_error(f, C(3) | (1ULL << 63), "on metadata");
}

static void test_l2_reserved(Fixture *f, gconstpointer data)
{
    expect_request_error(f, C(5) | (1ULL << 60), "reserved bits");
}

static void test_l2_misaligned(Fixture *f, gconstpointer data)
{
    expect_request_error(f, (C(5) + 512) | (1ULL << 63), "misaligned");
}

static void test_l2_compressed_outside(Fixture *f, gconstpointer data)
{
    expect_request_error(f, (1ULL << 62) | C(200), "compressed data outside");
}

/* Compressed data that does not inflate: the read fails, with a message. */
static void test_compressed_garbage(Fixture *f, gconstpointer data)
{
    GError *err = NULL;
    uint8_t buf[CS];

    set64(f->img, C(4), (1ULL << 62) | C(5));             /* one sector of 0x5a */
    save(f);
    BlockDriverState *bs = try_open(f, true, &err);
    g_assert_no_error(err);
    g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING, "*does not inflate*");
    g_assert_cmpint(bdrv_pread(bs, 0, buf, CS), ==, -EIO);
    g_test_assert_expected_messages();
}

/* A refcount of zero on the L2 table: the allocator must not hand that
 * cluster out for data. */
static void test_refcount_zero_on_metadata(Fixture *f, gconstpointer data)
{
    GError *err = NULL;
    uint8_t buf[CS];

    f->img[C(2) + 2 * 4 + 1] = 0;
    save(f);
    BlockDriverState *bs = try_open(f, false, &err);
    g_assert_no_error(err);
    memset(buf, 0x77, sizeof(buf));
    g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING, "*0x4000 is metadata*");
    g_assert_cmpint(bdrv_pwrite(bs, 512 * KiB, buf, CS, 0), ==, -EIO);
    g_test_assert_expected_messages();
    bdrv_close(bs);
    gsize len;
    uint8_t *after = tf_read_file(f->path, &len);
    g_assert_cmpmem(after + C(3), C(2), f->img + C(3), C(2));   /* L1, L2 intact */
    g_free(after);
}

/* An L1 entry without its COPIED flag (refcount one all the same): the L2
 * table is copied before it changes, the old one freed, and its cluster
 * is then fit for data. */
static void test_l1_without_copied(Fixture *f, gconstpointer data)
{
    GError *err = NULL;
    uint8_t buf[CS];

    set64(f->img, C(3), C(4));
    save(f);
    BlockDriverState *bs = try_open(f, false, &err);
    g_assert_no_error(err);
    memset(buf, 0x33, sizeof(buf));
    g_assert_cmpint(bdrv_pwrite(bs, 512 * KiB, buf, CS, 0), ==, 0);
    g_assert_cmpint(bdrv_flush(bs), ==, 0);
    for (uint64_t off = 600 * KiB; off < 700 * KiB; off += CS) {
        g_assert_cmpint(bdrv_pwrite(bs, off, buf, CS, 0), ==, 0);
    }
    bdrv_close(bs);
    g_assert_cmpint(qt_check(f->path), ==, 0);
    bs = try_open(f, true, &err);
    g_assert_cmpint(bdrv_pread(bs, 0, buf, CS), ==, 0);
    g_assert_cmpint(buf[0], ==, DATA_BYTE);
    g_assert_cmpint(bdrv_pread(bs, 650 * KiB, buf, CS), ==, 0);
    g_assert_cmpint(buf[0], ==, 0x33);
}

/* A block-status walk meeting a bad entry: the runs before it, then the
 * error; or, asked to, the rest as data. */
static void test_walk_error(Fixture *f, gconstpointer data)
{
    GError *err = NULL;
    BdrvWalk w;
    BdrvExtent e;

    set64(f->img, C(4) + 8 * 8, C(5) | (1ULL << 60));        /* guest 32 KiB */
    save(f);
    BlockDriverState *bs = try_open(f, true, &err);
    g_assert_no_error(err);
    /* Each status call that meets the entry says so. */
    for (int i = 0; i < 3; i++) {
        g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING, "*guest offset 0x8000*");
    }
    bdrv_walk_init(&w, bs, 0, MiB, BDRV_WALK_GUEST, 0);
    g_assert_cmpint(bdrv_walk_next(&w, &e), ==, 1);
    g_assert_cmpuint(e.off, ==, 0);
    g_assert_cmpuint(e.len, ==, CS);
    g_assert_cmpint(e.status, ==, BDRV_STATUS_DATA);
    g_assert_cmpint(bdrv_walk_next(&w, &e), ==, 1);
    g_assert_cmpuint(e.off, ==, CS);
    g_assert_cmpuint(e.len, ==, 7 * CS);
    g_assert_cmpint(e.status, ==, BDRV_STATUS_ZERO);
    g_assert_cmpint(bdrv_walk_next(&w, &e), ==, -EIO);
    g_assert_cmpint(bdrv_walk_next(&w, &e), ==, -EIO);        /* stays there */
    g_test_assert_expected_messages();

    g_test_expect_message(G_LOG_DOMAIN, G_LOG_LEVEL_WARNING, "*guest offset 0x8000*");
    bdrv_walk_init(&w, bs, 4 * CS, MiB - 4 * CS, BDRV_WALK_GUEST, BDRV_WALK_ERROR_AS_DATA);
    g_assert_cmpint(bdrv_walk_next(&w, &e), ==, 1);
    g_assert_cmpint(e.status, ==, BDRV_STATUS_ZERO);
    g_assert_cmpint(bdrv_walk_next(&w, &e), ==, 1);
    g_assert_cmpuint(e.off, ==, 8 * CS);
    g_assert_cmpuint(e.len, ==, MiB - 8 * CS);
    g_assert_cmpint(e.status, ==, BDRV_STATUS_DATA);
    g_assert_cmpint(bdrv_walk_next(&w, &e), ==, 0);
    g_test_assert_expected_messages();
}

/* ---- Mutation loop ---- */

static unsigned opened;

/* Reads all of a small disk, then writes a few clusters (a new one, the
 * data cluster, one in the middle). */
static void exercise(BlockDriverState *bs)
{
    uint64_t size = MIN((uint64_t)bdrv_getlength(bs), 4 * MiB);
    uint8_t *buf = g_malloc0(size ? size : 1);
    static const uint64_t offs[] = { 0, CS, 512 * KiB, MiB - CS };

    bdrv_pread(bs, 0, buf, size);
    for (size_t i = 0; i < G_N_ELEMENTS(offs); i++) {
        if (offs[i] + CS <= size) {
            bdrv_pwrite(bs, offs[i], buf, CS, 0);
            bdrv_pwrite_zeroes(bs, offs[i], CS, BDRV_REQ_MAY_UNMAP);
        }
    }
    bdrv_flush(bs);
    g_free(buf);
}

/* Random bytes of the metadata changed: whatever the open and the
 * requests say, nothing crashes and the file never grows past what the
 * writes could need. */
static void mutate_once(Fixture *f, GRand *rand)
{
    uint8_t *img = valid_image();
    GError *err = NULL;

    for (int n = g_rand_int_range(rand, 1, 4); n > 0; n--) {
        uint64_t off = g_rand_boolean(rand) ? (uint64_t)g_rand_int_range(rand, 0, 112) :
                       C(g_rand_int_range(rand, 1, 5)) + g_rand_int_range(rand, 0, 16);
        img[off] ^= (uint8_t)(1u << g_rand_int_range(rand, 0, 8));
    }
    g_assert_true(g_file_set_contents(f->path, (const char *)img, C(NCLUSTERS), NULL));
    BlockDriverState *bs = try_open(f, false, &err);
    g_clear_error(&err);
    if (bs) {
        opened++;
        exercise(bs);
        bdrv_close(bs);
    }
    struct stat st;
    g_assert_cmpint(stat(f->path, &st), ==, 0);
    g_assert_cmpint(st.st_size, <=, (off_t)C(NCLUSTERS + 32));
    g_free(img);
}

static unsigned warnings_seen;

static void count_warning(const gchar *domain, GLogLevelFlags level, const gchar *msg,
                          gpointer data)
{
    warnings_seen++;
}

static void test_mutations(Fixture *f, gconstpointer data)
{
    GRand *rand = g_rand_new_with_seed(2024);
    /* Warnings are the expected answer here: counted, not fatal. */
    GLogLevelFlags fatal = g_log_set_always_fatal(G_LOG_FATAL_MASK);
    guint handler = g_log_set_handler(NULL, G_LOG_LEVEL_WARNING, count_warning, NULL);

    for (int i = 0; i < 1000; i++) {
        mutate_once(f, rand);
    }
    g_log_remove_handler(NULL, handler);
    g_log_set_always_fatal(fatal);
    g_test_message("%u of 1000 opened, %u warnings", opened, warnings_seen);
    g_assert_cmpuint(warnings_seen, >, 0);
    g_rand_free(rand);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define ADD(path, fn, d) g_test_add(path, Fixture, d, fixture_setup, fn, fixture_teardown)
    ADD("/qcow2-hostile/valid", test_valid, NULL);
    for (size_t i = 0; i < G_N_ELEMENTS(header_cases); i++) {
        char *path = g_strdup_printf("/qcow2-hostile/field/%s", header_cases[i].name);
        ADD(path, test_header_field, &header_cases[i]);
        g_free(path);
    }
    ADD("/qcow2-hostile/extension-overrun", test_extension_overrun, NULL);
    ADD("/qcow2-hostile/feature-name", test_feature_name, NULL);
    ADD("/qcow2-hostile/backing-format-long", test_backing_format_long, NULL);
    ADD("/qcow2-hostile/backing/self", test_backing_self, NULL);
    ADD("/qcow2-hostile/backing/loop", test_backing_loop, NULL);
    ADD("/qcow2-hostile/backing/missing", test_backing_missing, NULL);
    ADD("/qcow2-hostile/backing/too-deep", test_backing_too_deep, NULL);
    ADD("/qcow2-hostile/dirty-bit", test_dirty_bit, NULL);
    ADD("/qcow2-hostile/corrupt-bit", test_corrupt_bit, NULL);
    ADD("/qcow2-hostile/l2/past-end", test_l2_past_end, NULL);
    ADD("/qcow2-hostile/l2/on-metadata", test_l2_on_metadata, NULL);
    ADD("/qcow2-hostile/l2/reserved", test_l2_reserved, NULL);
    ADD("/qcow2-hostile/l2/misaligned", test_l2_misaligned, NULL);
    ADD("/qcow2-hostile/l2/compressed-outside", test_l2_compressed_outside, NULL);
    ADD("/qcow2-hostile/compressed-garbage", test_compressed_garbage, NULL);
    ADD("/qcow2-hostile/refcount-zero-on-metadata", test_refcount_zero_on_metadata, NULL);
    ADD("/qcow2-hostile/walk-error", test_walk_error, NULL);
    ADD("/qcow2-hostile/l1-without-copied", test_l1_without_copied, NULL);
    ADD("/qcow2-hostile/mutations", test_mutations, NULL);
    return g_test_run();
}
