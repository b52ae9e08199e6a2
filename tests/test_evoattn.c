/* EvoAttention forward and backward against the double-precision reference; the reference
 * itself against finite differences; parameter variants, determinism and bad inputs. */
#include "common.h"

#include "ref/evoattn_ref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- cases, inputs, device runs -------------------------------------------------------- */

typedef struct evo_case {
    size_t B, N, S, H, D;
    mcl_dtype dtype;
    int mask, pair, gate;
    int masked_rows; /* (b, n) #0 has every key at -1e9, the last (b, n) every key at -inf */
    float scale;     /* desc.scale; 0 = 1/sqrt(D) */
} evo_case;

/* which gradients the backward is asked for (those the options allow) */
enum {
    GRAD_DQ = 1,
    GRAD_DK = 2,
    GRAD_DV = 4,
    GRAD_DG = 8,
    GRAD_DMASK = 16,
    GRAD_DPAIR = 32,
    GRAD_ALL = 63,
};

enum { T_OUT, T_GATED, T_LSE, T_DQ, T_DK, T_DV, T_DG, T_DMASK, T_DPAIR, T_COUNT };
static const char *const t_names[T_COUNT] = {"out", "gated", "lse", "dq", "dk", "dv", "dgate", "dmask", "dpair"};

typedef struct evo_errors {
    double err[T_COUNT];  /* relative errors; -1 where not checked */
    size_t lse_inf_mismatch;
    double dmask_rowsum;  /* worst |sum_j dmask[b,n,j]| / sum_j |dmask[b,n,j]| (device) */
    double dpair_rowsum;  /* worst |sum_j dpair[b,h,i,j]| / sum_j |dpair[b,h,i,j]| (device) */
} evo_errors;

typedef struct evo_inputs {
    float *q, *k, *v, *mask, *pair, *gate, *dout;
} evo_inputs;

static size_t elems(evo_case c) { return c.B * c.N * c.S * c.H * c.D; }

/* Kept keys get a bias in [-1, 0]; about 15% of keys are removed with -1e9, -inf or exactly
 * MCL_EVOATTN_MASKED; with masked_rows, whole (b, n) rows of keys are removed. */
static float *random_mask(host_rng *rng, evo_case c)
{
    size_t rows = c.B * c.N, n = rows * c.S;
    float *m = host_random(rng, c.dtype, n, -1.0f, 0.0f);
    for (size_t i = 0; i < n; i++) {
        float u = host_uniform(rng, 0.0f, 1.0f);
        if (u < 0.07f) m[i] = -1e9f;
        else if (u < 0.12f) m[i] = -INFINITY;
        else if (u < 0.15f) m[i] = MCL_EVOATTN_MASKED;
    }
    if (c.masked_rows && rows >= 3) {
        for (size_t j = 0; j < c.S; j++) m[j] = -1e9f;
        for (size_t j = 0; j < c.S; j++) m[(rows - 1) * c.S + j] = -INFINITY;
    }
    host_quantize(c.dtype, m, n); /* -1e9 becomes what the dtype holds (bf16: ~-1e9, f16: -inf) */
    return m;
}

static evo_inputs make_inputs(host_rng *rng, evo_case c)
{
    size_t t = elems(c);
    evo_inputs in = {0};
    in.q = host_random(rng, c.dtype, t, -1.0f, 1.0f);
    in.k = host_random(rng, c.dtype, t, -1.0f, 1.0f);
    in.v = host_random(rng, c.dtype, t, -1.0f, 1.0f);
    in.dout = host_random(rng, c.dtype, t, -1.0f, 1.0f);
    if (c.mask) in.mask = random_mask(rng, c);
    if (c.pair) in.pair = host_random(rng, c.dtype, c.B * c.H * c.S * c.S, -1.0f, 1.0f);
    if (c.gate) in.gate = host_random(rng, c.dtype, t, -3.0f, 3.0f);
    return in;
}

static void free_inputs(evo_inputs *in)
{
    free(in->q), free(in->k), free(in->v), free(in->mask), free(in->pair), free(in->gate), free(in->dout);
}

static ref_evoattn_problem problem_of(evo_case c, const evo_inputs *in, int with_dout)
{
    return (ref_evoattn_problem){c.B, c.N, c.S, c.H, c.D, ref_evoattn_scale(c.D, c.scale),
                                 in->q, in->k, in->v, in->mask, in->pair, in->gate,
                                 with_dout ? in->dout : NULL};
}

/* Device buffers of one case: inputs uploaded, outputs poisoned. */
typedef struct evo_device {
    cl_mem q, k, v, mask, pair, gate, dout;
    cl_mem out, gated, lse, dq, dk, dv, dg, dmask, dpair;
} evo_device;

static evo_device upload_case(mcl_context *ctx, evo_case c, const evo_inputs *in, int grads)
{
    size_t t = elems(c), nm = c.B * c.N * c.S, np = c.B * c.H * c.S * c.S;
    mcl_dtype dt = c.dtype;
    evo_device d = {0};
    d.q = host_upload(ctx, dt, in->q, t);
    d.k = host_upload(ctx, dt, in->k, t);
    d.v = host_upload(ctx, dt, in->v, t);
    d.dout = host_upload(ctx, dt, in->dout, t);
    if (in->mask) d.mask = host_upload(ctx, dt, in->mask, nm);
    if (in->pair) d.pair = host_upload(ctx, dt, in->pair, np);
    if (in->gate) d.gate = host_upload(ctx, dt, in->gate, t);
    d.out = host_upload(ctx, dt, NULL, t);
    if (in->gate) d.gated = host_upload(ctx, dt, NULL, t);
    d.lse = host_upload(ctx, MCL_F32, NULL, c.B * c.N * c.H * c.S);
    if (grads & GRAD_DQ) d.dq = host_upload(ctx, dt, NULL, t);
    if (grads & GRAD_DK) d.dk = host_upload(ctx, dt, NULL, t);
    if (grads & GRAD_DV) d.dv = host_upload(ctx, dt, NULL, t);
    if ((grads & GRAD_DG) && in->gate) d.dg = host_upload(ctx, dt, NULL, t);
    if ((grads & GRAD_DMASK) && in->mask) d.dmask = host_upload(ctx, dt, NULL, nm);
    if ((grads & GRAD_DPAIR) && in->pair) d.dpair = host_upload(ctx, dt, NULL, np);
    return d;
}

static void release_device(evo_device *d)
{
    cl_mem mems[] = {d->q,  d->k,  d->v,  d->mask, d->pair, d->gate,  d->dout,  d->out,
                     d->gated, d->lse, d->dq, d->dk, d->dv, d->dg, d->dmask, d->dpair};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i]) clReleaseMemObject(mems[i]);
}

static mcl_evoattn_desc desc_of(evo_case c)
{
    return (mcl_evoattn_desc){c.B, c.N, c.S, c.H, c.D, c.dtype, c.scale};
}

