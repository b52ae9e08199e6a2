/* SwiGLU forward and backward against the double-precision reference (the swiglu workload,
 * tests/workload/swiglu.c): both SiLU halves, shapes that fill no vector or work-group, tensors
 * inside larger buffers, saturated inputs, every parameter variant, determinism and bad inputs. */
#include "common.h"

#include <stdint.h>

enum { OPT_SILU_SECOND = 1, OPT_SATURATE = 2 }; /* the workload's options */

static wl_case case_of(size_t rows, size_t features, mcl_dtype dtype, mcl_swiglu_half half, unsigned options)
{
    unsigned silu = half == MCL_SWIGLU_SILU_SECOND ? OPT_SILU_SECOND : 0;
    return (wl_case){{rows, features}, dtype, options | silu, WL_ALL, 0};
}

/* ---- correctness ------------------------------------------------------------------------ */

Test(swiglu, matches_reference_over_shapes_dtypes_halves_and_offsets)
{
    static const size_t rows[] = {1, 7, 300}, features[] = {1, 3, 64, 127, 512};
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (int dt = MCL_F32; dt <= MCL_F16; dt++)
        for (size_t r = 0; r < COUNT_OF(rows); r++)
            for (size_t f = 0; f < COUNT_OF(features); f++)
                for (int h = MCL_SWIGLU_SILU_FIRST; h <= MCL_SWIGLU_SILU_SECOND; h++) {
                    wl_case c = case_of(rows[r], features[f], (mcl_dtype)dt, (mcl_swiglu_half)h, 0);
                    test_check_case(ctx, &wl_swiglu, c, (int)(r + f + (size_t)h) % WL_OFF_MODES, &rng, "default");
                }
    mcl_context_release(ctx);
}

/* SiLU inputs of +-8 to +-1e4: exp overflows in fp32, results must stay finite and right. */
Test(swiglu, saturated_inputs_stay_finite_and_right)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (int dt = MCL_F32; dt <= MCL_F16; dt++)
        for (int h = MCL_SWIGLU_SILU_FIRST; h <= MCL_SWIGLU_SILU_SECOND; h++)
            test_check_case(ctx, &wl_swiglu, case_of(7, 120, (mcl_dtype)dt, (mcl_swiglu_half)h, OPT_SATURATE),
                            WL_OFF_ZERO, &rng, "default");
    mcl_context_release(ctx);
}

/* Under each glu variant: these shapes, the dtype and the SiLU half changing from one to the next. */
static const size_t variant_shapes[][2] = {{1, 3}, {7, 127}, {300, 64}, {3, 512}};

static wl_case variant_case(size_t vec, size_t group, size_t i)
{
    return case_of(variant_shapes[i][0], variant_shapes[i][1], (mcl_dtype)((vec + group + i) % 3),
                   (mcl_swiglu_half)((group + i) % 2), 0);
}

Test(swiglu, every_parameter_variant_is_correct)
{
    test_each_glu_variant(&wl_swiglu, COUNT_OF(variant_shapes), variant_case);
}

/* Twice on the same inputs, bit for bit; and those inputs against the reference. */
Test(swiglu, results_are_bitwise_identical_on_repeat)
{
    test_repeat_and_check_each_dtype(&wl_swiglu, case_of(300, 127, MCL_F32, MCL_SWIGLU_SILU_SECOND, 0), WL_OFF_MIXED);
}

/* ---- bad inputs: a specific status, a message, and outputs left untouched ------------------ */

enum { BAD_ROWS = 4, BAD_F = 96, BAD_HALF = BAD_ROWS * BAD_F * 4 };

typedef struct bad_fixture {
    TEST_BAD_FIXTURE_OF(swiglu);
    cl_mem x, dy, y, dx, small; /* y, dx, small: TEST_OUT_BYTE, 64 bytes of slack after y and dx */
} bad_fixture;

static bad_fixture bad_setup(void)
{
    bad_fixture f = {.b = test_bad_buffers_start("swiglu")};
    f.x = test_bad_buffer(&f.b, 2 * BAD_HALF, TEST_IN_BYTE);
    f.dy = test_bad_buffer(&f.b, BAD_HALF, TEST_IN_BYTE);
    f.y = test_bad_buffer(&f.b, BAD_HALF + 64, TEST_OUT_BYTE);
    f.dx = test_bad_buffer(&f.b, 2 * BAD_HALF + 64, TEST_OUT_BYTE);
    f.small = test_bad_buffer(&f.b, 64, TEST_OUT_BYTE);
    f.desc = (mcl_swiglu_desc){BAD_ROWS, BAD_F, MCL_F32, MCL_SWIGLU_SILU_FIRST};
    f.ft = (mcl_swiglu_fwd_tensors){.x = {f.x, 0}, .y = {f.y, 0}};
    f.bt = (mcl_swiglu_bwd_tensors){.x = {f.x, 0}, .dy = {f.dy, 0}, .dx = {f.dx, 0}};
    return f;
}

