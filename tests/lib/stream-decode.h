/* Reading migration streams in tests: one decoder that turns a whole
 * savevm stream with "block" sections into a map of its sections and
 * records, with the position of every field, so a test can check what
 * went on the wire, aim corruptions at its framing, or cut it anywhere.
 * The bytes are checked only as far as they must be to be walked; tests
 * assert what they care about on the map. */
#ifndef TESTS_STREAM_DECODE_H
#define TESTS_STREAM_DECODE_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct SdSection {
    size_t type_pos;        /* the section type byte */
    uint8_t type;           /* QEMU_VM_SECTION_* */
    uint32_t id;
    size_t idstr_pos;       /* START/FULL: the u8 length of the idstr */
    size_t idstr_len;
    uint32_t instance, version;     /* START/FULL */
    size_t footer_pos;      /* the 0x7e byte */
    /* "blkmig-disk-verify" (no records): be64 salt, be32 drive count,
     * then per drive a name, be64 size and its digests. */
    bool is_verify;
    size_t verify_pos;      /* the be64 salt */
    size_t verify_end;      /* one past the last digest */
    guint first_record;     /* index into SdStream.records */
    guint n_records;
} SdSection;

typedef struct SdRecord {
    size_t pos;             /* the be64 header */
    size_t end;             /* one past the record */
    uint64_t offset;        /* header without its flag bits */
    unsigned flags;         /* BLK_MIG_FLAG_* */
    size_t id_pos;          /* DEVICE_BLOCK/DEVICE_SIZE: the u8 id length */
    size_t id_len;
    size_t size_pos;        /* DEVICE_SIZE: the be64 size */
    size_t channels_pos;    /* CHANNELS: be32 count, then the id */
    size_t option_pos;      /* OPTION: be32 code, be32 length, the payload */
    size_t span_len_pos;    /* SPAN: the be32 length (0: none) */
    size_t sum_pos;         /* CHECKSUM option: the 16-byte digest (0: none) */
    size_t comp_pos;        /* COMPRESSED: the algorithm byte (0: none) */
    size_t comp_len_pos;    /* COMPRESSED: the be32 compressed length */
    uint64_t length;        /* DEVICE_BLOCK: disk bytes the record covers */
    size_t data_pos;        /* DEVICE_BLOCK: payload on the wire */
    size_t data_len;        /* 0 for ZERO_BLOCK */
    guint section;          /* index into SdStream.sections */
} SdRecord;

typedef struct SdStream {
    GArray *sections;       /* SdSection */
    GArray *records;        /* SdRecord */
    size_t eof_pos;         /* the EOF byte: blkmig's 0x10, the last of the stream,
                             * or QEMU's 0x00, the device description after it */
    bool has_configuration; /* a configuration section (qemu-compat) */
    bool checksummed;       /* the CHECKSUM option came: data records carry digests */
} SdStream;

/* Decode LEN bytes into *OUT (cleared first).  False with *ERRP naming the
 * position when the bytes cannot be walked (bad magic, a section other
 * than "block" or "blkmig-disk-verify", a field past the end, bytes
 * after EOF). */
bool sd_decode(const guint8 *buf, size_t len, SdStream *out, GError **errp);
/* sd_decode that fails the test on an undecodable stream. */
void sd_decode_or_die(const guint8 *buf, size_t len, SdStream *out);
void sd_stream_clear(SdStream *s);

static inline const SdRecord *sd_record(const SdStream *s, guint i)
{
    return &g_array_index(s->records, SdRecord, i);
}

static inline const SdSection *sd_section(const SdStream *s, guint i)
{
    return &g_array_index(s->sections, SdSection, i);
}

/* A DEVICE_BLOCK record that carries data (not ZERO_BLOCK). */
bool sd_is_data_record(const SdRecord *r);
/* The drive id a record names, as a new string (NULL when it names none). */
char *sd_record_drive(const guint8 *buf, const SdRecord *r);

#endif