static mcl_evoattn_fwd_tensors fwd_tensors(const evo_device *d)
{
    return (mcl_evoattn_fwd_tensors){.q = {d->q, 0}, .k = {d->k, 0}, .v = {d->v, 0},
                                     .mask = {d->mask, 0}, .pair = {d->pair, 0},
                                     .gate = {d->gate, 0}, .out = {d->out, 0},
                                     .gated = {d->gated, 0}, .lse = {d->lse, 0}};
}

static mcl_evoattn_bwd_tensors bwd_tensors(const evo_device *d)
{
    return (mcl_evoattn_bwd_tensors){.q = {d->q, 0}, .k = {d->k, 0}, .v = {d->v, 0},
                                     .mask = {d->mask, 0}, .pair = {d->pair, 0},
                                     .gate = {d->gate, 0}, .out = {d->out, 0}, .lse = {d->lse, 0},
                                     .dout = {d->dout, 0}, .dq = {d->dq, 0}, .dk = {d->dk, 0},
                                     .dv = {d->dv, 0}, .dgate = {d->dg, 0},
                                     .dmask = {d->dmask, 0}, .dpair = {d->dpair, 0}};
}

static float *download(mcl_context *ctx, cl_mem mem, mcl_dtype dtype, size_t n)
{
    float *out = malloc((n ? n : 1) * sizeof *out);
    cr_assert_not_null(out);
    host_download(ctx, mem, dtype, out, n);
    return out;
}

static double compare(mcl_context *ctx, cl_mem mem, mcl_dtype dtype, const double *ref, size_t n)
{
    float *out = download(ctx, mem, dtype, n);
    double err = host_rel_error(out, ref, n);
    free(out);
    return err;
}

/* lse: entries the reference has at -inf must be exactly -inf, the others finite and within
 * the relative error returned. */
static double compare_lse(mcl_context *ctx, cl_mem mem, const double *ref, size_t n, size_t *mismatch)
{
    float *out = download(ctx, mem, MCL_F32, n);
    float *fin_out = malloc(n * sizeof *fin_out);
    double *fin_ref = malloc(n * sizeof *fin_ref);
    size_t m = 0;
    *mismatch = 0;
    for (size_t i = 0; i < n; i++) {
        if (isinf(ref[i]) && ref[i] < 0) {
            if (!(isinf(out[i]) && out[i] < 0)) ++*mismatch;
        } else {
            fin_out[m] = out[i];
            fin_ref[m++] = ref[i];
        }
    }
    double err = host_rel_error(fin_out, fin_ref, m);
    free(out), free(fin_out), free(fin_ref);
    return *mismatch ? INFINITY : err;
}

/* worst |sum| / sum|.| over consecutive rows of `len` entries (rows whose sum|.| is 0 skipped).
 * A row of one entry is a single rounding residue of P (dP - delta), where this ratio is 1
 * whatever its size; compare() checks such entries against the reference's zeros instead. */
static double worst_row_sum(const float *x, size_t rows, size_t len)
{
    double worst = 0.0;
    if (len < 2) return 0.0;
    for (size_t r = 0; r < rows; r++) {
        double sum = 0.0, abs = 0.0;
        for (size_t j = 0; j < len; j++) sum += x[r * len + j], abs += fabs(x[r * len + j]);
        if (!isfinite(sum)) return INFINITY;
        if (abs > 0.0) worst = fmax(worst, fabs(sum) / abs);
    }
    return worst;
}

/* Runs forward then backward (the gradients in `grads`) on poisoned outputs and compares every
 * output with the reference. */
static evo_errors run_case(mcl_context *ctx, evo_case c, host_rng *rng, int grads)
{
    size_t t = elems(c), nm = c.B * c.N * c.S, np = c.B * c.H * c.S * c.S, nl = c.B * c.N * c.H * c.S;
    evo_inputs in = make_inputs(rng, c);
    evo_device d = upload_case(ctx, c, &in, grads);
    mcl_evoattn_desc desc = desc_of(c);
    mcl_evoattn_fwd_tensors ft = fwd_tensors(&d);
    mcl_evoattn_bwd_tensors bt = bwd_tensors(&d);
    assert_ok(mcl_evoattn_forward(ctx, &desc, &ft, NULL));
    assert_ok(mcl_evoattn_backward(ctx, &desc, &bt, NULL));

    evo_errors e;
    for (int i = 0; i < T_COUNT; i++) e.err[i] = -1.0;
    e.lse_inf_mismatch = 0;
    e.dmask_rowsum = e.dpair_rowsum = 0.0;
    double *r_out = malloc(t * sizeof *r_out), *r_gated = malloc(t * sizeof *r_gated);
    double *r_lse = malloc(nl * sizeof *r_lse), *r_dq = malloc(t * sizeof *r_dq);
    double *r_dk = malloc(t * sizeof *r_dk), *r_dv = malloc(t * sizeof *r_dv);
    double *r_dg = malloc(t * sizeof *r_dg), *r_dmask = malloc(nm * sizeof *r_dmask);
    double *r_dpair = malloc(np * sizeof *r_dpair);
    cr_assert(r_out && r_gated && r_lse && r_dq && r_dk && r_dv && r_dg && r_dmask && r_dpair);
    ref_evoattn_problem p = problem_of(c, &in, 1);
    cr_assert_eq(ref_evoattn_forward(&p, r_out, r_gated, r_lse), 0);
    cr_assert_eq(ref_evoattn_backward(&p, r_dq, r_dk, r_dv, r_dg, r_dmask, r_dpair), 0);

    e.err[T_OUT] = compare(ctx, d.out, c.dtype, r_out, t);
    if (d.gated) e.err[T_GATED] = compare(ctx, d.gated, c.dtype, r_gated, t);
    e.err[T_LSE] = compare_lse(ctx, d.lse, r_lse, nl, &e.lse_inf_mismatch);
    if (d.dq) e.err[T_DQ] = compare(ctx, d.dq, c.dtype, r_dq, t);
    if (d.dk) e.err[T_DK] = compare(ctx, d.dk, c.dtype, r_dk, t);
    if (d.dv) e.err[T_DV] = compare(ctx, d.dv, c.dtype, r_dv, t);
    if (d.dg) e.err[T_DG] = compare(ctx, d.dg, c.dtype, r_dg, t);
    if (d.dmask) {
        e.err[T_DMASK] = compare(ctx, d.dmask, c.dtype, r_dmask, nm);
        float *x = download(ctx, d.dmask, c.dtype, nm);
        e.dmask_rowsum = worst_row_sum(x, c.B * c.N, c.S);
        free(x);
    }
    if (d.dpair) {
        e.err[T_DPAIR] = compare(ctx, d.dpair, c.dtype, r_dpair, np);
        float *x = download(ctx, d.dpair, c.dtype, np);
        e.dpair_rowsum = worst_row_sum(x, c.B * c.H * c.S, c.S);
        free(x);
    }
    free(r_out), free(r_gated), free(r_lse), free(r_dq), free(r_dk), free(r_dv), free(r_dg),
        free(r_dmask), free(r_dpair);
    release_device(&d);
    free_inputs(&in);
    return e;
}

static double fwd_tolerance(mcl_dtype dt) { return dt == MCL_F32 ? 1e-5 : host_tolerance(dt); }
static double bwd_tolerance(mcl_dtype dt) { return dt == MCL_F32 ? 2e-5 : host_tolerance(dt); }

