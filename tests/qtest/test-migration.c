/* Live block migration between two real blkmigd daemons, driven over QMP
 * only, checked on the real sparse disk files. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "migration-framework.h"
#include "migration/block-migration.h"
#include "migration/savevm.h"
#include "util/bswap.h"
#include "../lib/stream-decode.h"

#define CHUNK MIB
/* Wire cost of a ZERO_BLOCK record: be64 header, u8 length, the id. */
#define ZERO_RECORD_BYTES (8 + 1 + sizeof(MF_DRIVE_ID) - 1)
/* Headers, PROGRESS and EOS records, DEVICE_SIZE records: a bound. */
#define STREAM_OVERHEAD_BYTES (64 * KIB)

/* 1 GiB idle sparse disk, zero-blocks on: only data chunks cost wire
 * bandwidth and the destination stays as thin as the source. */
static void test_sparse_zero_blocks(void)
{
    Migration m = { 0 };
    uint64_t size = GIB;
    uint64_t data_chunks = mf_make_src_disk(&m, size, 1, 200, 64 * KIB);
    mf_start_pair(&m, size, "");
    qtest_set_caps(m.src, "block", "zero-blocks", "events", NULL);

    gint64 t0 = g_get_monotonic_time();
    qtest_migrate_start(m.src, m.uri);
    JsonNode *info = mf_wait_completed(&m);
    g_test_message("migrated in %.2f s", (g_get_monotonic_time() - t0) / 1e6);

    mf_assert_identical(m.src_disk, m.dst_disk);
    mf_assert_thin(m.src_disk, m.dst_disk, 0);

    uint64_t total_chunks = size / CHUNK;
    uint64_t bound = data_chunks * CHUNK * 101 / 100 +
                     (total_chunks - data_chunks) * ZERO_RECORD_BYTES + STREAM_OVERHEAD_BYTES;
    gint64 transferred = qtest_json_int(info, "disk.transferred");
    g_test_message("%" G_GUINT64_FORMAT " data chunks; transferred %" G_GINT64_FORMAT
                   ", bound %" G_GUINT64_FORMAT, data_chunks, transferred, bound);
    /* Random data does not compress: at least every non-zero block went. */
    g_assert_cmpint(transferred, >=, qtest_disk_nonzero_bytes(m.src_disk));
    g_assert_cmpint(transferred, <=, bound);
    g_assert_cmpint(qtest_json_int(info, "disk.data-blocks"), ==, data_chunks);
    g_assert_cmpint(qtest_json_int(info, "disk.zero-blocks"), ==, total_chunks - data_chunks);
    g_assert_cmpint(qtest_json_int(info, "disk.total"), ==, size);
    g_assert_cmpint(qtest_json_int(info, "disk.remaining"), ==, 0);
    g_assert_cmpint(qtest_json_int(info, "total-time"), >, 0);
    json_node_unref(info);

    g_autofree char *trail = mf_migration_event_trail(m.src);
    g_test_message("MIGRATION events: %s", trail);
    g_assert_true(g_str_has_prefix(trail, "setup,active"));
    g_assert_true(g_str_has_suffix(trail, ",completed"));
    mf_free(&m);
}

/* zero-blocks off: every chunk travels whole, as QEMU would send it. */
static void test_sparse_no_zero_blocks(void)
{
    Migration m = { 0 };
    uint64_t size = GIB;
    mf_make_src_disk(&m, size, 2, 200, 64 * KIB);
    mf_start_pair(&m, size, "");
    qtest_set_caps(m.src, "block", NULL);
    qtest_set_params(m.src, "\"max-bandwidth\": 0");

    gint64 t0 = g_get_monotonic_time();
    qtest_migrate_start(m.src, m.uri);
    JsonNode *info = mf_wait_completed(&m);
    g_test_message("migrated in %.2f s", (g_get_monotonic_time() - t0) / 1e6);

    mf_assert_identical(m.src_disk, m.dst_disk);
    /* Zero runs inside the whole chunks still become holes on arrival. */
    mf_assert_thin(m.src_disk, m.dst_disk, 0);
    g_assert_cmpint(qtest_json_int(info, "disk.transferred"), >=, size);
    g_assert_cmpint(qtest_json_int(info, "disk.zero-blocks"), ==, 0);
    g_assert_cmpint(qtest_json_int(info, "disk.data-blocks"), ==, size / CHUNK);
    json_node_unref(info);
    mf_free(&m);
}

