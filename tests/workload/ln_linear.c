/* The ln_linear workload: LayerNorm + Linear forward and backward, y [M, N] = LN(x) W + b for
 * x [M, K]; the LayerNorm's weight and bias and the Linear's bias optional. The benchmark runs
 * AF3's pair projections (M = 384^2, K = 128, no Linear bias) next to the unfused path:
 * megacl's LayerNorm and CLBlast's SGEMM as separate kernels with LN(x) and dLN(x) stored. */
#include "unfused.h"

#include "ref/ln_linear_ref.h"

#include <math.h>
#include <stdlib.h>

enum { X, LN_WEIGHT, LN_BIAS, WEIGHT, BIAS, DY, Y, MEAN, RSTD, DX, DLN_WEIGHT, DLN_BIAS, DWEIGHT, DBIAS, COUNT };
enum { OPT_LN_WEIGHT = 1, OPT_LN_BIAS = 2, OPT_BIAS = 4 };

static const wl_tensor_decl tensors[COUNT] = {
    [X] = {"x", WL_INPUT, 0, -2.0f, 3.0f},
    [LN_WEIGHT] = {"ln_weight", WL_INPUT, 0, 0.5f, 1.5f},
    [LN_BIAS] = {"ln_bias", WL_INPUT, 0, -0.5f, 0.5f},
    [WEIGHT] = {"weight", WL_INPUT, 0, -1.0f, 1.0f},
    [BIAS] = {"bias", WL_INPUT, 0, -1.0f, 1.0f},
    [DY] = {"dy", WL_INPUT, 0, -1.0f, 1.0f},
    [Y] = {"y", WL_FORWARD, 0, 0, 0},
    [MEAN] = {"mean", WL_FORWARD, 1, 0, 0},
    [RSTD] = {"rstd", WL_FORWARD, 1, 0, 0},
    [DX] = {"dx", WL_GRADIENT, 0, 0, 0},
    [DLN_WEIGHT] = {"dln_weight", WL_GRADIENT, 0, 0, 0},
    [DLN_BIAS] = {"dln_bias", WL_GRADIENT, 0, 0, 0},
    [DWEIGHT] = {"dweight", WL_GRADIENT, 0, 0, 0},
    [DBIAS] = {"dbias", WL_GRADIENT, 0, 0, 0},
};
static const char *const options[] = {"ln_weight", "ln_bias", "bias", NULL};

static void sizes(const wl_case *c, size_t *n)
{
    size_t rows = c->shape[0], in = c->shape[1], out = c->shape[2];
    n[X] = n[DX] = rows * in;
    n[LN_WEIGHT] = c->options & OPT_LN_WEIGHT ? in : 0;
    n[LN_BIAS] = c->options & OPT_LN_BIAS ? in : 0;
    n[WEIGHT] = n[DWEIGHT] = in * out;
    n[BIAS] = c->options & OPT_BIAS ? out : 0;
    n[DY] = n[Y] = rows * out;
    n[MEAN] = n[RSTD] = rows;
    n[DLN_WEIGHT] = n[DLN_BIAS] = in;
    n[DBIAS] = out;
}

static mcl_ln_linear_desc desc_of(const wl_problem *p)
{
    return (mcl_ln_linear_desc){p->c.shape[0], p->c.shape[1], p->c.shape[2], p->c.dtype, 1e-5f};
}

static mcl_ln_linear_bwd_tensors bwd_tensors(const wl_problem *p)
{
    return (mcl_ln_linear_bwd_tensors){wl_at(p, X),    wl_at(p, LN_WEIGHT),  wl_at(p, LN_BIAS),  wl_at(p, WEIGHT),
                                       wl_at(p, MEAN), wl_at(p, RSTD),       wl_at(p, DY),       wl_at(p, DX),
                                       wl_at(p, DLN_WEIGHT), wl_at(p, DLN_BIAS), wl_at(p, DWEIGHT), wl_at(p, DBIAS)};
}

