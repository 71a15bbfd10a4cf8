/* --drive option parsing. */
#ifndef SYSTEM_DRIVE_H
#define SYSTEM_DRIVE_H

#include <glib.h>
#include <stdbool.h>

/* Parse "id=ID,file=PATH[,format=raw|qcow2|auto][,size=SIZE]
 * [,create=on[,overwrite=on]][,backing=PATH][,backing-format=FMT]
 * [,cluster-size=SIZE][,cache=writeback|none][,aio=threads|native]
 * [,read-only=on]" and open it (raw when format= is not given). */
bool drive_add(const char *optstr, GError **errp);

/* Added by system/: */
/* Check the syntax of an option string without opening anything, so the
 * command line can be validated before start-up has side effects. */
bool drive_check(const char *optstr, GError **errp);
/* Remove the image files drive_add created (they did not exist before;
 * not a file it grew or erased, nor one put at the path since); for a
 * failed start-up, which must leave nothing behind. */
void drive_remove_created_files(void);

#endif
