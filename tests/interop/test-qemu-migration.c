/* Live block migration between QEMU 7.2 and blkmigd, both ways, over
 * tcp: and through a saved stream, with and without zero-blocks, in the
 * clear and over TLS (x509).
 *
 * QEMU as the source runs -machine none (its stream: the configuration
 * section, "block", "ram" with real pages from -m 8M and a loaded blob,
 * "timer", "globalstate", the device description after the end).  QEMU
 * as the destination runs -M pc with the drive on a virtio-blk device:
 * QEMU 7.2 aborts on the first incoming block when no device holds the
 * drive (-machine none has no bus for one), whoever the source is; the
 * blkmigd source then says --machine pc-i440fx-7.2.  The disk must arrive
 * identical and both sides must report completed. */
#include <string.h>
#include <unistd.h>

#include "../lib/qemu-tools.h"
#include "../lib/tls-certs.h"
#include "../qtest/migration-framework.h"
#include "interop.h"

#define DISK_SIZE (48 * MIB)
#define QEMU_PC_MACHINE "pc-i440fx-7.2"
/* QEMU's side, plain or TLS. */
#define QEMU_SRC_ARGS "-machine none -m 8M -nodefaults -display none"
#define QEMU_DST_ARGS "-M pc -m 16M -nodefaults -display none -device virtio-blk-pci,drive=disk0"

typedef struct Pair {
    Migration m;
    bool tls;
    char *src_obj;              /* --object / -object for the source, or "" */
    char *dst_obj;
} Pair;

static char *scratch(const char *name)
{
    return qtest_path(name);
}

/* Credentials "srv" (CN localhost) and "cli" from one CA, made once. */
static void make_credentials(void)
{
    static bool made;
    g_autofree char *ca = scratch("ca"), *srv = scratch("srv"), *cli = scratch("cli");

    if (!made) {
        made = true;
        tt_make_ca(ca, "interop CA");
        tt_make_cert(srv, ca, "server", "localhost", false);
        tt_make_cert(cli, ca, "client", "src", false);
    }
}

/* The TLS objects, written the same for blkmigd (--object) and QEMU
 * (-object): QEMU's names, QEMU's files. */
static void pair_init(Pair *p, bool tls, const char *src_dash, const char *dst_dash)
{
    g_autofree char *srv = scratch("srv"), *cli = scratch("cli");

    memset(p, 0, sizeof(*p));
    p->tls = tls;
    if (tls) {
        make_credentials();
    }
    p->src_obj = tls ? g_strdup_printf("%sobject tls-creds-x509,id=tls0,dir=%s,endpoint=client",
                                       src_dash, cli) : g_strdup("");
    p->dst_obj = tls ? g_strdup_printf("%sobject tls-creds-x509,id=tls0,dir=%s,endpoint=server",
                                       dst_dash, srv) : g_strdup("");
    mf_make_src_disk(&p->m, DISK_SIZE, 11, 60, 192 * KIB);
    p->m.uri = qtest_tcp_uri();
    qtest_disk_create(p->m.dst_disk, DISK_SIZE);
}

static void pair_free(Pair *p)
{
    g_free(p->src_obj);
    g_free(p->dst_obj);
    mf_free(&p->m);
}

static void set_tls(Pair *p)
{
    if (p->tls) {
        qtest_set_params(p->m.src, "\"tls-creds\": \"tls0\"");
        qtest_set_params(p->m.dst, "\"tls-creds\": \"tls0\"");
    }
}

static void assert_same_disk(Pair *p)
{
    g_assert_true(qt_compare(p->m.src_disk, "raw", p->m.dst_disk, "raw"));
    mf_assert_identical(p->m.src_disk, p->m.dst_disk);
}

/* 64 KiB of random bytes that QEMU loads into its RAM: real PAGE records
 * beside the zero pages. */
static char *ram_blob(void)
{
    g_autofree char *path = scratch("ram-blob.bin");
    g_autofree guint8 *data = g_malloc(64 * KIB);
    GRand *r = g_rand_new_with_seed(5);

    for (size_t i = 0; i < 64 * KIB; i++) {
        data[i] = g_rand_int(r);
    }
    g_rand_free(r);
    g_assert_true(g_file_set_contents(path, (char *)data, 64 * KIB, NULL));
    return g_strdup_printf("-device loader,file=%s,addr=0x10000,force-raw=on", path);
}

/* QEMU 7.2's legacy block migration completes once what it counts as
 * pending fits max-bandwidth x downtime-limit, bulk phase over or not
 * (this 48 MiB disk at the defaults: the first 32 MiB sent, the rest
 * never).  With a downtime-limit whose worth is under one 1 MiB chunk it
 * sends the whole disk first. */
