/* Splitting "key=value,key=value" option strings, as QEMU's -drive does:
 * a doubled comma stands for a comma inside a value (file names). */
#include "system-internal.h"

#include <string.h>

static void keyvalue_free(gpointer p)
{
    KeyValue *kv = p;
    g_free(kv->key);
    g_free(kv->value);
    g_free(kv);
}

/* Next item of STR starting at *POS, with ",," unescaped; advances *POS
 * past the separating comma. */
static char *next_item(const char *str, size_t *pos)
{
    GString *item = g_string_new(NULL);
    size_t i = *pos;

    for (; str[i]; i++) {
        if (str[i] == ',' && str[i + 1] == ',') {
            g_string_append_c(item, ',');
            i++;
        } else if (str[i] == ',') {
            i++;
            break;
        } else {
            g_string_append_c(item, str[i]);
        }
    }
    *pos = i;
    return g_string_free(item, FALSE);
}

static bool has_key(GPtrArray *items, const char *key)
{
    for (guint i = 0; i < items->len; i++) {
        if (strcmp(((KeyValue *)items->pdata[i])->key, key) == 0) {
            return true;
        }
    }
    return false;
}

static bool add_item(const char *option, GPtrArray *items, const char *item, GError **errp)
{
    const char *eq = strchr(item, '=');
    if (!eq || eq == item) {
        g_set_error(errp, BLKMIGD_ERROR, 0, "%s: expected key=value, got '%s'", option, item);
        return false;
    }
    KeyValue *kv = g_new0(KeyValue, 1);
    kv->key = g_strndup(item, (gsize)(eq - item));
    kv->value = g_strdup(eq + 1);
    if (has_key(items, kv->key)) {
        g_set_error(errp, BLKMIGD_ERROR, 0, "%s: option '%s' given twice", option, kv->key);
        keyvalue_free(kv);
        return false;
    }
    g_ptr_array_add(items, kv);
    return true;
}

GPtrArray *keyval_parse(const char *option, const char *str, GError **errp)
{
    GPtrArray *items = g_ptr_array_new_with_free_func(keyvalue_free);
    size_t pos = 0;

    if (!*str) {
        g_set_error(errp, BLKMIGD_ERROR, 0, "%s: empty option string", option);
        g_ptr_array_unref(items);
        return NULL;
    }
    while (str[pos]) {
        char *item = next_item(str, &pos);
        bool ok = add_item(option, items, item, errp);
        g_free(item);
        if (!ok) {
            g_ptr_array_unref(items);
            return NULL;
        }
    }
    return items;
}

bool keyval_bool(const char *option, const KeyValue *kv, bool *out, GError **errp)
{
    static const char *const yes[] = { "on", "yes", "true" };
    static const char *const no[] = { "off", "no", "false" };

    for (unsigned i = 0; i < G_N_ELEMENTS(yes); i++) {
        if (strcmp(kv->value, yes[i]) == 0 || strcmp(kv->value, no[i]) == 0) {
            *out = strcmp(kv->value, yes[i]) == 0;
            return true;
        }
    }
    g_set_error(errp, BLKMIGD_ERROR, 0, "%s: '%s' must be on or off, not '%s'", option,
                kv->key, kv->value);
    return false;
}
