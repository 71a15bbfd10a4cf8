/* What the libFuzzer targets (fuzz-*.c here) share: scratch files on
 * tmpfs, streams in memory, seeds written for the corpus, and a
 * socketpair whose far end the input is written into while the replies
 * are read and dropped.  Not a libFuzzer target itself (no fuzz- prefix). */
#ifndef TESTS_FUZZ_LIBFUZZER_HARNESS_H
#define TESTS_FUZZ_LIBFUZZER_HARNESS_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migration/stream.h"

/* Set-up every target's LLVMFuzzerInitialize starts with: g_error's
 * SIGTRAP becomes an abort, which libFuzzer reports (saving the input)
 * like any crash, and so do GLib criticals; other log lines are dropped
 * unless FUZZ_VERBOSE is set; scratch files go on tmpfs (TMPDIR becomes
 * /dev/shm unless already set). */
void fuzz_init(void);
/* A fresh directory under TMPDIR, removed with everything in it at exit. */
const char *fuzz_scratch_dir(void);
/* PATH in fuzz_scratch_dir() (caller frees). */
char *fuzz_scratch_path(const char *name);
/* Create (or replace) PATH holding DATA. */
void fuzz_write_file(const char *path, const void *data, size_t len);

/* A MigStream writing to memory (a memfd). */
typedef struct FuzzMemStream {
    MigStream *f;
    int fd;
} FuzzMemStream;
void fuzz_mem_stream_writer(FuzzMemStream *m);
/* Close the stream and return what was written to it. */
GBytes *fuzz_mem_stream_take(FuzzMemStream *m);

/* FUZZ_WRITE_SEEDS mode: DIR/NAME holds BYTES. */
void fuzz_write_seed(const char *dir, const char *name, GBytes *bytes);

/* A connected socketpair: fds[0] for the server under test, fds[1] for
 * the harness as the client. */
void fuzz_socketpair(int fds[2]);
/* The client's half of a conversation on FD (non-blocking): write DATA
 * (all of it, then shut down the write side) while reading and dropping
 * every reply, until the server closes FD's peer or TIMEOUT_MS passes.
 * PUMP (may be NULL) runs between polls for servers that live on the
 * caller's thread (a GLib main context).  Returns the bytes of replies
 * read; closes FD. */
size_t fuzz_converse(int fd, const uint8_t *data, size_t len, void (*pump)(void),
                     int timeout_ms);

#endif
