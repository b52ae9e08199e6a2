/* Triangle multiplicative update forward and backward against the double-precision reference
 * (the trimul workload, tests/workload/trimul.c): every dtype, both directions, with and without
 * the mask and the LayerNorms' weights and biases, shapes that fill no tile, each backward
 * output alone, tensors inside larger buffers (poison and guard bytes checked), parameter
 * variants, determinism, workspace sizes and bad inputs; and the reference's own backward
 * against finite differences. */
#include "common.h"

#include "ref/trimul_ref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* The workload's tensors, and the bit of each gradient in a case's want. */
enum { T_Z, T_MASK, T_LN_IN_WEIGHT, T_LN_IN_BIAS, T_W_IN, T_LN_OUT_WEIGHT, T_LN_OUT_BIAS, T_W_OUT, T_DOUT,
       T_OUT, T_T, T_MEAN_IN, T_RSTD_IN, T_MEAN_OUT, T_RSTD_OUT,
       T_DZ, T_DLN_IN_WEIGHT, T_DLN_IN_BIAS, T_DW_IN, T_DLN_OUT_WEIGHT, T_DLN_OUT_BIAS, T_DW_OUT, T_COUNT };
#define WANT(t) (1u << ((t) - T_DZ))
static const char *const names[T_COUNT] = {
    "z", "mask", "ln_in_weight", "ln_in_bias", "w_in", "ln_out_weight", "ln_out_bias", "w_out", "dout",
    "out", "t", "mean_in", "rstd_in", "mean_out", "rstd_out",
    "dz", "dln_in_weight", "dln_in_bias", "dw_in", "dln_out_weight", "dln_out_bias", "dw_out"};
/* Which LayerNorms get their weight and bias. */
enum { LN_IN = 1, LN_OUT = 2 };

typedef struct tm_case {
    size_t n, c, h;
    mcl_dtype dtype;
    mcl_trimul_direction direction;
    int mask;      /* given */
    int ln;        /* LN_IN | LN_OUT: weights and biases given */
    unsigned want; /* backward outputs */
    int offsets;   /* WL_OFF_* */
} tm_case;

/* The workload's option bits: incoming, the mask, then LN_IN and LN_OUT as above. */
enum { INCOMING = 1, MASK = 2, LN_SHIFT = 2 };

static wl_case workload_case(tm_case c)
{
    unsigned options = (c.direction == MCL_TRIMUL_INCOMING ? INCOMING : 0u) | (c.mask ? MASK : 0u) |
                       (unsigned)c.ln << LN_SHIFT;
    return (wl_case){{c.n, c.c, c.h}, c.dtype, options, c.want, 0};
}

/* Runs the forward and then the backward, each from an empty workspace (within what
 * mcl_trimul_workspace_size reports, which is more than none: exactly that for the forward and
 * for every gradient), and checks every output against the reference and every buffer's poison
 * around its tensor. */
static void check_case(mcl_context *ctx, tm_case c, host_rng *rng, const char *variant)
{
    wl_problem *p = test_problem(ctx, &wl_trimul, workload_case(c), c.offsets, rng);
    char label[320];
    test_label(p, variant, label, sizeof label);
    size_t fwd_ws = 0, bwd_ws = 0;
    int backward_exact = 0;
    assert_ok(wl_trimul.workspace(p, &fwd_ws, &bwd_ws, &backward_exact));
    cr_expect(fwd_ws > 0 && bwd_ws > 0, "%s: workspace sizes %zu, %zu", label, fwd_ws, bwd_ws);
    test_run(p, variant);
    wl_destroy(p);
}

/* ---- correctness ------------------------------------------------------------------------ */

/* Shapes and dtypes: N in {1, 2, 7, 20}, c in {1, 3, 8}, h in {1, 4, 6} (sizes of 1 and
 * multiples of no tile) and an AF3-like shape at small scale, a few per dtype: every shape
 * compiles its own kernel configurations per dtype, and PoCL takes a while over each. c = 1
 * with N > 1 runs in f32 only: there p = LN(z) W_in is the same in every row, so in 16 bits
 * every row's rounding errs alike and the sums over rows (dw_in, dln_in_*) add their errors
 * up linearly, beyond any rounding tolerance. */