static void check_case_grads(mcl_context *ctx, evo_case c, host_rng *rng, int grads, const char *label)
{
    evo_errors e = run_case(ctx, c, rng, grads);
    double tf = fwd_tolerance(c.dtype), tb = bwd_tolerance(c.dtype);
    for (int i = 0; i < T_COUNT; i++) {
        if (e.err[i] < 0) continue;
        double tol = i == T_OUT || i == T_GATED ? tf : tb;
        cr_expect(e.err[i] <= tol,
                  "%s: %s B=%zu N=%zu S=%zu H=%zu D=%zu %s mask=%d pair=%d gate=%d masked_rows=%d "
                  "scale=%g: rel error %.3g > %.1g%s",
                  label, t_names[i], c.B, c.N, c.S, c.H, c.D, mcl_dtype_name(c.dtype), c.mask,
                  c.pair, c.gate, c.masked_rows, (double)c.scale, e.err[i], tol,
                  i == T_LSE && e.lse_inf_mismatch ? " (-inf entries differ)" : "");
    }
    cr_expect(e.dmask_rowsum <= tb, "%s: sum_j dmask[b,n,j] / sum_j |dmask| = %.3g (S=%zu D=%zu %s)",
              label, e.dmask_rowsum, c.S, c.D, mcl_dtype_name(c.dtype));
    cr_expect(e.dpair_rowsum <= tb, "%s: sum_j dpair[b,h,i,j] / sum_j |dpair| = %.3g (S=%zu D=%zu %s)",
              label, e.dpair_rowsum, c.S, c.D, mcl_dtype_name(c.dtype));
}

static void check_case(mcl_context *ctx, evo_case c, host_rng *rng, const char *label)
{
    check_case_grads(ctx, c, rng, GRAD_ALL, label);
}

/* ---- the reference itself ------------------------------------------------------------- */

/* L = sum w . Y (Y = O without a gate), evaluated by the reference forward */
static double functional(const ref_evoattn_problem *p, const float *w, double *scratch, size_t n)
{
    ref_evoattn_problem fp = *p;
    fp.dout = NULL;
    cr_assert_eq(ref_evoattn_forward(&fp, NULL, scratch, NULL), 0);
    double l = 0.0;
    for (size_t i = 0; i < n; i++) l += (double)w[i] * scratch[i];
    return l;
}

/* Central differences of L over every element of x (elements with skip[e] <= MASKED are
 * removed keys, whose analytic gradient must be exactly 0); returns ||fd - an|| / ||an||. */
static double fd_error(const ref_evoattn_problem *p, float *x, size_t count, const double *an,
                       const float *w, size_t n, const float *skip)
{
    double *scratch = malloc(n * sizeof *scratch), diff = 0.0, norm = 0.0;
    for (size_t e = 0; e < count; e++) {
        if (skip && skip[e] <= MCL_EVOATTN_MASKED) {
            cr_expect_eq(an[e], 0.0, "removed key %zu has gradient %g", e, an[e]);
            continue;
        }
        float x0 = x[e], xp = x0 + 1.0f / 4096, xm = x0 - 1.0f / 4096;
        x[e] = xp;
        double lp = functional(p, w, scratch, n);
        x[e] = xm;
        double lm = functional(p, w, scratch, n);
        x[e] = x0;
        double fd = (lp - lm) / ((double)xp - (double)xm);
        diff += (fd - an[e]) * (fd - an[e]);
        norm += an[e] * an[e];
    }
    free(scratch);
    cr_assert_gt(norm, 0.0);
    return sqrt(diff / norm);
}

Test(evoattn, reference_matches_finite_differences)
{
    host_rng rng = host_rng_seeded(test_seed());
    evo_case c = {2, 3, 6, 2, 5, MCL_F32, 1, 1, 1, 1, 0.0f};
    size_t t = elems(c), nm = c.B * c.N * c.S, np = c.B * c.H * c.S * c.S;
    evo_inputs in = make_inputs(&rng, c);
    in.mask[c.S + 3] = -1e9f; /* removed keys inside rows that keep others */
    in.mask[2 * c.S + 1] = -INFINITY;
    in.mask[2 * c.S + 4] = MCL_EVOATTN_MASKED;
    double *dq = malloc(t * sizeof *dq), *dk = malloc(t * sizeof *dk), *dv = malloc(t * sizeof *dv);
    double *dg = malloc(t * sizeof *dg), *dm = malloc(nm * sizeof *dm), *dp = malloc(np * sizeof *dp);
    for (int variant = 0; variant < 3; variant++) {
        /* 0: gated, default scale; 1: ungated, scale 0.7; 2: ungated, no mask, no pair */
        ref_evoattn_problem p = problem_of(c, &in, 1);
        if (variant > 0) p.gate = NULL;
        if (variant == 1) p.scale = ref_evoattn_scale(c.D, 0.7f);
        if (variant == 2) p.mask = NULL, p.pair = NULL;
        cr_assert_eq(ref_evoattn_backward(&p, dq, dk, dv, dg, dm, dp), 0);
        const double tol = 1e-6;
        struct { const char *name; float *x; size_t n; const double *an; const float *skip; } g[] = {
            {"q", in.q, t, dq, NULL}, {"k", in.k, t, dk, NULL}, {"v", in.v, t, dv, NULL},
            {"gate", in.gate, t, dg, NULL}, {"mask", in.mask, nm, dm, in.mask},
            {"pair", in.pair, np, dp, NULL}};
        for (size_t i = 0; i < sizeof g / sizeof g[0]; i++) {
            if ((i == 3 && !p.gate) || (i == 4 && !p.mask) || (i == 5 && !p.pair)) continue;
            double err = fd_error(&p, g[i].x, g[i].n, g[i].an, in.dout, t, g[i].skip);
            cr_expect_leq(err, tol, "variant %d: d%s differs from finite differences by %.3g", variant,
                          g[i].name, err);
        }
    }
    free(dq), free(dk), free(dv), free(dg), free(dm), free(dp);
    free_inputs(&in);
}

/* dS rows sum to 0 (so do dmask and the rows of dpair); fully masked rows give O = 0,
 * lse = -inf and zero gradients; probabilities sum to 1; d lse / d s = P. */