/* Bytes in 4 KiB blocks that differ between two equally long files. */
static uint64_t differing_bytes(const char *a, const char *b)
{
    uint64_t size = qtest_file_size(a);
    g_assert_cmpuint(qtest_file_size(b), ==, size);
    int fa = open(a, O_RDONLY | O_CLOEXEC), fb = open(b, O_RDONLY | O_CLOEXEC);
    g_assert_cmpint(fa, >=, 0);
    g_assert_cmpint(fb, >=, 0);
    guint8 *ba = g_malloc(CHUNK), *bb = g_malloc(CHUNK);
    uint64_t diff = 0;
    for (uint64_t off = 0; off < size; off += CHUNK) {
        size_t len = MIN(CHUNK, size - off);
        g_assert_cmpint(pread(fa, ba, len, off), ==, len);
        g_assert_cmpint(pread(fb, bb, len, off), ==, len);
        for (size_t i = 0; i < len; i += 4096) {
            diff += memcmp(ba + i, bb + i, MIN(4096, len - i)) ? MIN(4096, len - i) : 0;
        }
    }
    g_free(ba);
    g_free(bb);
    close(fa);
    close(fb);
    return diff;
}

/* A guest writing 50 MiB/s during the migration. */
static void test_workload(void)
{
    const double rate_mibs = 50;
    Migration m = { 0 };
    uint64_t size = 512 * MIB;
    mf_make_src_disk(&m, size, 3, 64, 256 * KIB);
    mf_start_pair(&m, size, "--workload drive=" MF_DRIVE_ID ",pattern=randwrite,bs=4k,"
                            "rate=50,zero-frac=0.1,seed=7");
    qtest_set_caps(m.src, "block", NULL);
    qtest_set_params(m.src, "\"max-bandwidth\": 0, \"downtime-limit\": 2000");

    /* Freeze the guest to take a stable copy, then let it run again and
     * start migrating at once: what the guest wrote before the migration
     * began is bounded by the rate times that short window. */
    json_node_unref(qtest_qmp_ok(m.src, "{\"execute\": \"stop\"}"));
    g_autofree char *before = qtest_path("src-before.raw");
    qtest_disk_copy(m.src_disk, before);
    gint64 t0 = g_get_monotonic_time();
    json_node_unref(qtest_qmp_ok(m.src, "{\"execute\": \"cont\"}"));
    qtest_migrate_start(m.src, m.uri);
    gint64 t1 = g_get_monotonic_time();

    JsonNode *info = mf_wait_completed(&m);
    double secs = (g_get_monotonic_time() - t1) / 1e6;
    mf_assert_identical(m.src_disk, m.dst_disk);

    uint64_t changed = differing_bytes(before, m.src_disk);
    uint64_t before_start = (uint64_t)(2 * rate_mibs * MIB * (t1 - t0) / 1e6) + MIB;
    g_test_message("migrated in %.2f s; guest changed %" G_GUINT64_FORMAT " bytes, at most %"
                   G_GUINT64_FORMAT " of them before migrate; dirty-sync-count %" G_GINT64_FORMAT
                   ", downtime %" G_GINT64_FORMAT " ms", secs, changed, before_start,
                   qtest_json_int(info, "disk.dirty-sync-count"),
                   qtest_json_int(info, "downtime"));
    g_assert_cmpuint(changed, >, before_start);
    g_assert_cmpint(qtest_json_int(info, "disk.dirty-sync-count"), >=, 1);
    g_assert_cmpint(qtest_json_int(info, "disk.transferred"), >=, size);
    /* The switchover respected the 2 s limit (with room for a busy host). */
    g_assert_cmpint(qtest_json_int(info, "downtime"), <=, 2 * 2000);
    json_node_unref(info);
    unlink(before);
    mf_free(&m);
}

