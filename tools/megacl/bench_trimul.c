/* bench trimul: AF3's triangle multiplicative update (outgoing), forward and backward (dz, both
 * LayerNorms' parameters, dw_in, dw_out) with a pair mask, at N_res = 384, c = h = 128; fused,
 * and unfused: megacl's LayerNorm, CLBlast's GEMMs, batched GEMM and transposes, and one
 * elementwise operation per kernel, every intermediate stored, as a framework runs the block
 * (fp32 only: CLBlast has no bf16). */
#include "bench.h"

#include "ref/host.h"
#include "ref/trimul_ref.h"

#include <math.h>
#include <stdlib.h>

enum { T_Z, T_MASK, T_G1, T_B1, T_WIN, T_G2, T_B2, T_WOUT, T_DOUT, T_INPUTS };

typedef struct tm_state {
    mcl_trimul_desc desc;
    float *in[T_INPUTS]; /* host inputs, quantized to the dtype */
    cl_mem mem[T_INPUTS];
    cl_mem out, p, t, mean_in, rstd_in, mean_out, rstd_out, dz, dg1, db1, dwin, dg2, db2, dwout;
    struct tm_unfused *unfused; /* NULL: megacl's op */
} tm_state;

/* The unfused path's kernels and intermediates ([np, x]: pair-major; [x, np]: channel-first). */
enum { U_ZN, U_SA, U_SB, U_A, U_B, U_ACF, U_BCF, U_TCF, U_TN, U_O, U_SG,          /* forward */
       U_DO, U_DSG, U_DTN, U_DT, U_DTCF, U_DACF, U_DBCF, U_DA, U_DB, U_TMP, U_TMP2, U_DP, U_DZN, U_COUNT };
typedef struct tm_unfused {
    cl_program eltwise;
    cl_mem mem[U_COUNT];
} tm_unfused;

static mcl_tensor ts(cl_mem m) { return (mcl_tensor){m, 0}; }

static mcl_status sigmoid_of(tm_state *s, mcl_context *ctx, size_t n, bench_view x, bench_view y)
{
    bench_view views[] = {x, y};
    return bench_eltwise(ctx, s->unfused->eltwise, "k_sigmoid", n, views, 2);
}

static mcl_status eltwise(tm_state *s, mcl_context *ctx, const char *kernel, size_t n, bench_view a, bench_view b,
                          bench_view y)
{
    bench_view views[] = {a, b, y};
    return bench_eltwise(ctx, s->unfused->eltwise, kernel, n, views, 3);
}

/* x = sigmoid(p[gate]) * p[proj] * mask for one side (proj block `first`, gate the next) */
static mcl_status gate_forward(tm_state *s, mcl_context *ctx, size_t first, cl_mem sig, cl_mem x)
{
    size_t np = s->desc.n * s->desc.n, h = s->desc.hidden, w = 4 * h + s->desc.channels;
    CLI_TRY(sigmoid_of(s, ctx, np * h, bench_block(s->p, w, (first + 1) * h, h), bench_flat(sig)));
    CLI_TRY(eltwise(s, ctx, "k_mul", np * h, bench_block(s->p, w, first * h, h), bench_flat(sig), bench_flat(x)));
    return eltwise(s, ctx, "k_mul", np * h, bench_flat(x), bench_per_row(s->mem[T_MASK], h), bench_flat(x));
}

