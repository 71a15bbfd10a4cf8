/* blkmig copy against real parts: nbdkit sparse-random and data as
 * sources, qemu-nbd and nbdkit memory as targets, images qemu-img made
 * (raw, qcow2, vmdk monolithicSparse and streamOptimized), stdin and
 * stdout.  Every copy is identical to its source (qemu-img compare) and
 * as thin; progress lines only grow and end at 100; --base writes only
 * what differs, counted in the target's own log of NBD writes; --verify
 * catches a target that loses writes; --connections is what the server
 * sees.  Failures, cancels and the rules for existing targets are in
 * test-copy-faults.c. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "../lib/files.h"
#include "../lib/qemu-tools.h"
#include "../qtest/libqtest.h"
#include "copy-run.h"
#include "interop.h"
#include "nbd-servers.h"

#define MiB (UINT64_C(1) << 20)
#define DISK (64 * MiB)

static bool need_tools(void)
{
    return interop_need("qemu-img") && interop_need("qemu-io") && interop_need("qemu-nbd") &&
           interop_need("nbdkit") && interop_need("nbdcopy") && interop_need("nbdinfo");
}

/* ---- Sources on NBD servers ---- */

/* nbdkit sparse-random into a new file: identical to what the server
 * serves, as thin as nbdcopy's copy of it, progress lines on fd 1. */
static void test_sparse_random(void)
{
    if (!need_tools()) {
        return;
    }
    NbdServer *s = ns_nbdkit("sr", "sparse-random 256M seed=4242 percent=5 runlength=100000");
    g_autofree char *dst = qtest_path("sr.raw");
    g_autofree char *ref = qtest_path("sr-nbdcopy.raw");

    CopyRun r = copy_tool("--progress=1", s->uri, dst, NULL);
    copy_expect(&r, 0, NULL);
    copy_assert_progress(r.out);
    g_assert_true(qt_compare(s->uri, "raw", dst, "raw"));
    g_free(qt_run("nbdcopy %s %s", s->uri, ref));
    copy_assert_thin(dst, ref);
    copy_run_clear(&r);
    ns_free(s);
}

/* A sparse export of hundreds of runs costs a block-status request per
 * reply, not one per run (the NBD driver keeps a reply's runs). */
static void test_status_requests(void)
{
    if (!need_tools()) {
        return;
    }
    g_autofree char *log = qtest_path("st.log");
    g_autofree char *dst = qtest_path("st.raw");
    g_autofree char *args = g_strdup_printf("--filter=log sparse-random 64M seed=3 "
                                            "runlength=16384 logfile=%s", log);
    NbdServer *s = ns_nbdkit("st", args);
    g_autofree char *map = qt_run("nbdinfo --map %s", s->uri);
    g_auto(GStrv) map_lines = g_strsplit(map, "\n", -1);
    unsigned runs = g_strv_length(map_lines) - 1;

    CopyRun r = copy_tool("-f", "raw", s->uri, dst, NULL);
    copy_expect(&r, 0, NULL);
    copy_run_clear(&r);
    g_autofree char *text = NULL;
    g_assert_true(g_file_get_contents(log, &text, NULL, NULL));
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
    unsigned requests = 0;
    for (char **l = lines; *l; l++) {
        requests += strstr(*l, " Extents id=") && g_str_has_suffix(*l, "...");
    }
    g_test_message("%u runs, %u block-status requests", runs, requests);
    g_assert_cmpuint(runs, >, 200);
    g_assert_cmpuint(requests, <=, 4);
    g_assert_true(qt_compare(s->uri, "raw", dst, "raw"));
    ns_free(s);
}

/* nbdkit data: a pattern with zero runs inside the data, which become
 * holes although the server calls everything data. */
