/* qcow2 drives behind blkmigd's NBD export, with qemu-img as the oracle
 * (issue 10): backing chains made by qemu-img and written by qemu-io (4
 * KiB, 64 KiB and 2 MiB clusters, compressed clusters) read identically
 * over the export; block status agrees with `qemu-img map` of the image,
 * as nbdinfo --map, nbdinfo --map=qemu:allocation-depth and qemu-img map
 * over NBD see it; the qemu:allocation-depth context is negotiated as
 * proto.md says; and an image blkmigd creates over a base, written by
 * its built-in guest and by qemu-io at once, passes qemu-img check and
 * reads back what was written. */
#include <json-glib/json-glib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/qemu-tools.h"
#include "../qtest/libqtest.h"
#include "interop.h"
#include "nbd-raw.h"

#define MiB (UINT64_C(1) << 20)
#define DISK_SIZE (64 * MiB)

/* ---- a daemon serving one image ---- */

typedef struct Served {
    QTestDaemon *d;
    char *sock;
    char *uri;          /* nbd+unix:///disk0?socket=... */
} Served;

/* blkmigd serving DRIVE_OPTS (after "id=disk0,") as export disk0, plus
 * EXTRA arguments; returns once the guest runs. */
static void serve(Served *s, const char *name, const char *drive_opts, const char *extra)
{
    g_autofree char *sock = g_strdup_printf("%s.nbd", name);

    s->sock = qtest_path(sock);
    s->uri = interop_nbd_uri(s->sock, "disk0");
    s->d = qtest_daemon_start(name, "--drive id=disk0,%s --nbd unix:%s %s", drive_opts,
                              s->sock, extra ? extra : "");
    qtest_wait_runstate(s->d, "running", 10000);
}

static void serve_stop(Served *s)
{
    qtest_daemon_quit(s->d);
    g_free(s->sock);
    g_free(s->uri);
}

/* ---- runs of values over the disk, for comparing maps ---- */

typedef struct ValueRun {
    uint64_t off, len;
    uint32_t value;
} ValueRun;

static GArray *runs_new(void)
{
    return g_array_new(FALSE, FALSE, sizeof(ValueRun));
}

/* Append, merged with the last run when it has the same value. */
static void runs_add(GArray *runs, uint64_t off, uint64_t len, uint32_t value)
{
    ValueRun *last = runs->len ? &g_array_index(runs, ValueRun, runs->len - 1) : NULL;
    ValueRun r = { off, len, value };

    g_assert_true(last ? last->off + last->len == off : off == 0);
    if (last && last->value == value) {
        last->len += len;
    } else if (len) {
        g_array_append_val(runs, r);
    }
}

static char *runs_str(GArray *runs)
{
    GString *s = g_string_new(NULL);

    for (guint i = 0; i < runs->len; i++) {
        ValueRun *r = &g_array_index(runs, ValueRun, i);
        g_string_append_printf(s, "  %10" G_GUINT64_FORMAT " +%10" G_GUINT64_FORMAT " %u\n",
                               r->off, r->len, r->value);
    }
    return g_string_free(s, FALSE);
}

static void assert_runs_equal(GArray *want, GArray *got, const char *what)
{
    bool same = want->len == got->len;

    for (guint i = 0; same && i < want->len; i++) {
        ValueRun *a = &g_array_index(want, ValueRun, i), *b = &g_array_index(got, ValueRun, i);
        same = a->off == b->off && a->len == b->len && a->value == b->value;
    }

    if (!same) {
        g_autofree char *a = runs_str(want), *b = runs_str(got);
        g_error("%s differs from qemu-img map of the image\nexpected:\n%sgot:\n%s", what, a, b);
    }
}

