/* Crash safety of qcow2 drives in a whole blkmigd (issue 10): the daemon
 * is SIGKILLed at random moments while guests write, several times over
 * the same images.  After every kill `qemu-img check` finds no corruption
 * (leaked clusters are allowed) and every write that a flush acknowledged
 * before the kill reads back.
 *
 * How the test knows what was acknowledged: two clients write to disk0
 * over NBD, one request at a time, each in its own 64 KiB stripes, and
 * keep a model of every 4 KiB block: its durable content (what the last
 * completed flush, or a FUA write, covered) and the writes since then,
 * completed or in flight.  After the kill a block must hold its durable
 * content or one of those later writes; it then becomes the durable
 * content for the next round.  Meanwhile the built-in guest writes 4 KiB
 * blocks at random to disk1, whose contents only qemu-img check judges.
 * Both images are created by blkmigd over one raw base holding scattered
 * data: disk0 with 8 KiB clusters (so a 4 KiB write copies its neighbour
 * from the base), disk1 with 64 KiB. */
#include <string.h>
#include <unistd.h>

#include "../lib/files.h"
#include "../lib/qemu-tools.h"
#include "../qtest/libqtest.h"
#include "interop.h"
#include "nbd-raw.h"

#define MiB (UINT64_C(1) << 20)
#define DISK_SIZE (64 * MiB)
#define BLOCK 4096u
#define NBLOCKS (DISK_SIZE / BLOCK)
#define STRIPE_BLOCKS 16u           /* 64 KiB: a client's unit of ownership */
#define CLIENTS 2
#define ROUNDS 6
#define MAX_PENDING 16              /* writes to one block between flushes */
/* How long the guests write before the kill, in ms. */
#define KILL_MIN_MS 150
#define KILL_MAX_MS 700

/* Block contents (tags): what the base holds there, zeroes, unknown (a
 * trim: anything until written again), or data written with that tag. */
#define TAG_BASE 0u
#define TAG_ZERO 1u
#define TAG_UNKNOWN UINT32_MAX

typedef struct Block {
    uint32_t durable;
    uint32_t npend;
    uint32_t pend[MAX_PENDING];     /* writes since, oldest first */
} Block;

typedef struct Client {
    unsigned id;
    const char *sock;
    Block *blocks;                  /* shared; a client touches its stripes only */
    GRand *rand;
    GArray *dirty;                  /* block numbers with writes since a flush */
    unsigned flushed_writes;        /* block writes a flush or FUA made durable */
} Client;

static guint next_tag = 2;          /* atomic: data tags, unique */

/* ---- block contents ---- */

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

/* The content of BLOCK written with data tag TAG. */
static void fill_block(uint8_t *buf, uint64_t block, uint32_t tag)
{
    uint64_t x = (block << 32) ^ tag;

    for (unsigned i = 0; i < BLOCK / 8; i++) {
        uint64_t v = splitmix(&x);
        memcpy(buf + 8 * i, &v, 8);
    }
}

/* Does GOT (block number BLOCK) hold tag TAG?  BASE is the base image. */
static bool block_is(const uint8_t *got, const uint8_t *base, uint64_t block, uint32_t tag)
{
    uint8_t want[BLOCK];

    if (tag == TAG_BASE) {
        return memcmp(got, base + block * BLOCK, BLOCK) == 0;
    }
    if (tag == TAG_ZERO) {
        memset(want, 0, BLOCK);
    } else {
        fill_block(want, block, tag);
    }
    return memcmp(got, want, BLOCK) == 0;
}

/* ---- a client ---- */

static void note_write(Client *cl, uint64_t first, uint32_t n, uint32_t tag)
{
    for (uint64_t b = first; b < first + n; b++) {
        Block *blk = &cl->blocks[b];

        if (blk->npend == 0) {
            g_array_append_val(cl->dirty, b);
        }
        blk->pend[blk->npend++] = tag;
    }
}

/* Everything written before a completed flush is durable. */
static void note_flush(Client *cl)
{
    for (guint i = 0; i < cl->dirty->len; i++) {
        Block *blk = &cl->blocks[g_array_index(cl->dirty, uint64_t, i)];

        if (blk->npend) {
            blk->durable = blk->pend[blk->npend - 1];
            blk->npend = 0;
            cl->flushed_writes++;
        }
    }
    g_array_set_size(cl->dirty, 0);
}

/* A completed FUA write of tag TAG is durable itself, and supersedes
 * every earlier write to its blocks. */
static void note_fua(Client *cl, uint64_t first, uint32_t n, uint32_t tag)
{
    for (uint64_t b = first; b < first + n; b++) {
        cl->blocks[b].durable = tag;
        cl->blocks[b].npend = 0;
    }
    cl->flushed_writes += n;
}

