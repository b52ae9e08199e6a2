/* bench ln_linear: LayerNorm + Linear forward and backward (dx, dln_weight, dln_bias, dweight)
 * at AF3 pair shapes (M = 384^2 pair entries, c = 128), without a Linear bias as AF3's
 * projections; fused, and unfused: megacl's LayerNorm and CLBlast's SGEMM as separate kernels
 * with LN(x) and dLN(x) stored, as a framework runs it (fp32 only: CLBlast has no bf16). */
#include "bench.h"

#include "ref/host.h"

#include <math.h>
#include <stdlib.h>

typedef struct lnl_state {
    mcl_ln_linear_desc desc;
    float *x, *g, *b, *w, *dy; /* host inputs, quantized to the dtype */
    cl_mem x_mem, g_mem, b_mem, w_mem, dy_mem, y_mem, mean_mem, rstd_mem;
    cl_mem dx_mem, dg_mem, db_mem, dw_mem;
    int unfused;
    cl_mem xn_mem, dxn_mem; /* the unfused path's LN(x) and dLN(x) */
} lnl_state;

static mcl_status unfused_forward(lnl_state *s, mcl_context *ctx)
{
    size_t rows = s->desc.rows, in = s->desc.in_features, out = s->desc.out_features;
    mcl_layernorm_desc ln = {rows, in, MCL_F32, s->desc.eps};
    mcl_layernorm_fwd_tensors lt = {.x = {s->x_mem, 0}, .weight = {s->g_mem, 0}, .bias = {s->b_mem, 0},
                                    .y = {s->xn_mem, 0}, .mean = {s->mean_mem, 0}, .rstd = {s->rstd_mem, 0}};
    CLI_TRY(mcl_layernorm_forward(ctx, &ln, &lt, NULL));
    return bench_sgemm(ctx, 0, 0, rows, out, in, s->xn_mem, in, s->w_mem, out, s->y_mem, out);
}

static mcl_status unfused_backward(lnl_state *s, mcl_context *ctx)
{
    size_t rows = s->desc.rows, in = s->desc.in_features, out = s->desc.out_features;
    CLI_TRY(bench_sgemm(ctx, 0, 1, rows, in, out, s->dy_mem, out, s->w_mem, out, s->dxn_mem, in)); /* dy W^T */
    CLI_TRY(bench_sgemm(ctx, 1, 0, in, out, rows, s->xn_mem, in, s->dy_mem, out, s->dw_mem, out)); /* LN(x)^T dy */
    mcl_layernorm_desc ln = {rows, in, MCL_F32, s->desc.eps};
    mcl_layernorm_bwd_tensors lt = {.x = {s->x_mem, 0}, .weight = {s->g_mem, 0}, .mean = {s->mean_mem, 0},
                                    .rstd = {s->rstd_mem, 0}, .dy = {s->dxn_mem, 0}, .dx = {s->dx_mem, 0},
                                    .dweight = {s->dg_mem, 0}, .dbias = {s->db_mem, 0}};
    return mcl_layernorm_backward(ctx, &ln, &lt, NULL);
}

static mcl_status lnl_forward(void *opaque, mcl_context *ctx)
{
    lnl_state *s = opaque;
    if (s->unfused) return unfused_forward(s, ctx);
    mcl_ln_linear_fwd_tensors t = {.x = {s->x_mem, 0}, .ln_weight = {s->g_mem, 0}, .ln_bias = {s->b_mem, 0},
                                   .weight = {s->w_mem, 0}, .y = {s->y_mem, 0}, .mean = {s->mean_mem, 0},
                                   .rstd = {s->rstd_mem, 0}};
    return mcl_ln_linear_forward(ctx, &s->desc, &t, NULL);
}

