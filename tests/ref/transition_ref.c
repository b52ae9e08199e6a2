/* Double-precision Transition reference (see transition_ref.h). Intermediates handed to the
 * float-input references (h, dS, dh) are rounded to fp32: 2^-24 relative, far below every
 * tolerance. */
#include "transition_ref.h"

#include "glu_ref.h"
#include "layernorm_ref.h"
#include "ln_linear_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* LN(x) W1 as a LayerNorm + Linear problem; with dh (as its dy), that problem's backward is
 * ours from dh on */
static ref_ln_linear_problem first_linear(const ref_transition_problem *p, const float *dh)
{
    return (ref_ln_linear_problem){p->rows, p->c, 2 * p->f, p->eps, p->x, p->w1, p->ln_weight, p->ln_bias, NULL, dh};
}

static float *to_float(const double *v, size_t n)
{
    float *out = malloc(n * sizeof *out);
    for (size_t i = 0; out && v && i < n; i++) out[i] = (float)v[i];
    return out;
}

/* LN(x) W1 as floats, malloc'd; also into h, mean and rstd where given */
static float *pre_activation(const ref_transition_problem *p, double *h, double *mean, double *rstd)
{
    size_t n = p->rows * 2 * p->f;
    double *hd = h ? h : malloc(n * sizeof *hd);
    ref_ln_linear_problem lp = first_linear(p, NULL);
    if (hd) ref_ln_linear_forward(&lp, hd, mean, rstd);
    float *hf = hd ? to_float(hd, n) : NULL;
    if (hd != h) free(hd);
    return hf;
}

/* dh [rows, 2F] as floats, malloc'd: SwiGLU's backward of dS = dy W2^T */
static float *dh_of(const ref_transition_problem *p, const float *h)
{
    size_t rows = p->rows, c = p->c, f = p->f;
    double *ds = malloc(rows * f * sizeof *ds), *dh = malloc(rows * 2 * f * sizeof *dh);
    for (size_t r = 0; ds && r < rows; r++)
        for (size_t j = 0; j < f; j++) {
            double sum = 0.0;
            for (size_t n = 0; n < c; n++) sum += p->dy[r * c + n] * (double)p->w2[j * c + n];
            ds[r * f + j] = sum;
        }
    float *dsf = ds ? to_float(ds, rows * f) : NULL, *dhf = NULL;
    if (dsf && dh) {
        ref_swiglu_backward(h, dsf, rows, f, p->silu_half, dh);
        dhf = to_float(dh, rows * 2 * f);
    }
    free(ds), free(dh), free(dsf);
    return dhf;
}

/* h [rows, 2F] as floats: the saved one, or LN(x) W1 (then *own is it, to free) */
static const float *saved_h(const ref_transition_problem *p, float **own)
{
    *own = p->h ? NULL : pre_activation(p, NULL, NULL, NULL);
    return p->h ? p->h : *own;
}

/* SwiGLU(h) [rows, F], malloc'd */
static double *swiglu_of(const ref_transition_problem *p, const float *h)
{
    double *s = malloc(p->rows * p->f * sizeof *s);
    if (s) ref_swiglu_forward(h, p->rows, p->f, p->silu_half, s);
    return s;
}

void ref_transition_forward(const ref_transition_problem *p, double *y, double *mean, double *rstd, double *h)
{
    size_t rows = p->rows, c = p->c, f = p->f;
    float *hf = pre_activation(p, h, mean, rstd);
    double *s = hf && y ? swiglu_of(p, p->h ? p->h : hf) : NULL;
    if (s) memset(y, 0, rows * c * sizeof *y);
    for (size_t r = 0; s && r < rows; r++)
        for (size_t j = 0; j < f; j++)
            for (size_t n = 0; n < c; n++) y[r * c + n] += s[r * f + j] * p->w2[j * c + n];
    free(hf), free(s);
}

