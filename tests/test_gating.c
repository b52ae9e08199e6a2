/* Sigmoid gating forward and backward against the double-precision reference (the gating
 * workload, tests/workload/gating.c): sizes that fill no vector or work-group, tensors inside
 * larger buffers, in place, partial gradients, saturated gates, every parameter variant,
 * determinism and bad inputs. */
#include "common.h"

#include <stdint.h>
#include <stdio.h>

enum { X, G, DY, Y, DX, DG }; /* the workload's tensors */
enum { WANT_DX = 1, WANT_DG = 2, WANT_BOTH = 3 };
enum { OPT_SATURATE = 1 };

/* A flat count of elements: the workload's M x C as count x 1. */
static wl_case case_of(size_t count, mcl_dtype dtype, unsigned want, unsigned options)
{
    return (wl_case){{count, 1}, dtype, options, want, 0};
}

/* Counts no vector width divides, and multiples of 8 that fill no work-group (the host takes
 * a vector width that divides the count, so only these reach the vector paths). */
static const size_t counts[] = {1, 3, 1001, 65537, 8, 8008, 65544};

/* ---- correctness ------------------------------------------------------------------------ */

/* check(ctx, dtype, i, rng) for every dtype and count i, on a context and inputs of its own. */
static void each_dtype_and_count(void (*check)(mcl_context *ctx, mcl_dtype dtype, size_t i, host_rng *rng))
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (int dt = MCL_F32; dt <= MCL_F16; dt++)
        for (size_t i = 0; i < COUNT_OF(counts); i++) check(ctx, (mcl_dtype)dt, i, &rng);
    mcl_context_release(ctx);
}

static void at_every_offset(mcl_context *ctx, mcl_dtype dtype, size_t i, host_rng *rng)
{
    for (int off = 0; off < WL_OFF_MODES; off++)
        test_check_case(ctx, &wl_gating, case_of(counts[i], dtype, WANT_BOTH, 0), off, rng, "default");
}

Test(gating, matches_reference_over_sizes_dtypes_and_offsets)
{
    each_dtype_and_count(at_every_offset);
}

/* y over x and dx over dy: the backward runs first, so that it still reads x and dy. */
static void check_in_place(mcl_context *ctx, wl_case c, int offsets, host_rng *rng)
{
    static const test_alias aliases[] = {{Y, X}, {DX, DY}};
    test_check_in_place(ctx, &wl_gating, c, offsets, rng, aliases, COUNT_OF(aliases), 1);
}

static void in_place_with_dx_and_both(mcl_context *ctx, mcl_dtype dtype, size_t i, host_rng *rng)
{
    for (unsigned want = WANT_DX; want <= WANT_BOTH; want += 2) /* dx, dx+dg */
        check_in_place(ctx, case_of(counts[i], dtype, want, 0), (int)(i + want) % WL_OFF_MODES, rng);
}

Test(gating, in_place_y_over_x_and_dx_over_dy)
{
    each_dtype_and_count(in_place_with_dx_and_both);
}

static void with_one_gradient(mcl_context *ctx, mcl_dtype dtype, size_t i, host_rng *rng)
{
    for (unsigned want = WANT_DX; want <= WANT_DG; want++)
        test_check_case(ctx, &wl_gating, case_of(counts[i], dtype, want, 0), (int)i % WL_OFF_MODES, rng, "default");
}

Test(gating, backward_with_only_dx_or_only_dg)
{
    each_dtype_and_count(with_one_gradient);
}

/* Gates of +-8 to +-1e4: exp overflows in fp32, results must stay finite and right. */
Test(gating, saturated_gates_stay_finite_and_right)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (int dt = MCL_F32; dt <= MCL_F16; dt++)
        test_check_case(ctx, &wl_gating, case_of(8008, (mcl_dtype)dt, WANT_BOTH, OPT_SATURATE), WL_OFF_ZERO, &rng,
                        "default");
    mcl_context_release(ctx);
}

/* Under each glu variant: every count, the dtype changing from one to the next. */
static wl_case variant_case(size_t vec, size_t group, size_t i)
{
    return case_of(counts[i], (mcl_dtype)((vec + group + i) % 3), WANT_BOTH, 0);
}

Test(gating, every_parameter_variant_is_correct)
{
    test_each_glu_variant(&wl_gating, COUNT_OF(counts), variant_case);
}

/* Twice on the same inputs, bit for bit; and those inputs against the reference. */
Test(gating, results_are_bitwise_identical_on_repeat)
{
    test_repeat_and_check_each_dtype(&wl_gating, case_of(65537, MCL_F32, WANT_BOTH, 0), WL_OFF_MIXED);
}

/* ---- bad inputs: a specific status, a message, and outputs left untouched ------------------ */

enum { BAD_N = 1000, BAD_BYTES = BAD_N * 4 };

typedef struct bad_fixture {
    TEST_BAD_FIXTURE_OF(gating);
    cl_mem x, g, dy, y, dx, dg, small, foreign; /* y, dx, dg, small: TEST_OUT_BYTE */
} bad_fixture;

