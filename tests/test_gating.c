/* Sigmoid gating forward and backward against the double-precision reference: sizes that fill
 * no vector or work-group, tensors inside larger buffers, in place, partial gradients, every
 * parameter variant, determinism and bad inputs. */
#include "common.h"

#include "ref/glu_ref.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- one forward and backward ----------------------------------------------------------- */

enum { ALIAS_NONE, ALIAS_X }; /* ALIAS_X: y over x and dx over dy */
enum { OUT_DX = 1, OUT_DG = 2, OUT_BOTH = 3 };

typedef struct gt_case {
    size_t count;
    mcl_dtype dtype;
    int offsets;  /* OFF_* */
    int alias;    /* ALIAS_* */
    int outputs;  /* OUT_*: what the backward is asked for */
    int saturate; /* every 5th gate in sigmoid's tails */
} gt_case;

enum { X, G, DY, Y, DX, DG, NT };
static const char *const t_names[NT] = {"x", "g", "dy", "y", "dx", "dg"};

typedef struct gt_out {
    float *t[NT]; /* y, dx, dg as read back (NULL where not requested); inputs NULL */
} gt_out;

static void free_out(gt_out *o) { test_free_all(o->t, NT); }

/* The backward, then the forward (so in-place runs still see their inputs); every output and
 * guard is checked against the reference and the poison. */
static gt_out run_case(mcl_context *ctx, gt_case c, host_rng *rng, const char *variant)
{
    static const char *const alias_names[] = {"none", "y=x,dx=dy", "y=g"};
    static const char *const out_names[] = {"", "dx", "dg", "dx+dg"};
    char label[256];
    snprintf(label, sizeof label, "gating %s count=%zu offsets=%s alias=%s grads=%s params=%s",
             mcl_dtype_name(c.dtype), c.count, test_offset_names[c.offsets], alias_names[c.alias],
             out_names[c.outputs], variant);
    size_t n = c.count;
    float *src[NT] = {host_random(rng, c.dtype, n, -3, 3), host_random(rng, c.dtype, n, -6, 6),
                      host_random(rng, c.dtype, n, -1, 1)};
    for (size_t i = 0; c.saturate && i < n; i += 5) src[G][i] = test_extreme(rng, c.dtype);

    int at[NT] = {X, G, DY, Y, DX, DG}; /* the slot each tensor lives in */
    if (c.alias == ALIAS_X) at[Y] = X, at[DX] = DY;
    int wanted[NT] = {1, 1, 1, 1, c.outputs & OUT_DX, c.outputs & OUT_DG};
    mcl_tensor placed[NT] = {{0}}, t[NT] = {{0}};
    for (int i = 0; i < NT; i++) {
        if (wanted[i] && at[i] == i) placed[i] = test_place(ctx, c.dtype, src[i], n, test_offset_of(c.offsets, i));
        if (wanted[i]) t[i] = placed[at[i]];
    }
    mcl_gating_desc desc = {n, c.dtype};
    mcl_gating_bwd_tensors bt = {.x = t[X], .g = t[G], .dy = t[DY], .dx = t[DX], .dg = t[DG]};
    mcl_gating_fwd_tensors ft = {.x = t[X], .g = t[G], .y = t[Y]};
    assert_ok(mcl_gating_backward(ctx, &desc, &bt, NULL));
    assert_ok(mcl_gating_forward(ctx, &desc, &ft, NULL));

    double *ref[NT] = {0};
    for (int i = Y; i < NT; i++) ref[i] = wanted[i] ? malloc(n * sizeof(double)) : NULL;
    ref_gating_forward(src[X], src[G], n, ref[Y]);
    ref_gating_backward(src[X], src[G], src[DY], n, ref[DX], ref[DG]);
    gt_out out = {{0}};
    for (int i = 0; i < NT; i++) {
        int overwritten = i < Y && (at[Y] == i || (wanted[DX] && at[DX] == i));
        if (!wanted[i] || overwritten) continue;
        out.t[i] = test_fetch(ctx, t[i], c.dtype, n, i < Y ? src[i] : NULL, label, t_names[i]);
        if (i >= Y) test_expect_near(label, t_names[i], out.t[i], ref[i], NULL, n, host_tolerance(c.dtype));
    }
    for (int i = 0; i < NT; i++) {
        if (placed[i].mem) clReleaseMemObject(placed[i].mem);
        if (i < Y) free(out.t[i]), out.t[i] = NULL;
        free(src[i]), free(ref[i]);
    }
    return out;
}

static void check_case(mcl_context *ctx, gt_case c, host_rng *rng, const char *variant)
{
    gt_out out = run_case(ctx, c, rng, variant);
    free_out(&out);
}

