/* blkmig copy when things go wrong, against real parts: a source that
 * fails reads (nbdkit error filter), a target that fills up (a small
 * tmpfs, nbdkit full), a server that dies, Ctrl-C; each stops with a
 * message naming the offset and the exit code saying so, and leaves no
 * partial file claiming to be DEST.  Also the rules for a DEST that
 * exists (never replaced or written into unless asked), hostile input,
 * and the command line's usage errors. */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
    return interop_need("qemu-img") && interop_need("qemu-io") && interop_need("nbdkit");
}

/* No file of DIR's but the ones named (a temporary copy would be
 * ".NAME.blkmig-XXXXXX"). */
static void assert_no_temp_files(const char *dir)
{
    GDir *d = g_dir_open(dir, 0, NULL);
    const char *name;

    g_assert_nonnull(d);
    while ((name = g_dir_read_name(d))) {
        if (strstr(name, ".blkmig-")) {
            g_error("a temporary copy was left behind: %s/%s", dir, name);
        }
    }
    g_dir_close(d);
}

/* ---- Command line ---- */

static void test_usage(void)
{
    static const char *const bad[][6] = {
        { NULL },
        { "a", NULL },
        { "a", "b", "c", NULL },
        { "-n", "--overwrite", "a", "b", NULL },
        { "--requests", "0", "a", "b", NULL },
        { "--requests", "65", "a", "b", NULL },
        { "--request-size", "1000", "a", "b", NULL },
        { "--connections", "17", "a", "b", NULL },
        { "--progress=999", "a", "b", NULL },
        { "--size", "1M", "a", "b", NULL },
        { "--base", "x", "--prezeroed", "a", "b", NULL },
        { "-", "-", NULL },
        { "-n", "a", "-", NULL },
        { "--frobnicate", "a", "b", NULL },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
        CopyRun r = copy_toolv(bad[i]);
        copy_expect(&r, 64, "Usage: blkmig copy");
        copy_run_clear(&r);
    }
    CopyRun r = copy_tool("--help", NULL);
    g_assert_cmpint(r.status, ==, 0);
    static const char *const options[] = {
        "-f FMT", "-O FMT", "--target-exists", "--overwrite", "--target-is-zero",
        "--prezeroed", "--base IMAGE", "--verify", "--size", "--connections", "--requests",
        "--request-size", "--progress=FD", "Progress: N", "Exit status",
    };
    for (size_t i = 0; i < G_N_ELEMENTS(options); i++) {
        g_assert_nonnull(strstr(r.out, options[i]));
    }
    copy_run_clear(&r);
}

/* ---- Failures ---- */

/* Reads of the data at 1 MiB fail: exit 1 naming the offset, and no
 * DEST (the new file was a temporary one). */
static void test_read_error(void)
{
    if (!need_tools()) {
        return;
    }
    NbdServer *s = ns_nbdkit("rerr", "--filter=error data '@1048576 ( 1 2 3 4 )*1024' size=8M "
                             "error-pread=EIO error-pread-rate=100%");
    g_autofree char *dst = qtest_path("rerr.raw");

    CopyRun r = copy_tool("-f", "raw", "--progress=1", s->uri, dst, NULL);
    copy_expect(&r, 1, "reading the source at offset 1048576");
    g_assert_null(strstr(r.out, "Progress: 100"));
    g_assert_false(g_file_test(dst, G_FILE_TEST_EXISTS));
    assert_no_temp_files(qtest_tmpdir());
    copy_run_clear(&r);
    ns_free(s);
}

/* A file system that fills up (a private mount namespace, so no root
 * mount is needed where unshare -rm works). */
static void test_target_full_tmpfs(void)
{
    if (!need_tools() || !interop_need("unshare")) {
        return;
    }
    g_autofree char *src = copy_make_raw("full-src.raw", DISK);
    g_autofree char *mnt = qtest_path("small");
    g_assert_cmpint(g_mkdir_with_parents(mnt, 0700), ==, 0);
    /* 1 MiB of tmpfs for 2 MiB of data; ls shows what is left there. */
    CopyRun r = copy_shell("s='mount -t tmpfs -o size=1M tmpfs %s && $BLKMIG copy %s %s/x.raw; "
                           "rc=$?; ls -A %s >&2; exit $rc'; "
                           "if unshare -m true 2>/dev/null; then unshare -m sh -c \"$s\"; "
                           "elif unshare -rm true 2>/dev/null; then unshare -rm sh -c \"$s\"; "
                           "else exit 77; fi", mnt, src, mnt, mnt);
    if (r.status == 77) {
        copy_run_clear(&r);
        g_test_skip("no mount namespace (unshare -m or -rm) for a small tmpfs");
        return;
    }
    copy_expect(&r, 1, "No space left on device");
    g_assert_nonnull(strstr(r.err, "writing the target at offset "));
    g_assert_null(strstr(r.err, ".blkmig-"));          /* ls: the copy is gone */
    copy_run_clear(&r);
}