/* 4 GiB with 64 MiB of scattered data at the default 128 MiB/s: the size
 * and rate where QEMU 7.2 reports completed with data missing. */
static void test_sparse_4g_default_bandwidth(void)
{
    Migration m = { 0 };
    uint64_t size = 4 * GIB;
    mf_make_src_disk(&m, size, 4, 256, 256 * KIB);
    mf_start_pair(&m, size, "");
    qtest_set_caps(m.src, "block", "zero-blocks", NULL);

    JsonNode *p = qtest_qmp_ok(m.src, "{\"execute\": \"query-migrate-parameters\"}");
    g_assert_cmpint(qtest_json_int(p, "max-bandwidth"), ==, 128 * MIB);
    json_node_unref(p);

    gint64 t0 = g_get_monotonic_time();
    qtest_migrate_start(m.src, m.uri);
    json_node_unref(mf_wait_completed(&m));
    g_test_message("migrated in %.2f s", (g_get_monotonic_time() - t0) / 1e6);
    mf_assert_identical(m.src_disk, m.dst_disk);
    mf_assert_thin(m.src_disk, m.dst_disk, 0);
    mf_free(&m);
}

/* Poll until the source is active and has sent something. */
static void wait_active_transfer(QTestDaemon *src)
{
    gint64 deadline = g_get_monotonic_time() + MF_STATE_TIMEOUT_MS * 1000LL;
    for (;;) {
        JsonNode *info = qtest_migrate_wait_status(src, "active", MF_STATE_TIMEOUT_MS);
        JsonNode *tr = qtest_json_get(info, "disk.transferred");
        bool moving = tr && json_node_get_int(tr) > 0;
        json_node_unref(info);
        if (moving) {
            return;
        }
        g_assert_cmpint(g_get_monotonic_time(), <, deadline);
        g_usleep(20 * 1000);
    }
}

static void test_cancel(void)
{
    Migration m = { 0 };
    uint64_t size = GIB;
    mf_make_src_disk(&m, size, 5, 100, 64 * KIB);
    g_autofree char *before = qtest_path("src-before.raw");
    qtest_disk_copy(m.src_disk, before);
    mf_start_pair(&m, size, "");
    qtest_set_caps(m.src, "block", NULL);
    qtest_set_params(m.src, "\"max-bandwidth\": %" G_GUINT64_FORMAT, 32 * MIB);

    qtest_migrate_start(m.src, m.uri);
    wait_active_transfer(m.src);
    g_usleep(G_USEC_PER_SEC);
    json_node_unref(qtest_migrate_wait_status(m.src, "active", 0));
    json_node_unref(qtest_qmp_ok(m.src, "{\"execute\": \"migrate_cancel\"}"));

    JsonNode *info = qtest_migrate_wait(m.src, MF_STATE_TIMEOUT_MS);
    g_assert_cmpstr(qtest_json_str(info, "status"), ==, "cancelled");
    g_assert_cmpint(qtest_json_int(info, "disk.transferred"), <, size / 2);
    json_node_unref(info);
    qtest_wait_runstate(m.src, "running", MF_STATE_TIMEOUT_MS);
    mf_assert_identical(before, m.src_disk);

    /* The abandoned destination must not start a half-copied guest. */
    info = qtest_migrate_wait(m.dst, MF_STATE_TIMEOUT_MS);
    g_assert_cmpstr(qtest_json_str(info, "status"), ==, "failed");
    json_node_unref(info);
    mf_assert_runstate(m.dst, "inmigrate");
    qtest_daemon_kill(m.dst);

    /* A second attempt to a new destination (no disk there yet: create=on
     * refuses the half-copied one) succeeds. */
    g_free(m.uri);
    m.uri = qtest_tcp_uri();
    unlink(m.dst_disk);
    m.dst = mf_start_dst(&m, "dst2", size);
    qtest_set_params(m.src, "\"max-bandwidth\": 0");
    qtest_migrate_start(m.src, m.uri);
    json_node_unref(mf_wait_completed(&m));
    mf_assert_identical(m.src_disk, m.dst_disk);
    unlink(before);
    mf_free(&m);
}

