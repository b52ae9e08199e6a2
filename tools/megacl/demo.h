/* megacl demo: what the command measures and how it reports it (demo.c runs, demo_report.c
 * prints and writes the JSON). */
#ifndef MCL_CLI_DEMO_H
#define MCL_CLI_DEMO_H

#include "cli.h"

#include "workload/pairstack.h"

#define DEMO_MAX_REPS 5

typedef struct demo_settings {
    int tokens;       /* 0: the device's default */
    mcl_dtype dtype;
    int max_tokens;
    const char *json;
} demo_settings;

/* One path's step: medians of its timed steps, its peak memory and its results. */
typedef struct path_result {
    const char *name;
    mcl_dtype dtype;
    double ms[2][PS_SUBBLOCKS]; /* [0] forward, [1] backward, per sub-block */
    int reps;
    double buffer_bytes, workspace_bytes; /* the peak: their sum */
    ps_results results;
} path_result;

/* The block, its sizes and the device, before anything runs. */
void demo_print_intro(const ps_config *c, const mcl_device_info *device);

/* The table of both paths (megacl's first), the checks of their results against each other and,
 * with a path, the JSON; 0 when the paths agree (and the JSON was written). */
int demo_report(const ps_config *c, const mcl_device_info *device, const path_result results[2], const char *json);

/* The largest N_res of each path and what its step needs there; 0 when written. */
int demo_report_max_tokens(const ps_config *c, const mcl_device_info *device, const ps_path *const paths[2],
                           const size_t n[2], const ps_memory need[2], const char *json);

#endif
