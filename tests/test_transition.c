/* Transition forward and backward against the double-precision reference (the transition
 * workload, tests/workload/transition.c): every dtype, both SiLU halves, with and without the
 * LayerNorm's weight and bias, shapes that fill no tile, each backward output alone, tensors
 * inside larger buffers (poison and guard bytes checked), parameter variants, a backward in
 * several row chunks, determinism and bad inputs. */
#include "common.h"

#include "ref/transition_ref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* The workload's tensors, and the bit of each gradient in a case's want. */
enum { T_X, T_LN_WEIGHT, T_LN_BIAS, T_W1, T_W2, T_DY, T_Y, T_MEAN, T_RSTD, T_H,
       T_DX, T_DLN_WEIGHT, T_DLN_BIAS, T_DW1, T_DW2, T_COUNT };
#define WANT(t) (1u << ((t) - T_DX))
static const char *const names[T_COUNT] = {"x", "ln_weight", "ln_bias", "w1", "w2", "dy", "y", "mean",
                                           "rstd", "h", "dx", "dln_weight", "dln_bias", "dw1", "dw2"};

typedef struct tr_case {
    size_t rows, c, f;
    mcl_dtype dtype;
    mcl_swiglu_half half;
    int ln_weight, ln_bias; /* optional inputs given */
    unsigned want;          /* backward outputs */
    int offsets;            /* WL_OFF_* */
    size_t chunk_rows;      /* the backward's rows per chunk, 0: the op's choice */
} tr_case;

/* The workload's option bits; its arg is the rows per chunk. */
enum { SILU_SECOND = 1, LN_WEIGHT = 2, LN_BIAS = 4 };

static wl_case workload_case(tr_case c)
{
    unsigned options = (c.half == MCL_SWIGLU_SILU_SECOND ? SILU_SECOND : 0u) | (c.ln_weight ? LN_WEIGHT : 0u) |
                       (c.ln_bias ? LN_BIAS : 0u);
    return (wl_case){{c.rows, c.c, c.f}, c.dtype, options, c.want, (double)c.chunk_rows};
}

/* Runs the forward, then the backward from an empty workspace (it must take exactly what
 * mcl_transition_backward_workspace_size reports), and checks every output against the
 * reference continued from the device's h, and every buffer's poison around its tensor. */
static void check_case(mcl_context *ctx, tr_case c, host_rng *rng, const char *variant)
{
    test_check_case(ctx, &wl_transition, workload_case(c), c.offsets, rng, variant);
}

/* ---- correctness ------------------------------------------------------------------------ */

/* Size 1 and sizes that are multiples of no tile (every value of rows {1, 3, 77}, c {1, 5, 32},
 * F {1, 3, 20, 64}), and an AF3-like shape at small scale (F = 4c) in every dtype; each dtype
 * with both SiLU halves, ln_weight and ln_bias each given and not, and every offset mode. With
 * c = 1, LN(x) is ln_bias (or 0: every output 0). Each case compiles its own GEMM variants, so
 * the shapes are spread over the dtypes rather than crossed with them. */
