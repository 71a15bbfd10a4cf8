/* The one rule every driver's create path follows (create=on): a new image
 * goes into a new file, an existing file is used only when it is empty
 * (0 bytes) or overwrite=on says to erase it, so create=on can never wipe
 * an image.  It also remembers which file an open made, so that a failed
 * open, or a failed start-up later, removes that file and no other. */
#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <inttypes.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block-int.h"

static void set_file_error(GError **errp, int err, const char *what, const char *filename)
{
    g_set_error(errp, G_IO_ERROR, g_io_error_from_errno(err), "Cannot %s '%s': %s",
                what, filename, g_strerror(err));
}

static void set_exists_error(GError **errp, const BlockOptions *opts, uint64_t len)
{
    g_set_error(errp, G_IO_ERROR, G_IO_ERROR_EXISTS,
                "Drive '%s': '%s' already exists and holds %" PRIu64 " bytes; create=on "
                "makes new images and never replaces one (drop create=on to use the "
                "existing image, or add overwrite=on to erase it and create a new one)",
                opts->id, opts->filename, len);
}

/* An existing file: taken as it is when empty, erased with overwrite=on,
 * refused otherwise.  lseek, not st_size: block devices report 0. */
static int open_existing(const BlockOptions *opts, GError **errp)
{
    int fd = open(opts->filename, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        /* ENOENT after O_EXCL saw a name: a dangling symlink, whose target
         * would be a file made where cleanup could not find it. */
        int err = errno;
        set_file_error(errp, err, err == ENOENT ? "create an image through the "
                       "dangling symbolic link" : "open", opts->filename);
        return -1;
    }
    off_t len = lseek(fd, 0, SEEK_END);
    if (len < 0) {
        set_file_error(errp, errno, "get the size of", opts->filename);
    } else if (len > 0 && !opts->overwrite) {
        set_exists_error(errp, opts, (uint64_t)len);
    } else if (len > 0 && ftruncate(fd, 0) < 0) {
        set_file_error(errp, errno, "erase", opts->filename);
    } else {
        return fd;
    }
    close(fd);
    return -1;
}

/* O_EXCL decides "new" atomically: no window in which a file appearing at
 * the path could be taken for one we made. */
static int create_new(const char *filename, BdrvCreatedFile *made)
{
    int fd = open(filename, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    struct stat st;

    if (fd >= 0 && fstat(fd, &st) == 0) {
        made->made = true;
        made->id = (BdrvFileId){ (uint64_t)st.st_dev, (uint64_t)st.st_ino };
    }
    return fd;
}

int bdrv_create_file(const BlockOptions *opts, BdrvCreatedFile *made, GError **errp)
{
    if (opts->read_only) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Drive '%s': create=on cannot be combined with read-only=on", opts->id);
        return -1;
    }
    int fd = create_new(opts->filename, made);
    if (fd >= 0) {
        return fd;
    }
    if (errno != EEXIST) {
        set_file_error(errp, errno, "create", opts->filename);
        return -1;
    }
    return open_existing(opts, errp);
}

bool bdrv_created_file(BlockDriverState *bs, BdrvFileId *id)
{
    if (bs->created.made) {
        *id = bs->created.id;
    }
    return bs->created.made;
}

/* lstat: a symlink put in the file's place is not the file.  While the
 * drive holds the file open its inode number cannot be reused, so a file
 * put at the path meanwhile never matches. */
void bdrv_remove_created_file(const char *path, const BdrvFileId *id)
{
    struct stat st;

    if (lstat(path, &st) == 0 && (uint64_t)st.st_dev == id->dev &&
        (uint64_t)st.st_ino == id->ino) {
        unlink(path);
    }
}

void bdrv_create_undo(const char *path, BdrvCreatedFile *made)
{
    if (made->made) {
        bdrv_remove_created_file(path, &made->id);
        made->made = false;
    }
}
