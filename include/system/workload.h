/* Built-in guest workload: a thread writing to one drive like a guest. */
#ifndef SYSTEM_WORKLOAD_H
#define SYSTEM_WORKLOAD_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum { WL_RANDWRITE, WL_SEQWRITE, WL_RANDRW } WorkloadPattern;

typedef struct WorkloadOptions {
    char *drive;
    WorkloadPattern pattern;   /* default randwrite */
    uint64_t bs;               /* default 4 KiB */
    double rate_mibs;          /* MiB/s written; 0 = unlimited; default 10 */
    uint64_t seed;             /* default 1 */
    double zero_frac;          /* share of all-zero writes, 0..1; default 0 */
} WorkloadOptions;

/* Parse "drive=ID[,pattern=..][,bs=..][,rate=..][,seed=..][,zero-frac=..]". */
bool workload_parse(const char *optstr, WorkloadOptions *out, GError **errp);
/* Start the thread (it runs only while the guest runs; it registers itself
 * as a guest device). */
bool workload_start(const WorkloadOptions *opts, GError **errp);
void workload_stop_all(void);

/* Added by system/: free what workload_parse allocated in OPTS. */
void workload_options_clear(WorkloadOptions *opts);

#endif
