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

Test(swiglu, event_is_the_ops_last)
{
    enum { ROWS = 5, F = 33 };
    mcl_context *ctx = test_context();
    cl_mem x = test_buffer(ctx, ROWS * 2 * F * 4, 0), y = test_buffer(ctx, ROWS * F * 4, 0);
    cl_mem dx = test_buffer(ctx, ROWS * 2 * F * 4, 0);
    mcl_swiglu_desc desc = {ROWS, F, MCL_F32, MCL_SWIGLU_SILU_FIRST};
    mcl_swiglu_fwd_tensors ft = {.x = {x, 0}, .y = {y, 0}};
    mcl_swiglu_bwd_tensors bt = {.x = {x, 0}, .dy = {y, 0}, .dx = {dx, 0}};
    cl_event fwd = NULL, bwd = NULL;
    assert_ok(mcl_swiglu_forward(ctx, &desc, &ft, &fwd));
    assert_ok(mcl_swiglu_backward(ctx, &desc, &bt, &bwd));
    test_wait_event(fwd), test_wait_event(bwd);
    clReleaseMemObject(x), clReleaseMemObject(y), clReleaseMemObject(dx);
    mcl_context_release(ctx);
}

/* ---- bad inputs: a specific status, a message, and outputs left untouched ------------------ */

enum { BAD_ROWS = 4, BAD_F = 96, BAD_HALF = BAD_ROWS * BAD_F * 4, BAD_BYTE = 0x3c };

typedef struct bad_fixture {
    mcl_context *ctx;
    cl_mem x, dy, y, dx, small; /* y, dx, small: BAD_BYTE, 64 bytes of slack after y and dx */
    mcl_swiglu_desc desc;
    mcl_swiglu_fwd_tensors ft;
    mcl_swiglu_bwd_tensors bt;
} bad_fixture;

static bad_fixture bad_setup(void)
{
    bad_fixture f;
    f.ctx = test_context();
    f.x = test_buffer(f.ctx, 2 * BAD_HALF, 0x11);
    f.dy = test_buffer(f.ctx, BAD_HALF, 0x11);
    f.y = test_buffer(f.ctx, BAD_HALF + 64, BAD_BYTE);
    f.dx = test_buffer(f.ctx, 2 * BAD_HALF + 64, BAD_BYTE);
    f.small = test_buffer(f.ctx, 64, BAD_BYTE);
    f.desc = (mcl_swiglu_desc){BAD_ROWS, BAD_F, MCL_F32, MCL_SWIGLU_SILU_FIRST};
    f.ft = (mcl_swiglu_fwd_tensors){.x = {f.x, 0}, .y = {f.y, 0}};
    f.bt = (mcl_swiglu_bwd_tensors){.x = {f.x, 0}, .dy = {f.dy, 0}, .dx = {f.dx, 0}};
    return f;
}

static void bad_teardown(bad_fixture *f)
{
    cl_mem mems[] = {f->x, f->dy, f->y, f->dx, f->small};
    for (size_t i = 0; i < COUNT_OF(mems); i++) clReleaseMemObject(mems[i]);
    mcl_context_release(f->ctx);
}

static void expect_bad(bad_fixture *f, mcl_status got, mcl_status expected, const char *needle, const char *label)
{
    test_expect_status(got, expected, "swiglu", needle, label);
    const test_filled outs[] = {{f->y, BAD_HALF + 64, BAD_BYTE}, {f->dx, 2 * BAD_HALF + 64, BAD_BYTE},
                                {f->small, 64, BAD_BYTE}};
    test_expect_untouched(f->ctx, outs, COUNT_OF(outs), label);
}

#define EXPECT_FWD(d, t, status, needle, label) \
    expect_bad(&f, mcl_swiglu_forward(f.ctx, &(d), &(t), NULL), status, needle, label)
#define EXPECT_BWD(d, t, status, needle, label) \
    expect_bad(&f, mcl_swiglu_backward(f.ctx, &(d), &(t), NULL), status, needle, label)

/* desc faults shared by forward and backward */
typedef struct desc_fault {
    const char *label;
    mcl_status status, also; /* also: another acceptable status */
    const char *needle;
    size_t rows, features;
    int dtype, silu_half;
} desc_fault;

static const desc_fault desc_faults[] = {
    {"zero rows", MCL_ERR_INVALID_SIZE, MCL_ERR_INVALID_SIZE, "rows", 0, BAD_F, MCL_F32, 0},
    {"zero features", MCL_ERR_INVALID_SIZE, MCL_ERR_INVALID_SIZE, "features", BAD_ROWS, 0, MCL_F32, 0},
    {"unknown dtype", MCL_ERR_UNSUPPORTED_DTYPE, MCL_ERR_UNSUPPORTED_DTYPE, "dtype", BAD_ROWS, BAD_F, 7, 0},
    {"silu_half 2", MCL_ERR_INVALID_ARGUMENT, MCL_ERR_INVALID_ARGUMENT, "silu_half", BAD_ROWS, BAD_F, MCL_F32, 2},
    {"silu_half -1", MCL_ERR_INVALID_ARGUMENT, MCL_ERR_INVALID_ARGUMENT, "silu_half", BAD_ROWS, BAD_F, MCL_F32, -1},
    {"element count overflow", MCL_ERR_SIZE_OVERFLOW, MCL_ERR_SIZE_OVERFLOW, "overflows", SIZE_MAX / 4, 8, MCL_F32, 0},
    /* 2 * features wraps to 0: must fail, as an overflow or as a size past a limit */
    {"2 x features overflows", MCL_ERR_SIZE_OVERFLOW, MCL_ERR_INVALID_SIZE, NULL, 1, SIZE_MAX / 2 + 1, MCL_F32, 0},
};

