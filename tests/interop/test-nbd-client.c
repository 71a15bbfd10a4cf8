/* The block layer's NBD client (block/nbd*.c) against real servers:
 * qemu-nbd (raw and qcow2 exports, read-only) and nbdkit (memory,
 * sparse-random, data).  What it reads, writes, zeroes and trims is what
 * the served file, qemu-io and nbdcopy show; its block status is
 * nbdinfo --map's; a qcow2 overlay on an NBD backing reads through and
 * writes locally; blkmigd serves a drive that is itself an NBD client.
 * Failures and concurrency: test-nbd-client-faults.c. */
#include <errno.h>
#include <json-glib/json-glib.h>
#include <string.h>
#include <unistd.h>

#include "../lib/files.h"
#include "../lib/qemu-tools.h"
#include "../qtest/libqtest.h"
#include "interop.h"
#include "nbd-servers.h"

#define MiB (1024 * 1024)

/* ---- Helpers ---- */

static bool need_tools(void)
{
    return interop_need("qemu-nbd") && interop_need("nbdkit") && interop_need("nbdinfo") &&
           interop_need("nbdcopy") && interop_need("qemu-io") && interop_need("qemu-img");
}

static BlockDriverState *open_ok(const char *id, const char *uri, const char *format)
{
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = ns_open(id, uri, format, 0, &err);

    g_assert_no_error(err);
    return bs;
}

/* A byte pattern no offset shift reproduces. */
static void pattern(uint8_t *buf, size_t len, unsigned seed)
{
    for (size_t i = 0; i < len; i++) {
        buf[i] = (uint8_t)(seed * 97 + i * 7 + (i >> 12));
    }
}

static void write_pattern(BlockDriverState *bs, uint8_t *model, uint64_t off, size_t len,
                          unsigned seed, int flags)
{
    g_autofree uint8_t *buf = g_malloc(len);

    pattern(buf, len, seed);
    g_assert_cmpint(bdrv_pwrite(bs, off, buf, len, flags), ==, 0);
    memcpy(model + off, buf, len);
}

static void zero(BlockDriverState *bs, uint8_t *model, uint64_t off, uint64_t len, int flags)
{
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, off, len, flags), ==, 0);
    memset(model + off, 0, len);
}

static void assert_drive_is(BlockDriverState *bs, const uint8_t *model, const char *what)
{
    g_autofree uint8_t *got = ns_read_all(bs);
    ns_assert_same(model, got, (size_t)bdrv_getlength(bs), what);
}

static void assert_file_is(const char *path, const uint8_t *model, size_t len)
{
    gsize flen;
    g_autofree uint8_t *data = tf_read_file(path, &flen);

    g_assert_cmpuint(flen, ==, len);
    ns_assert_same(model, data, len, path);
}

/* Does PATH hold no data in [off, off+len)? */
static bool is_hole(const char *path, uint64_t off, uint64_t len)
{
    g_autoptr(GArray) ext = interop_file_extents(path);

    for (guint i = 0; i < ext->len; i++) {
        InteropExtent *e = &g_array_index(ext, InteropExtent, i);
        if (e->data && e->offset < off + len && off < e->offset + e->length) {
            return false;
        }
    }
    return true;
}

/* The drive's guest view as data/zero runs (the block layer's walk). */
static GArray *drive_extents(BlockDriverState *bs)
{
    GArray *ext = g_array_new(FALSE, FALSE, sizeof(InteropExtent));
    BdrvWalk w;
    BdrvExtent e;
    int ret;

    bdrv_walk_init(&w, bs, 0, (uint64_t)bdrv_getlength(bs), BDRV_WALK_GUEST, 0);
    while ((ret = bdrv_walk_next(&w, &e)) > 0) {
        interop_extent_add(ext, e.off, e.len, e.status == BDRV_STATUS_DATA);
    }
    g_assert_cmpint(ret, ==, 0);
    return ext;
}

/* nbdinfo --map of URI in the same terms: a run is zero when the server
 * sets the zero bit (type & 2). */