Test(evoattn, reference_invariants)
{
    host_rng rng = host_rng_seeded(test_seed());
    evo_case c = {2, 3, 9, 2, 4, MCL_F32, 1, 1, 1, 1, 0.0f};
    evo_inputs in = make_inputs(&rng, c);
    ref_evoattn_problem p = problem_of(c, &in, 1);
    ref_evoattn_row row, row2;
    cr_assert_eq(ref_evoattn_row_alloc(&row, c.S, c.D), 0);
    cr_assert_eq(ref_evoattn_row_alloc(&row2, c.S, c.D), 0);
    size_t all_masked = 0;
    for (size_t b = 0; b < c.B; b++)
        for (size_t n = 0; n < c.N; n++)
            for (size_t h = 0; h < c.H; h++)
                for (size_t i = 0; i < c.S; i++) {
                    ref_evoattn_row_compute(&p, b, n, h, i, &row);
                    double sum = 0.0, abs = 0.0, psum = 0.0;
                    for (size_t j = 0; j < c.S; j++) sum += row.ds[j], abs += fabs(row.ds[j]), psum += row.p[j];
                    if (row.all_masked) {
                        all_masked++;
                        cr_expect(isinf(row.lse) && row.lse < 0, "fully masked row: lse %g", row.lse);
                        cr_expect_eq(abs, 0.0);
                        cr_expect_eq(psum, 0.0);
                        for (size_t d = 0; d < c.D; d++) {
                            cr_expect_eq(row.o[d], 0.0);
                            cr_expect_eq(row.y[d], 0.0);
                            cr_expect_eq(row.dg[d], 0.0);
                        }
                        continue;
                    }
                    cr_expect_leq(fabs(sum), 1e-13 * abs, "dS row sum %g (sum|dS| %g)", sum, abs);
                    cr_expect_leq(fabs(psum - 1.0), 1e-14);
                    /* d lse / d pair_ij = P_ij, by central differences */
                    float *pij = &in.pair[((b * c.H + h) * c.S + i) * c.S];
                    for (size_t j = 0; j < c.S && b == 0 && n == 0 && h == 0; j++) {
                        float x0 = pij[j], xp = x0 + 1.0f / 4096, xm = x0 - 1.0f / 4096;
                        pij[j] = xp;
                        ref_evoattn_row_compute(&p, b, n, h, i, &row2);
                        double lp = row2.lse;
                        pij[j] = xm;
                        ref_evoattn_row_compute(&p, b, n, h, i, &row2);
                        pij[j] = x0;
                        double fd = (lp - row2.lse) / ((double)xp - (double)xm);
                        cr_expect_leq(fabs(fd - row.p[j]), 1e-6, "d lse / d s_%zu: %g vs P %g", j, fd, row.p[j]);
                    }
                }
    cr_expect_eq(all_masked, 2 * c.H * c.S, "two (b, n) rows of keys are fully masked");
    /* S = 1: O = v, lse = s */
    evo_case one = {1, 1, 1, 1, 3, MCL_F32, 0, 0, 0, 0, 0.5f};
    evo_inputs in1 = make_inputs(&rng, one);
    ref_evoattn_problem p1 = problem_of(one, &in1, 0);
    ref_evoattn_row_compute(&p1, 0, 0, 0, 0, &row);
    double dot = 0.0;
    for (size_t d = 0; d < 3; d++) dot += (double)in1.q[d] * in1.k[d];
    cr_expect_leq(fabs(row.lse - 0.5 * dot), 1e-15);
    for (size_t d = 0; d < 3; d++) cr_expect_leq(fabs(row.o[d] - in1.v[d]), 1e-15);
    /* dmask and dpair rows of the full backward sum to 0 */
    size_t nm = c.B * c.N * c.S, np = c.B * c.H * c.S * c.S;
    double *dm = malloc(nm * sizeof *dm), *dp = malloc(np * sizeof *dp);
    cr_assert_eq(ref_evoattn_backward(&p, NULL, NULL, NULL, NULL, dm, dp), 0);
    for (size_t r = 0; r < c.B * c.N; r++) {
        double sum = 0.0, abs = 0.0;
        for (size_t j = 0; j < c.S; j++) sum += dm[r * c.S + j], abs += fabs(dm[r * c.S + j]);
        cr_expect_leq(fabs(sum), 1e-13 * abs + 1e-300);
    }
    for (size_t r = 0; r < c.B * c.H * c.S; r++) {
        double sum = 0.0, abs = 0.0;
        for (size_t j = 0; j < c.S; j++) sum += dp[r * c.S + j], abs += fabs(dp[r * c.S + j]);
        cr_expect_leq(fabs(sum), 1e-13 * abs + 1e-300);
    }
    free(dm), free(dp);
    ref_evoattn_row_free(&row), ref_evoattn_row_free(&row2);
    free_inputs(&in), free_inputs(&in1);
}

/* ---- device against reference --------------------------------------------------------- */

/* Every option combination, sizes that are multiples of no tile, size 1, fully and partially
 * masked keys, D from 1 to 256, every dtype, and the AF3 shapes at small scale. */
Test(evoattn, matches_reference_over_options_and_shapes, .timeout = 900)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    /* every combination of mask, pair and gate, with an explicit scale once */
    for (int o = 0; o < 8; o++) {
        evo_case c = {2, 2, 33, 2, 24, MCL_F32, o & 1, (o >> 1) & 1, (o >> 2) & 1, o & 1, o == 5 ? 0.3f : 0.0f};
        check_case(ctx, c, &rng, "options");
    }
    for (int dt = MCL_BF16; dt <= MCL_F16; dt++) {
        check_case(ctx, (evo_case){2, 2, 33, 2, 24, (mcl_dtype)dt, 0, 0, 0, 0, 0.0f}, &rng, "options");
        check_case(ctx, (evo_case){2, 2, 33, 2, 24, (mcl_dtype)dt, 1, 1, 1, 1, 0.0f}, &rng, "options");
    }
    static const evo_case shapes[] = {
        /* B, N, S, H, D, dtype, mask, pair, gate, masked_rows, scale */
        {1, 1, 1, 1, 1, MCL_F32, 1, 1, 1, 0, 0.0f},
        {2, 1, 1, 3, 3, MCL_F32, 0, 1, 0, 0, 0.0f},
        {2, 1, 7, 3, 3, MCL_F32, 1, 0, 1, 0, 0.0f},
        {1, 3, 7, 2, 1, MCL_F32, 1, 1, 0, 1, 0.0f},
        {1, 3, 100, 2, 8, MCL_F32, 1, 1, 0, 1, 0.0f},
        {2, 1, 33, 1, 32, MCL_F32, 0, 1, 1, 0, 0.0f},
        {1, 3, 7, 2, 48, MCL_F32, 1, 1, 1, 1, 0.0f},
        {2, 1, 100, 1, 64, MCL_F32, 1, 1, 0, 0, 0.0f},
        {1, 1, 33, 2, 256, MCL_F32, 1, 1, 1, 0, 0.0f},
        {1, 2, 7, 1, 130, MCL_F32, 0, 1, 0, 0, 0.0f},
        /* AF3 at small scale: triangle (N = S, H = 4, D = 32), single (N = 1, H = 16, D = 64),
         * MSA rows (N > S, H = 8, D = 8) */
        {1, 24, 24, 4, 32, MCL_F32, 1, 1, 1, 1, 0.0f},
        {1, 24, 24, 4, 32, MCL_BF16, 1, 1, 1, 1, 0.0f},
        {1, 1, 100, 16, 64, MCL_F32, 1, 1, 0, 0, 0.0f},
        {1, 1, 100, 16, 64, MCL_F16, 1, 1, 0, 0, 0.0f},
        {1, 40, 17, 8, 8, MCL_BF16, 1, 1, 1, 1, 0.0f},
        {1, 40, 17, 8, 8, MCL_F16, 1, 1, 1, 1, 0.0f},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) check_case(ctx, shapes[i], &rng, "shapes");
    mcl_context_release(ctx);
}