static void test_data_source(void)
{
    if (!need_tools()) {
        return;
    }
    NbdServer *s = ns_nbdkit("data", "data '( 0x55 0xaa )*2048 @8388608 ( 1 2 3 4 )*65536 "
                             "@16777216 ( 0 )*1048576 ( 9 )*4096' size=32M");
    g_autofree char *dst = qtest_path("data.raw");

    CopyRun r = copy_tool("-p", "--requests", "3", "--request-size", "64k", s->uri, dst, NULL);
    copy_expect(&r, 0, NULL);
    g_assert_nonnull(strstr(r.err, "100.0%"));
    g_assert_true(qt_compare(s->uri, "raw", dst, "raw"));
    /* 4 KiB + 256 KiB + 4 KiB of data: the explicit zero MiB is a hole. */
    g_assert_cmpint(tf_allocated_bytes(dst), <=, 264 * 1024 + 64 * 1024);
    copy_run_clear(&r);
    ns_free(s);
}

/* ---- Targets on NBD servers ---- */

static void test_to_qemu_nbd(void)
{
    if (!need_tools()) {
        return;
    }
    g_autofree char *src = copy_make_raw("qn-src.raw", DISK);
    g_autofree char *file = qtest_path("qn-dst.raw");
    g_free(qt_run("qemu-img create -q -f raw %s %" PRIu64, file, DISK));
    g_autofree char *args = g_strdup_printf("-f raw --discard=unmap --cache=writeback "
                                            "--shared=8 %s", file);
    NbdServer *s = ns_qemu_nbd("qn", args);

    CopyRun r = copy_tool("--progress=1", "--connections", "2", src, s->uri, NULL);
    copy_expect(&r, 0, NULL);
    copy_assert_progress(r.out);
    ns_free(s);
    g_assert_true(qt_compare(src, "raw", file, "raw"));
    copy_assert_thin(file, src);
    copy_run_clear(&r);
}

/* The count of LINE when it is an nbdkit log filter's line of a KIND
 * request (" Write ", " Zero "), else 0. */
static uint64_t logged_request(const char *line, const char *kind)
{
    const char *count = strstr(line, " count=");

    return strstr(line, kind) && count && strstr(line, "...") ? g_ascii_strtoull(count + 7, NULL, 0)
                                                              : 0;
}

/* The largest Write request in an nbdkit log. */
static uint64_t largest_logged_write(const char *text)
{
    uint64_t largest = 0;
    g_auto(GStrv) lines = g_strsplit(text, "\n", -1);

    for (char **l = lines; *l; l++) {
        largest = MAX(largest, logged_request(*l, " Write "));
    }
    return largest;
}

/* nbdkit memory, multi-conn: --connections is what nbdkit sees, and the
 * writes are of the NBD default size (256 KiB, not the local 1 MiB). */
static void test_to_nbdkit_memory(void)
{
    if (!need_tools()) {
        return;
    }
    g_autofree char *src = copy_make_raw("mem-src.raw", DISK);
    g_autofree char *log = qtest_path("mem.log");
    g_autofree char *args = g_strdup_printf("--filter=log memory %" PRIu64 " logfile=%s",
                                            DISK, log);
    NbdServer *s = ns_nbdkit("mem", args);

    /* -O raw: no probe, whose connection would count too. */
    CopyRun r = copy_tool("-O", "raw", "--connections", "3", "--verify", src, s->uri, NULL);
    copy_expect(&r, 0, NULL);
    g_autofree char *text = NULL;
    g_assert_true(g_file_get_contents(log, &text, NULL, NULL));
    g_assert_nonnull(strstr(text, "connection=3 "));
    g_assert_null(strstr(text, "connection=4 "));
    g_assert_cmpuint(largest_logged_write(text), ==, MiB / 4);
    g_assert_true(qt_compare(src, "raw", s->uri, "raw"));
    copy_run_clear(&r);
    ns_free(s);
}

/* ---- Images qemu-img made ---- */

