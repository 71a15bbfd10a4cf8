/* A map of a valid stream made by the real save path: where its framing,
 * length fields, record headers, sections and records are, so mutations
 * can be aimed at them and prefix cuts made at every field.  The stream
 * is walked by the tests' one decoder (tests/lib/stream-decode). */
#include <glib.h>

#include "migration/block-migration.h"
#include "migration/savevm.h"
#include "../lib/stream-decode.h"
#include "stream-fuzz.h"

/* A field of LEN bytes at OFF: a cut at its start, all of it framing. */
static void map_field(StreamMap *m, size_t off, size_t len)
{
    g_array_append_val(m->cuts, off);
    for (size_t i = off; i < off + len; i++) {
        g_array_append_val(m->framing, i);
    }
}

/* The u8 length at POS and the LEN bytes of name after it (a drive id or
 * a section idstr). */
static void map_name(StreamMap *m, size_t pos, size_t len)
{
    g_array_append_val(m->len_bytes, pos);
    map_field(m, pos, 1);
    map_field(m, pos + 1, len);
}

/* A be32 length field at POS, listed in LIST. */
static void map_len32(StreamMap *m, GArray *list, size_t pos)
{
    g_array_append_val(list, pos);
    map_field(m, pos, 4);
}

/* What follows the drive id of a DEVICE_BLOCK record: span length,
 * compression header, payload. */
static void map_block_payload(StreamMap *m, const SdRecord *r)
{
    if (r->flags & BLK_MIG_FLAG_SPAN) {
        map_len32(m, m->span_lens, r->span_len_pos);
    }
    if (r->flags & BLK_MIG_FLAG_ZERO_BLOCK) {
        return;
    }
    if (r->sum_pos) {
        map_field(m, r->sum_pos, 16);       /* block-checksum digest */
    }
    if (r->flags & BLK_MIG_FLAG_COMPRESSED) {
        Span data = { r->data_pos, r->data_len };

        map_field(m, r->comp_pos, 1);       /* algorithm */
        map_len32(m, m->comp_lens, r->comp_len_pos);
        g_array_append_val(m->comp_payloads, data);
    }
    g_array_append_val(m->cuts, r->data_pos);
}

static void map_record(StreamMap *m, const SdRecord *r)
{
    Span rec = { r->pos, r->end - r->pos };

    g_array_append_val(m->rec_headers, r->pos);
    map_field(m, r->pos, 8);
    if (r->flags & (BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_DEVICE_SIZE)) {
        map_name(m, r->id_pos, r->id_len);
    }
    if (r->flags & BLK_MIG_FLAG_DEVICE_SIZE) {
        map_field(m, r->size_pos, 8);
    } else if (r->flags & BLK_MIG_FLAG_DEVICE_BLOCK) {
        map_block_payload(m, r);
    } else if (r->flags & BLK_MIG_FLAG_CHANNELS) {
        map_field(m, r->channels_pos, 4 + BLK_MIG_MULTIFD_ID_LEN);
    }
    g_array_append_val(m->records, rec);
}

/* Type, id, the idstr, instance and version of START/FULL, the records,
 * the footer. */
static void map_section(StreamMap *m, const SdStream *s, const SdSection *sec)
{
    g_array_append_val(m->sections, sec->type_pos);
    map_field(m, sec->type_pos, 1);
    map_field(m, sec->type_pos + 1, 4);
    if (sec->type == QEMU_VM_SECTION_START || sec->type == QEMU_VM_SECTION_FULL) {
        size_t after = sec->idstr_pos + 1 + sec->idstr_len;

        map_name(m, sec->idstr_pos, sec->idstr_len);
        map_field(m, after, 4);
        map_field(m, after + 4, 4);
    }
    if (sec->is_verify) {
        map_field(m, sec->verify_pos, 12);  /* salt, drive count */
        g_array_append_val(m->cuts, sec->verify_end);
    }
    for (guint i = 0; i < sec->n_records; i++) {
        map_record(m, sd_record(s, sec->first_record + i));
    }
    map_field(m, sec->footer_pos, 1);
    map_field(m, sec->footer_pos + 1, 4);
}

static GArray *offsets_new(void)
{
    return g_array_new(false, false, sizeof(size_t));
}

static StreamMap *stream_map_new(void)
{
    StreamMap *m = g_new0(StreamMap, 1);

    m->framing = offsets_new();
    m->len_bytes = offsets_new();
    m->span_lens = offsets_new();
    m->comp_lens = offsets_new();
    m->comp_payloads = g_array_new(false, false, sizeof(Span));
    m->rec_headers = offsets_new();
    m->sections = offsets_new();
    m->records = g_array_new(false, false, sizeof(Span));
    m->cuts = offsets_new();
    return m;
}

/* Our own save output: a stream the decoder cannot walk is a bug in this
 * test (or a format change it has not caught up with). */
StreamMap *map_stream(GBytes *stream)
{
    gsize len;
    const uint8_t *p = g_bytes_get_data(stream, &len);
    StreamMap *m = stream_map_new();
    SdStream s;

    sd_decode_or_die(p, len, &s);
    map_field(m, 0, 4);
    map_field(m, 4, 4);
    for (guint i = 0; i < s.sections->len; i++) {
        map_section(m, &s, sd_section(&s, i));
    }
    g_array_append_val(m->sections, s.eof_pos);
    map_field(m, s.eof_pos, 1);
    sd_stream_clear(&s);
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
