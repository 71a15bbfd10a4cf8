/* blkmig migrate --resume and --retries: continuing a migration that
 * paused because its connection was lost (capability block-resume). */
#ifndef TOOLS_MIGRATE_RESUME_H
#define TOOLS_MIGRATE_RESUME_H

#include <stdbool.h>

#include "qapi/qmp-client.h"

/* Turn block-resume on for the next migration of C (exits on error). */
void migrate_resume_enable(QmpClient *c);
/* Whether D's migration is paused. */
bool migrate_resume_is_paused(QmpClient *d);
/* migrate-recover URI on DST (unless NULL), then migrate URI with resume
 * on SRC; false with *errp (the daemon's reason) when either refused. */
bool migrate_resume(QmpClient *src, QmpClient *dst, const char *uri, GError **errp);

#endif
