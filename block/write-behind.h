/* Private to block/: write-behind for files written in bulk (BlockOptions
 * write_behind): each write starts its own writeback at once, and once
 * more than a window of written data is on its way, the writer waits for
 * the oldest to reach the disk and drops it from the page cache.  The
 * disk then works while the copy goes on, a flush at the end finds little
 * left, and a copy of any size uses only the window of page cache
 * (the technique of nbdcopy's file backend). */
#ifndef BLOCK_WRITE_BEHIND_H
#define BLOCK_WRITE_BEHIND_H

#include <stdint.h>

/* Bytes of written data allowed between "writeback started" and "on the
 * disk, evicted". */
#define WRITE_BEHIND_WINDOW (64u << 20)

typedef struct WriteBehind WriteBehind;

WriteBehind *write_behind_new(int fd);
void write_behind_free(WriteBehind *wb);
/* [off, off+len) was just written (any thread). */
void write_behind_note(WriteBehind *wb, uint64_t off, uint64_t len);

#endif
