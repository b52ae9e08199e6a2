/* EvoAttention forward and backward against the double-precision reference (the evoattn
 * workload, tests/workload/evoattn.c): every option, shapes that fill no tile, long sequences,
 * partial gradients, every parameter variant, determinism and every placement, each tensor in its
 * own buffer between guard bytes; the reference itself against finite differences and its
 * invariants; workspace, events and bad inputs. */
#include "common.h"

#include "ref/evoattn_ref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The workload's tensors, the bit of each gradient in a case's want, and its option bits
 * (masked_rows: every key of the first (b, n) removed with -1e9, of the last one with -inf). */
enum { Q, K, V, MASK, PAIR, GATE, DOUT, OUT, GATED, LSE, DQ, DK, DV, DGATE, DMASK, DPAIR, COUNT };
#define WANT(t) (1u << ((t) - DQ))
enum { OPT_MASK = 1, OPT_PAIR = 2, OPT_GATE = 4, OPT_MASKED_ROWS = 8, OPT_ALL = 15 };

/* A case of shape B, N, S, H, D with every gradient its options allow, at the default scale. */
#define CASE(B, N, S, H, D, dtype, options) {{B, N, S, H, D}, dtype, options, WL_ALL, 0.0}

/* ---- device against reference --------------------------------------------------------- */

/* worst |sum| / sum|.| over consecutive rows of `len` entries (rows whose sum|.| is 0 skipped).
 * A row of one entry is a single rounding residue of P (dP - delta), where this ratio is 1
 * whatever its size; the comparison with the reference's zeros checks such entries instead. */
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

/* lse entries of fully masked rows (the reference's -inf) that are not -inf */
static size_t lse_inf_mismatches(const wl_problem *p)
{
    const wl_tensor *lse = &p->t[LSE];
    size_t missed = 0;
    for (size_t i = 0; i < lse->count; i++)
        missed += isinf(lse->ref[i]) && lse->ref[i] < 0 && !(isinf(lse->values[i]) && lse->values[i] < 0);
    return missed;
}

/* What the reference's norm does not see, on the fetched outputs: dS rows sum to 0, so the rows
 * of dmask (over S keys) and of dpair do, to the backward's tolerance; fully masked rows have
 * lse = -inf exactly. */
static void expect_invariants(const wl_problem *p, const char *variant)
{
    char label[320];
    test_label(p, variant, label, sizeof label);
    const size_t B = p->c.shape[0], N = p->c.shape[1], S = p->c.shape[2], H = p->c.shape[3];
    const double tol = wl_tolerance(p, DMASK);
    if (wl_has(p, DMASK)) {
        double worst = worst_row_sum(p->t[DMASK].values, B * N, S);
        cr_expect(worst <= tol, "%s: sum_j dmask[b,n,j] / sum_j |dmask| = %.3g", label, worst);
    }
    if (wl_has(p, DPAIR)) {
        double worst = worst_row_sum(p->t[DPAIR].values, B * H * S, S);
        cr_expect(worst <= tol, "%s: sum_j dpair[b,h,i,j] / sum_j |dpair| = %.3g", label, worst);
    }
    size_t missed = lse_inf_mismatches(p);
    cr_expect_eq(missed, 0, "%s: %zu lse entries of fully masked rows are not -inf", label, missed);
}

/* A problem of case c run (test_run) and its invariants checked; the caller destroys it. */
static wl_problem *run_checked(mcl_context *ctx, wl_case c, int offsets, host_rng *rng, const char *variant)
{
    wl_problem *p = test_problem(ctx, &wl_evoattn, c, offsets, rng);
    test_run(p, variant);
    expect_invariants(p, variant);
    return p;
}

static void check_case(mcl_context *ctx, wl_case c, host_rng *rng, const char *variant)
{
    wl_destroy(run_checked(ctx, c, WL_OFF_ZERO, rng, variant));
}

/* Every option combination, sizes that are multiples of no tile, size 1, fully and partially
 * masked keys, D from 1 to 256, every dtype, and the AF3 shapes at small scale. */