/* nbdkit full: every write says ENOSPC.  The target was written in
 * place, and the message says it holds no copy. */
static void test_target_full_nbd(void)
{
    if (!need_tools()) {
        return;
    }
    g_autofree char *src = copy_make_raw("nfull-src.raw", DISK);
    g_autofree char *args = g_strdup_printf("full %" PRIu64, DISK);
    NbdServer *s = ns_nbdkit("nfull", args);

    CopyRun r = copy_tool("-O", "raw", src, s->uri, NULL);
    /* Data writes and write-zeroes go out together; whichever fails
     * first is named ("writing" or "zeroing the target at offset"). */
    copy_expect(&r, 1, " the target at offset ");
    g_assert_nonnull(strstr(r.err, "No space left on device"));
    g_assert_nonnull(strstr(r.err, "does not hold a copy of"));
    copy_run_clear(&r);
    ns_free(s);
}

/* Start blkmig copy with the NULL-terminated arguments in the
 * background (output to LOG). */
static pid_t spawn_copy(const char *log, ...)
{
    GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);
    va_list ap;

    g_ptr_array_add(argv, copy_tool_path());
    g_ptr_array_add(argv, g_strdup("copy"));
    va_start(ap, log);
    for (const char *a = va_arg(ap, const char *); a; a = va_arg(ap, const char *)) {
        g_ptr_array_add(argv, g_strdup(a));
    }
    va_end(ap);
    g_ptr_array_add(argv, NULL);
    pid_t pid = interop_spawnv(log, (char **)argv->pdata);
    g_ptr_array_free(argv, TRUE);
    return pid;
}

/* The target server dies in the middle: the copy fails, naming where. */
static void test_connection_lost(void)
{
    if (!need_tools()) {
        return;
    }
    g_autofree char *log = qtest_path("lost.log");
    g_autofree char *src = copy_make_raw("lost-src.raw", DISK);
    NbdServer *s = ns_nbdkit("lost", "--filter=delay memory 64M wdelay=200ms");

    /* One 64 KiB write at a time, 200 ms each: several seconds. */
    pid_t pid = spawn_copy(log, "--requests", "1", "--request-size", "64k", src, s->uri, NULL);
    g_usleep(700 * 1000);
    ns_kill(s);
    g_assert_cmpint(interop_wait(pid, 60000), ==, 1);
    g_autofree char *text = NULL;
    g_assert_true(g_file_get_contents(log, &text, NULL, NULL));
    g_test_message("%s", text);
    g_assert_nonnull(strstr(text, "copy failed: writing the target at offset "));
    ns_free(s);
}

/* Ctrl-C: exit 2, no DEST, no temporary file. */
static void test_cancel(void)
{
    if (!need_tools()) {
        return;
    }
    g_autofree char *log = qtest_path("cancel.log");
    g_autofree char *dst = qtest_path("cancel.raw");
    NbdServer *s = ns_nbdkit("slow", "--filter=delay sparse-random 1G seed=7 rdelay=100ms");

    pid_t pid = spawn_copy(log, "--requests", "1", s->uri, dst, NULL);
    g_usleep(800 * 1000);
    g_assert_cmpint(kill(pid, SIGINT), ==, 0);
    g_assert_cmpint(interop_wait(pid, 30000), ==, 2);
    g_autofree char *text = NULL;
    g_assert_true(g_file_get_contents(log, &text, NULL, NULL));
    g_assert_nonnull(strstr(text, "copy cancelled"));
    g_assert_false(g_file_test(dst, G_FILE_TEST_EXISTS));
    assert_no_temp_files(qtest_tmpdir());
    ns_free(s);
}

/* ---- An existing DEST ---- */

static bool same_inode(const char *path, const struct stat *before)
{
    struct stat st;
    return stat(path, &st) == 0 && st.st_ino == before->st_ino && st.st_dev == before->st_dev;
}

