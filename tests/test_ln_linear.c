/* LayerNorm + Linear forward and backward against the double-precision reference (the
 * ln_linear workload, tests/workload/ln_linear.c). Every tensor lies at a nonzero offset inside
 * its own buffer between guard bytes; outputs are poisoned (NaN) before each run, and after it no
 * byte outside the outputs may have changed. */
#include "common.h"

#include "ref/ln_linear_ref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The workload's tensors, and the bit of each gradient in a case's want. */
enum { T_X, T_LN_WEIGHT, T_LN_BIAS, T_WEIGHT, T_BIAS, T_DY, T_Y, T_MEAN, T_RSTD, T_DX, T_DLN_WEIGHT, T_DLN_BIAS,
       T_DWEIGHT, T_DBIAS, T_COUNT };
#define WANT(t) (1u << ((t) - T_DX))
static const char *const names[T_COUNT] = {"x", "ln_weight", "ln_bias", "weight", "bias", "dy", "y", "mean",
                                           "rstd", "dx", "dln_weight", "dln_bias", "dweight", "dbias"};

typedef struct shape {
    size_t rows, in, out;
    mcl_dtype dtype;
} shape;

/* opts: bit 0 ln_weight, bit 1 ln_bias, bit 2 bias (the workload's option bits) */
static wl_case make_case(shape sh, unsigned want, size_t opts)
{
    return (wl_case){{sh.rows, sh.in, sh.out}, sh.dtype, (unsigned)opts, want, 0};
}

static void check_case(mcl_context *ctx, wl_case c, int aligned, host_rng *rng, const char *variant)
{
    test_check_case(ctx, &wl_ln_linear, c, aligned ? WL_OFF_VEC : WL_OFF_ODD, rng, variant);
}

/* All outputs, for size 1 and sizes that are multiples of no tile (every value of rows {1, 3,
 * 77, 300}, in {1, 5, 64, 130}, out {1, 4, 16, 33, 100}), then AF3-like shapes at small scale,
 * with every combination of the optional inputs at odd and at aligned offsets. fp32 takes all
 * the shapes, the 16-bit dtypes a few: the GEMM builds a program per tile size, which PoCL takes
 * about a second to compile. */
static const shape shapes[] = {
    {1, 1, 1, MCL_F32},      {3, 5, 4, MCL_F32},       {3, 130, 1, MCL_F32},   {1, 64, 100, MCL_F32},
    {77, 1, 33, MCL_F32},    {77, 130, 16, MCL_F32},   {300, 5, 100, MCL_F32}, {300, 64, 33, MCL_F32},
    {600, 128, 16, MCL_F32}, {600, 128, 256, MCL_F32}, {3, 5, 4, MCL_BF16},    {300, 64, 33, MCL_BF16},
    {600, 128, 16, MCL_BF16}, {1, 1, 1, MCL_F16},      {77, 130, 16, MCL_F16}, {600, 128, 256, MCL_F16},
};

Test(ln_linear, matches_reference_over_shapes_and_dtypes, .timeout = 600)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (size_t k = 0; k < COUNT_OF(shapes); k++)
        check_case(ctx, make_case(shapes[k], WL_ALL, k % 8), (int)(k / 8 % 2), &rng, "default");
    mcl_context_release(ctx);
}

/* Whole default tiles (128 x 128) inside every matrix at aligned offsets take the GEMM's fast
 * path (vector loads and stores, no bounds checks) for A, B and C in each GEMM, the edge tiles
 * the checked one; every dtype, with and without the optional inputs. */
Test(ln_linear, whole_tiles_take_the_fast_path_correctly, .timeout = 600)
{
    static const shape per_dtype[] = {{300, 128, 260, MCL_F32}, {300, 128, 260, MCL_BF16}, {300, 128, 260, MCL_F16}};
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (size_t d = 0; d < COUNT_OF(per_dtype); d++)
        check_case(ctx, make_case(per_dtype[d], WL_ALL, d ? 7 : 0), 1, &rng, "default");
    mcl_context_release(ctx);
}

/* Each backward output requested alone (the others absent), every dtype. */
Test(ln_linear, each_backward_output_alone, .timeout = 600)
{
    static const shape per_dtype[] = {{77, 130, 16, MCL_F32}, {300, 64, 33, MCL_BF16}, {77, 130, 16, MCL_F16}};
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (size_t d = 0; d < 3; d++)
        for (int t = T_DX; t < T_COUNT; t++) check_case(ctx, make_case(per_dtype[d], WANT(t), 7), t % 2, &rng, names[t]);
    mcl_context_release(ctx);
}

