/* --drive: parse the option string into BlockOptions and open the drive. */
#include "system/drive.h"

#include <stddef.h>
#include <string.h>

#include "block/block.h"
#include "system-internal.h"
#include "util/id.h"
#include "util/size.h"

#define OPT "--drive"
#define MAX_ID_LEN 255      /* the stream carries ids with a u8 length */

typedef struct DriveSpec {
    char *id;
    char *file;
    char *format;           /* NULL: raw */
    char *backing, *backing_format;
    char *tls_creds;
    uint64_t size;
    uint32_t cluster_size;
    bool create, overwrite, cache_none, aio_native, read_only, copy_on_read;
} DriveSpec;

/* An image drive_add created: the path and which file it was. */
typedef struct CreatedFile {
    char *path;
    BdrvFileId id;
} CreatedFile;

static GPtrArray *created_files;    /* CreatedFile * */

static void drive_spec_clear(DriveSpec *d)
{
    g_free(d->id);
    g_free(d->file);
    g_free(d->format);
    g_free(d->backing);
    g_free(d->backing_format);
    g_free(d->tls_creds);
}

static bool parse_choice(const KeyValue *kv, const char *on_value, const char *off_value,
                         bool *out, GError **errp)
{
    if (strcmp(kv->value, on_value) != 0 && strcmp(kv->value, off_value) != 0) {
        g_set_error(errp, BLKMIGD_ERROR, 0, OPT ": %s must be %s or %s, not '%s'", kv->key,
                    off_value, on_value, kv->value);
        return false;
    }
    *out = strcmp(kv->value, on_value) == 0;
    return true;
}

static bool parse_size(const KeyValue *kv, uint64_t *out, GError **errp)
{
    GError *err = NULL;
    if (!size_parse(kv->value, out, &err) || *out == 0) {
        g_set_error(errp, BLKMIGD_ERROR, 0, OPT ": invalid size '%s'%s%s", kv->value,
                    err ? ": " : "", err ? err->message : "");
        g_clear_error(&err);
        return false;
    }
    return true;
}

/* cluster-size: the block layer checks the rule (a power of two from 512
 * to 2M); here only that the number fits the field. */
static bool parse_cluster_size(const KeyValue *kv, uint32_t *out, GError **errp)
{
    uint64_t v;

    if (!parse_size(kv, &v, errp)) {
        return false;
    }
    if (v > UINT32_MAX) {
        g_set_error(errp, BLKMIGD_ERROR, 0, OPT ": cluster-size '%s' is too large", kv->value);
        return false;
    }
    *out = (uint32_t)v;
    return true;
}

/* Options whose value is kept as a string: format and backing names are
 * checked by the block layer when the drive opens. */
static char **string_field(DriveSpec *d, const char *key)
{
    static const struct { const char *key; size_t off; } fields[] = {
        { "file", offsetof(DriveSpec, file) },
        { "format", offsetof(DriveSpec, format) },
        { "backing", offsetof(DriveSpec, backing) },
        { "backing-format", offsetof(DriveSpec, backing_format) },
        { "tls-creds", offsetof(DriveSpec, tls_creds) },
    };

    for (size_t i = 0; i < G_N_ELEMENTS(fields); i++) {
        if (strcmp(key, fields[i].key) == 0) {
            return (char **)((char *)d + fields[i].off);
        }
    }
    return NULL;
}

static bool parse_id(const KeyValue *kv, DriveSpec *d, GError **errp)
{
    if (!id_wellformed(kv->value, MAX_ID_LEN)) {
        g_set_error(errp, BLKMIGD_ERROR, 0, OPT ": invalid id '%s' (a letter, then "
                    "letters, digits, '-', '.' or '_')", kv->value);
        return false;
    }
    d->id = g_strdup(kv->value);
    return true;
}

