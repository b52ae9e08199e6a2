/* Double-precision reference of the layout changes (include/megacl.h, "Transpose"). */
#ifndef MCL_TESTS_LAYOUT_REF_H
#define MCL_TESTS_LAYOUT_REF_H

#include <stddef.h>

/* y [batch, cols, rows, width] with y[t, j, i, :] = x[t, i, j, :] for x [batch, rows, cols, width]
 * (the backward is the same with rows and cols exchanged). */
void ref_transpose(const float *x, size_t batch, size_t rows, size_t cols, size_t width, double *y);

#endif