Test(evoattn, matches_reference_over_options_and_shapes, .timeout = 900)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    /* every combination of mask, pair and gate (masked rows with the mask), an explicit scale once */
    for (unsigned o = 0; o < 8; o++) {
        wl_case c = CASE(2, 2, 33, 2, 24, MCL_F32, o | (o & OPT_MASK ? OPT_MASKED_ROWS : 0));
        c.arg = o == 5 ? 0.3f : 0.0f;
        check_case(ctx, c, &rng, "default");
    }
    for (int dt = MCL_BF16; dt <= MCL_F16; dt++) {
        check_case(ctx, (wl_case)CASE(2, 2, 33, 2, 24, (mcl_dtype)dt, 0), &rng, "default");
        check_case(ctx, (wl_case)CASE(2, 2, 33, 2, 24, (mcl_dtype)dt, OPT_ALL), &rng, "default");
    }
    static const wl_case shapes[] = {
        CASE(1, 1, 1, 1, 1, MCL_F32, OPT_MASK | OPT_PAIR | OPT_GATE),
        CASE(2, 1, 1, 3, 3, MCL_F32, OPT_PAIR),
        CASE(2, 1, 7, 3, 3, MCL_F32, OPT_MASK | OPT_GATE),
        CASE(1, 3, 7, 2, 1, MCL_F32, OPT_MASK | OPT_PAIR | OPT_MASKED_ROWS),
        CASE(1, 3, 100, 2, 8, MCL_F32, OPT_MASK | OPT_PAIR | OPT_MASKED_ROWS),
        CASE(2, 1, 33, 1, 32, MCL_F32, OPT_PAIR | OPT_GATE),
        CASE(1, 3, 7, 2, 48, MCL_F32, OPT_ALL),
        CASE(2, 1, 100, 1, 64, MCL_F32, OPT_MASK | OPT_PAIR),
        CASE(1, 1, 33, 2, 256, MCL_F32, OPT_MASK | OPT_PAIR | OPT_GATE),
        CASE(1, 2, 7, 1, 130, MCL_F32, OPT_PAIR),
        /* AF3 at small scale: triangle (N = S, H = 4, D = 32), single (N = 1, H = 16, D = 64),
         * MSA rows (N > S, H = 8, D = 8) */
        CASE(1, 24, 24, 4, 32, MCL_F32, OPT_ALL),
        CASE(1, 24, 24, 4, 32, MCL_BF16, OPT_ALL),
        CASE(1, 1, 100, 16, 64, MCL_F32, OPT_MASK | OPT_PAIR),
        CASE(1, 1, 100, 16, 64, MCL_F16, OPT_MASK | OPT_PAIR),
        CASE(1, 40, 17, 8, 8, MCL_BF16, OPT_ALL),
        CASE(1, 40, 17, 8, 8, MCL_F16, OPT_ALL),
    };
    for (size_t i = 0; i < COUNT_OF(shapes); i++) check_case(ctx, shapes[i], &rng, "default");
    mcl_context_release(ctx);
}

/* Long sequences (the issue asks for S up to at least 8192): the row kernels at D = 8 and the
 * micro-tiled ones at D = 24, over many key and query tiles. */
Test(evoattn, long_sequences, .timeout = 900)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    check_case(ctx, (wl_case)CASE(1, 1, 8192, 1, 8, MCL_F32, OPT_MASK | OPT_PAIR), &rng, "default");
    check_case(ctx, (wl_case)CASE(1, 1, 4099, 1, 24, MCL_BF16, OPT_MASK | OPT_PAIR | OPT_GATE), &rng, "default");
    mcl_context_release(ctx);
}