/* What a `qemu-img map --output=json` entry says, in one context's terms. */
typedef enum MapView {
    VIEW_ALLOCATION,    /* base:allocation: 0 data, 3 hole + zero */
    VIEW_DEPTH,         /* qemu:allocation-depth: 0 absent, else depth + 1 */
    /* A context's value as QEMU's NBD client reports it when told to read
     * that context instead of base:allocation (x-dirty-bitmap=): bit 0
     * shows as "not data", bit 1 as "zero".  QEMU's own tests read
     * allocation depths (up to 3) over NBD this way. */
    VIEW_CONTEXT_BITS,
} MapView;

static uint32_t map_value(JsonObject *e, MapView view)
{
    bool data = json_object_get_boolean_member(e, "data");
    bool zero = json_object_get_boolean_member(e, "zero");
    bool present = json_object_get_boolean_member_with_default(e, "present", true);

    switch (view) {
    case VIEW_ALLOCATION:
        g_assert_true(data || zero);
        return data ? 0 : 3;
    case VIEW_DEPTH:
        return present ? (uint32_t)json_object_get_int_member(e, "depth") + 1 : 0;
    default:
        return (data ? 0 : 1) | (zero ? 2 : 0);
    }
}

/* `qemu-img map --output=json` of TARGET (a file name, or with FORMAT
 * NULL options for --image-opts) as runs of VIEW. */
static GArray *qemu_img_runs(const char *target, const char *format, MapView view)
{
    g_autofree char *out = format ? qt_run("qemu-img map --output=json -f %s %s", format, target)
                                  : qt_run("qemu-img map --output=json --image-opts %s", target);
    g_autoptr(JsonNode) map = json_from_string(out, NULL);
    JsonArray *a = json_node_get_array(map);
    GArray *runs = runs_new();

    for (guint i = 0; i < json_array_get_length(a); i++) {
        JsonObject *e = json_array_get_object_element(a, i);
        runs_add(runs, json_object_get_int_member(e, "start"),
                 json_object_get_int_member(e, "length"), map_value(e, view));
    }
    return runs;
}

/* nbdinfo --map=CONTEXT of URI as runs of the context's values. */
static GArray *nbdinfo_runs(const char *uri, const char *context)
{
    g_autofree char *opt = g_strdup_printf("--map=%s", context);
    g_autofree char *out = NULL;
    GArray *runs = runs_new();

    g_assert_cmpint(interop_run(&out, NULL, "nbdinfo", "--json", opt, uri, NULL), ==, 0);
    g_autoptr(JsonNode) map = json_from_string(out, NULL);
    JsonArray *a = json_node_get_array(map);
    for (guint i = 0; i < json_array_get_length(a); i++) {
        JsonObject *e = json_array_get_object_element(a, i);
        runs_add(runs, json_object_get_int_member(e, "offset"),
                 json_object_get_int_member(e, "length"), json_object_get_int_member(e, "type"));
    }
    return runs;
}

/* Every client's map of the export S agrees with qemu-img map of IMG, a
 * chain at most 3 deep. */
static void assert_maps_agree(Served *s, const char *img)
{
    g_autoptr(GArray) alloc = qemu_img_runs(img, "qcow2", VIEW_ALLOCATION);
    g_autoptr(GArray) depth = qemu_img_runs(img, "qcow2", VIEW_DEPTH);
    g_autofree char *depth_opts = g_strdup_printf("driver=nbd,path=%s,export=disk0,"
                                                  "x-dirty-bitmap=qemu:allocation-depth",
                                                  s->sock);
    g_autoptr(GArray) nbd_alloc = nbdinfo_runs(s->uri, "base:allocation");
    g_autoptr(GArray) nbd_depth = nbdinfo_runs(s->uri, "qemu:allocation-depth");
    g_autoptr(GArray) qemu_alloc = qemu_img_runs(s->uri, "raw", VIEW_ALLOCATION);
    g_autoptr(GArray) qemu_depth = qemu_img_runs(depth_opts, NULL, VIEW_CONTEXT_BITS);

    g_assert_cmpuint(depth->len, >, 3);     /* the image has layers to tell apart */
    assert_runs_equal(alloc, nbd_alloc, "nbdinfo --map");
    assert_runs_equal(depth, nbd_depth, "nbdinfo --map=qemu:allocation-depth");
    assert_runs_equal(alloc, qemu_alloc, "qemu-img map over NBD");
    assert_runs_equal(depth, qemu_depth, "qemu-img map over NBD of qemu:allocation-depth");
}

