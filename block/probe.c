/* format=auto: which format an image is, from its first sector.  Drivers
 * that can open a format probe for it themselves (BlockDriver.probe); the
 * table below names formats blkmig knows by their magic but cannot open,
 * so that such an image is refused instead of being taken for raw, and a
 * probed raw image can refuse a write that would make it look like one.
 * (vmdk has a driver, whose probe also claims the vmdk kinds it does not
 * read, so that its open can refuse them by name.) */
#include <gio/gio.h>
#include <string.h>

#include "block-int.h"

typedef struct ForeignMagic {
    const char *format;
    size_t offset;
    const char *magic;
    size_t len;
} ForeignMagic;

#define MAGIC(fmt, off, str) { fmt, off, str, sizeof(str) - 1 }

static const ForeignMagic foreign[] = {
    MAGIC("qcow", 0, "QFI\xfb"),                 /* version 1, or unknown */
    MAGIC("qed", 0, "QED\0"),
    MAGIC("vdi", 0x40, "\x7f\x10\xda\xbe"),
    MAGIC("vpc", 0, "conectix"),
    MAGIC("vhdx", 0, "vhdxfile"),
    MAGIC("luks", 0, "LUKS\xba\xbe"),
    MAGIC("parallels", 0, "WithoutFreeSpace"),
    MAGIC("parallels", 0, "WithouFreSpacExt"),
    MAGIC("bochs", 0, "Bochs Virtual HD Image"),
    MAGIC("cloop", 0, "#!/bin/sh\n#V2.0 Format\nmodprobe cloop file=$1\n"),
};

/* The format a driver claims with the best score (raw, at worst). */
static const BlockDriver *best_driver(const uint8_t *buf, size_t len)
{
    const BlockDriver *best = &bdrv_raw;
    int best_score = 0;

    for (size_t i = 0; i < bdrv_n_formats; i++) {
        const BlockDriver *drv = bdrv_formats[i];
        int score = drv->probe ? drv->probe(buf, len) : 0;
        if (score > best_score) {
            best = drv;
            best_score = score;
        }
    }
    return best;
}

static const char *foreign_format(const uint8_t *buf, size_t len)
{
    for (size_t i = 0; i < G_N_ELEMENTS(foreign); i++) {
        const ForeignMagic *m = &foreign[i];
        if (m->offset + m->len <= len && memcmp(buf + m->offset, m->magic, m->len) == 0) {
            return m->format;
        }
    }
    return NULL;
}

const char *bdrv_probe_non_raw(const uint8_t *buf, size_t len)
{
    const BlockDriver *drv = best_driver(buf, len);
    return drv != &bdrv_raw ? drv->format_name : foreign_format(buf, len);
}

const BlockDriver *bdrv_probe_format(const uint8_t *buf, size_t len, const char *filename,
                                     GError **errp)
{
    const BlockDriver *drv = best_driver(buf, len);
    const char *foreign_name = drv == &bdrv_raw ? foreign_format(buf, len) : NULL;

    if (foreign_name) {
        g_set_error(errp, G_IO_ERROR, G_IO_ERROR_NOT_SUPPORTED,
                    "'%s' looks like a %s image, which blkmig cannot open "
                    "(format=raw opens it as raw bytes)", filename, foreign_name);
        return NULL;
    }
    return drv;
}