/* dp[proj] = dx mask sig, dp[gate] = sigmoid'(dx mask p[proj]) */
static mcl_status gate_backward(tm_state *s, mcl_context *ctx, size_t first, cl_mem sig, cl_mem dx)
{
    tm_unfused *u = s->unfused;
    size_t np = s->desc.n * s->desc.n, h = s->desc.hidden, w = 4 * h + s->desc.channels;
    CLI_TRY(eltwise(s, ctx, "k_mul", np * h, bench_flat(dx), bench_per_row(s->mem[T_MASK], h),
                    bench_flat(u->mem[U_TMP])));
    CLI_TRY(eltwise(s, ctx, "k_mul", np * h, bench_flat(u->mem[U_TMP]), bench_flat(sig),
                    bench_block(u->mem[U_DP], w, first * h, h)));
    CLI_TRY(eltwise(s, ctx, "k_mul", np * h, bench_flat(u->mem[U_TMP]),
                    bench_block(s->p, w, first * h, h), bench_flat(u->mem[U_TMP2])));
    return eltwise(s, ctx, "k_sigmoid_backward", np * h, bench_flat(u->mem[U_TMP2]),
                   bench_flat(sig), bench_block(u->mem[U_DP], w, (first + 1) * h, h));
}

static mcl_status unfused_forward(tm_state *s, mcl_context *ctx)
{
    cl_mem *u = s->unfused->mem;
    size_t n = s->desc.n, np = n * n, c = s->desc.channels, h = s->desc.hidden, w = 4 * h + c;
    mcl_layernorm_desc ln_in = {np, c, MCL_F32, s->desc.eps}, ln_out = {np, h, MCL_F32, s->desc.eps};
    mcl_layernorm_fwd_tensors l1 = {.x = ts(s->mem[T_Z]), .weight = ts(s->mem[T_G1]), .bias = ts(s->mem[T_B1]),
                                    .y = ts(u[U_ZN]), .mean = ts(s->mean_in), .rstd = ts(s->rstd_in)};
    CLI_TRY(mcl_layernorm_forward(ctx, &ln_in, &l1, NULL));
    CLI_TRY(bench_sgemm(ctx, 0, 0, np, w, c, u[U_ZN], c, s->mem[T_WIN], w, s->p, w));
    CLI_TRY(gate_forward(s, ctx, 0, u[U_SA], u[U_A]));
    CLI_TRY(gate_forward(s, ctx, 2, u[U_SB], u[U_B]));
    CLI_TRY(bench_transpose(ctx, np, h, u[U_A], u[U_ACF]));
    CLI_TRY(bench_transpose(ctx, np, h, u[U_B], u[U_BCF]));
    CLI_TRY(bench_sgemm_batched(ctx, 0, 1, n, n, n, u[U_ACF], n, u[U_BCF], n, u[U_TCF], n, h)); /* a b^T */
    CLI_TRY(bench_transpose(ctx, h, np, u[U_TCF], s->t));
    mcl_layernorm_fwd_tensors l2 = {.x = ts(s->t), .weight = ts(s->mem[T_G2]), .bias = ts(s->mem[T_B2]),
                                    .y = ts(u[U_TN]), .mean = ts(s->mean_out), .rstd = ts(s->rstd_out)};
    CLI_TRY(mcl_layernorm_forward(ctx, &ln_out, &l2, NULL));
    CLI_TRY(bench_sgemm(ctx, 0, 0, np, c, h, u[U_TN], h, s->mem[T_WOUT], c, u[U_O], c));
    CLI_TRY(sigmoid_of(s, ctx, np * c, bench_block(s->p, w, 4 * h, c), bench_flat(u[U_SG])));
    return eltwise(s, ctx, "k_mul", np * c, bench_flat(u[U_SG]), bench_flat(u[U_O]), bench_flat(s->out));
}

