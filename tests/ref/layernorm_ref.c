/* Double-precision LayerNorm reference (see layernorm_ref.h). */
#include "layernorm_ref.h"

#include <math.h>
#include <string.h>

static void row_stats(const float *xr, size_t cols, double eps, double *mean, double *rstd)
{
    double sum = 0.0, sq = 0.0;
    for (size_t c = 0; c < cols; c++) sum += xr[c];
    double mu = sum / (double)cols;
    for (size_t c = 0; c < cols; c++) sq += (xr[c] - mu) * (xr[c] - mu);
    *mean = mu;
    *rstd = 1.0 / sqrt(sq / (double)cols + eps);
}

void ref_layernorm_forward(const float *x, const float *weight, const float *bias, size_t rows,
                           size_t cols, double eps, double *y, double *mean, double *rstd)
{
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        double mu, rs;
        row_stats(xr, cols, eps, &mu, &rs);
        for (size_t c = 0; c < cols; c++) {
            double v = (xr[c] - mu) * rs;
            if (weight) v *= weight[c];
            if (bias) v += bias[c];
            y[r * cols + c] = v;
        }
        if (mean) mean[r] = mu;
        if (rstd) rstd[r] = rs;
    }
}

void ref_layernorm_backward(const float *x, const float *weight, const float *dy, size_t rows,
                            size_t cols, double eps, double *dx, double *dweight, double *dbias)
{
    if (dweight) memset(dweight, 0, cols * sizeof *dweight);
    if (dbias) memset(dbias, 0, cols * sizeof *dbias);
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols, *gr = dy + r * cols;
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
        for (size_t c = 0; dx && c < cols; c++) {
            double xhat = (xr[c] - mu) * rs, g = gr[c] * (weight ? weight[c] : 1.0);
            dx[r * cols + c] = (g - (xhat * c1 + c2)) * rs;
        }
    }
}