void ref_transition_backward(const ref_transition_problem *p, double *dx, double *dln_weight, double *dln_bias,
                             double *dw1, double *dw2)
{
    size_t rows = p->rows, c = p->c, f = p->f;
    float *own;
    const float *h = saved_h(p, &own);
    double *s = h && dw2 ? swiglu_of(p, h) : NULL;
    if (s) memset(dw2, 0, f * c * sizeof *dw2);
    for (size_t r = 0; s && r < rows; r++)
        for (size_t j = 0; j < f; j++)
            for (size_t n = 0; n < c; n++) dw2[j * c + n] += s[r * f + j] * p->dy[r * c + n];
    float *dh = h && (dx || dln_weight || dln_bias || dw1) ? dh_of(p, h) : NULL;
    ref_ln_linear_problem lp = first_linear(p, dh);
    if (dh) ref_ln_linear_backward(&lp, dx, dln_weight, dln_bias, dw1, NULL);
    free(own), free(s), free(dh);
}

/* out [m, n] = the 2-norm over rows of u[r, i] v[r, j]: the terms of (u^T v)[i, j] */
static void term_norms(const double *u, const float *v, size_t rows, size_t m, size_t n, double *out)
{
    memset(out, 0, m * n * sizeof *out);
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) {
                double t = u[r * m + i] * v[r * n + j];
                out[i * n + j] += t * t;
            }
    for (size_t i = 0; i < m * n; i++) out[i] = sqrt(out[i]);
}

/* The size of dLN(x)'s rounding error [rows, c]: the 2-norm of its terms dh W1 and itself. */
static double *dxn_error_size(const ref_transition_problem *p, const float *dh)
{
    size_t rows = p->rows, c = p->c, f2 = 2 * p->f;
    double *e = malloc(rows * c * sizeof *e);
    for (size_t r = 0; e && r < rows; r++)
        for (size_t k = 0; k < c; k++) {
            double sum = 0.0, sq = 0.0;
            for (size_t j = 0; j < f2; j++) {
                double t = dh[r * f2 + j] * (double)p->w1[k * f2 + j];
                sum += t, sq += t * t;
            }
            e[r * c + k] = sqrt(sq + sum * sum);
        }
    return e;
}

void ref_transition_error_scale(const ref_transition_problem *p, double *dx, double *dln_weight, double *dln_bias,
                                double *dw1, double *dw2)
{
    size_t rows = p->rows, c = p->c, f = p->f, rc = rows * c;
    float *own;
    const float *h = saved_h(p, &own);
    float *dh = h ? dh_of(p, h) : NULL;
    double *e = dh ? dxn_error_size(p, dh) : NULL, *s = h && dw2 ? swiglu_of(p, h) : NULL;
    double *xn = malloc(rc * sizeof *xn), *xhat = malloc(rc * sizeof *xhat), *rstd = malloc(rows * sizeof *rstd);
    int ok = e && xn && xhat && rstd;
    if (ok) {
        ref_layernorm_forward(p->x, p->ln_weight, p->ln_bias, rows, c, p->eps, xn, NULL, rstd);
        ref_layernorm_forward(p->x, NULL, NULL, rows, c, p->eps, xhat, NULL, NULL);
    }
    if (ok && dln_weight) memset(dln_weight, 0, c * sizeof *dln_weight);
    if (ok && dln_bias) memset(dln_bias, 0, c * sizeof *dln_bias);
    for (size_t r = 0; ok && r < rows; r++)
        for (size_t k = 0; k < c; k++) {
            double ek = e[r * c + k];
            if (dx) dx[r * c + k] = rstd[r] * (p->ln_weight ? fabs(p->ln_weight[k]) : 1.0) * ek;
            if (dln_weight) dln_weight[k] += ek * ek * xhat[r * c + k] * xhat[r * c + k];
            if (dln_bias) dln_bias[k] += ek * ek;
        }
    for (size_t k = 0; ok && k < c; k++) {
        if (dln_weight) dln_weight[k] = sqrt(dln_weight[k]);
        if (dln_bias) dln_bias[k] = sqrt(dln_bias[k]);
    }
    if (ok && dw1) term_norms(xn, dh, rows, c, 2 * f, dw1);
    if (s) term_norms(s, p->dy, rows, f, c, dw2);
    free(own), free(dh), free(e), free(s), free(xn), free(xhat), free(rstd);
}
