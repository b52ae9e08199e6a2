/* Double-precision Linear reference (include/megacl.h, "Linear"). Inputs are floats already
 * quantized to the storage dtype; results are doubles.
 *   x [rows, in]   weight [in, out] row-major   bias [out]   residual, y, dy [rows, out]
 *   dx_acc, dx [rows, in] */
#ifndef MCL_TESTS_LINEAR_REF_H
#define MCL_TESTS_LINEAR_REF_H

#include <stddef.h>

typedef struct ref_linear_problem {
    size_t rows, in, out;
    const float *x, *weight;
    const float *bias, *residual; /* NULL: absent */
    const float *dy, *dx_acc;     /* backward only; dx_acc NULL: absent */
} ref_linear_problem;

/* y = x W + b + residual */
void ref_linear_forward(const ref_linear_problem *p, double *y);

/* dx = dy W^T + dx_acc, dweight = x^T dy, dbias = the column sums of dy; any output may be NULL. */
void ref_linear_backward(const ref_linear_problem *p, double *dx, double *dweight, double *dbias);

#endif
