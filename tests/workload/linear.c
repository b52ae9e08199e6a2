/* The linear workload: Linear forward and backward, y [M, N] = x W + b + residual for x [M, K],
 * and dx = dy W^T + dx_acc, dW, db; the bias, the residual and dx_acc optional. The benchmark runs
 * the pair stack's projections (M = 384^2, K = 128: triangle attention's q, k, v and gate, its
 * pair bias, its output projection with the residual) next to the unfused path: CLBlast's SGEMM,
 * and the residual and dx_acc added by kernels of their own. */
#include "unfused.h"

#include "ref/linear_ref.h"

#include <math.h>
#include <stdlib.h>

enum { X, WEIGHT, BIAS, RESIDUAL, DY, DX_ACC, Y, DX, DWEIGHT, DBIAS, COUNT };
/* dx_acc is given to the backward only with dx, which it is added to */
enum { OPT_BIAS = 1, OPT_RESIDUAL = 2, OPT_DX_ACC = 4 };

static const wl_tensor_decl tensors[COUNT] = {
    [X] = {"x", WL_INPUT, 0, -2.0f, 3.0f},
    [WEIGHT] = {"weight", WL_INPUT, 0, -1.0f, 1.0f},
    [BIAS] = {"bias", WL_INPUT, 0, -1.0f, 1.0f},
    [RESIDUAL] = {"residual", WL_INPUT, 0, -2.0f, 2.0f},
    [DY] = {"dy", WL_INPUT, 0, -1.0f, 1.0f},
    [DX_ACC] = {"dx_acc", WL_INPUT, 0, -1.0f, 1.0f},
    [Y] = {"y", WL_FORWARD, 0, 0, 0},
    [DX] = {"dx", WL_GRADIENT, 0, 0, 0},
    [DWEIGHT] = {"dweight", WL_GRADIENT, 0, 0, 0},
    [DBIAS] = {"dbias", WL_GRADIENT, 0, 0, 0},
};
static const char *const options[] = {"bias", "residual", "dx_acc", NULL};

static void sizes(const wl_case *c, size_t *n)
{
    size_t rows = c->shape[0], in = c->shape[1], out = c->shape[2];
    n[X] = n[DX] = rows * in;
    n[WEIGHT] = n[DWEIGHT] = in * out;
    n[BIAS] = c->options & OPT_BIAS ? out : 0;
    n[RESIDUAL] = c->options & OPT_RESIDUAL ? rows * out : 0;
    n[DX_ACC] = c->options & OPT_DX_ACC ? rows * in : 0;
    n[DY] = n[Y] = rows * out;
    n[DBIAS] = out;
}

static mcl_linear_desc desc_of(const wl_problem *p)
{
    return (mcl_linear_desc){p->c.shape[0], p->c.shape[1], p->c.shape[2], p->c.dtype};
}

static mcl_linear_fwd_tensors fwd_tensors(const wl_problem *p)
{
    return (mcl_linear_fwd_tensors){wl_at(p, X), wl_at(p, WEIGHT), wl_at(p, BIAS), wl_at(p, RESIDUAL), wl_at(p, Y)};
}

/* dx_acc only with dx */
static mcl_tensor dx_acc_of(const wl_problem *p) { return wl_has(p, DX) ? wl_at(p, DX_ACC) : (mcl_tensor){0}; }

static mcl_linear_bwd_tensors bwd_tensors(const wl_problem *p)
{
    return (mcl_linear_bwd_tensors){wl_at(p, X),  wl_at(p, WEIGHT),      wl_at(p, DY),    dx_acc_of(p),
                                    wl_at(p, DX), wl_at(p, DWEIGHT), wl_at(p, DBIAS)};
}

WL_OP_PASSES(linear)

/* The forward takes what the size function reports; the backward at most that (it is the size
 * with every gradient). */
static mcl_status workspace(wl_problem *p, size_t *fwd, size_t *bwd, int *backward_exact)
{
    mcl_linear_desc d = desc_of(p);
    *backward_exact = 0;
    return mcl_linear_workspace_size(p->ctx, &d, fwd, bwd);
}