/* Long sequences (the issue asks for S up to at least 8192): the row kernels at D = 8 and the
 * micro-tiled ones at D = 24, over many key and query tiles. */
Test(evoattn, long_sequences, .timeout = 900)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    check_case(ctx, (evo_case){1, 1, 8192, 1, 8, MCL_F32, 1, 1, 0, 0, 0.0f}, &rng, "long");
    check_case(ctx, (evo_case){1, 1, 4099, 1, 24, MCL_BF16, 1, 1, 1, 0, 0.0f}, &rng, "long");
    mcl_context_release(ctx);
}

/* Only some gradients requested: each one alone, and a few pairs. */
Test(evoattn, partial_gradients, .timeout = 600)
{
    static const int requests[] = {GRAD_DPAIR, GRAD_DQ, GRAD_DK, GRAD_DV, GRAD_DG, GRAD_DMASK,
                                   GRAD_DMASK | GRAD_DV, GRAD_DQ | GRAD_DPAIR, GRAD_DK | GRAD_DG};
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (size_t r = 0; r < sizeof requests / sizeof requests[0]; r++) {
        char label[32];
        snprintf(label, sizeof label, "grads 0x%x", requests[r]);
        check_case_grads(ctx, (evo_case){2, 2, 33, 2, 24, MCL_F32, 1, 1, 1, 1, 0.0f}, &rng, requests[r], label);
    }
    mcl_context_release(ctx);
}

/* Every variant of the parameter space must be correct, not only the one the tables pick. */
Test(evoattn, every_parameter_variant_is_correct, .timeout = 900)
{
    static const char *const variants[] = {
        NULL, /* the defaults */
        "VARIANT=0",
        /* head dim split into 3 (D = 24) or 8 (D = 64) slices per row */
        "FWD_MT=0,FWD_BQ=16,FWD_BK=16,FWD_R=1,FWD_DW=8,DKV_MT=0,DKV_BQ=16,DKV_BK=16,DKV_R=1,DKV_DW=8,"
        "DQ_BQ=16,DQ_BK=16,DQ_R=1,DQ_DW=8",
        "FWD_MT=0,FWD_BQ=32,FWD_BK=64,FWD_R=4,FWD_DW=16,DKV_MT=0,DKV_BQ=32,DKV_BK=32,DKV_R=2,DKV_DW=64,"
        "DQ_BQ=32,DQ_BK=32,DQ_R=2,DQ_DW=16,DKV_AHEAD=2",
        /* single-row tiles and the narrowest slices */
        "FWD_MT=0,FWD_BQ=8,FWD_BK=1,FWD_R=8,FWD_DW=4,DKV_MT=0,DKV_BQ=1,DKV_BK=8,DKV_R=8,DKV_DW=4,"
        "DQ_BQ=2,DQ_BK=8,DQ_R=2,DQ_DW=64,DPAIR_WAVES=1,DKV_AHEAD=16",
        /* micro-tiled kernels: the smallest blocks (several dK/dV or O tasks per work-item at
         * D = 44 and 64) and a key tile of one block */
        "FWD_MT=1,FWD_MT_BQ=4,FWD_MT_BK=8,DKV_MT=1,DKV_MT_BQ=4,DKV_MT_BK=8,DPAIR_WAVES=1",
        "FWD_MT=1,FWD_MT_BQ=16,FWD_MT_BK=4,DKV_MT=1,DKV_MT_BQ=16,DKV_MT_BK=4,DPAIR_WAVES=16",
    };
    static const evo_case shapes[] = {
        {1, 3, 70, 2, 24, MCL_F32, 1, 1, 1, 1, 0.0f},
        {2, 1, 1, 3, 24, MCL_F32, 1, 1, 0, 0, 0.0f},
        {2, 2, 9, 4, 24, MCL_F32, 0, 1, 1, 0, 0.0f},
        {1, 5, 37, 3, 64, MCL_BF16, 1, 1, 0, 1, 0.0f},
        {1, 2, 33, 2, 44, MCL_F16, 1, 0, 1, 0, 0.0f},
    };
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        assert_ok(mcl_context_set_params(ctx, "evoattn", variants[v]));
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            check_case(ctx, shapes[s], &rng, variants[v] ? variants[v] : "defaults");
    }
    assert_ok(mcl_context_set_params(ctx, "evoattn", NULL));
    mcl_context_release(ctx);
}

/* Forward and backward twice on the same inputs: every output byte identical. */
Test(evoattn, results_are_bitwise_identical_on_repeat)
{
    evo_case c = {1, 3, 70, 2, 24, MCL_F32, 1, 1, 1, 1, 0.0f};
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    evo_inputs in = make_inputs(&rng, c);
    size_t t = elems(c) * 4, nm = c.B * c.N * c.S * 4, np = c.B * c.H * c.S * c.S * 4;
    size_t nl = c.B * c.N * c.H * c.S * 4;
    const size_t bytes[] = {t, t, nl, t, t, t, t, nm, np};
    void *first[T_COUNT] = {0};
    for (int run = 0; run < 2; run++) {
        evo_device d = upload_case(ctx, c, &in, GRAD_ALL);
        mcl_evoattn_desc desc = desc_of(c);
        mcl_evoattn_fwd_tensors ft = fwd_tensors(&d);
        mcl_evoattn_bwd_tensors bt = bwd_tensors(&d);
        assert_ok(mcl_evoattn_forward(ctx, &desc, &ft, NULL));
        assert_ok(mcl_evoattn_backward(ctx, &desc, &bt, NULL));
        cl_mem outs[T_COUNT] = {d.out, d.gated, d.lse, d.dq, d.dk, d.dv, d.dg, d.dmask, d.dpair};
        for (int i = 0; i < T_COUNT; i++) {
            void *data = test_read_all(ctx, outs[i], bytes[i]);
            if (run == 0) {
                first[i] = data;
            } else {
                cr_expect_eq(memcmp(first[i], data, bytes[i]), 0, "%s differs between runs", t_names[i]);
                free(data);
                free(first[i]);
            }
        }
        release_device(&d);
    }
    free_inputs(&in);
    mcl_context_release(ctx);
}

/* A buffer of off + n + OFF_GUARD elements holding src at [off, off + n) and NaN around it. */
enum { OFF_GUARD = 64, OFF_POISON = 0x7f };
static cl_mem upload_at(mcl_context *ctx, mcl_dtype dt, const float *src, size_t n, size_t off)
{
    size_t total = off + n + OFF_GUARD;
    float *h = malloc(total * sizeof *h);
    cr_assert_not_null(h);
    for (size_t i = 0; i < total; i++) h[i] = NAN;
    memcpy(h + off, src, n * sizeof *h);
    cl_mem mem = host_upload(ctx, dt, h, total);
    free(h);
    return mem;
}

/* Non-zero tensor offsets take the scalar path (offset 1) or keep the vector one (offset 4):
 * results must be the offset-0 bytes, and no output byte outside its region may be written. */
