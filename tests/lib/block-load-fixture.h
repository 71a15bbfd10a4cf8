/* The fixture of the in-process tests of the "block" section's load side
 * (test-block-load, test-block-ext): one sparse raw drive "disk0" and a
 * stream file beside it, with the section registered.  Those tests share
 * it, and the check that a bad stream changes nothing, from here instead
 * of each keeping a copy. */
#ifndef TESTS_BLOCK_LOAD_FIXTURE_H
#define TESTS_BLOCK_LOAD_FIXTURE_H

#include <glib.h>

#include "block/block.h"

#define BLF_DISK_SIZE (8 * 1024 * 1024)

typedef struct BlockLoadFixture {
    BlockDriverState *disk;     /* "disk0", BLF_DISK_SIZE, sparse */
    char *disk_path;
    char *stream_path;
} BlockLoadFixture;

/* Makes the scratch directory (g_dir_make_tmp of TEMPLATE) the fixture's
 * files go in; call before g_test_run. */
void blf_init(const char *template);
/* The scratch directory. */
const char *blf_dir(void);
/* g_test_run, then removes the scratch directory: g_test_run's result. */
int blf_run(void);

/* The g_test_add setup: a fresh disk0.raw and the name "stream" in the
 * scratch directory; registers the "block" section. */
void blf_setup(BlockLoadFixture *fx, gconstpointer data);
/* The teardown: unregisters the sections, closes every drive, removes
 * both files and puts the capabilities and the dirty granularity back to
 * the defaults. */
void blf_teardown(BlockLoadFixture *fx, gconstpointer data);
/* With data on the disk, loading B (through the stream file) fails with a
 * message containing EXPECTED and leaves every byte of the disk as it was. */
void blf_assert_rejected(BlockLoadFixture *fx, const GByteArray *b, const char *expected);

#endif