static GArray *nbdinfo_extents(const char *uri)
{
    GArray *ext = g_array_new(FALSE, FALSE, sizeof(InteropExtent));
    g_autofree char *out = NULL;
    g_autoptr(GError) err = NULL;

    g_assert_cmpint(interop_run(&out, NULL, "nbdinfo", "--map", "--json", uri, NULL), ==, 0);
    g_autoptr(JsonNode) root = json_from_string(out, &err);
    g_assert_no_error(err);
    JsonArray *arr = json_node_get_array(root);
    for (guint i = 0; i < json_array_get_length(arr); i++) {
        JsonObject *o = json_array_get_object_element(arr, i);
        interop_extent_add(ext, (uint64_t)json_object_get_int_member(o, "offset"),
                           (uint64_t)json_object_get_int_member(o, "length"),
                           !(json_object_get_int_member(o, "type") & 2));
    }
    return ext;
}

/* The whole export as nbdcopy reads it. */
static uint8_t *nbdcopy_all(const char *uri, const char *name, size_t len)
{
    g_autofree char *path = qtest_path(name);
    gsize flen;

    g_assert_cmpint(interop_run(NULL, NULL, "nbdcopy", uri, path, NULL), ==, 0);
    uint8_t *data = tf_read_file(path, &flen);
    g_assert_cmpuint(flen, ==, len);
    unlink(path);
    return data;
}

static void qemu_io_reads(const char *uri, const char *c1, const char *c2)
{
    g_assert_cmpint(interop_run(NULL, NULL, "qemu-io", "-r", "-f", "raw", "-c", c1, "-c", c2,
                                uri, NULL), ==, 0);
}

/* ---- qemu-nbd, raw ---- */

/* Reads, writes (unaligned, FUA, larger than one NBD request), write-
 * zeroes with and without may-unmap, fast zero, trim and flush land in
 * the served file exactly; may-unmap and trim punch holes there (qemu-nbd
 * --discard=unmap), a plain write-zeroes leaves the range allocated. */
static void test_qemu_nbd_raw_io(void)
{
    const uint64_t size = 48 * MiB;
    g_autofree char *path = qtest_path("rawio.img");
    g_autofree uint8_t *model = g_malloc0(size);

    if (!need_tools()) {
        return;
    }
    qtest_disk_create(path, size);
    qtest_disk_set(path, 0, 2 * MiB, 0x5a);
    memset(model, 0x5a, 2 * MiB);
    g_autofree char *args = g_strdup_printf("-f raw --discard=unmap %s", path);
    NbdServer *s = ns_qemu_nbd("rawio", args);
    BlockDriverState *bs = open_ok("d0", s->uri, "raw");

    g_assert_cmpint(bdrv_getlength(bs), ==, (int64_t)size);
    g_assert_false(bdrv_is_read_only(bs));
    write_pattern(bs, model, MiB + 512, MiB + 100, 1, 0);
    write_pattern(bs, model, 5 * MiB, 4096, 2, BDRV_REQ_FUA);
    write_pattern(bs, model, 10 * MiB, 36 * MiB, 3, 0);        /* two NBD writes */
    zero(bs, model, 12 * MiB, 4 * MiB, BDRV_REQ_MAY_UNMAP);
    zero(bs, model, 20 * MiB, 2 * MiB, 0);
    int ret = bdrv_pwrite_zeroes(bs, 24 * MiB, MiB, BDRV_REQ_NO_FALLBACK | BDRV_REQ_MAY_UNMAP);
    g_assert_true(ret == 0 || ret == -ENOTSUP);
    if (ret == 0) {
        memset(model + 24 * MiB, 0, MiB);
    }
    g_assert_cmpint(bdrv_discard(bs, 28 * MiB, 2 * MiB), ==, 0);
    memset(model + 28 * MiB, 0, 2 * MiB);
    g_assert_cmpint(bdrv_flush(bs), ==, 0);
    assert_drive_is(bs, model, "drive after the writes");
    bdrv_close(bs);

    assert_file_is(path, model, size);
    g_assert_true(is_hole(path, 12 * MiB, 4 * MiB));
    g_assert_false(is_hole(path, 20 * MiB, 2 * MiB));
    g_assert_true(is_hole(path, 28 * MiB, 2 * MiB));
    ns_free(s);
}

