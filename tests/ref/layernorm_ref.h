/* Double-precision LayerNorm reference. Inputs are floats (already quantized to the storage
 * dtype); weight and bias may be NULL (1 and 0). */
#ifndef MCL_TESTS_LAYERNORM_REF_H
#define MCL_TESTS_LAYERNORM_REF_H

#include <stddef.h>

void ref_layernorm_forward(const float *x, const float *weight, const float *bias, size_t rows,
                           size_t cols, double eps, double *y, double *mean, double *rstd);

/* Gradients from dy; mean and rstd are recomputed in double from x. Outputs may be NULL. */
void ref_layernorm_backward(const float *x, const float *weight, const float *dy, size_t rows,
                            size_t cols, double eps, double *dx, double *dweight, double *dbias);

/* The same over rows kept in double (an intermediate that must lose no digits: the triangle
 * update's t); mean, rstd (forward) and every gradient may be NULL. */
void ref_layernorm_forward_double(const double *x, const float *weight, const float *bias, size_t rows, size_t cols,
                                  double eps, double *y, double *mean, double *rstd);
void ref_layernorm_backward_double(const double *x, const float *weight, const double *dy, size_t rows, size_t cols,
                                   double eps, double *dx, double *dweight, double *dbias);

#endif
