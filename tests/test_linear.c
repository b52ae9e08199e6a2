/* Linear forward and backward against the double-precision reference (the linear workload,
 * tests/workload/linear.c): sizes that fill no tile and size 1, every combination of the bias,
 * the residual and dx_acc, in place, each gradient alone, the split-K variant, determinism and
 * bad inputs. Every tensor lies inside its own buffer between guard bytes; outputs are poisoned
 * (NaN) before each run. */
#include "common.h"

#include "ref/linear_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The workload's tensors and options, and the bit of each gradient in a case's want. */
enum { T_X, T_WEIGHT, T_BIAS, T_RESIDUAL, T_DY, T_DX_ACC, T_Y, T_DX, T_DWEIGHT, T_DBIAS };
enum { OPT_BIAS = 1, OPT_RESIDUAL = 2, OPT_DX_ACC = 4, OPT_ALL = 7 };
#define WANT(t) (1u << ((t) - T_DX))

typedef struct shape {
    size_t rows, in, out;
    mcl_dtype dtype;
} shape;

static wl_case make_case(shape sh, unsigned want, unsigned options)
{
    return (wl_case){{sh.rows, sh.in, sh.out}, sh.dtype, options, want, 0};
}

/* Size 1, sizes that are multiples of no tile, and the pair stack's projections at small scale
 * (K = 128, N = 128 and N = 4); fp32 takes all of them, the 16-bit dtypes a few: every GEMM shape
 * class is a program PoCL takes about a second to build. */
static const shape shapes[] = {
    {1, 1, 1, MCL_F32},     {3, 5, 4, MCL_F32},      {77, 130, 16, MCL_F32},  {300, 64, 33, MCL_F32},
    {1, 64, 100, MCL_F32},  {600, 128, 128, MCL_F32}, {600, 128, 4, MCL_F32}, {300, 5, 100, MCL_BF16},
    {77, 130, 16, MCL_F16}, {600, 128, 128, MCL_BF16},
};

Test(linear, matches_reference_over_shapes_options_and_dtypes, .timeout = 600)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (size_t k = 0; k < COUNT_OF(shapes); k++)
        test_check_case(ctx, &wl_linear, make_case(shapes[k], WL_ALL, (unsigned)k % 8), k % 2 ? WL_OFF_ODD : WL_OFF_VEC,
                        &rng, "default");
    mcl_context_release(ctx);
}

/* y over the residual and dx over dx_acc: the forward adds to the residual and the backward to
 * dx_acc in place; every dtype. */
Test(linear, in_place_onto_the_residual_and_dx_acc, .timeout = 600)
{
    static const test_alias aliases[] = {{T_Y, T_RESIDUAL}, {T_DX, T_DX_ACC}};
    static const shape per_dtype[] = {{300, 128, 128, MCL_F32}, {77, 130, 16, MCL_BF16}, {77, 130, 16, MCL_F16}};
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (size_t d = 0; d < COUNT_OF(per_dtype); d++)
        test_check_in_place(ctx, &wl_linear, make_case(per_dtype[d], WL_ALL, OPT_ALL), (int)d % WL_OFF_MODES, &rng,
                            aliases, COUNT_OF(aliases), 0);
    mcl_context_release(ctx);
}

/* Each gradient asked for alone (dx with and without dx_acc). */
Test(linear, each_backward_output_alone, .timeout = 600)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    shape sh = {77, 130, 16, MCL_F32};
    for (int t = T_DX; t <= T_DBIAS; t++) test_check_case(ctx, &wl_linear, make_case(sh, WANT(t), OPT_BIAS), t % 2, &rng, "default");
    test_check_case(ctx, &wl_linear, make_case(sh, WANT(T_DX), OPT_DX_ACC), WL_OFF_MIXED, &rng, "default");
    mcl_context_release(ctx);
}

/* 16 x 16 tiles and 8 waves split K in every GEMM: the residual and dx_acc are then added by the
 * sum of the splits, and dweight's sum over rows comes from partials. */
#define SPLIT_VARIANT "BM=16,BN=16,BK=4,TM=4,TN=4,SPLIT_WAVES=8"

Test(linear, split_k_adds_the_residual_once, .timeout = 600)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    assert_ok(mcl_context_set_params(ctx, "gemm", SPLIT_VARIANT));
    test_check_case(ctx, &wl_linear, make_case((shape){3, 60, 100, MCL_F32}, WL_ALL, OPT_ALL), WL_OFF_VEC, &rng,
                    SPLIT_VARIANT);
    test_check_case(ctx, &wl_linear, make_case((shape){2000, 24, 8, MCL_BF16}, WL_ALL, OPT_ALL), WL_OFF_ODD, &rng,
                    SPLIT_VARIANT);
    mcl_context_release(ctx);
}

