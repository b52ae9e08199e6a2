/* LayerNorm + Linear's forward as steps that other ops' walks take too (Transition's
 * h = LN(x) W1). */
#ifndef MCL_OPS_LN_LINEAR_H
#define MCL_OPS_LN_LINEAR_H

#include "ops/common/walk.h"

/* y = LN(x) W (+ bias), x's row statistics saved in mean and rstd: the statistics step, then the
 * GEMM step `gemm_step`, which forms LN(x) on its load and takes its split partials from part
 * `part` of the walk. The tensors are not validated. */
mcl_status mcl_ln_linear_forward_steps(mcl_walk *walk, const mcl_ln_linear_desc *desc,
                                       const mcl_ln_linear_fwd_tensors *tensors, const char *gemm_step, int part);

#endif