static mcl_status unfused_backward(tm_state *s, mcl_context *ctx)
{
    cl_mem *u = s->unfused->mem;
    size_t n = s->desc.n, np = n * n, c = s->desc.channels, h = s->desc.hidden, w = 4 * h + c;
    cl_mem dout = s->mem[T_DOUT];
    CLI_TRY(eltwise(s, ctx, "k_mul", np * c, bench_flat(dout), bench_flat(u[U_SG]),
                    bench_flat(u[U_DO])));
    CLI_TRY(eltwise(s, ctx, "k_mul", np * c, bench_flat(dout), bench_flat(u[U_O]),
                    bench_flat(u[U_DSG])));
    CLI_TRY(eltwise(s, ctx, "k_sigmoid_backward", np * c, bench_flat(u[U_DSG]), bench_flat(u[U_SG]),
                    bench_block(u[U_DP], w, 4 * h, c)));
    CLI_TRY(bench_sgemm(ctx, 1, 0, h, c, np, u[U_TN], h, u[U_DO], c, s->dwout, c));
    CLI_TRY(bench_sgemm(ctx, 0, 1, np, h, c, u[U_DO], c, s->mem[T_WOUT], c, u[U_DTN], h));
    mcl_layernorm_desc ln_in = {np, c, MCL_F32, s->desc.eps}, ln_out = {np, h, MCL_F32, s->desc.eps};
    mcl_layernorm_bwd_tensors l2 = {.x = ts(s->t), .weight = ts(s->mem[T_G2]), .mean = ts(s->mean_out),
                                    .rstd = ts(s->rstd_out), .dy = ts(u[U_DTN]), .dx = ts(u[U_DT]),
                                    .dweight = ts(s->dg2), .dbias = ts(s->db2)};
    CLI_TRY(mcl_layernorm_backward(ctx, &ln_out, &l2, NULL));
    CLI_TRY(bench_transpose(ctx, np, h, u[U_DT], u[U_DTCF]));
    CLI_TRY(bench_sgemm_batched(ctx, 0, 0, n, n, n, u[U_DTCF], n, u[U_BCF], n, u[U_DACF], n, h)); /* dt b */
    CLI_TRY(bench_sgemm_batched(ctx, 1, 0, n, n, n, u[U_DTCF], n, u[U_ACF], n, u[U_DBCF], n, h)); /* dt^T a */
    CLI_TRY(bench_transpose(ctx, h, np, u[U_DACF], u[U_DA]));
    CLI_TRY(bench_transpose(ctx, h, np, u[U_DBCF], u[U_DB]));
    CLI_TRY(gate_backward(s, ctx, 0, u[U_SA], u[U_DA]));
    CLI_TRY(gate_backward(s, ctx, 2, u[U_SB], u[U_DB]));
    CLI_TRY(bench_sgemm(ctx, 1, 0, c, w, np, u[U_ZN], c, u[U_DP], w, s->dwin, w));
    CLI_TRY(bench_sgemm(ctx, 0, 1, np, c, w, u[U_DP], w, s->mem[T_WIN], w, u[U_DZN], c));
    mcl_layernorm_bwd_tensors l1 = {.x = ts(s->mem[T_Z]), .weight = ts(s->mem[T_G1]), .mean = ts(s->mean_in),
                                    .rstd = ts(s->rstd_in), .dy = ts(u[U_DZN]), .dx = ts(s->dz),
                                    .dweight = ts(s->dg1), .dbias = ts(s->db1)};
    return mcl_layernorm_backward(ctx, &ln_in, &l1, NULL);
}

static mcl_status tm_forward(void *opaque, mcl_context *ctx)
{
    tm_state *s = opaque;
    if (s->unfused) return unfused_forward(s, ctx);
    mcl_trimul_fwd_tensors t = {.z = ts(s->mem[T_Z]), .mask = ts(s->mem[T_MASK]), .ln_in_weight = ts(s->mem[T_G1]),
                                .ln_in_bias = ts(s->mem[T_B1]), .w_in = ts(s->mem[T_WIN]),
                                .ln_out_weight = ts(s->mem[T_G2]), .ln_out_bias = ts(s->mem[T_B2]),
                                .w_out = ts(s->mem[T_WOUT]), .out = ts(s->out), .p = ts(s->p), .t = ts(s->t),
                                .mean_in = ts(s->mean_in), .rstd_in = ts(s->rstd_in), .mean_out = ts(s->mean_out),
                                .rstd_out = ts(s->rstd_out)};
    return mcl_trimul_forward(ctx, &s->desc, &t, NULL);
}

