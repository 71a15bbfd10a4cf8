/* blkmig copy's sides (see copy-sides.h): opening SOURCE, --base and DEST
 * by the command's rules, and giving a new target its name at the end. */
#include "copy-sides.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool is_stdio(const char *name)
{
    return strcmp(name, "-") == 0;
}

/* An NBD URI (or another URI the block layer may learn): never a local
 * file to create, replace or rename. */
static bool is_uri(const char *name)
{
    return strstr(name, "://") != NULL;
}

static bool fail(GError **errp, const char *fmt, ...) G_GNUC_PRINTF(2, 3);
static bool fail(GError **errp, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    g_autofree char *msg = g_strdup_vprintf(fmt, ap);
    va_end(ap);
    g_set_error_literal(errp, G_IO_ERROR, G_IO_ERROR_FAILED, msg);
    return false;
}

/* ---- Drives ---- */

/* A local target is written with write-behind (block/write-behind.h):
 * the disk works while the copy goes on, and the final flush is short. */
static BlockDriverState *open_drive(BlockOptions *bo, GError **errp)
{
    bo->write_behind = !bo->read_only && !is_uri(bo->filename);
    return bdrv_open(bo, errp);
}

static bool end_on_drive(CopyEnd *e, BlockOptions *bo, GError **errp)
{
    *e = (CopyEnd){ .bs = open_drive(bo, errp), .is_local = !is_uri(bo->filename) };
    if (!e->bs) {
        return false;
    }
    e->side = copy_side_drive(e->bs);
    e->size = copy_side_size(e->side);
    return true;
}

void copy_close_end(CopyEnd *e)
{
    copy_side_free(e->side);
    bdrv_close(e->bs);
    *e = (CopyEnd){ 0 };
}

/* ---- Source and base ---- */

/* What is left of a regular file on FD; 0 for a pipe or a terminal. */
static uint64_t regular_file_rest(int fd)
{
    struct stat st;
    off_t cur = lseek(fd, 0, SEEK_CUR);

    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || cur < 0 || st.st_size < cur) {
        return 0;
    }
    return (uint64_t)(st.st_size - cur);
}

bool copy_open_source(CopyEnd *e, const CopyCmdOptions *o, uint64_t size, GError **errp)
{
    if (!is_stdio(o->src)) {
        BlockOptions bo = { .id = "source", .filename = o->src, .read_only = true,
                            .format = o->src_format ? o->src_format : "auto",
                            .connections = o->connections };
        return end_on_drive(e, &bo, errp);
    }
    if (o->src_format && strcmp(o->src_format, "raw") != 0) {
        return fail(errp, "'-' (stdin) is read as raw bytes: -f %s needs a file or an NBD "
                    "URI", o->src_format);
    }
    if (isatty(STDIN_FILENO)) {
        return fail(errp, "'-': stdin is a terminal, not a disk image");
    }
    *e = (CopyEnd){ .is_stream = true, .size = size ? size : regular_file_rest(STDIN_FILENO) };
    if (e->size) {
        e->side = copy_side_stream(STDIN_FILENO, e->size, false, "stdin");
    }
    return true;
}

bool copy_open_base(CopyEnd *e, const CopyCmdOptions *o, GError **errp)
{
    BlockOptions bo = { .id = "base", .filename = o->base, .format = "auto", .read_only = true,
                        .connections = o->connections };

    if (is_stdio(o->base)) {
        return fail(errp, "--base must be an image (a file or an NBD URI), not '-'");
    }
    return end_on_drive(e, &bo, errp);
}

/* ---- What DEST may not be ---- */

static bool same_file(const struct stat *a, const char *path)
{
    struct stat b;
    return stat(path, &b) == 0 && a->st_dev == b.st_dev && a->st_ino == b.st_ino;
}

/* Writing into an image the source reads (itself, or a backing file)
 * changes what is being copied; the base is the one exception: a delta
 * writes only where the source does not read the base. */
