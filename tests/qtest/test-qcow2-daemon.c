/* blkmigd with qcow2 drives, as a whole daemon (issue 10): the --drive
 * options for qcow2 (format=, backing=, backing-format=, cluster-size=)
 * and their errors, images it creates as qemu-img sees them, query-block
 * against `qemu-img info --backing-chain`, and format=auto's
 * probing-safety rule as a guest on the NBD export meets it. */
#include <string.h>
#include <unistd.h>

#include "../lib/qemu-tools.h"
#include "libqtest.h"

#define MIB (UINT64_C(1) << 20)
/* Start-ups that must fail do so at once. */
#define RUN_TIMEOUT_MS 10000

static void assert_contains(const char *text, const char *want)
{
    if (!strstr(text, want)) {
        g_error("expected '%s' in:\n%s", want, text);
    }
}

/* blkmigd --drive DRIVE --qmp ...: exit code, output in *OUT. */
static int run_drive(const char *drive, char **out)
{
    g_autofree char *qmp = qtest_path("run.qmp");
    g_autofree char *qmp_uri = g_strconcat("unix:", qmp, NULL);

    return qtest_daemon_run(RUN_TIMEOUT_MS, out, "--drive", drive, "--qmp", qmp_uri, NULL);
}

/* In the scratch directory: base.raw (SIZE, data in its first MiB) and
 * base.qcow2 over nothing, both made by qemu-img / qemu-io. */
static void make_bases(uint64_t size)
{
    g_autofree char *raw = qtest_path("base.raw");
    g_autofree char *qcow2 = qtest_path("base.qcow2");

    unlink(raw);
    unlink(qcow2);
    qtest_disk_create(raw, size);
    g_free(qt_run("qemu-io -f raw -c 'write -P 0x11 0 1M' %s", raw));
    g_free(qt_run("qemu-img create -q -f qcow2 %s %" G_GUINT64_FORMAT, qcow2, size));
}

/* ---- --drive options ---- */

typedef struct BadDrive {
    const char *opts;       /* after "id=disk0,file=<scratch>/bad.qcow2," */
    int code;               /* 64: command line; 1: start-up */
    const char *message;
} BadDrive;

/* Every wrong combination is refused with a message naming the problem,
 * and no image file is left behind. */
static void test_drive_errors(void)
{
    static const BadDrive bad[] = {
        { "format=qcow3", 1, "Unknown format 'qcow3'" },
        { "format=raw,backing=base.raw", 1, "backing= needs format=qcow2" },
        { "backing=base.raw", 1, "backing= needs format=qcow2" },
        { "format=qcow2,create=on,size=1M,cluster-size=3k", 1, "must be a power of two" },
        { "format=qcow2,create=on,size=1M,cluster-size=4M", 1, "from 512 to 2M" },
        { "format=qcow2,create=on,size=1M,cluster-size=99999999999", 64, "too large" },
        { "format=qcow2,cluster-size=64k", 1, "cluster-size= applies to create=on only" },
        { "format=qcow2,create=on,backing=missing.qcow2", 1, "missing.qcow2" },
        { "format=qcow2,create=on", 1, "create=on needs size=" },
        { "format=auto,create=on,size=1M", 1, "needs a format" },
        { "format=qcow2,create=on,size=1M,backing-format=raw", 1,
          "backing-format= needs backing=" },
        { "format=qcow2,create=on,backing=", 64, "'backing' is empty" },
        { "format=", 64, "'format' is empty" },
    };
    g_autofree char *img = qtest_path("bad.qcow2");

    make_bases(4 * MIB);
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        g_autofree char *drive = g_strdup_printf("id=disk0,file=%s,%s", img, bad[i].opts);
        g_autofree char *out = NULL;

        unlink(img);
        g_test_message("--drive %s", drive);
        g_assert_cmpint(run_drive(drive, &out), ==, bad[i].code);
        assert_contains(out, bad[i].message);
        g_assert_false(g_file_test(img, G_FILE_TEST_EXISTS));
    }
}

/* An existing file that is not a qcow2 image is refused as format=qcow2,
 * and left unchanged. */
static void test_drive_not_qcow2(void)
{
    g_autofree char *raw = qtest_path("base.raw");
    g_autofree char *drive = NULL, *out = NULL;
    g_autofree char *before = NULL;

    make_bases(4 * MIB);
    before = qt_run("sha256sum %s", raw);
    drive = g_strdup_printf("id=disk0,file=%s,format=qcow2", raw);
    g_assert_cmpint(run_drive(drive, &out), ==, 1);
    assert_contains(out, "qcow2");
    g_autofree char *after = qt_run("sha256sum %s", raw);
    g_assert_cmpstr(before, ==, after);
}

/* create=on with backing= (a name relative to the image's directory) and
 * cluster-size=: qemu-img sees the chain, the size taken from the
 * backing image, the cluster size, and a clean image. */
