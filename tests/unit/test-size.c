/* size_parse and size_to_str. */
#include <glib.h>
#include <string.h>

#include "util/size.h"

static void test_parse_good(void)
{
    static const struct { const char *str; uint64_t value; } cases[] = {
        { "0", 0 },
        { "123", 123 },
        { "512k", 512 * KiB },
        { "512K", 512 * KiB },
        { "1M", MiB },
        { "1MiB", MiB },
        { "1mib", MiB },
        { "1MB", MiB },
        { "4G", 4 * GiB },
        { "2T", 2 * TiB },
        { "7b", 7 },
        { "16383P", UINT64_C(16383) << 50 },
        { "18446744073709551615", UINT64_MAX },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        uint64_t v = 1;
        GError *err = NULL;
        g_assert_true(size_parse(cases[i].str, &v, &err));
        g_assert_no_error(err);
        g_assert_cmpuint(v, ==, cases[i].value);
    }
}

static void test_parse_bad(void)
{
    static const char *const cases[] = {
        "", "-1", "12x", "1.5G", " 1", "1 ", "+1", "M", "1MM", "1Mi", "1bB",
        "18446744073709551616", "16E", "99999999999999T",
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        uint64_t v = 42;
        GError *err = NULL;
        g_assert_false(size_parse(cases[i], &v, &err));
        g_assert_nonnull(err);
        /* The message names the string that was wrong. */
        char *quoted = g_strdup_printf("'%s'", cases[i]);
        g_assert_nonnull(strstr(err->message, quoted));
        g_free(quoted);
        g_assert_cmpuint(v, ==, 42);
        g_error_free(err);
    }
}

static void test_to_str(void)
{
    static const struct { uint64_t bytes; const char *str; } cases[] = {
        { 0, "0 B" }, { 1023, "1023 B" }, { KiB, "1 KiB" }, { 1536, "1.5 KiB" },
        { 64 * MiB, "64 MiB" }, { 3 * GiB / 2, "1.5 GiB" }, { 4 * TiB, "4 TiB" },
    };
    for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
        char *s = size_to_str(cases[i].bytes);
        g_assert_cmpstr(s, ==, cases[i].str);
        g_free(s);
    }
}

int main(int argc, char **argv)
{
    g_test_init(&argc, &argv, NULL);
    g_test_add_func("/size/parse-good", test_parse_good);
    g_test_add_func("/size/parse-bad", test_parse_bad);
    g_test_add_func("/size/to-str", test_to_str);
    return g_test_run();
}
