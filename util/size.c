/* Parsing and printing human-readable sizes. */
#include "util/size.h"

#include <errno.h>
#include <gio/gio.h>
#include <inttypes.h>
#include <string.h>

/* Binary shift for a suffix letter, or -1 when it is not one. */
static int suffix_shift(char c)
{
    switch (g_ascii_tolower(c)) {
    case 'b': return 0;
    case 'k': return 10;
    case 'm': return 20;
    case 'g': return 30;
    case 't': return 40;
    case 'p': return 50;
    case 'e': return 60;
    default: return -1;
    }
}

/* Accept "", "K", "k", "KiB", "kib", "KB" style suffixes; "B" alone is bytes. */
static bool parse_suffix(const char *s, int *shift)
{
    if (!*s) {
        *shift = 0;
        return true;
    }
    *shift = suffix_shift(s[0]);
    if (*shift < 0) {
        return false;
    }
    s++;
    if (*shift == 0) {
        return *s == '\0';
    }
    if (*s == 'i' || *s == 'I') {
        s++;
        return (*s == 'B' || *s == 'b') && s[1] == '\0';
    }
    return *s == '\0' || ((*s == 'B' || *s == 'b') && s[1] == '\0');
}

bool size_parse(const char *str, uint64_t *out, GError **errp)
{
    if (!str || !g_ascii_isdigit(str[0])) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Invalid size '%s': expected a non-negative number with an "
                    "optional suffix (k, M, G, T, e.g. 512k or 4G)", str ? str : "");
        return false;
    }
    char *end;
    errno = 0;
    guint64 value = g_ascii_strtoull(str, &end, 10);
    int shift;
    if (!parse_suffix(end, &shift)) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Invalid size '%s': unknown suffix '%s' (use k, M, G, T, "
                    "optionally followed by iB)", str, end);
        return false;
    }
    if (errno == ERANGE || (shift && value > (UINT64_MAX >> shift))) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                    "Invalid size '%s': too large (the limit is 16 EiB - 1)", str);
        return false;
    }
    *out = value << shift;
    return true;
}

char *size_to_str(uint64_t bytes)
{
    static const char *const units[] = { "KiB", "MiB", "GiB", "TiB", "PiB", "EiB" };

    if (bytes < KiB) {
        return g_strdup_printf("%" PRIu64 " B", bytes);
    }
    int u = 0;
    while (u + 1 < (int)G_N_ELEMENTS(units) && bytes >= (KiB << (10 * (u + 1)))) {
        u++;
    }
    uint64_t unit = KiB << (10 * u);
    if (bytes % unit == 0) {
        return g_strdup_printf("%" PRIu64 " %s", bytes / unit, units[u]);
    }
    return g_strdup_printf("%.1f %s", (double)bytes / (double)unit, units[u]);
}
