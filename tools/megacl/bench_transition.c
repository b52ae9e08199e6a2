/* bench transition: AF3's transition block (LayerNorm -> Linear c->2F -> SwiGLU -> Linear F->c,
 * no biases, SiLU on the first half) forward and backward (dx, dln_weight, dln_bias, dw1, dw2)
 * at the pair shape (M = 384^2, c = 128, F = 4c), fused and unfused: megacl's LayerNorm and
 * SwiGLU and CLBlast's SGEMM as separate kernels with every intermediate stored, as a framework
 * runs the block (fp32 only: CLBlast has no bf16). */
#include "bench.h"

#include "ref/host.h"

#include <math.h>
#include <stdlib.h>

typedef struct tr_state {
    mcl_transition_desc desc;
    float *x, *g, *b, *w1, *w2, *dy; /* host inputs, quantized to the dtype */
    cl_mem x_mem, g_mem, b_mem, w1_mem, w2_mem, dy_mem, y_mem, mean_mem, rstd_mem, h_mem;
    cl_mem dx_mem, dg_mem, db_mem, dw1_mem, dw2_mem;
    /* the unfused path's intermediates: LN(x), SwiGLU(h), dS, dh and dLN(x) */
    int unfused;
    cl_mem xn_mem, sw_mem, ds_mem, dh_mem, dxn_mem;
} tr_state;

static mcl_status unfused_forward(tr_state *s, mcl_context *ctx)
{
    size_t rows = s->desc.rows, c = s->desc.channels, f = s->desc.hidden;
    mcl_layernorm_desc ln = {rows, c, MCL_F32, s->desc.eps};
    mcl_layernorm_fwd_tensors lt = {.x = {s->x_mem, 0}, .weight = {s->g_mem, 0}, .bias = {s->b_mem, 0},
                                    .y = {s->xn_mem, 0}, .mean = {s->mean_mem, 0}, .rstd = {s->rstd_mem, 0}};
    CLI_TRY(mcl_layernorm_forward(ctx, &ln, &lt, NULL));
    CLI_TRY(bench_sgemm(ctx, 0, 0, rows, 2 * f, c, s->xn_mem, c, s->w1_mem, 2 * f, s->h_mem, 2 * f));
    mcl_swiglu_desc sd = {rows, f, MCL_F32, s->desc.silu_half};
    mcl_swiglu_fwd_tensors st = {.x = {s->h_mem, 0}, .y = {s->sw_mem, 0}};
    CLI_TRY(mcl_swiglu_forward(ctx, &sd, &st, NULL));
    return bench_sgemm(ctx, 0, 0, rows, c, f, s->sw_mem, f, s->w2_mem, c, s->y_mem, c);
}

static mcl_status unfused_backward(tr_state *s, mcl_context *ctx)
{
    size_t rows = s->desc.rows, c = s->desc.channels, f = s->desc.hidden;
    CLI_TRY(bench_sgemm(ctx, 0, 1, rows, f, c, s->dy_mem, c, s->w2_mem, c, s->ds_mem, f));    /* dS = dy W2^T */
    CLI_TRY(bench_sgemm(ctx, 1, 0, f, c, rows, s->sw_mem, f, s->dy_mem, c, s->dw2_mem, c));  /* dW2 = S^T dy */
    mcl_swiglu_desc sd = {rows, f, MCL_F32, s->desc.silu_half};
    mcl_swiglu_bwd_tensors st = {.x = {s->h_mem, 0}, .dy = {s->ds_mem, 0}, .dx = {s->dh_mem, 0}};
    CLI_TRY(mcl_swiglu_backward(ctx, &sd, &st, NULL));
    CLI_TRY(bench_sgemm(ctx, 0, 1, rows, c, 2 * f, s->dh_mem, 2 * f, s->w1_mem, 2 * f, s->dxn_mem, c));
    CLI_TRY(bench_sgemm(ctx, 1, 0, c, 2 * f, rows, s->xn_mem, c, s->dh_mem, 2 * f, s->dw1_mem, 2 * f));
    mcl_layernorm_desc ln = {rows, c, MCL_F32, s->desc.eps};
    mcl_layernorm_bwd_tensors lt = {.x = {s->x_mem, 0}, .weight = {s->g_mem, 0}, .mean = {s->mean_mem, 0},
                                    .rstd = {s->rstd_mem, 0}, .dy = {s->dxn_mem, 0}, .dx = {s->dx_mem, 0},
                                    .dweight = {s->dg_mem, 0}, .dbias = {s->db_mem, 0}};
    return mcl_layernorm_backward(ctx, &ln, &lt, NULL);
}