/* ---- images made by qemu-img ---- */

/* base (FORMAT, clusters of CS bytes for qcow2) and top.qcow2 over it,
 * written by qemu-io: data in both layers, partial clusters, an unaligned
 * run, zero clusters over data and over nothing, a discard, a compressed
 * cluster.  Returns top's path. */
static char *make_chain(uint64_t cs, const char *format)
{
    g_autofree char *base = qtest_path(g_str_equal(format, "raw") ? "base.raw" : "base.qcow2");
    char *top = qtest_path("top.qcow2");

    unlink(base);
    unlink(top);
    if (g_str_equal(format, "raw")) {
        qtest_disk_create(base, DISK_SIZE);
    } else {
        g_free(qt_run("qemu-img create -q -f qcow2 -o cluster_size=%" G_GUINT64_FORMAT
                      " %s %" G_GUINT64_FORMAT, cs, base, DISK_SIZE));
    }
    g_free(qt_run("qemu-io -f %s -c 'write -P 0x11 0 3M' -c 'write -P 0x12 5M 100k' "
                  "-c 'write -P 0x13 9437696 7k' -c 'write -P 0x14 20M 2M' "
                  "-c 'write -z 21M 64k' %s", format, base));
    g_free(qt_run("qemu-img create -q -f qcow2 -o cluster_size=%" G_GUINT64_FORMAT
                  " -b %s -F %s %s", cs, base, format, top));
    g_free(qt_run("qemu-io -f qcow2 -c 'write -P 0x21 1M 64k' -c 'write -P 0x22 2101248 8k' "
                  "-c 'write -z 5M 64k' -c 'write -P 0x23 12M 1M' -c 'discard 12800k 256k' "
                  "-c 'write -z -u 14M 128k' -c 'write -P 0x24 30M 4k' "
                  "-c 'write -c -P 0x25 40M %" G_GUINT64_FORMAT "' %s", cs, top));
    return top;
}

/* The export of TOP reads as qemu reads the chain, and maps as qemu maps
 * it; blkmigd leaves the image clean. */
static void check_chain(uint64_t cs, const char *base_format)
{
    g_autofree char *top = NULL;
    g_autofree char *drive = NULL;
    Served s;

    if (!interop_need("qemu-img") || !interop_need("nbdinfo")) {
        return;
    }
    top = make_chain(cs, base_format);
    drive = g_strdup_printf("file=%s,format=qcow2", top);
    serve(&s, "chain", drive, NULL);
    g_assert_true(qt_compare(s.uri, "raw", top, "qcow2"));
    assert_maps_agree(&s, top);
    serve_stop(&s);
    g_assert_cmpint(qt_check(top), ==, 0);
}

static void test_chain_4k(void)
{
    check_chain(4096, "raw");
}

static void test_chain_64k(void)
{
    check_chain(64 * 1024, "qcow2");
}

static void test_chain_2m(void)
{
    check_chain(2 * MiB, "qcow2");
}

/* An image of compressed clusters from `qemu-img convert -c`. */
static void test_compressed(void)
{
    g_autofree char *src = qtest_path("plain.raw");
    g_autofree char *img = qtest_path("compressed.qcow2");
    g_autofree char *drive = NULL;
    Served s;

    if (!interop_need("qemu-img") || !interop_need("nbdinfo")) {
        return;
    }
    unlink(img);
    qtest_disk_create(src, DISK_SIZE);
    g_free(qt_run("qemu-io -f raw -c 'write -P 0x31 0 5M' -c 'write -P 0x32 8M 333k' "
                  "-c 'write -P 0x33 33M 1M' %s", src));
    qtest_disk_scatter(src, 7, 8, 64 * 1024);      /* and some that does not compress */
    g_free(qt_run("qemu-img convert -c -f raw -O qcow2 %s %s", src, img));
    drive = g_strdup_printf("file=%s,format=qcow2,read-only=on", img);
    serve(&s, "comp", drive, NULL);
    g_assert_true(qt_compare(s.uri, "raw", src, "raw"));
    assert_maps_agree(&s, img);
    serve_stop(&s);
}

