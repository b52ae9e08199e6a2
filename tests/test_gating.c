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

Test(gating, matches_reference_over_sizes_dtypes_and_offsets)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (int dt = MCL_F32; dt <= MCL_F16; dt++)
        for (size_t i = 0; i < COUNT_OF(counts); i++)
            for (int off = 0; off < WL_OFF_MODES; off++)
                test_check_case(ctx, &wl_gating, case_of(counts[i], (mcl_dtype)dt, WANT_BOTH, 0), off, &rng,
                                "default");
    mcl_context_release(ctx);
}

/* A step of an in-place run succeeded. */
static void expect_ok(mcl_status status, const char *label, const char *step)
{
    cr_assert_eq(status, MCL_OK, "%s: %s: %s", label, step, wl_last_error());
}

static const char *name_of(int tensor) { return tensor >= 0 ? wl_gating.tensors[tensor].name : "?"; }

/* What test_run expects of a run: no byte outside the tensors written, the inputs still there
 * (g: x and dy were overwritten), every output within its tolerance of the reference. */
static void expect_run_right(wl_problem *p, const wl_fetch_report *r, const char *label)
{
    cr_expect_eq(r->stray_bytes, 0, "%s: %zu bytes outside the tensors written (in %s's buffer)", label,
                 r->stray_bytes, name_of(r->stray_tensor));
    cr_expect_lt(r->changed_input, 0, "%s: input %s changed", label, name_of(r->changed_input));
    expect_ok(wl_reference(p), label, "the reference");
    for (int i = Y; i <= DG; i++) {
        if (!wl_has(p, i)) continue;
        wl_error e = wl_compare(p, i);
        const wl_tensor *t = &p->t[i];
        cr_expect_eq(e.bad, 0,
                     "%s: %s: %zu of %zu elements off; worst at %zu: got %.9g, expected %.9g (tol %.2g x (|ref| + 1))",
                     label, name_of(i), e.bad, t->count, e.worst, (double)t->values[e.worst], t->ref[e.worst],
                     t->tol);
    }
}

/* y over x and dx over dy: the backward runs first, so that it still reads x and dy. */
static void check_in_place(mcl_context *ctx, wl_case c, int offsets, host_rng *rng)
{
    wl_problem *p = NULL;
    expect_ok(wl_create(&wl_gating, ctx, &c, rng, &p), "gating in place", "making the problem");
    p->t[Y].alias = X, p->t[DX].alias = DY;
    expect_ok(wl_place(p, offsets), "gating in place", "placing it");
    char what[320], label[352];
    test_label(p, "default", what, sizeof what);
    snprintf(label, sizeof label, "%s in place (y=x, dx=dy)", what);
    expect_ok(wl_poison(p), label, "poisoning");
    expect_ok(wl_backward(p, NULL), label, "backward");
    expect_ok(wl_forward(p, NULL), label, "forward");
    wl_fetch_report r;
    expect_ok(wl_fetch(p, 1, &r), label, "fetching");
    expect_run_right(p, &r, label);
    wl_destroy(p);
}

Test(gating, in_place_y_over_x_and_dx_over_dy)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (int dt = MCL_F32; dt <= MCL_F16; dt++)
        for (size_t i = 0; i < COUNT_OF(counts); i++)
            for (unsigned want = WANT_DX; want <= WANT_BOTH; want += 2) /* dx, dx+dg */
                check_in_place(ctx, case_of(counts[i], (mcl_dtype)dt, want, 0), (int)(i + want) % WL_OFF_MODES,
                               &rng);
    mcl_context_release(ctx);
}

Test(gating, backward_with_only_dx_or_only_dg)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (int dt = MCL_F32; dt <= MCL_F16; dt++)
        for (size_t i = 0; i < COUNT_OF(counts); i++)
            for (unsigned want = WANT_DX; want <= WANT_DG; want++)
                test_check_case(ctx, &wl_gating, case_of(counts[i], (mcl_dtype)dt, want, 0),
                                (int)i % WL_OFF_MODES, &rng, "default");
    mcl_context_release(ctx);
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