static void test_dest_smaller(void)
{
    Migration m = { 0 };
    mf_make_src_disk(&m, GIB, 6, 20, 64 * KIB);
    mf_start_pair(&m, 512 * MIB, "");
    qtest_set_caps(m.src, "block", "zero-blocks", NULL);
    qtest_migrate_start(m.src, m.uri);

    JsonNode *dinfo = qtest_migrate_wait(m.dst, MF_MIGRATE_TIMEOUT_MS);
    JsonNode *sinfo = qtest_migrate_wait(m.src, MF_MIGRATE_TIMEOUT_MS);
    g_assert_cmpstr(qtest_json_str(dinfo, "status"), ==, "failed");
    g_assert_cmpstr(qtest_json_str(sinfo, "status"), ==, "failed");
    const char *derr = qtest_json_str(dinfo, "error-desc");
    const char *serr = qtest_json_str(sinfo, "error-desc");
    g_test_message("destination: %s", derr);
    g_test_message("source: %s", serr);
    g_assert_nonnull(strstr(derr, "'" MF_DRIVE_ID "'"));
    g_assert_nonnull(strstr(derr, "1073741824"));
    g_assert_nonnull(strstr(derr, "536870912"));
    g_assert_nonnull(strstr(serr, derr));

    mf_assert_runstate(m.src, "running");
    mf_assert_runstate(m.dst, "inmigrate");
    json_node_unref(dinfo);
    json_node_unref(sinfo);
    mf_free(&m);
}

static void test_dest_killed(void)
{
    Migration m = { 0 };
    mf_make_src_disk(&m, GIB, 7, 50, 64 * KIB);
    mf_start_pair(&m, GIB, "");
    qtest_set_caps(m.src, "block", NULL);
    qtest_set_params(m.src, "\"max-bandwidth\": %" G_GUINT64_FORMAT, 16 * MIB);
    qtest_migrate_start(m.src, m.uri);
    wait_active_transfer(m.src);
    g_usleep(G_USEC_PER_SEC);

    qtest_daemon_kill(m.dst);
    m.dst = NULL;
    gint64 t0 = g_get_monotonic_time();
    JsonNode *info = qtest_migrate_wait(m.src, MF_STATE_TIMEOUT_MS);
    g_test_message("source noticed in %.2f s", (g_get_monotonic_time() - t0) / 1e6);
    mf_log_json("source", info);
    g_assert_cmpstr(qtest_json_str(info, "status"), ==, "failed");
    g_assert_cmpstr(qtest_json_str(info, "error-desc"), !=, "");
    json_node_unref(info);
    mf_assert_runstate(m.src, "running");
    g_assert_true(qtest_daemon_alive(m.src));
    json_node_unref(qtest_qmp_ok(m.src, "{\"execute\": \"query-block\"}"));
    mf_free(&m);
}

/* ---- corrupt streams ---- */


/* Our own save output, as DESIGN.md describes it: every section is
 * "block" (the only handler), every record names our drive, SPAN lengths
 * are whole sectors inside one chunk, whole chunks are aligned and
 * compressed payloads are smaller than what they stand for. */
