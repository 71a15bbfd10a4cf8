/* Buffered migration stream over an fd (socket or file).
 *
 * Errors latch: after the first failure every put is a no-op, every get
 * returns zeros, and mig_stream_error() reports the first error.  The
 * stream owns its fd (closed by mig_stream_close). */
#ifndef MIGRATION_STREAM_H
#define MIGRATION_STREAM_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct MigStream MigStream;
typedef struct TlsCreds TlsCreds;

MigStream *mig_stream_new_writer(int fd);
MigStream *mig_stream_new_reader(int fd);
/* Flushes a writer (errors ignored), closes the fd and frees. */
void mig_stream_close(MigStream *f);
int mig_stream_fd(MigStream *f);

/* Writers.  Large buffers (>= 64 KiB) may be written with writev straight
 * from the caller's memory: the caller must keep BUF valid until the call
 * returns (it does not retain it). */
void mig_put_u8(MigStream *f, uint8_t v);
void mig_put_be16(MigStream *f, uint16_t v);
void mig_put_be32(MigStream *f, uint32_t v);
void mig_put_be64(MigStream *f, uint64_t v);
void mig_put_buffer(MigStream *f, const void *buf, size_t len);
/* Flush buffered bytes to the fd; returns 0 or the latched -errno. */
int mig_stream_flush(MigStream *f);
/* fsync the fd (for file: streams); returns 0 or -errno (and latches). */
int mig_stream_fsync(MigStream *f);

/* Readers.  A short read at end of file latches -EPIPE with the message
 * "unexpected end of stream at byte N". */
uint8_t mig_get_u8(MigStream *f);
uint16_t mig_get_be16(MigStream *f);
uint32_t mig_get_be32(MigStream *f);
uint64_t mig_get_be64(MigStream *f);
/* Reads exactly LEN bytes into BUF; returns LEN or 0 on error. */
size_t mig_get_buffer(MigStream *f, void *buf, size_t len);
/* Reads and discards LEN bytes. */
void mig_skip(MigStream *f, size_t len);
/* Copy the next LEN (at most 64 KiB) bytes into BUF without consuming
 * them; false (error latched, "unexpected end of stream" at a short end)
 * when they cannot be read. */
bool mig_stream_peek(MigStream *f, void *buf, size_t len);
/* Peek whether the next read would hit clean end of file (no bytes left). */
bool mig_at_eof(MigStream *f);

/* Error state: 0 or negative errno of the first error. */
int mig_stream_error(MigStream *f);
/* Human message for the first error ("Broken pipe", or a message given to
 * mig_stream_set_error); NULL when no error. */
const char *mig_stream_error_msg(MigStream *f);
/* Latch an error (keeps the first one). MSG may be NULL (strerror used). */
void mig_stream_set_error(MigStream *f, int err, const char *msg);

/* Pace writes to BYTES_PER_SEC (0 = unlimited) with a token bucket whose
 * depth is a tenth of a second's worth and which starts empty, so any
 * 1-second window carries at most the limit (+10% worst case).  Writes
 * are split as needed.  May be changed at any time from any thread. */
void mig_stream_set_rate_limit(MigStream *f, uint64_t bytes_per_sec);
/* Writer: how long (microseconds) the rate limit would hold up writing
 * what is buffered plus BYTES more; 0 when they may go at once. */
gint64 mig_stream_rate_delay_us(MigStream *f, size_t bytes);
/* Make F take its tokens from WITH's bucket: the streams then share one
 * limit together (set on either).  For writers of one migration. */
void mig_stream_share_rate_limit(MigStream *f, MigStream *with);

/* Bytes put into / got out of the stream so far (including buffered). */
uint64_t mig_stream_bytes(MigStream *f);
/* Bytes a socket writer handed to the kernel that the peer has not
 * acknowledged yet (0 for other fds).  Any thread. */
uint64_t mig_stream_unsent_bytes(MigStream *f);

/* Unblock a thread stuck in I/O on this stream from another thread
 * (shutdown(2) for sockets); the blocked call fails with -ECANCELED. */
void mig_stream_shutdown(MigStream *f);
/* The same for the reading side only: a socket can still send, so a
 * destination whose load was stopped can tell the source why. */
void mig_stream_shutdown_read(MigStream *f);
/* The same once DEADLINE_US (monotonic) has passed: until then I/O goes
 * on, so a writer can finish what it began; a wait ends at the deadline.
 * Any thread. */
void mig_stream_shutdown_at(MigStream *f, gint64 deadline_us);

/* The link.  Socket I/O waits in poll(), never in a blocking call; with a
 * link timeout of TIMEOUT_S seconds (0, the default: no limit) a wait that
 * sees no byte move for that long fails with -ETIMEDOUT and a message
 * that starts "link stalled" and names link-timeout: a write when nothing
 * could be sent, a read when nothing arrived on F, nor on the streams that
 * share its arrivals.  A connection the kernel ended because the peer
 * stopped answering (TCP_USER_TIMEOUT, keepalive) reads the same.  Set it
 * before the stream is used; no-op for other fds. */
void mig_stream_set_link_timeout(MigStream *f, unsigned timeout_s);
/* Bytes arriving on WITH count as signs of life for reads on F too: the
 * connections of one incoming migration, one of which may rightly be
 * quiet while another carries the data. */
void mig_stream_share_arrivals(MigStream *f, MigStream *with);
/* TLS.  Run the handshake on F's socket (a new stream, nothing read or
 * written yet) within TIMEOUT_MS, as client or server by CREDS's
 * endpoint (HOSTNAME, AUTHZ_ID as for tls_session_new in util/tls.h);
 * from then on F's bytes travel through the session.  False with *errp
 * (the refusal or the peer's alert; nothing latched on F) when it
 * failed. */
bool mig_stream_start_tls(MigStream *f, TlsCreds *creds, const char *hostname,
                          const char *authz_id, int timeout_ms, GError **errp);
/* F, a new stream on another fd of the same socket (the return path's),
 * reads or writes through WITH's session, if WITH has one. */
void mig_stream_share_tls(MigStream *f, MigStream *with);
/* The peer's TLS identity (x509 distinguished name, PSK username), or
 * NULL (no TLS, or none shown). */
const char *mig_stream_tls_peer(MigStream *f);

/* The first error was the end of the stream: the peer closed it. */
bool mig_stream_ended(MigStream *f);
/* The first error was the link stalling (the "link stalled" ones above). */
bool mig_stream_stalled(MigStream *f);
/* The first error was the peer's TLS alert: it refused us (with TLS 1.3
 * a server checks a client's certificate after the client's handshake
 * ended, so the refusal arrives on the first read). */
bool mig_stream_refused(MigStream *f);

#endif
