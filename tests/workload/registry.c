/* Every workload, in the order `megacl bench` lists them. */
#include "workload.h"

const wl_workload *const wl_workloads[] = {&wl_layernorm, &wl_ln_linear};
const size_t wl_workload_count = WL_COUNT(wl_workloads);
