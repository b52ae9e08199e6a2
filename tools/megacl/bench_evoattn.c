/* bench evoattn: EvoAttention forward and backward (dq, dk, dv, dmask, dpair) with a mask bias
 * and a pair bias, no gate, at AF3 shapes: triangle attention (N = S, H = 4, D = 32), single
 * attention with pair bias (N = 1, H = 16, D = 64) and MSA row attention (N > S, H = 8, D = 8). */
#include "bench.h"

#include "ref/evoattn_ref.h"
#include "ref/host.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct evo_state {
    mcl_evoattn_desc desc;
    size_t t, nm, np, nl; /* elements of q (and k, v, O, ...), mask, pair, lse */
    float *q, *k, *v, *mask, *pair, *dout; /* host inputs, quantized to the dtype */
    cl_mem q_mem, k_mem, v_mem, mask_mem, pair_mem, dout_mem;
    cl_mem out_mem, lse_mem, dq_mem, dk_mem, dv_mem, dmask_mem, dpair_mem;
} evo_state;

static mcl_status evo_forward(void *opaque, mcl_context *ctx)
{
    evo_state *s = opaque;
    mcl_evoattn_fwd_tensors t = {.q = {s->q_mem, 0}, .k = {s->k_mem, 0}, .v = {s->v_mem, 0},
                                 .mask = {s->mask_mem, 0}, .pair = {s->pair_mem, 0},
                                 .out = {s->out_mem, 0}, .lse = {s->lse_mem, 0}};
    return mcl_evoattn_forward(ctx, &s->desc, &t, NULL);
}

static mcl_status evo_backward(void *opaque, mcl_context *ctx)
{
    evo_state *s = opaque;
    mcl_evoattn_bwd_tensors t = {.q = {s->q_mem, 0}, .k = {s->k_mem, 0}, .v = {s->v_mem, 0},
                                 .mask = {s->mask_mem, 0}, .pair = {s->pair_mem, 0},
                                 .out = {s->out_mem, 0}, .lse = {s->lse_mem, 0},
                                 .dout = {s->dout_mem, 0}, .dq = {s->dq_mem, 0},
                                 .dk = {s->dk_mem, 0}, .dv = {s->dv_mem, 0},
                                 .dmask = {s->dmask_mem, 0}, .dpair = {s->dpair_mem, 0}};
    return mcl_evoattn_backward(ctx, &s->desc, &t, NULL);
}

enum { E_OUT, E_LSE, E_DQ, E_DK, E_DV, E_DMASK, E_DPAIR, E_COUNT };

/* device results, downloaded as floats */
typedef struct evo_results {
    float *t[E_COUNT];
} evo_results;

/* Full reference: every element of every output. */
static int verify_full(const ref_evoattn_problem *p, const evo_state *s, const evo_results *r,
                       bench_err *acc)
{
    const size_t counts[E_COUNT] = {s->t, s->nl, s->t, s->t, s->t, s->nm, s->np};
    double *ref[E_COUNT];
    int ok = 1;
    for (int i = 0; i < E_COUNT; i++) ok &= (ref[i] = malloc(counts[i] * sizeof(double))) != NULL;
    if (ok) ok = ref_evoattn_forward(p, ref[E_OUT], NULL, ref[E_LSE]) == 0;
    if (ok)
        ok = ref_evoattn_backward(p, ref[E_DQ], ref[E_DK], ref[E_DV], NULL, ref[E_DMASK],
                                  ref[E_DPAIR]) == 0;
    for (int i = 0; i < E_COUNT && ok; i++)
        for (size_t e = 0; e < counts[i]; e++) bench_err_add(&acc[i], r->t[i][e], ref[i][e]);
    for (int i = 0; i < E_COUNT; i++) free(ref[i]);
    return ok;
}

/* Compares the device's O, lse, dq, dk, dv of slice (b, n, h) with the reference; adds the
 * slice's dS column sums to dmask_row when it is given. */