static bool check_not_source(const char *dest, BlockDriverState *src, const char *base,
                             GError **errp)
{
    struct stat st;

    if (stat(dest, &st) < 0 || (base && same_file(&st, base))) {
        return true;
    }
    for (BlockDriverState *n = src; n; n = bdrv_get_backing(n)) {
        if (same_file(&st, bdrv_get_filename(n))) {
            return fail(errp, "'%s' is %s: a copy cannot write into what it reads", dest,
                        n == src ? "the source" : "a backing file of the source");
        }
    }
    return true;
}

/* ---- Targets ---- */

static bool open_stdout(CopyTarget *t, uint64_t size, GError **errp)
{
    if (isatty(STDOUT_FILENO)) {
        return fail(errp, "'-': refusing to write a disk image to a terminal");
    }
    if (size == 0) {
        return fail(errp, "a stream target needs a source of known size");
    }
    t->end = (CopyEnd){ .is_stream = true, .size = size,
                        .side = copy_side_stream(STDOUT_FILENO, size, true, "stdout") };
    return true;
}

/* Without -O, an existing image is written as raw bytes only when it
 * looks raw: writing a qcow2 file's bytes over as raw, or raw data into
 * what only looks like qcow2, would both ruin it. */
static bool check_looks_raw(const CopyCmdOptions *o, GError **errp)
{
    BlockOptions bo = { .id = "probe", .filename = o->dst, .format = "auto", .read_only = true,
                        .connections = 1 };
    BlockDriverState *bs = bdrv_open(&bo, errp);
    bool raw = bs && strcmp(bdrv_get_format(bs), "raw") == 0;

    if (bs && !raw) {
        fail(errp, "'%s' is a %s image: give -O %s to write into it as such, or -O raw to "
             "overwrite its bytes", o->dst, bdrv_get_format(bs), bdrv_get_format(bs));
    }
    bdrv_close(bs);
    return raw;
}

static bool open_in_place(CopyTarget *t, const CopyCmdOptions *o, GError **errp)
{
    BlockOptions bo = { .id = "target", .filename = o->dst,
                        .format = o->dst_format ? o->dst_format : "raw",
                        .connections = o->connections };

    if (!o->dst_format && !check_looks_raw(o, errp)) {
        return false;
    }
    return end_on_drive(&t->end, &bo, errp);
}

/* DEST's directory holds the temporary file, so the rename stays on one
 * file system: .NAME.blkmig-XXXXXX, made empty here. */
static char *make_temp(const char *dest, GError **errp)
{
    g_autofree char *dir = g_path_get_dirname(dest);
    g_autofree char *base = g_path_get_basename(dest);
    g_autofree char *name = g_strdup_printf(".%s.blkmig-XXXXXX", base);
    char *path = g_build_filename(dir, name, NULL);
    int fd = g_mkstemp_full(path, O_RDWR | O_CLOEXEC, 0644);

    if (fd < 0) {
        int err = errno;
        g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(err),
                    "Cannot create a file in the directory of '%s': %s", dest, g_strerror(err));
        g_free(path);
        return NULL;
    }
    close(fd);
    return path;
}

static bool open_new(CopyTarget *t, const CopyCmdOptions *o, uint64_t size, GError **errp)
{
    if (size == 0 && strcmp(o->src, "-") != 0) {
        return fail(errp, "'%s' is empty (0 bytes): there is nothing to copy", o->src);
    }
    if (size == 0) {
        return fail(errp, "a new target needs the source's size: give --size for a "
                    "source on a pipe, or write into an existing target (-n, an NBD URI)");
    }
    t->tmp_path = make_temp(o->dst, errp);
    if (!t->tmp_path) {
        return false;
    }
    BlockOptions bo = { .id = "target", .filename = t->tmp_path, .create = true, .size = size,
                        .format = o->dst_format ? o->dst_format : "raw" };
    if (!end_on_drive(&t->end, &bo, errp)) {
        g_unlink(t->tmp_path);
        g_clear_pointer(&t->tmp_path, g_free);
        return false;
    }
    t->is_new = true;
    return true;
}

/* DEST exists and is not empty: only -n writes into it, only --overwrite
 * replaces it. */
