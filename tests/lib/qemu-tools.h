/* qemu-img and qemu-io as the oracle of image tests: running them, and
 * the answers of `qemu-img check`, `compare`, `map` and `info`. */
#ifndef TESTS_QEMU_TOOLS_H
#define TESTS_QEMU_TOOLS_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdbool.h>
#include <stdint.h>

/* Runs the command line FMT (words split as a shell would; no shell runs
 * it) and asserts exit status 0; returns its standard output (g_free). */
char *qt_run(const char *fmt, ...) G_GNUC_PRINTF(1, 2) G_GNUC_WARN_UNUSED_RESULT;
/* The same without the assertion: the exit status, output in *OUT. */
int qt_run_status(char **out, const char *fmt, ...) G_GNUC_PRINTF(2, 3);

/* `qemu-img check`: asserts no corruption; returns the leaked clusters. */
int64_t qt_check(const char *path);
/* `qemu-img compare` of A and B (formats FA, FB): true when identical. */
bool qt_compare(const char *a, const char *fa, const char *b, const char *fb);
/* `qemu-img map --output=json` / `info --output=json` of PATH, parsed. */
JsonNode *qt_map(const char *path, const char *format);
JsonNode *qt_info(const char *path);

/* One entry of `qemu-img map --output=json`. */
typedef struct QtExtent {
    uint64_t start, length;
    int depth;              /* 0: the image's own layer, 1: its backing, ... */
    bool zero, data;
} QtExtent;
/* The map of PATH as QtExtent entries (g_array_unref). */
GArray *qt_map_extents(const char *path, const char *format);
/* Bytes that hold data ("data": true): in PATH's own layer only with
 * TOP_ONLY (a qcow2 image's allocated data clusters), else anywhere in
 * its backing chain (what a flattened copy must allocate). */
uint64_t qt_data_bytes(const char *path, const char *format, bool top_only);

#endif
