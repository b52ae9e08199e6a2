/* FLuRKA's family: low-rank projection and kernel (or softmax) attention. */
#ifndef MCL_OPS_FLURKA_H
#define MCL_OPS_FLURKA_H

#include "runtime/family.h"

/* The family's tuning parameters. chunk_kib: the KiB of workspace a chunk of query rows' (or
 * keys') features may take (twice that backward, with their gradients), which sets how many rows
 * of every head run at once; row_wg: the work-items of the kernels that reduce a row or a key.
 * The products take the gemm family's parameters. */
typedef struct fl_params {
    int chunk_kib, row_wg;
} fl_params;

/* The ReLU kernel's offset (kept above 0 so its denominator cannot vanish). */
#define FL_RELU_EPS 1e-3f

extern const mcl_family mcl_family_flurka;

#endif