/* Only some gradients requested: each one alone, and a few pairs. */
Test(evoattn, partial_gradients, .timeout = 600)
{
    static const unsigned requests[] = {WANT(DPAIR), WANT(DQ), WANT(DK), WANT(DV), WANT(DGATE), WANT(DMASK),
                                        WANT(DMASK) | WANT(DV), WANT(DQ) | WANT(DPAIR), WANT(DK) | WANT(DGATE)};
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (size_t r = 0; r < COUNT_OF(requests); r++) {
        wl_case c = CASE(2, 2, 33, 2, 24, MCL_F32, OPT_ALL);
        c.want = requests[r];
        check_case(ctx, c, &rng, "default");
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
    static const wl_case shapes[] = {
        CASE(1, 3, 70, 2, 24, MCL_F32, OPT_ALL),
        CASE(2, 1, 1, 3, 24, MCL_F32, OPT_MASK | OPT_PAIR),
        CASE(2, 2, 9, 4, 24, MCL_F32, OPT_PAIR | OPT_GATE),
        CASE(1, 5, 37, 3, 64, MCL_BF16, OPT_MASK | OPT_PAIR | OPT_MASKED_ROWS),
        CASE(1, 2, 33, 2, 44, MCL_F16, OPT_MASK | OPT_GATE),
    };
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (size_t v = 0; v < COUNT_OF(variants); v++) {
        assert_ok(mcl_context_set_params(ctx, "evoattn", variants[v]));
        for (size_t s = 0; s < COUNT_OF(shapes); s++) check_case(ctx, shapes[s], &rng, variants[v]);
    }
    assert_ok(mcl_context_set_params(ctx, "evoattn", NULL));
    mcl_context_release(ctx);
}

/* The tensor-core kernels (forward, dQ, dK/dV) against the reference, bf16, f16 and f32 in tf32:
 * 1, 2, 4 and 8
 * warps, key tiles of 16 to 128, head dims that fill no 16-wide fragment (D = 1, 8, 24, 44) or
 * two (64) and past the largest tiles' local memory (130: the portable kernels take over), S of
 * 1 and of no tile's multiple, every option with fully masked rows, and the AF3 shapes at small
 * scale; with mma.sync emulated (=2) on any device, and with the instruction (=1) where the
 * device's probe passed; d(pair bias) over chunks of N of one row and of several. */
Test(evoattn, tensor_core_kernels_match_reference, .timeout = 900)
{
    static const char *const variants[] = {
        "FWD_MMA=2,DQ_MMA=2,DKV_MMA=2",
        "FWD_MMA=2,FWD_MMA_WARPS=1,FWD_MMA_BK=16,DQ_MMA=2,DQ_MMA_WARPS=1,DQ_MMA_BK=16,DKV_MMA=2,DKV_MMA_WARPS=1,"
        "DKV_MMA_BQ=16,DPAIR_WAVES=16",
        "FWD_MMA=2,FWD_MMA_WARPS=2,FWD_MMA_BK=128,DQ_MMA=2,DQ_MMA_WARPS=2,DQ_MMA_BK=32,DKV_MMA=2,DKV_MMA_WARPS=2,"
        "DKV_MMA_BQ=64,DPAIR_WAVES=1",
        "FWD_MMA=1,DQ_MMA=1,DKV_MMA=1",
        "FWD_MMA=1,FWD_MMA_WARPS=1,FWD_MMA_BK=16,DQ_MMA=1,DQ_MMA_WARPS=1,DQ_MMA_BK=16,DKV_MMA=1,DKV_MMA_WARPS=1,"
        "DKV_MMA_BQ=16,DPAIR_WAVES=16",
        "FWD_MMA=1,FWD_MMA_WARPS=8,FWD_MMA_BK=32,DQ_MMA=1,DQ_MMA_WARPS=8,DQ_MMA_BK=32,DKV_MMA=1,DKV_MMA_WARPS=8,"
        "DKV_MMA_BQ=32",
    };
    static const wl_case shapes[] = {
        CASE(1, 1, 1, 1, 1, MCL_BF16, OPT_MASK | OPT_PAIR | OPT_GATE),
        CASE(2, 2, 33, 2, 24, MCL_BF16, OPT_ALL),
        CASE(1, 3, 70, 2, 44, MCL_F16, OPT_ALL),
        CASE(1, 5, 37, 3, 64, MCL_BF16, OPT_MASK | OPT_PAIR | OPT_MASKED_ROWS),
        CASE(1, 24, 24, 4, 32, MCL_BF16, OPT_ALL),
        CASE(1, 1, 100, 16, 64, MCL_F16, OPT_MASK | OPT_PAIR),
        CASE(1, 40, 17, 8, 8, MCL_BF16, OPT_ALL),
        CASE(1, 2, 7, 1, 130, MCL_F16, OPT_PAIR),
        CASE(2, 2, 33, 2, 24, MCL_F32, OPT_ALL), /* f32 in tf32 */
        CASE(1, 40, 17, 8, 8, MCL_F32, OPT_MASK | OPT_PAIR),
    };
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    int has_mma = mcl_context_device(ctx)->has_mma_sync;
    for (size_t v = 0; v < COUNT_OF(variants); v++) {
        if (strstr(variants[v], "MMA=1") && !has_mma) { /* the instruction is refused there */
            cr_expect_neq(mcl_context_set_params(ctx, "evoattn", variants[v]), MCL_OK, "%s without mma.sync",
                          variants[v]);
            continue;
        }
        assert_ok(mcl_context_set_params(ctx, "evoattn", variants[v]));
        for (size_t s = 0; s < COUNT_OF(shapes); s++) {
            assert_ok(mcl_context_allow_tf32(ctx, shapes[s].dtype == MCL_F32));
            check_case(ctx, shapes[s], &rng, variants[v]);
        }
    }
    assert_ok(mcl_context_allow_tf32(ctx, 0));
    assert_ok(mcl_context_set_params(ctx, "evoattn", NULL));
    mcl_context_release(ctx);
}

/* The tensor-core kernels take f32 calls in tf32 only where the context allows it. */
Test(evoattn, tf32_only_where_allowed, .timeout = 300)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    const char *variant = "FWD_MMA=2,DQ_MMA=2,DKV_MMA=2";
    assert_ok(mcl_context_set_params(ctx, "evoattn", variant));
    wl_case c = CASE(1, 2, 33, 2, 24, MCL_F32, OPT_ALL);
    test_tf32_only_where_allowed(ctx, &wl_evoattn, c, OUT, &rng, variant);
    test_tf32_only_where_allowed(ctx, &wl_evoattn, c, DQ, &rng, variant);
    test_tf32_only_where_allowed(ctx, &wl_evoattn, c, DK, &rng, variant);
    mcl_context_release(ctx);
}