static QTestDaemon *qemu_source(Pair *p, const char *extra)
{
    g_autofree char *blob = ram_blob();
    QTestDaemon *d = qtest_qemu_start("qsrc", QEMU_SRC_ARGS " %s %s -drive file=%s,"
                                      "format=raw,if=none,id=disk0 %s", blob, p->src_obj,
                                      p->m.src_disk, extra ? extra : "");

    qtest_set_params(d, "\"downtime-limit\": 1");
    return d;
}

/* ---- QEMU -> blkmigd ---- */

static void qemu_to_blkmigd(bool tls, bool zero_blocks)
{
    Pair p;

    if (!interop_need("qemu-system-x86_64")) {
        return;
    }
    pair_init(&p, tls, "-", "--");
    p.m.dst = qtest_daemon_start("dst", "--drive id=disk0,file=%s %s --incoming %s",
                                 p.m.dst_disk, p.dst_obj, p.m.uri);
    p.m.src = qemu_source(&p, NULL);
    set_tls(&p);
    qtest_set_caps(p.m.src, "block", zero_blocks ? "zero-blocks" : NULL, NULL);
    qtest_migrate_start(p.m.src, p.m.uri);
    json_node_unref(mf_wait_completed(&p.m));
    assert_same_disk(&p);
    if (tls) {
        g_autofree char *log = qtest_daemon_log_tail(p.m.dst);
        mf_assert_contains(log, "TLS connection from O=blkmig,CN=src");
    }
    mf_quit(&p.m);
    pair_free(&p);
}

static void test_to_blkmigd(void)
{
    qemu_to_blkmigd(false, true);
}

static void test_to_blkmigd_no_zero_blocks(void)
{
    qemu_to_blkmigd(false, false);
}

static void test_to_blkmigd_tls(void)
{
    qemu_to_blkmigd(true, true);
}

/* A stream QEMU saved (exec:cat > FILE), loaded by blkmigd --incoming
 * file:.  QEMU ran with -S, so its globalstate says "prelaunch": blkmigd
 * keeps the guest paused, as QEMU would. */
static void test_to_blkmigd_file(void)
{
    Pair p;
    g_autofree char *stream = scratch("qemu-stream.bin");

    if (!interop_need("qemu-system-x86_64")) {
        return;
    }
    pair_init(&p, false, "-", "--");
    p.m.src = qemu_source(&p, "-S");
    qtest_set_caps(p.m.src, "block", "zero-blocks", NULL);
    json_node_unref(qtest_qmp_ok(p.m.src, "{\"execute\": \"migrate\", \"arguments\": "
                                 "{\"uri\": \"exec:cat > %s\"}}", stream));
    JsonNode *info = qtest_migrate_wait(p.m.src, MF_MIGRATE_TIMEOUT_MS);
    g_assert_cmpstr(qtest_json_str(info, "status"), ==, "completed");
    json_node_unref(info);
    p.m.dst = qtest_daemon_start("dst", "--drive id=disk0,file=%s --incoming file:%s",
                                 p.m.dst_disk, stream);
    json_node_unref(qtest_migrate_wait_status(p.m.dst, "completed", MF_STATE_TIMEOUT_MS));
    qtest_wait_runstate(p.m.dst, "paused", MF_STATE_TIMEOUT_MS);
    assert_same_disk(&p);
    unlink(stream);
    pair_free(&p);
}

/* blkmigd --machine names another machine than QEMU's: refused at the
 * configuration section, naming both. */
static void test_to_blkmigd_wrong_machine(void)
{
    Pair p;

    if (!interop_need("qemu-system-x86_64")) {
        return;
    }
    pair_init(&p, false, "-", "--");
    p.m.dst = qtest_daemon_start("dst", "--drive id=disk0,file=%s --machine pc "
                                 "--incoming %s", p.m.dst_disk, p.m.uri);
    p.m.src = qemu_source(&p, NULL);
    qtest_set_caps(p.m.src, "block", NULL);
    qtest_migrate_start(p.m.src, p.m.uri);
    JsonNode *d = qtest_migrate_wait_status(p.m.dst, "failed", MF_STATE_TIMEOUT_MS);
    mf_assert_contains(qtest_json_str(d, "error-desc"),
                       "the source's machine type is 'none', this destination's is 'pc'");
    mf_assert_runstate(p.m.dst, "inmigrate");
    json_node_unref(d);
    pair_free(&p);
}

/* ---- blkmigd -> QEMU ---- */

/* A live source (the built-in workload writes while it moves) with
 * qemu-compat and no return path.  QEMU 7.2's records resend a whole
 * 1 MiB chunk for each dirty block, so the guest writes few, larger
 * blocks: 4 KiB blocks at a few MiB/s would keep every chunk of this
 * small disk dirty and the migration would never converge. */
