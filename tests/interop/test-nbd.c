/* blkmigd's NBD export with real clients: nbdinfo, qemu-img, qemu-io,
 * nbdcopy and fio see the drives as they are on disk (data, holes, size,
 * flags), and the runstate holds and releases their I/O. */
#include <json-glib/json-glib.h>
#include <string.h>
#include <unistd.h>

#include "../qtest/libqtest.h"
#include "interop.h"

#define MiB (1024 * 1024)

typedef struct Fixture {
    QTestDaemon *d;
    char *img;          /* disk0's file */
    char *sock;         /* the NBD socket */
    char *uri;          /* nbd+unix:///disk0?socket=... */
} Fixture;

/* Start daemon NAME exporting disk0 (IMG, created by the caller) plus any
 * EXTRA arguments, and wait until the guest runs. */
static void fixture_start(Fixture *f, const char *name, const char *img, const char *extra)
{
    g_autofree char *sock = g_strdup_printf("%s.nbd", name);

    f->img = g_strdup(img);
    f->sock = qtest_path(sock);
    f->uri = interop_nbd_uri(f->sock, "disk0");
    f->d = qtest_daemon_start(name, "--drive id=disk0,file=%s --nbd unix:%s %s",
                              img, f->sock, extra ? extra : "");
    qtest_wait_runstate(f->d, "running", 10000);
}

static void fixture_stop(Fixture *f)
{
    qtest_daemon_quit(f->d);
    unlink(f->img);
    g_free(f->img);
    g_free(f->sock);
    g_free(f->uri);
}

/* A sparse disk with scattered data runs (some 4 KiB, some 1 MiB). */
static char *make_sparse_disk(const char *name, uint64_t size, uint64_t seed)
{
    char *path = qtest_path(name);

    qtest_disk_create(path, size);
    qtest_disk_scatter(path, seed, 12, 4096);
    qtest_disk_scatter(path, seed + 1, 6, MiB);
    return path;
}

/* nbdinfo --list shows every drive with its size, flags, block sizes and
 * its metadata contexts: base:allocation and qemu:allocation-depth. */
static void test_nbdinfo_list(void)
{
    g_autofree char *img = make_sparse_disk("list0.img", 64 * MiB, 1);
    g_autofree char *img1 = qtest_path("list1.img");
    g_autofree char *extra = NULL, *out = NULL, *uri = NULL;
    g_autoptr(JsonNode) root = NULL;
    JsonArray *exports;
    Fixture f;

    if (!interop_need("nbdinfo")) {
        return;
    }
    qtest_disk_create(img1, 16 * MiB);
    extra = g_strdup_printf("--drive id=disk1,file=%s,read-only=on", img1);
    fixture_start(&f, "list", img, extra);
    uri = g_strdup_printf("nbd+unix:///?socket=%s", f.sock);
    g_assert_cmpint(interop_run(&out, NULL, "nbdinfo", "--json", "--list", uri, NULL), ==, 0);
    root = interop_parse_json(out);
    g_assert_true(qtest_json_bool(root, "structured"));
    exports = json_object_get_array_member(json_node_get_object(root), "exports");
    g_assert_cmpuint(json_array_get_length(exports), ==, 2);
    for (guint i = 0; i < 2; i++) {
        JsonNode *e = json_array_get_element(exports, i);
        JsonArray *ctx = json_object_get_array_member(json_node_get_object(e), "contexts");
        bool ro = i == 1;

        g_assert_cmpstr(qtest_json_str(e, "export-name"), ==, ro ? "disk1" : "disk0");
        g_assert_cmpint(qtest_json_int(e, "export-size"), ==, ro ? 16 * MiB : 64 * MiB);
        g_assert_cmpuint(json_array_get_length(ctx), ==, 2);
        g_assert_cmpstr(json_array_get_string_element(ctx, 0), ==, "base:allocation");
        g_assert_cmpstr(json_array_get_string_element(ctx, 1), ==, "qemu:allocation-depth");
        g_assert_true(qtest_json_bool(e, "is_read_only") == ro);
        g_assert_true(qtest_json_bool(e, "can_multi_conn"));
        g_assert_true(qtest_json_bool(e, "can_flush"));
        g_assert_true(qtest_json_bool(e, "can_trim") == !ro);
        g_assert_true(qtest_json_bool(e, "can_zero") == !ro);
        g_assert_true(qtest_json_bool(e, "can_fast_zero") == !ro);
        g_assert_true(qtest_json_bool(e, "can_fua") == !ro);
        g_assert_cmpint(qtest_json_int(e, "block_size_minimum"), ==, 1);
        g_assert_cmpint(qtest_json_int(e, "block_size_preferred"), ==, 4096);
        g_assert_cmpint(qtest_json_int(e, "block_size_maximum"), ==, 32 * MiB);
    }
    fixture_stop(&f);
    unlink(img1);
}