static mcl_status tm_backward(void *opaque, mcl_context *ctx)
{
    tm_state *s = opaque;
    if (s->unfused) return unfused_backward(s, ctx);
    mcl_trimul_bwd_tensors t = {.z = ts(s->mem[T_Z]), .mask = ts(s->mem[T_MASK]), .ln_in_weight = ts(s->mem[T_G1]),
                                .ln_in_bias = ts(s->mem[T_B1]), .w_in = ts(s->mem[T_WIN]),
                                .ln_out_weight = ts(s->mem[T_G2]), .ln_out_bias = ts(s->mem[T_B2]),
                                .w_out = ts(s->mem[T_WOUT]), .p = ts(s->p), .t = ts(s->t), .mean_in = ts(s->mean_in),
                                .rstd_in = ts(s->rstd_in), .mean_out = ts(s->mean_out), .rstd_out = ts(s->rstd_out),
                                .dout = ts(s->mem[T_DOUT]), .dz = ts(s->dz), .dln_in_weight = ts(s->dg1),
                                .dln_in_bias = ts(s->db1), .dw_in = ts(s->dwin), .dln_out_weight = ts(s->dg2),
                                .dln_out_bias = ts(s->db2), .dw_out = ts(s->dwout)};
    return mcl_trimul_backward(ctx, &s->desc, &t, NULL);
}

static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* LayerNorm of one row of n values into out (weight g, bias b); returns rstd */
static void layernorm_row(const double *x, size_t n, const float *g, const float *b, double eps, double *out)
{
    double mu = 0.0, var = 0.0;
    for (size_t k = 0; k < n; k++) mu += x[k] / (double)n;
    for (size_t k = 0; k < n; k++) var += (x[k] - mu) * (x[k] - mu) / n;
    double rstd = 1.0 / sqrt(var + eps);
    for (size_t k = 0; k < n; k++) out[k] = (x[k] - mu) * rstd * g[k] + b[k];
}

/* p of pair entry ij, in double */
static void p_row(const tm_state *s, size_t ij, double *zn, double *p)
{
    size_t c = s->desc.channels, w = 4 * s->desc.hidden + c;
    double *z = p + w; /* scratch after p */
    for (size_t k = 0; k < c; k++) z[k] = s->in[T_Z][ij * c + k];
    layernorm_row(z, c, s->in[T_G1], s->in[T_B1], s->desc.eps, zn);
    for (size_t j = 0; j < w; j++) {
        double sum = 0.0;
        for (size_t k = 0; k < c; k++) sum += zn[k] * s->in[T_WIN][k * w + j];
        p[j] = sum;
    }
}

/* The other gradients (dz, dw_in and both LayerNorms' parameters) in full against the reference
 * continued from the device's saved p and t, when the problem is small enough for it. */
static void check_other_grads(const tm_state *s, mcl_context *ctx, const float *p, const float *t, bench_err *bwd)
{
    size_t n = s->desc.n, np = n * n, c = s->desc.channels, h = s->desc.hidden, w = 4 * h + c;
    ref_trimul_problem rp = {n, c, h, s->desc.eps, s->desc.direction, s->in[T_Z], s->in[T_WIN], s->in[T_WOUT],
                             s->in[T_MASK], s->in[T_G1], s->in[T_B1], s->in[T_G2], s->in[T_B2], p, t,
                             s->in[T_DOUT]};
    cl_mem mems[] = {s->dz, s->dg1, s->db1, s->dwin, s->dg2, s->db2};
    const size_t counts[] = {np * c, c, c, c * w, h, h};
    double *ref[6];
    float *got[6];
    int ok = 1;
    for (int i = 0; i < 6; i++) {
        ref[i] = malloc(counts[i] * sizeof(double));
        got[i] = malloc(counts[i] * sizeof(float));
        ok &= ref[i] && got[i];
    }
    if (ok) {
        ref_trimul_grads g = {ref[0], ref[1], ref[2], ref[3], ref[4], ref[5], NULL};
        ref_trimul_backward(&rp, &g);
        for (int i = 0; i < 6; i++) {
            host_download(ctx, mems[i], s->desc.dtype, got[i], counts[i]);
            for (size_t e = 0; e < counts[i]; e++) bench_err_add(bwd, got[i][e], ref[i][e]);
        }
    } else {
        bwd->bad = 1;
    }
    for (int i = 0; i < 6; i++) free(ref[i]), free(got[i]);
}