static const tr_case cases[] = {
    {1, 1, 1, MCL_F32, MCL_SWIGLU_SILU_FIRST, 1, 1, WL_ALL, WL_OFF_ODD, 0},
    {1, 32, 64, MCL_F32, MCL_SWIGLU_SILU_SECOND, 0, 1, WL_ALL, WL_OFF_VEC, 0},
    {77, 5, 64, MCL_F32, MCL_SWIGLU_SILU_FIRST, 1, 0, WL_ALL, WL_OFF_MIXED, 0},
    {300, 32, 128, MCL_F32, MCL_SWIGLU_SILU_SECOND, 0, 0, WL_ALL, WL_OFF_ZERO, 0},
    {1, 1, 1, MCL_BF16, MCL_SWIGLU_SILU_SECOND, 0, 1, WL_ALL, WL_OFF_MIXED, 0},
    {3, 5, 3, MCL_BF16, MCL_SWIGLU_SILU_FIRST, 1, 0, WL_ALL, WL_OFF_ODD, 0},
    {77, 1, 3, MCL_BF16, MCL_SWIGLU_SILU_SECOND, 1, 1, WL_ALL, WL_OFF_VEC, 0},
    {300, 32, 128, MCL_BF16, MCL_SWIGLU_SILU_FIRST, 0, 0, WL_ALL, WL_OFF_ZERO, 0},
    {1, 1, 1, MCL_F16, MCL_SWIGLU_SILU_FIRST, 0, 0, WL_ALL, WL_OFF_VEC, 0},
    {77, 32, 20, MCL_F16, MCL_SWIGLU_SILU_SECOND, 1, 1, WL_ALL, WL_OFF_ODD, 0},
    {3, 32, 1, MCL_F16, MCL_SWIGLU_SILU_FIRST, 1, 0, WL_ALL, WL_OFF_MIXED, 0},
    {300, 32, 128, MCL_F16, MCL_SWIGLU_SILU_SECOND, 0, 1, WL_ALL, WL_OFF_ZERO, 0},
};

Test(transition, matches_reference_over_shapes_dtypes_and_halves, .timeout = 300)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (size_t i = 0; i < COUNT_OF(cases); i++) check_case(ctx, cases[i], &rng, "default");
    mcl_context_release(ctx);
}

/* Each backward output requested alone (the others absent), both halves. */
Test(transition, each_backward_output_alone, .timeout = 300)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (int t = T_DX; t < T_COUNT; t++) {
        tr_case c = {77, 32, 20, MCL_F16, (mcl_swiglu_half)(t % 2), 1, 1, WANT(t), t % WL_OFF_MODES, 0};
        check_case(ctx, c, &rng, names[t]);
    }
    mcl_context_release(ctx);
}

/* Whole default tiles (128 x 128) inside every matrix at aligned offsets take the GEMM's fast
 * path (vector loads and stores, no bounds checks) in each GEMM, the edge tiles the checked one;
 * every dtype, with chunks of rows adding to the weight gradients' vector partials, and aligned
 * and odd tensors mixed (one operand of a GEMM fast, the other checked). */
Test(transition, whole_tiles_take_the_fast_path_correctly, .timeout = 300)
{
    static const tr_case cases[] = {
        {300, 128, 128, MCL_F32, MCL_SWIGLU_SILU_FIRST, 1, 1, WL_ALL, WL_OFF_VEC, 0},
        {300, 128, 128, MCL_F32, MCL_SWIGLU_SILU_SECOND, 1, 1, WL_ALL, WL_OFF_MIXED, 0},
        {300, 128, 128, MCL_BF16, MCL_SWIGLU_SILU_SECOND, 0, 0, WL_ALL, WL_OFF_ZERO, 100},
        {300, 128, 128, MCL_F16, MCL_SWIGLU_SILU_FIRST, 1, 0, WL_ALL, WL_OFF_VEC, 128},
    };
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (size_t i = 0; i < COUNT_OF(cases); i++) check_case(ctx, cases[i], &rng, "default");
    mcl_context_release(ctx);
}

/* 16 x 16 tiles over 8 waves: at rows 30, c 32, F 20 every GEMM but dh's (never split) splits
 * K into partials, on 2 compute units or more. */
#define SPLIT_VARIANT "BM=16,BN=16,BK=4,TM=1,TN=2,SPLIT_WAVES=8,PREFETCH=0"

/* A case and the GEMM parameters it runs under (NULL: the tables' choice). */
typedef struct tr_run {
    const char *params;
    tr_case c;
} tr_run;

/* Each run checked under its parameters, on a context and inputs of its own; with repeat, run
 * twice first, every output's bytes the same both times (test_repeat_and_check). */
static void check_runs(const tr_run *runs, size_t count, int repeat)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (size_t i = 0; i < count; i++) {
        const tr_case c = runs[i].c;
        const char *label = runs[i].params ? runs[i].params : "default";
        assert_ok(mcl_context_set_params(ctx, "gemm", runs[i].params));
        if (repeat) test_repeat_and_check(ctx, &wl_transition, workload_case(c), c.offsets, &rng, label);
        else check_case(ctx, c, &rng, label);
    }
    mcl_context_release(ctx);
}

