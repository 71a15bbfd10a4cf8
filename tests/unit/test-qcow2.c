/* The qcow2 driver against QEMU's own tools, on real files: images made
 * and written by qemu-img/qemu-io read the same through blkmig; images
 * made and written by blkmig pass `qemu-img check` and read the same in
 * qemu-img; cluster sizes from 4 KiB to 2 MiB, versions 2 and 3,
 * compressed clusters, backing chains, snapshots, and the four-state block
 * status against `qemu-img map`. */
#include <errno.h>
#include <gio/gio.h>
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>

#include "block/block.h"
#include "../lib/files.h"
#include "../lib/qemu-tools.h"
#include "util/size.h"

typedef struct Fixture {
    char *dir;
} Fixture;

static void fixture_setup(Fixture *f, gconstpointer data)
{
    GError *err = NULL;
    f->dir = g_dir_make_tmp("test-qcow2-XXXXXX", &err);
    g_assert_no_error(err);
}

static void fixture_teardown(Fixture *f, gconstpointer data)
{
    bdrv_close_all();
    g_free(qt_run("rm -rf %s", f->dir));
    g_free(f->dir);
}

/* A file name in the fixture's directory (static storage: a few at once). */
static const char *P(Fixture *f, const char *name)
{
    static char paths[8][512];
    static unsigned next;
    char *p = paths[next++ % G_N_ELEMENTS(paths)];
    g_snprintf(p, sizeof(paths[0]), "%s/%s", f->dir, name);
    return p;
}

static BlockDriverState *open_image(const BlockOptions *opts)
{
    GError *err = NULL;
    BlockDriverState *bs = bdrv_open(opts, &err);
    g_assert_no_error(err);
    g_assert_nonnull(bs);
    return bs;
}

static BlockDriverState *open_qcow2(const char *path, bool read_only)
{
    BlockOptions opts = { .id = "q", .filename = path, .format = "qcow2",
                          .read_only = read_only };
    return open_image(&opts);
}

static BlockDriverState *create_qcow2(const char *path, uint64_t size, uint32_t cluster_size)
{
    BlockOptions opts = { .id = "q", .filename = path, .format = "qcow2", .size = size,
                          .create = true, .cluster_size = cluster_size };
    return open_image(&opts);
}

static void fill_pattern(uint8_t *buf, size_t len, uint64_t off, uint8_t seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(((off + i) >> 3) * 13 + seed) | 1;   /* never zero */
    }
}

/* The whole guest disk through the block layer. */
static uint8_t *read_all(BlockDriverState *bs)
{
    uint64_t size = (uint64_t)bdrv_getlength(bs);
    uint8_t *buf = g_malloc(size);
    g_assert_cmpint(bdrv_pread(bs, 0, buf, size), ==, 0);
    return buf;
}

/* The guest disk of an image as qemu-img converts it to raw. */
static uint8_t *qemu_raw(Fixture *f, const char *path, const char *format, gsize *len)
{
    const char *raw = P(f, "qemu-view.raw");
    g_free(qt_run("qemu-img convert -f %s -O raw %s %s", format, path, raw));
    uint8_t *data = tf_read_file(raw, len);
    g_unlink(raw);
    return data;
}

static void assert_same_as_qemu(Fixture *f, BlockDriverState *bs, const char *path,
                                const char *format)
{
    gsize len;
    uint8_t *want = qemu_raw(f, path, format, &len);
    uint8_t *got = read_all(bs);

    g_assert_cmpuint(len, ==, (uint64_t)bdrv_getlength(bs));
    for (gsize i = 0; i < len; i++) {
        if (got[i] != want[i]) {
            g_error("byte %" G_GSIZE_FORMAT ": blkmig reads %#x, qemu-img %#x", i, got[i],
                    want[i]);
        }
    }
    g_free(want);
    g_free(got);
}

/* ---- Images made by blkmig ---- */