Test(evoattn, tensors_at_offsets_match_and_stay_in_bounds, .timeout = 600)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (int bf16 = 0; bf16 < 2; bf16++) {
        evo_case c = {1, 3, 37, 2, 32, bf16 ? MCL_BF16 : MCL_F32, 1, 1, 1, 1, 0.0f};
        size_t t = elems(c), nm = c.B * c.N * c.S, np = c.B * c.H * c.S * c.S, es = mcl_dtype_size(c.dtype);
        const size_t n_in[] = {t, t, t, t, nm, np, t};                   /* q k v dout mask pair gate */
        const size_t n_out[T_COUNT] = {t, t, c.B * c.N * c.H * c.S, t, t, t, t, nm, np};
        size_t es_out[T_COUNT];
        for (int i = 0; i < T_COUNT; i++) es_out[i] = i == T_LSE ? 4 : es;
        evo_inputs in = make_inputs(&rng, c);
        const float *src[] = {in.q, in.k, in.v, in.dout, in.mask, in.pair, in.gate};
        mcl_evoattn_desc desc = desc_of(c);

        evo_device d = upload_case(ctx, c, &in, GRAD_ALL);
        mcl_evoattn_fwd_tensors ft = fwd_tensors(&d);
        mcl_evoattn_bwd_tensors bt = bwd_tensors(&d);
        assert_ok(mcl_evoattn_forward(ctx, &desc, &ft, NULL));
        assert_ok(mcl_evoattn_backward(ctx, &desc, &bt, NULL));
        cl_mem base_out[T_COUNT] = {d.out, d.gated, d.lse, d.dq, d.dk, d.dv, d.dg, d.dmask, d.dpair};
        void *base[T_COUNT];
        for (int i = 0; i < T_COUNT; i++) base[i] = test_read_all(ctx, base_out[i], n_out[i] * es_out[i]);
        release_device(&d);

        for (size_t off = 1; off <= 4; off += 3) {
            evo_device e = {0};
            cl_mem *e_in[] = {&e.q, &e.k, &e.v, &e.dout, &e.mask, &e.pair, &e.gate};
            cl_mem *e_out[T_COUNT] = {&e.out, &e.gated, &e.lse, &e.dq, &e.dk, &e.dv, &e.dg, &e.dmask, &e.dpair};
            for (int i = 0; i < 7; i++) *e_in[i] = upload_at(ctx, c.dtype, src[i], n_in[i], off);
            for (int i = 0; i < T_COUNT; i++)
                *e_out[i] = test_buffer(ctx, (off + n_out[i] + OFF_GUARD) * es_out[i], OFF_POISON);
            ft = fwd_tensors(&e), bt = bwd_tensors(&e);
            mcl_tensor *shifted[] = {&ft.q, &ft.k, &ft.v, &ft.mask, &ft.pair, &ft.gate, &ft.out, &ft.gated,
                                     &bt.q, &bt.k, &bt.v, &bt.mask, &bt.pair, &bt.gate, &bt.out, &bt.dout,
                                     &bt.dq, &bt.dk, &bt.dv, &bt.dgate, &bt.dmask, &bt.dpair};
            for (size_t i = 0; i < sizeof shifted / sizeof shifted[0]; i++) shifted[i]->offset = off * es;
            ft.lse.offset = bt.lse.offset = off * 4; /* lse is fp32 whatever the dtype */
            assert_ok(mcl_evoattn_forward(ctx, &desc, &ft, NULL));
            assert_ok(mcl_evoattn_backward(ctx, &desc, &bt, NULL));

            for (int i = 0; i < T_COUNT; i++) {
                size_t lo = off * es_out[i], len = n_out[i] * es_out[i], total = lo + len + OFF_GUARD * es_out[i];
                unsigned char *got = test_read_all(ctx, *e_out[i], total);
                cr_expect_eq(memcmp(got + lo, base[i], len), 0, "%s %s at offset %zu differs from offset 0",
                             t_names[i], mcl_dtype_name(c.dtype), off);
                size_t stray = 0;
                for (size_t j = 0; j < total; j++) stray += (j < lo || j >= lo + len) && got[j] != OFF_POISON;
                cr_expect_eq(stray, 0, "%s %s at offset %zu: %zu bytes outside the tensor were written",
                             t_names[i], mcl_dtype_name(c.dtype), off, stray);
                free(got);
            }
            release_device(&e);
        }
        for (int i = 0; i < T_COUNT; i++) free(base[i]);
        free_inputs(&in);
    }
    mcl_context_release(ctx);
}

Test(evoattn, event_and_workspace_size)
{
    evo_case c = {1, 4, 50, 2, 24, MCL_F32, 1, 1, 0, 0, 0.0f};
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    evo_inputs in = make_inputs(&rng, c);
    evo_device d = upload_case(ctx, c, &in, GRAD_ALL);
    mcl_evoattn_desc desc = desc_of(c);
    mcl_evoattn_fwd_tensors ft = fwd_tensors(&d);
    mcl_evoattn_bwd_tensors bt = bwd_tensors(&d);
    size_t bytes = (size_t)-1;
    assert_ok(mcl_evoattn_backward_workspace_size(ctx, &desc, &bt, &bytes));
    cr_assert_neq(bytes, (size_t)-1, "workspace size was not written");
    assert_status(mcl_evoattn_backward_workspace_size(NULL, &desc, &bt, &bytes), MCL_ERR_NULL_POINTER);
    assert_status(mcl_evoattn_backward_workspace_size(ctx, NULL, &bt, &bytes), MCL_ERR_NULL_POINTER);
    assert_status(mcl_evoattn_backward_workspace_size(ctx, &desc, NULL, &bytes), MCL_ERR_NULL_POINTER);
    assert_status(mcl_evoattn_backward_workspace_size(ctx, &desc, &bt, NULL), MCL_ERR_NULL_POINTER);
    mcl_evoattn_desc bad = desc;
    bad.head_dim = 0;
    assert_status(mcl_evoattn_backward_workspace_size(ctx, &bad, &bt, &bytes), MCL_ERR_INVALID_SIZE);

    cl_event event = NULL;
    assert_ok(mcl_evoattn_forward(ctx, &desc, &ft, &event));
    test_wait_event(event);
    assert_ok(mcl_context_trim(ctx));
    mcl_context_reset_peak(ctx);
    event = NULL;
    assert_ok(mcl_evoattn_backward(ctx, &desc, &bt, &event));
    test_wait_event(event);
    mcl_context_stats stats;
    mcl_context_get_stats(ctx, &stats);
    cr_assert_geq(stats.workspace_peak_bytes, bytes, "backward held %llu workspace bytes, size says %zu",
                  (unsigned long long)stats.workspace_peak_bytes, bytes);
    release_device(&d);
    free_inputs(&in);
    mcl_context_release(ctx);
}

/* ---- bad inputs: a specific status, a message, and outputs left untouched ------------------ */

