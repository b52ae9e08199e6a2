/* The add forward and backward against the double-precision reference (the add workload,
 * tests/workload/add.c): sizes that fill no vector or work-group, tensors inside larger buffers,
 * in place, one gradient alone, every parameter variant, determinism and bad inputs. */
#include "common.h"

enum { A, B, DY, Y, DA, DB }; /* the workload's tensors */
enum { WANT_DA = 1, WANT_DB = 2, WANT_BOTH = 3 };

/* A flat count of elements: the workload's M x C as count x 1. */
static wl_case case_of(size_t count, mcl_dtype dtype, unsigned want)
{
    return (wl_case){{count, 1}, dtype, 0, want, 0};
}

/* Counts no vector width divides, and multiples of 8 that fill no work-group. */
static const size_t counts[] = {1, 3, 1001, 65537, 8, 65544};

Test(add, matches_reference_over_sizes_dtypes_and_offsets)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (int dt = MCL_F32; dt <= MCL_F16; dt++)
        for (size_t i = 0; i < COUNT_OF(counts); i++)
            test_check_case(ctx, &wl_add, case_of(counts[i], (mcl_dtype)dt, WANT_BOTH), (int)(i + dt) % WL_OFF_MODES,
                            &rng, "default");
    mcl_context_release(ctx);
}

/* y over a (a += b, the residual stream updated in place) and da over dy; then each gradient
 * alone. */
Test(add, in_place_and_one_gradient_alone)
{
    static const test_alias aliases[] = {{Y, A}, {DA, DY}};
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (int dt = MCL_F32; dt <= MCL_F16; dt++)
        for (size_t i = 0; i < COUNT_OF(counts); i++) {
            wl_case c = case_of(counts[i], (mcl_dtype)dt, WANT_BOTH);
            test_check_in_place(ctx, &wl_add, c, (int)i % WL_OFF_MODES, &rng, aliases, COUNT_OF(aliases), 0);
            c.want = i % 2 ? WANT_DA : WANT_DB;
            test_check_case(ctx, &wl_add, c, (int)i % WL_OFF_MODES, &rng, "default");
        }
    mcl_context_release(ctx);
}

/* Under each glu variant: every count, the dtype changing from one to the next. */
static wl_case variant_case(size_t vec, size_t group, size_t i)
{
    return case_of(counts[i], (mcl_dtype)((vec + group + i) % 3), WANT_BOTH);
}

Test(add, every_parameter_variant_is_correct)
{
    test_each_glu_variant(&wl_add, COUNT_OF(counts), variant_case);
}

/* Twice on the same inputs, bit for bit; and those inputs against the reference. */
Test(add, results_are_bitwise_identical_on_repeat)
{
    test_repeat_and_check_each_dtype(&wl_add, case_of(65537, MCL_F32, WANT_BOTH), WL_OFF_MIXED);
}

/* ---- bad inputs: a specific status, a message, and outputs left untouched ------------------ */

enum { BAD_N = 1000, BAD_BYTES = BAD_N * 4 };

typedef struct bad_fixture {
    TEST_BAD_FIXTURE_OF(add);
    cl_mem in_a, in_b, dy, y, da, db, small, foreign; /* y, da, db, small: TEST_OUT_BYTE */
} bad_fixture;

static bad_fixture bad_setup(void)
{
    bad_fixture f = {.b = test_bad_buffers_start("add")};
    f.in_a = test_bad_buffer(&f.b, BAD_BYTES, TEST_IN_BYTE);
    f.in_b = test_bad_buffer(&f.b, BAD_BYTES, TEST_IN_BYTE);
    f.dy = test_bad_buffer(&f.b, BAD_BYTES, TEST_IN_BYTE);
    f.y = test_bad_buffer(&f.b, BAD_BYTES + 64, TEST_OUT_BYTE);
    f.da = test_bad_buffer(&f.b, BAD_BYTES, TEST_OUT_BYTE);
    f.db = test_bad_buffer(&f.b, BAD_BYTES, TEST_OUT_BYTE);
    f.small = test_bad_buffer(&f.b, 64, TEST_OUT_BYTE);
    f.foreign = test_foreign_buffer(&f.b, BAD_BYTES);
    f.desc = (mcl_add_desc){BAD_N, MCL_F32};
    f.ft = (mcl_add_fwd_tensors){.a = {f.in_a, 0}, .b = {f.in_b, 0}, .y = {f.y, 0}};
    f.bt = (mcl_add_bwd_tensors){.dy = {f.dy, 0}, .da = {f.da, 0}, .db = {f.db, 0}};
    return f;
}

/* Descriptor faults, forward and backward alike. */
static const TEST_DESC_FAULT(mcl_add_desc) desc_faults[] = {
    {{0, MCL_F32}, MCL_ERR_INVALID_SIZE, "count", "zero count"},
    {{BAD_N, (mcl_dtype)7}, MCL_ERR_UNSUPPORTED_DTYPE, "dtype", "unknown dtype 7"},
    {{SIZE_MAX / 2, MCL_F32}, MCL_ERR_SIZE_OVERFLOW, "overflows", "byte count overflow"},
};

/* Every refused call of the forward and the backward, no buffer touched. */
Test(add, bad_inputs)
{
    bad_fixture f = bad_setup();
    mcl_add_fwd_tensors ft;
    const test_required fwd_required[] = {TEST_REQUIRED(ft, a), TEST_REQUIRED(ft, b), TEST_REQUIRED(ft, y)};
    const test_tensor_fault fwd_faults[] = {
        {"small y", MCL_ERR_BUFFER_TOO_SMALL, "y buffer holds 64 bytes", {{&ft.y, {f.small, 0}}}},
        {"y past its buffer", MCL_ERR_BUFFER_TOO_SMALL, "from offset 128", {{&ft.y, {f.y, 128}}}},
        {"misaligned a offset", MCL_ERR_INVALID_ARGUMENT, "not a multiple", {{&ft.a, {f.in_a, 2}}}},
        {"y over b (only a may be y)", MCL_ERR_INVALID_ARGUMENT, "output y overlaps b", {{&ft.y, {f.in_b, 0}}}},
        {"y one element off a", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&ft.a, {f.y, 4}}, {&ft.y, {f.y, 0}}}},
        {"foreign buffer", MCL_ERR_INVALID_ARGUMENT, "another cl_context", {{&ft.b, {f.foreign, 0}}}},
    };
    mcl_add_bwd_tensors bt;
    const test_required bwd_required[] = {TEST_REQUIRED(bt, dy)};
    const test_tensor_fault bwd_faults[] = {
        {"neither da nor db", MCL_ERR_INVALID_ARGUMENT, "no output requested",
         {TEST_LEFT_OUT(bt, da), TEST_LEFT_OUT(bt, db)}},
        {"small db", MCL_ERR_BUFFER_TOO_SMALL, "db buffer holds 64 bytes", {{&bt.db, {f.small, 0}}}},
        {"db over dy (only da may be dy)", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&bt.db, {f.dy, 0}}}},
        {"db over da", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&bt.db, {f.da, 0}}}},
    };
    EXPECT_REFUSED_CALLS(&f.b, mcl_add_forward, f.desc, f.ft, ft, desc_faults, fwd_required, fwd_faults);
    EXPECT_REFUSED_CALLS(&f.b, mcl_add_backward, f.desc, f.bt, bt, desc_faults, bwd_required, bwd_faults);
    test_bad_buffers_release(&f.b);
}

TEST_EVENTS_RETURNED(add)