static const struct {
    size_t n, c, h;
    mcl_dtype dtype;
} shapes[] = {
    {1, 1, 1, MCL_F32},     {7, 1, 4, MCL_F32}, {20, 3, 6, MCL_F32}, {2, 8, 4, MCL_BF16},
    {24, 16, 16, MCL_BF16}, {7, 3, 1, MCL_F16}, {20, 8, 6, MCL_F16},
};

/* A case of shapes[s]: the options as given. */
static tm_case case_of(size_t s, mcl_trimul_direction direction, int mask, int ln, unsigned want, int offsets)
{
    return (tm_case){shapes[s].n, shapes[s].c, shapes[s].h, shapes[s].dtype, direction, mask, ln, want, offsets};
}

/* Each shape twice, all outputs: the direction and the mask cycle so that every dtype sees
 * each direction with and without the mask; the LayerNorms' parameters and the offsets cycle
 * too. */
Test(trimul, matches_reference_over_shapes_dtypes_directions_and_masks, .timeout = 300)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    size_t j[3] = {0};
    for (size_t i = 0; i < 2 * COUNT_OF(shapes); i++) {
        size_t dt = (size_t)shapes[i / 2].dtype, k = j[dt]++;
        tm_case c = case_of(i / 2, (mcl_trimul_direction)(k % 2), (int)(k / 2 % 2), (int)((k + dt) % 4), WL_ALL,
                            (int)((k + dt) % WL_OFF_MODES));
        check_case(ctx, c, &rng, "default");
    }
    mcl_context_release(ctx);
}

/* Each backward output requested alone (the others absent): f32 and bf16, both directions. */
Test(trimul, each_backward_output_alone, .timeout = 300)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (int t = T_DZ; t < T_COUNT; t++)
        for (size_t s = 2; s <= 4; s += 2) {
            tm_case c = case_of(s, (mcl_trimul_direction)((t + s / 2) % 2), 1, LN_IN | LN_OUT, WANT(t),
                                (t + (int)s) % WL_OFF_MODES);
            check_case(ctx, c, &rng, names[t]);
        }
    mcl_context_release(ctx);
}

/* 16 x 16 tiles over 8 waves: the weight gradients' GEMMs (K = N^2) split K into partials. */
#define SPLIT_VARIANT "BM=16,BN=16,BK=4,TM=1,TN=2,SPLIT_WAVES=8,PREFETCH=0"

/* Variants of the parameter space besides the tables' choice must be correct too, the tensor
 * cores (emulated) among them: the projections' LayerNorm rounded to the storage type, the
 * batched k-sum on stored values. */
Test(trimul, parameter_variants_are_correct, .timeout = 300)
{
    static const char *const variants[] = {SPLIT_VARIANT, "BM=32,BN=64,BK=8,TM=4,TN=8,SPLIT_WAVES=4",
                                           "MMA=2,BM=32,BN=32,BK=16,TM=4,TN=4", "MMA=2,BM=64,BN=32,BK=16,TM=4,TN=4"};
    static const tm_case cases[] = {
        {24, 16, 16, MCL_F16, MCL_TRIMUL_INCOMING, 1, LN_IN | LN_OUT, WL_ALL, WL_OFF_ODD},
        {7, 3, 6, MCL_BF16, MCL_TRIMUL_OUTGOING, 0, LN_OUT, WL_ALL, WL_OFF_MIXED},
        {24, 16, 16, MCL_BF16, MCL_TRIMUL_OUTGOING, 1, LN_IN | LN_OUT, WL_ALL, WL_OFF_VEC},
        {20, 8, 6, MCL_F16, MCL_TRIMUL_INCOMING, 1, LN_IN | LN_OUT, WL_ALL, WL_OFF_MIXED},
    };
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (size_t v = 0; v < COUNT_OF(variants); v++) {
        assert_ok(mcl_context_set_params(ctx, "gemm", variants[v]));
        check_case(ctx, cases[v], &rng, variants[v]);
    }
    mcl_context_release(ctx);
}