static bool parse_key(const KeyValue *kv, DriveSpec *d, GError **errp)
{
    const char *k = kv->key;
    char **str = string_field(d, k);

    if (str && !*kv->value) {
        g_set_error(errp, BLKMIGD_ERROR, 0, OPT ": '%s' is empty", k);
        return false;
    } else if (str) {
        *str = g_strdup(kv->value);
        return true;
    } else if (strcmp(k, "id") == 0) {
        return parse_id(kv, d, errp);
    } else if (strcmp(k, "size") == 0) {
        return parse_size(kv, &d->size, errp);
    } else if (strcmp(k, "cluster-size") == 0) {
        return parse_cluster_size(kv, &d->cluster_size, errp);
    } else if (strcmp(k, "create") == 0) {
        return keyval_bool(OPT, kv, &d->create, errp);
    } else if (strcmp(k, "overwrite") == 0) {
        return keyval_bool(OPT, kv, &d->overwrite, errp);
    } else if (strcmp(k, "read-only") == 0) {
        return keyval_bool(OPT, kv, &d->read_only, errp);
    } else if (strcmp(k, "copy-on-read") == 0) {
        return keyval_bool(OPT, kv, &d->copy_on_read, errp);
    } else if (strcmp(k, "cache") == 0) {
        return parse_choice(kv, "none", "writeback", &d->cache_none, errp);
    } else if (strcmp(k, "aio") == 0) {
        return parse_choice(kv, "native", "threads", &d->aio_native, errp);
    }
    g_set_error(errp, BLKMIGD_ERROR, 0, OPT ": unknown option '%s'", k);
    return false;
}

static bool check_spec(const DriveSpec *d, GError **errp)
{
    const char *missing = !d->id ? "id" : !d->file ? "file" : NULL;

    if (missing) {
        g_set_error(errp, BLKMIGD_ERROR, 0, OPT ": '%s' is required", missing);
        return false;
    }
    if (d->create && d->read_only) {
        g_set_error(errp, BLKMIGD_ERROR, 0, OPT ": create=on and read-only=on exclude "
                    "each other");
        return false;
    }
    if (d->copy_on_read && d->read_only) {
        g_set_error(errp, BLKMIGD_ERROR, 0, OPT ": copy-on-read=on writes into the drive, "
                    "which read-only=on forbids");
        return false;
    }
    if (d->overwrite && !d->create) {
        g_set_error(errp, BLKMIGD_ERROR, 0, OPT ": overwrite=on needs create=on (it erases "
                    "'%s' and creates a new image of size=)", d->file);
        return false;
    }
    return true;
}

static bool drive_parse(const char *optstr, DriveSpec *d, GError **errp)
{
    GPtrArray *items = keyval_parse(OPT, optstr, errp);
    bool ok = items != NULL;

    memset(d, 0, sizeof(*d));
    for (guint i = 0; ok && i < items->len; i++) {
        ok = parse_key(items->pdata[i], d, errp);
    }
    ok = ok && check_spec(d, errp);
    if (items) {
        g_ptr_array_unref(items);
    }
    if (!ok) {
        drive_spec_clear(d);
    }
    return ok;
}

bool drive_check(const char *optstr, GError **errp)
{
    DriveSpec d;
    if (!drive_parse(optstr, &d, errp)) {
        return false;
    }
    drive_spec_clear(&d);
    return true;
}

static void created_file_free(gpointer p)
{
    CreatedFile *c = p;
    g_free(c->path);
    g_free(c);
}

static void remember_created(BlockDriverState *bs, const char *file)
{
    BdrvFileId id;

    if (!bdrv_created_file(bs, &id)) {
        return;
    }
    CreatedFile *c = g_new0(CreatedFile, 1);
    c->path = g_strdup(file);
    c->id = id;
    if (!created_files) {
        created_files = g_ptr_array_new_with_free_func(created_file_free);
    }
    g_ptr_array_add(created_files, c);
}

/* A failed open has removed what it created itself (block layer). */
bool drive_add(const char *optstr, GError **errp)
{
    DriveSpec d;
    if (!drive_parse(optstr, &d, errp)) {
        return false;
    }
    BlockOptions opts = {
        .id = d.id, .filename = d.file, .format = d.format ? d.format : "raw",
        .size = d.size, .create = d.create, .overwrite = d.overwrite,
        .cache_none = d.cache_none, .aio_native = d.aio_native, .read_only = d.read_only,
        .backing = d.backing, .backing_format = d.backing_format,
        .cluster_size = d.cluster_size, .tls_creds = d.tls_creds,
        .copy_on_read = d.copy_on_read,
    };
    GError *err = NULL;
    BlockDriverState *bs = bdrv_open(&opts, &err);
    if (bs) {
        remember_created(bs, d.file);
    } else {
        g_set_error(errp, BLKMIGD_ERROR, 0, OPT " id=%s: %s", d.id, err->message);
        g_error_free(err);
    }
    drive_spec_clear(&d);
    return bs != NULL;
}

/* Only files drive_add made, and only while the path still names them. */
void drive_remove_created_files(void)
{
    if (!created_files) {
        return;
    }
    for (guint i = 0; i < created_files->len; i++) {
        CreatedFile *c = created_files->pdata[i];
        bdrv_remove_created_file(c->path, &c->id);
    }
    g_clear_pointer(&created_files, g_ptr_array_unref);
}