static mcl_status tr_forward(void *opaque, mcl_context *ctx)
{
    tr_state *s = opaque;
    if (s->unfused) return unfused_forward(s, ctx);
    mcl_transition_fwd_tensors t = {.x = {s->x_mem, 0}, .ln_weight = {s->g_mem, 0}, .ln_bias = {s->b_mem, 0},
                                    .w1 = {s->w1_mem, 0}, .w2 = {s->w2_mem, 0}, .y = {s->y_mem, 0},
                                    .mean = {s->mean_mem, 0}, .rstd = {s->rstd_mem, 0}, .h = {s->h_mem, 0}};
    return mcl_transition_forward(ctx, &s->desc, &t, NULL);
}

static mcl_status tr_backward(void *opaque, mcl_context *ctx)
{
    tr_state *s = opaque;
    if (s->unfused) return unfused_backward(s, ctx);
    mcl_transition_bwd_tensors t = {.x = {s->x_mem, 0}, .ln_weight = {s->g_mem, 0}, .ln_bias = {s->b_mem, 0},
                                    .w1 = {s->w1_mem, 0}, .w2 = {s->w2_mem, 0}, .mean = {s->mean_mem, 0},
                                    .rstd = {s->rstd_mem, 0}, .h = {s->h_mem, 0}, .dy = {s->dy_mem, 0},
                                    .dx = {s->dx_mem, 0}, .dln_weight = {s->dg_mem, 0},
                                    .dln_bias = {s->db_mem, 0}, .dw1 = {s->dw1_mem, 0}, .dw2 = {s->dw2_mem, 0}};
    return mcl_transition_backward(ctx, &s->desc, &t, NULL);
}

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* One row's double-precision forward and backward values. */
typedef struct tr_row {
    double rstd, *xhat, *xn, *h, *s, *ds, *dh, *dxn; /* [c], [c], [2F], [F], [F], [2F], [c] */
} tr_row;

/* Everything of row r; with `full` also dh and dLN(x) (dS is always formed). */
static void row_values(const tr_state *st, size_t r, tr_row *w, int full)
{
    size_t c = st->desc.channels, f = st->desc.hidden;
    const float *x = st->x + r * c, *dy = st->dy + r * c;
    double mu = 0.0, var = 0.0;
    for (size_t k = 0; k < c; k++) mu += x[k] / (double)c;
    for (size_t k = 0; k < c; k++) var += (x[k] - mu) * (x[k] - mu) / c;
    w->rstd = 1.0 / sqrt(var + st->desc.eps);
    for (size_t k = 0; k < c; k++) {
        w->xhat[k] = (x[k] - mu) * w->rstd;
        w->xn[k] = w->xhat[k] * st->g[k] + st->b[k];
    }
    for (size_t j = 0; j < 2 * f; j++) {
        double sum = 0.0;
        for (size_t k = 0; k < c; k++) sum += w->xn[k] * st->w1[k * 2 * f + j];
        w->h[j] = sum;
    }
    for (size_t i = 0; i < f; i++) {
        double a = w->h[i], z = sigmoid(a), sum = 0.0;
        w->s[i] = a * z * w->h[f + i];
        for (size_t n = 0; n < c; n++) sum += dy[n] * st->w2[i * c + n];
        w->ds[i] = sum;
        w->dh[i] = sum * w->h[f + i] * z * (1.0 + a * (1.0 - z));
        w->dh[f + i] = sum * a * z;
    }
    for (size_t k = 0; full && k < c; k++) {
        double sum = 0.0;
        for (size_t j = 0; j < 2 * f; j++) sum += w->dh[j] * st->w1[k * 2 * f + j];
        w->dxn[k] = sum;
    }
}