/* The triangle core runs a chunk of channels at a time: h beyond one chunk, with a last chunk
 * smaller than the others, at the default CHUNK (32) and at CHUNK=8; and the bytes repeat. */
Test(trimul, chunks_of_channels_are_correct, .timeout = 300)
{
    static const char *const chunks[] = {NULL, NULL, "CHUNK=8", "CHUNK=8"};
    static const tm_case cases[] = {
        {6, 5, 40, MCL_F32, MCL_TRIMUL_INCOMING, 1, LN_IN | LN_OUT, WL_ALL, WL_OFF_ODD},
        {5, 4, 37, MCL_BF16, MCL_TRIMUL_OUTGOING, 1, LN_IN, WL_ALL, WL_OFF_MIXED},
        {9, 5, 20, MCL_F32, MCL_TRIMUL_OUTGOING, 1, LN_IN | LN_OUT, WL_ALL, WL_OFF_ZERO},
        {12, 8, 20, MCL_F16, MCL_TRIMUL_INCOMING, 0, LN_OUT, WL_ALL, WL_OFF_VEC},
    };
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (size_t v = 0; v < COUNT_OF(cases); v++) {
        assert_ok(mcl_context_set_params(ctx, "trimul", chunks[v]));
        host_rng again = rng;
        const char *label = chunks[v] ? chunks[v] : "default";
        test_repeat_is_bitwise(ctx, &wl_trimul, workload_case(cases[v]), cases[v].offsets, &rng, label);
        check_case(ctx, cases[v], &again, label);
    }
    mcl_context_release(ctx);
}

/* Forward and backward twice on the same inputs, default and split parameters: every output's
 * bytes must be identical; and a third run on those inputs against the reference. */
Test(trimul, results_are_bitwise_identical_on_repeat, .timeout = 300)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    static const char *const variants[] = {NULL, SPLIT_VARIANT};
    static const tm_case cases[] = {
        {20, 8, 6, MCL_F16, MCL_TRIMUL_OUTGOING, 1, LN_IN | LN_OUT, WL_ALL, WL_OFF_MIXED},
        {24, 16, 16, MCL_F16, MCL_TRIMUL_INCOMING, 1, LN_IN | LN_OUT, WL_ALL, WL_OFF_MIXED},
    };
    for (int v = 0; v < 2; v++) {
        assert_ok(mcl_context_set_params(ctx, "gemm", variants[v]));
        host_rng again = rng;
        test_repeat_is_bitwise(ctx, &wl_trimul, workload_case(cases[v]), cases[v].offsets, &rng, variants[v]);
        check_case(ctx, cases[v], &again, variants[v] ? variants[v] : "default");
    }
    mcl_context_release(ctx);
}

/* ---- the reference itself ------------------------------------------------------------- */

/* L = sum dout . out by the reference forward (from z: p and t not given) */
static double functional(const ref_trimul_problem *p, double *out)
{
    ref_trimul_forward(p, out, NULL, NULL, NULL, NULL, NULL, NULL);
    double l = 0.0;
    for (size_t i = 0; i < p->n * p->n * p->c; i++) l += p->dout[i] * out[i];
    return l;
}

/* ||finite differences of L over v's n elements - analytic|| / ||analytic||: fourth-order
 * central differences with a step of 2^-12. The inputs are multiples of 2^-16 below 4 in
 * magnitude, so every perturbed value is exact in fp32; the forward is all double, so the
 * truncation (~ step^4) bounds the error. */
static double fd_error(const ref_trimul_problem *p, float *v, size_t n, const double *an)
{
    static const float steps[] = {1.0f / 4096, -1.0f / 4096, 1.0f / 2048, -1.0f / 2048};
    static const double weights[] = {8.0, -8.0, -1.0, 1.0};
    double *out = malloc(p->n * p->n * p->c * sizeof *out), diff = 0.0, norm = 0.0;
    for (size_t e = 0; e < n; e++) {
        float v0 = v[e];
        double fd = 0.0;
        for (int s = 0; s < 4; s++) {
            v[e] = v0 + steps[s];
            fd += weights[s] * functional(p, out);
        }
        v[e] = v0;
        fd /= 12.0 * (double)steps[0];
        diff += (fd - an[e]) * (fd - an[e]);
        norm += an[e] * an[e];
    }
    free(out);
    cr_assert_gt(norm, 0.0);
    return sqrt(diff / norm);
}

