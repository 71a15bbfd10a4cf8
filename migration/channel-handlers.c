/* The registry of channel handlers (include/migration/savevm.h): who
 * takes the extra connections of an incoming socket migration, chosen by
 * their first four bytes, and telling them how the migration goes. */
#include "migration/savevm.h"
#include "migration-internal.h"

typedef struct ChannelEntry {
    uint32_t magic;
    char *what;
    SaveVMChannelOps ops;
    void *opaque;
} ChannelEntry;

static GMutex channels_lock;
static GPtrArray *channels;     /* ChannelEntry *, in registration order */

static void channel_entry_free(gpointer p)
{
    ChannelEntry *ce = p;
    g_free(ce->what);
    g_free(ce);
}

void savevm_register_channel(uint32_t magic, const char *what, const SaveVMChannelOps *ops,
                             void *opaque)
{
    ChannelEntry *ce = g_new0(ChannelEntry, 1);

    g_assert(magic != QEMU_VM_FILE_MAGIC);
    ce->magic = magic;
    ce->what = g_strdup(what);
    ce->ops = *ops;
    ce->opaque = opaque;
    g_mutex_lock(&channels_lock);
    if (!channels) {
        channels = g_ptr_array_new_with_free_func(channel_entry_free);
    }
    g_ptr_array_add(channels, ce);
    g_mutex_unlock(&channels_lock);
}

/* Snapshot of the channel handlers (registered at start-up, never freed
 * while a migration runs). */
static GPtrArray *channel_entries(void)
{
    GPtrArray *list = g_ptr_array_new();

    g_mutex_lock(&channels_lock);
    for (guint i = 0; channels && i < channels->len; i++) {
        g_ptr_array_add(list, channels->pdata[i]);
    }
    g_mutex_unlock(&channels_lock);
    return list;
}

bool savevm_channel_find(uint32_t magic, SaveVMChannelOps *ops, void **opaque)
{
    g_autoptr(GPtrArray) list = channel_entries();

    for (guint i = 0; i < list->len; i++) {
        ChannelEntry *ce = list->pdata[i];
        if (ce->magic == magic) {
            *ops = ce->ops;
            *opaque = ce->opaque;
            return true;
        }
    }
    return false;
}

char *savevm_channels_describe(void)
{
    g_autoptr(GPtrArray) list = channel_entries();
    GString *what = g_string_new(NULL);

    for (guint i = 0; i < list->len; i++) {
        g_string_append_printf(what, "%s%s", i ? " nor " : "",
                               ((ChannelEntry *)list->pdata[i])->what);
    }
    return g_string_free(what, what->len == 0);
}

/* One incoming migration at a time: the handlers that still expect
 * connections, and whom to tell once none does. */
static struct {
    gint expecting;
    void (*all_arrived)(void *arg);
    void *arg;
} arrivals;

static void channel_arrived(void *unused)
{
    if (g_atomic_int_dec_and_test(&arrivals.expecting)) {
        arrivals.all_arrived(arrivals.arg);
    }
}

bool savevm_channels_begin(void (*all_arrived)(void *arg), void *arg)
{
    g_autoptr(GPtrArray) list = channel_entries();

    arrivals.all_arrived = all_arrived;
    arrivals.arg = arg;
    g_atomic_int_set(&arrivals.expecting, list->len);
    for (guint i = 0; i < list->len; i++) {
        ChannelEntry *ce = list->pdata[i];
        ce->ops.begin(ce->opaque, channel_arrived, NULL);
    }
    return list->len > 0;
}

typedef enum { CHANNELS_FAILED, CHANNELS_ABORT, CHANNELS_END } ChannelNews;

static void channels_tell(ChannelNews news)
{
    g_autoptr(GPtrArray) list = channel_entries();

    for (guint i = 0; i < list->len; i++) {
        ChannelEntry *ce = list->pdata[i];
        void (*fn)(void *) = news == CHANNELS_FAILED ? ce->ops.failed
                             : news == CHANNELS_ABORT ? ce->ops.abort : ce->ops.end;
        fn(ce->opaque);
    }
}

void savevm_channels_failed(void)
{
    channels_tell(CHANNELS_FAILED);
}

void savevm_channels_abort(void)
{
    channels_tell(CHANNELS_ABORT);
}

void savevm_channels_end(void)
{
    channels_tell(CHANNELS_END);
}

void savevm_unregister_channels(void)
{
    g_mutex_lock(&channels_lock);
    g_clear_pointer(&channels, g_ptr_array_unref);
    g_mutex_unlock(&channels_lock);
}