/* out at 16 pair entries (i, j) spread over the pair, each from a's row i and b's row j in
 * double; dw_out in full from the device's saved t and p (LN(t)^T (dout * sigmoid(g))), which
 * checks the backward's last GEMM on its own inputs; and on problems of up to 2^28 k-sum terms
 * (N^3 h) every other gradient. The Criterion tests check every output on small shapes. */
static mcl_status tm_verify(void *opaque, mcl_context *ctx, double *fwd_err, double *bwd_err)
{
    tm_state *s = opaque;
    size_t n = s->desc.n, c = s->desc.channels, h = s->desc.hidden, w = 4 * h + c, np = n * n;
    mcl_dtype dt = s->desc.dtype;
    host_poison(ctx, s->out, dt, np * c);
    host_poison(ctx, s->dwout, dt, h * c);
    CLI_TRY(tm_forward(s, ctx));
    CLI_TRY(tm_backward(s, ctx));
    float *out = malloc(np * c * sizeof *out), *dwout = malloc(h * c * sizeof *dwout);
    float *t = malloc(np * h * sizeof *t), *p = malloc(np * w * sizeof *p);
    double *a = malloc(n * h * sizeof *a), *b = malloc(n * h * sizeof *b),
           *row = malloc((2 * w + 2 * c + h) * sizeof *row);
    double *ref_dw = calloc(h * c, sizeof *ref_dw);
    int ok = out && dwout && t && p && a && b && row && ref_dw;
    bench_err fwd = {0}, bwd = {0};
    if (ok) {
        host_download(ctx, s->out, dt, out, np * c);
        host_download(ctx, s->dwout, dt, dwout, h * c);
        host_download(ctx, s->t, dt, t, np * h);
        host_download(ctx, s->p, dt, p, np * w);
        double *zn = row, *pr = row + c, *tn = pr + 2 * w;
        for (size_t q = 0; q < 16; q++) {
            size_t i = (q * 7919) % n, j = (q * 104729 + 3) % n;
            for (size_t side = 0; side < 2; side++) /* a's row i, b's row j */
                for (size_t k = 0; k < n; k++) {
                    size_t ij = side ? j * n + k : i * n + k;
                    p_row(s, ij, zn, pr);
                    for (size_t ch = 0; ch < h; ch++) {
                        double v = sigmoid(pr[(2 * side + 1) * h + ch]) * pr[2 * side * h + ch] * s->in[T_MASK][ij];
                        (side ? b : a)[k * h + ch] = v;
                    }
                }
            double *tv = tn; /* t[i, j, :] then LN(t) */
            for (size_t ch = 0; ch < h; ch++) {
                double sum = 0.0;
                for (size_t k = 0; k < n; k++) sum += a[k * h + ch] * b[k * h + ch];
                tv[ch] = sum;
            }
            double *ln = malloc(h * sizeof *ln);
            if (!ln) { ok = 0; break; }
            layernorm_row(tv, h, s->in[T_G2], s->in[T_B2], s->desc.eps, ln);
            p_row(s, i * n + j, zn, pr);
            for (size_t col = 0; col < c; col++) {
                double o = 0.0;
                for (size_t ch = 0; ch < h; ch++) o += ln[ch] * s->in[T_WOUT][ch * c + col];
                bench_err_add(&fwd, out[(i * n + j) * c + col], o * sigmoid(pr[4 * h + col]));
            }
            free(ln);
        }
        for (size_t ij = 0; ij < np && ok; ij++) {
            double *tv = tn, *ln = pr;
            for (size_t ch = 0; ch < h; ch++) tv[ch] = t[ij * h + ch];
            layernorm_row(tv, h, s->in[T_G2], s->in[T_B2], s->desc.eps, ln);
            for (size_t col = 0; col < c; col++) {
                double d = s->in[T_DOUT][ij * c + col] * sigmoid(p[ij * w + 4 * h + col]);
                for (size_t ch = 0; ch < h; ch++) ref_dw[ch * c + col] += ln[ch] * d;
            }
        }
        for (size_t e = 0; e < h * c; e++) bench_err_add(&bwd, dwout[e], ref_dw[e]);
        if ((double)n * n * n * h <= (double)(1 << 28)) check_other_grads(s, ctx, p, t, &bwd);
    }
    *fwd_err = ok ? bench_err_value(&fwd) : INFINITY;
    *bwd_err = ok ? bench_err_value(&bwd) : INFINITY;
    free(out), free(dwout), free(t), free(p), free(a), free(b), free(row), free(ref_dw);
    return ok ? MCL_OK : MCL_ERR_OUT_OF_MEMORY;
}