/* The block status of a sparse raw file through qemu-nbd is what
 * nbdinfo --map sees of the same export. */
static void test_qemu_nbd_status(void)
{
    g_autofree char *path = qtest_path("status.img");

    if (!need_tools()) {
        return;
    }
    qtest_disk_create(path, 64 * MiB);
    qtest_disk_scatter(path, 5, 20, 64 * 1024);
    g_autofree char *args = g_strdup_printf("-r -f raw %s", path);
    NbdServer *s = ns_qemu_nbd("status", args);
    BlockDriverState *bs = open_ok("d0", s->uri, "raw");
    g_autoptr(GArray) ours = drive_extents(bs);

    bdrv_close(bs);                         /* qemu-nbd takes one client */
    g_autoptr(GArray) theirs = nbdinfo_extents(s->uri);
    interop_assert_extents_equal(theirs, ours, "qemu-nbd block status");
    g_assert_cmpuint(ours->len, >, 2);
    ns_free(s);
}

/* ---- nbdkit ---- */

/* nbdkit memory (multi-conn: four connections): what the drive wrote,
 * zeroed and trimmed is what qemu-io and nbdcopy read over their own
 * connections while the drive stays open. */
static void test_nbdkit_memory(void)
{
    const uint64_t size = 64 * MiB;
    g_autofree uint8_t *model = g_malloc0(size);

    if (!need_tools()) {
        return;
    }
    NbdServer *s = ns_nbdkit("memory", "memory size=64M");
    BlockDriverState *bs = open_ok("d0", s->uri, "raw");

    g_assert_cmpint(bdrv_pwrite_zeroes(bs, 0, size, 0), ==, 0);
    memset(model + MiB, 0xab, 2 * MiB);
    g_assert_cmpint(bdrv_pwrite(bs, MiB, model + MiB, 2 * MiB, 0), ==, 0);
    memset(model + 7 * MiB + 512, 0xcd, 100 * 1024);
    g_assert_cmpint(bdrv_pwrite(bs, 7 * MiB + 512, model + 7 * MiB + 512, 100 * 1024,
                                BDRV_REQ_FUA), ==, 0);
    zero(bs, model, MiB + MiB / 2, MiB / 2, BDRV_REQ_MAY_UNMAP);
    write_pattern(bs, model, 20 * MiB + 3, 40 * MiB, 4, 0);
    zero(bs, model, 30 * MiB, 3 * MiB, 0);
    g_assert_cmpint(bdrv_discard(bs, 40 * MiB, 4 * MiB), ==, 0);
    memset(model + 40 * MiB, 0, 4 * MiB);   /* nbdkit memory trims to zeroes */
    g_assert_cmpint(bdrv_flush(bs), ==, 0);
    assert_drive_is(bs, model, "drive");

    qemu_io_reads(s->uri, "read -P 0xab 1M 512k", "read -P 0 1536k 512k");
    qemu_io_reads(s->uri, "read -P 0xcd 7340544 102400", "read -P 0 30M 3M");
    g_autofree uint8_t *copy = nbdcopy_all(s->uri, "memory.copy", size);
    ns_assert_same(model, copy, size, "nbdcopy of nbdkit memory");
    bdrv_close(bs);
    ns_free(s);
}

/* The command lines nbdkit's log filter wrote for the requests of one
 * connection, "Write ... fua=1" and so on (g_strfreev). */
static char **logged_commands(const char *log)
{
    g_autofree char *text = NULL;
    GPtrArray *cmds = g_ptr_array_new();

    g_assert_true(g_file_get_contents(log, &text, NULL, NULL));
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    for (char **l = lines; *l; l++) {
        const char *c = strstr(*l, " connection=");
        c = c ? strchr(c + 1, ' ') : NULL;
        if (c && (g_str_has_prefix(c + 1, "Write") || g_str_has_prefix(c + 1, "Zero") ||
             g_str_has_prefix(c + 1, "Trim") || g_str_has_prefix(c + 1, "Flush"))) {
            g_ptr_array_add(cmds, g_strdup(c + 1));
        }
    }
    g_ptr_array_add(cmds, NULL);
    return (char **)g_ptr_array_free(cmds, FALSE);
}

