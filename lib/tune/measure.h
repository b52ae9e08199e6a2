/* Running a tuning target on the tuning context: its outputs poisoned, run, read back and
 * compared with the reference configuration's; its calls timed with event profiling. */
#ifndef MCL_TUNE_MEASURE_H
#define MCL_TUNE_MEASURE_H

#include "runtime/context.h"

/* The outputs of one run (input set 0), as floats, one array per output of the target. */
typedef struct tune_outputs {
    float **values;
    size_t count;
} tune_outputs;

/* Poisons the outputs with NaN, runs set 0 and reads every output back into `out` (allocated
 * on first use). */
mcl_status tune_run_outputs(mcl_context *ctx, const mcl_tune_target *target, tune_outputs *out);

void tune_outputs_free(tune_outputs *out);

/* The first output further from the reference than its tolerance (relative 2-norm; NaN is
 * never close), or -1; `err` its difference. */
int tune_outputs_differ(const mcl_tune_target *target, const tune_outputs *got, const tune_outputs *reference,
                        double *err);

/* Median device time of `reps` runs after `warmup` (the input sets in turn). A first warm-up
 * run longer than `prune_ms` (> 0) ends the timing there: *median is that run's time and
 * *timed 1. */
mcl_status tune_time(mcl_context *ctx, const mcl_tune_target *target, int warmup, int reps, double prune_ms,
                     double *median, int *timed);

#endif