/* Variants of the parameter space other than the tables' choice: small and tall or wide tiles,
 * with and without K splits, on partial tiles. */
Test(transition, parameter_variants_are_correct, .timeout = 300)
{
    static const tr_run runs[] = {
        {SPLIT_VARIANT, {3, 5, 3, MCL_F32, MCL_SWIGLU_SILU_FIRST, 1, 0, WL_ALL, WL_OFF_ZERO, 0}},
        {SPLIT_VARIANT, {30, 32, 20, MCL_BF16, MCL_SWIGLU_SILU_SECOND, 1, 0, WL_ALL, WL_OFF_VEC, 0}},
        {"BM=32,BN=64,BK=8,TM=4,TN=8,SPLIT_WAVES=4",
         {77, 32, 20, MCL_F16, MCL_SWIGLU_SILU_FIRST, 1, 1, WL_ALL, WL_OFF_ODD, 0}},
        {"BM=128,BN=16,BK=32,TM=8,TN=4,SPLIT_WAVES=1,PREFETCH=0",
         {300, 32, 64, MCL_F32, MCL_SWIGLU_SILU_SECOND, 1, 1, WL_ALL, WL_OFF_MIXED, 0}},
        /* the tensor cores, emulated: LayerNorm's and SwiGLU's outputs rounded to the storage type,
         * SwiGLU's backward in the epilogue */
        {"MMA=2,BM=32,BN=32,BK=16,TM=4,TN=4",
         {77, 32, 20, MCL_BF16, MCL_SWIGLU_SILU_FIRST, 1, 1, WL_ALL, WL_OFF_ODD, 0}},
        {"MMA=2,BM=64,BN=32,BK=16,TM=4,TN=4,SPLIT_WAVES=8",
         {300, 48, 40, MCL_F16, MCL_SWIGLU_SILU_SECOND, 1, 0, WL_ALL, WL_OFF_VEC, 0}},
    };
    check_runs(runs, COUNT_OF(runs), 0);
}

/* More than CHUNK_ROWS (32768) rows: the backward runs in three chunks of rows, its weight
 * gradients summing every chunk's partials; default and split parameters. c = 8, not fewer: of
 * 70000 rows of 4 random values a few lie so close together that rstd amplifies every rounding
 * of the LayerNorm's backward past any tolerance that means something. */
Test(transition, backward_over_several_row_chunks, .timeout = 300)
{
    static const tr_run runs[] = {
        {NULL, {70000, 8, 2, MCL_F32, MCL_SWIGLU_SILU_FIRST, 1, 1, WL_ALL, WL_OFF_ZERO, 0}},
        {SPLIT_VARIANT, {70000, 8, 2, MCL_BF16, MCL_SWIGLU_SILU_SECOND, 1, 1, WL_ALL, WL_OFF_MIXED, 0}},
    };
    check_runs(runs, COUNT_OF(runs), 0);
}

/* Rows per chunk chosen by the caller: one row, a short last chunk, exactly the rows, more than
 * the rows; each with every gradient, default and split parameters (the chunks add their
 * weight-gradient pieces to the same partial slots). */
Test(transition, backward_with_chosen_chunk_rows, .timeout = 300)
{
    static const tr_run runs[] = {
        {NULL, {77, 32, 20, MCL_F32, MCL_SWIGLU_SILU_FIRST, 1, 1, WL_ALL, WL_OFF_ZERO, 1}},
        {SPLIT_VARIANT, {77, 32, 20, MCL_BF16, MCL_SWIGLU_SILU_SECOND, 1, 1, WL_ALL, WL_OFF_VEC, 10}},
        {NULL, {77, 32, 20, MCL_F16, MCL_SWIGLU_SILU_FIRST, 1, 1, WL_ALL, WL_OFF_ODD, 77}},
        {SPLIT_VARIANT, {77, 32, 20, MCL_F32, MCL_SWIGLU_SILU_SECOND, 1, 1, WL_ALL, WL_OFF_MIXED, 1000}},
    };
    check_runs(runs, COUNT_OF(runs), 0);
}