enum { OUT_Y, OUT_DX, OUT_DG, OUT_DB, OUT_DW1, OUT_DW2, OUT_COUNT };

/* Every output when the problem is small (rows x c x F <= 2^24); else y and dx of 64 rows
 * spread over all of them and four columns of dW1 and four rows of dW2, each a sum over every
 * row (dln_weight and dln_bias, which need dLN(x) of every row, are left to the tests). */
static mcl_status tr_verify(void *opaque, mcl_context *ctx, double *fwd_err, double *bwd_err)
{
    tr_state *s = opaque;
    size_t rows = s->desc.rows, c = s->desc.channels, f = s->desc.hidden;
    mcl_dtype dt = s->desc.dtype;
    cl_mem outs[OUT_COUNT] = {s->y_mem, s->dx_mem, s->dg_mem, s->db_mem, s->dw1_mem, s->dw2_mem};
    size_t counts[OUT_COUNT] = {rows * c, rows * c, c, c, c * 2 * f, f * c};
    for (int i = 0; i < OUT_COUNT; i++) host_poison(ctx, outs[i], dt, counts[i]);
    CLI_TRY(tr_forward(s, ctx));
    CLI_TRY(tr_backward(s, ctx));
    float *res[OUT_COUNT] = {0};
    double *buf = malloc((4 * c + 6 * f) * sizeof *buf + (c * 2 * f + f * c + 2 * c) * sizeof(double));
    int ok = buf != NULL;
    for (int i = 0; i < OUT_COUNT && ok; i++) {
        ok = (res[i] = malloc(counts[i] * sizeof(float))) != NULL;
        if (ok) host_download(ctx, outs[i], dt, res[i], counts[i]);
    }
    int full = (double)rows * c * f <= (double)(1 << 24);
    size_t row_step = full ? 1 : (rows + 63) / 64, col_step = full ? 1 : (2 * f + 3) / 4, w2_step = full ? 1 : (f + 3) / 4;
    bench_err fwd = {0}, bwd = {0};
    if (ok) {
        tr_row w = {0, buf, buf + c, buf + 2 * c, buf + 2 * c + 2 * f, buf + 2 * c + 3 * f, buf + 2 * c + 4 * f,
                    buf + 2 * c + 6 * f};
        double *dw1 = buf + 3 * c + 6 * f, *dw2 = dw1 + c * 2 * f, *dg = dw2 + f * c, *db = dg + c;
        for (size_t i = 0; i < c * 2 * f + f * c + 2 * c; i++) dw1[i] = 0.0;
        for (size_t r = 0; r < rows; r++) {
            int sampled = r % row_step == 0;
            row_values(s, r, &w, full || sampled);
            for (size_t k = 0; k < c; k++)
                for (size_t j = 0; j < 2 * f; j += col_step) dw1[k * 2 * f + j] += w.xn[k] * w.dh[j];
            for (size_t i = 0; i < f; i += w2_step)
                for (size_t n = 0; n < c; n++) dw2[i * c + n] += w.s[i] * s->dy[r * c + n];
            if (!sampled) continue;
            double c1 = 0.0, c2 = 0.0;
            for (size_t k = 0; k < c; k++) {
                c1 += s->g[k] * w.dxn[k] / c;
                c2 += s->g[k] * w.dxn[k] * w.xhat[k] / c;
                dg[k] += w.dxn[k] * w.xhat[k];
                db[k] += w.dxn[k];
            }
            for (size_t n = 0; n < c; n++) {
                double y = 0.0;
                for (size_t i = 0; i < f; i++) y += w.s[i] * s->w2[i * c + n];
                bench_err_add(&fwd, res[OUT_Y][r * c + n], y);
            }
            for (size_t k = 0; k < c; k++)
                bench_err_add(&bwd, res[OUT_DX][r * c + k], w.rstd * (s->g[k] * w.dxn[k] - c1 - w.xhat[k] * c2));
        }
        for (size_t k = 0; k < c; k++)
            for (size_t j = 0; j < 2 * f; j += col_step) bench_err_add(&bwd, res[OUT_DW1][k * 2 * f + j], dw1[k * 2 * f + j]);
        for (size_t i = 0; i < f; i += w2_step)
            for (size_t n = 0; n < c; n++) bench_err_add(&bwd, res[OUT_DW2][i * c + n], dw2[i * c + n]);
        for (size_t k = 0; full && k < c; k++) {
            bench_err_add(&bwd, res[OUT_DG][k], dg[k]);
            bench_err_add(&bwd, res[OUT_DB][k], db[k]);
        }
    }
    *fwd_err = ok ? bench_err_value(&fwd) : INFINITY;
    *bwd_err = ok ? bench_err_value(&bwd) : INFINITY;
    for (int i = 0; i < OUT_COUNT; i++) free(res[i]);
    free(buf);
    return ok ? MCL_OK : MCL_ERR_OUT_OF_MEMORY;
}

