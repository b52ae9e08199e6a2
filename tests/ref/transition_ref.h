/* Double-precision Transition reference (include/megacl.h, "Transition"), built on the
 * LayerNorm + Linear and SwiGLU references. Inputs are floats already quantized to the storage
 * dtype; results are doubles.
 *   x, dy [rows, c]   ln_weight, ln_bias [c]   w1 [c, 2F]   w2 [F, c]   h [rows, 2F]
 *   y [rows, c]   mean, rstd [rows] */
#ifndef MCL_TESTS_TRANSITION_REF_H
#define MCL_TESTS_TRANSITION_REF_H

#include "megacl.h"

#include <stddef.h>

typedef struct ref_transition_problem {
    size_t rows, c, f;
    double eps;
    mcl_swiglu_half silu_half;
    const float *x, *w1, *w2;
    const float *ln_weight, *ln_bias; /* NULL: absent (1, 0) */
    const float *h;  /* the h the forward saved (NULL: LN(x) W1, rounded to fp32): the backward
                      * starts from it, and y is SwiGLU(h) W2 of it, as the op's own y is */
    const float *dy; /* backward only */
} ref_transition_problem;

/* h = LN(x) W1 (always from x), y = SwiGLU(h) W2 (from p->h where given); mean and rstd of x's
 * rows. Any output may be NULL. */
void ref_transition_forward(const ref_transition_problem *p, double *y, double *mean, double *rstd, double *h);

/* dh = SwiGLU'(dy W2^T) given h; dx, dln_weight and dln_bias are the LayerNorm backward of
 * dLN(x) = dh W1^T; dw1 = LN(x)^T dh, dw2 = SwiGLU(h)^T dy. Any output may be NULL. */
void ref_transition_backward(const ref_transition_problem *p, double *dx, double *dln_weight, double *dln_bias,
                             double *dw1, double *dw2);

/* Per element of each gradient, the size of the error that rounding the terms it is built from
 * leaves, however much they cancel (the tests' tolerances scale with it): for dx, dln_weight and
 * dln_bias the error of dLN(x) (the 2-norm of its terms dh W1 and of itself) carried through
 * the LayerNorm backward (rstd |ln_weight| for dx; the 2-norm over rows of it times xhat, or of
 * it, for dln_weight and dln_bias); for dw1 and dw2 the 2-norm over rows of their terms
 * LN(x) dh and SwiGLU(h) dy. Any output may be NULL. */
void ref_transition_error_scale(const ref_transition_problem *p, double *dx, double *dln_weight, double *dln_bias,
                                double *dw1, double *dw2);

#endif
