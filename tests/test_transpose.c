/* Transpose forward and backward against the reference (the transpose workload,
 * tests/workload/transpose.c): every value moved exactly, for the pair stack's layouts (i and j
 * of a pair tensor swapped, a pair bias into its heads, attention's [B, S, H, D] -> [B, H, S, D]),
 * sizes that fill no vector or work-group and size 1, every parameter variant, determinism and
 * bad inputs. */
#include "common.h"

static wl_case case_of(size_t batch, size_t rows, size_t cols, size_t width, mcl_dtype dtype)
{
    return (wl_case){{batch, rows, cols, width}, dtype, 0, WL_ALL, 0};
}

/* {batch, rows, cols, width} */
static const size_t shapes[][4] = {
    {1, 1, 1, 1},  {1, 17, 17, 128}, {1, 33, 33, 7}, {1, 289, 4, 1}, {3, 5, 4, 32},
    {2, 1, 9, 6},  {1, 7, 1, 3},     {4, 13, 11, 8},
};

Test(transpose, matches_reference_over_shapes_dtypes_and_offsets)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (int dt = MCL_F32; dt <= MCL_F16; dt++)
        for (size_t i = 0; i < COUNT_OF(shapes); i++) {
            const size_t *s = shapes[i];
            test_check_case(ctx, &wl_transpose, case_of(s[0], s[1], s[2], s[3], (mcl_dtype)dt),
                            (int)(i + dt) % WL_OFF_MODES, &rng, "default");
        }
    mcl_context_release(ctx);
}

/* Every vector width with small and large work-groups, on the shapes the widths divide and on
 * those they do not. */
Test(transpose, every_parameter_variant_is_correct)
{
    static const char *const variants[] = {"VEC=1,WG=32", "VEC=2,WG=1024", "VEC=4,WG=64", "VEC=8,WG=256"};
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (size_t v = 0; v < COUNT_OF(variants); v++) {
        assert_ok(mcl_context_set_params(ctx, "layout", variants[v]));
        for (size_t i = 1; i < 5; i++) {
            const size_t *s = shapes[i];
            test_check_case(ctx, &wl_transpose, case_of(s[0], s[1], s[2], s[3], (mcl_dtype)((v + i) % 3)),
                            (int)(v + i) % 2, &rng, variants[v]);
        }
    }
    mcl_context_release(ctx);
}

Test(transpose, results_are_bitwise_identical_on_repeat)
{
    test_repeat_and_check_each_dtype(&wl_transpose, case_of(3, 5, 4, 32, MCL_F32), WL_OFF_MIXED);
}

/* ---- bad inputs: a specific status, a message, and outputs left untouched ------------------ */

enum { BAD_B = 2, BAD_R = 3, BAD_C = 5, BAD_W = 4, BAD_BYTES = BAD_B * BAD_R * BAD_C * BAD_W * 4 };

typedef struct bad_fixture {
    TEST_BAD_FIXTURE_OF(transpose);
} bad_fixture;

static bad_fixture bad_setup(void)
{
    bad_fixture f = {.b = test_bad_buffers_make("transpose", 2 * BAD_BYTES, 2 * BAD_BYTES)};
    f.desc = (mcl_transpose_desc){BAD_B, BAD_R, BAD_C, BAD_W, MCL_F32};
    f.ft = (mcl_transpose_fwd_tensors){.x = {f.b.in, 0}, .y = {f.b.out, 0}};
    f.bt = (mcl_transpose_bwd_tensors){.dy = {f.b.in, BAD_BYTES}, .dx = {f.b.out, BAD_BYTES}};
    return f;
}

static const TEST_DESC_FAULT(mcl_transpose_desc) desc_faults[] = {
    {{0, BAD_R, BAD_C, BAD_W, MCL_F32}, MCL_ERR_INVALID_SIZE, "batch (0)", "zero batch"},
    {{BAD_B, 0, BAD_C, BAD_W, MCL_F32}, MCL_ERR_INVALID_SIZE, "rows (0)", "zero rows"},
    {{BAD_B, BAD_R, 0, BAD_W, MCL_F32}, MCL_ERR_INVALID_SIZE, "cols (0)", "zero cols"},
    {{BAD_B, BAD_R, BAD_C, 0, MCL_F32}, MCL_ERR_INVALID_SIZE, "width (0)", "zero width"},
    {{BAD_B, BAD_R, BAD_C, BAD_W, (mcl_dtype)7}, MCL_ERR_UNSUPPORTED_DTYPE, "dtype 7", "unknown dtype"},
    {{SIZE_MAX / 4, BAD_R, BAD_C, BAD_W, MCL_F32}, MCL_ERR_SIZE_OVERFLOW, "overflows", "element count overflow"},
};

Test(transpose, bad_inputs)
{
    bad_fixture f = bad_setup();
    cl_mem in = f.b.in, out = f.b.out, small = f.b.small;
    mcl_transpose_fwd_tensors ft;
    const test_required fwd_required[] = {TEST_REQUIRED(ft, x), TEST_REQUIRED(ft, y)};
    const test_tensor_fault fwd_faults[] = {
        {"small y", MCL_ERR_BUFFER_TOO_SMALL, "y buffer holds 16 bytes", {{&ft.y, {small, 0}}}},
        {"x past its buffer", MCL_ERR_BUFFER_TOO_SMALL, "x buffer", {{&ft.x, {in, BAD_BYTES + 4}}}},
        {"misaligned y", MCL_ERR_INVALID_ARGUMENT, "not a multiple", {{&ft.y, {out, 2}}}},
        {"y over x (no transpose in place)", MCL_ERR_INVALID_ARGUMENT, "output y overlaps x", {{&ft.y, {in, 0}}}},
    };
    mcl_transpose_bwd_tensors bt;
    const test_required bwd_required[] = {TEST_REQUIRED(bt, dy), TEST_REQUIRED(bt, dx)};
    const test_tensor_fault bwd_faults[] = {
        {"small dx", MCL_ERR_BUFFER_TOO_SMALL, "dx buffer holds 16 bytes", {{&bt.dx, {small, 0}}}},
        {"dx partly over dy", MCL_ERR_INVALID_ARGUMENT, "output dx overlaps dy", {{&bt.dx, {in, 4}}}},
    };
    EXPECT_REFUSED_CALLS(&f.b, mcl_transpose_forward, f.desc, f.ft, ft, desc_faults, fwd_required, fwd_faults);
    EXPECT_REFUSED_CALLS(&f.b, mcl_transpose_backward, f.desc, f.bt, bt, desc_faults, bwd_required, bwd_faults);
    test_bad_buffers_release(&f.b);
}

TEST_EVENTS_RETURNED(transpose)
