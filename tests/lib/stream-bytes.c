/* Hand-built migration stream bytes for tests. */
#include "stream-bytes.h"

#include <fcntl.h>
#include <string.h>

#include "migration/block-migration.h"
#include "migration/savevm.h"
#include "migration/stream.h"

void sb_put8(GByteArray *b, uint8_t v)
{
    g_byte_array_append(b, &v, 1);
}

void sb_put32(GByteArray *b, uint32_t v)
{
    uint8_t be[4] = { v >> 24, v >> 16, v >> 8, v };
    g_byte_array_append(b, be, sizeof(be));
}

void sb_put64(GByteArray *b, uint64_t v)
{
    sb_put32(b, v >> 32);
    sb_put32(b, (uint32_t)v);
}

void sb_put_name(GByteArray *b, const char *name)
{
    sb_put8(b, strlen(name));
    g_byte_array_append(b, (const guint8 *)name, strlen(name));
}

void sb_put_stream_header(GByteArray *b)
{
    sb_put32(b, QEMU_VM_FILE_MAGIC);
    sb_put32(b, QEMU_VM_FILE_VERSION);
}

void sb_put_section_start(GByteArray *b, uint32_t id, const char *idstr,
                          uint32_t instance, uint32_t version)
{
    sb_put8(b, QEMU_VM_SECTION_START);
    sb_put32(b, id);
    sb_put_name(b, idstr);
    sb_put32(b, instance);
    sb_put32(b, version);
}

void sb_put_block_begin(GByteArray *b)
{
    sb_put_stream_header(b);
    sb_put_section_start(b, 0, "block", 0, 1);
}

GByteArray *sb_block_stream_begin(void)
{
    GByteArray *b = g_byte_array_new();

    sb_put_block_begin(b);
    return b;
}

void sb_put_channels(GByteArray *b, uint32_t n, uint8_t id_byte)
{
    uint8_t id[BLK_MIG_MULTIFD_ID_LEN];

    memset(id, id_byte, sizeof(id));
    sb_put64(b, BLK_MIG_FLAG_CHANNELS);
    sb_put32(b, n);
    g_byte_array_append(b, id, sizeof(id));
}

void sb_put_block_section_end(GByteArray *b)
{
    sb_put64(b, BLK_MIG_FLAG_EOS);
    sb_put8(b, QEMU_VM_SECTION_FOOTER);
    sb_put32(b, 0);
}

void sb_block_stream_end(GByteArray *b)
{
    sb_put_block_section_end(b);
    sb_put8(b, BLKMIG_VM_EOF);
}

GError *sb_load_file(const char *path, const GByteArray *bytes)
{
    GError *err = NULL;
    MigStream *f;
    int ret;

    g_assert_true(g_file_set_contents(path, (const char *)bytes->data, bytes->len, NULL));
    f = mig_stream_new_reader(open(path, O_RDONLY));
    ret = savevm_load(f, NULL, &err);
    g_assert_true((ret == 0) == (err == NULL));
    mig_stream_close(f);
    return err;
}
