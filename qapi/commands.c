/* The command table: names to handlers, filled at start-up by qapi/ itself
 * and by higher layers (system/ registers stop, cont, quit, ...). */
#include "qmp-internal.h"

static GHashTable *command_table;   /* name (owned) -> QmpCommandFn */

static GHashTable *table(void)
{
    if (!command_table) {
        command_table = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
    }
    return command_table;
}

void qmp_register_command(const char *name, QmpCommandFn fn)
{
    g_hash_table_replace(table(), g_strdup(name), (gpointer)fn);
}

QmpCommandFn qmp_find_command(const char *name)
{
    return (QmpCommandFn)g_hash_table_lookup(table(), name);
}

GList *qmp_command_names(void)
{
    return g_list_sort(g_hash_table_get_keys(table()), (GCompareFunc)g_strcmp0);
}

void qmp_register_builtin_commands(void)
{
    qmp_register_core_commands();
    qmp_register_object_commands();
    qmp_register_block_commands();
    qmp_register_migration_option_commands();
    qmp_register_migration_commands();
    qmp_migration_events_init();
    qmp_register_job_commands();
    qmp_register_stream_commands();
}
