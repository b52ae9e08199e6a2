/* Double-precision reference of the layout changes (see layout_ref.h). */
#include "layout_ref.h"

void ref_transpose(const float *x, size_t batch, size_t rows, size_t cols, size_t width, double *y)
{
    for (size_t t = 0; t < batch; t++)
        for (size_t i = 0; i < rows; i++)
            for (size_t j = 0; j < cols; j++)
                for (size_t q = 0; q < width; q++)
                    y[((t * cols + j) * rows + i) * width + q] = x[((t * rows + i) * cols + j) * width + q];
}
