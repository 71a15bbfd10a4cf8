/* libFuzzer target: the NBD server, from the bytes a client sends: the
 * fixed newstyle handshake and its options, then the transmission phase's
 * requests, decoded and executed against real exports.  Each input is one
 * client connection over a socketpair, served by the server's own
 * connection code (nbd_conn_serve) on a thread of its own as the accept
 * thread would start it, with the guest running (I/O not held).  The
 * harness writes the input, shuts its write side and reads the replies
 * until the server hangs up.
 *
 * Exports (tmpfs): disk0, a 1 MiB raw drive, and qdisk0, a 1 MiB qcow2
 * drive with 4 KiB clusters, each with some data and holes.  Both are put
 * back as they were after every input (zeroed whole, the data written
 * again), so an input does the same whatever ran before it. */
#include <glib.h>
#include <glib/gstdio.h>
#include <stdio.h>
#include <stdlib.h>

#include "block/block.h"
#include "nbd/server.h"
#include "../../../nbd/nbd-internal.h"
#include "../../lib/drives.h"
#include "harness.h"

#define DRIVE_SIZE (1024 * 1024)
#define CONVERSE_TIMEOUT_MS 20000

static BlockDriverState *drives[2];

static BlockDriverState *open_qcow2(const char *id, const char *path)
{
    BlockOptions o = {
        .id = id, .filename = path, .format = "qcow2", .size = DRIVE_SIZE,
        .create = true, .cluster_size = 4096,
    };
    GError *err = NULL;
    BlockDriverState *bs = bdrv_open(&o, &err);

    g_assert_no_error(err);
    return bs;
}

/* Data at 64 KiB and in the last 4 KiB; the rest reads as zero. */
static void reset_drive(BlockDriverState *bs)
{
    g_assert_cmpint(bdrv_pwrite_zeroes(bs, 0, DRIVE_SIZE, BDRV_REQ_MAY_UNMAP), ==, 0);
    td_write_drive(bs, 65536, 8192, 3);
    td_write_drive(bs, DRIVE_SIZE - 4096, 4096, 5);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    g_autofree char *raw = NULL, *qcow2 = NULL;

    fuzz_init();
    raw = fuzz_scratch_path("disk0.raw");
    qcow2 = fuzz_scratch_path("qdisk0.qcow2");
    drives[0] = td_open_drive("disk0", raw, DRIVE_SIZE);
    drives[1] = open_qcow2("qdisk0", qcow2);
    for (int i = 0; i < 2; i++) {
        reset_drive(drives[i]);
    }
    nbd_server_resume_io();
    return 0;
}

static gpointer serve(gpointer conn)
{
    nbd_conn_serve(conn);
    nbd_conn_free(conn);
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int fds[2];
    GThread *server;

    fuzz_socketpair(fds);
    server = g_thread_new("nbd-fuzz", serve, nbd_conn_new(fds[0], "fuzz", NULL));
    fuzz_converse(fds[1], data, size, NULL, CONVERSE_TIMEOUT_MS);
    g_thread_join(server);
    for (int i = 0; i < 2; i++) {
        reset_drive(drives[i]);
    }
    return 0;
}
