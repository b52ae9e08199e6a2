/* FLuRKA's family: low-rank projection and kernel (or softmax) attention. */
#ifndef MCL_OPS_FLURKA_H
#define MCL_OPS_FLURKA_H

#include "runtime/family.h"

/* The family's tuning parameters. chunk_kib: the KiB of workspace a chunk of query rows' features (and,
 * backward, their gradients) may take, which sets how many rows of every head run at once;
 * row_wg: the work-items of a row's kernels; rows, wg: the keys a work-group of the key sums
 * holds in local memory at a time and its work-items; groups_per_cu: work-groups per compute
 * unit that share a head's keys (each sums a chunk into partials); key_wg: the key gradients'
 * work-items. The products take the gemm family's parameters. */
typedef struct fl_params {
    int chunk_kib, row_wg, rows, wg, groups_per_cu, key_wg;
} fl_params;

/* The ReLU kernel's offset (kept above 0 so its denominator cannot vanish). */
#define FL_RELU_EPS 1e-3f

extern const mcl_family mcl_family_flurka;

#endif