static void assert_logged(char **cmds, int i, const char *verb, const char *flags)
{
    g_test_message("command %d: %s", i, cmds[i]);
    g_assert_true(g_str_has_prefix(cmds[i], verb));
    g_autofree char *f = g_strdup(flags);
    for (char *tok = strtok(f, " "); tok; tok = strtok(NULL, " ")) {
        g_assert_nonnull(strstr(cmds[i], tok));
    }
}

/* The request flags reach the server as NBD flags (nbdkit's log filter
 * shows them): FUA, may-unmap (no NO_HOLE), NO_HOLE, fast zero. */
static void test_nbdkit_flags(void)
{
    g_autofree char *log = qtest_path("flags.log");
    uint8_t buf[4096] = { 1 };

    if (!need_tools()) {
        return;
    }
    g_autofree char *args = g_strdup_printf("--filter=log memory 16M logfile=%s", log);
    NbdServer *s = ns_nbdkit("flags", args);
    BlockDriverState *bs = open_ok("d0", s->uri, "raw");
    g_assert_cmpint(bdrv_pwrite(bs, 0, buf, sizeof(buf), BDRV_REQ_FUA), ==, 0);
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, MiB, MiB, BDRV_REQ_MAY_UNMAP), ==, 0);
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, 2 * MiB, MiB, 0), ==, 0);
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, 3 * MiB, MiB, BDRV_REQ_NO_FALLBACK), ==, 0);
    g_assert_cmpint(bdrv_discard(bs, 4 * MiB, MiB), ==, 0);
    g_assert_cmpint(bdrv_flush(bs), ==, 0);
    bdrv_close(bs);
    ns_free(s);

    g_auto(GStrv) cmds = logged_commands(log);
    g_assert_cmpuint(g_strv_length(cmds), ==, 6);
    assert_logged(cmds, 0, "Write", "offset=0x0 count=0x1000 fua=1");
    assert_logged(cmds, 1, "Zero", "offset=0x100000 count=0x100000 trim=1 fua=0 fast=0");
    assert_logged(cmds, 2, "Zero", "offset=0x200000 trim=0 fast=0");
    assert_logged(cmds, 3, "Zero", "offset=0x300000 fast=1");
    assert_logged(cmds, 4, "Trim", "offset=0x400000 count=0x100000");
    assert_logged(cmds, 5, "Flush", "");
}

/* A server without write-zeroes (nbdkit nozero filter) gets zeroes as
 * data, and a fast zero is refused with ENOTSUP before anything is sent. */
static void test_nbdkit_nozero(void)
{
    g_autofree char *log = qtest_path("nozero.log");
    g_autofree uint8_t *model = g_malloc(16 * MiB);

    if (!need_tools()) {
        return;
    }
    g_autofree char *args = g_strdup_printf("--filter=log --filter=nozero memory 16M "
                                            "logfile=%s", log);
    NbdServer *s = ns_nbdkit("nozero", args);
    BlockDriverState *bs = open_ok("d0", s->uri, "raw");
    memset(model, 0x99, 16 * MiB);
    g_assert_cmpint(bdrv_pwrite(bs, 0, model, 16 * MiB, 0), ==, 0);
    zero(bs, model, MiB + 5, 3 * MiB, BDRV_REQ_MAY_UNMAP);
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, 0, MiB, BDRV_REQ_NO_FALLBACK), ==, -ENOTSUP);
    assert_drive_is(bs, model, "zeroes written as data");
    bdrv_close(bs);
    ns_free(s);

    g_auto(GStrv) cmds = logged_commands(log);
    g_assert_cmpuint(g_strv_length(cmds), >=, 2);
    for (char **c = cmds; *c; c++) {
        g_assert_true(g_str_has_prefix(*c, "Write"));
    }
}