static void tm_destroy(void *opaque)
{
    tm_state *s = opaque;
    if (!s) return;
    cl_mem mems[] = {s->out, s->p, s->t, s->mean_in, s->rstd_in, s->mean_out, s->rstd_out,
                     s->dz,  s->dg1, s->db1, s->dwin, s->dg2, s->db2, s->dwout};
    for (size_t i = 0; i < T_INPUTS; i++) {
        if (s->mem[i]) clReleaseMemObject(s->mem[i]);
        free(s->in[i]);
    }
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i]) clReleaseMemObject(mems[i]);
    if (s->unfused) {
        for (size_t i = 0; i < U_COUNT; i++)
            if (s->unfused->mem[i]) clReleaseMemObject(s->unfused->mem[i]);
        if (s->unfused->eltwise) clReleaseProgram(s->unfused->eltwise);
        free(s->unfused);
    }
    free(s);
}

static mcl_status tm_create(mcl_context *ctx, const size_t *shape, mcl_dtype dtype, bench_op *op)
{
    tm_state *s = calloc(1, sizeof *s);
    if (!s) return MCL_ERR_OUT_OF_MEMORY;
    size_t n = shape[0], c = shape[1], h = shape[2], np = n * n, w = 4 * h + c, es = mcl_dtype_size(dtype);
    s->desc = (mcl_trimul_desc){n, c, h, dtype, 1e-5f, MCL_TRIMUL_OUTGOING};
    *op = (bench_op){.state = s, .forward = tm_forward, .backward = tm_backward, .verify = tm_verify,
                     .destroy = tm_destroy};
    host_rng rng = host_rng_seeded(n * 31 + c * 7 + h);
    const size_t counts[T_INPUTS] = {np * c, np, c, c, c * w, h, h, h * c, np * c};
    const float lo[T_INPUTS] = {-2, 0, 0.5f, -0.5f, -1, 0.5f, -0.5f, -1, -1};
    const float hi[T_INPUTS] = {2, 1, 1.5f, 0.5f, 1, 1.5f, 0.5f, 1, 1};
    for (size_t i = 0; i < T_INPUTS; i++) {
        float scale = i == T_WIN ? 1.0f / sqrtf((float)c) : i == T_WOUT ? 1.0f / sqrtf((float)h) : 1.0f;
        s->in[i] = host_random(&rng, dtype, counts[i], lo[i] * scale, hi[i] * scale);
        if (!s->in[i]) return MCL_ERR_OUT_OF_MEMORY;
        if (i == T_MASK)
            for (size_t e = 0; e < np; e++) s->in[i][e] = s->in[i][e] < 0.9f ? 1.0f : 0.0f;
        if (!(s->mem[i] = host_upload(ctx, dtype, s->in[i], counts[i]))) return MCL_ERR_OUT_OF_MEMORY;
    }
    cl_mem *outs[] = {&s->out, &s->p, &s->t, &s->dz, &s->dg1, &s->db1, &s->dwin, &s->dg2, &s->db2, &s->dwout};
    const size_t out_counts[] = {np * c, np * w, np * h, np * c, c, c, c * w, h, h, h * c};
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++)
        if (!(*outs[i] = host_upload(ctx, dtype, NULL, out_counts[i]))) return MCL_ERR_OUT_OF_MEMORY;
    cl_mem *stats[] = {&s->mean_in, &s->rstd_in, &s->mean_out, &s->rstd_out};
    for (size_t i = 0; i < 4; i++)
        if (!(*stats[i] = host_upload(ctx, MCL_F32, NULL, np))) return MCL_ERR_OUT_OF_MEMORY;
    double zb = (double)np * c * es, pb = (double)np * w * es, tb = (double)np * h * es, st = 16.0 * np;
    op->fwd_bytes = zb + pb + tb + zb + st;
    op->fwdbwd_bytes = op->fwd_bytes + 2 * zb + pb + tb + zb;
    op->fwd_flops = 2.0 * np * c * w + 2.0 * np * n * h + 2.0 * np * h * c;
    op->fwdbwd_flops = 3.0 * op->fwd_flops;
    op->result_bytes = (uint64_t)(2 * zb + pb + tb + st + (double)(c * w + h * c) * es); /* out, p, t, stats, dz, dW */
    return MCL_OK;
}