static QTestDaemon *blkmigd_source(Pair *p, bool zero_blocks)
{
    QTestDaemon *d = qtest_daemon_start("src", "--drive id=disk0,file=%s --machine "
                                        QEMU_PC_MACHINE " %s --workload drive=disk0,rate=1,"
                                        "bs=64k,seed=9", p->m.src_disk, p->src_obj);

    qtest_set_caps(d, "block", "qemu-compat", zero_blocks ? "zero-blocks" : NULL, NULL);
    json_node_unref(qtest_qmp_ok(d, "{\"execute\": \"migrate-set-capabilities\", "
                                 "\"arguments\": {\"capabilities\": [{\"capability\": "
                                 "\"return-path\", \"state\": false}]}}"));
    return d;
}

static QTestDaemon *qemu_destination(Pair *p)
{
    return qtest_qemu_start("qdst", QEMU_DST_ARGS " %s -drive file=%s,format=raw,if=none,"
                            "id=disk0 -incoming defer", p->dst_obj, p->m.dst_disk);
}

static void blkmigd_to_qemu(bool tls, bool zero_blocks)
{
    Pair p;

    if (!interop_need("qemu-system-x86_64")) {
        return;
    }
    pair_init(&p, tls, "--", "-");
    p.m.dst = qemu_destination(&p);
    p.m.src = blkmigd_source(&p, zero_blocks);
    set_tls(&p);
    json_node_unref(qtest_qmp_ok(p.m.dst, "{\"execute\": \"migrate-incoming\", "
                                 "\"arguments\": {\"uri\": \"%s\"}}", p.m.uri));
    qtest_migrate_start(p.m.src, p.m.uri);
    json_node_unref(mf_wait_completed(&p.m));
    assert_same_disk(&p);
    mf_quit(&p.m);
    pair_free(&p);
}

static void test_from_blkmigd(void)
{
    blkmigd_to_qemu(false, true);
}

static void test_from_blkmigd_no_zero_blocks(void)
{
    blkmigd_to_qemu(false, false);
}

static void test_from_blkmigd_tls(void)
{
    blkmigd_to_qemu(true, true);
}

/* A stream blkmigd saved with qemu-compat, loaded by QEMU from
 * exec:cat FILE. */
static void test_from_blkmigd_file(void)
{
    Pair p;
    g_autofree char *stream = scratch("blkmig-stream.bin");
    g_autofree char *uri = g_strdup_printf("file:%s", stream);

    if (!interop_need("qemu-system-x86_64")) {
        return;
    }
    pair_init(&p, false, "--", "-");
    p.m.src = blkmigd_source(&p, true);
    qtest_migrate_start(p.m.src, uri);
    JsonNode *info = qtest_migrate_wait(p.m.src, MF_MIGRATE_TIMEOUT_MS);
    g_assert_cmpstr(qtest_json_str(info, "status"), ==, "completed");
    json_node_unref(info);
    p.m.dst = qemu_destination(&p);
    json_node_unref(qtest_qmp_ok(p.m.dst, "{\"execute\": \"migrate-incoming\", "
                                 "\"arguments\": {\"uri\": \"exec:cat %s\"}}", stream));
    json_node_unref(qtest_migrate_wait_status(p.m.dst, "completed", MF_STATE_TIMEOUT_MS));
    qtest_wait_runstate(p.m.dst, "running", MF_STATE_TIMEOUT_MS);
    assert_same_disk(&p);
    unlink(stream);
    pair_free(&p);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/qemu-migration/to-blkmigd/tcp", test_to_blkmigd);
    g_test_add_func("/qemu-migration/to-blkmigd/tcp-no-zero-blocks",
                    test_to_blkmigd_no_zero_blocks);
    g_test_add_func("/qemu-migration/to-blkmigd/tls", test_to_blkmigd_tls);
    g_test_add_func("/qemu-migration/to-blkmigd/file", test_to_blkmigd_file);
    g_test_add_func("/qemu-migration/to-blkmigd/wrong-machine", test_to_blkmigd_wrong_machine);
    g_test_add_func("/qemu-migration/from-blkmigd/tcp", test_from_blkmigd);
    g_test_add_func("/qemu-migration/from-blkmigd/tcp-no-zero-blocks",
                    test_from_blkmigd_no_zero_blocks);
    g_test_add_func("/qemu-migration/from-blkmigd/tls", test_from_blkmigd_tls);
    g_test_add_func("/qemu-migration/from-blkmigd/file", test_from_blkmigd_file);
    return g_test_run();
}