static ref_linear_problem ref_problem(const wl_problem *p)
{
    const wl_tensor *t = p->t;
    mcl_tensor acc = dx_acc_of(p);
    return (ref_linear_problem){p->c.shape[0],     p->c.shape[1], p->c.shape[2], t[X].values,
                                t[WEIGHT].values,  t[BIAS].values, t[RESIDUAL].values, t[DY].values,
                                acc.mem ? t[DX_ACC].values : NULL};
}

static int reference(wl_problem *p)
{
    ref_linear_problem rp = ref_problem(p);
    ref_linear_forward(&rp, p->t[Y].ref);
    ref_linear_backward(&rp, p->t[DX].ref, p->t[DWEIGHT].ref, p->t[DBIAS].ref);
    return 0;
}

/* fp32 sums over the rows (dW, db) or the features, else the storage rounding */
static double tolerance(const wl_case *c, int tensor)
{
    (void)tensor;
    return c->dtype == MCL_F32 ? 2e-5 : host_tolerance(c->dtype);
}

static int full_reference(const wl_case *c) { return (double)c->shape[0] * c->shape[1] * c->shape[2] <= 1 << 26; }

/* ---- the benchmark's check of large problems -------------------------------------------- */

/* y and dx of one row */
static void check_row(const wl_problem *p, size_t row, double *y, double *dx, wl_err *err)
{
    size_t in = p->c.shape[1], out = p->c.shape[2];
    ref_linear_problem rp = ref_problem(p);
    rp.rows = 1;
    rp.x += row * in;
    rp.residual = rp.residual ? rp.residual + row * out : NULL;
    rp.dy += row * out;
    rp.dx_acc = rp.dx_acc ? rp.dx_acc + row * in : NULL;
    ref_linear_forward(&rp, y);
    ref_linear_backward(&rp, wl_has(p, DX) ? dx : NULL, NULL, NULL);
    for (size_t o = 0; o < out; o++) wl_err_add(&err[Y], p->t[Y].values[row * out + o], y[o]);
    for (size_t i = 0; i < in && wl_has(p, DX); i++) wl_err_add(&err[DX], p->t[DX].values[row * in + i], dx[i]);
}

/* Column o of dweight and dbias[o]: sums over every row. */
static void check_column(const wl_problem *p, size_t o, wl_err *err)
{
    size_t rows = p->c.shape[0], in = p->c.shape[1], out = p->c.shape[2];
    const float *x = p->t[X].values, *dy = p->t[DY].values;
    double db = 0.0;
    for (size_t r = 0; r < rows; r++) db += dy[r * out + o];
    if (wl_has(p, DBIAS)) wl_err_add(&err[DBIAS], p->t[DBIAS].values[o], db);
    for (size_t i = 0; i < in && wl_has(p, DWEIGHT); i++) {
        double sum = 0.0;
        for (size_t r = 0; r < rows; r++) sum += (double)x[r * in + i] * dy[r * out + o];
        wl_err_add(&err[DWEIGHT], p->t[DWEIGHT].values[i * out + o], sum);
    }
}

/* y and dx of 64 rows spread over all of them; 4 columns of dweight and of dbias, each a sum over
 * every row. */
static int sample(wl_problem *p, double *errors)
{
    size_t rows = p->c.shape[0], in = p->c.shape[1], out = p->c.shape[2];
    double *y = malloc(out * sizeof *y), *dx = malloc(in * sizeof *dx);
    int ok = y && dx;
    wl_err err[COUNT] = {{0}};
    for (size_t r = 0; r < rows && ok; r += (rows + 63) / 64) check_row(p, r, y, dx, err);
    for (size_t o = 0; o < out && ok; o += (out + 3) / 4) check_column(p, o, err);
    for (int i = 0; i < COUNT; i++) errors[i] = ok && wl_has(p, i) && !wl_is_input(p, i) ? wl_err_value(&err[i]) : -1.0;
    free(y), free(dx);
    return ok ? 0 : -1;
}

