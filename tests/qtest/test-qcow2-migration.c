/* Live migration of qcow2 drives between two blkmigd (issue 10), with the
 * built-in guest writing all along: qcow2 to qcow2, a 3-deep backing chain
 * flattened to raw, and block-incremental (the top layer only) onto an
 * overlay of the same base.  qemu-img is the oracle: the guest views
 * compare identical, the destination is as thin as the source (allocated
 * clusters), its image checks clean, and the incremental wire carries the
 * top layer, not the base. */
#include <string.h>
#include <unistd.h>

#include "../lib/qemu-tools.h"
#include "migration-framework.h"

#define DISK_SIZE (256 * MIB)
/* The guest: random writes of BS bytes (a tenth of them zeroes) at MIBS
 * MiB/s.  4 KiB is the usual guest write; cluster-sized writes make the
 * top layer grow by exactly what the guest writes (a 4 KiB write into a
 * cluster of the base allocates the whole 64 KiB cluster). */
typedef struct Guest {
    const char *bs;
    int mibs;
} Guest;
#define GUEST_ARGS "--workload drive=" MF_DRIVE_ID ",pattern=randwrite,bs=%s,rate=%d," \
                   "zero-frac=0.1,seed=%d"
static const Guest small_writes = { "4k", 4 };
static const Guest cluster_writes = { "64k", 4 };
/* qemu-compat re-sends a whole 1 MiB chunk for each write. */
static const Guest slow_cluster_writes = { "64k", 1 };
/* Slow enough that the guest writes during the bulk phase too. */
#define MAX_BANDWIDTH (48 * MIB)

/* A run's files in the scratch directory; NULL members are unused. */
typedef struct Images {
    char *base[3];              /* the backing chain, bottom first */
} Images;

static void images_free(Images *im)
{
    for (size_t i = 0; i < G_N_ELEMENTS(im->base); i++) {
        if (im->base[i]) {
            unlink(im->base[i]);
            g_free(im->base[i]);
        }
    }
}

/* m->src_disk and m->dst_disk named NAME-src.EXT and NAME-dst.DST_EXT. */
static void name_disks(Migration *m, const char *name, const char *dst_ext)
{
    g_autofree char *src = g_strdup_printf("%s-src.qcow2", name);
    g_autofree char *dst = g_strdup_printf("%s-dst.%s", name, dst_ext);

    m->src_disk = qtest_path(src);
    m->dst_disk = qtest_path(dst);
    unlink(m->dst_disk);
}

/* A source whose guest G writes to its qcow2 drive, and the destination
 * with DST_DRIVE (its --drive options after id and file). */
static void start(Migration *m, const char *dst_drive, const Guest *g, int seed)
{
    g_autofree char *src = g_strdup_printf("--drive id=" MF_DRIVE_ID ",file=%s,format=qcow2 "
                                           GUEST_ARGS, m->src_disk, g->bs, g->mibs, seed);
    g_autofree char *dst = g_strdup_printf("--drive id=" MF_DRIVE_ID ",file=%s,%s",
                                           m->dst_disk, dst_drive);

    mf_start_daemons(m, src, dst);
    qtest_set_caps(m->src, "block", "zero-blocks", NULL);
    qtest_set_params(m->src, "\"max-bandwidth\": %" G_GUINT64_FORMAT, MAX_BANDWIDTH);
}

/* Migrate (after the parameters PARAMS, NULL: none), wait until both sides
 * completed and quit them; returns disk.transferred, and in *GUEST_BYTES
 * the most the guest G can have written meanwhile (its rate over the
 * time, and one pacing burst). */
static uint64_t migrate(Migration *m, const char *params, const Guest *g,
                        uint64_t *guest_bytes)
{
    gint64 t0 = g_get_monotonic_time();
    if (params) {
        qtest_set_params(m->src, "%s", params);
    }
    qtest_migrate_start(m->src, m->uri);
    JsonNode *info = mf_wait_completed(m);
    double secs = (g_get_monotonic_time() - t0) / 1e6;
    uint64_t transferred = qtest_json_int(info, "disk.transferred");

    *guest_bytes = (uint64_t)((secs + 0.1) * g->mibs * MIB);
    g_test_message("migrated in %.2f s: %" G_GUINT64_FORMAT " bytes on the wire, the guest "
                   "wrote at most %" G_GUINT64_FORMAT, secs, transferred, *guest_bytes);
    json_node_unref(info);
    mf_quit(m);
    return transferred;
}

/* qcow2 to qcow2: the guest view arrives whole, the destination image
 * checks clean and is as thin as the source, in clusters and in the file
 * (zeroes written as data at the source are nothing there, and the zeroes
 * around what the guest wrote into a new cluster stay holes). */