static double tm_tolerance(mcl_dtype dtype)
{
    return dtype == MCL_F32 ? 2e-5 : 4 * host_tolerance(dtype);
}

/* The unfused path: the same problem and checks, its intermediates counted as results. */
static mcl_status tm_create_unfused(mcl_context *ctx, const size_t *shape, mcl_dtype dtype, bench_op *op)
{
    CLI_TRY(bench_unfused_dtype(dtype));
    CLI_TRY(tm_create(ctx, shape, dtype, op));
    tm_state *s = op->state;
    size_t np = shape[0] * shape[0], c = shape[1], h = shape[2], w = 4 * h + c;
    if (!(s->unfused = calloc(1, sizeof *s->unfused))) return MCL_ERR_OUT_OF_MEMORY;
    size_t widths[U_COUNT];
    for (size_t i = 0; i < U_COUNT; i++) widths[i] = h; /* most are [np, h] or [h, np] */
    widths[U_ZN] = widths[U_O] = widths[U_SG] = widths[U_DO] = widths[U_DSG] = widths[U_DZN] = c;
    widths[U_DP] = w;
    for (size_t i = 0; i < U_COUNT; i++) {
        if (!(s->unfused->mem[i] = host_upload(ctx, MCL_F32, NULL, np * widths[i]))) return MCL_ERR_OUT_OF_MEMORY;
        op->result_bytes += (uint64_t)np * widths[i] * sizeof(float);
    }
    if (!(s->unfused->eltwise = bench_eltwise_program(ctx))) return MCL_ERR_BUILD;
    return MCL_OK;
}

static const bench_impl tm_impls[] = {{"megacl", NULL, NULL}, {"unfused", NULL, tm_create_unfused}};
static const char *const tm_case_names[] = {"outgoing N=384 c=h=128", "outgoing N=128 c=h=64"};
static const size_t tm_case_shapes[][5] = {{384, 128, 128}, {128, 64, 64}};

const bench_workload bench_trimul = {
    .name = "trimul",
    .family = "gemm",
    .impls = tm_impls,
    .impl_count = 2,
    .case_names = tm_case_names,
    .case_shapes = tm_case_shapes,
    .case_count = 2,
    .shape_rank = 3,
    .create = tm_create,
    .tolerance = tm_tolerance,
};
