/* What blkmig migrate shows while it follows a migration: a progress bar
 * on a terminal, plain lines otherwise, or JSON lines for machines; and
 * the outcome at the end. */
#ifndef TOOLS_MIGRATE_REPORT_H
#define TOOLS_MIGRATE_REPORT_H

#include <json-glib/json-glib.h>
#include <stdbool.h>

typedef struct MigrateReport MigrateReport;

/* JSON: one JSON object per line on stdout instead of the view. */
MigrateReport *migrate_report_new(bool json);
/* A query-migrate reply of the source. */
void migrate_report_progress(MigrateReport *r, JsonNode *info);
/* The last reply, the exit code it means, and what the destination
 * said (NULL without --dst); frees R. */
void migrate_report_finish(MigrateReport *r, JsonNode *info, int code, const char *destination);
/* A message for the operator: stderr, or a JSON line. */
void migrate_report_note(MigrateReport *r, const char *text);

#endif