static mcl_status lnl_backward(void *opaque, mcl_context *ctx)
{
    lnl_state *s = opaque;
    if (s->unfused) return unfused_backward(s, ctx);
    mcl_ln_linear_bwd_tensors t = {.x = {s->x_mem, 0}, .ln_weight = {s->g_mem, 0}, .ln_bias = {s->b_mem, 0},
                                   .weight = {s->w_mem, 0}, .mean = {s->mean_mem, 0}, .rstd = {s->rstd_mem, 0},
                                   .dy = {s->dy_mem, 0}, .dx = {s->dx_mem, 0}, .dln_weight = {s->dg_mem, 0},
                                   .dln_bias = {s->db_mem, 0}, .dweight = {s->dw_mem, 0}};
    return mcl_ln_linear_backward(ctx, &s->desc, &t, NULL);
}

/* Double-precision values of the problem, computed only where a check asks for them. */
typedef struct lnl_ref {
    const lnl_state *s;
    double *mean, *rstd; /* every row */
} lnl_ref;

static double xhat(const lnl_ref *r, size_t row, size_t k)
{
    return (r->s->x[row * r->s->desc.in_features + k] - r->mean[row]) * r->rstd[row];
}

/* dLN(x)[row, k] = sum_n dy[row, n] W[k, n] */
static double dxn(const lnl_ref *r, size_t row, size_t k)
{
    size_t out = r->s->desc.out_features;
    double sum = 0.0;
    for (size_t n = 0; n < out; n++) sum += (double)r->s->dy[row * out + n] * r->s->w[k * out + n];
    return sum;
}

/* y and dx of one row */
static void check_row(const lnl_ref *r, size_t row, const float *y, const float *dx, bench_err *fwd, bench_err *bwd)
{
    const lnl_state *s = r->s;
    size_t in = s->desc.in_features, out = s->desc.out_features;
    for (size_t n = 0; n < out; n++) {
        double sum = 0.0;
        for (size_t k = 0; k < in; k++) sum += (xhat(r, row, k) * s->g[k] + s->b[k]) * s->w[k * out + n];
        bench_err_add(fwd, y[row * out + n], sum);
    }
    double c1 = 0.0, c2 = 0.0; /* means of g dxn and of g dxn xhat over the row */
    for (size_t k = 0; k < in; k++) {
        double gd = s->g[k] * dxn(r, row, k);
        c1 += gd / in;
        c2 += gd * xhat(r, row, k) / in;
    }
    for (size_t k = 0; k < in; k++)
        bench_err_add(bwd, dx[row * in + k], r->rstd[row] * (s->g[k] * dxn(r, row, k) - c1 - xhat(r, row, k) * c2));
}

/* dln_weight[k], dln_bias[k] and the column dweight[k, :] of one input feature */
static void check_feature(const lnl_ref *r, size_t k, const float *dg, const float *db, const float *dw,
                          bench_err *bwd)
{
    const lnl_state *s = r->s;
    size_t rows = s->desc.rows, out = s->desc.out_features;
    double sg = 0.0, sb = 0.0;
    double *col = calloc(out, sizeof *col);
    for (size_t row = 0; row < rows && col; row++) {
        double d = dxn(r, row, k), xn = xhat(r, row, k) * s->g[k] + s->b[k];
        sg += d * xhat(r, row, k);
        sb += d;
        for (size_t n = 0; n < out; n++) col[n] += xn * s->dy[row * out + n];
    }
    bench_err_add(bwd, dg[k], sg);
    bench_err_add(bwd, db[k], sb);
    for (size_t n = 0; n < out && col; n++) bench_err_add(bwd, dw[k * out + n], col[n]);
    if (!col) bwd->diff = INFINITY;
    free(col);
}

/* Every row and feature when the problem is small; else 64 rows spread over all of them
 * (y, dx) and 4 input features (dln_weight, dln_bias, a column of dweight), each a sum over
 * every row. */
