/* Progress of long work (migrate, stream, copy): a bar redrawn in place on
 * a terminal, plain lines otherwise, so logs and scripts read one line
 * per update.  Each update gives how much is done of how much; the view
 * adds the percent, the rate over the last updates and the time left. */
#ifndef TOOLS_PROGRESS_H
#define TOOLS_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct Progress Progress;

/* A view writing to OUT (a bar when OUT is a terminal); LABEL starts each
 * line ("migrate", "stream"...). */
Progress *progress_new(FILE *out, const char *label);
/* DONE of TOTAL (bytes); DETAIL (may be NULL) follows percent, rate and
 * time left. */
void progress_update(Progress *p, uint64_t done, uint64_t total, const char *detail);
/* The same view for work that measures itself (a migration, whose "done"
 * can fall back): FRACTION (0..1) fills the bar, TEXT is the whole line
 * after it (or after the label and the elapsed time on plain lines). */
void progress_show(Progress *p, double fraction, const char *text);
/* Ends the bar's line (nothing to do for plain lines) and frees P. */
void progress_finish(Progress *p);
/* The time left at RATE bytes/s for LEFT bytes, as "1m05s" or "?" when
 * there is no rate yet (caller frees). */
char *progress_eta_text(uint64_t left, double rate);

#endif