/* Counts no vector width divides, and multiples of 8 that fill no work-group (the host takes
 * a vector width that divides the count, so only these reach the vector paths). */
static const size_t counts[] = {1, 3, 1001, 65537, 8, 8008, 65544};

/* ---- correctness ------------------------------------------------------------------------ */

Test(gating, matches_reference_over_sizes_dtypes_and_offsets)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (int dt = MCL_F32; dt <= MCL_F16; dt++)
        for (size_t i = 0; i < COUNT_OF(counts); i++)
            for (int off = 0; off < OFF_MODES; off++)
                check_case(ctx, (gt_case){counts[i], (mcl_dtype)dt, off, ALIAS_NONE, OUT_BOTH, 0}, &rng, "default");
    mcl_context_release(ctx);
}

static void check_in_place(int alias)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (int dt = MCL_F32; dt <= MCL_F16; dt++)
        for (size_t i = 0; i < COUNT_OF(counts); i++)
            for (int outputs = OUT_DX; outputs <= OUT_BOTH; outputs += 2) /* dx, dx+dg */
                check_case(ctx, (gt_case){counts[i], (mcl_dtype)dt, (int)(i + outputs) % OFF_MODES, alias, outputs, 0},
                           &rng, "default");
    mcl_context_release(ctx);
}

Test(gating, in_place_y_over_x_and_dx_over_dy) { check_in_place(ALIAS_X); }

Test(gating, backward_with_only_dx_or_only_dg)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (int dt = MCL_F32; dt <= MCL_F16; dt++)
        for (size_t i = 0; i < COUNT_OF(counts); i++)
            for (int outputs = OUT_DX; outputs <= OUT_DG; outputs++)
                check_case(ctx, (gt_case){counts[i], (mcl_dtype)dt, (int)i % OFF_MODES, ALIAS_NONE, outputs, 0},
                           &rng, "default");
    mcl_context_release(ctx);
}

/* Gates of +-8 to +-1e4: exp overflows in fp32, results must stay finite and right. */
Test(gating, saturated_gates_stay_finite_and_right)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (int dt = MCL_F32; dt <= MCL_F16; dt++)
        check_case(ctx, (gt_case){8008, (mcl_dtype)dt, OFF_ZERO, ALIAS_NONE, OUT_BOTH, 1}, &rng, "default");
    mcl_context_release(ctx);
}

/* Every VEC with small and large work-groups and group counts; offsets 0 or multiples of 8,
 * so the vector widths are kept where the count allows. */
Test(gating, every_parameter_variant_is_correct)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (size_t v = 0; v < TEST_GLU_VECS; v++) {
        for (size_t w = 0; w < TEST_GLU_GROUPS; w++) {
            char params[64];
            assert_ok(mcl_context_set_params(ctx, "glu", test_glu_params(params, v, w)));
            for (size_t i = 0; i < COUNT_OF(counts); i++) {
                gt_case c = {counts[i], (mcl_dtype)((v + w + i) % 3), (int)(v + i) % 2, ALIAS_NONE, OUT_BOTH, 0};
                check_case(ctx, c, &rng, params);
            }
        }
    }
    assert_ok(mcl_context_set_params(ctx, "glu", NULL));
    mcl_context_release(ctx);
}

Test(gating, results_are_bitwise_identical_on_repeat)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (int dt = MCL_F32; dt <= MCL_F16; dt++) {
        gt_case c = {65537, (mcl_dtype)dt, OFF_MIXED, ALIAS_NONE, OUT_BOTH, 0};
        host_rng again = rng;
        gt_out first = run_case(ctx, c, &rng, "first"), second = run_case(ctx, c, &again, "second");
        for (int i = Y; i < NT; i++)
            cr_expect_eq(memcmp(first.t[i], second.t[i], c.count * sizeof(float)), 0,
                         "gating %s: %s differs between runs", mcl_dtype_name(c.dtype), t_names[i]);
        free_out(&first), free_out(&second);
    }
    mcl_context_release(ctx);
}

Test(gating, event_is_the_ops_last)
{
    enum { N = 1001 };
    mcl_context *ctx = test_context();
    cl_mem a = test_buffer(ctx, N * 4, 0), b = test_buffer(ctx, N * 4, 0);
    mcl_gating_desc desc = {N, MCL_F32};
    mcl_gating_fwd_tensors ft = {.x = {a, 0}, .g = {a, 0}, .y = {b, 0}};
    mcl_gating_bwd_tensors bt = {.x = {a, 0}, .g = {a, 0}, .dy = {a, 0}, .dg = {b, 0}};
    cl_event fwd = NULL, bwd = NULL;
    assert_ok(mcl_gating_forward(ctx, &desc, &ft, &fwd));
    assert_ok(mcl_gating_backward(ctx, &desc, &bt, &bwd));
    test_wait_event(fwd), test_wait_event(bwd);
    clReleaseMemObject(a), clReleaseMemObject(b);
    mcl_context_release(ctx);
}