/* Forward and backward twice on the same inputs: every output byte identical. */
Test(evoattn, results_are_bitwise_identical_on_repeat)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    test_repeat_is_bitwise(ctx, &wl_evoattn, (wl_case)CASE(1, 3, 70, 2, 24, MCL_F32, OPT_ALL), WL_OFF_ZERO, &rng,
                           "default");
    mcl_context_release(ctx);
}

/* Every output of `at` holds the bytes of base's (the same case and inputs at offset 0). */
static void expect_same_results(const wl_problem *base, const wl_problem *at)
{
    for (int i = OUT; i < COUNT; i++) {
        const wl_tensor *t = &at->t[i];
        if (!wl_has(at, i)) continue;
        cr_expect_eq(memcmp(t->values, base->t[i].values, t->count * sizeof *t->values), 0,
                     "%s %s at offsets %s differs from offset 0", wl_evoattn.tensors[i].name,
                     mcl_dtype_name(at->c.dtype), wl_offset_names[at->offsets]);
    }
}

/* Nonzero tensor offsets take the scalar path (odd ones) or keep the vector one (multiples of
 * 8): every placement must match the reference with no byte outside the tensors written, and
 * give the offset-0 results bit for bit. */
Test(evoattn, tensors_at_offsets_match_and_stay_in_bounds, .timeout = 600)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (int bf16 = 0; bf16 < 2; bf16++) {
        wl_case c = CASE(1, 3, 37, 2, 32, bf16 ? MCL_BF16 : MCL_F32, OPT_ALL);
        const host_rng inputs = rng; /* every placement draws the inputs base is drawn from */
        wl_problem *base = run_checked(ctx, c, WL_OFF_ZERO, &rng, "default");
        for (int offsets = WL_OFF_VEC; offsets < WL_OFF_MODES; offsets++) {
            host_rng same = inputs;
            wl_problem *p = run_checked(ctx, c, offsets, &same, "default");
            expect_same_results(base, p);
            wl_destroy(p);
        }
        wl_destroy(base);
    }
    mcl_context_release(ctx);
}

/* ---- the reference itself ------------------------------------------------------------- */

/* The inputs of case c as the workload draws them, on the host only. */
static wl_problem *host_inputs(wl_case c, host_rng *rng)
{
    wl_problem *p = NULL;
    mcl_status status = wl_create(&wl_evoattn, NULL, &c, rng, &p);
    cr_assert_eq(status, MCL_OK, "drawing inputs: %s", wl_last_error());
    return p;
}