/* n uniform values in [lo, hi) rounded to multiples of 2^-16 */
static void fd_fill(host_rng *rng, float *v, size_t n, float lo, float hi)
{
    host_fill_uniform(rng, v, n, lo, hi);
    for (size_t i = 0; i < n; i++) v[i] = roundf(v[i] * 65536.0f) / 65536.0f;
}

/* The analytic backward against the forward on a tiny shape, both directions, with the mask
 * and every LayerNorm parameter (h = 4: over 2 channels LN(t) is +-1 whatever t, and its
 * gradient nearly 0). */
Test(trimul, reference_matches_finite_differences)
{
    enum { N = 3, C = 4, H = 4, W = 4 * H + C, NP = N * N };
    host_rng rng = host_rng_seeded(test_seed());
    float z[NP * C], mask[NP], lniw[C], lnib[C], w_in[C * W], lnow[H], lnob[H], w_out[H * C], dout[NP * C];
    fd_fill(&rng, z, NP * C, -2, 3), fd_fill(&rng, lniw, C, 0.5f, 1.5f), fd_fill(&rng, lnib, C, -0.5f, 0.5f);
    fd_fill(&rng, w_in, C * W, -1, 1), fd_fill(&rng, lnow, H, 0.5f, 1.5f), fd_fill(&rng, lnob, H, -0.5f, 0.5f);
    fd_fill(&rng, w_out, H * C, -1, 1), fd_fill(&rng, dout, NP * C, -1, 1);
    for (int i = 0; i < NP; i++) mask[i] = i % 4 == 1 ? 0.0f : 1.0f;
    for (int dir = MCL_TRIMUL_OUTGOING; dir <= MCL_TRIMUL_INCOMING; dir++) {
        ref_trimul_problem p = {N, C, H, 1e-5, (mcl_trimul_direction)dir, z, w_in, w_out, mask, lniw, lnib, lnow,
                                lnob, NULL, NULL, dout};
        double dz[NP * C], dlniw[C], dlnib[C], dw_in[C * W], dlnow[H], dlnob[H], dw_out[H * C];
        ref_trimul_backward(&p, &(ref_trimul_grads){dz, dlniw, dlnib, dw_in, dlnow, dlnob, dw_out});
        struct { const char *name; float *v; size_t n; const double *an; } g[] = {
            {"z", z, NP * C, dz}, {"ln_in_weight", lniw, C, dlniw}, {"ln_in_bias", lnib, C, dlnib},
            {"w_in", w_in, C * W, dw_in}, {"ln_out_weight", lnow, H, dlnow}, {"ln_out_bias", lnob, H, dlnob},
            {"w_out", w_out, H * C, dw_out}};
        for (size_t i = 0; i < COUNT_OF(g); i++) {
            double err = fd_error(&p, g[i].v, g[i].n, g[i].an);
            cr_expect_leq(err, 1e-5, "direction %d: d%s differs from finite differences by %.3g", dir, g[i].name,
                          err);
        }
    }
}

/* ---- workspace sizes -------------------------------------------------------------------- */

Test(trimul, workspace_sizes_are_positive)
{
    mcl_context *ctx = test_context();
    for (int dir = MCL_TRIMUL_OUTGOING; dir <= MCL_TRIMUL_INCOMING; dir++) {
        mcl_trimul_desc desc = {7, 3, 6, MCL_BF16, 1e-5f, (mcl_trimul_direction)dir};
        size_t fwd = 0, bwd = 0;
        assert_ok(mcl_trimul_workspace_size(ctx, &desc, &fwd, &bwd));
        cr_expect_gt(fwd, 0, "direction %d: no forward workspace reported", dir);
        cr_expect_gt(bwd, 0, "direction %d: no backward workspace reported", dir);
    }
    mcl_context_release(ctx);
}

