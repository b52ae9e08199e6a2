/* A workload case as a tuning target (mcl_tune_target): problems of the case with inputs of
 * their own, rotated between timed runs where the device's last-level cache would otherwise
 * hold them all, run through the workload's forward and backward calls on whatever context the
 * tuner gives; their outputs compared within the workload's tolerances. */
#ifndef MCL_WORKLOAD_TUNE_TARGET_H
#define MCL_WORKLOAD_TUNE_TARGET_H

#include "workload.h"

#define WL_MAX_SETS 4

typedef struct wl_tune_sets {
    wl_problem *problems[WL_MAX_SETS];
    size_t count;
    mcl_tune_output outputs[WL_MAX_TENSORS];
    size_t output_count;
    char label[256];
} wl_tune_sets;

/* The target tuning `family` in the bucket of `shape` with case c of w (inputs seeded from the
 * case); sets holds its problems until wl_tune_sets_free. */
mcl_status wl_tune_target(mcl_context *ctx, const wl_workload *w, const char *case_name, const wl_case *c,
                          const char *family, const size_t *shape, wl_tune_sets *sets, mcl_tune_target *target);

void wl_tune_sets_free(wl_tune_sets *sets);

#endif