static mcl_status lnl_verify(void *opaque, mcl_context *ctx, double *fwd_err, double *bwd_err)
{
    lnl_state *s = opaque;
    const mcl_ln_linear_desc *d = &s->desc;
    size_t rows = d->rows, in = d->in_features, out = d->out_features;
    mcl_dtype dt = d->dtype;
    cl_mem outs[] = {s->y_mem, s->dx_mem, s->dg_mem, s->db_mem, s->dw_mem};
    size_t counts[] = {rows * out, rows * in, in, in, in * out};
    for (int i = 0; i < 5; i++) host_poison(ctx, outs[i], dt, counts[i]);
    CLI_TRY(lnl_forward(s, ctx));
    CLI_TRY(lnl_backward(s, ctx));
    float *res[5] = {0};
    lnl_ref r = {s, malloc(rows * sizeof(double)), malloc(rows * sizeof(double))};
    int ok = r.mean && r.rstd;
    for (int i = 0; i < 5 && ok; i++) {
        ok = (res[i] = malloc(counts[i] * sizeof(float))) != NULL;
        if (ok) host_download(ctx, outs[i], dt, res[i], counts[i]);
    }
    for (size_t row = 0; row < rows && ok; row++) {
        double mu = 0.0, var = 0.0;
        for (size_t k = 0; k < in; k++) mu += s->x[row * in + k] / (double)in;
        for (size_t k = 0; k < in; k++) var += (s->x[row * in + k] - mu) * (s->x[row * in + k] - mu) / in;
        r.mean[row] = mu;
        r.rstd[row] = 1.0 / sqrt(var + d->eps);
    }
    int full = (double)rows * in * out <= 1 << 26;
    size_t row_step = full ? 1 : (rows + 63) / 64, k_step = full ? 1 : (in + 3) / 4;
    bench_err fwd = {0}, bwd = {0};
    for (size_t row = 0; row < rows && ok; row += row_step) check_row(&r, row, res[0], res[1], &fwd, &bwd);
    for (size_t k = 0; k < in && ok; k += k_step) check_feature(&r, k, res[2], res[3], res[4], &bwd);
    *fwd_err = ok ? bench_err_value(&fwd) : INFINITY;
    *bwd_err = ok ? bench_err_value(&bwd) : INFINITY;
    for (int i = 0; i < 5; i++) free(res[i]);
    free(r.mean), free(r.rstd);
    return ok ? MCL_OK : MCL_ERR_OUT_OF_MEMORY;
}

static void lnl_destroy(void *opaque)
{
    lnl_state *s = opaque;
    if (!s) return;
    cl_mem mems[] = {s->x_mem,  s->g_mem,  s->b_mem,  s->w_mem,  s->dy_mem, s->y_mem,  s->mean_mem,
                     s->rstd_mem, s->dx_mem, s->dg_mem, s->db_mem, s->dw_mem, s->xn_mem, s->dxn_mem};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i]) clReleaseMemObject(mems[i]);
    free(s->x), free(s->g), free(s->b), free(s->w), free(s->dy);
    free(s);
}