static void copy_image(const char *src, const char *fmt, const char *out_fmt)
{
    g_autofree char *base = g_path_get_basename(src);
    g_autofree char *name = g_strdup_printf("%s-to-%s.out", base, out_fmt);
    g_autofree char *dst = qtest_path(name);

    CopyRun r = copy_tool("-O", out_fmt, "--verify", src, dst, NULL);
    copy_expect(&r, 0, NULL);
    g_assert_true(qt_compare(src, fmt, dst, out_fmt));
    if (strcmp(out_fmt, "raw") == 0) {
        g_autofree char *raw = qtest_path("img.raw");
        copy_assert_thin(dst, raw);
    } else {
        qt_check(dst);
    }
    copy_run_clear(&r);
}

static void test_qemu_img_images(void)
{
    static const char *const kinds[][2] = {
        { "qcow2", "-O qcow2" },
        { "vmdk", "-O vmdk -o subformat=monolithicSparse" },
        { "vmdk", "-O vmdk -o subformat=streamOptimized" },
    };
    if (!need_tools()) {
        return;
    }
    g_autofree char *raw = copy_make_raw("img.raw", DISK);
    copy_image(raw, "raw", "raw");
    copy_image(raw, "raw", "qcow2");
    for (size_t i = 0; i < G_N_ELEMENTS(kinds); i++) {
        g_autofree char *name = g_strdup_printf("img%zu.%s", i, kinds[i][0]);
        g_autofree char *img = qtest_path(name);
        g_free(qt_run("qemu-img convert -f raw %s %s %s", kinds[i][1], raw, img));
        copy_image(img, kinds[i][0], "raw");
        copy_image(img, kinds[i][0], "qcow2");
    }
}

/* ---- Streams ---- */

/* Out to a pipe and back in from it (with --size), and out into a file
 * on stdout, which gets holes. */
static void test_stdio(void)
{
    if (!need_tools()) {
        return;
    }
    g_autofree char *src = copy_make_raw("io-src.raw", DISK);
    g_autofree char *via_pipe = qtest_path("io-pipe.raw");
    g_autofree char *via_file = qtest_path("io-file.raw");

    CopyRun r = copy_shell("$BLKMIG copy %s - | $BLKMIG copy --size %" PRIu64 " --progress=2 "
                           "- %s", src, DISK, via_pipe);
    copy_expect(&r, 0, NULL);
    copy_assert_progress(r.err);
    g_assert_true(qt_compare(src, "raw", via_pipe, "raw"));
    copy_assert_thin(via_pipe, src);
    copy_run_clear(&r);

    r = copy_shell("$BLKMIG copy %s - > %s", src, via_file);
    copy_expect(&r, 0, NULL);
    g_assert_true(qt_compare(src, "raw", via_file, "raw"));
    copy_assert_thin(via_file, src);
    copy_run_clear(&r);

    /* A pipe source into an existing target takes the target's size. */
    r = copy_shell("cat %s | $BLKMIG copy -n - %s", src, via_file);
    copy_expect(&r, 0, NULL);
    copy_run_clear(&r);
}

/* ---- Deltas ---- */

/* Bytes of Write and Zero requests in an nbdkit log, from byte FROM. */
static uint64_t logged_writes(const char *log, size_t from, size_t *end)
{
    g_autofree char *text = NULL;
    gsize len;
    uint64_t bytes = 0;

    g_assert_true(g_file_get_contents(log, &text, &len, NULL));
    *end = len;
    g_auto(GStrv) lines = g_strsplit(text + MIN(from, len), "\n", -1);
    for (char **l = lines; *l; l++) {
        bytes += logged_request(*l, " Write ") + logged_request(*l, " Zero ");
    }
    return bytes;
}

/* The target (nbdkit memory, logged) gets BASE first; then SOURCE with
 * --base writes at most MAX_BYTES there, and the target reads as SOURCE. */
