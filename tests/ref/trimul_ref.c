/* Double-precision triangle multiplicative update reference (see trimul_ref.h). p and t stay in
 * double; dLN(z), handed to the float-input LayerNorm backward, is rounded to fp32: 2^-24
 * relative, far below every tolerance. */
#include "trimul_ref.h"

#include "layernorm_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

static size_t width(const ref_trimul_problem *p) { return 4 * p->h + p->c; }

static double *zeros(size_t n) { return calloc(n ? n : 1, sizeof(double)); }

static float *to_float(const double *v, size_t n)
{
    float *out = malloc((n ? n : 1) * sizeof *out);
    for (size_t i = 0; out && v && i < n; i++) out[i] = (float)v[i];
    return out;
}

/* y [rows, cols] = x [rows, k] W [k, cols] */
static void matmul(const double *x, const float *w, size_t rows, size_t k, size_t cols, double *y)
{
    memset(y, 0, rows * cols * sizeof *y);
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < k; i++)
            for (size_t o = 0; o < cols; o++) y[r * cols + o] += x[r * k + i] * w[i * cols + o];
}

/* dx [rows, k] = dy [rows, cols] W^T */
static void matmul_wt(const double *dy, const float *w, size_t rows, size_t k, size_t cols, double *dx)
{
    memset(dx, 0, rows * k * sizeof *dx);
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < k; i++)
            for (size_t o = 0; o < cols; o++) dx[r * k + i] += dy[r * cols + o] * w[i * cols + o];
}

/* dw [k, cols] = x^T [k, rows] dy [rows, cols]; with norm, the 2-norm of each element's terms */
static void matmul_xt(const double *x, const double *dy, size_t rows, size_t k, size_t cols, int norm, double *dw)
{
    memset(dw, 0, k * cols * sizeof *dw);
    for (size_t r = 0; r < rows; r++)
        for (size_t i = 0; i < k; i++)
            for (size_t o = 0; o < cols; o++) {
                double term = x[r * k + i] * dy[r * cols + o];
                dw[i * cols + o] += norm ? term * term : term;
            }
    for (size_t e = 0; norm && e < k * cols; e++) dw[e] = sqrt(dw[e]);
}

/* Everything the forward forms, as the backward needs it (malloc'd; free with chain_free). */
typedef struct chain {
    size_t np, w;
    double *p, *t; /* the saved ones where given, else computed */
    double *lnz;   /* LN_in(z) [np, c] */
    double *a, *b; /* [np, h], mask applied */
    double *lnt;   /* LN_out(t) [np, h] */
    double *o;     /* LN_out(t) W_out [np, c] */
} chain;

static void chain_free(chain *ch)
{
    free(ch->p), free(ch->t), free(ch->lnz), free(ch->a), free(ch->b), free(ch->lnt), free(ch->o);
}

/* Slot of operand element (i, k) of the pair layout: a[i, k] outgoing, a[k, i] incoming. */
static size_t slot(const ref_trimul_problem *p, size_t i, size_t k)
{
    return p->direction == MCL_TRIMUL_INCOMING ? k * p->n + i : i * p->n + k;
}

/* t [np, h] = the k-sum of a and b */
static void triangle(const ref_trimul_problem *p, const double *a, const double *b, double *t)
{
    size_t n = p->n, h = p->h;
    memset(t, 0, n * n * h * sizeof *t);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            for (size_t k = 0; k < n; k++)
                for (size_t c = 0; c < h; c++)
                    t[(i * n + j) * h + c] += a[slot(p, i, k) * h + c] * b[slot(p, j, k) * h + c];
}

/* The computed values, or the saved ones in their place where given. */
static double *continued(double *computed, const float *saved, size_t n)
{
    for (size_t i = 0; saved && i < n; i++) computed[i] = saved[i];
    return computed;
}

