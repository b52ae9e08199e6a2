/* Double-precision references for sigmoid gating, SwiGLU and the add. Inputs are floats (already
 * quantized to the storage dtype). */
#ifndef MCL_TESTS_GLU_REF_H
#define MCL_TESTS_GLU_REF_H

#include "megacl.h"

#include <stddef.h>

/* y = x * sigmoid(g) over count elements. */
void ref_gating_forward(const float *x, const float *g, size_t count, double *y);

/* dx = dy * s, dg = dy * x * s * (1 - s) with s = sigmoid(g); dx or dg may be NULL. */
void ref_gating_backward(const float *x, const float *g, const float *dy, size_t count,
                         double *dx, double *dg);

/* x [rows, 2 * features] is [a, b] (silu_half FIRST) or [b, a] (SECOND) per row;
 * y [rows, features] = a * sigmoid(a) * b. */
void ref_swiglu_forward(const float *x, size_t rows, size_t features, mcl_swiglu_half silu_half,
                        double *y);

/* dx [rows, 2 * features] in x's layout: da = dy * b * s * (1 + a * (1 - s)), db = dy * silu(a),
 * s = sigmoid(a). */
void ref_swiglu_backward(const float *x, const float *dy, size_t rows, size_t features,
                         mcl_swiglu_half silu_half, double *dx);

/* y = a + b over count elements (its backward passes dy to both inputs). */
void ref_add_forward(const float *a, const float *b, size_t count, double *y);

#endif
