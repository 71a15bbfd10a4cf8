/* What every blkmig command shares: usage errors, the QMP connection and
 * its calls, and reading members of query results. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "blkmig-internal.h"
#include "tls-opts.h"

volatile sig_atomic_t blkmig_interrupted;

void usage_error(const char *help, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "blkmig: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n\n%s", help);
    va_end(ap);
    exit(EXIT_USAGE);
}

QmpClient *open_or_die(const char *socket)
{
    GError *err = NULL;
    QmpClient *c = qmp_client_open_tls(socket, tls_opts_creds(), tls_opts_hostname(), &err);
    if (!c) {
        fprintf(stderr, "blkmig: cannot connect to %s: %s\n", socket, err->message);
        exit(EXIT_FAILED);
    }
    return c;
}

JsonNode *execute_or_die(QmpClient *c, const char *command, JsonObject *args)
{
    GError *err = NULL;
    g_autofree char *cls = NULL;
    JsonNode *ret = qmp_client_execute(c, command, args, &cls, &err);
    if (!ret) {
        fprintf(stderr, "blkmig: %s: %s%s%s\n", command, cls ? cls : "",
                cls ? ": " : "", err->message);
        exit(EXIT_FAILED);
    }
    return ret;
}

/* Member at dotted PATH, or NULL. */
JsonNode *jpath(JsonNode *node, const char *path)
{
    char **parts = g_strsplit(path, ".", -1);
    for (char **p = parts; node && *p; p++) {
        node = JSON_NODE_HOLDS_OBJECT(node)
            ? json_object_get_member(json_node_get_object(node), *p) : NULL;
    }
    g_strfreev(parts);
    return node;
}

gint64 jint(JsonNode *node, const char *path)
{
    JsonNode *n = jpath(node, path);
    return n && JSON_NODE_HOLDS_VALUE(n) ? json_node_get_int(n) : 0;
}

double jdouble(JsonNode *node, const char *path)
{
    JsonNode *n = jpath(node, path);
    return n && JSON_NODE_HOLDS_VALUE(n) ? json_node_get_double(n) : 0;
}

const char *jstr(JsonNode *node, const char *path)
{
    JsonNode *n = jpath(node, path);
    return n && json_node_get_value_type(n) == G_TYPE_STRING ? json_node_get_string(n) : NULL;
}

double mib(gint64 bytes)
{
    return bytes / (double)(1 << 20);
}

static void on_interrupt(int sig)
{
    blkmig_interrupted = 1;
}

void catch_interrupts(void)
{
    struct sigaction sa = { .sa_handler = on_interrupt };
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}
