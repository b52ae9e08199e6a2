/* Double-precision Linear reference (see linear_ref.h). */
#include "linear_ref.h"

#include <string.h>

void ref_linear_forward(const ref_linear_problem *p, double *y)
{
    for (size_t r = 0; r < p->rows; r++) {
        double *yr = y + r * p->out;
        for (size_t o = 0; o < p->out; o++)
            yr[o] = (p->bias ? p->bias[o] : 0.0) + (p->residual ? p->residual[r * p->out + o] : 0.0);
        for (size_t i = 0; i < p->in; i++)
            for (size_t o = 0; o < p->out; o++) yr[o] += (double)p->x[r * p->in + i] * p->weight[i * p->out + o];
    }
}

void ref_linear_backward(const ref_linear_problem *p, double *dx, double *dweight, double *dbias)
{
    size_t rows = p->rows, in = p->in, out = p->out;
    if (dweight) memset(dweight, 0, in * out * sizeof *dweight);
    if (dbias) memset(dbias, 0, out * sizeof *dbias);
    for (size_t r = 0; r < rows; r++) {
        const float *dy = p->dy + r * out, *x = p->x + r * in;
        for (size_t i = 0; i < in && dweight; i++)
            for (size_t o = 0; o < out; o++) dweight[i * out + o] += (double)x[i] * dy[o];
        for (size_t o = 0; o < out && dbias; o++) dbias[o] += dy[o];
        for (size_t i = 0; i < in && dx; i++) {
            double sum = p->dx_acc ? p->dx_acc[r * in + i] : 0.0;
            for (size_t o = 0; o < out; o++) sum += (double)dy[o] * p->weight[i * out + o];
            dx[r * in + i] = sum;
        }
    }
}