/* Forms the chain; pp, t, the stats: the forward's outputs where given. */
static void chain_forward(const ref_trimul_problem *p, chain *ch, double *pp, double *t, double *mean_in,
                          double *rstd_in, double *mean_out, double *rstd_out)
{
    size_t n = p->n, np = n * n, c = p->c, h = p->h, w = width(p);
    *ch = (chain){.np = np, .w = w, .p = zeros(np * w), .t = zeros(np * h), .lnz = zeros(np * c),
                  .a = zeros(np * h), .b = zeros(np * h), .lnt = zeros(np * h), .o = zeros(np * c)};
    ref_layernorm_forward(p->z, p->ln_in_weight, p->ln_in_bias, np, c, p->eps, ch->lnz, mean_in, rstd_in);
    matmul(ch->lnz, p->w_in, np, c, w, ch->p);
    if (pp) memcpy(pp, ch->p, np * w * sizeof *pp);
    continued(ch->p, p->p, np * w);

    for (size_t r = 0; r < np; r++)
        for (size_t k = 0; k < h; k++) {
            const double *row = ch->p + r * w;
            double m = p->mask ? p->mask[r] : 1.0;
            ch->a[r * h + k] = sigmoid(row[h + k]) * row[k] * m;
            ch->b[r * h + k] = sigmoid(row[3 * h + k]) * row[2 * h + k] * m;
        }
    triangle(p, ch->a, ch->b, ch->t);
    if (t) memcpy(t, ch->t, np * h * sizeof *t);
    continued(ch->t, p->t, np * h);

    ref_layernorm_forward_double(ch->t, p->ln_out_weight, p->ln_out_bias, np, h, p->eps, ch->lnt, mean_out, rstd_out);
    matmul(ch->lnt, p->w_out, np, h, c, ch->o);
}

void ref_trimul_forward(const ref_trimul_problem *p, double *out, double *pp, double *t, double *mean_in,
                        double *rstd_in, double *mean_out, double *rstd_out)
{
    chain ch;
    chain_forward(p, &ch, pp, t, mean_in, rstd_in, mean_out, rstd_out);
    size_t c = p->c, w = ch.w;
    for (size_t r = 0; out && r < ch.np; r++)
        for (size_t k = 0; k < c; k++) out[r * c + k] = sigmoid(ch.p[r * w + 4 * p->h + k]) * ch.o[r * c + k];
    chain_free(&ch);
}

void ref_trimul_out_scale(const ref_trimul_problem *p, double *out)
{
    chain ch;
    chain_forward(p, &ch, NULL, NULL, NULL, NULL, NULL, NULL);
    size_t c = p->c, h = p->h, w = ch.w;
    for (size_t r = 0; r < ch.np; r++)
        for (size_t k = 0; k < c; k++) {
            double ss = 0.0;
            for (size_t q = 0; q < h; q++) ss += pow(ch.lnt[r * h + q] * p->w_out[q * c + k], 2);
            out[r * c + k] = sigmoid(ch.p[r * w + 4 * h + k]) * sqrt(ss);
        }
    chain_free(&ch);
}

/* The backward's intermediates: dLN(t) and dLN(z) (the LayerNorm backwards' dy), dO, dp. */
typedef struct grads_chain {
    double *dlnt, *dt, *dO, *dp, *dlnz;
} grads_chain;

static void grads_forward(const ref_trimul_problem *p, const chain *ch, grads_chain *gc, double *dln_out_weight,
                          double *dln_out_bias)
{
    size_t n = p->n, np = ch->np, c = p->c, h = p->h, w = ch->w;
    gc->dO = zeros(np * c), gc->dp = zeros(np * w), gc->dlnt = zeros(np * h), gc->dt = zeros(np * h);
    gc->dlnz = zeros(np * c);
    /* out = sigmoid(g) o */
    for (size_t r = 0; r < np; r++)
        for (size_t k = 0; k < c; k++) {
            double s = sigmoid(ch->p[r * w + 4 * h + k]), d = p->dout[r * c + k];
            gc->dO[r * c + k] = d * s;
            gc->dp[r * w + 4 * h + k] = d * ch->o[r * c + k] * s * (1.0 - s);
        }
    /* o = LN_out(t) W_out */
    matmul_wt(gc->dO, p->w_out, np, h, c, gc->dlnt);
    ref_layernorm_backward_double(ch->t, p->ln_out_weight, gc->dlnt, np, h, p->eps, gc->dt, dln_out_weight,
                            dln_out_bias);
    /* the k-sum */
    double *da = zeros(np * h), *db = zeros(np * h);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            for (size_t k = 0; k < n; k++)
                for (size_t q = 0; q < h; q++) {
                    double d = gc->dt[(i * n + j) * h + q];
                    da[slot(p, i, k) * h + q] += d * ch->b[slot(p, j, k) * h + q];
                    db[slot(p, j, k) * h + q] += d * ch->a[slot(p, i, k) * h + q];
                }
    /* a = sigmoid(a_gate) a_proj mask, likewise b */
    for (size_t r = 0; r < np; r++)
        for (size_t q = 0; q < h; q++)
            for (int side = 0; side < 2; side++) {
                size_t proj = r * w + 2 * (size_t)side * h + q, gate = proj + h;
                double m = p->mask ? p->mask[r] : 1.0, s = sigmoid(ch->p[gate]);
                double d = (side ? db : da)[r * h + q] * m;
                gc->dp[proj] = d * s;
                gc->dp[gate] = d * ch->p[proj] * s * (1.0 - s);
            }
    free(da), free(db);
    /* p = LN_in(z) W_in */
    matmul_wt(gc->dp, p->w_in, np, c, w, gc->dlnz);
}