/* nbdkit sparse-random: block status is nbdinfo --map's, data is
 * nbdcopy's. */
static void test_nbdkit_sparse_random(void)
{
    const uint64_t size = 64 * MiB;

    if (!need_tools()) {
        return;
    }
    NbdServer *s = ns_nbdkit("sparse", "sparse-random size=64M seed=7 percent=20 runlength=262144");
    BlockDriverState *bs = open_ok("d0", s->uri, "raw");
    g_autoptr(GArray) ours = drive_extents(bs);
    g_autoptr(GArray) theirs = nbdinfo_extents(s->uri);

    interop_assert_extents_equal(theirs, ours, "sparse-random block status");
    g_assert_cmpuint(ours->len, >, 10);
    g_autofree uint8_t *copy = nbdcopy_all(s->uri, "sparse.copy", size);
    assert_drive_is(bs, copy, "sparse-random data");
    bdrv_close(bs);
    ns_free(s);
}

/* nbdkit data served read-only (-r): the drive is read-only although
 * opened read-write, writes fail with EPERM, data and status are the
 * plugin's. */
static void test_nbdkit_data_readonly(void)
{
    const uint64_t size = 4 * MiB;
    g_autofree uint8_t *want = g_malloc0(size);
    uint8_t byte = 0;

    if (!need_tools()) {
        return;
    }
    NbdServer *s = ns_nbdkit("data", "-r data "
                             "'data=1 2 3 @0x10000 0xff*65536 @0x300000 0x55*4096' size=4M");
    BlockDriverState *bs = open_ok("d0", s->uri, "raw");

    want[0] = 1, want[1] = 2, want[2] = 3;
    memset(want + 0x10000, 0xff, 65536);
    memset(want + 0x300000, 0x55, 4096);
    g_assert_true(bdrv_is_read_only(bs));
    g_assert_cmpint(bdrv_pwrite(bs, 0, &byte, 1, 0), ==, -EPERM);
    assert_drive_is(bs, want, "nbdkit data");
    g_autoptr(GArray) ours = drive_extents(bs);
    g_autoptr(GArray) theirs = nbdinfo_extents(s->uri);
    interop_assert_extents_equal(theirs, ours, "nbdkit data block status");
    bdrv_close(bs);
    ns_free(s);
}

/* A hole without the zero bit may read as anything (here: nbdkit pattern
 * data under an extent list saying "hole"), so it is DATA; only the zero
 * bit makes a run ZERO. */
static void test_hole_not_zero(void)
{
    g_autofree char *list = qtest_path("extents.txt");
    static const struct { uint64_t off; BdrvStatus status; } want[] = {
        { 0, BDRV_STATUS_DATA }, { MiB, BDRV_STATUS_ZERO }, { 2 * MiB, BDRV_STATUS_DATA },
        { 3 * MiB, BDRV_STATUS_ZERO },
    };
    uint64_t pnum;
    BdrvStatus st;

    if (!need_tools()) {
        return;
    }
    g_assert_true(g_file_set_contents(list, "0 1M hole\n1M 1M hole,zero\n2M 1M\n3M 1M zero\n",
                                      -1, NULL));
    g_autofree char *args = g_strdup_printf("-r --filter=extentlist pattern 4M "
                                            "extentlist=%s", list);
    NbdServer *s = ns_nbdkit("holes", args);
    BlockDriverState *bs = open_ok("d0", s->uri, "raw");
    for (size_t i = 0; i < G_N_ELEMENTS(want); i++) {
        g_assert_cmpint(bdrv_block_status_ext(bs, want[i].off, MiB, 0, &pnum, &st, NULL), ==, 0);
        g_assert_cmpint(st, ==, want[i].status);
        g_assert_cmpuint(pnum, ==, MiB);
    }
    bdrv_close(bs);
    ns_free(s);
}

/* ---- qcow2 ---- */