/* ---- bad inputs: a specific status, a message, and no buffer touched ------------------------ */

enum { BN = 2, BC = 3, BH = 2 };
/* f32, w = 4 BH + BC = 11. inputs: z [2,2,3] @0, mask [2,2] @48, ln_in_weight [3] @64, ln_in_bias
 * [3] @80, w_in [3,11] @96, ln_out_weight [2] @240, ln_out_bias [2] @256, w_out [2,3] @272,
 * dout [2,2,3] @304 (352 bytes); forward outputs: out [2,2,3] @0, t [2,2,2] @224,
 * mean_in @256, rstd_in @272, mean_out @288, rstd_out @304; gradients: dz [2,2,3] @320,
 * dln_in_weight [3] @368, dln_in_bias [3] @384, dw_in [3,11] @400, dln_out_weight [2] @544,
 * dln_out_bias [2] @560, dw_out [2,3] @576 (600 bytes) */
enum { IN_BYTES = 352, OUT_BYTES = 600 };

typedef struct bad_fixture {
    TEST_BAD_FIXTURE_OF(trimul);
} bad_fixture;

static bad_fixture bad_setup(void)
{
    bad_fixture f = {.b = test_bad_buffers_make("trimul", IN_BYTES, OUT_BYTES)};
    f.desc = (mcl_trimul_desc){BN, BC, BH, MCL_F32, 1e-5f, MCL_TRIMUL_OUTGOING};
    cl_mem i = f.b.in, o = f.b.out;
    f.ft = (mcl_trimul_fwd_tensors){{i, 0}, {i, 48}, {i, 64}, {i, 80}, {i, 96}, {i, 240}, {i, 256}, {i, 272},
                                    {o, 0}, {o, 224}, {o, 256}, {o, 272}, {o, 288}, {o, 304}};
    f.bt = (mcl_trimul_bwd_tensors){{i, 0},   {i, 48},  {i, 64},  {i, 80},  {i, 96},  {i, 240}, {i, 256},
                                    {i, 272}, {o, 224}, {o, 256}, {o, 272}, {o, 288}, {o, 304},
                                    {i, 304}, {o, 320}, {o, 368}, {o, 384}, {o, 400}, {o, 544}, {o, 560},
                                    {o, 576}};
    return f;
}

/* Descriptor faults, forward and backward alike. */
static const TEST_DESC_FAULT(mcl_trimul_desc) desc_faults[] = {
    {{0, BC, BH, MCL_F32, 1e-5f, MCL_TRIMUL_OUTGOING}, MCL_ERR_INVALID_SIZE, "n (0)", "zero n"},
    {{BN, 0, BH, MCL_F32, 1e-5f, MCL_TRIMUL_OUTGOING}, MCL_ERR_INVALID_SIZE, "channels (0)", "zero channels"},
    {{BN, BC, 0, MCL_F32, 1e-5f, MCL_TRIMUL_OUTGOING}, MCL_ERR_INVALID_SIZE, "hidden (0)", "zero hidden"},
    {{BN, BC, BH, (mcl_dtype)7, 1e-5f, MCL_TRIMUL_OUTGOING}, MCL_ERR_UNSUPPORTED_DTYPE, "dtype 7", "unknown dtype"},
    {{BN, BC, BH, MCL_F32, NAN, MCL_TRIMUL_OUTGOING}, MCL_ERR_INVALID_ARGUMENT, "eps", "NaN eps"},
    {{BN, BC, BH, MCL_F32, -1.0f, MCL_TRIMUL_OUTGOING}, MCL_ERR_INVALID_ARGUMENT, "eps", "negative eps"},
    {{BN, BC, BH, MCL_F32, 1e-5f, (mcl_trimul_direction)2}, MCL_ERR_INVALID_ARGUMENT, "direction 2", "direction 2"},
};

/* The tensors both passes require, in the tensors `pass` of a pass's calls: the inputs and what
 * the forward saves. */
