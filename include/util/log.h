/* Logging: route GLib's log output to stderr or a file with timestamps. */
#ifndef UTIL_LOG_H
#define UTIL_LOG_H

#include <glib.h>
#include <stdbool.h>

/* Direct all g_log output to PATH (appending), or stderr when PATH is NULL.
 * Lines carry an ISO-8601 timestamp and the level.  Debug messages are
 * printed only when BLKMIG_DEBUG is set in the environment. */
bool log_setup(const char *path, GError **errp);

#endif