/* Export a fresh sparse disk NAME.img of SIZE (data seeded by SEED) from
 * daemon NAME for TOOL: false (the test skipped) without TOOL; *WANT the
 * file's own data/hole layout. */
static bool export_sparse_for(const char *tool, Fixture *f, const char *name, uint64_t size,
                              uint64_t seed, GArray **want)
{
    g_autofree char *file = g_strdup_printf("%s.img", name);
    g_autofree char *img = NULL;

    if (!interop_need(tool)) {
        return false;
    }
    img = make_sparse_disk(file, size, seed);
    *want = interop_file_extents(img);
    fixture_start(f, name, img, NULL);
    return true;
}

/* nbdinfo --map reports exactly the file's SEEK_DATA/SEEK_HOLE layout. */
static void test_nbdinfo_map(void)
{
    g_autoptr(GArray) want = NULL, got = NULL;
    Fixture f;

    if (!export_sparse_for("nbdinfo", &f, "map", 256 * MiB, 2, &want)) {
        return;
    }
    g_assert_cmpuint(want->len, >, 10);
    got = interop_nbdinfo_map(f.uri);
    interop_assert_extents_equal(want, got, "nbdinfo --map");
    fixture_stop(&f);
}

/* qemu-img sees the same bytes and the same holes. */
static void test_qemu_img(void)
{
    g_autofree char *out = NULL;
    g_autoptr(JsonNode) root = NULL;
    g_autoptr(GArray) want = NULL;
    g_autoptr(GArray) got = g_array_new(FALSE, FALSE, sizeof(InteropExtent));
    JsonArray *map;
    Fixture f;

    if (!export_sparse_for("qemu-img", &f, "qimg", 128 * MiB, 3, &want)) {
        return;
    }
    g_assert_cmpint(interop_run(NULL, NULL, "qemu-img", "compare", "-f", "raw", "-F", "raw",
                                f.img, f.uri, NULL), ==, 0);
    g_assert_cmpint(interop_run(&out, NULL, "qemu-img", "map", "--output=json", "-f", "raw",
                                f.uri, NULL), ==, 0);
    root = interop_parse_json(out);
    map = json_node_get_array(root);
    for (guint i = 0; i < json_array_get_length(map); i++) {
        JsonObject *e = json_array_get_object_element(map, i);
        bool data = json_object_get_boolean_member(e, "data");

        /* Holes are holes, and read as zeroes. */
        g_assert_true(data || json_object_get_boolean_member(e, "zero"));
        interop_extent_add(got, json_object_get_int_member(e, "start"),
                           json_object_get_int_member(e, "length"), data);
    }
    interop_assert_extents_equal(want, got, "qemu-img map");
    fixture_stop(&f);
}

static bool contains(const char *haystack, const char *needle)
{
    return haystack && strstr(haystack, needle);
}

/* qemu-io: pattern writes and reads, write-zeroes (allocated or not),
 * discard, FUA, unaligned requests; past-the-end requests fail. */