static int verify_slice(const ref_evoattn_problem *p, const evo_results *r, size_t b, size_t n,
                        size_t h, bench_err *acc, double *dmask_row)
{
    const size_t N = p->rows, S = p->seq, H = p->heads, D = p->head_dim;
    double *o = malloc(S * D * sizeof *o), *dq = malloc(S * D * sizeof *dq);
    double *dk = malloc(S * D * sizeof *dk), *dv = malloc(S * D * sizeof *dv);
    double *lse = malloc(S * sizeof *lse);
    int ok = o && dq && dk && dv && lse;
    ref_evoattn_slice_out so = {.ld = D, .out = o, .lse = lse, .dq = dq, .dk = dk, .dv = dv,
                                .dmask = dmask_row};
    if (ok) ok = ref_evoattn_slice(p, b, n, h, &so) == 0;
    for (size_t i = 0; i < S && ok; i++) {
        bench_err_add(&acc[E_LSE], r->t[E_LSE][((b * N + n) * H + h) * S + i], lse[i]);
        const size_t base = (((b * N + n) * S + i) * H + h) * D;
        for (size_t d = 0; d < D; d++) {
            bench_err_add(&acc[E_OUT], r->t[E_OUT][base + d], o[i * D + d]);
            bench_err_add(&acc[E_DQ], r->t[E_DQ][base + d], dq[i * D + d]);
            bench_err_add(&acc[E_DK], r->t[E_DK][base + d], dk[i * D + d]);
            bench_err_add(&acc[E_DV], r->t[E_DV][base + d], dv[i * D + d]);
        }
    }
    free(o), free(dq), free(dk), free(dv), free(lse);
    return ok;
}

/* Shapes too large for a full double-precision reference are checked on a sample:
 *  - O, lse, dq, dk, dv of a few (b, n, h) slices: the first, the last and a middle one; when
 *    H*S*S*D <= 2^30 every head of (b, n) = (0, 0) instead of only the first, so that
 *  - dmask[0, 0, :] (a sum over all heads and queries of that (b, n)) is checked too;
 *  - dpair[b, h, i, :] for four query rows i (first, last, middle, a third in), each a sum over
 *    all N rows of dS.
 * Each error is the relative error over the sampled elements. */
static int verify_sampled(const ref_evoattn_problem *p, const evo_results *r, bench_err *acc)
{
    const size_t B = p->batch, N = p->rows, S = p->seq, H = p->heads, D = p->head_dim;
    const int all_heads = (double)H * S * S * D <= 1073741824.0;
    size_t slices[3][3] = {{0, 0, 0}, {B - 1, N - 1, H - 1}, {B / 2, N / 2, H / 2}};
    int ok = 1;
    if (all_heads) {
        double *dmask_row = calloc(S, sizeof *dmask_row);
        ok = dmask_row != NULL;
        for (size_t h = 0; h < H && ok; h++) ok = verify_slice(p, r, 0, 0, h, acc, dmask_row);
        for (size_t j = 0; j < S && ok; j++) bench_err_add(&acc[E_DMASK], r->t[E_DMASK][j], dmask_row[j]);
        free(dmask_row);
    }
    for (size_t i = 0; i < 3 && ok; i++) {
        const size_t *sl = slices[i];
        int seen = all_heads && sl[0] == 0 && sl[1] == 0;
        for (size_t j = 0; j < i; j++) seen |= memcmp(slices[j], sl, sizeof slices[j]) == 0;
        if (!seen) ok = verify_slice(p, r, sl[0], sl[1], sl[2], acc, NULL);
    }
    const size_t rows[4][3] = {{0, 0, 0}, {B - 1, H - 1, S - 1}, {B / 2, H / 2, S / 2}, {0, H - 1, S / 3}};
    ref_evoattn_row row;
    double *dpair_row = malloc(S * sizeof *dpair_row);
    if (!dpair_row || ref_evoattn_row_alloc(&row, S, D) != 0) {
        free(dpair_row);
        return 0;
    }
    for (size_t k = 0; k < 4 && ok; k++) {
        const size_t b = rows[k][0], h = rows[k][1], i = rows[k][2];
        for (size_t j = 0; j < S; j++) dpair_row[j] = 0.0;
        for (size_t n = 0; n < N; n++) {
            ref_evoattn_row_compute(p, b, n, h, i, &row);
            for (size_t j = 0; j < S; j++) dpair_row[j] += row.ds[j];
        }
        const float *dev = r->t[E_DPAIR] + ((b * H + h) * S + i) * S;
        for (size_t j = 0; j < S; j++) bench_err_add(&acc[E_DPAIR], dev[j], dpair_row[j]);
    }
    ref_evoattn_row_free(&row);
    free(dpair_row);
    return ok;
}

