/* Looking at disk files from tests. */
#ifndef TESTS_FILES_H
#define TESTS_FILES_H

#include <glib.h>
#include <stdint.h>

/* PATH's whole content (g_free it); *LEN its length. */
uint8_t *tf_read_file(const char *path, gsize *len);
/* Bytes PATH has allocated on its file system (st_blocks * 512). */
int64_t tf_allocated_bytes(const char *path);

#endif