/* Forward and backward twice on the same inputs, default and split parameters: every output's
 * bytes must be identical; and a third run on those inputs against the reference. */
Test(transition, results_are_bitwise_identical_on_repeat, .timeout = 300)
{
    static const tr_run runs[] = {
        {NULL, {300, 32, 128, MCL_BF16, MCL_SWIGLU_SILU_SECOND, 1, 1, WL_ALL, WL_OFF_MIXED, 0}},
        {SPLIT_VARIANT, {77, 32, 20, MCL_BF16, MCL_SWIGLU_SILU_SECOND, 1, 1, WL_ALL, WL_OFF_MIXED, 0}},
    };
    check_runs(runs, COUNT_OF(runs), 1);
}

/* dw1 alone still needs dh, which lives in the workspace. */
Test(transition, workspace_size_is_positive_with_dw1)
{
    mcl_context *ctx = test_context();
    cl_mem any = test_buffer(ctx, 4096, 0);
    mcl_transition_desc desc = {7, 4, 5, MCL_F32, 1e-5f, MCL_SWIGLU_SILU_FIRST, 0};
    mcl_transition_bwd_tensors bt = {.x = {any, 0}, .w1 = {any, 0}, .w2 = {any, 0}, .mean = {any, 0},
                                     .rstd = {any, 0}, .h = {any, 0}, .dy = {any, 0}, .dw1 = {any, 0}};
    size_t bytes = 0;
    assert_ok(mcl_transition_backward_workspace_size(ctx, &desc, &bt, &bytes));
    cr_assert_gt(bytes, 0, "dw1 alone: no workspace reported");
    clReleaseMemObject(any);
    mcl_context_release(ctx);
}

/* ---- the reference itself ------------------------------------------------------------- */

/* L = sum dy . y by the reference forward */
static double loss(const void *problem)
{
    const ref_transition_problem *p = problem;
    double *y = malloc(p->rows * p->c * sizeof *y), l = 0.0;
    ref_transition_forward(p, y, NULL, NULL, NULL);
    for (size_t i = 0; i < p->rows * p->c; i++) l += p->dy[i] * y[i];
    free(y);
    return l;
}

/* The forward rounds h to fp32: a step of 2^-8 balances that noise and the truncation error,
 * together below 1e-4 of the gradient; a wrong or missing term leaves 1e-2 or more. */
#define FD_STEP (1.0f / 256)

Test(transition, reference_matches_finite_differences)
{
    enum { R = 3, C = 5, F = 4 };
    host_rng rng = host_rng_seeded(test_seed());
    float x[R * C], lnw[C], lnb[C], w1[C * 2 * F], w2[F * C], dy[R * C];
    host_fill_uniform(&rng, x, R * C, -2, 3), host_fill_uniform(&rng, lnw, C, 0.5f, 1.5f);
    host_fill_uniform(&rng, lnb, C, -0.5f, 0.5f), host_fill_uniform(&rng, w1, C * 2 * F, -1, 1);
    host_fill_uniform(&rng, w2, F * C, -1, 1), host_fill_uniform(&rng, dy, R * C, -1, 1);
    for (int half = MCL_SWIGLU_SILU_FIRST; half <= MCL_SWIGLU_SILU_SECOND; half++) {
        ref_transition_problem p = {R, C, F, 1e-5, (mcl_swiglu_half)half, x, w1, w2, lnw, lnb, NULL, dy};
        double dx[R * C], dlnw[C], dlnb[C], dw1[C * 2 * F], dw2[F * C];
        ref_transition_backward(&p, dx, dlnw, dlnb, dw1, dw2);
        struct { const char *name; float *v; size_t n; const double *an; } g[] = {
            {"x", x, R * C, dx}, {"ln_weight", lnw, C, dlnw}, {"ln_bias", lnb, C, dlnb},
            {"w1", w1, C * 2 * F, dw1}, {"w2", w2, F * C, dw2}};
        for (size_t i = 0; i < COUNT_OF(g); i++) {
            double err = test_fd_error(loss, &p, g[i].v, g[i].n, g[i].an, FD_STEP);
            cr_expect_leq(err, 3e-4, "silu_half %d: d%s differs from finite differences by %.3g", half, g[i].name,
                          err);
        }
    }
}