/* The tensor-core kernel against the reference, bf16 and f16, with tiles of 2, 4 and 8 warps,
 * edges, unaligned operands (checked loads), split K and every epilogue (bias, residual,
 * dx_acc): with mma.sync emulated (MMA=2) on any device, which checks its fragment layouts and
 * warp tiles, and with the instruction itself (MMA=1) where the device's probe passed. */
static const char *const mma_variants[] = {"MMA=2,BM=32,BN=32,BK=16,TM=4,TN=4,PREFETCH=0",
                                           "MMA=2,BM=64,BN=32,BK=32,TM=4,TN=4,SPLIT_WAVES=8",
                                           "MMA=2,BM=128,BN=128,BK=16,TM=8,TN=8",
                                           "MMA=1,BM=32,BN=32,BK=16,TM=4,TN=4,PREFETCH=0",
                                           "MMA=1,BM=64,BN=32,BK=32,TM=4,TN=4,SPLIT_WAVES=8",
                                           "MMA=1,BM=128,BN=128,BK=32,TM=8,TN=8,PREFETCH=0"};

Test(linear, tensor_core_kernel_matches_reference, .timeout = 600)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    static const shape mma_shapes[] = {{77, 130, 45, MCL_BF16}, {64, 32, 32, MCL_F16}, {300, 5, 100, MCL_BF16},
                                       {33, 64, 17, MCL_F16}, {600, 128, 128, MCL_BF16}};
    int has_mma = mcl_context_device(ctx)->has_mma_sync;
    for (size_t v = 0; v < COUNT_OF(mma_variants); v++) {
        if (strncmp(mma_variants[v], "MMA=1", 5) == 0 && !has_mma) { /* the instruction is refused there */
            cr_expect_neq(mcl_context_set_params(ctx, "gemm", mma_variants[v]), MCL_OK, "%s without mma.sync",
                          mma_variants[v]);
            continue;
        }
        assert_ok(mcl_context_set_params(ctx, "gemm", mma_variants[v]));
        for (size_t k = 0; k < COUNT_OF(mma_shapes); k++)
            test_check_case(ctx, &wl_linear, make_case(mma_shapes[k], WL_ALL, (unsigned)(k + v) % 8),
                            (int)(k + v) % WL_OFF_MODES, &rng, mma_variants[v]);
    }
    mcl_context_release(ctx);
}

/* f32 in tf32 on the tensor cores (emulated), where the context allows it: the operands lose 13
 * bits of mantissa, so y is held to tf32's precision (2^-11 relative per operand, over sums of
 * K products of random signs) against the double reference; without the allowance the same
 * parameters give the FMA kernel's fp32 result, to fp32's precision. */
static double tf32_linear_error(mcl_context *ctx, size_t rows, size_t in, size_t out, host_rng *rng)
{
    float *x = host_random(rng, MCL_F32, rows * in, -1.0f, 1.0f), *w = host_random(rng, MCL_F32, in * out, -1.0f, 1.0f);
    float *y = malloc(rows * out * sizeof *y);
    double *ref = malloc(rows * out * sizeof *ref);
    cr_assert(x && w && y && ref);
    cl_mem xb = host_upload(ctx, MCL_F32, x, rows * in), wb = host_upload(ctx, MCL_F32, w, in * out),
           yb = host_upload(ctx, MCL_F32, NULL, rows * out);
    mcl_linear_desc d = {rows, in, out, MCL_F32};
    mcl_linear_fwd_tensors t = {.x = {xb, 0}, .weight = {wb, 0}, .y = {yb, 0}};
    assert_ok(mcl_linear_forward(ctx, &d, &t, NULL));
    host_download(ctx, yb, MCL_F32, y, rows * out);
    ref_linear_problem p = {rows, in, out, x, w, NULL, NULL, NULL, NULL};
    ref_linear_forward(&p, ref);
    double diff = 0.0, norm = 0.0;
    for (size_t i = 0; i < rows * out; i++) diff += (y[i] - ref[i]) * (y[i] - ref[i]), norm += ref[i] * ref[i];
    clReleaseMemObject(xb), clReleaseMemObject(wb), clReleaseMemObject(yb);
    free(x), free(w), free(y), free(ref);
    return sqrt(diff / norm);
}