static void test_qcow2_to_qcow2(void)
{
    Migration m = { 0 };
    uint64_t guest;

    name_disks(&m, "full", "qcow2");
    mf_qcow2_create(m.src_disk, DISK_SIZE, NULL);
    mf_qcow2_scatter(m.src_disk, DISK_SIZE, 1, 120, 1);
    start(&m, "format=qcow2,create=on,size=256M", &small_writes, 11);
    migrate(&m, NULL, &small_writes, &guest);

    mf_assert_same_view(m.src_disk, "qcow2", m.dst_disk, "qcow2");
    g_assert_cmpint(qt_check(m.dst_disk), ==, 0);
    mf_assert_thin_data(qt_data_bytes(m.src_disk, "qcow2", true),
                        qt_data_bytes(m.dst_disk, "qcow2", true));
    mf_assert_thin_files(m.src_disk, m.dst_disk);
    mf_free(&m);
}

/* base <- mid1 <- mid2 <- source, each layer writing data and zeroes over
 * the ones below: the source's backing chain is 3 deep. */
static void make_chain(Images *im, Migration *m, uint64_t seed)
{
    static const char *const names[] = { "chain-base.qcow2", "chain-mid1.qcow2",
                                         "chain-mid2.qcow2" };

    for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
        im->base[i] = qtest_path(names[i]);
        mf_qcow2_create(im->base[i], DISK_SIZE, i ? im->base[i - 1] : NULL);
        mf_qcow2_scatter(im->base[i], DISK_SIZE, seed + i, 60, 20);
    }
    mf_qcow2_create(m->src_disk, DISK_SIZE, im->base[2]);
    mf_qcow2_scatter(m->src_disk, DISK_SIZE, seed + 3, 30, 20);
    g_autoptr(JsonNode) info = qt_info(m->src_disk);
    g_assert_cmpstr(qtest_json_str(info, "backing-filename"), ==, im->base[2]);
}

/* A 3-deep chain to a raw file: flattened, what every layer holds (and
 * the zeroes upper layers put over it) arrives, and the raw file
 * allocates no more than the chain's data. */
static void test_chain_to_raw(void)
{
    Migration m = { 0 };
    Images im = { 0 };
    uint64_t guest;

    name_disks(&m, "chain", "raw");
    make_chain(&im, &m, 20);
    start(&m, "size=256M,create=on", &small_writes, 12);
    migrate(&m, NULL, &small_writes, &guest);

    mf_assert_same_view(m.src_disk, "qcow2", m.dst_disk, "raw");
    mf_assert_thin_data(qt_data_bytes(m.src_disk, "qcow2", false),
                        qt_data_bytes(m.dst_disk, "raw", false));
    images_free(&im);
    mf_free(&m);
}

/* A base with data, and the source overlay on it with RUNS runs of its
 * own data, and as many of zero clusters and of zeroes written as data
 * over the base's. */
static void make_overlay(Images *im, Migration *m, uint64_t seed, unsigned runs)
{
    g_autofree char *name = g_strdup_printf("inc%" G_GUINT64_FORMAT "-base.qcow2", seed);

    im->base[0] = qtest_path(name);
    mf_qcow2_create(im->base[0], DISK_SIZE, NULL);
    mf_qcow2_scatter(im->base[0], DISK_SIZE, seed, 300, 0);
    mf_qcow2_create(m->src_disk, DISK_SIZE, im->base[0]);
    mf_qcow2_scatter(m->src_disk, DISK_SIZE, seed + 1, runs, runs);
}

/* The destination's drive: a new overlay on the source's own base file. */
static char *overlay_drive(const Images *im)
{
    return g_strdup_printf("format=qcow2,create=on,backing=%s,backing-format=qcow2",
                           im->base[0]);
}

/* block-incremental onto an overlay of the same base: the same guest
 * view, a destination top layer as thin as the source's, and on the wire
 * the top layer (1.05 x its data clusters + 1 MiB) and what the guest
 * wrote, never the base. */
static void test_incremental(void)
{
    Migration m = { 0 };
    Images im = { 0 };
    uint64_t guest;

    name_disks(&m, "inc", "qcow2");
    make_overlay(&im, &m, 30, 30);
    g_autofree char *dst_drive = overlay_drive(&im);
    start(&m, dst_drive, &cluster_writes, 13);
    uint64_t wire = migrate(&m, "\"block-incremental\": true", &cluster_writes, &guest);

    mf_assert_same_view(m.src_disk, "qcow2", m.dst_disk, "qcow2");
    g_assert_cmpint(qt_check(m.dst_disk), ==, 0);
    uint64_t top = qt_data_bytes(m.src_disk, "qcow2", true);
    uint64_t base = qt_data_bytes(im.base[0], "qcow2", true);
    mf_assert_thin_data(top, qt_data_bytes(m.dst_disk, "qcow2", true));
    mf_assert_thin_files(m.src_disk, m.dst_disk);
    uint64_t bound = top + top / 20 + MIB + guest;
    g_test_message("top layer %" G_GUINT64_FORMAT ", base %" G_GUINT64_FORMAT ", wire %"
                   G_GUINT64_FORMAT " (at most %" G_GUINT64_FORMAT ")", top, base, wire, bound);
    /* The base alone would not fit. */
    g_assert_cmpuint(base, >, bound);
    g_assert_cmpuint(wire, <=, bound);
    images_free(&im);
    mf_free(&m);
}