static mcl_ln_linear_fwd_tensors fwd_tensors(const wl_problem *p)
{
    return (mcl_ln_linear_fwd_tensors){wl_at(p, X), wl_at(p, LN_WEIGHT), wl_at(p, LN_BIAS), wl_at(p, WEIGHT),
                                       wl_at(p, BIAS), wl_at(p, Y), wl_at(p, MEAN), wl_at(p, RSTD)};
}

WL_OP_PASSES(ln_linear)
/* The forward has no workspace; the backward takes exactly what its size function reports. */
WL_SIZED_BACKWARD(ln_linear)

/* dln_weight and dln_bias are held to the size of the terms their sums add (their sums over a
 * few rows, or of one feature, can cancel to near 0) */
static int reference(wl_problem *p)
{
    wl_tensor *t = p->t;
    ref_ln_linear_problem rp = {p->c.shape[0], p->c.shape[1], p->c.shape[2], 1e-5, t[X].values, t[WEIGHT].values,
                                t[LN_WEIGHT].values, t[LN_BIAS].values, t[BIAS].values, t[DY].values};
    ref_ln_linear_forward(&rp, t[Y].ref, t[MEAN].ref, t[RSTD].ref);
    ref_ln_linear_backward(&rp, t[DX].ref, t[DLN_WEIGHT].ref, t[DLN_BIAS].ref, t[DWEIGHT].ref, t[DBIAS].ref);
    for (int i = DLN_WEIGHT; i <= DLN_BIAS; i++)
        if (wl_has(p, i) && !(t[i].floor = malloc(t[i].count * sizeof(double)))) return -1;
    ref_ln_linear_param_grad_scale(&rp, t[DLN_WEIGHT].floor, t[DLN_BIAS].floor);
    return 0;
}

/* fp32 sums of up to a few thousand terms, or the dtype's storage rounding. For 16-bit dtypes
 * dx, dln_weight and dln_bias come from dLN(x) stored in that dtype: one rounding more, whose
 * error adds in quadrature (sqrt(2), rounded up to 1.5). */
static double tolerance(const wl_case *c, int tensor)
{
    if (tensor == MEAN || tensor == RSTD) return 1e-5;
    if (c->dtype == MCL_F32) return 2e-5;
    return host_tolerance(c->dtype) * (tensor == DX || tensor == DLN_WEIGHT || tensor == DLN_BIAS ? 1.5 : 1.0);
}

static int full_reference(const wl_case *c) { return (double)c->shape[0] * c->shape[1] * c->shape[2] <= 1 << 26; }

/* ---- the benchmark's check of large problems -------------------------------------------- */

/* Double-precision values of the problem, computed only where a check asks for them. */
typedef struct sample_ref {
    const wl_problem *p;
    size_t rows, in, out;
    double *mean, *rstd; /* every row */
} sample_ref;

static const float *in_of(const sample_ref *r, int i) { return r->p->t[i].values; }
static double weight_of(const sample_ref *r, int i, size_t k) { return r->p->t[i].values ? r->p->t[i].values[k] : i == LN_WEIGHT; }

static double xhat(const sample_ref *r, size_t row, size_t k) { return (in_of(r, X)[row * r->in + k] - r->mean[row]) * r->rstd[row]; }

/* dLN(x)[row, k] = sum_n dy[row, n] W[k, n] */
static double dxn(const sample_ref *r, size_t row, size_t k)
{
    double sum = 0.0;
    for (size_t n = 0; n < r->out; n++) sum += (double)in_of(r, DY)[row * r->out + n] * in_of(r, WEIGHT)[k * r->out + n];
    return sum;
}