/* ---- metadata contexts on the wire ---- */

/* An option-phase connection with structured replies negotiated. */
static int greet_structured(const char *sock)
{
    int fd = raw_greet(sock, 3);

    raw_send_option(fd, RAW_OPT_STRUCTURED_REPLY, NULL, 0);
    g_assert_cmphex(raw_recv_option_reply(fd, RAW_OPT_STRUCTURED_REPLY, NULL), ==,
                    RAW_REP_ACK);
    return fd;
}

/* OPT with QUERIES: the names replied, joined by spaces; ids in *IDS. */
static char *meta_names(int fd, uint32_t opt, const char *const *queries, GArray *ids)
{
    g_autoptr(GPtrArray) names = g_ptr_array_new_with_free_func(g_free);

    g_assert_cmphex(raw_meta_option(fd, opt, "disk0", queries, names, ids), ==, RAW_REP_ACK);
    g_ptr_array_add(names, NULL);
    return g_strjoinv(" ", (char **)names->pdata);
}

/* LIST offers qemu:allocation-depth beside base:allocation (also for the
 * namespace "qemu:"); SET grants each context its own id, in the order
 * the server lists them; a namespace alone selects nothing in SET. */
static void check_negotiation(const char *sock)
{
    static const char *const all[] = { NULL };
    static const char *const qemu_ns[] = { "qemu:", NULL };
    static const char *const bitmaps[] = { "qemu:dirty-bitmap:", NULL };
    static const char *const both[] = { "qemu:allocation-depth", "base:allocation", NULL };
    g_autoptr(GArray) ids = g_array_new(FALSE, FALSE, sizeof(uint32_t));
    int fd = greet_structured(sock);
    char *n;

    n = meta_names(fd, RAW_OPT_LIST_META_CONTEXT, all, NULL);
    g_assert_cmpstr(n, ==, "base:allocation qemu:allocation-depth");
    g_free(n);
    n = meta_names(fd, RAW_OPT_LIST_META_CONTEXT, qemu_ns, NULL);
    g_assert_cmpstr(n, ==, "qemu:allocation-depth");
    g_free(n);
    n = meta_names(fd, RAW_OPT_LIST_META_CONTEXT, bitmaps, NULL);
    g_assert_cmpstr(n, ==, "");
    g_free(n);
    n = meta_names(fd, RAW_OPT_SET_META_CONTEXT, qemu_ns, NULL);
    g_assert_cmpstr(n, ==, "");
    g_free(n);
    n = meta_names(fd, RAW_OPT_SET_META_CONTEXT, both, ids);
    g_assert_cmpstr(n, ==, "base:allocation qemu:allocation-depth");
    g_free(n);
    g_assert_cmpuint(ids->len, ==, 2);
    g_assert_cmpuint(g_array_index(ids, uint32_t, 0), !=, g_array_index(ids, uint32_t, 1));
    raw_send_option(fd, RAW_OPT_ABORT, NULL, 0);
    close(fd);
}

/* BLOCK_STATUS of the whole disk on C, asserting chunks for the contexts
 * with ids IDS (in order); each chunk's extents as runs in RUNS[i]. */