static ref_evoattn_problem ref_problem_of(const wl_problem *w, int with_dout)
{
    const size_t *s = w->c.shape;
    const wl_tensor *t = w->t;
    return (ref_evoattn_problem){s[0], s[1], s[2], s[3], s[4], ref_evoattn_scale(s[4], (float)w->c.arg),
                                 t[Q].values, t[K].values, t[V].values, t[MASK].values, t[PAIR].values,
                                 t[GATE].values, with_dout ? t[DOUT].values : NULL};
}

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
    wl_problem *w = host_inputs((wl_case)CASE(2, 3, 6, 2, 5, MCL_F32, OPT_ALL), &rng);
    float *q = w->t[Q].values, *k = w->t[K].values, *v = w->t[V].values, *gate = w->t[GATE].values;
    float *mask = w->t[MASK].values, *pair = w->t[PAIR].values, *dout = w->t[DOUT].values;
    const size_t S = w->c.shape[2], t = w->t[Q].count, nm = w->t[MASK].count, np = w->t[PAIR].count;
    mask[S + 3] = -1e9f; /* removed keys inside rows that keep others */
    mask[2 * S + 1] = -INFINITY;
    mask[2 * S + 4] = MCL_EVOATTN_MASKED;
    double *dq = malloc(t * sizeof *dq), *dk = malloc(t * sizeof *dk), *dv = malloc(t * sizeof *dv);
    double *dg = malloc(t * sizeof *dg), *dm = malloc(nm * sizeof *dm), *dp = malloc(np * sizeof *dp);
    for (int variant = 0; variant < 3; variant++) {
        /* 0: gated, default scale; 1: ungated, scale 0.7; 2: ungated, no mask, no pair */
        ref_evoattn_problem p = ref_problem_of(w, 1);
        if (variant > 0) p.gate = NULL;
        if (variant == 1) p.scale = ref_evoattn_scale(w->c.shape[4], 0.7f);
        if (variant == 2) p.mask = NULL, p.pair = NULL;
        cr_assert_eq(ref_evoattn_backward(&p, dq, dk, dv, dg, dm, dp), 0);
        const double tol = 1e-6;
        struct { const char *name; float *x; size_t n; const double *an; const float *skip; } g[] = {
            {"q", q, t, dq, NULL}, {"k", k, t, dk, NULL}, {"v", v, t, dv, NULL},
            {"gate", gate, t, dg, NULL}, {"mask", mask, nm, dm, mask}, {"pair", pair, np, dp, NULL}};
        for (size_t i = 0; i < COUNT_OF(g); i++) {
            if ((i == 3 && !p.gate) || (i == 4 && !p.mask) || (i == 5 && !p.pair)) continue;
            double err = fd_error(&p, g[i].x, g[i].n, g[i].an, dout, t, g[i].skip);
            cr_expect_leq(err, tol, "variant %d: d%s differs from finite differences by %.3g", variant,
                          g[i].name, err);
        }
    }
    free(dq), free(dk), free(dv), free(dg), free(dm), free(dp);
    wl_destroy(w);
}

/* dS rows sum to 0 (so do dmask and the rows of dpair); fully masked rows give O = 0,
 * lse = -inf and zero gradients; probabilities sum to 1; d lse / d s = P. */