static void test_create_info(Fixture *f, gconstpointer data)
{
    const char *img = P(f, "new.qcow2");
    BlockDriverState *bs = create_qcow2(img, 100 * MiB, 0);

    g_assert_cmpstr(bdrv_get_format(bs), ==, "qcow2");
    g_assert_cmpint(bdrv_getlength(bs), ==, 100 * MiB);
    g_assert_cmpuint(bdrv_get_cluster_size(bs), ==, 64 * KiB);
    bdrv_close(bs);
    JsonNode *info = qt_info(img);
    JsonObject *o = json_node_get_object(info);
    g_assert_cmpstr(json_object_get_string_member(o, "format"), ==, "qcow2");
    g_assert_cmpint(json_object_get_int_member(o, "virtual-size"), ==, 100 * MiB);
    g_assert_cmpint(json_object_get_int_member(o, "cluster-size"), ==, 64 * KiB);
    json_node_unref(info);
    g_assert_cmpint(qt_check(img), ==, 0);
}

static void test_create_refuses_existing(Fixture *f, gconstpointer data)
{
    const char *img = P(f, "precious.img");
    BlockOptions opts = { .id = "q", .filename = img, .format = "qcow2", .size = MiB,
                          .create = true };
    GError *err = NULL;

    g_assert_true(g_file_set_contents(img, "precious", -1, NULL));
    g_assert_null(bdrv_open(&opts, &err));
    g_assert_error(err, G_IO_ERROR, G_IO_ERROR_EXISTS);
    g_clear_error(&err);
    gsize len;
    uint8_t *content = tf_read_file(img, &len);
    g_assert_cmpmem(content, len, "precious", 8);
    g_free(content);

    opts.cluster_size = 3000;
    opts.filename = P(f, "other.qcow2");
    g_assert_null(bdrv_open(&opts, &err));
    g_assert_nonnull(strstr(err->message, "cluster-size=3000"));
    g_clear_error(&err);
}

/* Random writes, write-zeroes and discards against a model of the disk. */
typedef struct Model {
    BlockDriverState *bs;
    uint8_t *bytes;
    uint64_t size, cs;
    GRand *rand;
} Model;

static void model_write(Model *m, uint64_t off, uint64_t len, uint8_t seed)
{
    uint8_t *buf = g_malloc(len);
    fill_pattern(buf, len, off, seed);
    g_assert_cmpint(bdrv_pwrite(m->bs, off, buf, len, 0), ==, 0);
    memcpy(m->bytes + off, buf, len);
    g_free(buf);
}

/* Discard drops the clusters wholly inside the range (the last one counts
 * as whole up to the end of the disk). */
static void model_discard(Model *m, uint64_t off, uint64_t len)
{
    uint64_t a = (off + m->cs - 1) / m->cs * m->cs;
    uint64_t b = off + len == m->size ? m->size : (off + len) / m->cs * m->cs;

    g_assert_cmpint(bdrv_discard(m->bs, off, len), ==, 0);
    if (a < b) {
        memset(m->bytes + a, 0, b - a);
    }
}

static void model_step(Model *m, int round)
{
    uint64_t off = (uint64_t)g_rand_int_range(m->rand, 0, (gint32)m->size);
    uint64_t max = MIN(m->size - off, 3 * m->cs + 5000);
    uint64_t len = (uint64_t)g_rand_int_range(m->rand, 1, (gint32)max + 1);

    switch (g_rand_int_range(m->rand, 0, 6)) {
    case 0:
    case 1:
    case 2:
        model_write(m, off, len, (uint8_t)round);
        break;
    case 3:
        g_assert_cmpint(bdrv_pwrite_zeroes(m->bs, off, len, round % 2 ? BDRV_REQ_MAY_UNMAP : 0),
                        ==, 0);
        memset(m->bytes + off, 0, len);
        break;
    case 4:
        model_discard(m, off, len);
        break;
    default: {
        uint8_t *buf = g_malloc(len);
        g_assert_cmpint(bdrv_pread(m->bs, off, buf, len), ==, 0);
        g_assert_cmpmem(buf, len, m->bytes + off, len);
        g_free(buf);
    }
    }
}