static void assert_stream_sane(const guint8 *buf, const SdStream *map)
{
    for (guint i = 0; i < map->sections->len; i++) {
        const SdSection *s = sd_section(map, i);
        if (s->type == QEMU_VM_SECTION_START || s->type == QEMU_VM_SECTION_FULL) {
            g_assert_cmpuint(s->instance, ==, 0);
            g_assert_cmpuint(s->version, ==, 1);
        }
    }
    for (guint i = 0; i < map->records->len; i++) {
        const SdRecord *r = sd_record(map, i);
        /* No stream option without block-incremental. */
        g_assert_cmphex(r->flags & BLK_MIG_FLAG_OPTION, ==, 0);
        if (r->id_len) {
            g_assert_cmpmem(buf + r->id_pos + 1, r->id_len, MF_DRIVE_ID, strlen(MF_DRIVE_ID));
        }
        if (!(r->flags & BLK_MIG_FLAG_DEVICE_BLOCK)) {
            continue;
        }
        if (r->flags & BLK_MIG_FLAG_SPAN) {
            g_assert_cmpuint(r->length % 512, ==, 0);
            g_assert_cmpuint(r->offset % CHUNK + r->length, <=, CHUNK);
        } else {
            g_assert_cmpuint(r->offset % CHUNK, ==, 0);
        }
        if (r->flags & BLK_MIG_FLAG_ZERO_BLOCK) {
            g_assert_false(r->flags & BLK_MIG_FLAG_COMPRESSED);
        }
        if (r->comp_pos) {
            g_assert_true(buf[r->comp_pos] == 1 || buf[r->comp_pos] == 2);
            g_assert_cmpuint(r->data_len, <, r->length);
        }
    }
}

/* The destination's disk before loading: a pattern no record carries. */
static guint64 pattern_word(uint64_t off)
{
    return (off / 8 + 1) * UINT64_C(0x9E3779B97F4A7C15);
}

static void write_pattern_disk(const char *path, uint64_t size)
{
    guint64 *buf = g_malloc(CHUNK);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    g_assert_cmpint(fd, >=, 0);
    for (uint64_t off = 0; off < size; off += CHUNK) {
        for (size_t i = 0; i < CHUNK / 8; i++) {
            buf[i] = pattern_word(off + i * 8);
        }
        g_assert_cmpint(pwrite(fd, buf, CHUNK, off), ==, CHUNK);
    }
    close(fd);
    g_free(buf);
}

/* Every byte of PATH outside the ranges written by records that end before
 * stream position LIMIT still holds the pattern. */
static void assert_untouched_outside(const char *path, uint64_t size, const SdStream *map,
                                     size_t limit)
{
    const uint64_t sector = 512;
    g_autofree gboolean *may_write = g_new0(gboolean, size / sector);
    for (guint i = 0; i < map->records->len; i++) {
        const SdRecord *r = &g_array_index(map->records, SdRecord, i);
        if (r->end <= limit && (r->flags & BLK_MIG_FLAG_DEVICE_BLOCK)) {
            uint64_t end = MIN(r->offset + r->length, size);
            for (uint64_t off = r->offset; off < end; off += sector) {
                may_write[off / sector] = TRUE;
            }
        }
    }
    g_autofree char *text = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(path, &text, &len, NULL));
    g_assert_cmpuint(len, ==, size);
    for (uint64_t off = 0; off < size; off += 8) {
        guint64 word;
        memcpy(&word, text + off, 8);
        if (!may_write[off / sector] && word != pattern_word(off)) {
            g_error("byte %" G_GUINT64_FORMAT " of the destination changed although no "
                    "record before the corruption covers it", off);
        }
    }
}

typedef struct Corruption {
    const char *name;
    const char *expect;      /* substring of the destination's error-desc */
    size_t position;         /* stream position where the damage starts */
    GByteArray *bytes;       /* the damaged stream */
} Corruption;