enum { BAD_B = 1, BAD_N = 2, BAD_S = 8, BAD_H = 2, BAD_D = 16, BAD_BYTE = 0x3c };
enum {
    BAD_T = BAD_B * BAD_N * BAD_S * BAD_H * BAD_D, /* elements of q, k, v, gate, out, ... */
    BAD_M = BAD_B * BAD_N * BAD_S,
    BAD_P = BAD_B * BAD_H * BAD_S * BAD_S,
    BAD_L = BAD_B * BAD_N * BAD_H * BAD_S,
};

typedef struct evo_bad {
    mcl_context *ctx;
    cl_mem q, k, v, mask, pair, gate, saved_out, saved_lse, dout; /* inputs */
    cl_mem out, gated, lse, dq, dk, dv, dg, dmask, dpair, small;  /* outputs: BAD_BYTE */
    mcl_evoattn_desc desc;
    mcl_evoattn_fwd_tensors ft;
    mcl_evoattn_bwd_tensors bt;
} evo_bad;

static evo_bad bad_setup(void)
{
    evo_bad f;
    f.ctx = test_context();
    cl_mem *inputs[] = {&f.q, &f.k, &f.v, &f.gate, &f.saved_out, &f.dout};
    for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) *inputs[i] = test_buffer(f.ctx, BAD_T * 4, 0x11);
    f.mask = test_buffer(f.ctx, BAD_M * 4, 0x11);
    f.pair = test_buffer(f.ctx, BAD_P * 4, 0x11);
    f.saved_lse = test_buffer(f.ctx, BAD_L * 4, 0x11);
    cl_mem *outs[] = {&f.out, &f.gated, &f.dq, &f.dk, &f.dv, &f.dg};
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) *outs[i] = test_buffer(f.ctx, BAD_T * 4, BAD_BYTE);
    f.lse = test_buffer(f.ctx, BAD_L * 4, BAD_BYTE);
    f.dmask = test_buffer(f.ctx, BAD_M * 4, BAD_BYTE);
    f.dpair = test_buffer(f.ctx, BAD_P * 4, BAD_BYTE);
    f.small = test_buffer(f.ctx, 64, BAD_BYTE);
    f.desc = (mcl_evoattn_desc){BAD_B, BAD_N, BAD_S, BAD_H, BAD_D, MCL_F32, 0.0f};
    f.ft = (mcl_evoattn_fwd_tensors){.q = {f.q, 0}, .k = {f.k, 0}, .v = {f.v, 0},
                                     .mask = {f.mask, 0}, .pair = {f.pair, 0}, .gate = {f.gate, 0},
                                     .out = {f.out, 0}, .gated = {f.gated, 0}, .lse = {f.lse, 0}};
    f.bt = (mcl_evoattn_bwd_tensors){.q = {f.q, 0}, .k = {f.k, 0}, .v = {f.v, 0},
                                     .mask = {f.mask, 0}, .pair = {f.pair, 0}, .gate = {f.gate, 0},
                                     .out = {f.saved_out, 0}, .lse = {f.saved_lse, 0},
                                     .dout = {f.dout, 0}, .dq = {f.dq, 0}, .dk = {f.dk, 0},
                                     .dv = {f.dv, 0}, .dgate = {f.dg, 0}, .dmask = {f.dmask, 0},
                                     .dpair = {f.dpair, 0}};
    return f;
}

static void bad_teardown(evo_bad *f)
{
    cl_mem mems[] = {f->q,   f->k,   f->v,     f->mask, f->pair, f->gate, f->saved_out,
                     f->saved_lse, f->dout, f->out, f->gated, f->lse, f->dq, f->dk, f->dv,
                     f->dg, f->dmask, f->dpair, f->small};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++) clReleaseMemObject(mems[i]);
    mcl_context_release(f->ctx);
}

static void expect_bad(evo_bad *f, mcl_status got, mcl_status expected, const char *needle, const char *label)
{
    test_expect_status(got, expected, "evoattn", needle, label);
    const test_filled outs[] = {{f->out, BAD_T * 4, BAD_BYTE},   {f->gated, BAD_T * 4, BAD_BYTE},
                                {f->lse, BAD_L * 4, BAD_BYTE},   {f->dq, BAD_T * 4, BAD_BYTE},
                                {f->dk, BAD_T * 4, BAD_BYTE},    {f->dv, BAD_T * 4, BAD_BYTE},
                                {f->dg, BAD_T * 4, BAD_BYTE},    {f->dmask, BAD_M * 4, BAD_BYTE},
                                {f->dpair, BAD_P * 4, BAD_BYTE}, {f->small, 64, BAD_BYTE}};
    test_expect_untouched(f->ctx, outs, COUNT_OF(outs), label);
}

static void expect_fwd(evo_bad *f, mcl_evoattn_desc d, mcl_evoattn_fwd_tensors t, mcl_status expected,
                       const char *needle, const char *label)
{
    expect_bad(f, mcl_evoattn_forward(f->ctx, &d, &t, NULL), expected, needle, label);
}

static void expect_bwd(evo_bad *f, mcl_evoattn_desc d, mcl_evoattn_bwd_tensors t, mcl_status expected,
                       const char *needle, const char *label)
{
    expect_bad(f, mcl_evoattn_backward(f->ctx, &d, &t, NULL), expected, needle, label);
}

/* desc faults shared by forward and backward */
typedef struct desc_fault {
    const char *label;
    mcl_status status;
    size_t batch, rows, seq, heads, head_dim; /* 0 in all five: keep the fixture's */
    int dtype;   /* -1: keep */
    float scale; /* used when set_scale */
    int set_scale;
} desc_fault;

static const desc_fault desc_faults[] = {
    {"zero D", MCL_ERR_INVALID_SIZE, BAD_B, BAD_N, BAD_S, BAD_H, 0, -1, 0, 0},
    {"zero S", MCL_ERR_INVALID_SIZE, BAD_B, BAD_N, 0, BAD_H, BAD_D, -1, 0, 0},
    {"zero B", MCL_ERR_INVALID_SIZE, 0, BAD_N, BAD_S, BAD_H, BAD_D, -1, 0, 0},
    {"zero N", MCL_ERR_INVALID_SIZE, BAD_B, 0, BAD_S, BAD_H, BAD_D, -1, 0, 0},
    {"zero H", MCL_ERR_INVALID_SIZE, BAD_B, BAD_N, BAD_S, 0, BAD_D, -1, 0, 0},
    {"D = 257", MCL_ERR_INVALID_SIZE, BAD_B, BAD_N, BAD_S, BAD_H, 257, -1, 0, 0},
    {"unknown dtype", MCL_ERR_UNSUPPORTED_DTYPE, BAD_B, BAD_N, BAD_S, BAD_H, BAD_D, 7, 0, 0},
    {"negative scale", MCL_ERR_INVALID_ARGUMENT, BAD_B, BAD_N, BAD_S, BAD_H, BAD_D, -1, -0.5f, 1},
    {"NaN scale", MCL_ERR_INVALID_ARGUMENT, BAD_B, BAD_N, BAD_S, BAD_H, BAD_D, -1, NAN, 1},
    {"element count overflow", MCL_ERR_SIZE_OVERFLOW, SIZE_MAX / 4, 4, BAD_S, BAD_H, BAD_D, -1, 0, 0},
};

