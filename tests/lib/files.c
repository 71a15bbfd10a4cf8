/* Looking at disk files from tests. */
#include "files.h"

#include <sys/stat.h>

uint8_t *tf_read_file(const char *path, gsize *len)
{
    gchar *contents;

    g_assert_true(g_file_get_contents(path, &contents, len, NULL));
    return (uint8_t *)contents;
}

int64_t tf_allocated_bytes(const char *path)
{
    struct stat st;

    g_assert_cmpint(stat(path, &st), ==, 0);
    return (int64_t)st.st_blocks * 512;
}
