/* blkmig qmp: one QMP command, its result printed as JSON. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "blkmig-internal.h"
#include "qapi/qmp.h"
#include "tls-opts.h"

static const char qmp_help[] =
    "Usage: blkmig qmp [OPTIONS] SOCKET COMMAND [ARGUMENTS-JSON]\n"
    "\n"
    "Connect to the QMP socket SOCKET (unix:PATH, tcp:HOST:PORT or a bare\n"
    "path), negotiate capabilities, run COMMAND with the arguments object\n"
    "ARGUMENTS-JSON (default: none) and print the reply's \"return\" value as\n"
    "JSON on standard output.\n"
    "\n"
    "Example:\n"
    "  blkmig qmp /tmp/src.qmp migrate-set-parameters '{\"max-bandwidth\": 0}'\n"
    "\n"
    "Options:\n"
    TLS_OPTIONS_HELP
    "  -h, --help             show this help\n"
    "\n"
    "Exit status: 0 on success; 1 when the command fails (the error class and\n"
    "description are printed on standard error) or the daemon cannot be\n"
    "reached; 64 on a usage error.\n";

static JsonObject *parse_arguments(const char *text)
{
    GError *err = NULL;
    JsonNode *node = json_from_string(text, &err);
    if (!node || !JSON_NODE_HOLDS_OBJECT(node)) {
        usage_error(qmp_help, "ARGUMENTS-JSON must be a JSON object: %s",
                    err ? err->message : text);
    }
    JsonObject *obj = json_object_ref(json_node_get_object(node));
    json_node_unref(node);
    return obj;
}

int cmd_qmp(int argc, char **argv)
{
    static const struct option opts[] = {
        { "help", no_argument, NULL, 'h' },
        TLS_LONG_OPTIONS,
        { NULL, 0, NULL, 0 },
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        if (ch == 'h') {
            fputs(qmp_help, stdout);
            return EXIT_DONE;
        }
        if (!tls_opts_take(ch, optarg)) {
            usage_error(qmp_help, "unknown option");
        }
    }
    int nargs = argc - optind;
    if (nargs < 2 || nargs > 3) {
        usage_error(qmp_help, "expected SOCKET COMMAND [ARGUMENTS-JSON]");
    }
    const char *socket = argv[optind], *command = argv[optind + 1];
    JsonObject *args = nargs == 3 ? parse_arguments(argv[optind + 2]) : NULL;

    QmpClient *c = open_or_die(socket);
    JsonNode *ret = execute_or_die(c, command, args);
    g_autofree char *text = qmp_json_to_string(ret, true);
    printf("%s\n", text);
    json_node_unref(ret);
    if (args) {
        json_object_unref(args);
    }
    qmp_client_close(c);
    return EXIT_DONE;
}

