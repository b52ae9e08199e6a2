/* Double-precision triangle multiplicative update reference (include/megacl.h, "Triangle
 * multiplicative update"), built on the LayerNorm reference. Inputs are floats already quantized
 * to the storage dtype; results are doubles. With w = 4h + c:
 *   z, out, dout [N, N, c]   mask [N, N]   ln_in_weight, ln_in_bias [c]   w_in [c, w]
 *   ln_out_weight, ln_out_bias [h]   w_out [h, c]   p [N, N, w]   t [N, N, h]   stats [N, N] */
#ifndef MCL_TESTS_TRIMUL_REF_H
#define MCL_TESTS_TRIMUL_REF_H

#include "megacl.h"

#include <stddef.h>

typedef struct ref_trimul_problem {
    size_t n, c, h;
    double eps;
    mcl_trimul_direction direction;
    const float *z, *w_in, *w_out;
    const float *mask;                      /* NULL: every pair kept */
    const float *ln_in_weight, *ln_in_bias; /* NULL: absent (1, 0) */
    const float *ln_out_weight, *ln_out_bias;
    /* Saved tensors to continue from (NULL: computed from z, kept in double): the forward
     * forms t from p and out from p and t; the backward starts from both. */
    const float *p, *t;
    const float *dout; /* backward only */
} ref_trimul_problem;

/* p = LN_in(z) W_in (always from z); t from p, out from p and t (the saved ones where given);
 * mean and rstd of the rows of z and of that t. Any output may be NULL. */
void ref_trimul_forward(const ref_trimul_problem *p, double *out, double *pp, double *t, double *mean_in,
                        double *rstd_in, double *mean_out, double *rstd_out);

/* Per element of out, sigmoid(g) times the 2-norm of the terms LN_out(t) W_out adds: the size of
 * the error that rounding LN_out(t) leaves in out, however much its sum cancels. */
void ref_trimul_out_scale(const ref_trimul_problem *p, double *out);

/* The gradients of sum(dout * out); any may be NULL. */
typedef struct ref_trimul_grads {
    double *dz, *dln_in_weight, *dln_in_bias, *dw_in, *dln_out_weight, *dln_out_bias, *dw_out;
} ref_trimul_grads;

void ref_trimul_backward(const ref_trimul_problem *p, const ref_trimul_grads *g);

/* The size of the error that rounding their inputs leaves in the gradients, however much their
 * sums cancel: per element of dz, rstd times the rms of its row of dLN(z) ln_in_weight (dLN(z)
 * being the LayerNorm backward's incoming gradient); per element of the others, the 2-norm over
 * the rows of the terms its sum adds (dLN xhat and dLN for the LayerNorm parameters, x dy for
 * the weights, as ref_ln_linear_param_grad_scale). Any field of g may be NULL. */
void ref_trimul_grad_scale(const ref_trimul_problem *p, const ref_trimul_grads *g);

#endif