Test(evoattn, reference_invariants)
{
    host_rng rng = host_rng_seeded(test_seed());
    wl_problem *w = host_inputs((wl_case)CASE(2, 3, 9, 2, 4, MCL_F32, OPT_ALL), &rng);
    const size_t B = w->c.shape[0], N = w->c.shape[1], S = w->c.shape[2], H = w->c.shape[3], D = w->c.shape[4];
    ref_evoattn_problem p = ref_problem_of(w, 1);
    ref_evoattn_row row, row2;
    cr_assert_eq(ref_evoattn_row_alloc(&row, S, D), 0);
    cr_assert_eq(ref_evoattn_row_alloc(&row2, S, D), 0);
    size_t all_masked = 0;
    for (size_t b = 0; b < B; b++)
        for (size_t n = 0; n < N; n++)
            for (size_t h = 0; h < H; h++)
                for (size_t i = 0; i < S; i++) {
                    ref_evoattn_row_compute(&p, b, n, h, i, &row);
                    double sum = 0.0, abs = 0.0, psum = 0.0;
                    for (size_t j = 0; j < S; j++) sum += row.ds[j], abs += fabs(row.ds[j]), psum += row.p[j];
                    if (row.all_masked) {
                        all_masked++;
                        cr_expect(isinf(row.lse) && row.lse < 0, "fully masked row: lse %g", row.lse);
                        cr_expect_eq(abs, 0.0);
                        cr_expect_eq(psum, 0.0);
                        for (size_t d = 0; d < D; d++) {
                            cr_expect_eq(row.o[d], 0.0);
                            cr_expect_eq(row.y[d], 0.0);
                            cr_expect_eq(row.dg[d], 0.0);
                        }
                        continue;
                    }
                    cr_expect_leq(fabs(sum), 1e-13 * abs, "dS row sum %g (sum|dS| %g)", sum, abs);
                    cr_expect_leq(fabs(psum - 1.0), 1e-14);
                    /* d lse / d pair_ij = P_ij, by central differences */
                    float *pij = &w->t[PAIR].values[((b * H + h) * S + i) * S];
                    for (size_t j = 0; j < S && b == 0 && n == 0 && h == 0; j++) {
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
    cr_expect_eq(all_masked, 2 * H * S, "two (b, n) rows of keys are fully masked");
    /* S = 1: O = v, lse = s */
    wl_case one = CASE(1, 1, 1, 1, 3, MCL_F32, 0);
    one.arg = 0.5;
    wl_problem *w1 = host_inputs(one, &rng);
    ref_evoattn_problem p1 = ref_problem_of(w1, 0);
    ref_evoattn_row_compute(&p1, 0, 0, 0, 0, &row);
    double dot = 0.0;
    for (size_t d = 0; d < 3; d++) dot += (double)p1.q[d] * p1.k[d];
    cr_expect_leq(fabs(row.lse - 0.5 * dot), 1e-15);
    for (size_t d = 0; d < 3; d++) cr_expect_leq(fabs(row.o[d] - p1.v[d]), 1e-15);
    /* dmask and dpair rows of the full backward sum to 0 */
    size_t nm = w->t[MASK].count, np = w->t[PAIR].count;
    double *dm = malloc(nm * sizeof *dm), *dp = malloc(np * sizeof *dp);
    cr_assert_eq(ref_evoattn_backward(&p, NULL, NULL, NULL, NULL, dm, dp), 0);
    for (size_t r = 0; r < B * N; r++) {
        double sum = 0.0, abs = 0.0;
        for (size_t j = 0; j < S; j++) sum += dm[r * S + j], abs += fabs(dm[r * S + j]);
        cr_expect_leq(fabs(sum), 1e-13 * abs + 1e-300);
    }
    for (size_t r = 0; r < B * H * S; r++) {
        double sum = 0.0, abs = 0.0;
        for (size_t j = 0; j < S; j++) sum += dp[r * S + j], abs += fabs(dp[r * S + j]);
        cr_expect_leq(fabs(sum), 1e-13 * abs + 1e-300);
    }
    free(dm), free(dp);
    ref_evoattn_row_free(&row), ref_evoattn_row_free(&row2);
    wl_destroy(w), wl_destroy(w1);
}

/* ---- bad inputs: a specific status, a message, and outputs left untouched ------------------ */

enum { BAD_B = 1, BAD_N = 2, BAD_S = 8, BAD_H = 2, BAD_D = 16 };
enum {
    BAD_T = BAD_B * BAD_N * BAD_S * BAD_H * BAD_D, /* elements of q, k, v, gate, out, ... */
    BAD_M = BAD_B * BAD_N * BAD_S,
    BAD_P = BAD_B * BAD_H * BAD_S * BAD_S,
    BAD_L = BAD_B * BAD_N * BAD_H * BAD_S,
};

typedef struct evo_bad {
    TEST_BAD_FIXTURE_OF(evoattn);
    cl_mem q, k, v, mask, pair, gate, saved_out, saved_lse, dout; /* inputs */
    cl_mem out, gated, lse, dq, dk, dv, dg, dmask, dpair, small;  /* outputs */
} evo_bad;

static evo_bad bad_setup(void)
{
    evo_bad f = {.b = test_bad_buffers_start("evoattn")};
    cl_mem *inputs[] = {&f.q, &f.k, &f.v, &f.gate, &f.saved_out, &f.dout};
    for (size_t i = 0; i < COUNT_OF(inputs); i++) *inputs[i] = test_bad_buffer(&f.b, BAD_T * 4, TEST_IN_BYTE);
    f.mask = test_bad_buffer(&f.b, BAD_M * 4, TEST_IN_BYTE);
    f.pair = test_bad_buffer(&f.b, BAD_P * 4, TEST_IN_BYTE);
    f.saved_lse = test_bad_buffer(&f.b, BAD_L * 4, TEST_IN_BYTE);
    cl_mem *outs[] = {&f.out, &f.gated, &f.dq, &f.dk, &f.dv, &f.dg};
    for (size_t i = 0; i < COUNT_OF(outs); i++) *outs[i] = test_bad_buffer(&f.b, BAD_T * 4, TEST_OUT_BYTE);
    f.lse = test_bad_buffer(&f.b, BAD_L * 4, TEST_OUT_BYTE);
    f.dmask = test_bad_buffer(&f.b, BAD_M * 4, TEST_OUT_BYTE);
    f.dpair = test_bad_buffer(&f.b, BAD_P * 4, TEST_OUT_BYTE);
    f.small = test_bad_buffer(&f.b, 64, TEST_OUT_BYTE);
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

/* Descriptor faults, forward and backward alike: the fixture's descriptor with one field bad. */
static const TEST_DESC_FAULT(mcl_evoattn_desc) desc_faults[] = {
    {{BAD_B, BAD_N, BAD_S, BAD_H, 0, MCL_F32, 0.0f}, MCL_ERR_INVALID_SIZE, NULL, "zero D"},
    {{BAD_B, BAD_N, 0, BAD_H, BAD_D, MCL_F32, 0.0f}, MCL_ERR_INVALID_SIZE, NULL, "zero S"},
    {{0, BAD_N, BAD_S, BAD_H, BAD_D, MCL_F32, 0.0f}, MCL_ERR_INVALID_SIZE, NULL, "zero B"},
    {{BAD_B, 0, BAD_S, BAD_H, BAD_D, MCL_F32, 0.0f}, MCL_ERR_INVALID_SIZE, NULL, "zero N"},
    {{BAD_B, BAD_N, BAD_S, 0, BAD_D, MCL_F32, 0.0f}, MCL_ERR_INVALID_SIZE, NULL, "zero H"},
    {{BAD_B, BAD_N, BAD_S, BAD_H, 257, MCL_F32, 0.0f}, MCL_ERR_INVALID_SIZE, NULL, "D = 257"},
    {{BAD_B, BAD_N, BAD_S, BAD_H, BAD_D, (mcl_dtype)7, 0.0f}, MCL_ERR_UNSUPPORTED_DTYPE, NULL, "unknown dtype"},
    {{BAD_B, BAD_N, BAD_S, BAD_H, BAD_D, MCL_F32, -0.5f}, MCL_ERR_INVALID_ARGUMENT, NULL, "negative scale"},
    {{BAD_B, BAD_N, BAD_S, BAD_H, BAD_D, MCL_F32, NAN}, MCL_ERR_INVALID_ARGUMENT, NULL, "NaN scale"},
    {{SIZE_MAX / 4, 4, BAD_S, BAD_H, BAD_D, MCL_F32, 0.0f}, MCL_ERR_SIZE_OVERFLOW, NULL, "element count overflow"},
};

/* Faults of tensors both passes take, in the tensors t of a pass's calls. */
#define FAULTS_OF_BOTH_PASSES(t)                                                                 \
    {"small q", MCL_ERR_BUFFER_TOO_SMALL, "buffer holds 64 bytes", {{&(t).q, {f.small, 0}}}},    \
    /* [B, N, S] where [B, H, S, S] is needed */                                                 \
    {"pair sized for the wrong shape", MCL_ERR_BUFFER_TOO_SMALL, "pair", {{&(t).pair, {f.mask, 0}}}}, \
    {"small lse", MCL_ERR_BUFFER_TOO_SMALL, "lse", {{&(t).lse, {f.small, 0}}}}

/* Every refused call of the forward and the backward, no buffer touched. */
Test(evoattn, bad_inputs)
{
    evo_bad f = bad_setup();
    mcl_evoattn_fwd_tensors ft;
    const test_required fwd_required[] = {TEST_REQUIRED(ft, q), TEST_REQUIRED(ft, k), TEST_REQUIRED(ft, v),
                                          TEST_REQUIRED(ft, out)};
    const test_tensor_fault fwd_faults[] = {
        FAULTS_OF_BOTH_PASSES(ft),
        {"q past its buffer", MCL_ERR_BUFFER_TOO_SMALL, "from offset 4", {{&ft.q, {f.q, 4}}}},
        {"mask past its buffer", MCL_ERR_BUFFER_TOO_SMALL, "mask", {{&ft.mask, {f.mask, 8}}}},
        {"misaligned offset", MCL_ERR_INVALID_ARGUMENT, "not a multiple", {{&ft.out, {f.out, 2}}}},
        {"gate without gated output", MCL_ERR_INVALID_ARGUMENT, "gate is given without gated",
         {TEST_LEFT_OUT(ft, gated)}},
        {"gated output without gate", MCL_ERR_INVALID_ARGUMENT, "gated is given without gate",
         {TEST_LEFT_OUT(ft, gate)}},
        {"lse over out", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&ft.lse, {f.out, 0}}}},
        {"gated over out", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&ft.gated, {f.out, 0}}}},
        {"out over q", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&ft.out, {f.q, 0}}}},
    };
    mcl_evoattn_bwd_tensors bt;
    const test_required bwd_required[] = {TEST_REQUIRED(bt, q),   TEST_REQUIRED(bt, k),   TEST_REQUIRED(bt, v),
                                          TEST_REQUIRED(bt, out), TEST_REQUIRED(bt, lse), TEST_REQUIRED(bt, dout)};
    const test_tensor_fault bwd_faults[] = {
        {"no output requested", MCL_ERR_INVALID_ARGUMENT, "no output requested (dq, dk, dv, dgate, dmask, dpair)",
         {TEST_LEFT_OUT(bt, dq), TEST_LEFT_OUT(bt, dk), TEST_LEFT_OUT(bt, dv), TEST_LEFT_OUT(bt, dgate),
          TEST_LEFT_OUT(bt, dmask), TEST_LEFT_OUT(bt, dpair)}},
        {"dgate without gate", MCL_ERR_INVALID_ARGUMENT, "dgate is given without gate", {TEST_LEFT_OUT(bt, gate)}},
        {"dmask without mask", MCL_ERR_INVALID_ARGUMENT, "dmask is given without mask", {TEST_LEFT_OUT(bt, mask)}},
        {"dpair without pair", MCL_ERR_INVALID_ARGUMENT, "dpair is given without pair", {TEST_LEFT_OUT(bt, pair)}},
        FAULTS_OF_BOTH_PASSES(bt),
        {"small dpair", MCL_ERR_BUFFER_TOO_SMALL, "dpair", {{&bt.dpair, {f.dmask, 0}}}},
        {"dk over dq", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&bt.dk, {f.dq, 0}}}},
        {"dq over q", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&bt.dq, {f.q, 0}}}},
        {"dv past the end of dq's buffer", MCL_ERR_BUFFER_TOO_SMALL, NULL, {{&bt.dv, {f.dq, 4 * 8}}}},
    };
    EXPECT_REFUSED_CALLS(&f.b, mcl_evoattn_forward, f.desc, f.ft, ft, desc_faults, fwd_required, fwd_faults);
    EXPECT_REFUSED_CALLS(&f.b, mcl_evoattn_backward, f.desc, f.bt, bt, desc_faults, bwd_required, bwd_faults);
    test_bad_buffers_release(&f.b);
}