static void status_chunks(RawConn *c, uint16_t flags, uint64_t off, uint32_t len,
                          const uint32_t *ids, unsigned n, GArray **runs)
{
    g_autoptr(GArray) ext = NULL;
    uint64_t cookie = raw_request(c, flags, RAW_CMD_BLOCK_STATUS, off, len, NULL, 0);
    guint k = 0;

    g_assert_cmpuint(raw_reply(c, cookie, RAW_CMD_BLOCK_STATUS, off, len, NULL, &ext), ==, 0);
    g_assert_cmpuint(c->status_chunks, ==, n);
    for (unsigned i = 0; i < n; i++) {
        uint64_t pos = off;

        g_assert_cmpuint(c->status_ids[i], ==, ids[i]);
        runs[i] = runs_new();
        for (uint32_t e = 0; e < c->status_extents[i]; e++, k += 2) {
            uint32_t elen = g_array_index(ext, uint32_t, k);
            runs_add(runs[i], pos - off, elen, g_array_index(ext, uint32_t, k + 1));
            pos += elen;
        }
        g_assert_cmpuint(pos, <=, off + len);
    }
}

/* Block status with both contexts selected: one chunk each (base first),
 * agreeing with qemu-img map; REQ_ONE gives one extent per chunk; with
 * only qemu:allocation-depth selected, one chunk. */
static void check_status(const char *sock, const char *img)
{
    static const char *const both[] = { "base:allocation", "qemu:allocation-depth", NULL };
    static const char *const depth_only[] = { "qemu:allocation-depth", NULL };
    static const uint32_t ids[] = { 1, 2 };
    g_autoptr(GArray) alloc = qemu_img_runs(img, "qcow2", VIEW_ALLOCATION);
    g_autoptr(GArray) depth = qemu_img_runs(img, "qcow2", VIEW_DEPTH);
    RawConn *c = raw_open_contexts(sock, "disk0", both);
    GArray *runs[2];

    status_chunks(c, 0, 0, DISK_SIZE, ids, 2, runs);
    assert_runs_equal(alloc, runs[0], "base:allocation chunk");
    assert_runs_equal(depth, runs[1], "qemu:allocation-depth chunk");
    g_array_unref(runs[0]);
    g_array_unref(runs[1]);
    status_chunks(c, RAW_FLAG_REQ_ONE, 4 * MiB, 4 * MiB, ids, 2, runs);
    g_assert_cmpuint(runs[0]->len, ==, 1);
    g_assert_cmpuint(runs[1]->len, ==, 1);
    g_array_unref(runs[0]);
    g_array_unref(runs[1]);
    raw_close(c);

    c = raw_open_contexts(sock, "disk0", depth_only);
    status_chunks(c, 0, 0, DISK_SIZE, ids + 1, 1, runs);
    assert_runs_equal(depth, runs[0], "qemu:allocation-depth alone");
    g_array_unref(runs[0]);
    raw_close(c);
}

/* A structured read across layers sends what reads as zero (zero
 * clusters, unallocated ranges) as holes, and the same bytes as a read
 * with simple replies. */
static void check_sparse_read(const char *sock)
{
    const uint32_t len = 16 * MiB;
    RawConn *sparse = raw_open(sock, "disk0", true, false);
    RawConn *plain = raw_open(sock, "disk0", false, false);
    g_autofree uint8_t *a = g_malloc(len), *b = g_malloc(len);

    g_assert_cmpuint(raw_cmd(sparse, 0, RAW_CMD_READ, 0, len, NULL, a), ==, 0);
    g_assert_cmpuint(raw_cmd(plain, 0, RAW_CMD_READ, 0, len, NULL, b), ==, 0);
    g_assert_cmpuint(sparse->hole_chunks, >=, 4);
    g_assert_true(memcmp(a, b, len) == 0);
    raw_close(sparse);
    raw_close(plain);
}

/* Metadata contexts on the wire, and sparse reads of a chain. */
static void test_contexts(void)
{
    g_autofree char *top = NULL;
    g_autofree char *drive = NULL;
    Served s;

    if (!interop_need("qemu-img")) {
        return;
    }
    top = make_chain(64 * 1024, "qcow2");
    drive = g_strdup_printf("file=%s,format=qcow2", top);
    serve(&s, "ctx", drive, NULL);
    check_negotiation(s.sock);
    check_status(s.sock, top);
    check_sparse_read(s.sock);
    serve_stop(&s);
}