static Corruption corrupt(const guint8 *good, size_t len, const char *name,
                          const char *expect, size_t position)
{
    Corruption c = { name, expect, position, g_byte_array_new() };
    g_byte_array_append(c.bytes, good, len);
    return c;
}

/* Damaged copies of GOOD, each at a position computed from MAP around a
 * data record in the middle of the stream. */
static GArray *make_corruptions(const guint8 *good, size_t len, const SdStream *map)
{
    GArray *list = g_array_new(FALSE, FALSE, sizeof(Corruption));
    GPtrArray *data = g_ptr_array_new();
    for (guint i = 0; i < map->records->len; i++) {
        SdRecord *r = &g_array_index(map->records, SdRecord, i);
        if (sd_is_data_record(r)) {
            g_ptr_array_add(data, r);
        }
    }
    g_assert_cmpuint(data->len, >=, 3);
    const SdRecord *target = data->pdata[data->len / 2];
    const SdSection *tsec = &g_array_index(map->sections, SdSection, target->section);
    /* Some data must precede the damaged section, or the check that the
     * destination kept its old bytes outside them proves little. */
    const SdRecord *first_data = data->pdata[0];
    g_assert_cmpuint(first_data->end, <, tsec->type_pos);
    const SdSection *first = &g_array_index(map->sections, SdSection, 0);
    g_ptr_array_free(data, TRUE);
    Corruption c;

    c = corrupt(good, len, "bad magic", "invalid stream magic", 0);
    c.bytes->data[0] ^= 0xff;
    g_array_append_val(list, c);

    c = corrupt(good, len, "unknown section type", "unknown section type 0x55",
                tsec->type_pos);
    c.bytes->data[tsec->type_pos] = 0x55;
    g_array_append_val(list, c);

    c = corrupt(good, len, "unknown section idstr", "unknown section 'xlock'",
                first->type_pos);
    c.bytes->data[first->idstr_pos + 1] = 'x';
    g_array_append_val(list, c);

    c = corrupt(good, len, "OPTION flag on a data record", "conflicting flags 0x1",
                target->pos);
    c.bytes->data[target->pos + 6] |= BLK_MIG_FLAG_OPTION >> 8;
    g_array_append_val(list, c);

    c = corrupt(good, len, "unknown drive", "unknown drive 'diskZ'", target->pos);
    c.bytes->data[target->id_pos + target->id_len] = 'Z';
    g_array_append_val(list, c);

    c = corrupt(good, len, "offset beyond the disk", "beyond", target->pos);
    st_be64(c.bytes->data + target->pos, (64 * MIB + target->offset % CHUNK) | target->flags);
    g_array_append_val(list, c);

    size_t cut = target->data_pos + target->data_len / 2;
    c = corrupt(good, len, "truncated data record", "unexpected end of stream", target->pos);
    g_byte_array_set_size(c.bytes, cut);
    g_array_append_val(list, c);

    c = corrupt(good, len, "wrong footer", "section footer mismatch", tsec->footer_pos);
    c.bytes->data[tsec->footer_pos] = 0x41;
    g_array_append_val(list, c);
    return list;
}

/* Load a damaged stream into a pre-filled destination and check it fails
 * cleanly: named error, daemon alive, guest not started, disk untouched
 * outside the records that came before the damage. */
