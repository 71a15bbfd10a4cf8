/* --drive option parsing. */
#ifndef SYSTEM_DRIVE_H
#define SYSTEM_DRIVE_H

#include <glib.h>
#include <stdbool.h>

/* Parse "id=ID,file=PATH[,format=raw][,size=SIZE][,create=on]
 * [,cache=writeback|none][,aio=threads|native][,read-only=on]" and open it. */
bool drive_add(const char *optstr, GError **errp);

#endif