Test(linear, tf32_on_the_tensor_cores_only_where_allowed, .timeout = 300)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    assert_ok(mcl_context_set_params(ctx, "gemm", "MMA=2,BM=32,BN=32,BK=16,TM=4,TN=4"));
    double fp32 = tf32_linear_error(ctx, 77, 130, 45, &rng);
    assert_ok(mcl_context_allow_tf32(ctx, 1));
    double tf32 = tf32_linear_error(ctx, 77, 130, 45, &rng);
    cr_log_info("relative errors: fp32 %g, tf32 %g\n", fp32, tf32);
    cr_expect_lt(fp32, 1e-6, "fp32 (tf32 not allowed): relative error %g", fp32);
    cr_expect_lt(tf32, 2e-3, "tf32: relative error %g", tf32);
    cr_expect_gt(tf32, 1e-5, "tf32 was not used: relative error %g", tf32);
    assert_ok(mcl_context_allow_tf32(ctx, 0));
    double again = tf32_linear_error(ctx, 77, 130, 45, &rng);
    cr_expect_lt(again, 1e-6, "fp32 again: relative error %g", again);
    assert_status(mcl_context_allow_tf32(NULL, 1), MCL_ERR_NULL_POINTER);
    mcl_context_release(ctx);
}

/* Forward and backward twice on the same inputs, default and split parameters: every output's
 * bytes must be identical. */
Test(linear, results_are_bitwise_identical_on_repeat, .timeout = 300)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    static const char *const variants[] = {NULL, SPLIT_VARIANT};
    for (int v = 0; v < 2; v++) {
        assert_ok(mcl_context_set_params(ctx, "gemm", variants[v]));
        shape sh = {2000, 24, 8, v ? MCL_F16 : MCL_F32};
        test_repeat_is_bitwise(ctx, &wl_linear, make_case(sh, WL_ALL, OPT_ALL), WL_OFF_VEC, &rng, variants[v]);
    }
    mcl_context_release(ctx);
}

/* ---- the reference itself ------------------------------------------------------------- */

/* L = sum dy . y by the reference forward */
static double loss(const void *problem)
{
    const ref_linear_problem *p = problem;
    double *y = malloc(p->rows * p->out * sizeof *y), l = 0.0;
    ref_linear_forward(p, y);
    for (size_t i = 0; i < p->rows * p->out; i++) l += p->dy[i] * y[i];
    free(y);
    return l;
}

/* Its gradients are those of L (dx_acc absent: dx is dL/dx alone). */
Test(linear, reference_matches_finite_differences)
{
    enum { R = 3, IN = 7, OUT = 5 };
    host_rng rng = host_rng_seeded(test_seed());
    float x[R * IN], w[IN * OUT], b[OUT], r[R * OUT], dy[R * OUT];
    host_fill_uniform(&rng, x, R * IN, -2, 3), host_fill_uniform(&rng, w, IN * OUT, -1, 1);
    host_fill_uniform(&rng, b, OUT, -1, 1), host_fill_uniform(&rng, r, R * OUT, -1, 1);
    host_fill_uniform(&rng, dy, R * OUT, -1, 1);
    ref_linear_problem p = {R, IN, OUT, x, w, b, r, dy, NULL};
    double dx[R * IN], dw[IN * OUT], db[OUT];
    ref_linear_backward(&p, dx, dw, db);
    const test_fd_gradient g[] = {{"x", x, R * IN, dx}, {"weight", w, IN * OUT, dw}, {"bias", b, OUT, db}};
    test_expect_fd_gradients(loss, &p, g, COUNT_OF(g), 1.0f / 4096, 1e-6);
}

/* ---- bad inputs: a specific status, a message, and no buffer touched ------------------------ */

enum { BR = 4, BI = 8, BO = 6 };
/* inputs: x [BR,BI] @0, weight [BI,BO] @128, dy [BR,BO] @320, residual [BR,BO] @416,
 * dx_acc [BR,BI] @512 (640 bytes); outputs: y [BR,BO] @0, dx [BR,BI] @96, dweight [BI,BO] @224,
 * dbias [BO] @416 (448 bytes) */
enum { IN_BYTES = 640, OUT_BYTES = 448 };

typedef struct bad_fixture {
    TEST_BAD_FIXTURE_OF(linear);
} bad_fixture;

static bad_fixture bad_setup(void)
{
    bad_fixture f = {.b = test_bad_buffers_make("linear", IN_BYTES, OUT_BYTES)};
    cl_mem i = f.b.in, o = f.b.out;
    f.desc = (mcl_linear_desc){BR, BI, BO, MCL_F32};
    f.ft = (mcl_linear_fwd_tensors){.x = {i, 0}, .weight = {i, 128}, .residual = {i, 416}, .y = {o, 0}};
    f.bt = (mcl_linear_bwd_tensors){.x = {i, 0}, .weight = {i, 128}, .dy = {i, 320}, .dx_acc = {i, 512},
                                    .dx = {o, 96}, .dweight = {o, 224}, .dbias = {o, 416}};
    return f;
}