static void test_drive_create(void)
{
    g_autofree char *img = qtest_path("new.qcow2");
    g_autofree char *base = qtest_path("base.raw");

    make_bases(8 * MIB);
    unlink(img);
    QTestDaemon *d = qtest_daemon_start("create", "--drive id=disk0,file=%s,format=qcow2,"
                                        "create=on,backing=base.raw,backing-format=raw,"
                                        "cluster-size=16k --paused", img);
    qtest_daemon_quit(d);
    g_autoptr(JsonNode) info = qt_info(img);
    g_assert_cmpstr(qtest_json_str(info, "format"), ==, "qcow2");
    g_assert_cmpint(qtest_json_int(info, "virtual-size"), ==, 8 * MIB);
    g_assert_cmpint(qtest_json_int(info, "cluster-size"), ==, 16384);
    g_assert_cmpstr(qtest_json_str(info, "backing-filename"), ==, "base.raw");
    g_assert_cmpstr(qtest_json_str(info, "full-backing-filename"), ==, base);
    g_assert_cmpstr(qtest_json_str(info, "backing-filename-format"), ==, "raw");
    g_assert_cmpint(qt_check(img), ==, 0);
    g_assert_true(qt_compare(img, "qcow2", base, "raw"));

    /* Again: the image is there now, so create=on refuses to touch it. */
    g_autofree char *drive = g_strdup_printf("id=disk0,file=%s,format=qcow2,create=on,"
                                             "backing=base.raw", img);
    g_autofree char *out = NULL;
    g_assert_cmpint(run_drive(drive, &out), ==, 1);
    assert_contains(out, "drop create=on");
    g_assert_cmpint(qt_check(img), ==, 0);
}

/* ---- query-block ---- */

/* OURS (a query-block ImageInfo) against THEIRS (one element of qemu-img
 * info --backing-chain), member by member. */
static void assert_image_matches(JsonNode *ours, JsonNode *theirs)
{
    static const char *const strings[] = {
        "filename", "format", "backing-filename", "full-backing-filename",
    };
    static const char *const ints[] = { "virtual-size", "actual-size", "cluster-size" };

    for (size_t i = 0; i < G_N_ELEMENTS(strings); i++) {
        JsonNode *want = qtest_json_get(theirs, strings[i]);
        g_test_message("%s: %s", strings[i], want ? json_node_get_string(want) : "(none)");
        g_assert_true(!want == !qtest_json_get(ours, strings[i]));
        if (want) {
            g_assert_cmpstr(qtest_json_str(ours, strings[i]), ==, json_node_get_string(want));
        }
    }
    for (size_t i = 0; i < G_N_ELEMENTS(ints); i++) {
        JsonNode *want = qtest_json_get(theirs, ints[i]);
        g_assert_true(!want == !qtest_json_get(ours, ints[i]));
        if (want) {
            g_assert_cmpint(qtest_json_int(ours, ints[i]), ==, json_node_get_int(want));
        }
    }
}

/* base.raw <- mid.qcow2 (4 KiB clusters) <- top.qcow2, made by qemu-img
 * with backing names relative to their directory; returns top's path. */
static char *make_chain(void)
{
    g_autofree char *mid = qtest_path("mid.qcow2");
    char *top = qtest_path("top.qcow2");

    make_bases(16 * MIB);
    g_free(qt_run("qemu-img create -q -f qcow2 -o cluster_size=4k -b base.raw -F raw %s",
                  mid));
    g_free(qt_run("qemu-io -f qcow2 -c 'write -P 0x22 1M 64k' %s", mid));
    g_free(qt_run("qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 %s", top));
    g_free(qt_run("qemu-io -f qcow2 -c 'write -P 0x33 2M 1M' -c 'write -z 0 64k' %s", top));
    return top;
}

/* Each drive as QEMU's query-block shows it: a 3-deep chain with
 * backing_file, backing_file_depth and the image chain nested in
 * backing-image, matching qemu-img info layer by layer; a raw drive has
 * none of these (and keeps the members it always had). */