static void test_qemu_io(void)
{
    g_autofree char *img = qtest_path("qio.img");
    g_autofree char *out = NULL, *err = NULL;
    g_autoptr(GArray) ext = NULL;
    Fixture f;

    if (!interop_need("qemu-io")) {
        return;
    }
    qtest_disk_create(img, 64 * MiB);
    qtest_disk_set(img, 1 * MiB, MiB, 0x77);     /* to be discarded */
    qtest_disk_set(img, 4 * MiB, MiB, 0x77);     /* zeroed with unmap */
    qtest_disk_set(img, 6 * MiB, MiB, 0x77);     /* zeroed, kept allocated */
    fixture_start(&f, "qio", img, NULL);

    g_assert_cmpint(interop_run(&out, &err, "qemu-io", "-f", "raw", f.uri,
                                "-c", "write -P 0xab 1000 5000",
                                "-c", "read -P 0xab 1000 5000",
                                "-c", "read -P 0 0 1000",
                                "-c", "write -P 0x33 8191 3",
                                "-c", "read -P 0x33 8191 3",
                                "-c", "discard 1M 1M",
                                "-c", "read -P 0 1M 1M",
                                "-c", "write -z -u 4M 1M",
                                "-c", "read -P 0 4M 1M",
                                "-c", "write -z 6M 1M",
                                "-c", "read -P 0 6M 1M",
                                "-c", "write -f -P 0x11 2M 4k",
                                "-c", "aio_write -P 0x22 8M 64k",
                                "-c", "aio_write -P 0x23 9M 64k",
                                "-c", "aio_flush",
                                "-c", "flush",
                                "-c", "read -P 0x22 8M 64k",
                                "-c", "read -P 0x23 9M 64k",
                                "-c", "write -P 0x44 67104768 4096",
                                "-c", "read -P 0x44 67104768 4096",
                                NULL), ==, 0);
    g_assert_false(contains(out, "failed"));
    g_assert_false(contains(out, "Pattern verification"));

    /* What landed in the file. */
    g_assert_true(interop_file_has(img, 1000, 5000, 0xab));
    g_assert_true(interop_file_has(img, 8191, 3, 0x33));
    g_assert_true(interop_file_has(img, 2 * MiB, 4096, 0x11));
    g_assert_true(interop_file_has(img, 8 * MiB, 64 * 1024, 0x22));
    g_assert_true(interop_file_has(img, 64 * MiB - 4096, 4096, 0x44));
    g_assert_true(interop_file_has(img, 6 * MiB, MiB, 0));
    /* discard and write -z -u left holes, plain write -z did not. */
    ext = interop_file_extents(img);
    for (guint i = 0; i < ext->len; i++) {
        InteropExtent *e = &g_array_index(ext, InteropExtent, i);
        if (e->data) {
            g_assert_false(e->offset < 2 * MiB && e->offset + e->length > 1 * MiB);
            g_assert_false(e->offset < 5 * MiB && e->offset + e->length > 4 * MiB);
        }
    }

    /* Past the end: errors, and the export keeps working. */
    g_clear_pointer(&out, g_free);
    g_clear_pointer(&err, g_free);
    interop_run(&out, &err, "qemu-io", "-f", "raw", f.uri,
                "-c", "read 67104768 8192",
                "-c", "write 67108864 512",
                "-c", "read -P 0x44 67104768 4096", NULL);
    g_assert_true(contains(out, "read failed"));
    g_assert_true(contains(out, "write failed"));
    g_assert_true(contains(out, "read 4096/4096"));
    fixture_stop(&f);
}

/* nbdcopy from a sparse file into an empty drive: same bytes, and as thin
 * as the source; and back out again. */
static void test_nbdcopy(void)
{
    g_autofree char *src = make_sparse_disk("copy-src.img", 256 * MiB, 4);
    g_autofree char *dst = qtest_path("copy-dst.img");
    g_autofree char *back = qtest_path("copy-back.img");
    uint64_t diff = 0, src_alloc;
    Fixture f;

    if (!interop_need("nbdcopy")) {
        return;
    }
    qtest_disk_create(dst, 256 * MiB);
    fixture_start(&f, "copy", dst, NULL);
    g_assert_cmpint(interop_run(NULL, NULL, "nbdcopy", src, f.uri, NULL), ==, 0);
    g_assert_true(qtest_files_equal(src, dst, &diff));
    src_alloc = qtest_allocated_bytes(src);
    g_test_message("allocated: source %" G_GUINT64_FORMAT ", destination %" G_GUINT64_FORMAT,
                   src_alloc, qtest_allocated_bytes(dst));
    g_assert_cmpuint(qtest_allocated_bytes(dst), <=, src_alloc + 64 * 1024);
    g_assert_cmpuint(qtest_allocated_bytes(dst) + 64 * 1024, >=, src_alloc);

    g_assert_cmpint(interop_run(NULL, NULL, "nbdcopy", f.uri, back, NULL), ==, 0);
    g_assert_true(qtest_files_equal(src, back, &diff));
    fixture_stop(&f);
    unlink(src);
    unlink(back);
}

/* Several clients at once (fio, one connection per job) each verify their
 * own region. */
