/* Double-precision LayerNorm + Linear reference (see ln_linear_ref.h). */
#include "ln_linear_ref.h"

#include "layernorm_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* LN(x) [rows, in], malloc'd */
static double *normalised(const ref_ln_linear_problem *p, double *mean, double *rstd)
{
    double *xn = malloc(p->rows * p->in * sizeof *xn);
    if (xn) ref_layernorm_forward(p->x, p->ln_weight, p->ln_bias, p->rows, p->in, p->eps, xn, mean, rstd);
    return xn;
}

/* dLN(x) = dy W^T [rows, in], malloc'd */
static double *dxn_of(const ref_ln_linear_problem *p)
{
    size_t in = p->in, out = p->out;
    double *dxn = malloc(p->rows * in * sizeof *dxn);
    for (size_t r = 0; dxn && r < p->rows; r++)
        for (size_t i = 0; i < in; i++) {
            double sum = 0.0;
            for (size_t o = 0; o < out; o++) sum += p->dy[r * out + o] * (double)p->weight[i * out + o];
            dxn[r * in + i] = sum;
        }
    return dxn;
}

void ref_ln_linear_forward(const ref_ln_linear_problem *p, double *y, double *mean, double *rstd)
{
    double *xn = normalised(p, mean, rstd);
    for (size_t r = 0; xn && r < p->rows; r++) {
        double *yr = y + r * p->out;
        for (size_t o = 0; o < p->out; o++) yr[o] = p->bias ? p->bias[o] : 0.0;
        for (size_t i = 0; i < p->in; i++)
            for (size_t o = 0; o < p->out; o++) yr[o] += xn[r * p->in + i] * p->weight[i * p->out + o];
    }
    free(xn);
}

void ref_ln_linear_backward(const ref_ln_linear_problem *p, double *dx, double *dln_weight, double *dln_bias,
                            double *dweight, double *dbias)
{
    size_t rows = p->rows, in = p->in, out = p->out;
    if (dweight) {
        double *xn = normalised(p, NULL, NULL);
        memset(dweight, 0, in * out * sizeof *dweight);
        for (size_t r = 0; xn && r < rows; r++)
            for (size_t i = 0; i < in; i++)
                for (size_t o = 0; o < out; o++) dweight[i * out + o] += xn[r * in + i] * p->dy[r * out + o];
        free(xn);
    }
    if (dbias) {
        memset(dbias, 0, out * sizeof *dbias);
        for (size_t r = 0; r < rows; r++)
            for (size_t o = 0; o < out; o++) dbias[o] += p->dy[r * out + o];
    }
    if (!dx && !dln_weight && !dln_bias) return;
    /* The LayerNorm reference takes its gradient as floats: rounding dLN(x) to fp32 (2^-24
     * relative) stays far below every tolerance. */
    double *dxn = dxn_of(p);
    float *g = malloc(rows * in * sizeof *g);
    for (size_t k = 0; dxn && g && k < rows * in; k++) g[k] = (float)dxn[k];
    if (dxn && g) ref_layernorm_backward(p->x, p->ln_weight, g, rows, in, p->eps, dx, dln_weight, dln_bias);
    free(dxn);
    free(g);
}

void ref_ln_linear_param_grad_scale(const ref_ln_linear_problem *p, double *dln_weight, double *dln_bias)
{
    size_t rows = p->rows, in = p->in;
    double *dxn = dxn_of(p), *xhat = malloc(rows * in * sizeof *xhat);
    if (dxn && xhat) ref_layernorm_forward(p->x, NULL, NULL, rows, in, p->eps, xhat, NULL, NULL);
    for (size_t i = 0; dxn && xhat && i < in; i++) {
        double sw = 0.0, sb = 0.0;
        for (size_t r = 0; r < rows; r++) {
            double g = dxn[r * in + i], t = g * xhat[r * in + i];
            sw += t * t;
            sb += g * g;
        }
        if (dln_weight) dln_weight[i] = sqrt(sw);
        if (dln_bias) dln_bias[i] = sqrt(sb);
    }
    free(dxn);
    free(xhat);
}
