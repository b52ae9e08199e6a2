/* LayerNorm's family and the steps of it that the ops built on LayerNorm take (LayerNorm +
 * Linear, Transition, the triangle update). */
#ifndef MCL_OPS_LAYERNORM_H
#define MCL_OPS_LAYERNORM_H

#include "ops/common/walk.h"
#include "runtime/family.h"

/* The family's tuning parameters. variant: 0 the reference kernels (a work-item per row), 1
 * the tiled ones: tpr work-items per row, wg per work-group, vec adjacent columns a load;
 * groups_per_cu work-groups per compute unit share the backward's rows; reduce_split rows of
 * work-items sum the dweight/dbias partials. */
typedef struct ln_params {
    int variant, tpr, vec, wg, groups_per_cu, reduce_split;
} ln_params;

enum { LN_VARIANT_REFERENCE = 0, LN_VARIANT_TILED = 1 };
#define LN_MAX_COLUMNS 32 /* columns one work-item holds in registers */

extern const mcl_family mcl_family_layernorm;

/* mean and rstd of x's rows only (no y). The tensors are not validated. */
mcl_status mcl_layernorm_stats_step(mcl_walk *walk, const char *step, const mcl_layernorm_desc *desc,
                                    const mcl_tensor *x, const mcl_tensor *mean, const mcl_tensor *rstd);

/* The backward, with dy in fp32 whatever the dtype where dy_fp32 (an op's fp32 gradient chain;
 * dx then cannot be dy itself). params_part is the part of the walk its dweight/dbias partials
 * take, or MCL_NO_PART when neither is asked for (the caller says, so that a sizing pass over
 * tensors not yet given still counts them). The tensors are not validated. */
#define MCL_NO_PART (-1)
mcl_status mcl_layernorm_backward_step(mcl_walk *walk, const char *step, const mcl_layernorm_desc *desc,
                                       const mcl_layernorm_bwd_tensors *tensors, int dy_fp32, int params_part);

/* ---- the LayerNorm that LayerNorm + Linear and Transition start with -----------------------
 * Both name its tensors alike in their tensors structs; the checks of each, for a LayerNorm of
 * x [rows, cols] of `dtype` storage. */

/* x and its optional weight and bias, which both passes read */
#define MCL_LN_INPUT_CHECKS(t, dtype, rows, cols)                                                \
    MCL_TENSOR("x", &(t)->x, dtype, MCL_REQUIRED_IN, rows, cols),                                \
    MCL_TENSOR("ln_weight", &(t)->ln_weight, dtype, MCL_OPTIONAL_IN, cols),                      \
    MCL_TENSOR("ln_bias", &(t)->ln_bias, dtype, MCL_OPTIONAL_IN, cols)

/* the row statistics: the forward saves them (role MCL_REQUIRED_OUT), the backward reads them */
#define MCL_LN_STATS_CHECKS(t, role, rows)                                                       \
    MCL_TENSOR("mean", &(t)->mean, MCL_F32, role, rows), MCL_TENSOR("rstd", &(t)->rstd, MCL_F32, role, rows)

/* the backward's gradients of x, the weight and the bias, each asked for or not */
#define MCL_LN_GRAD_CHECKS(t, dtype, rows, cols)                                                 \
    MCL_TENSOR("dx", &(t)->dx, dtype, MCL_OPTIONAL_OUT, rows, cols),                             \
    MCL_TENSOR("dln_weight", &(t)->dln_weight, dtype, MCL_OPTIONAL_OUT, cols),                   \
    MCL_TENSOR("dln_bias", &(t)->dln_bias, dtype, MCL_OPTIONAL_OUT, cols)

#endif