/* ---- bad inputs: a specific status, a message, and no buffer touched ------------------------ */

enum { BR = 4, BC = 8, BF = 6 };
/* inputs (f32): x [BR,BC] @0, w1 [BC,2BF] @128, w2 [BF,BC] @512, dy [BR,BC] @704 (832 bytes);
 * outputs: y [BR,BC] @0, mean @128, rstd @144, h [BR,2BF] @160, dx [BR,BC] @352,
 * dln_weight [BC] @480, dln_bias [BC] @512, dw1 [BC,2BF] @544, dw2 [BF,BC] @928 (1120 bytes) */
enum { IN_BYTES = 832, OUT_BYTES = 1120 };

typedef struct bad_fixture {
    TEST_BAD_FIXTURE_OF(transition);
} bad_fixture;

static bad_fixture bad_setup(void)
{
    bad_fixture f = {.b = test_bad_buffers_make("transition", IN_BYTES, OUT_BYTES)};
    cl_mem i = f.b.in, o = f.b.out;
    f.desc = (mcl_transition_desc){BR, BC, BF, MCL_F32, 1e-5f, MCL_SWIGLU_SILU_FIRST, 0};
    f.ft = (mcl_transition_fwd_tensors){.x = {i, 0}, .w1 = {i, 128}, .w2 = {i, 512}, .y = {o, 0},
                                        .mean = {o, 128}, .rstd = {o, 144}, .h = {o, 160}};
    f.bt = (mcl_transition_bwd_tensors){.x = {i, 0}, .w1 = {i, 128}, .w2 = {i, 512},
                                        .mean = {o, 128}, .rstd = {o, 144}, .h = {o, 160},
                                        .dy = {i, 704}, .dx = {o, 352}, .dln_weight = {o, 480},
                                        .dln_bias = {o, 512}, .dw1 = {o, 544}, .dw2 = {o, 928}};
    return f;
}

/* Descriptor faults, forward and backward alike. */
static const TEST_DESC_FAULT(mcl_transition_desc) desc_faults[] = {
    {{0, BC, BF, MCL_F32, 1e-5f, MCL_SWIGLU_SILU_FIRST, 0}, MCL_ERR_INVALID_SIZE, "rows (0)", "zero rows"},
    {{BR, 0, BF, MCL_F32, 1e-5f, MCL_SWIGLU_SILU_FIRST, 0}, MCL_ERR_INVALID_SIZE, "channels (0)", "zero channels"},
    {{BR, BC, 0, MCL_F32, 1e-5f, MCL_SWIGLU_SILU_FIRST, 0}, MCL_ERR_INVALID_SIZE, "hidden (0)", "zero hidden"},
    {{BR, BC, BF, (mcl_dtype)7, 1e-5f, MCL_SWIGLU_SILU_FIRST, 0}, MCL_ERR_UNSUPPORTED_DTYPE, "dtype 7",
     "unknown dtype"},
    {{BR, BC, BF, MCL_F32, -1.0f, MCL_SWIGLU_SILU_FIRST, 0}, MCL_ERR_INVALID_ARGUMENT, "eps", "negative eps"},
    {{BR, BC, BF, MCL_F32, NAN, MCL_SWIGLU_SILU_FIRST, 0}, MCL_ERR_INVALID_ARGUMENT, "eps", "NaN eps"},
    {{BR, BC, BF, MCL_F32, INFINITY, MCL_SWIGLU_SILU_FIRST, 0}, MCL_ERR_INVALID_ARGUMENT, "eps", "infinite eps"},
    {{BR, BC, BF, MCL_F32, 1e-5f, (mcl_swiglu_half)2, 0}, MCL_ERR_INVALID_ARGUMENT, "silu_half 2", "silu_half 2"},
};

