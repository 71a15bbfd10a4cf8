/* Block records on the wire, source side: the byte layout of one
 * DEVICE_BLOCK record with its SPAN, CHECKSUM and COMPRESSED extensions
 * (see include/migration/block-migration.h), and the checksum both sides
 * compute. */
#include <string.h>

#include "block-internal.h"

uint64_t blk_record_wire_size(const char *id, const BlkRecord *r)
{
    uint64_t size = 8 + 1 + strlen(id);

    if (r->flags & BLK_MIG_FLAG_SPAN) {
        size += 4;
    }
    if (r->has_sum) {
        size += CHECKSUM_LEN;
    }
    if (r->flags & BLK_MIG_FLAG_COMPRESSED) {
        size += 1 + 4;
    }
    if (!(r->flags & BLK_MIG_FLAG_ZERO_BLOCK)) {
        size += r->data_len;
    }
    return size;
}

void blk_record_put(MigStream *f, const char *id, const BlkRecord *r)
{
    size_t id_len = strlen(id);

    mig_put_be64(f, r->offset | r->flags);
    mig_put_u8(f, id_len);
    mig_put_buffer(f, id, id_len);
    if (r->flags & BLK_MIG_FLAG_SPAN) {
        mig_put_be32(f, r->len);
    }
    if (r->has_sum) {
        mig_put_buffer(f, r->sum.bytes, CHECKSUM_LEN);
    }
    if (r->flags & BLK_MIG_FLAG_COMPRESSED) {
        mig_put_u8(f, r->algo);
        mig_put_be32(f, r->data_len);
    }
    if (!(r->flags & BLK_MIG_FLAG_ZERO_BLOCK)) {
        /* Large payloads go to the socket straight from the read buffer. */
        mig_put_buffer(f, r->data, r->data_len);
    }
}

void blk_record_checksum(uint64_t offset, const void *data, size_t len, ChecksumDigest *out)
{
    checksum_buffer(offset, data, len, out);
}