static void check_against_model(Fixture *f, const char *img, Model *m)
{
    const char *raw = P(f, "model.raw");
    g_assert_true(g_file_set_contents(raw, (const char *)m->bytes, (gssize)m->size, NULL));
    g_assert_cmpint(qt_check(img), ==, 0);
    g_assert_true(qt_compare(img, "qcow2", raw, "raw"));
}

/* ROUNDS random steps from SEED on an open model. */
static void model_run(Model *m, guint32 seed, int rounds)
{
    m->rand = g_rand_new_with_seed(seed);
    for (int round = 0; round < rounds; round++) {
        model_step(m, round);
    }
    g_rand_free(m->rand);
}

/* Close the drive, check IMG against the model (qemu-img, and blkmig
 * reopening it), free the model. */
static void model_finish(Fixture *f, const char *img, Model *m)
{
    bdrv_close(m->bs);
    check_against_model(f, img, m);
    m->bs = open_qcow2(img, true);
    uint8_t *all = read_all(m->bs);
    g_assert_cmpmem(all, m->size, m->bytes, m->size);
    g_free(all);
    bdrv_close(m->bs);
    g_free(m->bytes);
}

static void test_model(Fixture *f, gconstpointer data)
{
    uint32_t cs = GPOINTER_TO_UINT(data);
    const char *img = P(f, "model.qcow2");
    Model m = { .size = MAX(16 * MiB, 8ULL * cs) + 4096 + 512, .cs = cs };

    m.bs = create_qcow2(img, m.size, cs);
    m.bytes = g_malloc0(m.size);
    model_run(&m, cs, 200);
    g_assert_cmpint(bdrv_flush(m.bs), ==, 0);
    model_run(&m, cs + 1, 200);
    uint8_t *all = read_all(m.bs);
    g_assert_cmpmem(all, m.size, m.bytes, m.size);
    g_free(all);
    model_finish(f, img, &m);
}

/* ---- Images made by qemu-img and written by qemu-io ---- */

typedef struct QemuImage {
    const char *compat;
    uint32_t cluster_size;
} QemuImage;

static void make_qemu_image(const char *img, const QemuImage *q, uint64_t size)
{
    g_free(qt_run("qemu-img create -q -f qcow2 -o compat=%s,cluster_size=%u %s %" G_GUINT64_FORMAT,
                  q->compat, q->cluster_size, img, size));
    g_free(qt_run("qemu-io -f qcow2 -c 'write -P 0x11 0 100k' -c 'write -P 0x22 1M 4k' "
                  "-c 'write -P 0x33 5000k 300k' -c 'write -z 5100k 8k' "
                  "-c 'write -P 0x44 12M 4M' -c 'discard 13M 1M' -c 'write -z 14M 64k' %s", img));
}

static void test_read_qemu(Fixture *f, gconstpointer data)
{
    const char *img = P(f, "qemu.qcow2");
    make_qemu_image(img, data, 20 * MiB);
    BlockDriverState *bs = open_qcow2(img, true);
    assert_same_as_qemu(f, bs, img, "qcow2");
}

/* blkmig writes into a qemu-made image; qemu-img check and compare. */
static void test_write_qemu(Fixture *f, gconstpointer data)
{
    const char *img = P(f, "qemu.qcow2");
    Model m = { .size = 20 * MiB, .cs = ((const QemuImage *)data)->cluster_size };

    make_qemu_image(img, data, m.size);
    m.bs = open_qcow2(img, false);
    m.bytes = read_all(m.bs);
    model_run(&m, 7, 200);
    model_finish(f, img, &m);
}

/* Refcount entries of 1 and 64 bits (version 3 allows 1 to 64). */
static void test_refcount_bits(Fixture *f, gconstpointer data)
{
    const char *img = P(f, "rc.qcow2");
    Model m = { .size = 8 * MiB, .cs = 4096 };

    g_free(qt_run("qemu-img create -q -f qcow2 -o refcount_bits=%u,cluster_size=4096 %s 8M",
                  GPOINTER_TO_UINT(data), img));
    m.bs = open_qcow2(img, false);
    m.bytes = g_malloc0(m.size);
    model_run(&m, 3, 300);
    model_finish(f, img, &m);
}