/* Every refused call of the forward and the backward, no buffer touched; the backward's size
 * function refuses what it cannot size. */
Test(transition, bad_inputs)
{
    bad_fixture f = bad_setup();
    cl_mem in = f.b.in, out = f.b.out, small = f.b.small;
    mcl_transition_fwd_tensors ft;
    const test_required fwd_required[] = {TEST_REQUIRED(ft, x),    TEST_REQUIRED(ft, w1),   TEST_REQUIRED(ft, w2),
                                          TEST_REQUIRED(ft, y),    TEST_REQUIRED(ft, mean), TEST_REQUIRED(ft, rstd),
                                          TEST_REQUIRED(ft, h)};
    const test_tensor_fault fwd_faults[] = {
        {"small h", MCL_ERR_BUFFER_TOO_SMALL, "h buffer holds 16 bytes", {{&ft.h, {small, 0}}}},
        {"w2 past its buffer", MCL_ERR_BUFFER_TOO_SMALL, "w2 buffer", {{&ft.w2, {in, 704}}}},
        {"small ln_bias", MCL_ERR_BUFFER_TOO_SMALL, "ln_bias buffer", {{&ft.ln_bias, {small, 0}}}},
        {"y over x", MCL_ERR_INVALID_ARGUMENT, "output y overlaps x", {{&ft.y, {in, 64}}}},
        {"h over y", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&ft.h, {out, 96}}}},
    };
    mcl_transition_bwd_tensors bt;
    const test_required bwd_required[] = {TEST_REQUIRED(bt, x),    TEST_REQUIRED(bt, w1),   TEST_REQUIRED(bt, w2),
                                          TEST_REQUIRED(bt, mean), TEST_REQUIRED(bt, rstd), TEST_REQUIRED(bt, h),
                                          TEST_REQUIRED(bt, dy)};
    const test_tensor_fault bwd_faults[] = {
        {"no output", MCL_ERR_INVALID_ARGUMENT, "no output requested",
         {TEST_LEFT_OUT(bt, dx), TEST_LEFT_OUT(bt, dln_weight), TEST_LEFT_OUT(bt, dln_bias), TEST_LEFT_OUT(bt, dw1),
          TEST_LEFT_OUT(bt, dw2)}},
        {"small dw1", MCL_ERR_BUFFER_TOO_SMALL, "dw1 buffer holds 16 bytes", {{&bt.dw1, {small, 0}}}},
        {"small h", MCL_ERR_BUFFER_TOO_SMALL, "h buffer holds 16 bytes", {{&bt.h, {small, 0}}}},
        {"dx over w2 and dy", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&bt.dx, {in, 640}}}},
        {"dw2 over h", MCL_ERR_INVALID_ARGUMENT, "output dw2 overlaps h", {{&bt.dw2, {out, 160}}}},
        {"dln_bias on dln_weight", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&bt.dln_bias, f.bt.dln_weight}}},
    };
    EXPECT_REFUSED_CALLS(&f.b, mcl_transition_forward, f.desc, f.ft, ft, desc_faults, fwd_required, fwd_faults);
    EXPECT_REFUSED_CALLS(&f.b, mcl_transition_backward, f.desc, f.bt, bt, desc_faults, bwd_required, bwd_faults);

    size_t bytes = 0;
    assert_status(mcl_transition_backward_workspace_size(f.b.ctx, &f.desc, &f.bt, NULL), MCL_ERR_NULL_POINTER);
    assert_status(mcl_transition_backward_workspace_size(NULL, &f.desc, &f.bt, &bytes), MCL_ERR_NULL_POINTER);
    assert_status(mcl_transition_backward_workspace_size(f.b.ctx, &desc_faults[2].desc, &f.bt, &bytes),
                  MCL_ERR_INVALID_SIZE);
    test_bad_buffers_release(&f.b);
}

TEST_EVENTS_RETURNED(transition)