static void tr_destroy(void *opaque)
{
    tr_state *s = opaque;
    if (!s) return;
    cl_mem mems[] = {s->x_mem,    s->g_mem,  s->b_mem,  s->w1_mem, s->w2_mem,  s->dy_mem,  s->y_mem,
                     s->mean_mem, s->rstd_mem, s->h_mem, s->dx_mem, s->dg_mem,  s->db_mem,  s->dw1_mem,
                     s->dw2_mem,  s->xn_mem, s->sw_mem, s->ds_mem, s->dh_mem,  s->dxn_mem};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i]) clReleaseMemObject(mems[i]);
    free(s->x), free(s->g), free(s->b), free(s->w1), free(s->w2), free(s->dy);
    free(s);
}

static mcl_status tr_create(mcl_context *ctx, const size_t *shape, mcl_dtype dtype, bench_op *op)
{
    tr_state *s = calloc(1, sizeof *s);
    if (!s) return MCL_ERR_OUT_OF_MEMORY;
    size_t rows = shape[0], c = shape[1], f = shape[2], es = mcl_dtype_size(dtype);
    s->desc = (mcl_transition_desc){.rows = rows, .channels = c, .hidden = f, .dtype = dtype, .eps = 1e-5f,
                                    .silu_half = MCL_SWIGLU_SILU_FIRST};
    *op = (bench_op){.state = s, .forward = tr_forward, .backward = tr_backward,
                     .verify = tr_verify, .destroy = tr_destroy};
    host_rng rng = host_rng_seeded(rows * 17 + c * 5 + f);
    float scale1 = 1.0f / sqrtf((float)c), scale2 = 1.0f / sqrtf((float)f);
    s->x = host_random(&rng, dtype, rows * c, -2.0f, 2.0f);
    s->g = host_random(&rng, dtype, c, 0.5f, 1.5f);
    s->b = host_random(&rng, dtype, c, -0.5f, 0.5f);
    s->w1 = host_random(&rng, dtype, c * 2 * f, -scale1, scale1);
    s->w2 = host_random(&rng, dtype, f * c, -scale2, scale2);
    s->dy = host_random(&rng, dtype, rows * c, -1.0f, 1.0f);
    if (!s->x || !s->g || !s->b || !s->w1 || !s->w2 || !s->dy) return MCL_ERR_OUT_OF_MEMORY;
    s->x_mem = host_upload(ctx, dtype, s->x, rows * c);
    s->g_mem = host_upload(ctx, dtype, s->g, c);
    s->b_mem = host_upload(ctx, dtype, s->b, c);
    s->w1_mem = host_upload(ctx, dtype, s->w1, c * 2 * f);
    s->w2_mem = host_upload(ctx, dtype, s->w2, f * c);
    s->dy_mem = host_upload(ctx, dtype, s->dy, rows * c);
    s->y_mem = host_upload(ctx, dtype, NULL, rows * c);
    s->mean_mem = host_upload(ctx, MCL_F32, NULL, rows);
    s->rstd_mem = host_upload(ctx, MCL_F32, NULL, rows);
    s->h_mem = host_upload(ctx, dtype, NULL, rows * 2 * f);
    s->dx_mem = host_upload(ctx, dtype, NULL, rows * c);
    s->dg_mem = host_upload(ctx, dtype, NULL, c);
    s->db_mem = host_upload(ctx, dtype, NULL, c);
    s->dw1_mem = host_upload(ctx, dtype, NULL, c * 2 * f);
    s->dw2_mem = host_upload(ctx, dtype, NULL, f * c);
    cl_mem mems[] = {s->x_mem,    s->g_mem, s->b_mem,  s->w1_mem, s->w2_mem, s->dy_mem,  s->y_mem,  s->mean_mem,
                     s->rstd_mem, s->h_mem, s->dx_mem, s->dg_mem, s->db_mem, s->dw1_mem, s->dw2_mem};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (!mems[i]) return MCL_ERR_OUT_OF_MEMORY;
    double xb = (double)rows * c * es, hb = 2.0 * rows * f * es, wb = 3.0 * c * f * es, stats = 8.0 * rows;
    op->fwd_bytes = xb + wb + hb + xb + stats;             /* x, W in; h, y, stats out */
    op->fwdbwd_bytes = op->fwd_bytes + 3 * xb + hb + 2 * wb; /* x, h, dy, W in; dx, dW out */
    op->fwd_flops = 6.0 * rows * c * f + 8.0 * rows * c;
    op->fwdbwd_flops = 3.0 * op->fwd_flops;
    op->result_bytes = (uint64_t)(2 * xb + hb + stats + wb + 2.0 * c * es); /* y, h, stats, dx, dW, dln */
    return MCL_OK;
}