/* 512-byte clusters: a refcount block covers 128 KiB and the first
 * refcount table 8 MiB, so 20 MiB of data grows the table twice. */
static void test_refcount_growth(Fixture *f, gconstpointer data)
{
    const char *img = P(f, "grow.qcow2");
    Model m = { .size = 24 * MiB, .cs = 512 };

    m.bs = create_qcow2(img, m.size, 512);
    m.bytes = g_malloc0(m.size);
    for (uint64_t off = 0; off < 20 * MiB; off += MiB) {
        model_write(&m, off, MiB, (uint8_t)(off >> 20));
    }
    bdrv_close(m.bs);
    check_against_model(f, img, &m);
    JsonNode *info = qt_info(img);
    g_assert_cmpint(json_object_get_int_member(json_node_get_object(info), "actual-size"), <,
                    23 * MiB);
    json_node_unref(info);
    g_free(m.bytes);
}

/* Compressed clusters from `qemu-img convert -c`: read, then overwritten
 * in part (copy-on-write out of the compressed cluster). */
static void test_compressed(Fixture *f, gconstpointer data)
{
    const char *type = data;
    const char *raw = P(f, "src.raw"), *img = P(f, "c.qcow2");
    Model m = { .size = 8 * MiB, .cs = 65536 };

    m.bytes = g_malloc0(m.size);
    for (uint64_t off = 0; off < m.size; off += 3 * MiB / 2) {
        fill_pattern(m.bytes + off, MIN(MiB, m.size - off), off, 5);
    }
    g_assert_true(g_file_set_contents(raw, (const char *)m.bytes, (gssize)m.size, NULL));
    g_free(qt_run("qemu-img convert -c -f raw -O qcow2 -o compression_type=%s %s %s",
                  type, raw, img));
    m.bs = open_qcow2(img, false);
    uint8_t *all = read_all(m.bs);
    g_assert_cmpmem(all, m.size, m.bytes, m.size);
    g_free(all);
    model_run(&m, 11, 100);
    model_finish(f, img, &m);
}

/* ---- Backing chains ---- */

/* base.qcow2 <- mid.qcow2 <- top.qcow2, named relatively, the top larger
 * than the layers below it; each layer writes, mid zeroes part of base. */
static void make_chain(Fixture *f)
{
    g_free(qt_run("qemu-img create -q -f qcow2 %s 16M", P(f, "base.qcow2")));
    g_free(qt_run("qemu-io -f qcow2 -c 'write -P 0x11 0 8M' -c 'write -P 0x12 10M 64k' %s",
                  P(f, "base.qcow2")));
    g_free(qt_run("qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 %s 16M",
                  P(f, "mid.qcow2")));
    g_free(qt_run("qemu-io -f qcow2 -c 'write -P 0x22 2M 2M' -c 'write -z 6M 1M' %s",
                  P(f, "mid.qcow2")));
    g_free(qt_run("qemu-img create -q -f qcow2 -o cluster_size=4096 -b mid.qcow2 -F qcow2 "
                  "%s 20M", P(f, "top.qcow2")));
    g_free(qt_run("qemu-io -f qcow2 -c 'write -P 0x33 3M 512k' -c 'write -P 0x44 17M 1M' "
                  "-c 'write -z 100k 8k' %s", P(f, "top.qcow2")));
}