static bool open_existing(CopyTarget *t, const CopyCmdOptions *o, const struct stat *st,
                          uint64_t size, GError **errp)
{
    if (S_ISDIR(st->st_mode)) {
        return fail(errp, "'%s' is a directory: DEST names the image itself", o->dst);
    }
    if (o->target_exists) {
        return open_in_place(t, o, errp);
    }
    if (o->overwrite && !S_ISREG(st->st_mode)) {
        return fail(errp, "'%s' is not a regular file: --overwrite replaces files; -n writes "
                    "into it", o->dst);
    }
    if (o->overwrite) {
        t->may_replace = true;
        return open_new(t, o, size, errp);
    }
    if (!S_ISREG(st->st_mode)) {
        return fail(errp, "'%s' exists and is not a regular file: -n writes into it", o->dst);
    }
    return fail(errp, "'%s' exists and is not empty: blkmig copy never replaces it unless "
                "told (-n writes into it, --overwrite replaces it once the copy is complete)",
                o->dst);
}

bool copy_open_target(CopyTarget *t, const CopyCmdOptions *o, uint64_t size,
                      BlockDriverState *src, GError **errp)
{
    struct stat st;

    *t = (CopyTarget){ 0 };
    if (is_stdio(o->dst)) {
        return open_stdout(t, size, errp);
    }
    if (is_uri(o->dst)) {
        t->is_remote = true;
        return open_in_place(t, o, errp);
    }
    if (!check_not_source(o->dst, src, o->base, errp)) {
        return false;
    }
    if (stat(o->dst, &st) < 0) {
        return errno == ENOENT && lstat(o->dst, &st) < 0
            ? open_new(t, o, size, errp)
            : fail(errp, "Cannot use '%s': %s", o->dst,
                   errno == ENOENT ? "a dangling symbolic link" : g_strerror(errno));
    }
    if (S_ISREG(st.st_mode) && st.st_size == 0) {
        t->may_replace = t->dest_was_empty = true;
        t->dest_id = (BdrvFileId){ (uint64_t)st.st_dev, (uint64_t)st.st_ino };
        return open_new(t, o, size, errp);
    }
    return open_existing(t, o, &st, size, errp);
}

/* ---- The end ---- */

/* The empty file DEST was at the start must still be that empty file. */
static bool dest_still_empty(const CopyTarget *t, const char *dest)
{
    struct stat st;
    return lstat(dest, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 0 &&
           (uint64_t)st.st_dev == t->dest_id.dev && (uint64_t)st.st_ino == t->dest_id.ino;
}

static int rename_into_place(const CopyTarget *t, const char *dest)
{
    if (t->dest_was_empty && !dest_still_empty(t, dest)) {
        errno = EEXIST;
        return -1;
    }
    if (t->may_replace) {
        return rename(t->tmp_path, dest);
    }
    /* A DEST that appeared during the copy is not someone's to lose. */
    return renameat2(AT_FDCWD, t->tmp_path, AT_FDCWD, dest, RENAME_NOREPLACE);
}

static bool sync_dir(const char *path, GError **errp)
{
    g_autofree char *dir = g_path_get_dirname(path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    bool ok = fd >= 0 && fsync(fd) == 0;

    if (!ok) {
        fail(errp, "Cannot sync the directory '%s': %s", dir, g_strerror(errno));
    }
    if (fd >= 0) {
        close(fd);
    }
    return ok;
}

bool copy_commit_target(CopyTarget *t, const char *dest, GError **errp)
{
    copy_close_end(&t->end);
    if (!t->tmp_path) {
        return true;
    }
    if (rename_into_place(t, dest) < 0) {
        int err = errno;
        fail(errp, "the copy is complete, but cannot be named '%s': %s%s", dest,
             g_strerror(err), err == EEXIST ? " (it was created during the copy; left as it "
             "is, the copy is removed)" : " (the copy is removed)");
        copy_discard_target(t);
        return false;
    }
    g_clear_pointer(&t->tmp_path, g_free);
    return sync_dir(dest, errp);
}

void copy_discard_target(CopyTarget *t)
{
    copy_close_end(&t->end);
    if (t->tmp_path) {
        g_unlink(t->tmp_path);
        g_clear_pointer(&t->tmp_path, g_free);
    }
}
