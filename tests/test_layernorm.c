/* LayerNorm forward and backward against the double-precision reference (the layernorm
 * workload, tests/workload/layernorm.c): shapes that fill no tile, every dtype, every parameter
 * variant, tensors inside larger buffers, in place, determinism, workspace and bad inputs. */
#include "common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { X, WEIGHT, BIAS, DY, Y, MEAN, RSTD, DX, DWEIGHT, DBIAS }; /* the workload's tensors */
enum { OPT_WEIGHT = 1, OPT_BIAS = 2 };

static wl_case case_of(size_t rows, size_t cols, mcl_dtype dtype, unsigned options)
{
    return (wl_case){{rows, cols}, dtype, options, WL_ALL, 0};
}

/* Shapes: size 1, non-multiples of every tile and vector width, the AF3 widths, 4096. */
static const size_t fixed_shapes[][2] = {
    {1, 1}, {1, 4096}, {3, 1}, {2, 3}, {7, 33}, {17, 128}, {37, 130}, {5, 384}, {300, 64},
    {4, 1000}, {2, 4095}, {129, 256},
};

/* Each dtype over the fixed shapes and fresh random ones, the weight and bias given or not, the
 * placements cycling (odd offsets keep the kernels to one element a load). */
Test(layernorm, matches_reference_over_shapes_and_dtypes, .timeout = 900)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (int dt = MCL_F32; dt <= MCL_F16; dt++) {
        for (size_t i = 0; i < COUNT_OF(fixed_shapes); i++) {
            unsigned options = (i % 2 ? OPT_WEIGHT : 0) | (i % 3 != 1 ? OPT_BIAS : 0);
            test_check_case(ctx, &wl_layernorm, case_of(fixed_shapes[i][0], fixed_shapes[i][1], (mcl_dtype)dt, options),
                            (int)(i + (size_t)dt) % WL_OFF_MODES, &rng, "default");
        }
        for (unsigned i = 0; i < 4; i++) { /* fresh random shapes on every run */
            size_t rows = 1 + (size_t)host_uniform(&rng, 0, 200), cols = 1 + (size_t)host_uniform(&rng, 0, 4096);
            test_check_case(ctx, &wl_layernorm, case_of(rows, cols, (mcl_dtype)dt, i), WL_OFF_ZERO, &rng, "random");
        }
    }
    mcl_context_release(ctx);
}

/* Every variant of the parameter space must be correct, not only the one the tables pick. */
Test(layernorm, every_parameter_variant_is_correct, .timeout = 900)
{
    static const char *const variants[] = {
        "VARIANT=0",
        "TPR=1,VEC=1,WG=32",
        "TPR=8,VEC=8,WG=64,GROUPS_PER_CU=1,REDUCE_SPLIT=1",
        "TPR=64,VEC=2,WG=256,GROUPS_PER_CU=32,REDUCE_SPLIT=32",
        "TPR=4,VEC=4,WG=128,GROUPS_PER_CU=2,REDUCE_SPLIT=4",
    };
    static const size_t shapes[][2] = {{1, 1}, {5, 77}, {33, 256}, {3, 1500}};
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (size_t v = 0; v < COUNT_OF(variants); v++) {
        assert_ok(mcl_context_set_params(ctx, "layernorm", variants[v]));
        for (size_t s = 0; s < COUNT_OF(shapes); s++) {
            wl_case c = case_of(shapes[s][0], shapes[s][1], (mcl_dtype)((v + s) % 3), OPT_WEIGHT | OPT_BIAS);
            test_check_case(ctx, &wl_layernorm, c, WL_OFF_VEC, &rng, variants[v]);
        }
    }
    mcl_context_release(ctx);
}

Test(layernorm, results_are_bitwise_identical_on_repeat)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    test_repeat_is_bitwise(ctx, &wl_layernorm, case_of(513, 200, MCL_F32, OPT_WEIGHT), WL_OFF_ZERO, &rng, "default");
    test_repeat_is_bitwise(ctx, &wl_layernorm, case_of(300, 130, MCL_BF16, OPT_WEIGHT | OPT_BIAS), WL_OFF_ODD, &rng,
                           "default");
    mcl_context_release(ctx);
}

/* The backward in place (dx written over dy) with the parameter gradients, in both variants:
 * dy must be read before it is overwritten (LayerNorm + Linear and Transition rely on it). */
Test(layernorm, backward_in_place_over_dy)
{
    static const char *const variants[] = {NULL, "VARIANT=0"};
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (int v = 0; v < 2; v++) {
        assert_ok(mcl_context_set_params(ctx, "layernorm", variants[v]));
        wl_problem *p = NULL;
        wl_case c = case_of(37, 50, v ? MCL_F16 : MCL_F32, OPT_WEIGHT);
        assert_ok(wl_create(&wl_layernorm, ctx, &c, &rng, &p));
        p->t[DX].alias = DY;
        assert_ok(wl_place(p, WL_OFF_ODD));
        test_run(p, variants[v]);
        wl_destroy(p);
    }
    mcl_context_release(ctx);
}