static char *make_qcow2(const char *name)
{
    char *path = qtest_path(name);

    g_free(qt_run("qemu-img create -q -f qcow2 %s 16M", path));
    g_free(qt_run("qemu-io -f qcow2 -c 'write -P 0x11 1M 1M' -c 'write -z 3M 1M' "
                  "-c 'write -P 0x22 5M 64k' %s", path));
    return path;
}

/* A qcow2 image behind qemu-nbd -r: as a raw export (qemu-nbd does the
 * qcow2) and as its file bytes (our qcow2 driver over the NBD node); both
 * read what qemu-img convert reads, both are read-only. */
static void test_qemu_nbd_qcow2(void)
{
    if (!need_tools()) {
        return;
    }
    g_autofree char *img = make_qcow2("q.qcow2");
    g_autofree char *conv = qtest_path("q.raw");
    g_free(qt_run("qemu-img convert -f qcow2 -O raw %s %s", img, conv));
    gsize len;
    g_autofree uint8_t *want = tf_read_file(conv, &len);
    uint8_t byte = 0;

    g_autofree char *args = g_strdup_printf("-r -f qcow2 %s", img);
    NbdServer *s = ns_qemu_nbd("qcow2", args);
    BlockDriverState *bs = open_ok("d0", s->uri, "raw");
    g_assert_true(bdrv_is_read_only(bs));
    g_assert_cmpint(bdrv_pwrite(bs, 0, &byte, 1, 0), ==, -EPERM);
    assert_drive_is(bs, want, "qcow2 exported by qemu-nbd");
    bdrv_close(bs);
    ns_free(s);

    g_autofree char *args2 = g_strdup_printf("-r -f raw %s", img);
    s = ns_qemu_nbd("qcow2-file", args2);
    bs = open_ok("d1", s->uri, "qcow2");
    g_assert_true(bdrv_is_read_only(bs));
    assert_drive_is(bs, want, "qcow2 driver over an NBD node");
    bdrv_close(bs);
    ns_free(s);
}

/* qemu-nbd -A offers qemu:allocation-depth: what no layer of the remote
 * chain allocates is UNALLOCATED, a remote zero cluster stays ZERO.
 * Without -A the same range is ZERO. */
static void test_allocation_depth(void)
{
    if (!need_tools()) {
        return;
    }
    g_autofree char *base = make_qcow2("depth-base.qcow2");
    g_autofree char *top = qtest_path("depth-top.qcow2");
    g_free(qt_run("qemu-img create -q -f qcow2 -b %s -F qcow2 %s", base, top));
    g_free(qt_run("qemu-io -f qcow2 -c 'write -z 8M 1M' %s", top));
    g_autofree char *args = g_strdup_printf("-r -A -f qcow2 %s", top);
    static const struct { uint64_t off; BdrvStatus status; } want[] = {
        { 0, BDRV_STATUS_UNALLOCATED }, { MiB, BDRV_STATUS_DATA },
        { 8 * MiB, BDRV_STATUS_ZERO }, { 12 * MiB, BDRV_STATUS_UNALLOCATED },
    };
    uint64_t pnum;
    BdrvStatus st;

    NbdServer *s = ns_qemu_nbd("depth", args);
    BlockDriverState *bs = open_ok("d0", s->uri, "raw");
    for (size_t i = 0; i < G_N_ELEMENTS(want); i++) {
        g_assert_cmpint(bdrv_block_status_ext(bs, want[i].off, MiB, 0, &pnum, &st, NULL), ==, 0);
        g_assert_cmpint(st, ==, want[i].status);
    }
    bdrv_close(bs);
    ns_free(s);

    g_autofree char *args2 = g_strdup_printf("-r -f qcow2 %s", top);
    s = ns_qemu_nbd("nodepth", args2);
    bs = open_ok("d1", s->uri, "raw");
    g_assert_cmpint(bdrv_block_status_ext(bs, 0, MiB, 0, &pnum, &st, NULL), ==, 0);
    g_assert_cmpint(st, ==, BDRV_STATUS_ZERO);
    bdrv_close(bs);
    ns_free(s);
}