static void delta_into_log(const char *name, const char *base, const char *src,
                           const char *src_fmt, uint64_t min_bytes, uint64_t max_bytes)
{
    g_autofree char *log_name = g_strdup_printf("%s.log", name);
    g_autofree char *log = qtest_path(log_name);
    g_autofree char *args = g_strdup_printf("--filter=log memory %" PRIu64 " logfile=%s",
                                            DISK, log);
    NbdServer *s = ns_nbdkit(name, args);
    size_t mark;

    CopyRun r = copy_tool(base, s->uri, NULL);
    copy_expect(&r, 0, NULL);
    copy_run_clear(&r);
    logged_writes(log, 0, &mark);
    r = copy_tool("--base", base, "--verify", src, s->uri, NULL);
    copy_expect(&r, 0, NULL);
    copy_run_clear(&r);
    uint64_t written = logged_writes(log, mark, &mark);
    g_test_message("%s: %" PRIu64 " bytes written or zeroed with --base", name, written);
    g_assert_cmpuint(written, >=, min_bytes);
    g_assert_cmpuint(written, <=, max_bytes);
    g_assert_true(qt_compare(src, src_fmt, s->uri, "raw"));
    ns_free(s);
}

/* Three changes: 64 KiB new data, 1 MiB of zeroes over data, 4 KiB at
 * the end; 4 KiB-aligned, so a compare writes exactly them. */
static const char changes[] = "-c 'write -P 0x77 2M 64k' -c 'write -z 0 1M' "
                              "-c 'write -P 0x78 63M 4k'";
#define CHANGED (64 * 1024 + MiB + 4096)

static void test_base_compare(void)
{
    if (!need_tools()) {
        return;
    }
    g_autofree char *base = copy_make_raw("cmp-base.raw", DISK);
    g_autofree char *src = qtest_path("cmp-src.raw");
    g_free(qt_run("cp --sparse=always %s %s", base, src));
    g_free(qt_run("qemu-io -f raw %s %s", changes, src));
    delta_into_log("cmp", base, src, "raw", CHANGED, CHANGED);
}

/* An overlay on the base: whole clusters of it, nothing else. */
static void test_base_overlay(void)
{
    if (!need_tools()) {
        return;
    }
    g_autofree char *base = copy_make_raw("ovl-base.raw", DISK);
    g_autofree char *src = qtest_path("ovl.qcow2");
    g_free(qt_run("qemu-img create -q -f qcow2 -b %s -F raw %s", base, src));
    g_free(qt_run("qemu-io -f qcow2 %s %s", changes, src));
    delta_into_log("ovl", base, src, "qcow2", CHANGED, CHANGED + 2 * 64 * 1024);
}

/* ---- Verify ---- */

/* nbdkit null takes every write and keeps nothing: the copy "works",
 * the verify says where the target differs. */
static void test_verify_catches(void)
{
    if (!need_tools()) {
        return;
    }
    g_autofree char *src = copy_make_raw("v-src.raw", DISK);
    g_autofree char *args = g_strdup_printf("null %" PRIu64, DISK);
    NbdServer *s = ns_nbdkit("null", args);

    CopyRun r = copy_tool(src, s->uri, NULL);
    copy_expect(&r, 0, NULL);
    copy_run_clear(&r);
    r = copy_tool("--verify", "--progress=1", src, s->uri, NULL);
    copy_expect(&r, 1, "verify: the target differs from the source in bytes 0..");
    g_assert_null(strstr(r.out, "Progress: 100"));
    copy_run_clear(&r);
    ns_free(s);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/copy/source/sparse-random", test_sparse_random);
    g_test_add_func("/copy/source/data", test_data_source);
    g_test_add_func("/copy/source/status-requests", test_status_requests);
    g_test_add_func("/copy/target/qemu-nbd", test_to_qemu_nbd);
    g_test_add_func("/copy/target/nbdkit-memory", test_to_nbdkit_memory);
    g_test_add_func("/copy/images", test_qemu_img_images);
    g_test_add_func("/copy/stdio", test_stdio);
    g_test_add_func("/copy/base/compare", test_base_compare);
    g_test_add_func("/copy/base/overlay", test_base_overlay);
    g_test_add_func("/copy/verify", test_verify_catches);
    return g_test_run();
}