/* The forward in place (y written over x) at odd offsets: y is right and no byte outside the
 * tensors changes. */
Test(layernorm, forward_in_place_over_x)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (int dt = MCL_F32; dt <= MCL_F16; dt++) {
        wl_problem *p = NULL;
        wl_case c = case_of(9, 64, (mcl_dtype)dt, OPT_BIAS);
        assert_ok(wl_create(&wl_layernorm, ctx, &c, &rng, &p));
        p->t[Y].alias = X;
        assert_ok(wl_place(p, WL_OFF_ODD));
        assert_ok(wl_poison(p));
        assert_ok(wl_forward(p, NULL));
        wl_fetch_report r;
        assert_ok(wl_fetch(p, 1, &r));
        cr_expect_eq(r.stray_bytes, 0, "%s: bytes outside the tensors written", mcl_dtype_name(c.dtype));
        assert_ok(wl_reference(p));
        for (int i = Y; i <= RSTD; i++) {
            wl_error e = wl_compare(p, i);
            cr_expect_eq(e.bad, 0, "%s: %s relative error %.3g", mcl_dtype_name(c.dtype), wl_layernorm.tensors[i].name,
                         e.err);
        }
        wl_destroy(p);
    }
    mcl_context_release(ctx);
}

Test(layernorm, event_and_workspace_size)
{
    mcl_context *ctx = test_context();
    mcl_layernorm_desc desc = {1000, 96, MCL_F32, 1e-5f};
    size_t bytes = 0;
    assert_ok(mcl_layernorm_backward_workspace_size(ctx, &desc, &bytes));
    cr_assert_geq(bytes, 2 * 96 * sizeof(float), "at least one chunk of partials");
    host_rng rng = host_rng_seeded(test_seed());
    float *x = host_random(&rng, MCL_F32, 96000, -1, 1);
    cl_mem xm = host_upload(ctx, MCL_F32, x, 96000), ym = host_upload(ctx, MCL_F32, NULL, 96000);
    cl_mem mm = host_upload(ctx, MCL_F32, NULL, 1000), rm = host_upload(ctx, MCL_F32, NULL, 1000);
    cl_mem db = host_upload(ctx, MCL_F32, NULL, 96);
    cl_event event = NULL;
    mcl_layernorm_fwd_tensors ft = {.x = {xm, 0}, .y = {ym, 0}, .mean = {mm, 0}, .rstd = {rm, 0}};
    assert_ok(mcl_layernorm_forward(ctx, &desc, &ft, &event));
    test_wait_event(event);
    mcl_context_reset_peak(ctx);
    mcl_layernorm_bwd_tensors bt = {.x = {xm, 0}, .mean = {mm, 0}, .rstd = {rm, 0}, .dy = {xm, 0}, .dbias = {db, 0}};
    assert_ok(mcl_layernorm_backward(ctx, &desc, &bt, NULL));
    mcl_context_stats stats;
    mcl_context_get_stats(ctx, &stats);
    cr_assert_geq(stats.workspace_peak_bytes, bytes);
    cr_assert_eq(stats.workspace_bytes, stats.workspace_peak_bytes);
    assert_ok(mcl_context_trim(ctx));
    mcl_context_get_stats(ctx, &stats);
    cr_assert_eq(stats.workspace_bytes, 0);
    clReleaseMemObject(xm), clReleaseMemObject(ym), clReleaseMemObject(mm), clReleaseMemObject(rm), clReleaseMemObject(db);
    free(x);
    mcl_context_release(ctx);
}

/* ---- bad inputs: a specific status, a message, and outputs left untouched ------------------ */

enum { BAD_ROWS = 4, BAD_COLS = 384, BAD_N = BAD_ROWS * BAD_COLS };

typedef struct bad_fixture {
    TEST_BAD_FIXTURE_OF(layernorm);
    cl_mem x, y, small, stats, foreign; /* y, small, stats: TEST_OUT_BYTE */
} bad_fixture;

static bad_fixture bad_setup(void)
{
    /* NULL: these tests never checked that a message names the op (unchanged here) */
    bad_fixture f = {.b = test_bad_buffers_start(NULL)};
    f.x = test_bad_buffer(&f.b, BAD_N * 4, TEST_IN_BYTE);
    f.y = test_bad_buffer(&f.b, BAD_N * 4 + 64, TEST_OUT_BYTE);
    f.small = test_bad_buffer(&f.b, 1024, TEST_OUT_BYTE);
    f.stats = test_bad_buffer(&f.b, 2 * BAD_ROWS * 4, TEST_OUT_BYTE);
    f.foreign = test_foreign_buffer(&f.b, BAD_N * 4);
    f.desc = (mcl_layernorm_desc){BAD_ROWS, BAD_COLS, MCL_F32, 1e-5f};
    f.ft = (mcl_layernorm_fwd_tensors){.x = {f.x, 0}, .y = {f.y, 0}, .mean = {f.stats, 0},
                                       .rstd = {f.stats, BAD_ROWS * 4}};
    f.bt = (mcl_layernorm_bwd_tensors){.x = {f.x, 0}, .mean = {f.stats, 0}, .rstd = {f.stats, BAD_ROWS * 4},
                                       .dy = {f.x, 0}, .dx = {f.y, 0}};
    return f;
}

