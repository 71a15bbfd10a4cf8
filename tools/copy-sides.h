/* blkmig copy: what SOURCE, DEST and --base name, opened the way the
 * command promises (tools/cmd-copy.c has the rules in its --help): a
 * drive, or a stream on stdin / stdout; a new target written under a
 * temporary name and renamed into place only when complete; an existing
 * one written in place only when asked. */
#ifndef TOOLS_COPY_SIDES_H
#define TOOLS_COPY_SIDES_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "block/block.h"
#include "copy/copy.h"

typedef struct CopyCmdOptions {
    const char *src, *dst, *base;
    const char *src_format;     /* -f; NULL: probe */
    const char *dst_format;     /* -O; NULL: raw (see --help) */
    bool bar;                   /* -p */
    int progress_fd;            /* --progress=FD; -1 without */
    unsigned connections;       /* 0: the NBD driver's default */
    unsigned requests;          /* 0: the engine's default */
    uint64_t request_size;      /* 0: the engine's default */
    uint64_t size;              /* --size: a pipe source's size; 0: unset */
    bool target_is_zero;
    bool verify;
    bool target_exists;         /* -n */
    bool overwrite;
} CopyCmdOptions;

/* An open side and what it was opened from. */
typedef struct CopyEnd {
    BlockDriverState *bs;       /* NULL for a stream */
    CopySide *side;             /* NULL: a pipe source whose size the
                                 * target gives (copy_stream_source) */
    bool is_stream;
    bool is_local;              /* a drive on a local file, not NBD */
    uint64_t size;
} CopyEnd;

/* The target, and how it comes to be DEST. */
typedef struct CopyTarget {
    CopyEnd end;
    bool is_new;                /* a new image: it reads as zeroes */
    bool is_remote;             /* an NBD URI */
    char *tmp_path;             /* written under this name; NULL: in place */
    bool may_replace;           /* the rename may replace what DEST is now */
    bool dest_was_empty;        /* DEST was an empty file (replaced only if
                                 * it still is that empty file) */
    BdrvFileId dest_id;
} CopyTarget;

/* Open SOURCE: a drive (read-only), or stdin for "-" with SIZE bytes (0:
 * learn it from stdin itself when that is a regular file). */
bool copy_open_source(CopyEnd *e, const CopyCmdOptions *o, uint64_t size, GError **errp);
/* Open --base IMAGE read-only. */
bool copy_open_base(CopyEnd *e, const CopyCmdOptions *o, GError **errp);
/* Open or make DEST for a source of SIZE bytes (0: a pipe source of
 * unknown size, which an existing target defines). */
bool copy_open_target(CopyTarget *t, const CopyCmdOptions *o, uint64_t size,
                      BlockDriverState *src, GError **errp);
/* Success: close the target and give it its name (rename, then sync the
 * directory).  On failure the temporary file is gone. */
bool copy_commit_target(CopyTarget *t, const char *dest, GError **errp);
/* Failure or cancel: close the target; a temporary file is removed. */
void copy_discard_target(CopyTarget *t);
void copy_close_end(CopyEnd *e);

#endif
