/* Ids that name drives, jobs and objects over QMP and on the command line. */
#ifndef UTIL_ID_H
#define UTIL_ID_H

#include <stdbool.h>
#include <stddef.h>

/* QEMU's rule for ids: a letter, then letters, digits, '-', '.' or '_';
 * at most MAX_LEN bytes. */
bool id_wellformed(const char *id, size_t max_len);

#endif
