/* Every workload, in the order `megacl bench` lists them. */
#include "workload.h"

const wl_workload *const wl_workloads[] = {&wl_layernorm, &wl_evoattn,    &wl_gating, &wl_swiglu, &wl_ln_linear,
                                           &wl_transition, &wl_trimul, &wl_linear, &wl_add,    &wl_transpose, &wl_acsr,
                                           &wl_flurka};
const size_t wl_workload_count = WL_COUNT(wl_workloads);