/* Descriptor faults, forward and backward alike. */
static const TEST_DESC_FAULT(mcl_layernorm_desc) desc_faults[] = {
    {{0, BAD_COLS, MCL_F32, 1e-5f}, MCL_ERR_INVALID_SIZE, "rows (0)", "zero rows"},
    {{BAD_ROWS, 0, MCL_F32, 1e-5f}, MCL_ERR_INVALID_SIZE, "cols (0)", "zero cols"},
    {{BAD_ROWS, BAD_COLS, (mcl_dtype)7, 1e-5f}, MCL_ERR_UNSUPPORTED_DTYPE, "dtype 7", "unknown dtype"},
    {{BAD_ROWS, BAD_COLS, MCL_F32, -1.0f}, MCL_ERR_INVALID_ARGUMENT, "eps", "negative eps"},
    {{BAD_ROWS, BAD_COLS, MCL_F32, NAN}, MCL_ERR_INVALID_ARGUMENT, "eps", "NaN eps"},
    {{SIZE_MAX / 2, 8, MCL_F32, 1e-5f}, MCL_ERR_SIZE_OVERFLOW, "overflows", "element count overflow"},
};

/* Every refused call of the forward and the backward, no buffer touched; the backward's size
 * function refuses what it cannot size. */
Test(layernorm, bad_inputs)
{
    bad_fixture f = bad_setup();
    mcl_layernorm_fwd_tensors ft;
    const test_required fwd_required[] = {TEST_REQUIRED(ft, x)};
    const test_tensor_fault fwd_faults[] = {
        {"small y", MCL_ERR_BUFFER_TOO_SMALL, "y buffer holds 1024 bytes", {{&ft.y, {f.small, 0}}}},
        {"y past its buffer", MCL_ERR_BUFFER_TOO_SMALL, "from offset 128", {{&ft.y, {f.y, 128}}}},
        {"misaligned offset", MCL_ERR_INVALID_ARGUMENT, "not a multiple", {{&ft.y, {f.y, 2}}}},
        {"small weight", MCL_ERR_BUFFER_TOO_SMALL, "weight", {{&ft.weight, {f.small, 1000}}}},
        {"mean without rstd", MCL_ERR_INVALID_ARGUMENT, "mean is given without rstd", {TEST_LEFT_OUT(ft, rstd)}},
        {"overlapping outputs", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&ft.rstd, {f.stats, 4}}}},
        {"y partly over x", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&ft.x, {f.y, 0}}, {&ft.y, {f.y, 64}}}},
        {"foreign buffer", MCL_ERR_INVALID_ARGUMENT, "another cl_context", {{&ft.x, {f.foreign, 0}}}},
    };
    mcl_layernorm_bwd_tensors bt;
    const test_required bwd_required[] = {TEST_REQUIRED(bt, mean)};
    const test_tensor_fault bwd_faults[] = {
        {"no output requested", MCL_ERR_INVALID_ARGUMENT, "no output requested", {TEST_LEFT_OUT(bt, dx)}},
        {"small dy", MCL_ERR_BUFFER_TOO_SMALL, NULL, {{&bt.dy, {f.small, 0}}}},
        {"dweight over dx", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&bt.dweight, {f.y, 0}}}},
    };
    EXPECT_REFUSED_CALLS(&f.b, mcl_layernorm_forward, f.desc, f.ft, ft, desc_faults, fwd_required, fwd_faults);
    EXPECT_REFUSED_CALLS(&f.b, mcl_layernorm_backward, f.desc, f.bt, bt, desc_faults, bwd_required, bwd_faults);
    mcl_layernorm_desc bf16 = f.desc;
    bf16.dtype = MCL_BF16;
    bt = f.bt, bt.dx = (mcl_tensor){f.y, 1};
    test_expect_refused(&f.b, "mcl_layernorm_backward", mcl_layernorm_backward(f.b.ctx, &bf16, &bt, NULL),
                        MCL_ERR_INVALID_ARGUMENT, NULL, "bf16 dx at an odd byte offset");

    size_t bytes;
    assert_status(mcl_layernorm_backward_workspace_size(f.b.ctx, &f.desc, NULL), MCL_ERR_NULL_POINTER);
    assert_status(mcl_layernorm_backward_workspace_size(f.b.ctx, &desc_faults[1].desc, &bytes), MCL_ERR_INVALID_SIZE);
    test_bad_buffers_release(&f.b);
}
