/* blkmig: command-line client for blkmigd.
 *
 *   blkmig qmp SOCKET COMMAND [ARGUMENTS-JSON]
 *   blkmig migrate --src SOCKET [--dst SOCKET] --uri URI [options]
 *   blkmig stream --qmp SOCKET --device ID [--speed BYTES] [--wait]
 *   blkmig copy [options] SOURCE DEST
 *
 * The daemon commands go through QMP (qapi/qmp-client), exactly as a
 * management layer would drive the daemons; copy runs the copy engine
 * (copy/) in the tool itself.  This file picks the command; each
 * command lives in a file of its own (cmd-*.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blkmig-internal.h"
#include "qapi/qmp.h"

static const char main_help[] =
    "Usage: blkmig COMMAND [OPTIONS...]\n"
    "\n"
    "Command-line client for blkmigd, speaking QMP.\n"
    "\n"
    "Commands:\n"
    "  qmp SOCKET COMMAND [ARGUMENTS-JSON]\n"
    "                 run one QMP command and print its result as JSON\n"
    "  migrate --src SOCKET --uri URI [--dst SOCKET] [OPTIONS]\n"
    "                 run a live block migration and show its progress\n"
    "  stream --qmp SOCKET --device ID [--speed BYTES] [--wait]\n"
    "                 pull a drive's backing chain into it (block-stream)\n"
    "  copy [OPTIONS] SOURCE DEST\n"
    "                 copy a disk image (files, NBD URIs, stdin/stdout), thin\n"
    "\n"
    "SOCKET is unix:PATH, tcp:HOST:PORT, or a bare path (a unix socket).\n"
    "qmp, migrate and stream reach a QMP socket served over TLS with --tls-creds DIR\n"
    "(x509) or --tls-psk DIR (pre-shared key); see their --help.\n"
    "\n"
    "Options:\n"
    "  -h, --help     show this help (blkmig COMMAND --help for a command)\n"
    "  -V, --version  show the version\n"
    "\n"
    "Exit status: 0 done; 1 failed; 2 cancelled; 64 usage error.\n";

typedef struct Command {
    const char *name;
    int (*run)(int argc, char **argv);
} Command;

static const Command commands[] = {
    { "qmp", cmd_qmp },
    { "migrate", cmd_migrate },
    { "stream", cmd_stream },
    { "copy", cmd_copy },
};

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage_error(main_help, "missing command");
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        fputs(main_help, stdout);
        return EXIT_DONE;
    }
    if (!strcmp(cmd, "-V") || !strcmp(cmd, "--version")) {
        printf("blkmig %d.%d.%d\n", BLKMIG_VERSION_MAJOR, BLKMIG_VERSION_MINOR,
               BLKMIG_VERSION_MICRO);
        return EXIT_DONE;
    }
    for (size_t i = 0; i < G_N_ELEMENTS(commands); i++) {
        if (!strcmp(cmd, commands[i].name)) {
            return commands[i].run(argc - 1, argv + 1);
        }
    }
    usage_error(main_help, "unknown command '%s'", cmd);
}
