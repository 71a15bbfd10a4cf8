/* The tests' one migration stream decoder (see stream-decode.h). */
#include "stream-decode.h"

#include <string.h>

#include "migration/block-migration.h"
#include "migration/disk-verify.h"
#include "migration/savevm.h"
#include "util/bswap.h"

#define SD_ERROR g_quark_from_static_string("stream-decode")

typedef struct Walk {
    const guint8 *buf;
    size_t len;
    size_t pos;
    GError **errp;
    SdStream *out;
} Walk;

/* Claim N bytes at the cursor; false (error set) when they are not there. */
static bool take(Walk *w, size_t n, size_t *at)
{
    if (w->len - w->pos < n) {
        g_set_error(w->errp, SD_ERROR, 0, "stream ends at byte %zu inside a field of %zu "
                    "bytes that starts there", w->len, n);
        return false;
    }
    if (at) {
        *at = w->pos;
    }
    w->pos += n;
    return true;
}

static bool take_u8(Walk *w, size_t *at, uint8_t *v)
{
    size_t pos;
    if (!take(w, 1, &pos)) {
        return false;
    }
    *v = w->buf[pos];
    if (at) {
        *at = pos;
    }
    return true;
}

static bool take_be32(Walk *w, size_t *at, uint32_t *v)
{
    size_t pos;
    if (!take(w, 4, &pos)) {
        return false;
    }
    *v = ld_be32(w->buf + pos);
    if (at) {
        *at = pos;
    }
    return true;
}

/* u8 length + bytes: a drive id or an idstr. */
static bool take_name(Walk *w, size_t *at, size_t *len)
{
    uint8_t n;
    if (!take_u8(w, at, &n) || !take(w, n, NULL)) {
        return false;
    }
    *len = n;
    return true;
}

/* DEVICE_BLOCK after the drive id: span length, compression header, data. */
static bool take_block_payload(Walk *w, SdRecord *r)
{
    uint32_t v;
    uint8_t algo;

    r->length = BLK_MIG_CHUNK_SIZE;
    if ((r->flags & BLK_MIG_FLAG_SPAN) && !take_be32(w, &r->span_len_pos, &v)) {
        return false;
    }
    if (r->flags & BLK_MIG_FLAG_SPAN) {
        r->length = v;
    }
    if (r->flags & BLK_MIG_FLAG_ZERO_BLOCK) {
        return true;
    }
    r->data_len = r->length;
    if (w->out->checksummed && !take(w, 16, &r->sum_pos)) {
        return false;
    }
    if (r->flags & BLK_MIG_FLAG_COMPRESSED) {
        if (!take_u8(w, &r->comp_pos, &algo) || !take_be32(w, &r->comp_len_pos, &v)) {
            return false;
        }
        r->data_len = v;
    }
    return take(w, r->data_len, &r->data_pos);
}

static bool take_record_body(Walk *w, SdRecord *r)
{
    if (r->flags & BLK_MIG_FLAG_CHANNELS) {
        return take(w, 4 + BLK_MIG_MULTIFD_ID_LEN, &r->channels_pos);
    }
    if (r->flags & BLK_MIG_FLAG_OPTION) {
        uint32_t code, len;
        if (!take_be32(w, &r->option_pos, &code) || !take_be32(w, NULL, &len)) {
            return false;
        }
        w->out->checksummed |= code == BLK_MIG_OPTION_CHECKSUM;
        return take(w, len, NULL);
    }
    if (!(r->flags & (BLK_MIG_FLAG_DEVICE_SIZE | BLK_MIG_FLAG_DEVICE_BLOCK))) {
        return true;
    }
    if (!take_name(w, &r->id_pos, &r->id_len)) {
        return false;
    }
    if (r->flags & BLK_MIG_FLAG_DEVICE_SIZE) {
        return take(w, 8, &r->size_pos);
    }
    return take_block_payload(w, r);
}

/* One record of section SECTION; *flags gets its flags. */
static bool take_record(Walk *w, guint section, unsigned *flags)
{
    SdRecord r = { .pos = w->pos, .section = section };

    if (!take(w, 8, NULL)) {
        return false;
    }
    uint64_t header = ld_be64(w->buf + r.pos);
    r.flags = header & BLK_MIG_FLAGS_MASK;
    r.offset = header & ~(uint64_t)BLK_MIG_FLAGS_MASK;
    if (!take_record_body(w, &r)) {
        return false;
    }
    r.end = w->pos;
    g_array_append_val(w->out->records, r);
    *flags = r.flags;
    return true;
}

static bool take_section_header(Walk *w, SdSection *s)
{
    if (!take_be32(w, NULL, &s->id)) {
        return false;
    }
    if (s->type == QEMU_VM_SECTION_PART || s->type == QEMU_VM_SECTION_END) {
        return true;
    }
    if (s->type != QEMU_VM_SECTION_START && s->type != QEMU_VM_SECTION_FULL) {
        g_set_error(w->errp, SD_ERROR, 0, "unknown section type 0x%02x at byte %zu",
                    s->type, s->type_pos);
        return false;
    }
    if (!take_name(w, &s->idstr_pos, &s->idstr_len) ||
        !take_be32(w, NULL, &s->instance) || !take_be32(w, NULL, &s->version)) {
        return false;
    }
    s->is_verify = s->idstr_len == strlen(DISK_VERIFY_IDSTR) &&
                   memcmp(w->buf + s->idstr_pos + 1, DISK_VERIFY_IDSTR, s->idstr_len) == 0;
    if (!s->is_verify &&
        (s->idstr_len != 5 || memcmp(w->buf + s->idstr_pos + 1, "block", 5) != 0)) {
        g_set_error(w->errp, SD_ERROR, 0, "section at byte %zu is not \"block\"", s->type_pos);
        return false;
    }
    return true;
}