#define REQUIRED_IN_BOTH_PASSES(pass)                                                              \
    TEST_REQUIRED(pass, z), TEST_REQUIRED(pass, w_in), TEST_REQUIRED(pass, w_out), TEST_REQUIRED(pass, t), \
        TEST_REQUIRED(pass, mean_in), TEST_REQUIRED(pass, rstd_in), TEST_REQUIRED(pass, mean_out),     \
        TEST_REQUIRED(pass, rstd_out)

/* Every refused call of the forward and the backward, no buffer touched; the size function
 * refuses what it cannot size. */
Test(trimul, bad_inputs)
{
    bad_fixture f = bad_setup();
    cl_mem in = f.b.in, out = f.b.out, small = f.b.small;
    mcl_trimul_fwd_tensors ft;
    const test_required fwd_required[] = {REQUIRED_IN_BOTH_PASSES(ft), TEST_REQUIRED(ft, out)};
    const test_tensor_fault fwd_faults[] = {
        {"small t", MCL_ERR_BUFFER_TOO_SMALL, "t buffer holds 16 bytes", {{&ft.t, {small, 0}}}},
        {"mask past its buffer", MCL_ERR_BUFFER_TOO_SMALL, "mask buffer", {{&ft.mask, {small, 4}}}},
        {"w_out past its buffer", MCL_ERR_BUFFER_TOO_SMALL, "w_out buffer", {{&ft.w_out, {in, 336}}}},
        {"out over z", MCL_ERR_INVALID_ARGUMENT, "output out overlaps z", {{&ft.out, {in, 32}}}},
        {"t over out", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&ft.t, {out, 40}}}},
    };
    mcl_trimul_bwd_tensors bt;
    const test_required bwd_required[] = {REQUIRED_IN_BOTH_PASSES(bt), TEST_REQUIRED(bt, dout)};
    const test_tensor_fault bwd_faults[] = {
        {"no output", MCL_ERR_INVALID_ARGUMENT, "no output requested",
         {TEST_LEFT_OUT(bt, dz), TEST_LEFT_OUT(bt, dln_in_weight), TEST_LEFT_OUT(bt, dln_in_bias),
          TEST_LEFT_OUT(bt, dw_in), TEST_LEFT_OUT(bt, dln_out_weight), TEST_LEFT_OUT(bt, dln_out_bias),
          TEST_LEFT_OUT(bt, dw_out)}},
        {"small dw_in", MCL_ERR_BUFFER_TOO_SMALL, "dw_in buffer holds 16 bytes", {{&bt.dw_in, {small, 0}}}},
        {"small t", MCL_ERR_BUFFER_TOO_SMALL, "t buffer holds 16 bytes", {{&bt.t, {small, 0}}}},
        {"dz over w_out and dout", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&bt.dz, {in, 272}}}},
        {"dw_out over t", MCL_ERR_INVALID_ARGUMENT, "output dw_out overlaps t", {{&bt.dw_out, {out, 224}}}},
        {"dln_out_bias on dln_out_weight", MCL_ERR_INVALID_ARGUMENT, "overlaps",
         {{&bt.dln_out_bias, f.bt.dln_out_weight}}},
    };
    EXPECT_REFUSED_CALLS(&f.b, mcl_trimul_forward, f.desc, f.ft, ft, desc_faults, fwd_required, fwd_faults);
    EXPECT_REFUSED_CALLS(&f.b, mcl_trimul_backward, f.desc, f.bt, bt, desc_faults, bwd_required, bwd_faults);

    size_t fwd = 0, bwd = 0;
    assert_status(mcl_trimul_workspace_size(NULL, &f.desc, &fwd, &bwd), MCL_ERR_NULL_POINTER);
    assert_status(mcl_trimul_workspace_size(f.b.ctx, NULL, &fwd, &bwd), MCL_ERR_NULL_POINTER);
    assert_status(mcl_trimul_workspace_size(f.b.ctx, &f.desc, NULL, &bwd), MCL_ERR_NULL_POINTER);
    for (size_t i = 0; i < COUNT_OF(desc_faults); i++)
        assert_status(mcl_trimul_workspace_size(f.b.ctx, &desc_faults[i].desc, &fwd, &bwd), desc_faults[i].status);
    test_bad_buffers_release(&f.b);
}

TEST_EVENTS_RETURNED(trimul)