static mcl_swiglu_desc faulty(const desc_fault *f)
{
    return (mcl_swiglu_desc){f->rows, f->features, (mcl_dtype)f->dtype, (mcl_swiglu_half)f->silu_half};
}

static void expect_fault(bad_fixture *f, const desc_fault *fault, mcl_status got)
{
    expect_bad(f, got, got == fault->also ? got : fault->status, fault->needle, fault->label);
}

Test(swiglu, bad_forward_inputs)
{
    bad_fixture f = bad_setup();
    mcl_swiglu_desc d = f.desc;
    mcl_swiglu_fwd_tensors t = f.ft;
    assert_null_args_rejected(mcl_swiglu_forward, f.ctx, &d, &t);
    for (size_t i = 0; i < COUNT_OF(desc_faults); i++) {
        mcl_swiglu_desc bad = faulty(&desc_faults[i]);
        expect_fault(&f, &desc_faults[i], mcl_swiglu_forward(f.ctx, &bad, &t, NULL));
    }

    t = f.ft, t.x.mem = NULL;
    EXPECT_FWD(d, t, MCL_ERR_NULL_POINTER, "x is required", "missing x");
    t = f.ft, t.y.mem = NULL;
    EXPECT_FWD(d, t, MCL_ERR_NULL_POINTER, "y is required", "missing y");
    t = f.ft, t.x = (mcl_tensor){f.dy, 0}; /* [rows, features]: half what x needs */
    EXPECT_FWD(d, t, MCL_ERR_BUFFER_TOO_SMALL, "x buffer holds 1536 bytes", "x sized [rows, features]");
    t = f.ft, t.y = (mcl_tensor){f.small, 0};
    EXPECT_FWD(d, t, MCL_ERR_BUFFER_TOO_SMALL, "y buffer holds 64 bytes", "small y");
    t = f.ft, t.y = (mcl_tensor){f.y, 128};
    EXPECT_FWD(d, t, MCL_ERR_BUFFER_TOO_SMALL, "from offset 128", "y past its buffer");
    t = f.ft, t.y = (mcl_tensor){f.y, 2};
    EXPECT_FWD(d, t, MCL_ERR_INVALID_ARGUMENT, "not a multiple", "misaligned y offset");
    t = f.ft, t.x = (mcl_tensor){f.dx, 0}, t.y = (mcl_tensor){f.dx, 0};
    EXPECT_FWD(d, t, MCL_ERR_INVALID_ARGUMENT, "overlaps", "y over the start of x");
    t = f.ft, t.x = (mcl_tensor){f.dx, 0}, t.y = (mcl_tensor){f.dx, BAD_HALF};
    EXPECT_FWD(d, t, MCL_ERR_INVALID_ARGUMENT, "overlaps", "y over the second half of x");
    bad_teardown(&f);
}

Test(swiglu, bad_backward_inputs)
{
    bad_fixture f = bad_setup();
    mcl_swiglu_desc d = f.desc;
    mcl_swiglu_bwd_tensors t = f.bt;
    assert_null_args_rejected(mcl_swiglu_backward, f.ctx, &d, &t);
    for (size_t i = 0; i < COUNT_OF(desc_faults); i++) {
        mcl_swiglu_desc bad = faulty(&desc_faults[i]);
        expect_fault(&f, &desc_faults[i], mcl_swiglu_backward(f.ctx, &bad, &t, NULL));
    }

    t = f.bt, t.x.mem = NULL;
    EXPECT_BWD(d, t, MCL_ERR_NULL_POINTER, "x is required", "missing x");
    t = f.bt, t.dy.mem = NULL;
    EXPECT_BWD(d, t, MCL_ERR_NULL_POINTER, "dy is required", "missing dy");
    t = f.bt, t.dx.mem = NULL;
    EXPECT_BWD(d, t, MCL_ERR_NULL_POINTER, "dx is required", "missing dx");
    t = f.bt, t.dx = (mcl_tensor){f.y, 0}; /* [rows, features] and slack: about half of [rows, 2F] */
    EXPECT_BWD(d, t, MCL_ERR_BUFFER_TOO_SMALL, "dx buffer holds 1600 bytes", "dx sized [rows, features]");
    t = f.bt, t.dy = (mcl_tensor){f.small, 0};
    EXPECT_BWD(d, t, MCL_ERR_BUFFER_TOO_SMALL, "dy buffer holds 64 bytes", "small dy");
    t = f.bt, t.dx = (mcl_tensor){f.dx, 2};
    EXPECT_BWD(d, t, MCL_ERR_INVALID_ARGUMENT, "not a multiple", "misaligned dx offset");
    t = f.bt, t.x = (mcl_tensor){f.dx, 0};
    EXPECT_BWD(d, t, MCL_ERR_INVALID_ARGUMENT, "overlaps", "dx over x");
    t = f.bt, t.dy = (mcl_tensor){f.dx, BAD_HALF};
    EXPECT_BWD(d, t, MCL_ERR_INVALID_ARGUMENT, "overlaps", "dx over dy");
    bad_teardown(&f);
}