static bad_fixture bad_setup(void)
{
    bad_fixture f = {.b = test_bad_buffers_start("gating")};
    f.x = test_bad_buffer(&f.b, BAD_BYTES, TEST_IN_BYTE);
    f.g = test_bad_buffer(&f.b, BAD_BYTES, TEST_IN_BYTE);
    f.dy = test_bad_buffer(&f.b, BAD_BYTES, TEST_IN_BYTE);
    f.y = test_bad_buffer(&f.b, BAD_BYTES + 64, TEST_OUT_BYTE);
    f.dx = test_bad_buffer(&f.b, BAD_BYTES, TEST_OUT_BYTE);
    f.dg = test_bad_buffer(&f.b, BAD_BYTES, TEST_OUT_BYTE);
    f.small = test_bad_buffer(&f.b, 64, TEST_OUT_BYTE);
    f.foreign = test_foreign_buffer(&f.b, BAD_BYTES);
    f.desc = (mcl_gating_desc){BAD_N, MCL_F32};
    f.ft = (mcl_gating_fwd_tensors){.x = {f.x, 0}, .g = {f.g, 0}, .y = {f.y, 0}};
    f.bt = (mcl_gating_bwd_tensors){.x = {f.x, 0}, .g = {f.g, 0}, .dy = {f.dy, 0}, .dx = {f.dx, 0}, .dg = {f.dg, 0}};
    return f;
}

/* Descriptor faults, forward and backward alike. */
static const TEST_DESC_FAULT(mcl_gating_desc) desc_faults[] = {
    {{0, MCL_F32}, MCL_ERR_INVALID_SIZE, "count", "zero count"},
    {{BAD_N, (mcl_dtype)7}, MCL_ERR_UNSUPPORTED_DTYPE, "dtype", "unknown dtype 7"},
    {{BAD_N, (mcl_dtype)-1}, MCL_ERR_UNSUPPORTED_DTYPE, "dtype", "unknown dtype -1"},
    {{SIZE_MAX / 2, MCL_F32}, MCL_ERR_SIZE_OVERFLOW, "overflows", "byte count overflow"},
};

/* Every refused call of the forward and the backward, no buffer touched. */
Test(gating, bad_inputs)
{
    bad_fixture f = bad_setup();
    mcl_gating_fwd_tensors ft;
    const test_required fwd_required[] = {TEST_REQUIRED(ft, x), TEST_REQUIRED(ft, g), TEST_REQUIRED(ft, y)};
    const test_tensor_fault fwd_faults[] = {
        {"small y", MCL_ERR_BUFFER_TOO_SMALL, "y buffer holds 64 bytes", {{&ft.y, {f.small, 0}}}},
        {"small g", MCL_ERR_BUFFER_TOO_SMALL, "g buffer holds 64 bytes", {{&ft.g, {f.small, 0}}}},
        {"y past its buffer", MCL_ERR_BUFFER_TOO_SMALL, "from offset 128", {{&ft.y, {f.y, 128}}}},
        {"misaligned y offset", MCL_ERR_INVALID_ARGUMENT, "not a multiple", {{&ft.y, {f.y, 2}}}},
        {"y partly over x", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&ft.x, {f.y, 0}}, {&ft.y, {f.y, 64}}}},
        {"y one element off g", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&ft.g, {f.y, 4}}, {&ft.y, {f.y, 0}}}},
        {"foreign buffer", MCL_ERR_INVALID_ARGUMENT, "another cl_context", {{&ft.x, {f.foreign, 0}}}},
    };
    mcl_gating_bwd_tensors bt;
    const test_required bwd_required[] = {TEST_REQUIRED(bt, x), TEST_REQUIRED(bt, g), TEST_REQUIRED(bt, dy)};
    const test_tensor_fault bwd_faults[] = {
        {"neither dx nor dg", MCL_ERR_INVALID_ARGUMENT, NULL, {TEST_LEFT_OUT(bt, dx), TEST_LEFT_OUT(bt, dg)}},
        {"small dg", MCL_ERR_BUFFER_TOO_SMALL, "dg buffer holds 64 bytes", {{&bt.dg, {f.small, 0}}}},
        {"dy past its buffer", MCL_ERR_BUFFER_TOO_SMALL, "from offset 8", {{&bt.dy, {f.dy, 8}}}},
        {"dg over dy (only dx may alias dy)", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&bt.dg, {f.dy, 0}}}},
        {"dx over x", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&bt.dx, {f.x, 0}}}},
        {"dx over g", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&bt.dx, {f.g, 0}}}},
        {"dg over dx", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&bt.dg, {f.dx, 0}}}},
        {"dx one element off dy", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&bt.dy, {f.y, 0}}, {&bt.dx, {f.y, 4}}}},
    };
    EXPECT_REFUSED_CALLS(&f.b, mcl_gating_forward, f.desc, f.ft, ft, desc_faults, fwd_required, fwd_faults);
    EXPECT_REFUSED_CALLS(&f.b, mcl_gating_backward, f.desc, f.bt, bt, desc_faults, bwd_required, bwd_faults);
    test_bad_buffers_release(&f.b);
}

TEST_EVENTS_RETURNED(gating)
