/* What the files of the blkmig client share: exit codes, the QMP calls
 * every command makes, reading query results, and the subcommands. */
#ifndef TOOLS_BLKMIG_INTERNAL_H
#define TOOLS_BLKMIG_INTERNAL_H

#include <glib.h>
#include <json-glib/json-glib.h>
#include <signal.h>
#include <stdbool.h>

#include "qapi/qmp-client.h"

/* Exit codes (DESIGN.md): what a script can tell apart. */
#define EXIT_DONE 0
#define EXIT_FAILED 1
#define EXIT_CANCELLED 2
#define EXIT_USAGE 64

/* Print "blkmig: MESSAGE", a blank line and HELP on stderr; exit 64. */
void usage_error(const char *help, const char *fmt, ...) G_GNUC_PRINTF(2, 3) G_GNUC_NORETURN;
/* Connect to a QMP socket (with the --tls-* options), or exit 1. */
QmpClient *open_or_die(const char *socket);
/* Run COMMAND with ARGS (may be NULL); on error print it and exit 1. */
JsonNode *execute_or_die(QmpClient *c, const char *command, JsonObject *args);

/* Members of a query result at a dotted PATH ("disk.total"): the node or
 * NULL, and its value (0 / NULL when absent or of another type). */
JsonNode *jpath(JsonNode *node, const char *path);
gint64 jint(JsonNode *node, const char *path);
double jdouble(JsonNode *node, const char *path);
const char *jstr(JsonNode *node, const char *path);
double mib(gint64 bytes);

/* Ctrl-C and SIGTERM set the flag instead of killing blkmig, so a long
 * command can cancel what it started and report. */
extern volatile sig_atomic_t blkmig_interrupted;
void catch_interrupts(void);

/* The subcommands: argv[0] is the command's name. */
int cmd_qmp(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
int cmd_stream(int argc, char **argv);
int cmd_copy(int argc, char **argv);

#endif