/* A zero cluster of the image's own layer (not a data cluster whose host
 * range is a hole: qemu-img shows those as data and zero). */
static bool is_zero_cluster(const QtExtent *e)
{
    return e->depth == 0 && e->zero && !e->data;
}

/* Whether [off, off+len) of the qcow2 image PATH reads as zeroes. */
static bool reads_zero(const char *path, uint64_t off, uint64_t len)
{
    return qt_run_status(NULL, "qemu-io -f qcow2 -c 'read -P 0 %" G_GUINT64_FORMAT " %"
                         G_GUINT64_FORMAT "' %s", off, len, path) == 0;
}

/* The ranges of the final source image whose top layer is a zero cluster
 * read as zero at the destination; returns how many of them lie over data
 * of the base (which they mask). */
static unsigned assert_zero_clusters_mask(const char *src, const char *base, const char *dst)
{
    g_autoptr(GArray) top = qt_map_extents(src, "qcow2");
    unsigned masked = 0;

    for (guint i = 0; i < top->len; i++) {
        QtExtent *e = &g_array_index(top, QtExtent, i);
        if (is_zero_cluster(e)) {
            g_assert_true(reads_zero(dst, e->start, e->length));
            masked += !reads_zero(base, e->start, e->length);
        }
    }
    return masked;
}

/* The destination's top layer holds no data where the source's holds
 * zero clusters. */
static void assert_no_data_under_zero(const char *src, const char *dst)
{
    g_autoptr(GArray) s = qt_map_extents(src, "qcow2");
    g_autoptr(GArray) d = qt_map_extents(dst, "qcow2");

    for (guint i = 0; i < s->len; i++) {
        QtExtent *z = &g_array_index(s, QtExtent, i);
        for (guint j = 0; is_zero_cluster(z) && j < d->len; j++) {
            QtExtent *e = &g_array_index(d, QtExtent, j);
            bool overlap = e->start < z->start + z->length && z->start < e->start + e->length;
            if (overlap && e->data) {
                g_error("source zero [%" G_GUINT64_FORMAT ", +%" G_GUINT64_FORMAT "), destination "
                        "data [%" G_GUINT64_FORMAT ", +%" G_GUINT64_FORMAT ") depth %d",
                        z->start, z->length, e->start, e->length, e->depth);
            }
        }
    }
}

/* Zero clusters of the source's top layer mask the base's data at the
 * destination too; QMP migrate's "inc": true (QEMU's) turns
 * block-incremental on for this migration only. */
static void test_zero_clusters_mask_base(void)
{
    Migration m = { 0 };
    Images im = { 0 };

    name_disks(&m, "mask", "qcow2");
    make_overlay(&im, &m, 40, 30);
    g_free(qt_run("qemu-io -f qcow2 -c 'write -z 0 32M' %s", m.src_disk));
    g_autofree char *dst_drive = overlay_drive(&im);
    start(&m, dst_drive, &small_writes, 14);
    json_node_unref(qtest_qmp_ok(m.src, "{\"execute\": \"migrate\", \"arguments\": "
                                 "{\"uri\": \"%s\", \"inc\": true}}", m.uri));
    JsonNode *info = mf_wait_completed(&m);
    JsonNode *p = qtest_qmp_ok(m.src, "{\"execute\": \"query-migrate-parameters\"}");
    g_assert_false(qtest_json_bool(p, "block-incremental"));
    g_assert_cmpint(qtest_json_int(info, "disk.transferred"), <,
                    qt_data_bytes(im.base[0], "qcow2", true) / 2);
    json_node_unref(p);
    json_node_unref(info);
    mf_quit(&m);

    mf_assert_same_view(m.src_disk, "qcow2", m.dst_disk, "qcow2");
    unsigned masked = assert_zero_clusters_mask(m.src_disk, im.base[0], m.dst_disk);
    g_test_message("%u zero ranges of the top layer mask data of the base", masked);
    g_assert_cmpuint(masked, >=, 10);
    assert_no_data_under_zero(m.src_disk, m.dst_disk);
    images_free(&im);
    mf_free(&m);
}