static mcl_evoattn_desc apply_fault(mcl_evoattn_desc d, const desc_fault *f)
{
    d.batch = f->batch, d.rows = f->rows, d.seq = f->seq, d.heads = f->heads, d.head_dim = f->head_dim;
    if (f->dtype >= 0) d.dtype = (mcl_dtype)f->dtype;
    if (f->set_scale) d.scale = f->scale;
    return d;
}

Test(evoattn, bad_forward_inputs)
{
    evo_bad f = bad_setup();
    mcl_evoattn_desc d = f.desc;
    mcl_evoattn_fwd_tensors t = f.ft;
    assert_null_args_rejected(mcl_evoattn_forward, f.ctx, &d, &t);
    for (size_t i = 0; i < sizeof desc_faults / sizeof desc_faults[0]; i++)
        expect_fwd(&f, apply_fault(f.desc, &desc_faults[i]), t, desc_faults[i].status, NULL, desc_faults[i].label);

    t = f.ft, t.q.mem = NULL;
    expect_fwd(&f, d, t, MCL_ERR_NULL_POINTER, "is required", "missing q");
    t = f.ft, t.k.mem = NULL;
    expect_fwd(&f, d, t, MCL_ERR_NULL_POINTER, "is required", "missing k");
    t = f.ft, t.v.mem = NULL;
    expect_fwd(&f, d, t, MCL_ERR_NULL_POINTER, "is required", "missing v");
    t = f.ft, t.out.mem = NULL;
    expect_fwd(&f, d, t, MCL_ERR_NULL_POINTER, "is required", "missing out");
    t = f.ft, t.q = (mcl_tensor){f.small, 0};
    expect_fwd(&f, d, t, MCL_ERR_BUFFER_TOO_SMALL, "buffer holds 64 bytes", "small q");
    t = f.ft, t.q = (mcl_tensor){f.q, 4};
    expect_fwd(&f, d, t, MCL_ERR_BUFFER_TOO_SMALL, "from offset 4", "q past its buffer");
    t = f.ft, t.pair = (mcl_tensor){f.mask, 0}; /* [B, N, S] where [B, H, S, S] is needed */
    expect_fwd(&f, d, t, MCL_ERR_BUFFER_TOO_SMALL, "pair", "pair sized for the wrong shape");
    t = f.ft, t.mask = (mcl_tensor){f.mask, 8};
    expect_fwd(&f, d, t, MCL_ERR_BUFFER_TOO_SMALL, "mask", "mask past its buffer");
    t = f.ft, t.lse = (mcl_tensor){f.small, 0};
    expect_fwd(&f, d, t, MCL_ERR_BUFFER_TOO_SMALL, "lse", "small lse");
    t = f.ft, t.out = (mcl_tensor){f.out, 2};
    expect_fwd(&f, d, t, MCL_ERR_INVALID_ARGUMENT, "not a multiple", "misaligned offset");
    t = f.ft, t.gated.mem = NULL;
    expect_fwd(&f, d, t, MCL_ERR_INVALID_ARGUMENT, NULL, "gate without gated output");
    t = f.ft, t.gate.mem = NULL;
    expect_fwd(&f, d, t, MCL_ERR_INVALID_ARGUMENT, NULL, "gated output without gate");
    t = f.ft, t.lse = (mcl_tensor){f.out, 0};
    expect_fwd(&f, d, t, MCL_ERR_INVALID_ARGUMENT, "overlaps", "lse over out");
    t = f.ft, t.gated = (mcl_tensor){f.out, 0};
    expect_fwd(&f, d, t, MCL_ERR_INVALID_ARGUMENT, "overlaps", "gated over out");
    t = f.ft, t.out = (mcl_tensor){f.q, 0};
    expect_fwd(&f, d, t, MCL_ERR_INVALID_ARGUMENT, "overlaps", "out over q");
    bad_teardown(&f);
}

Test(evoattn, bad_backward_inputs)
{
    evo_bad f = bad_setup();
    mcl_evoattn_desc d = f.desc;
    mcl_evoattn_bwd_tensors t = f.bt;
    assert_null_args_rejected(mcl_evoattn_backward, f.ctx, &d, &t);
    for (size_t i = 0; i < sizeof desc_faults / sizeof desc_faults[0]; i++)
        expect_bwd(&f, apply_fault(f.desc, &desc_faults[i]), t, desc_faults[i].status, NULL, desc_faults[i].label);

    mcl_tensor *required[] = {&t.q, &t.k, &t.v, &t.out, &t.lse, &t.dout};
    const char *required_names[] = {"missing q", "missing k", "missing v", "missing out", "missing lse", "missing dout"};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        t = f.bt;
        required[i]->mem = NULL;
        expect_bwd(&f, d, t, MCL_ERR_NULL_POINTER, "is required", required_names[i]);
    }
    t = f.bt;
    t.dq.mem = t.dk.mem = t.dv.mem = t.dgate.mem = t.dmask.mem = t.dpair.mem = NULL;
    expect_bwd(&f, d, t, MCL_ERR_INVALID_ARGUMENT, NULL, "no output requested");
    t = f.bt, t.gate.mem = NULL;
    expect_bwd(&f, d, t, MCL_ERR_INVALID_ARGUMENT, NULL, "dgate without gate");
    t = f.bt, t.mask.mem = NULL;
    expect_bwd(&f, d, t, MCL_ERR_INVALID_ARGUMENT, NULL, "dmask without mask");
    t = f.bt, t.pair.mem = NULL;
    expect_bwd(&f, d, t, MCL_ERR_INVALID_ARGUMENT, NULL, "dpair without pair");
    t = f.bt, t.q = (mcl_tensor){f.small, 0};
    expect_bwd(&f, d, t, MCL_ERR_BUFFER_TOO_SMALL, "buffer holds 64 bytes", "small q");
    t = f.bt, t.pair = (mcl_tensor){f.mask, 0};
    expect_bwd(&f, d, t, MCL_ERR_BUFFER_TOO_SMALL, "pair", "pair sized for the wrong shape");
    t = f.bt, t.lse = (mcl_tensor){f.small, 0};
    expect_bwd(&f, d, t, MCL_ERR_BUFFER_TOO_SMALL, "lse", "small lse");
    t = f.bt, t.dpair = (mcl_tensor){f.dmask, 0};
    expect_bwd(&f, d, t, MCL_ERR_BUFFER_TOO_SMALL, "dpair", "small dpair");
    t = f.bt, t.dk = (mcl_tensor){f.dq, 0};
    expect_bwd(&f, d, t, MCL_ERR_INVALID_ARGUMENT, "overlaps", "dk over dq");
    t = f.bt, t.dq = (mcl_tensor){f.q, 0};
    expect_bwd(&f, d, t, MCL_ERR_INVALID_ARGUMENT, "overlaps", "dq over q");
    t = f.bt, t.dv = (mcl_tensor){f.dq, 4 * 8};
    expect_bwd(&f, d, t, MCL_ERR_BUFFER_TOO_SMALL, NULL, "dv past the end of dq's buffer");
    bad_teardown(&f);
}
