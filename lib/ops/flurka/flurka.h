/* FLuRKA's family: low-rank projection and kernel (or softmax) attention. */
#ifndef MCL_OPS_FLURKA_H
#define MCL_OPS_FLURKA_H

#include "runtime/family.h"

/* The family's tuning parameters. rows: query rows a work-group of the row kernels holds in
 * local memory at a time; wg: the row kernels' work-items; groups_per_cu: work-groups per compute
 * unit that share a head's rows in the backward (each sums its rows' gradient partials);
 * key_wg: the key kernels' work-items. The projections take the gemm family's parameters. */
typedef struct fl_params {
    int rows, wg, groups_per_cu, key_wg;
} fl_params;

/* The ReLU kernel's offset (kept above 0 so its denominator cannot vanish). */
#define FL_RELU_EPS 1e-3f

extern const mcl_family mcl_family_flurka;

#endif
