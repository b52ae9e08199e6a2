/* Double-precision LayerNorm + Linear reference (include/megacl.h, "LayerNorm + Linear"), built
 * on the LayerNorm reference. Inputs are floats already quantized to the storage dtype; results
 * are doubles.
 *   x [rows, in]   ln_weight, ln_bias [in]   weight [in, out] row-major   bias [out]
 *   y, dy [rows, out]   mean, rstd [rows] */
#ifndef MCL_TESTS_LN_LINEAR_REF_H
#define MCL_TESTS_LN_LINEAR_REF_H

#include <stddef.h>

typedef struct ref_ln_linear_problem {
    size_t rows, in, out;
    double eps;
    const float *x, *weight;
    const float *ln_weight, *ln_bias, *bias; /* NULL: absent (1, 0, 0) */
    const float *dy;                         /* backward only */
} ref_ln_linear_problem;

/* y = LN(x) W + b; mean and rstd of x's rows (either may be NULL). */
void ref_ln_linear_forward(const ref_ln_linear_problem *p, double *y, double *mean, double *rstd);

/* dx, dln_weight and dln_bias are the LayerNorm backward of dLN(x) = dy W^T; dweight = LN(x)^T dy,
 * dbias = column sums of dy. Any output may be NULL. */
void ref_ln_linear_backward(const ref_ln_linear_problem *p, double *dx, double *dln_weight, double *dln_bias,
                            double *dweight, double *dbias);

/* Per element of dln_weight and dln_bias, the 2-norm over the rows of the terms their sums add
 * (dLN(x) xhat and dLN(x)): the size of the error that rounding dLN(x) leaves in them, however
 * much the sums cancel (a few rows, or one feature, can leave them near 0). Either may be NULL. */
void ref_ln_linear_param_grad_scale(const ref_ln_linear_problem *p, double *dln_weight, double *dln_bias);

#endif
