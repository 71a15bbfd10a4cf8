/* Real NBD servers for tests of NBD clients: qemu-nbd and nbdkit on a
 * Unix socket in the scratch directory, waited for until they listen,
 * and stopped, frozen, killed and restarted as a test needs; and the
 * block layer as their client (a drive on an NBD URI, read whole). */
#ifndef TESTS_INTEROP_NBD_SERVERS_H
#define TESTS_INTEROP_NBD_SERVERS_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "block/block.h"

typedef struct NbdServer {
    pid_t pid;                /* 0 while not running */
    char *sock;
    char *uri;                /* nbd+unix:///?socket=SOCK (the default export) */
    char **argv;              /* the command line, to restart it */
    char *log;
} NbdServer;

/* Start `qemu-nbd -k SOCK ARGS` / `nbdkit -f -U SOCK ARGS` (ARGS split
 * as a shell would; qemu-nbd also gets -t so that it outlives its
 * clients) named NAME, and wait until it listens. */
NbdServer *ns_qemu_nbd(const char *name, const char *args);
NbdServer *ns_nbdkit(const char *name, const char *args);

void ns_kill(NbdServer *s);                 /* SIGKILL and reap */
void ns_restart(NbdServer *s);              /* same command line again */
void ns_freeze(NbdServer *s, bool frozen);  /* SIGSTOP / SIGCONT */
void ns_free(NbdServer *s);                 /* kills it if running */

/* Drive ID (format FORMAT) on URI with a TIMEOUT in seconds (0: the
 * driver's default); NULL and *errp when it cannot be opened. */
BlockDriverState *ns_open(const char *id, const char *uri, const char *format,
                          uint32_t timeout, GError **errp);
/* The whole drive, read in 1 MiB requests (g_free it). */
uint8_t *ns_read_all(BlockDriverState *bs);
/* Asserts A and B (LEN bytes) are equal, naming the first difference. */
void ns_assert_same(const uint8_t *a, const uint8_t *b, size_t len, const char *what);

#endif
