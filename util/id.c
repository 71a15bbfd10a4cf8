/* QEMU's rule for ids, in one place: drives, block jobs and user objects
 * each take an id from the operator and must refuse the same bad ones. */
#include <glib.h>
#include <string.h>

#include "util/id.h"

bool id_wellformed(const char *id, size_t max_len)
{
    if (!g_ascii_isalpha(id[0]) || strlen(id) > max_len) {
        return false;
    }
    for (const char *c = id + 1; *c; c++) {
        if (!g_ascii_isalnum(*c) && !strchr("-._", *c)) {
            return false;
        }
    }
    return true;
}