static void test_chain_read(Fixture *f, gconstpointer data)
{
    make_chain(f);
    BlockDriverState *bs = open_qcow2(P(f, "top.qcow2"), true);

    g_assert_cmpint(bdrv_get_backing_depth(bs), ==, 2);
    g_assert_cmpstr(bdrv_get_backing_filename(bs), ==, "mid.qcow2");
    g_assert_cmpstr(bdrv_get_backing_filename(bdrv_get_backing(bs)), ==, "base.qcow2");
    g_assert_null(bdrv_get_id(bdrv_get_backing(bs)));
    g_assert_true(bdrv_is_read_only(bdrv_get_backing(bs)));
    assert_same_as_qemu(f, bs, P(f, "top.qcow2"), "qcow2");
}

static char *file_checksum(const char *path)
{
    gsize len;
    uint8_t *data = tf_read_file(path, &len);
    char *sum = g_compute_checksum_for_data(G_CHECKSUM_SHA256, data, len);
    g_free(data);
    return sum;
}

/* Writes through the top copy what they do not cover from below; the
 * layers below stay as they were. */
static void test_chain_write(Fixture *f, gconstpointer data)
{
    make_chain(f);
    g_autofree char *base_sum = file_checksum(P(f, "base.qcow2"));
    g_autofree char *mid_sum = file_checksum(P(f, "mid.qcow2"));
    const char *top = P(f, "top.qcow2");
    Model m = { .size = 20 * MiB, .cs = 4096 };

    m.bs = open_qcow2(top, false);
    m.bytes = read_all(m.bs);
    model_run(&m, 5, 300);
    model_finish(f, top, &m);
    g_autofree char *base_after = file_checksum(P(f, "base.qcow2"));
    g_autofree char *mid_after = file_checksum(P(f, "mid.qcow2"));
    g_assert_cmpstr(base_after, ==, base_sum);
    g_assert_cmpstr(mid_after, ==, mid_sum);
}

/* One 512-byte granule's answer: 'D'/'Z'/'U' and the depth. */
typedef struct Granule {
    char status;
    int depth;
} Granule;

static void qemu_granules(JsonNode *map, Granule *g)
{
    JsonArray *a = json_node_get_array(map);
    for (guint i = 0; i < json_array_get_length(a); i++) {
        JsonObject *e = json_array_get_object_element(a, i);
        int64_t start = json_object_get_int_member(e, "start");
        int64_t len = json_object_get_int_member(e, "length");
        bool present = json_object_get_boolean_member(e, "present");
        bool is_data = json_object_get_boolean_member(e, "data");
        int depth = (int)json_object_get_int_member(e, "depth") + 1;
        for (int64_t k = start / 512; k < (start + len) / 512; k++) {
            g[k] = (Granule){ present ? (is_data ? 'D' : 'Z') : 'U', present ? depth : 0 };
        }
    }
}

static void blkmig_granules(BlockDriverState *bs, Granule *g)
{
    static const char names[] = "DZBU";
    BdrvWalk w;
    BdrvExtent e;

    bdrv_walk_init(&w, bs, 0, (uint64_t)bdrv_getlength(bs), BDRV_WALK_DEPTH, 0);
    while (bdrv_walk_next(&w, &e) > 0) {
        for (uint64_t k = e.off / 512; k < (e.off + e.len) / 512; k++) {
            g[k] = (Granule){ names[e.status], e.depth };
        }
    }
}

/* The four-state status with depths, against `qemu-img map`. */
static void test_chain_status(Fixture *f, gconstpointer data)
{
    make_chain(f);
    const char *top = P(f, "top.qcow2");
    BlockDriverState *bs = open_qcow2(top, true);
    uint64_t n = (uint64_t)bdrv_getlength(bs) / 512;
    Granule *want = g_new0(Granule, n), *got = g_new0(Granule, n);
    JsonNode *map = qt_map(top, "qcow2");

    qemu_granules(map, want);
    blkmig_granules(bs, got);
    for (uint64_t k = 0; k < n; k++) {
        if (want[k].status != got[k].status || want[k].depth != got[k].depth) {
            g_error("offset %" G_GUINT64_FORMAT ": qemu-img map says %c/%d, blkmig %c/%d",
                    k * 512, want[k].status, want[k].depth, got[k].status, got[k].depth);
        }
    }
    json_node_unref(map);
    g_free(want);
    g_free(got);
}