/* Descriptor faults, forward and backward alike. */
static const TEST_DESC_FAULT(mcl_swiglu_desc) desc_faults[] = {
    {{0, BAD_F, MCL_F32, 0}, MCL_ERR_INVALID_SIZE, "rows", "zero rows"},
    {{BAD_ROWS, 0, MCL_F32, 0}, MCL_ERR_INVALID_SIZE, "features", "zero features"},
    {{BAD_ROWS, BAD_F, (mcl_dtype)7, 0}, MCL_ERR_UNSUPPORTED_DTYPE, "dtype", "unknown dtype"},
    {{BAD_ROWS, BAD_F, MCL_F32, (mcl_swiglu_half)2}, MCL_ERR_INVALID_ARGUMENT, "silu_half", "silu_half 2"},
    {{BAD_ROWS, BAD_F, MCL_F32, (mcl_swiglu_half)-1}, MCL_ERR_INVALID_ARGUMENT, "silu_half", "silu_half -1"},
    {{SIZE_MAX / 4, 8, MCL_F32, 0}, MCL_ERR_SIZE_OVERFLOW, "overflows", "element count overflow"},
};

/* 2 x features wraps to 0: the call must fail, as an overflow or as a size past a limit. */
static void expect_features_overflow_refused(const bad_fixture *f, const char *call, mcl_status got)
{
    mcl_status expected = got == MCL_ERR_INVALID_SIZE ? got : MCL_ERR_SIZE_OVERFLOW;
    test_expect_refused(&f->b, call, got, expected, NULL, "2 x features overflows");
}

static const mcl_swiglu_desc features_overflow = {1, SIZE_MAX / 2 + 1, MCL_F32, MCL_SWIGLU_SILU_FIRST};

/* Every refused call of the forward and the backward, no buffer touched. */
Test(swiglu, bad_inputs)
{
    bad_fixture f = bad_setup();
    mcl_swiglu_fwd_tensors ft;
    const test_required fwd_required[] = {TEST_REQUIRED(ft, x), TEST_REQUIRED(ft, y)};
    const test_tensor_fault fwd_faults[] = {
        /* [rows, features]: half what x needs */
        {"x sized [rows, features]", MCL_ERR_BUFFER_TOO_SMALL, "x buffer holds 1536 bytes", {{&ft.x, {f.dy, 0}}}},
        {"small y", MCL_ERR_BUFFER_TOO_SMALL, "y buffer holds 64 bytes", {{&ft.y, {f.small, 0}}}},
        {"y past its buffer", MCL_ERR_BUFFER_TOO_SMALL, "from offset 128", {{&ft.y, {f.y, 128}}}},
        {"misaligned y offset", MCL_ERR_INVALID_ARGUMENT, "not a multiple", {{&ft.y, {f.y, 2}}}},
        {"y over the start of x", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&ft.x, {f.dx, 0}}, {&ft.y, {f.dx, 0}}}},
        {"y over the second half of x", MCL_ERR_INVALID_ARGUMENT, "overlaps",
         {{&ft.x, {f.dx, 0}}, {&ft.y, {f.dx, BAD_HALF}}}},
    };
    mcl_swiglu_bwd_tensors bt;
    const test_required bwd_required[] = {TEST_REQUIRED(bt, x), TEST_REQUIRED(bt, dy), TEST_REQUIRED(bt, dx)};
    const test_tensor_fault bwd_faults[] = {
        /* [rows, features] and slack: about half of [rows, 2F] */
        {"dx sized [rows, features]", MCL_ERR_BUFFER_TOO_SMALL, "dx buffer holds 1600 bytes", {{&bt.dx, {f.y, 0}}}},
        {"small dy", MCL_ERR_BUFFER_TOO_SMALL, "dy buffer holds 64 bytes", {{&bt.dy, {f.small, 0}}}},
        {"misaligned dx offset", MCL_ERR_INVALID_ARGUMENT, "not a multiple", {{&bt.dx, {f.dx, 2}}}},
        {"dx over x", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&bt.x, {f.dx, 0}}}},
        {"dx over dy", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&bt.dy, {f.dx, BAD_HALF}}}},
    };
    EXPECT_REFUSED_CALLS(&f.b, mcl_swiglu_forward, f.desc, f.ft, ft, desc_faults, fwd_required, fwd_faults);
    expect_features_overflow_refused(&f, "mcl_swiglu_forward",
                                     mcl_swiglu_forward(f.b.ctx, &features_overflow, &f.ft, NULL));
    EXPECT_REFUSED_CALLS(&f.b, mcl_swiglu_backward, f.desc, f.bt, bt, desc_faults, bwd_required, bwd_faults);
    expect_features_overflow_refused(&f, "mcl_swiglu_backward",
                                     mcl_swiglu_backward(f.b.ctx, &features_overflow, &f.bt, NULL));
    test_bad_buffers_release(&f.b);
}

TEST_EVENTS_RETURNED(swiglu)