/* The split variant: 16 x 16 tiles and 8 waves make the dweight GEMM (K = rows) split K even on
 * many compute units. */
#define SPLIT_VARIANT "BM=16,BN=16,BK=4,TM=4,TN=4,SPLIT_WAVES=8"

/* Every variant of the parameter space must be correct, not only the one the tables pick; rows
 * 2000 leave the dweight GEMM room to split K. */
Test(ln_linear, every_parameter_variant_is_correct, .timeout = 600)
{
    static const struct {
        const char *params;
        shape sh;
    } runs[] = {
        {NULL, {2000, 24, 8, MCL_F32}}, /* the tables' choice */
        {"BM=16,BN=32,BK=4,TM=4,TN=4,SPLIT_WAVES=8", {2000, 24, 8, MCL_BF16}},
        {"BM=64,BN=16,BK=8,TM=2,TN=1,SPLIT_WAVES=2", {2000, 24, 8, MCL_F32}}, /* one-float operand reads */
        {SPLIT_VARIANT, {2000, 24, 8, MCL_F16}},
        {SPLIT_VARIANT, {3, 60, 100, MCL_F16}}, /* splits the forward (K = in) and dLN(x) (K = out) */
        {"BM=128,BN=64,BK=32,TM=8,TN=4,SPLIT_WAVES=1,PREFETCH=0", {2000, 24, 8, MCL_F32}},
        {"BM=32,BN=128,BK=8,TM=4,TN=8,SPLIT_WAVES=2", {2000, 24, 8, MCL_BF16}},
        /* the tensor cores, emulated: LayerNorm's output rounded to the storage type */
        {"MMA=2,BM=32,BN=32,BK=16,TM=4,TN=4", {2000, 24, 8, MCL_BF16}},
        {"MMA=2,BM=64,BN=32,BK=16,TM=4,TN=4,SPLIT_WAVES=8", {300, 40, 70, MCL_F16}},
    };
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (size_t k = 0; k < COUNT_OF(runs); k++) {
        assert_ok(mcl_context_set_params(ctx, "gemm", runs[k].params));
        check_case(ctx, make_case(runs[k].sh, WL_ALL, 7 - k), (int)(k % 2), &rng, runs[k].params);
    }
    mcl_context_release(ctx);
}

/* dweight alone still needs scratch when its GEMM splits K: the split variant splits it. */
Test(ln_linear, workspace_size_covers_split_dweight)
{
    mcl_context *ctx = test_context();
    assert_ok(mcl_context_set_params(ctx, "gemm", SPLIT_VARIANT));
    cl_mem any = test_buffer(ctx, 2000 * 24 * 4, 0);
    mcl_ln_linear_desc desc = {2000, 24, 8, MCL_F32, 1e-5f};
    mcl_ln_linear_bwd_tensors bt = {.x = {any, 0}, .weight = {any, 0}, .mean = {any, 0}, .rstd = {any, 0},
                                    .dy = {any, 0}, .dweight = {any, 0}};
    size_t bytes = 0;
    assert_ok(mcl_ln_linear_backward_workspace_size(ctx, &desc, &bt, &bytes));
    cr_assert_geq(bytes, 2 * 24 * 8 * sizeof(float), "split dweight partials: %zu bytes", bytes);
    clReleaseMemObject(any);
    mcl_context_release(ctx);
}

/* Forward and backward twice on the same inputs, default and split parameters: every output's
 * bytes must be identical. */
Test(ln_linear, results_are_bitwise_identical_on_repeat, .timeout = 300)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    static const char *const variants[] = {NULL, SPLIT_VARIANT};
    for (int v = 0; v < 2; v++) {
        assert_ok(mcl_context_set_params(ctx, "gemm", variants[v]));
        shape sh = {2000, 24, 8, v ? MCL_F16 : MCL_F32};
        test_repeat_is_bitwise(ctx, &wl_ln_linear, make_case(sh, WL_ALL, 7), WL_OFF_VEC, &rng, variants[v]);
    }
    mcl_context_release(ctx);
}

/* ---- the reference itself ------------------------------------------------------------- */

