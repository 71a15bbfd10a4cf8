/* Building migration stream bytes by hand, for tests that feed the loader
 * exact (and deliberately broken) input.  Big-endian, as on the wire. */
#ifndef TESTS_STREAM_BYTES_H
#define TESTS_STREAM_BYTES_H

#include <glib.h>
#include <stdint.h>

void sb_put8(GByteArray *b, uint8_t v);
void sb_put32(GByteArray *b, uint32_t v);
void sb_put64(GByteArray *b, uint64_t v);
/* u8 length + bytes, as drive ids and section idstrs travel. */
void sb_put_name(GByteArray *b, const char *name);

/* The stream header: magic and version. */
void sb_put_stream_header(GByteArray *b);
/* A START section header: type, ID, IDSTR, INSTANCE, VERSION. */
void sb_put_section_start(GByteArray *b, uint32_t id, const char *idstr,
                          uint32_t instance, uint32_t version);
/* Stream header and the START of section 0, "block" instance 0 version 1:
 * appended to B, or as a new array. */
void sb_put_block_begin(GByteArray *b);
GByteArray *sb_block_stream_begin(void);
/* A CHANNELS record announcing N multifd channels of the migration whose
 * id is ID_BYTE sixteen times. */
void sb_put_channels(GByteArray *b, uint32_t n, uint8_t id_byte);
/* EOS and the footer of section 0. */
void sb_put_block_section_end(GByteArray *b);
/* EOS, the footer of section 0, EOF. */
void sb_block_stream_end(GByteArray *b);

/* Write BYTES to PATH and load them with savevm_load: the error, or NULL
 * when the load succeeded. */
GError *sb_load_file(const char *path, const GByteArray *bytes);

#endif