static void test_query_block(void)
{
    g_autofree char *top = make_chain();
    g_autofree char *raw = qtest_path("base.raw");
    QTestDaemon *d = qtest_daemon_start("qb", "--drive id=disk0,file=%s,format=qcow2 "
                                        "--drive id=plain,file=%s,read-only=on --paused",
                                        top, raw);
    g_autoptr(JsonNode) list = qtest_qmp_ok(d, "{\"execute\": \"query-block\"}");
    g_autofree char *out = qt_run("qemu-img info --output=json --backing-chain %s", top);
    g_autoptr(JsonNode) chain = json_from_string(out, NULL);
    JsonArray *layers = json_node_get_array(chain);
    JsonNode *d0 = json_array_get_element(json_node_get_array(list), 0);
    JsonNode *image = qtest_json_get(d0, "inserted.image");

    g_assert_cmpuint(json_array_get_length(layers), ==, 3);
    g_assert_cmpstr(qtest_json_str(d0, "device"), ==, "disk0");
    g_assert_cmpstr(qtest_json_str(d0, "inserted.drv"), ==, "qcow2");
    g_assert_cmpstr(qtest_json_str(d0, "inserted.file"), ==, top);
    g_assert_cmpstr(qtest_json_str(d0, "inserted.backing_file"), ==, "mid.qcow2");
    g_assert_cmpint(qtest_json_int(d0, "inserted.backing_file_depth"), ==, 2);
    for (guint i = 0; i < 3; i++) {
        g_assert_nonnull(image);
        assert_image_matches(image, json_array_get_element(layers, i));
        image = qtest_json_get(image, "backing-image");
    }
    g_assert_null(image);

    JsonNode *plain = json_array_get_element(json_node_get_array(list), 1);
    g_assert_cmpstr(qtest_json_str(plain, "inserted.drv"), ==, "raw");
    g_assert_null(qtest_json_get(plain, "inserted.backing_file"));
    g_assert_cmpint(qtest_json_int(plain, "inserted.backing_file_depth"), ==, 0);
    g_assert_null(qtest_json_get(plain, "inserted.image.backing-image"));
    g_assert_null(qtest_json_get(plain, "inserted.image.cluster-size"));
    g_assert_true(qtest_json_bool(plain, "inserted.ro"));
    g_assert_false(qtest_json_bool(plain, "locked"));
    g_assert_cmpstr(qtest_json_str(plain, "inserted.detect_zeroes"), ==, "off");
    qtest_daemon_quit(d);
    g_assert_cmpint(qt_check(top), ==, 0);
}

/* backing= replaces the chain the header names, and query-block says so;
 * format=auto finds qcow2 (and raw below it). */
static void test_query_block_override(void)
{
    g_autofree char *top = make_chain();
    QTestDaemon *d = qtest_daemon_start("qbo", "--drive id=disk0,file=%s,format=auto,"
                                        "backing=base.raw,backing-format=raw --paused", top);
    g_autoptr(JsonNode) list = qtest_qmp_ok(d, "{\"execute\": \"query-block\"}");
    JsonNode *d0 = json_array_get_element(json_node_get_array(list), 0);

    g_assert_cmpstr(qtest_json_str(d0, "inserted.drv"), ==, "qcow2");
    g_assert_cmpstr(qtest_json_str(d0, "inserted.backing_file"), ==, "base.raw");
    g_assert_cmpint(qtest_json_int(d0, "inserted.backing_file_depth"), ==, 1);
    g_assert_cmpstr(qtest_json_str(d0, "inserted.image.backing-image.format"), ==, "raw");
    qtest_daemon_quit(d);
}

/* ---- format=auto: the probing-safety rule ---- */

/* A probed raw image refuses a guest write that would give it a qcow2
 * header (which could name any host file as its backing); other writes,
 * sector 0 included, go through.  Seen by qemu-io over NBD. */
static void test_probe_safety(void)
{
    g_autofree char *raw = qtest_path("probed.raw");
    g_autofree char *hdr = qtest_path("hdr.qcow2");
    g_autofree char *sock = qtest_path("probe.nbd");
    g_autofree char *uri = g_strdup_printf("nbd+unix:///disk0?socket=%s", sock);
    g_autofree char *out = NULL;

    unlink(hdr);
    qtest_disk_create(raw, 4 * MIB);
    g_free(qt_run("qemu-img create -q -f qcow2 %s 1M", hdr));
    QTestDaemon *d = qtest_daemon_start("probe", "--drive id=disk0,file=%s,format=auto "
                                        "--nbd unix:%s", raw, sock);
    qtest_wait_runstate(d, "running", 10000);
    g_assert_cmpint(qt_run_status(&out, "qemu-io -f raw -c 'write -s %s 0 512' %s", hdr, uri),
                    !=, 0);
    g_free(qt_run("qemu-io -f raw -c 'write -P 0x51 0 512' -c 'write -s %s 4096 512' %s",
                  hdr, uri));
    qtest_daemon_quit(d);
    g_free(qt_run("qemu-io -f raw -c 'read -P 0x51 0 512' %s", raw));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/qcow2-daemon/drive/errors", test_drive_errors);
    g_test_add_func("/qcow2-daemon/drive/not-qcow2", test_drive_not_qcow2);
    g_test_add_func("/qcow2-daemon/drive/create", test_drive_create);
    g_test_add_func("/qcow2-daemon/query-block/chain", test_query_block);
    g_test_add_func("/qcow2-daemon/query-block/override", test_query_block_override);
    g_test_add_func("/qcow2-daemon/probe-safety", test_probe_safety);
    return g_test_run();
}
