/* One drive as block migration's source holds it: a BlkMigDevice "d0"
 * over a fresh sparse raw file in its own scratch directory, with a dirty
 * bitmap.  The in-process tests of migration/block's internals
 * (test-block-order, test-block-resume) set it up and take it down from
 * here instead of each keeping a copy. */
#ifndef TESTS_BLK_MIG_DEVICE_H
#define TESTS_BLK_MIG_DEVICE_H

#include <stdbool.h>
#include <stdint.h>

#include "../../migration/block/block-internal.h"

typedef struct TestBlkMigDevice {
    char *dir;          /* the scratch directory */
    char *path;         /* DIR/disk.raw */
    BlkMigDevice dev;   /* "d0", with a bitmap of the given granularity */
} TestBlkMigDevice;

/* A directory made from TEMPLATE (g_dir_make_tmp) holding a sparse raw
 * drive "d0" of SIZE, with a dirty bitmap of GRANULARITY bytes. */
void tbd_open(TestBlkMigDevice *t, const char *template, uint64_t size, uint32_t granularity);
/* Releases the bitmap, closes the drive, removes the file and the
 * directory: true when both were there to remove and nothing else was
 * left in the directory. */
bool tbd_close(TestBlkMigDevice *t);

#endif