/* L = sum dy . y by the reference forward */
static double loss(const void *problem)
{
    const ref_ln_linear_problem *p = problem;
    double *y = malloc(p->rows * p->out * sizeof *y), l = 0.0;
    ref_ln_linear_forward(p, y, NULL, NULL);
    for (size_t i = 0; i < p->rows * p->out; i++) l += p->dy[i] * y[i];
    free(y);
    return l;
}

Test(ln_linear, reference_matches_finite_differences)
{
    enum { R = 3, IN = 7, OUT = 5 };
    host_rng rng = host_rng_seeded(test_seed());
    float x[R * IN], lnw[IN], lnb[IN], w[IN * OUT], b[OUT], dy[R * OUT];
    host_fill_uniform(&rng, x, R * IN, -2, 3), host_fill_uniform(&rng, lnw, IN, 0.5f, 1.5f);
    host_fill_uniform(&rng, lnb, IN, -0.5f, 0.5f), host_fill_uniform(&rng, w, IN * OUT, -1, 1);
    host_fill_uniform(&rng, b, OUT, -1, 1), host_fill_uniform(&rng, dy, R * OUT, -1, 1);
    ref_ln_linear_problem p = {R, IN, OUT, 1e-5, x, w, lnw, lnb, b, dy};
    double dx[R * IN], dlnw[IN], dlnb[IN], dw[IN * OUT], db[OUT];
    ref_ln_linear_backward(&p, dx, dlnw, dlnb, dw, db);
    const test_fd_gradient g[] = {{"x", x, R * IN, dx},          {"ln_weight", lnw, IN, dlnw},
                                  {"ln_bias", lnb, IN, dlnb},     {"weight", w, IN * OUT, dw},
                                  {"bias", b, OUT, db}};
    test_expect_fd_gradients(loss, &p, g, COUNT_OF(g), 1.0f / 4096, 1e-6);
}

/* ---- bad inputs: a specific status, a message, and no buffer touched ------------------------ */

enum { BR = 4, BI = 8, BO = 6 };
/* inputs: x [BR,BI] @0, weight [BI,BO] @128, dy [BR,BO] @320 (416 bytes);
 * outputs: y [BR,BO] @0, mean @96, rstd @112, dx [BR,BI] @128, dweight [BI,BO] @256,
 * dbias [BO] @448, dln_weight [BI] @472, dln_bias [BI] @504 (536 bytes) */
enum { IN_BYTES = 416, OUT_BYTES = 536 };

typedef struct bad_fixture {
    TEST_BAD_FIXTURE_OF(ln_linear);
} bad_fixture;

static bad_fixture bad_setup(void)
{
    /* NULL: these tests never checked that a message names the op (unchanged here) */
    bad_fixture f = {.b = test_bad_buffers_make(NULL, IN_BYTES, OUT_BYTES)};
    cl_mem i = f.b.in, o = f.b.out;
    f.desc = (mcl_ln_linear_desc){BR, BI, BO, MCL_F32, 1e-5f};
    f.ft = (mcl_ln_linear_fwd_tensors){.x = {i, 0}, .weight = {i, 128}, .y = {o, 0}, .mean = {o, 96},
                                       .rstd = {o, 112}};
    f.bt = (mcl_ln_linear_bwd_tensors){.x = {i, 0}, .weight = {i, 128}, .mean = {o, 96}, .rstd = {o, 112},
                                       .dy = {i, 320}, .dx = {o, 128}, .dln_weight = {o, 472},
                                       .dln_bias = {o, 504}, .dweight = {o, 256}, .dbias = {o, 448}};
    return f;
}

/* Descriptor faults, forward and backward alike. */
static const TEST_DESC_FAULT(mcl_ln_linear_desc) desc_faults[] = {
    {{0, BI, BO, MCL_F32, 1e-5f}, MCL_ERR_INVALID_SIZE, "rows (0)", "zero rows"},
    {{BR, 0, BO, MCL_F32, 1e-5f}, MCL_ERR_INVALID_SIZE, "in_features (0)", "zero in_features"},
    {{BR, BI, 0, MCL_F32, 1e-5f}, MCL_ERR_INVALID_SIZE, "out_features (0)", "zero out_features"},
    {{BR, BI, BO, (mcl_dtype)7, 1e-5f}, MCL_ERR_UNSUPPORTED_DTYPE, "dtype 7", "unknown dtype"},
    {{BR, BI, BO, MCL_F32, -1.0f}, MCL_ERR_INVALID_ARGUMENT, "eps", "negative eps"},
    {{BR, BI, BO, MCL_F32, NAN}, MCL_ERR_INVALID_ARGUMENT, "eps", "NaN eps"},
    {{BR, BI, BO, MCL_F32, INFINITY}, MCL_ERR_INVALID_ARGUMENT, "eps", "infinite eps"},
    {{SIZE_MAX / 2, BI, BO, MCL_F32, 1e-5f}, MCL_ERR_SIZE_OVERFLOW, "overflows", "element count overflow"},
};