static void check_corruption(const Corruption *c, const SdStream *map, uint64_t size,
                             guint index)
{
    g_autofree char *sname = g_strdup_printf("corrupt-%u.stream", index);
    g_autofree char *dname = g_strdup_printf("corrupt-%u.raw", index);
    g_autofree char *stream = qtest_path(sname);
    g_autofree char *disk = qtest_path(dname);
    g_assert_true(g_file_set_contents(stream, (const char *)c->bytes->data, c->bytes->len,
                                      NULL));
    write_pattern_disk(disk, size);

    QTestDaemon *dst = qtest_daemon_start("corrupt", "--drive id=" MF_DRIVE_ID ",file=%s "
                                          "--incoming file:%s", disk, stream);
    JsonNode *info = qtest_migrate_wait(dst, MF_MIGRATE_TIMEOUT_MS);
    const char *status = qtest_json_str(info, "status");
    JsonNode *err = qtest_json_get(info, "error-desc");
    const char *desc = err ? json_node_get_string(err) : "(none)";
    g_test_message("%s: %s: %s", c->name, status, desc);
    g_assert_cmpstr(status, ==, "failed");
    if (!strstr(desc, c->expect)) {
        g_error("%s: error-desc '%s' does not contain '%s'", c->name, desc, c->expect);
    }
    json_node_unref(info);

    g_assert_true(qtest_daemon_alive(dst));
    mf_assert_runstate(dst, "inmigrate");
    assert_untouched_outside(disk, size, map, c->position);
    qtest_daemon_kill(dst);
    unlink(stream);
    unlink(disk);
}

static void test_corrupt_stream(void)
{
    const uint64_t size = 8 * MIB;
    Migration m = { 0 };
    mf_make_src_disk(&m, size, 8, 12, 64 * KIB);
    g_autofree char *good_path = qtest_path("good.stream");
    g_autofree char *file_uri = g_strconcat("file:", good_path, NULL);

    /* A good stream saved by a real source; the bandwidth limit makes it
     * cut the disk into several PART sections (a tenth of a second's worth
     * each), so damage can sit after sections already applied. */
    m.src = mf_start_src(&m, "");
    qtest_set_caps(m.src, "block", "zero-blocks", NULL);
    qtest_set_params(m.src, "\"max-bandwidth\": %" G_GUINT64_FORMAT, MIB);
    qtest_migrate_start(m.src, file_uri);
    JsonNode *info = qtest_migrate_wait(m.src, MF_MIGRATE_TIMEOUT_MS);
    g_assert_cmpstr(qtest_json_str(info, "status"), ==, "completed");
    json_node_unref(info);
    mf_assert_runstate(m.src, "postmigrate");

    /* It loads into a fresh destination. */
    mf_load_saved(&m, file_uri, size);
    qtest_wait_runstate(m.dst, "running", MF_STATE_TIMEOUT_MS);
    mf_assert_identical(m.src_disk, m.dst_disk);
    mf_assert_thin(m.src_disk, m.dst_disk, 0);

    g_autofree char *good = NULL;
    gsize len = 0;
    g_assert_true(g_file_get_contents(good_path, &good, &len, NULL));
    SdStream map;
    sd_decode_or_die((const guint8 *)good, len, &map);
    assert_stream_sane((const guint8 *)good, &map);
    g_test_message("good stream: %zu bytes, %u sections, %u records", (size_t)len,
                   map.sections->len, map.records->len);

    GArray *list = make_corruptions((const guint8 *)good, len, &map);
    for (guint i = 0; i < list->len; i++) {
        Corruption *c = &g_array_index(list, Corruption, i);
        check_corruption(c, &map, size, i);
        g_byte_array_unref(c->bytes);
    }
    g_array_free(list, TRUE);
    sd_stream_clear(&map);
    unlink(good_path);
    mf_free(&m);
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/migration/sparse-zero-blocks", test_sparse_zero_blocks);
    g_test_add_func("/migration/sparse-no-zero-blocks", test_sparse_no_zero_blocks);
    g_test_add_func("/migration/workload", test_workload);
    g_test_add_func("/migration/sparse-4g-default-bandwidth", test_sparse_4g_default_bandwidth);
    g_test_add_func("/migration/cancel", test_cancel);
    g_test_add_func("/migration/dest-smaller", test_dest_smaller);
    g_test_add_func("/migration/dest-killed", test_dest_killed);
    g_test_add_func("/migration/corrupt-stream", test_corrupt_stream);
    return g_test_run();
}