static wl_counts counts(const wl_case *c)
{
    size_t rows = c->shape[0], in = c->shape[1], out = c->shape[2], es = mcl_dtype_size(c->dtype);
    double xb = (double)rows * in * es, yb = (double)rows * out * es, wb = (double)in * out * es;
    double rb = c->options & OPT_RESIDUAL ? yb : 0.0, ab = c->options & OPT_DX_ACC ? xb : 0.0;
    wl_counts k;
    k.fwd_bytes = xb + wb + rb + yb;                             /* x, W, residual in; y out */
    k.fwdbwd_bytes = k.fwd_bytes + xb + 2 * wb + yb + ab + xb; /* x, W, dy, dx_acc in; dx, dW out */
    k.fwd_flops = 2.0 * rows * in * out;
    k.fwdbwd_flops = 3.0 * k.fwd_flops;
    return k;
}

/* ---- the unfused path ------------------------------------------------------------------- */

static mcl_status unfused_setup(wl_problem *p)
{
    if (wl_has(p, BIAS) || wl_has(p, DBIAS))
        return wl_fail(MCL_ERR_UNSUPPORTED, "the unfused path has no Linear bias (AF3's has none)");
    return wl_unfused_setup(p, NULL, 0);
}

/* y += r by a kernel of its own */
static mcl_status add_into(const wl_problem *p, size_t n, mcl_tensor y, mcl_tensor r)
{
    const wl_view views[] = {wl_flat(y), wl_flat(r), wl_flat(y)};
    return wl_eltwise(p, "k_add", n, views, 3);
}

static mcl_status unfused_forward(wl_problem *p)
{
    size_t rows = p->c.shape[0], in = p->c.shape[1], out = p->c.shape[2];
    WL_TRY(wl_sgemm(p, 0, 0, rows, out, in, wl_at(p, X), in, wl_at(p, WEIGHT), out, wl_at(p, Y), out));
    return wl_has(p, RESIDUAL) ? add_into(p, rows * out, wl_at(p, Y), wl_at(p, RESIDUAL)) : MCL_OK;
}

static mcl_status unfused_backward(wl_problem *p)
{
    size_t rows = p->c.shape[0], in = p->c.shape[1], out = p->c.shape[2];
    if (wl_has(p, DWEIGHT))
        WL_TRY(wl_sgemm(p, 1, 0, in, out, rows, wl_at(p, X), in, wl_at(p, DY), out, wl_at(p, DWEIGHT), out));
    if (!wl_has(p, DX)) return MCL_OK;
    WL_TRY(wl_sgemm(p, 0, 1, rows, in, out, wl_at(p, DY), out, wl_at(p, WEIGHT), out, wl_at(p, DX), in));
    return dx_acc_of(p).mem ? add_into(p, rows * in, wl_at(p, DX), wl_at(p, DX_ACC)) : MCL_OK;
}

static const wl_baseline baselines[] = {
    {"unfused", NULL, unfused_setup, wl_unfused_teardown, unfused_forward, unfused_backward},
};

/* dx and dweight (AF3's projections have no bias); a projection of the attention's input, its
 * gradient added to those of the others, and the output projection onto the residual */
enum { WANT_DX_DW = 0x3u };
#define AF3(name, m, k, n, options) {name, {{m, k, n}, MCL_F32, options, WANT_DX_DW, 0}}
static const wl_named_case cases[] = {
    AF3("pair M=147456 K=128 N=128 dx_acc", 147456, 128, 128, OPT_DX_ACC),
    AF3("pair M=147456 K=128 N=4 dx_acc", 147456, 128, 4, OPT_DX_ACC),
    AF3("pair M=147456 K=128 N=128 residual", 147456, 128, 128, OPT_RESIDUAL),
};
static const wl_named_case cpu_cases[] = {
    AF3("pair M=4096 K=128 N=128 dx_acc", 4096, 128, 128, OPT_DX_ACC),
    AF3("pair M=4096 K=128 N=4 dx_acc", 4096, 128, 4, OPT_DX_ACC),
    AF3("pair M=4096 K=128 N=128 residual", 4096, 128, 128, OPT_RESIDUAL),
};

const wl_workload wl_linear = WL_WORKLOAD("linear", "gemm", "M,K,N", 3, .workspace = workspace,
                                          .tolerance = tolerance, .full_reference = full_reference,
                                          .sample = sample);