/* Descriptor faults, forward and backward alike. */
static const TEST_DESC_FAULT(mcl_linear_desc) desc_faults[] = {
    {{0, BI, BO, MCL_F32}, MCL_ERR_INVALID_SIZE, "rows (0)", "zero rows"},
    {{BR, 0, BO, MCL_F32}, MCL_ERR_INVALID_SIZE, "in_features (0)", "zero in_features"},
    {{BR, BI, 0, MCL_F32}, MCL_ERR_INVALID_SIZE, "out_features (0)", "zero out_features"},
    {{BR, BI, BO, (mcl_dtype)7}, MCL_ERR_UNSUPPORTED_DTYPE, "dtype 7", "unknown dtype"},
    {{SIZE_MAX / 2, BI, BO, MCL_F32}, MCL_ERR_SIZE_OVERFLOW, "overflows", "element count overflow"},
};

/* Every refused call of the forward and the backward, no buffer touched; the size function
 * refuses what it cannot size. */
Test(linear, bad_inputs)
{
    bad_fixture f = bad_setup();
    cl_mem in = f.b.in, out = f.b.out, small = f.b.small;
    mcl_linear_fwd_tensors ft;
    const test_required fwd_required[] = {TEST_REQUIRED(ft, x), TEST_REQUIRED(ft, weight), TEST_REQUIRED(ft, y)};
    const test_tensor_fault fwd_faults[] = {
        {"small y", MCL_ERR_BUFFER_TOO_SMALL, "y buffer holds 16 bytes", {{&ft.y, {small, 0}}}},
        {"weight past its buffer", MCL_ERR_BUFFER_TOO_SMALL, "weight buffer", {{&ft.weight, {in, 512}}}},
        {"small bias", MCL_ERR_BUFFER_TOO_SMALL, "bias buffer", {{&ft.bias, {small, 0}}}},
        {"small residual", MCL_ERR_BUFFER_TOO_SMALL, "residual buffer", {{&ft.residual, {small, 0}}}},
        {"misaligned y", MCL_ERR_INVALID_ARGUMENT, "not a multiple", {{&ft.y, {out, 2}}}},
        {"y over x", MCL_ERR_INVALID_ARGUMENT, "output y overlaps x", {{&ft.y, {in, 64}}}},
        {"y partly over the residual", MCL_ERR_INVALID_ARGUMENT, "output y overlaps residual",
         {{&ft.residual, {out, 0}}, {&ft.y, {out, 4}}}},
    };
    mcl_linear_bwd_tensors bt;
    const test_required bwd_required[] = {TEST_REQUIRED(bt, x), TEST_REQUIRED(bt, weight), TEST_REQUIRED(bt, dy)};
    const test_tensor_fault bwd_faults[] = {
        {"no output", MCL_ERR_INVALID_ARGUMENT, "no output requested",
         {TEST_LEFT_OUT(bt, dx_acc), TEST_LEFT_OUT(bt, dx), TEST_LEFT_OUT(bt, dweight), TEST_LEFT_OUT(bt, dbias)}},
        {"dx_acc without dx", MCL_ERR_INVALID_ARGUMENT, "dx_acc is given without dx", {TEST_LEFT_OUT(bt, dx)}},
        {"small dweight", MCL_ERR_BUFFER_TOO_SMALL, "dweight buffer", {{&bt.dweight, {small, 0}}}},
        {"small dx_acc", MCL_ERR_BUFFER_TOO_SMALL, "dx_acc buffer", {{&bt.dx_acc, {small, 0}}}},
        {"dx over weight", MCL_ERR_INVALID_ARGUMENT, "output dx overlaps weight", {{&bt.dx, {in, 128}}}},
        {"dx over dy (only dx_acc may be dx)", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&bt.dx, {in, 320}}}},
        {"dbias on dweight", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&bt.dbias, f.bt.dweight}}},
    };
    EXPECT_REFUSED_CALLS(&f.b, mcl_linear_forward, f.desc, f.ft, ft, desc_faults, fwd_required, fwd_faults);
    EXPECT_REFUSED_CALLS(&f.b, mcl_linear_backward, f.desc, f.bt, bt, desc_faults, bwd_required, bwd_faults);

    size_t fwd, bwd;
    assert_status(mcl_linear_workspace_size(f.b.ctx, &f.desc, &fwd, NULL), MCL_ERR_NULL_POINTER);
    assert_status(mcl_linear_workspace_size(NULL, &f.desc, &fwd, &bwd), MCL_ERR_NULL_POINTER);
    assert_status(mcl_linear_workspace_size(f.b.ctx, &desc_faults[1].desc, &fwd, &bwd), MCL_ERR_INVALID_SIZE);
    test_bad_buffers_release(&f.b);
}

TEST_EVENTS_RETURNED(linear)
