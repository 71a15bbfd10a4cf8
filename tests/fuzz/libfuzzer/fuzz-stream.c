/* libFuzzer target: the migration stream loader.  Each input is a whole
 * stream, loaded by savevm_load (with the block, disk verification and
 * storage-check handlers blkmigd registers) into the two destination
 * drives of the stream fuzz test, which tests/fuzz/stream-fuzz-env.c
 * sets up on $TMPDIR (tmpfs: /dev/shm unless TMPDIR says otherwise).  The load is
 * judged as test-stream-fuzz judges its mutations (stream-fuzz-load.c):
 * success, or failure with a specific message; no drive changes size and
 * no other file is touched.  The destinations get their pattern back
 * before every load, so an input does the same whatever ran before it.
 *
 * FUZZ_WRITE_SEEDS=DIR writes the valid streams the real save path makes
 * (tests/fuzz/corpus/stream) into DIR and exits. */
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>

#include "migration/savevm.h"
#include "migration/storage-check.h"
#include "../stream-fuzz.h"
#include "harness.h"

/* A stream without `block`: the storage check alone, made by the real
 * save path from the destination drives themselves (so it passes). */
static GBytes *save_storage_check_stream(void)
{
    GError *err = NULL;
    FuzzMemStream out;

    mig_cap_set(MIG_CAP_BLOCK, false);
    fuzz_mem_stream_writer(&out);
    g_assert_cmpint(savevm_state_header(out.f, &err), ==, 0);
    g_assert_cmpint(savevm_state_setup(out.f, &err), ==, 0);
    g_assert_cmpint(savevm_state_complete(out.f, &err), ==, 0);
    g_assert_no_error(err);
    savevm_state_cleanup();
    return fuzz_mem_stream_take(&out);
}

/* The seeds: every flavour small enough for the corpus (qemu-compat
 * sends whole 1 MiB chunks) and the storage check. */
static void write_seeds(const char *dir)
{
    for (guint i = 0; i < NFLAVOURS; i++) {
        if (flavours[i].fuzz) {
            fuzz_write_seed(dir, flavours[i].name, flavours[i].stream);
        }
    }
    g_autoptr(GBytes) check = save_storage_check_stream();
    fuzz_write_seed(dir, "storage-check", check);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char *seeds = g_getenv("FUZZ_WRITE_SEEDS");

    fuzz_init();
    setup_env();
    storage_check_register();
    env.no_watchdog = true;
    if (seeds) {
        write_seeds(seeds);
        teardown_env();
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    LoadResult r = load_bytes(data, size, "the fuzz input");

    assert_clean(&r, "the fuzz input");
    load_result_clear(&r);
    return 0;
}
