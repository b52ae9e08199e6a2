/* Double-precision LayerNorm reference (see layernorm_ref.h): one row at a time over doubles;
 * float inputs are widened a row at a time first, which is exact. */
#include "layernorm_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void row_stats(const double *xr, size_t cols, double eps, double *mean, double *rstd)
{
    double sum = 0.0, sq = 0.0;
    for (size_t c = 0; c < cols; c++) sum += xr[c];
    double mu = sum / (double)cols;
    for (size_t c = 0; c < cols; c++) sq += (xr[c] - mu) * (xr[c] - mu);
    *mean = mu;
    *rstd = 1.0 / sqrt(sq / (double)cols + eps);
}

static void forward_row(const double *xr, const float *weight, const float *bias, size_t cols, double eps,
                        double *yr, double *mean, double *rstd)
{
    double mu, rs;
    row_stats(xr, cols, eps, &mu, &rs);
    for (size_t c = 0; c < cols; c++) {
        double v = (xr[c] - mu) * rs;
        if (weight) v *= weight[c];
        if (bias) v += bias[c];
        yr[c] = v;
    }
    if (mean) *mean = mu;
    if (rstd) *rstd = rs;
}

/* dx's row (where asked for); adds the row's terms to dweight and dbias */
static void backward_row(const double *xr, const float *weight, const double *gr, size_t cols, double eps,
                         double *dxr, double *dweight, double *dbias)
{
    double mu, rs, c1 = 0.0, c2 = 0.0;
    row_stats(xr, cols, eps, &mu, &rs);
    for (size_t c = 0; c < cols; c++) {
        double xhat = (xr[c] - mu) * rs, g = gr[c] * (weight ? weight[c] : 1.0);
        c1 += g * xhat;
        c2 += g;
        if (dweight) dweight[c] += gr[c] * xhat;
        if (dbias) dbias[c] += gr[c];
    }
    c1 /= (double)cols;
    c2 /= (double)cols;
    for (size_t c = 0; dxr && c < cols; c++) {
        double xhat = (xr[c] - mu) * rs, g = gr[c] * (weight ? weight[c] : 1.0);
        dxr[c] = (g - (xhat * c1 + c2)) * rs;
    }
}

static void zero_param_grads(size_t cols, double *dweight, double *dbias)
{
    if (dweight) memset(dweight, 0, cols * sizeof *dweight);
    if (dbias) memset(dbias, 0, cols * sizeof *dbias);
}

static const double *widened(const float *v, size_t n, double *out)
{
    for (size_t i = 0; i < n; i++) out[i] = v[i];
    return out;
}

void ref_layernorm_forward_double(const double *x, const float *weight, const float *bias, size_t rows, size_t cols,
                                  double eps, double *y, double *mean, double *rstd)
{
    for (size_t r = 0; r < rows; r++)
        forward_row(x + r * cols, weight, bias, cols, eps, y + r * cols, mean ? mean + r : NULL, rstd ? rstd + r : NULL);
}

void ref_layernorm_backward_double(const double *x, const float *weight, const double *dy, size_t rows, size_t cols,
                                   double eps, double *dx, double *dweight, double *dbias)
{
    zero_param_grads(cols, dweight, dbias);
    for (size_t r = 0; r < rows; r++)
        backward_row(x + r * cols, weight, dy + r * cols, cols, eps, dx ? dx + r * cols : NULL, dweight, dbias);
}

void ref_layernorm_forward(const float *x, const float *weight, const float *bias, size_t rows,
                           size_t cols, double eps, double *y, double *mean, double *rstd)
{
    double *xr = malloc(cols * sizeof *xr);
    for (size_t r = 0; r < rows; r++)
        forward_row(widened(x + r * cols, cols, xr), weight, bias, cols, eps, y + r * cols, mean ? mean + r : NULL,
                    rstd ? rstd + r : NULL);
    free(xr);
}

void ref_layernorm_backward(const float *x, const float *weight, const float *dy, size_t rows,
                            size_t cols, double eps, double *dx, double *dweight, double *dbias)
{
    double *xr = malloc(2 * cols * sizeof *xr), *gr = xr + cols;
    zero_param_grads(cols, dweight, dbias);
    for (size_t r = 0; r < rows; r++)
        backward_row(widened(x + r * cols, cols, xr), weight, widened(dy + r * cols, cols, gr), cols, eps,
                     dx ? dx + r * cols : NULL, dweight, dbias);
    free(xr);
}