/* The unfused path: the same problem and checks, its intermediates counted as results. */
static mcl_status tr_create_unfused(mcl_context *ctx, const size_t *shape, mcl_dtype dtype, bench_op *op)
{
    CLI_TRY(bench_unfused_dtype(dtype));
    CLI_TRY(tr_create(ctx, shape, dtype, op));
    tr_state *s = op->state;
    size_t rows = shape[0], c = shape[1], f = shape[2];
    s->unfused = 1;
    s->xn_mem = host_upload(ctx, MCL_F32, NULL, rows * c);
    s->sw_mem = host_upload(ctx, MCL_F32, NULL, rows * f);
    s->ds_mem = host_upload(ctx, MCL_F32, NULL, rows * f);
    s->dh_mem = host_upload(ctx, MCL_F32, NULL, rows * 2 * f);
    s->dxn_mem = host_upload(ctx, MCL_F32, NULL, rows * c);
    if (!s->xn_mem || !s->sw_mem || !s->ds_mem || !s->dh_mem || !s->dxn_mem) return MCL_ERR_OUT_OF_MEMORY;
    op->result_bytes += (uint64_t)rows * (c + f + f + 2 * f + c) * sizeof(float);
    return MCL_OK;
}

static double tr_tolerance(mcl_dtype dtype)
{
    /* fp32: weight gradients sum over every row; bf16/f16: h, dh and dLN(x) are stored in the dtype */
    return dtype == MCL_F32 ? 2e-5 : 4 * host_tolerance(dtype);
}

static const bench_impl tr_impls[] = {{"megacl", NULL, NULL}, {"unfused", NULL, tr_create_unfused}};
static const char *const tr_case_names[] = {"pair M=147456 c=128 F=512", "single M=768 c=384 F=1536"};
static const size_t tr_case_shapes[][5] = {{147456, 128, 512}, {768, 384, 1536}};

const bench_workload bench_transition = {
    .name = "transition",
    .family = "gemm",
    .impls = tr_impls,
    .impl_count = 2,
    .case_names = tr_case_names,
    .case_shapes = tr_case_shapes,
    .case_count = 2,
    .shape_rank = 3,
    .create = tr_create,
    .tolerance = tr_tolerance,
};