/* ---- bad inputs: a specific status, a message, and outputs left untouched ------------------ */

enum { BAD_N = 1000, BAD_BYTES = BAD_N * 4, BAD_BYTE = 0x3c };

typedef struct bad_fixture {
    mcl_context *ctx, *other;
    cl_mem x, g, dy, y, dx, dg, small, foreign; /* y, dx, dg, small: BAD_BYTE */
    mcl_gating_desc desc;
    mcl_gating_fwd_tensors ft;
    mcl_gating_bwd_tensors bt;
} bad_fixture;

static bad_fixture bad_setup(void)
{
    bad_fixture f;
    f.ctx = test_context();
    f.other = test_context();
    f.x = test_buffer(f.ctx, BAD_BYTES, 0x11);
    f.g = test_buffer(f.ctx, BAD_BYTES, 0x11);
    f.dy = test_buffer(f.ctx, BAD_BYTES, 0x11);
    f.y = test_buffer(f.ctx, BAD_BYTES + 64, BAD_BYTE);
    f.dx = test_buffer(f.ctx, BAD_BYTES, BAD_BYTE);
    f.dg = test_buffer(f.ctx, BAD_BYTES, BAD_BYTE);
    f.small = test_buffer(f.ctx, 64, BAD_BYTE);
    f.foreign = test_buffer(f.other, BAD_BYTES, BAD_BYTE);
    f.desc = (mcl_gating_desc){BAD_N, MCL_F32};
    f.ft = (mcl_gating_fwd_tensors){.x = {f.x, 0}, .g = {f.g, 0}, .y = {f.y, 0}};
    f.bt = (mcl_gating_bwd_tensors){.x = {f.x, 0}, .g = {f.g, 0}, .dy = {f.dy, 0}, .dx = {f.dx, 0}, .dg = {f.dg, 0}};
    return f;
}

static void bad_teardown(bad_fixture *f)
{
    cl_mem mems[] = {f->x, f->g, f->dy, f->y, f->dx, f->dg, f->small, f->foreign};
    for (size_t i = 0; i < COUNT_OF(mems); i++) clReleaseMemObject(mems[i]);
    mcl_context_release(f->other);
    mcl_context_release(f->ctx);
}

static void expect_bad(bad_fixture *f, mcl_status got, mcl_status expected, const char *needle, const char *label)
{
    test_expect_status(got, expected, "gating", needle, label);
    const test_filled outs[] = {{f->y, BAD_BYTES + 64, BAD_BYTE}, {f->dx, BAD_BYTES, BAD_BYTE},
                                {f->dg, BAD_BYTES, BAD_BYTE}, {f->small, 64, BAD_BYTE}};
    test_expect_untouched(f->ctx, outs, COUNT_OF(outs), label);
}

#define EXPECT_FWD(d, t, status, needle, label) \
    expect_bad(&f, mcl_gating_forward(f.ctx, &(d), &(t), NULL), status, needle, label)
#define EXPECT_BWD(d, t, status, needle, label) \
    expect_bad(&f, mcl_gating_backward(f.ctx, &(d), &(t), NULL), status, needle, label)

