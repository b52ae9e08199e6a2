/* The tuning record: JSON lines, one per measured candidate and one per finished job, each
 * carrying the device, its driver and the library version it was measured with, appended and
 * flushed to disk as results come. A run given the record of an interrupted one reads the
 * results of the same device, driver and version back and measures only what is missing; a
 * last line cut short by the interruption is skipped. */
#ifndef MCL_TUNE_RECORD_H
#define MCL_TUNE_RECORD_H

#include "megacl.h"

typedef struct tune_record tune_record;

/* Opens `path` for appending (made if missing) after reading what it holds for the device; with
 * a NULL path the record lives in memory only (the run's own results, each measured once). */
mcl_status tune_record_open(const char *path, const mcl_device_info *device, tune_record **record);

void tune_record_close(tune_record *record);

/* A candidate's result in the job, with its status and time: 2 from an earlier run, 1 from this
 * one, 0 none. */
int tune_record_find(const tune_record *record, const char *job, const char *params, char status[16], double *ms);

/* The job's earlier winner: 1 and its parameters and times, or 0. */
int tune_record_winner(const tune_record *record, const char *job, char params[1024], double *ms,
                       double *reference_ms, char reference[1024]);

/* Appends a candidate's result: status "ok", "compile", "launch", "resource", "wrong",
 * "timeout" or "error" (ms then NaN), with the reason of a failure. */
mcl_status tune_record_candidate(tune_record *record, const char *job, const char *stage, const char *params,
                                 const char *status, double ms, const char *reason);

mcl_status tune_record_winner_add(tune_record *record, const char *job, const char *params, double ms,
                                  const char *reference, double reference_ms);

/* Lines that could not be read (an interrupted write leaves one). */
size_t tune_record_skipped(const tune_record *record);

#endif