static mcl_status evo_verify(void *opaque, mcl_context *ctx, double *fwd_err, double *bwd_err)
{
    evo_state *s = opaque;
    const mcl_dtype dt = s->desc.dtype;
    cl_mem mems[E_COUNT] = {s->out_mem, s->lse_mem, s->dq_mem, s->dk_mem, s->dv_mem, s->dmask_mem, s->dpair_mem};
    const size_t counts[E_COUNT] = {s->t, s->nl, s->t, s->t, s->t, s->nm, s->np};
    for (int i = 0; i < E_COUNT; i++) host_poison(ctx, mems[i], i == E_LSE ? MCL_F32 : dt, counts[i]);
    CLI_TRY(evo_forward(s, ctx));
    CLI_TRY(evo_backward(s, ctx));

    evo_results r = {{0}};
    mcl_status status = MCL_OK;
    for (int i = 0; i < E_COUNT && status == MCL_OK; i++) {
        if (!(r.t[i] = malloc(counts[i] * sizeof(float)))) status = MCL_ERR_OUT_OF_MEMORY;
        else host_download(ctx, mems[i], i == E_LSE ? MCL_F32 : dt, r.t[i], counts[i]);
    }
    const mcl_evoattn_desc *d = &s->desc;
    ref_evoattn_problem p = {d->batch, d->rows, d->seq, d->heads, d->head_dim,
                             ref_evoattn_scale(d->head_dim, d->scale), s->q, s->k, s->v, s->mask,
                             s->pair, NULL, s->dout};
    bench_err acc[E_COUNT] = {{0}};
    if (status == MCL_OK) {
        double work = (double)d->batch * d->rows * d->heads * d->seq * d->seq * d->head_dim;
        int ok = work <= 67108864.0 ? verify_full(&p, s, &r, acc) : verify_sampled(&p, &r, acc);
        if (!ok) status = MCL_ERR_OUT_OF_MEMORY;
    }
    if (status == MCL_OK) {
        *fwd_err = fmax(bench_err_value(&acc[E_OUT]), bench_err_value(&acc[E_LSE]));
        *bwd_err = 0.0;
        for (int i = E_DQ; i < E_COUNT; i++) *bwd_err = fmax(*bwd_err, bench_err_value(&acc[i]));
    }
    for (int i = 0; i < E_COUNT; i++) free(r.t[i]);
    return status;
}

static void evo_destroy(void *opaque)
{
    evo_state *s = opaque;
    if (!s) return;
    cl_mem mems[] = {s->q_mem,   s->k_mem,  s->v_mem,  s->mask_mem, s->pair_mem,
                     s->dout_mem, s->out_mem, s->lse_mem, s->dq_mem, s->dk_mem,
                     s->dv_mem,  s->dmask_mem, s->dpair_mem};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i]) clReleaseMemObject(mems[i]);
    free(s->q), free(s->k), free(s->v), free(s->mask), free(s->pair), free(s->dout);
    free(s);
}

