/* A map of a valid stream made by the real save path: where its framing,
 * length fields, record headers, sections and records are, so mutations
 * can be aimed at them and prefix cuts made at every field. */
#include <glib.h>

#include "migration/block-migration.h"
#include "migration/savevm.h"
#include "stream-fuzz.h"

static void map_field(StreamMap *m, size_t off, size_t len)
{
    g_array_append_val(m->cuts, off);
    for (size_t i = off; i < off + len; i++) {
        g_array_append_val(m->framing, i);
    }
}

static void map_drive_id(StreamMap *m, const uint8_t *p, size_t *pos)
{
    g_array_append_val(m->len_bytes, *pos);
    map_field(m, *pos, 1);
    map_field(m, *pos + 1, p[*pos]);
    *pos += 1 + p[*pos];
}

/* A be32 length field at *POS, listed in LIST; returns its value. */
static uint32_t map_len32(StreamMap *m, GArray *list, const uint8_t *p, size_t *pos)
{
    uint32_t v = get32(p + *pos);

    g_array_append_val(list, *pos);
    map_field(m, *pos, 4);
    *pos += 4;
    return v;
}

/* What follows the drive id of a DEVICE_BLOCK record: span length,
 * compression header, payload. */
static size_t map_block_payload(StreamMap *m, const uint8_t *p, size_t pos, uint64_t flags)
{
    uint64_t payload = CHUNK;

    if (flags & BLK_MIG_FLAG_SPAN) {
        payload = map_len32(m, m->span_lens, p, &pos);
    }
    if (flags & BLK_MIG_FLAG_COMPRESSED) {
        Span data;

        map_field(m, pos, 1);       /* algorithm */
        pos++;
        payload = map_len32(m, m->comp_lens, p, &pos);
        data = (Span){ pos, payload };
        g_array_append_val(m->comp_payloads, data);
    }
    if (!(flags & BLK_MIG_FLAG_ZERO_BLOCK)) {
        g_array_append_val(m->cuts, pos);
        pos += payload;
    }
    return pos;
}

/* Records of one section up to and including EOS; returns the end. */
static size_t map_records(StreamMap *m, const uint8_t *p, size_t len, size_t pos)
{
    for (;;) {
        Span rec = { .off = pos };
        uint64_t flags;

        g_assert_cmpuint(pos + 8, <=, len);
        flags = get64(p + pos) & BLK_MIG_FLAGS_MASK;
        g_array_append_val(m->rec_headers, pos);
        map_field(m, pos, 8);
        pos += 8;
        if (flags & (BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_DEVICE_SIZE)) {
            map_drive_id(m, p, &pos);
        }
        if (flags & BLK_MIG_FLAG_DEVICE_SIZE) {
            map_field(m, pos, 8);
            pos += 8;
        } else if (flags & BLK_MIG_FLAG_DEVICE_BLOCK) {
            pos = map_block_payload(m, p, pos, flags);
        } else if (flags & BLK_MIG_FLAG_CHANNELS) {
            map_field(m, pos, 4 + BLK_MIG_MULTIFD_ID_LEN);
            pos += 4 + BLK_MIG_MULTIFD_ID_LEN;
        }
        g_assert_cmpuint(pos, <=, len);
        rec.len = pos - rec.off;
        g_array_append_val(m->records, rec);
        if (flags & BLK_MIG_FLAG_EOS) {
            return pos;
        }
    }
}

static size_t map_section_header(StreamMap *m, const uint8_t *p, size_t pos)
{
    uint8_t type = p[pos];

    g_array_append_val(m->sections, pos);
    map_field(m, pos, 1);
    map_field(m, pos + 1, 4);
    pos += 5;
    if (type == QEMU_VM_SECTION_START || type == QEMU_VM_SECTION_FULL) {
        map_drive_id(m, p, &pos);
        map_field(m, pos, 4);
        map_field(m, pos + 4, 4);
        pos += 8;
    }
    return pos;
}

static GArray *offsets_new(void)
{
    return g_array_new(false, false, sizeof(size_t));
}

/* Our own save output: any surprise here is a bug in this test (or a
 * format change it has not caught up with). */
StreamMap *map_stream(GBytes *stream)
{
    gsize len;
    const uint8_t *p = g_bytes_get_data(stream, &len);
    StreamMap *m = g_new0(StreamMap, 1);
    size_t pos = 8;

    m->framing = offsets_new();
    m->len_bytes = offsets_new();
    m->span_lens = offsets_new();
    m->comp_lens = offsets_new();
    m->comp_payloads = g_array_new(false, false, sizeof(Span));
    m->rec_headers = offsets_new();
    m->sections = offsets_new();
    m->records = g_array_new(false, false, sizeof(Span));
    m->cuts = offsets_new();
    map_field(m, 0, 4);
    map_field(m, 4, 4);
    for (;;) {
        g_assert_cmpuint(pos, <, len);
        if (p[pos] == QEMU_VM_EOF) {
            break;
        }
        pos = map_section_header(m, p, pos);
        pos = map_records(m, p, len, pos);
        g_assert_cmpuint(pos + 5, <, len);
        g_assert_cmpuint(p[pos], ==, QEMU_VM_SECTION_FOOTER);
        map_field(m, pos, 1);
        map_field(m, pos + 1, 4);
        pos += 5;
    }
    g_array_append_val(m->sections, pos);
    map_field(m, pos, 1);
    g_assert_cmpuint(pos + 1, ==, len);
    return m;
}

void stream_map_free(StreamMap *m)
{
    g_array_unref(m->framing);
    g_array_unref(m->len_bytes);
    g_array_unref(m->span_lens);
    g_array_unref(m->comp_lens);
    g_array_unref(m->comp_payloads);
    g_array_unref(m->rec_headers);
    g_array_unref(m->sections);
    g_array_unref(m->records);
    g_array_unref(m->cuts);
    g_free(m);
}