static mcl_status lnl_create(mcl_context *ctx, const size_t *shape, mcl_dtype dtype, bench_op *op)
{
    lnl_state *s = calloc(1, sizeof *s);
    if (!s) return MCL_ERR_OUT_OF_MEMORY;
    size_t rows = shape[0], in = shape[1], out = shape[2], es = mcl_dtype_size(dtype);
    s->desc = (mcl_ln_linear_desc){rows, in, out, dtype, 1e-5f};
    *op = (bench_op){.state = s, .forward = lnl_forward, .backward = lnl_backward,
                     .verify = lnl_verify, .destroy = lnl_destroy};
    host_rng rng = host_rng_seeded(rows * 131 + in * 7 + out);
    s->x = host_random(&rng, dtype, rows * in, -2.0f, 3.0f);
    s->g = host_random(&rng, dtype, in, 0.5f, 1.5f);
    s->b = host_random(&rng, dtype, in, -0.5f, 0.5f);
    s->w = host_random(&rng, dtype, in * out, -0.1f, 0.1f);
    s->dy = host_random(&rng, dtype, rows * out, -1.0f, 1.0f);
    if (!s->x || !s->g || !s->b || !s->w || !s->dy) return MCL_ERR_OUT_OF_MEMORY;
    s->x_mem = host_upload(ctx, dtype, s->x, rows * in);
    s->g_mem = host_upload(ctx, dtype, s->g, in);
    s->b_mem = host_upload(ctx, dtype, s->b, in);
    s->w_mem = host_upload(ctx, dtype, s->w, in * out);
    s->dy_mem = host_upload(ctx, dtype, s->dy, rows * out);
    s->y_mem = host_upload(ctx, dtype, NULL, rows * out);
    s->mean_mem = host_upload(ctx, MCL_F32, NULL, rows);
    s->rstd_mem = host_upload(ctx, MCL_F32, NULL, rows);
    s->dx_mem = host_upload(ctx, dtype, NULL, rows * in);
    s->dg_mem = host_upload(ctx, dtype, NULL, in);
    s->db_mem = host_upload(ctx, dtype, NULL, in);
    s->dw_mem = host_upload(ctx, dtype, NULL, in * out);
    cl_mem mems[] = {s->x_mem,    s->g_mem,    s->b_mem,  s->w_mem,  s->dy_mem, s->y_mem,
                     s->mean_mem, s->rstd_mem, s->dx_mem, s->dg_mem, s->db_mem, s->dw_mem};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (!mems[i]) return MCL_ERR_OUT_OF_MEMORY;
    double xb = (double)rows * in * es, yb = (double)rows * out * es, wb = (double)in * out * es, stats = 8.0 * rows;
    op->fwd_bytes = xb + wb + yb + stats;                       /* x, W in; y, stats out */
    op->fwdbwd_bytes = op->fwd_bytes + 2 * xb + yb + 2 * wb + stats; /* x, dy, W in; dx, dW out */
    op->fwd_flops = 2.0 * rows * in * out + 8.0 * rows * in;
    op->fwdbwd_flops = op->fwd_flops + 4.0 * rows * in * out + 14.0 * rows * in;
    op->result_bytes = (uint64_t)(yb + stats + xb + wb + 2.0 * in * es); /* y, stats, dx, dW, dln_* */
    return MCL_OK;
}

/* The unfused path: the same problem and checks, LN(x) and dLN(x) counted as results. */
static mcl_status lnl_create_unfused(mcl_context *ctx, const size_t *shape, mcl_dtype dtype, bench_op *op)
{
    CLI_TRY(bench_unfused_dtype(dtype));
    CLI_TRY(lnl_create(ctx, shape, dtype, op));
    lnl_state *s = op->state;
    size_t rows = shape[0], in = shape[1];
    s->unfused = 1;
    s->xn_mem = host_upload(ctx, MCL_F32, NULL, rows * in);
    s->dxn_mem = host_upload(ctx, MCL_F32, NULL, rows * in);
    if (!s->xn_mem || !s->dxn_mem) return MCL_ERR_OUT_OF_MEMORY;
    op->result_bytes += (uint64_t)2 * rows * in * sizeof(float);
    return MCL_OK;
}

static double lnl_tolerance(mcl_dtype dtype)
{
    /* fp32: dweight sums over every row; bf16/f16: dLN(x) is stored in the dtype */
    return dtype == MCL_F32 ? 2e-5 : 2 * host_tolerance(dtype);
}

static const bench_impl lnl_impls[] = {{"megacl", NULL, NULL}, {"unfused", NULL, lnl_create_unfused}};
static const char *const lnl_case_names[] = {"pair M=147456 K=128 N=16", "pair M=147456 K=128 N=1024",
                                             "single M=768 K=384 N=1536"};
static const size_t lnl_case_shapes[][5] = {{147456, 128, 16}, {147456, 128, 1024}, {768, 384, 1536}};

const bench_workload bench_ln_linear = {
    .name = "ln_linear",
    .family = "gemm",
    .impls = lnl_impls,
    .impl_count = 2,
    .case_names = lnl_case_names,
    .case_shapes = lnl_case_shapes,
    .case_count = 3,
    .shape_rank = 3,
    .create = lnl_create,
    .tolerance = lnl_tolerance,
};