static mcl_status evo_create(mcl_context *ctx, const size_t *shape, mcl_dtype dtype, bench_op *op)
{
    evo_state *s = calloc(1, sizeof *s);
    if (!s) return MCL_ERR_OUT_OF_MEMORY;
    *op = (bench_op){.state = s, .forward = evo_forward, .backward = evo_backward,
                     .verify = evo_verify, .destroy = evo_destroy};
    size_t B = shape[0], N = shape[1], S = shape[2], H = shape[3], D = shape[4];
    s->desc = (mcl_evoattn_desc){B, N, S, H, D, dtype, 0.0f};
    /* a custom shape with a zero size or counts past 2^53 gets the op's own status and message */
    double t = (double)B * N * S * H * D, np = (double)B * H * S * S;
    if (B == 0 || N == 0 || S == 0 || H == 0 || D == 0 || t > 9e15 || np > 9e15) {
        mcl_status status = mcl_evoattn_forward(ctx, &s->desc, &(mcl_evoattn_fwd_tensors){0}, NULL);
        return status != MCL_OK ? status : MCL_ERR_INVALID_SIZE;
    }
    s->t = B * N * S * H * D, s->nm = B * N * S, s->np = B * H * S * S, s->nl = B * N * H * S;
    host_rng rng = host_rng_seeded(((B * 31 + N) * 31 + S) * 31 + H * 7 + D);
    s->q = host_random(&rng, dtype, s->t, -1.0f, 1.0f);
    s->k = host_random(&rng, dtype, s->t, -1.0f, 1.0f);
    s->v = host_random(&rng, dtype, s->t, -1.0f, 1.0f);
    s->dout = host_random(&rng, dtype, s->t, -1.0f, 1.0f);
    s->pair = host_random(&rng, dtype, s->np, -1.0f, 1.0f);
    s->mask = malloc(s->nm * sizeof *s->mask);
    if (!s->q || !s->k || !s->v || !s->dout || !s->pair || !s->mask) return MCL_ERR_OUT_OF_MEMORY;
    for (size_t i = 0; i < s->nm; i++) /* about 5% of keys masked out, as padding would be */
        s->mask[i] = host_uniform(&rng, 0.0f, 1.0f) < 0.05f ? -1e9f : 0.0f;
    host_quantize(dtype, s->mask, s->nm);
    s->q_mem = host_upload(ctx, dtype, s->q, s->t);
    s->k_mem = host_upload(ctx, dtype, s->k, s->t);
    s->v_mem = host_upload(ctx, dtype, s->v, s->t);
    s->dout_mem = host_upload(ctx, dtype, s->dout, s->t);
    s->mask_mem = host_upload(ctx, dtype, s->mask, s->nm);
    s->pair_mem = host_upload(ctx, dtype, s->pair, s->np);
    s->out_mem = host_upload(ctx, dtype, NULL, s->t);
    s->lse_mem = host_upload(ctx, MCL_F32, NULL, s->nl);
    s->dq_mem = host_upload(ctx, dtype, NULL, s->t);
    s->dk_mem = host_upload(ctx, dtype, NULL, s->t);
    s->dv_mem = host_upload(ctx, dtype, NULL, s->t);
    s->dmask_mem = host_upload(ctx, dtype, NULL, s->nm);
    s->dpair_mem = host_upload(ctx, dtype, NULL, s->np);
    if (!s->q_mem || !s->k_mem || !s->v_mem || !s->dout_mem || !s->mask_mem || !s->pair_mem ||
        !s->out_mem || !s->lse_mem || !s->dq_mem || !s->dk_mem || !s->dv_mem || !s->dmask_mem ||
        !s->dpair_mem)
        return MCL_ERR_OUT_OF_MEMORY;
    const double es = (double)mcl_dtype_size(dtype), tensor = t * es, mask = (double)s->nm * es;
    const double pair = np * es, lse = (double)s->nl * sizeof(float);
    /* forward: q, k, v, mask, pair in; O, lse out */
    op->fwd_bytes = 3 * tensor + mask + pair + tensor + lse;
    /* backward: q, k, v, O, dO, mask, pair, lse in; dq, dk, dv, dmask, dpair out */
    op->fwdbwd_bytes = op->fwd_bytes + 5 * tensor + mask + pair + lse + 3 * tensor + mask + pair;
    const double attn = (double)B * N * H * S * S * D;
    op->fwd_flops = 4.0 * attn;     /* QK^T and PV */
    op->fwdbwd_flops = 14.0 * attn; /* + QK^T again, dP, dV, dQ, dK */
    op->result_bytes = (uint64_t)(tensor + lse + 3 * tensor + mask + pair); /* O, lse, dq, dk, dv, dmask, dpair */
    return MCL_OK;
}

static double evo_tolerance(mcl_dtype dtype)
{
    /* fp32: the backward reduces over S keys, dmask over H*S and dpair over N (long reductions) */
    return dtype == MCL_F32 ? 2e-5 : host_tolerance(dtype);
}

static const bench_impl evo_impls[] = {{"megacl", NULL, NULL}, {"naive", "VARIANT=0", NULL}};
static const char *const evo_case_names[] = {"triangle S=384", "triangle S=768", "single S=768",
                                             "single S=2048", "msa-row N=512 S=384"};
/* B, N, S, H, D */
static const size_t evo_case_shapes[][5] = {
    {1, 384, 384, 4, 32}, {1, 768, 768, 4, 32}, {1, 1, 768, 16, 64}, {1, 1, 2048, 16, 64},
    {1, 512, 384, 8, 8},
};

const bench_workload bench_evoattn = {
    .name = "evoattn",
    .family = "evoattn",
    .impls = evo_impls,
    .impl_count = 2,
    .case_names = evo_case_names,
    .case_shapes = evo_case_shapes,
    .case_count = 5,
    .shape_rank = 5,
    .create = evo_create,
    .tolerance = evo_tolerance,
};