/* The body of "blkmig-disk-verify": salt, count, drives and digests. */
static bool take_verify_body(Walk *w, SdSection *s)
{
    uint32_t count;

    if (!take(w, 8, &s->verify_pos) || !take_be32(w, NULL, &count)) {
        return false;
    }
    for (uint32_t i = 0; i < count; i++) {
        size_t name_pos, name_len, size_pos;
        if (!take_name(w, &name_pos, &name_len) || !take(w, 8, &size_pos)) {
            return false;
        }
        uint64_t size = ld_be64(w->buf + size_pos);
        if (!take(w, (size + BLK_MIG_CHUNK_SIZE - 1) / BLK_MIG_CHUNK_SIZE * 16, NULL)) {
            return false;
        }
    }
    s->verify_end = w->pos;
    return true;
}

/* A section after its type byte: header, records up to EOS, footer. */
static bool take_section(Walk *w, SdSection *s)
{
    unsigned flags = 0;
    uint8_t marker;
    uint32_t id;

    s->first_record = w->out->records->len;
    if (!take_section_header(w, s)) {
        return false;
    }
    if (s->is_verify && !take_verify_body(w, s)) {
        return false;
    }
    while (!s->is_verify && !(flags & BLK_MIG_FLAG_EOS)) {
        if (!take_record(w, w->out->sections->len, &flags)) {
            return false;
        }
    }
    s->n_records = w->out->records->len - s->first_record;
    if (!take_u8(w, &s->footer_pos, &marker) || !take_be32(w, NULL, &id)) {
        return false;
    }
    if (marker != QEMU_VM_SECTION_FOOTER || id != s->id) {
        g_set_error(w->errp, SD_ERROR, 0, "bad footer of section %u at byte %zu", s->id,
                    s->footer_pos);
        return false;
    }
    return true;
}

static bool take_file_header(Walk *w)
{
    uint32_t magic, version;

    if (!take_be32(w, NULL, &magic) || !take_be32(w, NULL, &version)) {
        return false;
    }
    if (magic != QEMU_VM_FILE_MAGIC || version != QEMU_VM_FILE_VERSION) {
        g_set_error(w->errp, SD_ERROR, 0, "not a savevm stream version 3 (0x%08x %u)",
                    magic, version);
        return false;
    }
    return true;
}

/* What QEMU's streams (and qemu-compat ones) hold besides sections: the
 * configuration section or the device description, after its type byte:
 * be32 length and that many bytes. */
static bool take_qemu_extra(Walk *w)
{
    uint32_t len;

    return take_be32(w, NULL, &len) && take(w, len, NULL);
}

static bool walk_stream(Walk *w)
{
    if (!take_file_header(w)) {
        return false;
    }
    for (;;) {
        SdSection s = { 0 };
        if (!take_u8(w, &s.type_pos, &s.type)) {
            return false;
        }
        if (s.type == QEMU_VM_CONFIGURATION) {
            if (!take_qemu_extra(w)) {
                return false;
            }
            w->out->has_configuration = true;
            continue;
        }
        if (s.type == BLKMIG_VM_EOF || s.type == QEMU_VM_EOF) {
            uint8_t desc;
            w->out->eof_pos = s.type_pos;
            if (s.type == QEMU_VM_EOF &&
                (!take_u8(w, NULL, &desc) || desc != QEMU_VM_VMDESCRIPTION ||
                 !take_qemu_extra(w))) {
                g_set_error(w->errp, SD_ERROR, 0, "no device description after QEMU's EOF");
                return false;
            }
            break;
        }
        if (!take_section(w, &s)) {
            return false;
        }
        g_array_append_val(w->out->sections, s);
    }
    if (w->pos != w->len) {
        g_set_error(w->errp, SD_ERROR, 0, "%zu bytes after EOF", w->len - w->pos);
        return false;
    }
    return true;
}

bool sd_decode(const guint8 *buf, size_t len, SdStream *out, GError **errp)
{
    Walk w = { buf, len, 0, errp, out };

    out->sections = g_array_new(FALSE, TRUE, sizeof(SdSection));
    out->records = g_array_new(FALSE, TRUE, sizeof(SdRecord));
    out->eof_pos = 0;
    out->has_configuration = false;
    out->checksummed = false;
    if (!walk_stream(&w)) {
        sd_stream_clear(out);
        return false;
    }
    return true;
}

void sd_decode_or_die(const guint8 *buf, size_t len, SdStream *out)
{
    GError *err = NULL;

    if (!sd_decode(buf, len, out, &err)) {
        g_error("cannot decode the migration stream (%zu bytes): %s", len, err->message);
    }
}

void sd_stream_clear(SdStream *s)
{
    g_clear_pointer(&s->sections, g_array_unref);
    g_clear_pointer(&s->records, g_array_unref);
}

bool sd_is_data_record(const SdRecord *r)
{
    return (r->flags & BLK_MIG_FLAG_DEVICE_BLOCK) && !(r->flags & BLK_MIG_FLAG_ZERO_BLOCK);
}

char *sd_record_drive(const guint8 *buf, const SdRecord *r)
{
    if (!(r->flags & (BLK_MIG_FLAG_DEVICE_BLOCK | BLK_MIG_FLAG_DEVICE_SIZE))) {
        return NULL;
    }
    return g_strndup((const char *)buf + r->id_pos + 1, r->id_len);
}