/* y and dx of one row */
static void check_row(const sample_ref *r, size_t row, wl_err *err)
{
    const float *y = r->p->t[Y].values, *dx = r->p->t[DX].values, *b = r->p->t[BIAS].values;
    for (size_t n = 0; n < r->out; n++) {
        double sum = b ? b[n] : 0.0;
        for (size_t k = 0; k < r->in; k++)
            sum += (xhat(r, row, k) * weight_of(r, LN_WEIGHT, k) + weight_of(r, LN_BIAS, k)) * in_of(r, WEIGHT)[k * r->out + n];
        wl_err_add(&err[Y], y[row * r->out + n], sum);
    }
    if (!dx) return;
    double c1 = 0.0, c2 = 0.0; /* means of g dxn and of g dxn xhat over the row */
    for (size_t k = 0; k < r->in; k++) {
        double gd = weight_of(r, LN_WEIGHT, k) * dxn(r, row, k);
        c1 += gd / r->in;
        c2 += gd * xhat(r, row, k) / r->in;
    }
    for (size_t k = 0; k < r->in; k++)
        wl_err_add(&err[DX], dx[row * r->in + k],
                   r->rstd[row] * (weight_of(r, LN_WEIGHT, k) * dxn(r, row, k) - c1 - xhat(r, row, k) * c2));
}

/* dln_weight[k], dln_bias[k] and the column dweight[k, :] of one input feature */
static int check_feature(const sample_ref *r, size_t k, wl_err *err)
{
    const wl_tensor *t = r->p->t;
    double sg = 0.0, sb = 0.0, *col = calloc(r->out, sizeof *col);
    if (!col) return -1;
    for (size_t row = 0; row < r->rows; row++) {
        double d = dxn(r, row, k), xn = xhat(r, row, k) * weight_of(r, LN_WEIGHT, k) + weight_of(r, LN_BIAS, k);
        sg += d * xhat(r, row, k);
        sb += d;
        for (size_t n = 0; n < r->out && t[DWEIGHT].values; n++) col[n] += xn * in_of(r, DY)[row * r->out + n];
    }
    if (t[DLN_WEIGHT].values) wl_err_add(&err[DLN_WEIGHT], t[DLN_WEIGHT].values[k], sg);
    if (t[DLN_BIAS].values) wl_err_add(&err[DLN_BIAS], t[DLN_BIAS].values[k], sb);
    for (size_t n = 0; n < r->out && t[DWEIGHT].values; n++) wl_err_add(&err[DWEIGHT], t[DWEIGHT].values[k * r->out + n], col[n]);
    free(col);
    return 0;
}

/* The statistics of every row; y and dx of 64 rows spread over all of them; dln_weight,
 * dln_bias and a column of dweight for 4 input features, each a sum over every row. */
static int sample(wl_problem *p, double *errors)
{
    sample_ref r = {p, p->c.shape[0], p->c.shape[1], p->c.shape[2], malloc(p->c.shape[0] * sizeof(double)),
                    malloc(p->c.shape[0] * sizeof(double))};
    int ok = r.mean && r.rstd;
    wl_err err[COUNT] = {{0}};
    for (size_t row = 0; row < r.rows && ok; row++) {
        double mu = 0.0, var = 0.0;
        for (size_t k = 0; k < r.in; k++) mu += in_of(&r, X)[row * r.in + k] / (double)r.in;
        for (size_t k = 0; k < r.in; k++) var += pow(in_of(&r, X)[row * r.in + k] - mu, 2) / (double)r.in;
        r.mean[row] = mu;
        r.rstd[row] = 1.0 / sqrt(var + 1e-5);
        wl_err_add(&err[MEAN], p->t[MEAN].values[row], mu);
        wl_err_add(&err[RSTD], p->t[RSTD].values[row], r.rstd[row]);
    }
    for (size_t row = 0; row < r.rows && ok; row += (r.rows + 63) / 64) check_row(&r, row, err);
    for (size_t k = 0; k < r.in && ok; k += (r.in + 3) / 4) ok = check_feature(&r, k, err) == 0;
    for (int i = 0; i < COUNT; i++)
        errors[i] = ok && wl_has(p, i) && !wl_is_input(p, i) && i != DBIAS ? wl_err_value(&err[i]) : -1.0;
    free(r.mean), free(r.rstd);
    return ok ? 0 : -1;
}