/* ---- an image blkmigd creates, written by two guests at once ---- */

/* qemu-io commands, run on URI (FORMAT), that must all succeed. */
static void qemu_io(const char *format, const char *target, const char *cmds)
{
    g_free(qt_run("qemu-io -f %s %s %s", format, cmds, target));
}

/* blkmigd creates top.qcow2 over a qemu-img base (create=on, backing=,
 * 16 KiB clusters); its built-in guest writes sequentially from the start
 * (4 KiB, a quarter zeroes) while qemu-io writes above 32 MiB over NBD.
 * qemu-io reads its data back over NBD and, after blkmigd quit, from the
 * file; qemu-img check finds it clean; the part the built-in guest wrote
 * reads the same through blkmigd as through qemu. */
static void test_create_and_write(void)
{
    g_autofree char *base = qtest_path("wbase.qcow2");
    g_autofree char *top = qtest_path("wtop.qcow2");
    g_autofree char *drive = NULL;
    const char *writes = "-c 'write -P 0x41 40M 64k' -c 'write -P 0x42 41M 4k' "
                         "-c 'write -z 43M 128k' -c 'write -P 0x43 48M 3M' "
                         "-c 'write -z -u 52M 16k' -c 'discard 56M 1M'";
    const char *reads = "-c 'read -P 0x41 40M 64k' -c 'read -P 0x11 42995712 60k' "
                        "-c 'read -P 0x42 41M 4k' -c 'read -P 0 43M 128k' "
                        "-c 'read -P 0x43 48M 3M' -c 'read -P 0 52M 16k' "
                        "-c 'read -P 0x11 54542336 1M' -c 'read -P 0x11 60M 4M'";
    Served s;

    if (!interop_need("qemu-io")) {
        return;
    }
    unlink(base);
    unlink(top);
    g_free(qt_run("qemu-img create -q -f qcow2 %s 64M", base));
    qemu_io("qcow2", base, "-c 'write -P 0x11 0 64M'");
    drive = g_strdup_printf("file=%s,format=qcow2,create=on,backing=wbase.qcow2,"
                            "cluster-size=16k", top);
    serve(&s, "write", drive, "--workload drive=disk0,pattern=seqwrite,bs=4k,rate=4,"
          "zero-frac=0.25");
    qemu_io("raw", s.uri, writes);
    qemu_io("raw", s.uri, reads);
    g_usleep(500 * 1000);           /* the built-in guest keeps writing */
    serve_stop(&s);

    g_assert_cmpint(qt_check(top), ==, 0);
    qemu_io("qcow2", top, reads);
    g_autoptr(JsonNode) info = qt_info(top);
    g_assert_cmpint(qtest_json_int(info, "cluster-size"), ==, 16384);
    g_assert_cmpstr(qtest_json_str(info, "backing-filename"), ==, "wbase.qcow2");
    g_free(drive);
    drive = g_strdup_printf("file=%s,format=qcow2,read-only=on", top);
    serve(&s, "reread", drive, NULL);
    g_assert_true(qt_compare(s.uri, "raw", top, "qcow2"));
    /* The built-in guest wrote from the start on: the top layer has it. */
    g_autoptr(GArray) depth = nbdinfo_runs(s.uri, "qemu:allocation-depth");
    g_assert_cmpuint(g_array_index(depth, ValueRun, 0).value, ==, 1);
    g_assert_cmpuint(g_array_index(depth, ValueRun, 0).len, >=, 64 * 1024);
    serve_stop(&s);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/qcow2-nbd/chain/4k-raw-base", test_chain_4k);
    g_test_add_func("/qcow2-nbd/chain/64k", test_chain_64k);
    g_test_add_func("/qcow2-nbd/chain/2m", test_chain_2m);
    g_test_add_func("/qcow2-nbd/compressed", test_compressed);
    g_test_add_func("/qcow2-nbd/contexts", test_contexts);
    g_test_add_func("/qcow2-nbd/create-and-write", test_create_and_write);
    return g_test_run();
}