/* Top layer only: the top's own clusters and zero clusters, BACKING where
 * a layer below shows through, UNALLOCATED past the backing's end. */
static void test_chain_top_only(Fixture *f, gconstpointer data)
{
    make_chain(f);
    BlockDriverState *bs = open_qcow2(P(f, "top.qcow2"), true);
    uint64_t pnum;
    BdrvStatus st;
    int depth;

    g_assert_cmpint(bdrv_block_status_ext(bs, 3 * MiB, MiB, BDRV_STATUS_TOP_ONLY, &pnum, &st,
                                          &depth), ==, 0);
    g_assert_cmpint(st, ==, BDRV_STATUS_DATA);
    g_assert_cmpuint(pnum, ==, 512 * KiB);
    g_assert_cmpint(bdrv_block_status_ext(bs, 100 * KiB, MiB, BDRV_STATUS_TOP_ONLY, &pnum, &st,
                                          &depth), ==, 0);
    g_assert_cmpint(st, ==, BDRV_STATUS_ZERO);
    g_assert_cmpuint(pnum, ==, 8 * KiB);
    g_assert_cmpint(bdrv_block_status_ext(bs, 0, MiB, BDRV_STATUS_TOP_ONLY, &pnum, &st,
                                          &depth), ==, 0);
    g_assert_cmpint(st, ==, BDRV_STATUS_BACKING);
    g_assert_cmpuint(pnum, ==, 100 * KiB);
    g_assert_cmpint(depth, ==, 0);
    g_assert_cmpint(bdrv_block_status_ext(bs, 16 * MiB, MiB, BDRV_STATUS_TOP_ONLY, &pnum, &st,
                                          &depth), ==, 0);
    g_assert_cmpint(st, ==, BDRV_STATUS_UNALLOCATED);
    g_assert_cmpuint(pnum, ==, MiB);
    /* The guest view sees the base's data and mid's zeroes. */
    bool is_data;
    g_assert_cmpint(bdrv_block_status(bs, 0, MiB, &pnum, &is_data), ==, 0);
    g_assert_true(is_data);
    g_assert_cmpint(bdrv_block_status(bs, 6 * MiB, MiB, &pnum, &is_data), ==, 0);
    g_assert_false(is_data);
    g_assert_cmpuint(pnum, ==, MiB);
}

/* create=on with a raw backing named relatively: no size= (the backing's
 * is taken), no backing-format= (probed and recorded). */
static void test_create_with_backing(Fixture *f, gconstpointer data)
{
    const char *base = P(f, "base.raw"), *img = P(f, "over.qcow2");
    uint8_t *content = g_malloc(3 * MiB);

    fill_pattern(content, 3 * MiB, 0, 9);
    g_assert_true(g_file_set_contents(base, (const char *)content, 3 * MiB, NULL));
    BlockOptions opts = { .id = "q", .filename = img, .format = "qcow2", .create = true,
                          .backing = "base.raw", .cluster_size = 4096 };
    BlockDriverState *bs = open_image(&opts);
    g_assert_cmpint(bdrv_getlength(bs), ==, 3 * MiB);
    g_assert_cmpstr(bdrv_get_format(bdrv_get_backing(bs)), ==, "raw");
    g_assert_cmpint(bdrv_pwrite(bs, MiB + 100, "new", 3, 0), ==, 0);
    memcpy(content + MiB + 100, "new", 3);
    bdrv_close(bs);

    JsonNode *info = qt_info(img);
    JsonObject *o = json_node_get_object(info);
    g_assert_cmpstr(json_object_get_string_member(o, "backing-filename"), ==, "base.raw");
    g_assert_cmpstr(json_object_get_string_member(o, "backing-filename-format"), ==, "raw");
    g_assert_cmpint(json_object_get_int_member(o, "cluster-size"), ==, 4096);
    json_node_unref(info);
    g_assert_cmpint(qt_check(img), ==, 0);
    const char *want = P(f, "want.raw");
    g_assert_true(g_file_set_contents(want, (const char *)content, 3 * MiB, NULL));
    g_assert_true(qt_compare(img, "qcow2", want, "raw"));
    g_free(content);
}