/* The backward takes exactly the workspace its size function reports (test_run checks it); the
 * size function rejects missing arguments and a bad descriptor; forward and backward return
 * their events (on the fixture's tensors, which are valid as they stand). */
Test(evoattn, event_and_workspace_size)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    check_case(ctx, (wl_case)CASE(1, 4, 50, 2, 24, MCL_F32, OPT_MASK | OPT_PAIR), &rng, "default");
    mcl_context_release(ctx);

    evo_bad f = bad_setup();
    size_t bytes = (size_t)-1;
    assert_ok(mcl_evoattn_backward_workspace_size(f.b.ctx, &f.desc, &f.bt, &bytes));
    cr_assert_neq(bytes, (size_t)-1, "workspace size was not written");
    assert_status(mcl_evoattn_backward_workspace_size(NULL, &f.desc, &f.bt, &bytes), MCL_ERR_NULL_POINTER);
    assert_status(mcl_evoattn_backward_workspace_size(f.b.ctx, NULL, &f.bt, &bytes), MCL_ERR_NULL_POINTER);
    assert_status(mcl_evoattn_backward_workspace_size(f.b.ctx, &f.desc, NULL, &bytes), MCL_ERR_NULL_POINTER);
    assert_status(mcl_evoattn_backward_workspace_size(f.b.ctx, &f.desc, &f.bt, NULL), MCL_ERR_NULL_POINTER);
    mcl_evoattn_desc bad = f.desc;
    bad.head_dim = 0;
    assert_status(mcl_evoattn_backward_workspace_size(f.b.ctx, &bad, &f.bt, &bytes), MCL_ERR_INVALID_SIZE);

    cl_event event = NULL;
    assert_ok(mcl_evoattn_forward(f.b.ctx, &f.desc, &f.ft, &event));
    test_wait_event(event);
    assert_ok(mcl_context_trim(f.b.ctx));
    mcl_context_reset_peak(f.b.ctx);
    event = NULL;
    assert_ok(mcl_evoattn_backward(f.b.ctx, &f.desc, &f.bt, &event));
    test_wait_event(event);
    mcl_context_stats stats;
    mcl_context_get_stats(f.b.ctx, &stats);
    cr_assert_geq(stats.workspace_peak_bytes, bytes, "backward held %llu workspace bytes, size says %zu",
                  (unsigned long long)stats.workspace_peak_bytes, bytes);
    test_bad_buffers_release(&f.b);
}