/* A qcow2 overlay made by the block layer on a base served by qemu-nbd:
 * reads fall through, writes stay in the overlay, block status walks into
 * the NBD layer, and qemu-img (opening the same backing URI) finds the
 * overlay equal to base + writes with the base untouched.  An overlay
 * qemu-img made on the URI opens as well. */
static void test_overlay_on_nbd(void)
{
    const uint64_t size = 32 * MiB;
    g_autofree char *base = qtest_path("ov-base.raw");
    g_autofree char *ov = qtest_path("ov.qcow2");
    g_autofree char *ov2 = qtest_path("ov2.qcow2");
    g_autofree char *expect = qtest_path("ov-expect.raw");
    gsize len;

    if (!need_tools()) {
        return;
    }
    qtest_disk_create(base, size);
    qtest_disk_set(base, 0, MiB, 0x61);
    qtest_disk_set(base, 2 * MiB + 4096, 300 * 1024, 0x62);
    qtest_disk_set(base, 20 * MiB, 3 * MiB, 0x63);
    g_autofree uint8_t *orig = tf_read_file(base, &len);
    g_autofree uint8_t *model = g_memdup2(orig, len);
    g_autofree char *args = g_strdup_printf("-r -f raw %s", base);
    NbdServer *s = ns_qemu_nbd("ovbase", args);
    BlockOptions opts = { .id = "ov", .filename = ov, .format = "qcow2", .create = true,
                          .backing = s->uri, .backing_format = "raw" };
    g_autoptr(GError) err = NULL;
    BlockDriverState *bs = bdrv_open(&opts, &err);
    g_assert_no_error(err);

    g_assert_cmpint(bdrv_getlength(bs), ==, (int64_t)size);
    g_assert_cmpstr(bdrv_get_backing_filename(bs), ==, s->uri);
    assert_drive_is(bs, model, "overlay before writes");
    write_pattern(bs, model, 2 * MiB, 64 * 1024, 5, 0);
    write_pattern(bs, model, 21 * MiB + 1234, 100 * 1024, 6, 0);
    zero(bs, model, 22 * MiB, MiB, 0);
    assert_drive_is(bs, model, "overlay after writes");

    uint64_t pnum;
    BdrvStatus st;
    int depth;
    g_assert_cmpint(bdrv_block_status_ext(bs, 0, MiB, 0, &pnum, &st, &depth), ==, 0);
    g_assert_true(st == BDRV_STATUS_DATA && depth == 2);
    g_assert_cmpint(bdrv_block_status_ext(bs, 2 * MiB, 4096, 0, &pnum, &st, &depth), ==, 0);
    g_assert_true(st == BDRV_STATUS_DATA && depth == 1);
    g_assert_cmpint(bdrv_block_status_ext(bs, 10 * MiB, MiB, 0, &pnum, &st, &depth), ==, 0);
    g_assert_true(st == BDRV_STATUS_ZERO && depth == 2);
    bdrv_close(bs);

    g_autofree uint8_t *after = tf_read_file(base, &len);
    ns_assert_same(orig, after, size, "base after overlay writes");
    g_assert_true(g_file_set_contents(expect, (const char *)model, (gssize)size, NULL));
    g_assert_true(qt_compare(ov, "qcow2", expect, "raw"));
    g_assert_cmpint(qt_check(ov), ==, 0);

    g_free(qt_run("qemu-img create -q -f qcow2 -b %s -F raw %s", s->uri, ov2));
    BlockOptions opts2 = { .id = "ov2", .filename = ov2, .format = "qcow2" };
    bs = bdrv_open(&opts2, &err);
    g_assert_no_error(err);
    assert_drive_is(bs, orig, "qemu-img's overlay on the NBD base");
    bdrv_close(bs);
    ns_free(s);
}

/* A qcow2 backing image whose bytes come over NBD (qemu-nbd -f raw on
 * the qcow2 file): our qcow2 driver reads it through the NBD node, named
 * qcow2 and probed. */