/* A write into a cluster the image does not hold copies the rest of the
 * cluster from below only when below is not zero there: over a hole of
 * the backing file, a fresh cluster gets just the guest's 4 KiB (the copy
 * was 60 KiB of zeroes before); over data, the data is copied.  Both read
 * back as qemu reads them. */
static void test_cow_over_zero(Fixture *f, gconstpointer data)
{
    const char *base = P(f, "base.raw"), *img = P(f, "cow.qcow2"), *want = P(f, "want.raw");
    uint8_t *content = g_malloc0(4 * MiB);
    uint8_t block[4096];

    fill_pattern(content, MiB, 0, 3);                 /* data, then a hole */
    g_assert_true(g_file_set_contents(base, (const char *)content, MiB, NULL));
    g_free(qt_run("truncate -s 4M %s", base));
    BlockOptions opts = { .id = "q", .filename = img, .format = "qcow2", .create = true,
                          .backing = "base.raw", .backing_format = "raw" };
    BlockDriverState *bs = open_image(&opts);
    /* The L2 table and refcount blocks first, so that only data grows. */
    g_assert_cmpint(bdrv_pwrite(bs, 3 * MiB, content, 65536, 0), ==, 0);
    memcpy(content + 3 * MiB, content, 65536);
    g_assert_cmpint(bdrv_flush(bs), ==, 0);

    int64_t before = tf_allocated_bytes(img);
    fill_pattern(block, sizeof(block), 2 * MiB + 32768, 7);
    g_assert_cmpint(bdrv_pwrite(bs, 2 * MiB + 32768, block, sizeof(block), 0), ==, 0);
    memcpy(content + 2 * MiB + 32768, block, sizeof(block));
    g_assert_cmpint(bdrv_flush(bs), ==, 0);
    int64_t grown = tf_allocated_bytes(img) - before;
    g_test_message("a 4 KiB write over a backing hole grew the image by %" G_GINT64_FORMAT
                   " bytes", grown);
    g_assert_cmpint(grown, <, 65536);

    g_assert_cmpint(bdrv_pwrite(bs, 512 * 1024 + 4096, block, sizeof(block), 0), ==, 0);
    memcpy(content + 512 * 1024 + 4096, block, sizeof(block));
    bdrv_close(bs);
    g_assert_cmpint(qt_check(img), ==, 0);
    g_assert_true(g_file_set_contents(want, (const char *)content, 4 * MiB, NULL));
    g_assert_true(qt_compare(img, "qcow2", want, "raw"));
    g_free(content);
}

/* ---- Snapshots ---- */

/* Clusters an internal snapshot shares are copied before a write, so the
 * snapshot keeps its content. */
static void test_snapshot_cow(Fixture *f, gconstpointer data)
{
    const char *img = P(f, "snap.qcow2");
    Model m = { .size = 8 * MiB, .cs = 65536 };

    g_free(qt_run("qemu-img create -q -f qcow2 %s 8M", img));
    g_free(qt_run("qemu-io -f qcow2 -c 'write -P 0x11 0 4M' %s", img));
    g_free(qt_run("qemu-img snapshot -c s1 %s", img));
    m.bs = open_qcow2(img, false);
    m.bytes = read_all(m.bs);
    model_run(&m, 13, 200);
    model_finish(f, img, &m);

    const char *snap = P(f, "snap.raw");
    g_free(qt_run("qemu-img convert -f qcow2 -l s1 -O raw %s %s", img, snap));
    gsize len;
    uint8_t *old = tf_read_file(snap, &len), *want = g_malloc0(m.size);
    memset(want, 0x11, 4 * MiB);
    g_assert_cmpmem(old, len, want, m.size);
    g_free(old);
    g_free(want);
}

/* ---- Modes and probing ---- */

