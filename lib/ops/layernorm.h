/* LayerNorm for the ops built on it (LayerNorm + Linear, Transition). */
#ifndef MCL_OPS_LAYERNORM_H
#define MCL_OPS_LAYERNORM_H

#include "../runtime/context.h"

/* mean and rstd of x's rows only (no y). The tensors are not validated. */
mcl_status mcl_layernorm_stats_into(mcl_context *ctx, const mcl_layernorm_desc *desc, const mcl_tensor *x,
                                    const mcl_tensor *mean, const mcl_tensor *rstd);

/* The backward with its dweight/dbias partials at the start of `partial` (at least
 * mcl_layernorm_backward_workspace_size bytes; NULL without those outputs), so a caller can
 * keep its own intermediates in the rest of the workspace. The tensors are not validated. */
mcl_status mcl_layernorm_backward_into(mcl_context *ctx, const mcl_layernorm_desc *desc,
                                       const mcl_layernorm_bwd_tensors *tensors, cl_mem partial);

#endif