/* A run of 1..16 blocks inside one of the client's stripes. */
static void pick_run(Client *cl, uint64_t *first, uint32_t *n)
{
    uint64_t stripe = (uint64_t)g_rand_int_range(cl->rand, 0, NBLOCKS / STRIPE_BLOCKS / CLIENTS)
                      * CLIENTS + cl->id;
    uint32_t start = (uint32_t)g_rand_int_range(cl->rand, 0, STRIPE_BLOCKS);

    *first = stripe * STRIPE_BLOCKS + start;
    *n = (uint32_t)g_rand_int_range(cl->rand, 1, STRIPE_BLOCKS - start + 1);
}

static bool room_for(Client *cl, uint64_t first, uint32_t n)
{
    for (uint64_t b = first; b < first + n; b++) {
        if (cl->blocks[b].npend == MAX_PENDING) {
            return false;
        }
    }
    return true;
}

/* One request; false once the connection is gone. */
static bool client_step(Client *cl, RawConn *c, uint8_t *buf)
{
    unsigned op = (unsigned)g_rand_int_range(cl->rand, 0, 100);
    uint64_t first;
    uint32_t n, tag = TAG_ZERO;
    uint16_t type = RAW_CMD_WRITE, flags = 0;
    int64_t err;

    pick_run(cl, &first, &n);
    if (op < 12 || !room_for(cl, first, n)) {
        err = raw_try_cmd(c, 0, RAW_CMD_FLUSH, 0, 0, NULL);
        if (err == 0) {
            note_flush(cl);
        }
        g_assert_cmpint(err, <=, 0);
        return err == 0;
    }
    if (op < 17) {
        for (uint64_t b = first; b < first + n; b++) {
            cl->blocks[b].durable = TAG_UNKNOWN;
            cl->blocks[b].npend = 0;
        }
        err = raw_try_cmd(c, 0, RAW_CMD_TRIM, first * BLOCK, n * BLOCK, NULL);
        g_assert_cmpint(err, <=, 0);
        return err == 0;
    }
    if (op < 32) {
        type = RAW_CMD_WRITE_ZEROES;
        flags = op < 24 ? RAW_FLAG_NO_HOLE : 0;
    } else {
        tag = g_atomic_int_add(&next_tag, 1);
        for (uint32_t i = 0; i < n; i++) {
            fill_block(buf + i * BLOCK, first + i, tag);
        }
        flags = op >= 90 ? RAW_FLAG_FUA : 0;
    }
    note_write(cl, first, n, tag);
    err = raw_try_cmd(c, flags, type, first * BLOCK, n * BLOCK, buf);
    g_assert_cmpint(err, <=, 0);
    if (err == 0 && (flags & RAW_FLAG_FUA)) {
        note_fua(cl, first, n, tag);
    }
    return err == 0;
}

/* Writes until the daemon dies under it. */
static gpointer client_run(gpointer opaque)
{
    Client *cl = opaque;
    RawConn *c = raw_open(cl->sock, "disk0", false, false);
    uint8_t *buf = g_malloc(STRIPE_BLOCKS * BLOCK);

    while (client_step(cl, c, buf)) {
    }
    raw_abandon(c);
    g_free(buf);
    return NULL;
}

/* ---- after the kill ---- */

typedef struct Tally {
    uint64_t durable_blocks;    /* blocks checked against a durable write */
    uint64_t lost_unflushed;    /* blocks whose unflushed writes are gone */
} Tally;

/* The tag among BLK's candidates that GOT holds, or TAG_UNKNOWN. */
static uint32_t match_block(const Block *blk, const uint8_t *got, const uint8_t *base,
                            uint64_t b)
{
    for (int i = (int)blk->npend - 1; i >= 0; i--) {
        if (block_is(got, base, b, blk->pend[i])) {
            return blk->pend[i];
        }
    }
    if (blk->durable != TAG_UNKNOWN && block_is(got, base, b, blk->durable)) {
        return blk->durable;
    }
    return TAG_UNKNOWN;
}

/* IMG (disk0 as qemu reads it) against the model; what it holds becomes
 * durable. */
static void verify_blocks(Block *blocks, const uint8_t *img, const uint8_t *base, Tally *t)
{
    for (uint64_t b = 0; b < NBLOCKS; b++) {
        Block *blk = &blocks[b];
        uint32_t got = match_block(blk, img + b * BLOCK, base, b);

        if (got == TAG_UNKNOWN && blk->durable != TAG_UNKNOWN) {
            g_error("block %" G_GUINT64_FORMAT " (offset %" G_GUINT64_FORMAT ") lost its "
                    "flushed write: durable tag %u, %u writes since (last tag %u)", b,
                    b * BLOCK, blk->durable, blk->npend,
                    blk->npend ? blk->pend[blk->npend - 1] : 0);
        }
        t->durable_blocks += blk->durable != TAG_UNKNOWN && blk->durable != TAG_BASE;
        t->lost_unflushed += blk->npend && got != blk->pend[blk->npend - 1];
        blk->durable = got;
        blk->npend = 0;
    }
}

