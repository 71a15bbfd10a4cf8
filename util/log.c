/* Log writer: one line per message, "TIME blkmigd[PID] LEVEL: message",
 * written with a single write() so lines from several threads (and several
 * processes appending to the same file) never interleave. */
#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <gio/gio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static GMutex log_lock;
static int log_fd = STDERR_FILENO;     /* owned when != STDERR_FILENO */
static bool log_debug;
static bool log_writer_installed;

static const char *level_name(GLogLevelFlags level)
{
    if (level & G_LOG_LEVEL_ERROR) return "ERROR";
    if (level & G_LOG_LEVEL_CRITICAL) return "CRITICAL";
    if (level & G_LOG_LEVEL_WARNING) return "WARNING";
    if (level & G_LOG_LEVEL_MESSAGE) return "MESSAGE";
    if (level & G_LOG_LEVEL_INFO) return "INFO";
    return "DEBUG";
}

static void append_timestamp(GString *line)
{
    gint64 now = g_get_real_time();
    time_t secs = (time_t)(now / G_USEC_PER_SEC);
    struct tm tm;
    char buf[32];

    gmtime_r(&secs, &tm);
    strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    g_string_append_printf(line, "%s.%03dZ", buf, (int)(now % G_USEC_PER_SEC / 1000));
}

static void append_message(GString *line, const GLogField *fields, gsize n_fields)
{
    for (gsize i = 0; i < n_fields; i++) {
        if (strcmp(fields[i].key, "MESSAGE") == 0) {
            if (fields[i].length < 0) {
                g_string_append(line, fields[i].value);
            } else {
                g_string_append_len(line, fields[i].value, fields[i].length);
            }
            return;
        }
    }
}

static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return;     /* nowhere left to report a logging failure */
        }
        buf += n;
        len -= (size_t)n;
    }
}

static GLogWriterOutput log_writer(GLogLevelFlags level, const GLogField *fields,
                                   gsize n_fields, gpointer user_data)
{
    if ((level & G_LOG_LEVEL_DEBUG) && !log_debug) {
        return G_LOG_WRITER_HANDLED;
    }
    GString *line = g_string_sized_new(128);
    append_timestamp(line);
    g_string_append_printf(line, " blkmigd[%ld] %s: ", (long)getpid(), level_name(level));
    append_message(line, fields, n_fields);
    g_string_append_c(line, '\n');

    g_mutex_lock(&log_lock);
    write_all(log_fd, line->str, line->len);
    g_mutex_unlock(&log_lock);
    g_string_free(line, TRUE);
    return G_LOG_WRITER_HANDLED;
}

bool log_setup(const char *path, GError **errp)
{
    int fd = STDERR_FILENO;

    if (path) {
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            int err = errno;
            g_set_error(errp, G_FILE_ERROR, g_file_error_from_errno(err),
                        "Cannot open log file '%s': %s", path, g_strerror(err));
            return false;
        }
    }
    g_mutex_lock(&log_lock);
    int old = log_fd;
    log_fd = fd;
    log_debug = getenv("BLKMIG_DEBUG") != NULL;
    bool install = !log_writer_installed;
    log_writer_installed = true;
    g_mutex_unlock(&log_lock);

    if (old != STDERR_FILENO) {
        close(old);
    }
    /* GLib accepts only one writer per process; later calls just switch
     * the destination. */
    if (install) {
        g_log_set_writer_func(log_writer, NULL, NULL);
    }
    return true;
}
