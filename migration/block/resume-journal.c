/* block-resume, destination side: the journal file beside a drive
 * (PATH.blkmig-resume) that keeps, across a restart of the destination,
 * how many records of each 1 MiB chunk of the drive were applied and
 * flushed, and for which migration (its random id).  Written whole to a
 * temporary file, synced and renamed, only after the data it counts was
 * flushed, so a journal on disk never claims more than the drive holds.
 *
 *   "BMRJ"  be32 version 1  16-byte migration id  be64 drive size
 *   be64 chunk count N  N x be32 records
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "block-internal.h"
#include "util/bswap.h"

#define JOURNAL_MAGIC "BMRJ"
#define JOURNAL_VERSION 1
#define JOURNAL_HEADER (4 + 4 + BLK_MIG_RESUME_ID_LEN + 8 + 8)

char *blk_resume_journal_path(BlockDriverState *bs)
{
    const char *file = bdrv_get_filename(bs);

    if (!file || !*file || strstr(file, "://")) {
        return NULL;
    }
    return g_strdup_printf("%s.blkmig-resume", file);
}

static bool write_all(int fd, const uint8_t *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);

        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return false;
        }
        buf += n;
        len -= n;
    }
    return true;
}

/* The journal's bytes. */
static GByteArray *encode(const uint8_t *id, uint64_t size, const uint32_t *counts, uint64_t n)
{
    GByteArray *b = g_byte_array_sized_new(JOURNAL_HEADER + 4 * n);
    uint8_t head[JOURNAL_HEADER];

    memcpy(head, JOURNAL_MAGIC, 4);
    st_be32(head + 4, JOURNAL_VERSION);
    memcpy(head + 8, id, BLK_MIG_RESUME_ID_LEN);
    st_be64(head + 8 + BLK_MIG_RESUME_ID_LEN, size);
    st_be64(head + 16 + BLK_MIG_RESUME_ID_LEN, n);
    g_byte_array_append(b, head, sizeof(head));
    g_byte_array_set_size(b, JOURNAL_HEADER + 4 * n);
    for (uint64_t i = 0; i < n; i++) {
        st_be32(b->data + JOURNAL_HEADER + 4 * i, counts[i]);
    }
    return b;
}

bool blk_resume_journal_write(const char *path, const uint8_t *id, uint64_t size,
                              const uint32_t *counts, uint64_t n, GError **errp)
{
    g_autofree char *tmp = g_strdup_printf("%s.tmp", path);
    GByteArray *b = encode(id, size, counts, n);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && write_all(fd, b->data, b->len) && fsync(fd) == 0;
    int err = errno;

    if (fd >= 0) {
        close(fd);
    }
    g_byte_array_unref(b);
    if (ok && rename(tmp, path) < 0) {
        err = errno;
        ok = false;
    }
    if (!ok) {
        unlink(tmp);
        g_set_error(errp, MIG_ERROR, 0, "writing the resume journal %s failed: %s", path,
                    g_strerror(err));
    }
    return ok;
}

/* Why the journal's header does not describe this migration of a drive
 * of SIZE bytes; NULL when it does. */
static char *mismatch(const uint8_t *head, const uint8_t *id, uint64_t size, gsize len)
{
    uint64_t jsize = ld_be64(head + 8 + BLK_MIG_RESUME_ID_LEN);
    uint64_t n = ld_be64(head + 16 + BLK_MIG_RESUME_ID_LEN);

    if (memcmp(head, JOURNAL_MAGIC, 4) != 0 || ld_be32(head + 4) != JOURNAL_VERSION) {
        return g_strdup("it is not a blkmig resume journal (version 1)");
    }
    if (memcmp(head + 8, id, BLK_MIG_RESUME_ID_LEN) != 0) {
        return g_strdup("it was written for another migration (the migration id differs)");
    }
    if (jsize != size) {
        return g_strdup_printf("it describes a drive of %" G_GUINT64_FORMAT " bytes, the "
                               "drive has %" G_GUINT64_FORMAT, jsize, size);
    }
    if (n != (size + BLK_CHUNK - 1) / BLK_CHUNK || len != JOURNAL_HEADER + 4 * n) {
        return g_strdup("it is truncated or its chunk count is wrong");
    }
    return NULL;
}

uint32_t *blk_resume_journal_read(const char *path, const uint8_t *id, uint64_t size,
                                  uint64_t *n, GError **errp)
{
    g_autofree char *data = NULL;
    g_autofree char *why = NULL;
    GError *local = NULL;
    uint32_t *counts;
    gsize len;

    if (!g_file_get_contents(path, &data, &len, &local)) {
        g_set_error(errp, MIG_ERROR, 0, "resume journal %s: %s", path, local->message);
        g_error_free(local);
        return NULL;
    }
    why = len < JOURNAL_HEADER ? g_strdup("it is truncated")
                               : mismatch((const uint8_t *)data, id, size, len);
    if (why) {
        g_set_error(errp, MIG_ERROR, 0, "resume journal %s refused: %s", path, why);
        return NULL;
    }
    *n = ld_be64(data + 16 + BLK_MIG_RESUME_ID_LEN);
    counts = g_new(uint32_t, *n ? *n : 1);
    for (uint64_t i = 0; i < *n; i++) {
        counts[i] = ld_be32(data + JOURNAL_HEADER + 4 * i);
    }
    return counts;
}

void blk_resume_journal_remove(const char *path)
{
    if (unlink(path) < 0 && errno != ENOENT) {
        g_warning("removing the resume journal %s failed: %s", path, g_strerror(errno));
    }
}