static void test_overlay_on_nbd_qcow2(void)
{
    static const char *const formats[] = { "qcow2", NULL };

    if (!need_tools()) {
        return;
    }
    g_autofree char *img = make_qcow2("ovq-base.qcow2");
    g_autofree char *conv = qtest_path("ovq-base.raw");
    g_free(qt_run("qemu-img convert -f qcow2 -O raw %s %s", img, conv));
    gsize len;
    g_autofree uint8_t *want = tf_read_file(conv, &len);
    g_autofree char *args = g_strdup_printf("-r -f raw %s", img);
    NbdServer *s = ns_qemu_nbd("ovq", args);

    for (size_t i = 0; i < G_N_ELEMENTS(formats); i++) {
        g_autofree char *name = g_strdup_printf("ovq%zu.qcow2", i);
        g_autofree char *ov = qtest_path(name);
        BlockOptions opts = { .id = "ovq", .filename = ov, .format = "qcow2", .create = true,
                              .backing = s->uri, .backing_format = formats[i] };
        g_autoptr(GError) err = NULL;
        BlockDriverState *bs = bdrv_open(&opts, &err);
        g_assert_no_error(err);
        g_assert_cmpstr(bdrv_get_format(bdrv_get_backing(bs)), ==, "qcow2");
        assert_drive_is(bs, want, formats[i] ? "qcow2 backing over NBD" : "probed backing");
        bdrv_close(bs);
    }
    ns_free(s);
}

/* ---- blkmigd ---- */

/* A drive whose file is an NBD URI: qemu-io writes through blkmigd's own
 * export, the bytes land in the file qemu-nbd serves. */
static void test_blkmigd_drive(void)
{
    g_autofree char *path = qtest_path("under.img");
    g_autofree char *sock = qtest_path("over.nbd");

    if (!need_tools()) {
        return;
    }
    qtest_disk_create(path, 16 * MiB);
    g_autofree char *args = g_strdup_printf("-f raw %s", path);
    NbdServer *s = ns_qemu_nbd("under", args);
    QTestDaemon *d = qtest_daemon_start("overd", "--drive id=disk0,file=%s,format=raw "
                                        "--nbd unix:%s", s->uri, sock);
    qtest_wait_runstate(d, "running", 10000);
    g_autofree char *uri = interop_nbd_uri(sock, "disk0");

    g_assert_cmpint(interop_run(NULL, NULL, "qemu-io", "-f", "raw", "-c", "write -P 0x5c 1M 2M",
                                "-c", "write -z 8M 1M", uri, NULL), ==, 0);
    qemu_io_reads(uri, "read -P 0x5c 1M 2M", "read -P 0 8M 1M");
    qtest_daemon_quit(d);
    g_assert_true(interop_file_has(path, MiB, 2 * MiB, 0x5c));
    ns_free(s);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    qtest_tmpdir();
    g_test_add_func("/nbd-client/qemu-nbd/raw-io", test_qemu_nbd_raw_io);
    g_test_add_func("/nbd-client/qemu-nbd/status", test_qemu_nbd_status);
    g_test_add_func("/nbd-client/qemu-nbd/qcow2", test_qemu_nbd_qcow2);
    g_test_add_func("/nbd-client/qemu-nbd/allocation-depth", test_allocation_depth);
    g_test_add_func("/nbd-client/nbdkit/memory", test_nbdkit_memory);
    g_test_add_func("/nbd-client/nbdkit/flags", test_nbdkit_flags);
    g_test_add_func("/nbd-client/nbdkit/nozero", test_nbdkit_nozero);
    g_test_add_func("/nbd-client/nbdkit/sparse-random", test_nbdkit_sparse_random);
    g_test_add_func("/nbd-client/nbdkit/data-readonly", test_nbdkit_data_readonly);
    g_test_add_func("/nbd-client/nbdkit/hole-not-zero", test_hole_not_zero);
    g_test_add_func("/nbd-client/overlay", test_overlay_on_nbd);
    g_test_add_func("/nbd-client/overlay-qcow2-backing", test_overlay_on_nbd_qcow2);
    g_test_add_func("/nbd-client/blkmigd-drive", test_blkmigd_drive);
    return g_test_run();
}