static void grads_free(grads_chain *gc) { free(gc->dlnt), free(gc->dt), free(gc->dO), free(gc->dp), free(gc->dlnz); }

void ref_trimul_backward(const ref_trimul_problem *p, const ref_trimul_grads *g)
{
    chain ch;
    grads_chain gc;
    chain_forward(p, &ch, NULL, NULL, NULL, NULL, NULL, NULL);
    grads_forward(p, &ch, &gc, g->dln_out_weight, g->dln_out_bias);
    size_t np = ch.np, c = p->c, h = p->h;
    if (g->dw_out) matmul_xt(ch.lnt, gc.dO, np, h, c, 0, g->dw_out);
    if (g->dw_in) matmul_xt(ch.lnz, gc.dp, np, c, ch.w, 0, g->dw_in);
    float *dlnz = to_float(gc.dlnz, np * c);
    ref_layernorm_backward(p->z, p->ln_in_weight, dlnz, np, c, p->eps, g->dz, g->dln_in_weight, g->dln_in_bias);
    free(dlnz);
    grads_free(&gc);
    chain_free(&ch);
}

/* Per column of x [rows, cols], sqrt(sum over rows of (dln xhat)^2) and sqrt(sum of dln^2);
 * per element, rstd times the rms of its row of dln weight. */
static void scale_of(const double *x, const float *weight, const double *dln, size_t rows, size_t cols, double eps,
                     double *dx, double *dweight, double *dbias)
{
    double *xhat = zeros(rows * cols), *rstd = zeros(rows);
    ref_layernorm_forward_double(x, NULL, NULL, rows, cols, eps, xhat, NULL, rstd);
    for (size_t r = 0; dx && r < rows; r++) {
        double ss = 0.0;
        for (size_t k = 0; k < cols; k++) ss += pow(dln[r * cols + k] * (weight ? weight[k] : 1.0), 2);
        for (size_t k = 0; k < cols; k++) dx[r * cols + k] = rstd[r] * sqrt(ss / (double)cols);
    }
    for (size_t k = 0; k < cols; k++) {
        double sw = 0.0, sb = 0.0;
        for (size_t r = 0; r < rows; r++) {
            double d = dln[r * cols + k], t = d * xhat[r * cols + k];
            sw += t * t, sb += d * d;
        }
        if (dweight) dweight[k] = sqrt(sw);
        if (dbias) dbias[k] = sqrt(sb);
    }
    free(xhat), free(rstd);
}

void ref_trimul_grad_scale(const ref_trimul_problem *p, const ref_trimul_grads *g)
{
    chain ch;
    grads_chain gc;
    chain_forward(p, &ch, NULL, NULL, NULL, NULL, NULL, NULL);
    grads_forward(p, &ch, &gc, NULL, NULL);
    double *z = continued(zeros(ch.np * p->c), p->z, ch.np * p->c);
    scale_of(z, p->ln_in_weight, gc.dlnz, ch.np, p->c, p->eps, g->dz, g->dln_in_weight, g->dln_in_bias);
    scale_of(ch.t, p->ln_out_weight, gc.dlnt, ch.np, p->h, p->eps, NULL, g->dln_out_weight, g->dln_out_bias);
    if (g->dw_out) matmul_xt(ch.lnt, gc.dO, ch.np, p->h, p->c, 1, g->dw_out);
    if (g->dw_in) matmul_xt(ch.lnz, gc.dp, ch.np, p->c, ch.w, 1, g->dw_in);
    free(z);
    grads_free(&gc);
    chain_free(&ch);
}