/* disk0 as qemu reads it through the chain. */
static uint8_t *read_image(const char *img)
{
    g_autofree char *raw = qtest_path("crash-read.raw");
    gsize len = 0;

    unlink(raw);
    g_free(qt_run("qemu-img convert -f qcow2 -O raw %s %s", img, raw));
    uint8_t *data = tf_read_file(raw, &len);
    g_assert_cmpuint(len, ==, DISK_SIZE);
    unlink(raw);
    return data;
}

/* ---- the loop ---- */

typedef struct Crash {
    char *base, *disk0, *disk1, *sock;
    uint8_t *base_data;
    Block *blocks;
    GRand *rand;
    Tally tally;
    unsigned flushed_writes;
} Crash;

/* The first round creates both images, the others open them again. */
static QTestDaemon *start_round(Crash *cr, unsigned round)
{
    const char *create = round ? "" : ",create=on,backing=crash-base.raw,backing-format=raw";
    g_autofree char *name = g_strdup_printf("crash%u", round);

    return qtest_daemon_start(name, "--drive id=disk0,file=%s,format=qcow2%s%s "
                              "--drive id=disk1,file=%s,format=qcow2%s --nbd unix:%s "
                              "--workload drive=disk1,pattern=randwrite,bs=4k,rate=8,"
                              "zero-frac=0.1,seed=%u", cr->disk0, create,
                              round ? "" : ",cluster-size=8k", cr->disk1, create, cr->sock,
                              round + 1);
}

/* Start, let the guests write, kill at a random moment, check. */
static void crash_round(Crash *cr, unsigned round)
{
    QTestDaemon *d = start_round(cr, round);
    Client clients[CLIENTS];
    GThread *threads[CLIENTS];

    qtest_wait_runstate(d, "running", 10000);
    for (unsigned i = 0; i < CLIENTS; i++) {
        clients[i] = (Client){ .id = i, .sock = cr->sock, .blocks = cr->blocks,
                               .rand = g_rand_new_with_seed(round * CLIENTS + i),
                               .dirty = g_array_new(FALSE, FALSE, sizeof(uint64_t)) };
        threads[i] = g_thread_new("client", client_run, &clients[i]);
    }
    g_usleep(1000 * g_rand_int_range(cr->rand, KILL_MIN_MS, KILL_MAX_MS));
    qtest_daemon_kill(d);
    for (unsigned i = 0; i < CLIENTS; i++) {
        g_thread_join(threads[i]);
        cr->flushed_writes += clients[i].flushed_writes;
        g_rand_free(clients[i].rand);
        g_array_unref(clients[i].dirty);
    }
    int64_t leaks0 = qt_check(cr->disk0), leaks1 = qt_check(cr->disk1);
    g_autofree uint8_t *img = read_image(cr->disk0);
    verify_blocks(cr->blocks, img, cr->base_data, &cr->tally);
    g_test_message("round %u: leaked clusters %" G_GINT64_FORMAT " / %" G_GINT64_FORMAT,
                   round, leaks0, leaks1);
}

static void test_crash_loop(void)
{
    Crash cr = { .base = qtest_path("crash-base.raw"), .disk0 = qtest_path("crash0.qcow2"),
                 .disk1 = qtest_path("crash1.qcow2"), .sock = qtest_path("crash.nbd"),
                 .blocks = g_new0(Block, NBLOCKS), .rand = g_rand_new_with_seed(10) };
    gsize len = 0;

    if (!interop_need("qemu-img")) {
        return;
    }
    unlink(cr.disk0);
    unlink(cr.disk1);
    qtest_disk_create(cr.base, DISK_SIZE);
    qtest_disk_scatter(cr.base, 3, 40, 256 * 1024);
    cr.base_data = tf_read_file(cr.base, &len);
    for (unsigned round = 0; round < ROUNDS; round++) {
        crash_round(&cr, round);
    }
    g_test_message("%u block writes made durable by a flush or FUA; %" G_GUINT64_FORMAT
                   " checks of blocks against them; %" G_GUINT64_FORMAT " blocks whose "
                   "unflushed writes did not survive",
                   cr.flushed_writes, cr.tally.durable_blocks, cr.tally.lost_unflushed);
    g_assert_cmpuint(cr.flushed_writes, >, 100);
    g_assert_cmpuint(cr.tally.durable_blocks, >, 100);
    g_free(cr.base_data);
    g_free(cr.blocks);
    g_rand_free(cr.rand);
    g_free(cr.base);
    g_free(cr.disk0);
    g_free(cr.disk1);
    g_free(cr.sock);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/qcow2-crash/kill-loop", test_crash_loop);
    return g_test_run();
}