/* 1 MiB chunks of the qcow2 image PATH that hold data, in any layer. */
static uint64_t data_chunks(const char *path)
{
    g_autoptr(GArray) map = qt_map_extents(path, "qcow2");
    g_autoptr(GHashTable) chunks = g_hash_table_new(g_direct_hash, g_direct_equal);

    for (guint i = 0; i < map->len; i++) {
        QtExtent *e = &g_array_index(map, QtExtent, i);
        for (uint64_t c = e->start / MIB; e->data && c * MIB < e->start + e->length; c++) {
            g_hash_table_add(chunks, GSIZE_TO_POINTER(c + 1));
        }
    }
    return g_hash_table_size(chunks);
}

/* qemu-compat with block-incremental does what QEMU 7.2 does: no stream
 * option (the destination is not told), chunks of which the top layer
 * holds nothing are not sent, the others go whole; onto an overlay of the
 * same base that is the same guest view, and the base does not travel. */
static void test_incremental_qemu_compat(void)
{
    Migration m = { 0 };
    Images im = { 0 };
    uint64_t guest;

    name_disks(&m, "compat", "qcow2");
    make_overlay(&im, &m, 60, 6);
    g_autofree char *dst_drive = overlay_drive(&im);
    start(&m, dst_drive, &slow_cluster_writes, 16);
    qtest_set_caps(m.src, "qemu-compat", NULL);
    uint64_t wire = migrate(&m, "\"block-incremental\": true, \"max-bandwidth\": 0",
                            &slow_cluster_writes, &guest);

    mf_assert_same_view(m.src_disk, "qcow2", m.dst_disk, "qcow2");
    /* What a full migration with qemu-compat would send at least. */
    uint64_t full = data_chunks(m.src_disk) * MIB;
    g_test_message("full %" G_GUINT64_FORMAT ", wire %" G_GUINT64_FORMAT, full, wire);
    g_assert_cmpuint(wire, <, full / 2);
    images_free(&im);
    mf_free(&m);
}

/* block-incremental from a qcow2 drive without a backing image onto an
 * overlay: the source's top layer is all there is, so what reads as zero
 * there (unallocated clusters) must hide the destination base's data. */
static void test_incremental_source_without_backing(void)
{
    Migration m = { 0 };
    Images im = { 0 };
    uint64_t guest;

    name_disks(&m, "nobase", "qcow2");
    make_overlay(&im, &m, 70, 10);
    mf_qcow2_create(m.src_disk, DISK_SIZE, NULL);
    mf_qcow2_scatter(m.src_disk, DISK_SIZE, 71, 10, 10);
    g_autofree char *dst_drive = overlay_drive(&im);
    start(&m, dst_drive, &cluster_writes, 17);
    migrate(&m, "\"block-incremental\": true", &cluster_writes, &guest);

    mf_assert_same_view(m.src_disk, "qcow2", m.dst_disk, "qcow2");
    images_free(&im);
    mf_free(&m);
}

/* block-incremental onto a drive without a backing image: the
 * destination refuses at once, naming the drive, and writes nothing. */
static void test_incremental_needs_backing(void)
{
    Migration m = { 0 };
    Images im = { 0 };

    name_disks(&m, "nobacking", "qcow2");
    make_overlay(&im, &m, 50, 30);
    start(&m, "format=qcow2,create=on,size=256M", &small_writes, 15);
    qtest_set_params(m.src, "\"block-incremental\": true");
    qtest_migrate_start(m.src, m.uri);
    mf_expect_refused(&m, "drive 'disk0' has no backing image", "block-incremental");
    mf_quit(&m);
    g_assert_cmpuint(qt_data_bytes(m.dst_disk, "qcow2", true), ==, 0);
    images_free(&im);
    mf_free(&m);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    if (!qtest_have_program("qemu-img") || !qtest_have_program("qemu-io")) {
        g_test_skip("qemu-img and qemu-io are needed");
        return g_test_run();
    }
    g_test_add_func("/qcow2-migration/qcow2-to-qcow2", test_qcow2_to_qcow2);
    g_test_add_func("/qcow2-migration/chain-to-raw", test_chain_to_raw);
    g_test_add_func("/qcow2-migration/incremental", test_incremental);
    g_test_add_func("/qcow2-migration/zero-clusters-mask-base", test_zero_clusters_mask_base);
    g_test_add_func("/qcow2-migration/incremental-qemu-compat", test_incremental_qemu_compat);
    g_test_add_func("/qcow2-migration/incremental-source-without-backing",
                    test_incremental_source_without_backing);
    g_test_add_func("/qcow2-migration/incremental-needs-backing",
                    test_incremental_needs_backing);
    return g_test_run();
}