/* O_DIRECT and native AIO under the format: unaligned guest requests,
 * small clusters, metadata writes smaller than a block. */
static void test_cache_none(Fixture *f, gconstpointer data)
{
    const char *img = P(f, "direct.qcow2");
    Model m = { .size = 8 * MiB + 1536, .cs = 512 };
    BlockOptions opts = { .id = "q", .filename = img, .format = "qcow2", .size = m.size,
                          .create = true, .cluster_size = 512, .cache_none = true,
                          .aio_native = true };
    GError *err = NULL;

    m.bs = bdrv_open(&opts, &err);
    if (!m.bs) {
        g_test_skip(err->message);
        g_error_free(err);
        return;
    }
    g_assert_cmpuint(bdrv_buf_align(m.bs), ==, 4096);
    m.bytes = g_malloc0(m.size);
    model_run(&m, 17, 300);
    model_finish(f, img, &m);
}

static void test_auto(Fixture *f, gconstpointer data)
{
    make_chain(f);
    BlockOptions opts = { .id = "q", .filename = P(f, "top.qcow2"), .format = "auto",
                          .read_only = true };
    BlockDriverState *bs = open_image(&opts);
    g_assert_cmpstr(bdrv_get_format(bs), ==, "qcow2");
    g_assert_cmpint(bdrv_getlength(bs), ==, 20 * MiB);
}

static const QemuImage qemu_images[] = {
    { "0.10", 4096 }, { "0.10", 65536 }, { "0.10", 2 * 1024 * 1024 },
    { "1.1", 4096 }, { "1.1", 65536 }, { "1.1", 2 * 1024 * 1024 },
};

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
#define ADD(path, fn, d) g_test_add(path, Fixture, d, fixture_setup, fn, fixture_teardown)
    ADD("/qcow2/create/info", test_create_info, NULL);
    ADD("/qcow2/create/refuses-existing", test_create_refuses_existing, NULL);
    ADD("/qcow2/model/512", test_model, GUINT_TO_POINTER(512));
    ADD("/qcow2/model/4k", test_model, GUINT_TO_POINTER(4096));
    ADD("/qcow2/model/64k", test_model, GUINT_TO_POINTER(65536));
    ADD("/qcow2/model/2m", test_model, GUINT_TO_POINTER(2 * 1024 * 1024));
    ADD("/qcow2/refcount-bits/1", test_refcount_bits, GUINT_TO_POINTER(1));
    ADD("/qcow2/refcount-bits/64", test_refcount_bits, GUINT_TO_POINTER(64));
    ADD("/qcow2/refcount-growth", test_refcount_growth, NULL);
    ADD("/qcow2/compressed/zlib", test_compressed, "zlib");
    ADD("/qcow2/compressed/zstd", test_compressed, "zstd");
    ADD("/qcow2/chain/read", test_chain_read, NULL);
    ADD("/qcow2/chain/write", test_chain_write, NULL);
    ADD("/qcow2/chain/status", test_chain_status, NULL);
    ADD("/qcow2/chain/top-only", test_chain_top_only, NULL);
    ADD("/qcow2/create/with-backing", test_create_with_backing, NULL);
    ADD("/qcow2/chain/cow-over-zero", test_cow_over_zero, NULL);
    ADD("/qcow2/snapshot-cow", test_snapshot_cow, NULL);
    ADD("/qcow2/cache-none", test_cache_none, NULL);
    ADD("/qcow2/auto", test_auto, NULL);
    for (size_t i = 0; i < G_N_ELEMENTS(qemu_images); i++) {
        const QemuImage *q = &qemu_images[i];
        char *p = g_strdup_printf("/qcow2/read-qemu/v%s/%u", q->compat, q->cluster_size);
        ADD(p, test_read_qemu, q);
        g_free(p);
        p = g_strdup_printf("/qcow2/write-qemu/v%s/%u", q->compat, q->cluster_size);
        ADD(p, test_write_qemu, q);
        g_free(p);
    }
    return g_test_run();
}