static void test_existing_target(void)
{
    if (!need_tools()) {
        return;
    }
    g_autofree char *src = copy_make_raw("ex-src.raw", DISK);
    g_autofree char *dst = qtest_path("ex-dst.raw");
    g_autofree char *empty = qtest_path("ex-empty.raw");
    struct stat before;

    g_free(qt_run("qemu-img create -q -f raw %s 8M", dst));
    g_free(qt_run("qemu-io -f raw -c 'write -P 0x99 0 8M' %s", dst));
    g_assert_cmpint(stat(dst, &before), ==, 0);

    CopyRun r = copy_tool(src, dst, NULL);               /* refused, untouched */
    copy_expect(&r, 1, "exists and is not empty");
    copy_run_clear(&r);
    g_assert_true(interop_file_has(dst, 0, 8 * MiB, 0x99));

    r = copy_tool("-n", src, dst, NULL);                 /* too small to write into */
    copy_expect(&r, 1, "smaller than the source");
    copy_run_clear(&r);
    g_assert_true(interop_file_has(dst, 0, 8 * MiB, 0x99));

    /* --overwrite with a source that fails: DEST keeps its contents. */
    NbdServer *s = ns_nbdkit("ovr", "--filter=error data '( 5 )*4096' size=8M error-pread=EIO "
                             "error-pread-rate=100%");
    r = copy_tool("-f", "raw", "--overwrite", s->uri, dst, NULL);
    copy_expect(&r, 1, "reading the source at offset 0");
    copy_run_clear(&r);
    ns_free(s);
    g_assert_true(same_inode(dst, &before));
    g_assert_true(interop_file_has(dst, 0, 8 * MiB, 0x99));

    r = copy_tool("--overwrite", src, dst, NULL);        /* replaced, once complete */
    copy_expect(&r, 0, NULL);
    copy_run_clear(&r);
    g_assert_false(same_inode(dst, &before));
    g_assert_true(qt_compare(src, "raw", dst, "raw"));
    copy_assert_thin(dst, src);

    g_free(qt_run("qemu-io -f raw -c 'write -P 0x55 8M 1M' %s", dst));
    r = copy_tool("-n", src, dst, NULL);                 /* in place: zeroes punched */
    copy_expect(&r, 0, NULL);
    copy_run_clear(&r);
    g_assert_true(qt_compare(src, "raw", dst, "raw"));
    copy_assert_thin(dst, src);

    g_assert_true(g_file_set_contents(empty, "", 0, NULL));   /* empty: a new image */
    r = copy_tool("-O", "qcow2", src, empty, NULL);
    copy_expect(&r, 0, NULL);
    copy_run_clear(&r);
    g_assert_true(qt_compare(src, "raw", empty, "qcow2"));
    r = copy_tool("-n", src, empty, NULL);               /* a qcow2 is not raw bytes */
    copy_expect(&r, 1, "is a qcow2 image: give -O qcow2");
    copy_run_clear(&r);
    assert_no_temp_files(qtest_tmpdir());
}

/* DEST may not be what the copy reads. */
static void test_target_is_source(void)
{
    if (!need_tools()) {
        return;
    }
    g_autofree char *src = copy_make_raw("self.raw", DISK);
    g_autofree char *ovl = qtest_path("self.qcow2");
    g_autofree char *link = qtest_path("dangling.raw");
    g_free(qt_run("qemu-img create -q -f qcow2 -b %s -F raw %s", src, ovl));

    CopyRun r = copy_tool("-n", src, src, NULL);
    copy_expect(&r, 1, "is the source");
    copy_run_clear(&r);
    r = copy_tool("--overwrite", src, src, NULL);
    copy_expect(&r, 1, "is the source");
    copy_run_clear(&r);
    r = copy_tool("-n", ovl, src, NULL);
    copy_expect(&r, 1, "is a backing file of the source");
    copy_run_clear(&r);
    g_assert_cmpint(symlink("/nonexistent/blkmig-test", link), ==, 0);
    r = copy_tool(src, link, NULL);
    copy_expect(&r, 1, "dangling symbolic link");
    copy_run_clear(&r);
}

/* A vmdk header that lies is refused with its field named. */
static void test_hostile_vmdk(void)
{
    if (!need_tools()) {
        return;
    }
    g_autofree char *raw = copy_make_raw("h.raw", DISK);
    g_autofree char *vmdk = qtest_path("h.vmdk");
    g_autofree char *dst = qtest_path("h-out.raw");
    g_free(qt_run("qemu-img convert -f raw -O vmdk %s %s", raw, vmdk));
    g_free(qt_run("sh -c 'printf \"\\030\\000\\000\\000\" | dd of=%s bs=1 seek=20 conv=notrunc "
                  "status=none'", vmdk));                  /* grain size 24 sectors */

    CopyRun r = copy_tool(vmdk, dst, NULL);
    copy_expect(&r, 1, "grain size 24 sectors");
    copy_run_clear(&r);
    g_assert_false(g_file_test(dst, G_FILE_TEST_EXISTS));
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/copy-faults/usage", test_usage);
    g_test_add_func("/copy-faults/read-error", test_read_error);
    g_test_add_func("/copy-faults/target-full/tmpfs", test_target_full_tmpfs);
    g_test_add_func("/copy-faults/target-full/nbd", test_target_full_nbd);
    g_test_add_func("/copy-faults/connection-lost", test_connection_lost);
    g_test_add_func("/copy-faults/cancel", test_cancel);
    g_test_add_func("/copy-faults/existing-target", test_existing_target);
    g_test_add_func("/copy-faults/target-is-source", test_target_is_source);
    g_test_add_func("/copy-faults/hostile-vmdk", test_hostile_vmdk);
    return g_test_run();
}