static wl_counts counts(const wl_case *c)
{
    size_t rows = c->shape[0], in = c->shape[1], out = c->shape[2], es = mcl_dtype_size(c->dtype);
    double xb = (double)rows * in * es, yb = (double)rows * out * es, wb = (double)in * out * es, stats = 8.0 * rows;
    wl_counts k;
    k.fwd_bytes = xb + wb + yb + stats;                      /* x, W in; y, stats out */
    k.fwdbwd_bytes = k.fwd_bytes + 2 * xb + yb + 2 * wb + stats; /* x, dy, W in; dx, dW out */
    k.fwd_flops = 2.0 * rows * in * out + 8.0 * rows * in;
    k.fwdbwd_flops = k.fwd_flops + 4.0 * rows * in * out + 14.0 * rows * in;
    return k;
}

/* ---- the unfused path ------------------------------------------------------------------- */

enum { XN, DXN, SCRATCH };

static mcl_status unfused_setup(wl_problem *p)
{
    if (wl_has(p, BIAS)) return wl_fail(MCL_ERR_UNSUPPORTED, "the unfused path has no Linear bias (AF3's has none)");
    size_t n = p->c.shape[0] * p->c.shape[1];
    const size_t counts_[SCRATCH] = {n, n};
    return wl_unfused_setup(p, counts_, SCRATCH);
}

static mcl_status unfused_forward(wl_problem *p)
{
    mcl_layernorm_fwd_tensors lt = {wl_at(p, X), wl_at(p, LN_WEIGHT), wl_at(p, LN_BIAS), wl_scratch(p, XN),
                                    wl_at(p, MEAN), wl_at(p, RSTD)};
    return wl_unfused_ln_linear_forward(p, p->c.shape[0], p->c.shape[1], p->c.shape[2], &lt, wl_at(p, WEIGHT),
                                        wl_at(p, Y));
}

static mcl_status unfused_backward(wl_problem *p)
{
    mcl_layernorm_bwd_tensors lt = {wl_at(p, X),  wl_at(p, LN_WEIGHT), wl_at(p, MEAN),       wl_at(p, RSTD),
                                    wl_scratch(p, DXN), wl_at(p, DX), wl_at(p, DLN_WEIGHT), wl_at(p, DLN_BIAS)};
    return wl_unfused_ln_linear_backward(p, p->c.shape[0], p->c.shape[1], p->c.shape[2], &lt, wl_scratch(p, XN),
                                         wl_at(p, WEIGHT), wl_at(p, DY), wl_at(p, DWEIGHT));
}

static const wl_baseline baselines[] = {
    {"unfused", NULL, unfused_setup, wl_unfused_teardown, unfused_forward, unfused_backward},
};

/* dx, dln_weight, dln_bias and dweight: AF3's projections have no bias */
#define AF3(name, m, k, n) {name, {{m, k, n}, MCL_F32, OPT_LN_WEIGHT | OPT_LN_BIAS, 0xfu, 0}}
static const wl_named_case cases[] = {
    AF3("pair M=147456 K=128 N=16", 147456, 128, 16),
    AF3("pair M=147456 K=128 N=1024", 147456, 128, 1024),
    AF3("single M=768 K=384 N=1536", 768, 384, 1536),
};
static const wl_named_case cpu_cases[] = {
    AF3("pair M=4096 K=128 N=16", 4096, 128, 16),
    AF3("pair M=4096 K=128 N=1024", 4096, 128, 1024),
    AF3("single M=64 K=384 N=1536", 64, 384, 1536),
};

const wl_workload wl_ln_linear = WL_WORKLOAD("ln_linear", "gemm", "M,K,N", 3, .workspace = workspace,
                                             .tolerance = tolerance, .full_reference = full_reference,
                                             .sample = sample);