static void test_fio_multi_conn(void)
{
    g_autofree char *img = qtest_path("fio.img");
    Fixture f;

    if (!interop_need("fio")) {
        return;
    }
    qtest_disk_create(img, 64 * MiB);
    fixture_start(&f, "fio", img, NULL);
    g_autofree char *uri_opt = g_strdup_printf("--uri=%s", f.uri);
    g_assert_cmpint(interop_run(NULL, NULL, "fio", "--name=multi", "--ioengine=nbd", uri_opt,
                                "--rw=randwrite", "--bs=4k", "--iodepth=8", "--numjobs=4",
                                "--size=8M", "--offset_increment=16M", "--number_ios=1000",
                                "--verify=crc32c", "--do_verify=1", "--group_reporting",
                                NULL), ==, 0);
    fixture_stop(&f);
}

/* A TCP endpoint works as well as a unix socket. */
static void test_tcp(void)
{
    g_autofree char *img = qtest_path("tcp.img");
    g_autofree char *uri = NULL, *out = NULL;
    int port = qtest_free_port();
    QTestDaemon *d;

    if (!interop_need("qemu-io")) {
        return;
    }
    qtest_disk_create(img, 8 * MiB);
    d = qtest_daemon_start("tcp", "--drive id=disk0,file=%s --nbd tcp:127.0.0.1:%d", img, port);
    qtest_wait_runstate(d, "running", 10000);
    uri = g_strdup_printf("nbd://127.0.0.1:%d/disk0", port);
    g_assert_cmpint(interop_run(&out, NULL, "qemu-io", "-f", "raw", uri,
                                "-c", "write -P 0x66 0 64k", "-c", "read -P 0x66 0 64k",
                                NULL), ==, 0);
    g_assert_true(interop_file_has(img, 0, 64 * 1024, 0x66));
    qtest_daemon_quit(d);
}

/* QMP stop holds requests (reads and writes) without failing them; cont
 * releases them. */
static void test_stop_cont(void)
{
    g_autofree char *img = qtest_path("stop.img");
    g_autofree char *rlog = qtest_path("stop-read.log");
    g_autofree char *wlog = qtest_path("stop-write.log");
    g_autofree char *rtext = NULL;
    pid_t reader, writer;
    Fixture f;

    if (!interop_need("qemu-io")) {
        return;
    }
    qtest_disk_create(img, 8 * MiB);
    qtest_disk_set(img, 0, 4096, 0x44);
    fixture_start(&f, "stop", img, NULL);

    json_node_unref(qtest_qmp_ok(f.d, "{\"execute\": \"stop\"}"));
    qtest_wait_runstate(f.d, "paused", 5000);
    reader = interop_spawn(rlog, "qemu-io", "-f", "raw", f.uri, "-c", "read -P 0x44 0 4k", NULL);
    writer = interop_spawn(wlog, "qemu-io", "-f", "raw", f.uri, "-c", "write -P 0x55 64k 4k",
                           NULL);
    /* Connected, handshake done, request held. */
    g_assert_cmpint(interop_wait(reader, 1500), ==, -2);
    g_assert_cmpint(interop_wait(writer, 10), ==, -2);
    g_assert_true(interop_file_has(img, 64 * 1024, 4096, 0));

    json_node_unref(qtest_qmp_ok(f.d, "{\"execute\": \"cont\"}"));
    g_assert_cmpint(interop_wait(reader, 30000), ==, 0);
    g_assert_cmpint(interop_wait(writer, 30000), ==, 0);
    g_assert_true(g_file_get_contents(rlog, &rtext, NULL, NULL));
    g_assert_true(contains(rtext, "read 4096/4096"));
    g_assert_true(interop_file_has(img, 64 * 1024, 4096, 0x55));
    fixture_stop(&f);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_tmpdir();
    g_test_add_func("/nbd/nbdinfo-list", test_nbdinfo_list);
    g_test_add_func("/nbd/nbdinfo-map", test_nbdinfo_map);
    g_test_add_func("/nbd/qemu-img", test_qemu_img);
    g_test_add_func("/nbd/qemu-io", test_qemu_io);
    g_test_add_func("/nbd/nbdcopy", test_nbdcopy);
    g_test_add_func("/nbd/fio-multi-conn", test_fio_multi_conn);
    g_test_add_func("/nbd/tcp", test_tcp);
    g_test_add_func("/nbd/stop-cont", test_stop_cont);
    return g_test_run();
}