Test(gating, bad_forward_inputs)
{
    bad_fixture f = bad_setup();
    mcl_gating_desc d = f.desc;
    mcl_gating_fwd_tensors t = f.ft;
    assert_null_args_rejected(mcl_gating_forward, f.ctx, &d, &t);

    d.count = 0;
    EXPECT_FWD(d, t, MCL_ERR_INVALID_SIZE, "count", "zero count");
    d = f.desc, d.dtype = (mcl_dtype)7;
    EXPECT_FWD(d, t, MCL_ERR_UNSUPPORTED_DTYPE, "dtype", "unknown dtype");
    d = f.desc, d.count = SIZE_MAX / 2;
    EXPECT_FWD(d, t, MCL_ERR_SIZE_OVERFLOW, "overflows", "byte count overflow");
    d = f.desc;

    t = f.ft, t.x.mem = NULL;
    EXPECT_FWD(d, t, MCL_ERR_NULL_POINTER, "x is required", "missing x");
    t = f.ft, t.g.mem = NULL;
    EXPECT_FWD(d, t, MCL_ERR_NULL_POINTER, "g is required", "missing g");
    t = f.ft, t.y.mem = NULL;
    EXPECT_FWD(d, t, MCL_ERR_NULL_POINTER, "y is required", "missing y");
    t = f.ft, t.y = (mcl_tensor){f.small, 0};
    EXPECT_FWD(d, t, MCL_ERR_BUFFER_TOO_SMALL, "y buffer holds 64 bytes", "small y");
    t = f.ft, t.g = (mcl_tensor){f.small, 0};
    EXPECT_FWD(d, t, MCL_ERR_BUFFER_TOO_SMALL, "g buffer holds 64 bytes", "small g");
    t = f.ft, t.y = (mcl_tensor){f.y, 128};
    EXPECT_FWD(d, t, MCL_ERR_BUFFER_TOO_SMALL, "from offset 128", "y past its buffer");
    t = f.ft, t.y = (mcl_tensor){f.y, 2};
    EXPECT_FWD(d, t, MCL_ERR_INVALID_ARGUMENT, "not a multiple", "misaligned y offset");
    t = f.ft, t.x = (mcl_tensor){f.y, 0}, t.y = (mcl_tensor){f.y, 64};
    EXPECT_FWD(d, t, MCL_ERR_INVALID_ARGUMENT, "overlaps", "y partly over x");
    t = f.ft, t.g = (mcl_tensor){f.y, 4}, t.y = (mcl_tensor){f.y, 0};
    EXPECT_FWD(d, t, MCL_ERR_INVALID_ARGUMENT, "overlaps", "y one element off g");
    t = f.ft, t.x = (mcl_tensor){f.foreign, 0};
    EXPECT_FWD(d, t, MCL_ERR_INVALID_ARGUMENT, "another cl_context", "foreign buffer");
    bad_teardown(&f);
}

Test(gating, bad_backward_inputs)
{
    bad_fixture f = bad_setup();
    mcl_gating_desc d = f.desc;
    mcl_gating_bwd_tensors t = f.bt;
    assert_null_args_rejected(mcl_gating_backward, f.ctx, &d, &t);

    d.count = 0;
    EXPECT_BWD(d, t, MCL_ERR_INVALID_SIZE, "count", "zero count");
    d = f.desc, d.dtype = (mcl_dtype)-1;
    EXPECT_BWD(d, t, MCL_ERR_UNSUPPORTED_DTYPE, "dtype", "unknown dtype");
    d = f.desc;

    t = f.bt, t.dx.mem = t.dg.mem = NULL;
    EXPECT_BWD(d, t, MCL_ERR_INVALID_ARGUMENT, NULL, "neither dx nor dg");
    t = f.bt, t.x.mem = NULL;
    EXPECT_BWD(d, t, MCL_ERR_NULL_POINTER, "x is required", "missing x");
    t = f.bt, t.g.mem = NULL;
    EXPECT_BWD(d, t, MCL_ERR_NULL_POINTER, "g is required", "missing g");
    t = f.bt, t.dy.mem = NULL;
    EXPECT_BWD(d, t, MCL_ERR_NULL_POINTER, "dy is required", "missing dy");
    t = f.bt, t.dg = (mcl_tensor){f.small, 0};
    EXPECT_BWD(d, t, MCL_ERR_BUFFER_TOO_SMALL, "dg buffer holds 64 bytes", "small dg");
    t = f.bt, t.dy = (mcl_tensor){f.dy, 8};
    EXPECT_BWD(d, t, MCL_ERR_BUFFER_TOO_SMALL, "from offset 8", "dy past its buffer");
    t = f.bt, t.dg = (mcl_tensor){f.dy, 0};
    EXPECT_BWD(d, t, MCL_ERR_INVALID_ARGUMENT, "overlaps", "dg over dy (only dx may alias dy)");
    t = f.bt, t.dx = (mcl_tensor){f.x, 0};
    EXPECT_BWD(d, t, MCL_ERR_INVALID_ARGUMENT, "overlaps", "dx over x");
    t = f.bt, t.dx = (mcl_tensor){f.g, 0};
    EXPECT_BWD(d, t, MCL_ERR_INVALID_ARGUMENT, "overlaps", "dx over g");
    t = f.bt, t.dg = (mcl_tensor){f.dx, 0};
    EXPECT_BWD(d, t, MCL_ERR_INVALID_ARGUMENT, "overlaps", "dg over dx");
    t = f.bt, t.dy = (mcl_tensor){f.y, 0}, t.dx = (mcl_tensor){f.y, 4};
    EXPECT_BWD(d, t, MCL_ERR_INVALID_ARGUMENT, "overlaps", "dx one element off dy");
    bad_teardown(&f);
}