/* Every refused call of the forward and the backward, no buffer touched; the backward's size
 * function refuses what it cannot size. */
Test(ln_linear, bad_inputs)
{
    bad_fixture f = bad_setup();
    cl_mem in = f.b.in, out = f.b.out, small = f.b.small;
    mcl_ln_linear_fwd_tensors ft;
    const test_required fwd_required[] = {TEST_REQUIRED(ft, x), TEST_REQUIRED(ft, weight), TEST_REQUIRED(ft, y),
                                          TEST_REQUIRED(ft, mean), TEST_REQUIRED(ft, rstd)};
    const test_tensor_fault fwd_faults[] = {
        {"small y", MCL_ERR_BUFFER_TOO_SMALL, "y buffer holds 16 bytes", {{&ft.y, {small, 0}}}},
        {"weight past its buffer", MCL_ERR_BUFFER_TOO_SMALL, "weight buffer", {{&ft.weight, {in, 256}}}},
        {"small ln_weight", MCL_ERR_BUFFER_TOO_SMALL, "ln_weight buffer", {{&ft.ln_weight, {small, 0}}}},
        {"small bias", MCL_ERR_BUFFER_TOO_SMALL, "bias buffer", {{&ft.bias, {small, 0}}}},
        {"misaligned y", MCL_ERR_INVALID_ARGUMENT, "not a multiple", {{&ft.y, {out, 2}}}},
        {"y over x", MCL_ERR_INVALID_ARGUMENT, "output y overlaps x", {{&ft.y, {in, 64}}}},
        {"rstd over y", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&ft.rstd, {out, 80}}}},
    };
    mcl_ln_linear_bwd_tensors bt;
    const test_required bwd_required[] = {TEST_REQUIRED(bt, x), TEST_REQUIRED(bt, weight), TEST_REQUIRED(bt, mean),
                                          TEST_REQUIRED(bt, rstd), TEST_REQUIRED(bt, dy)};
    const test_tensor_fault bwd_faults[] = {
        {"no output", MCL_ERR_INVALID_ARGUMENT, "no output requested",
         {TEST_LEFT_OUT(bt, dx), TEST_LEFT_OUT(bt, dln_weight), TEST_LEFT_OUT(bt, dln_bias),
          TEST_LEFT_OUT(bt, dweight), TEST_LEFT_OUT(bt, dbias)}},
        {"small dweight", MCL_ERR_BUFFER_TOO_SMALL, "dweight buffer", {{&bt.dweight, {small, 0}}}},
        {"small dy", MCL_ERR_BUFFER_TOO_SMALL, "dy buffer", {{&bt.dy, {small, 0}}}},
        {"dx over weight and dy", MCL_ERR_INVALID_ARGUMENT, "output dx overlaps weight", {{&bt.dx, {in, 256}}}},
        {"dbias over the stats", MCL_ERR_INVALID_ARGUMENT, "output dbias overlaps mean", {{&bt.dbias, {out, 100}}}},
        {"dln_bias on dln_weight", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&bt.dln_bias, f.bt.dln_weight}}},
    };
    EXPECT_REFUSED_CALLS(&f.b, mcl_ln_linear_forward, f.desc, f.ft, ft, desc_faults, fwd_required, fwd_faults);
    EXPECT_REFUSED_CALLS(&f.b, mcl_ln_linear_backward, f.desc, f.bt, bt, desc_faults, bwd_required, bwd_faults);

    size_t bytes;
    assert_status(mcl_ln_linear_backward_workspace_size(f.b.ctx, &f.desc, &f.bt, NULL), MCL_ERR_NULL_POINTER);
    assert_status(mcl_ln_linear_backward_workspace_size(NULL, &f.desc, &f.bt, &bytes), MCL_ERR_NULL_POINTER);
    assert_status(mcl_ln_linear_backward_workspace_size(f.b.ctx, &desc_faults[1].desc, &f.bt, &bytes),
                  MCL_ERR_INVALID_SIZE);
    test_bad_buffers_release(&f.b);
}
