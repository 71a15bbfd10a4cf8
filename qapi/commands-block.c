/* query-block: the drives, in QEMU's BlockInfo shape (ImageInfo with the
 * backing chain nested, as QEMU's query-block shows it). */
#include "qmp-internal.h"

#include "block/block.h"

/* The backing file as the image names it, and the path it was opened at. */
static void backing_names(JsonObject *image, BlockDriverState *bs)
{
    const char *named = bdrv_get_backing_filename(bs);
    BlockDriverState *backing = bdrv_get_backing(bs);

    if (named) {
        json_object_set_string_member(image, "backing-filename", named);
    }
    if (backing) {
        json_object_set_string_member(image, "full-backing-filename",
                                      bdrv_get_filename(backing));
    }
}

/* QEMU's ImageInfo of BS, with its backing chain nested in backing-image. */
static JsonObject *image_info(BlockDriverState *bs)
{
    JsonObject *image = json_object_new();
    json_object_set_string_member(image, "filename", bdrv_get_filename(bs));
    json_object_set_string_member(image, "format", bdrv_get_format(bs));
    json_object_set_int_member(image, "virtual-size", bdrv_getlength(bs));
    int64_t allocated = bdrv_allocated_bytes(bs);
    if (allocated >= 0) {
        json_object_set_int_member(image, "actual-size", allocated);
    }
    uint32_t cluster_size = bdrv_get_cluster_size(bs);
    if (cluster_size) {
        json_object_set_int_member(image, "cluster-size", cluster_size);
    }
    backing_names(image, bs);
    BlockDriverState *backing = bdrv_get_backing(bs);
    if (backing) {
        json_object_set_object_member(image, "backing-image", image_info(backing));
    }
    return image;
}

static JsonObject *cache_info(BlockDriverState *bs)
{
    JsonObject *cache = json_object_new();
    json_object_set_boolean_member(cache, "writeback", true);
    json_object_set_boolean_member(cache, "direct", bdrv_is_cache_none(bs));
    json_object_set_boolean_member(cache, "no-flush", false);
    return cache;
}

static JsonObject *inserted_info(BlockDriverState *bs)
{
    JsonObject *ins = json_object_new();
    json_object_set_string_member(ins, "file", bdrv_get_filename(bs));
    json_object_set_boolean_member(ins, "ro", bdrv_is_read_only(bs));
    json_object_set_string_member(ins, "drv", bdrv_get_format(bs));
    json_object_set_boolean_member(ins, "encrypted", false);
    const char *backing = bdrv_get_backing_filename(bs);
    if (backing) {
        json_object_set_string_member(ins, "backing_file", backing);
    }
    json_object_set_int_member(ins, "backing_file_depth", bdrv_get_backing_depth(bs));
    json_object_set_string_member(ins, "detect_zeroes", "off");
    json_object_set_object_member(ins, "cache", cache_info(bs));
    json_object_set_object_member(ins, "image", image_info(bs));
    return ins;
}

static JsonObject *drive_info(BlockDriverState *bs)
{
    JsonObject *info = json_object_new();
    json_object_set_string_member(info, "device", bdrv_get_id(bs));
    json_object_set_boolean_member(info, "locked", false);
    json_object_set_boolean_member(info, "removable", false);
    json_object_set_string_member(info, "type", "unknown");
    json_object_set_object_member(info, "inserted", inserted_info(bs));
    return info;
}

static JsonNode *query_block(JsonObject *args, GError **errp)
{
    if (!qmp_args_only(args, errp, NULL)) {
        return NULL;
    }
    JsonArray *list = json_array_new();
    GList *drives = bdrv_list();
    for (GList *d = drives; d; d = d->next) {
        BlockDriverState *bs = d->data;
        bdrv_chain_hold(bs);            /* a block job may shorten the chain */
        json_array_add_object_element(list, drive_info(bs));
        bdrv_chain_release(bs);
    }
    g_list_free(drives);
    return qmp_node_take_array(list);
}

void qmp_register_block_commands(void)
{
    qmp_register_command("query-block", query_block);
}
