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

/* disk0.raw (fresh) and the name "stream" in DIR; registers the "block"
 * section. */
void blf_setup(BlockLoadFixture *fx, const char *dir);
/* Unregisters the sections, closes every drive, removes both files and
 * puts the capabilities and the dirty granularity back to the defaults. */
void blf_teardown(BlockLoadFixture *fx);
/* With data on the disk, loading B (through the stream file) fails with a
 * message containing EXPECTED and leaves every byte of the disk as it was. */
void blf_assert_rejected(BlockLoadFixture *fx, const GByteArray *b, const char *expected);

#endif
