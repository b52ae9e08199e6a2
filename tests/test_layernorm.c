/* LayerNorm forward and backward against the double-precision reference. */
#include "common.h"

#include "ref/layernorm_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct ln_case {
    size_t rows, cols;
    mcl_dtype dtype;
    int weight, bias;
} ln_case;

typedef struct ln_errors {
    double y, mean, rstd, dx, dweight, dbias;
} ln_errors;

static double compare(mcl_context *ctx, cl_mem mem, mcl_dtype dtype, const double *ref, size_t n)
{
    float *out = malloc(n * sizeof *out);
    host_download(ctx, mem, dtype, out, n);
    double err = host_rel_error(out, ref, n);
    free(out);
    return err;
}

/* Runs forward then backward on poisoned outputs and compares every output with the
 * reference. */
static ln_errors run_case(mcl_context *ctx, ln_case c, host_rng *rng)
{
    size_t n = c.rows * c.cols;
    float *x = host_random(rng, c.dtype, n, -2.0f, 3.0f), *dy = host_random(rng, c.dtype, n, -1.0f, 1.0f);
    float *w = c.weight ? host_random(rng, c.dtype, c.cols, 0.5f, 1.5f) : NULL;
    float *b = c.bias ? host_random(rng, c.dtype, c.cols, -0.5f, 0.5f) : NULL;
    cl_mem xm = host_upload(ctx, c.dtype, x, n), dym = host_upload(ctx, c.dtype, dy, n);
    cl_mem wm = w ? host_upload(ctx, c.dtype, w, c.cols) : NULL;
    cl_mem bm = b ? host_upload(ctx, c.dtype, b, c.cols) : NULL;
    cl_mem ym = host_upload(ctx, c.dtype, NULL, n), dxm = host_upload(ctx, c.dtype, NULL, n);
    cl_mem meanm = host_upload(ctx, MCL_F32, NULL, c.rows), rstdm = host_upload(ctx, MCL_F32, NULL, c.rows);
    cl_mem dwm = host_upload(ctx, c.dtype, NULL, c.cols), dbm = host_upload(ctx, c.dtype, NULL, c.cols);

    mcl_layernorm_desc desc = {c.rows, c.cols, c.dtype, 1e-5f};
    mcl_layernorm_fwd_tensors ft = {.x = {xm, 0}, .weight = {wm, 0}, .bias = {bm, 0}, .y = {ym, 0},
                                    .mean = {meanm, 0}, .rstd = {rstdm, 0}};
    mcl_layernorm_bwd_tensors bt = {.x = {xm, 0}, .weight = {wm, 0}, .mean = {meanm, 0},
                                    .rstd = {rstdm, 0}, .dy = {dym, 0}, .dx = {dxm, 0},
                                    .dweight = {dwm, 0}, .dbias = {dbm, 0}};
    assert_ok(mcl_layernorm_forward(ctx, &desc, &ft, NULL));
    assert_ok(mcl_layernorm_backward(ctx, &desc, &bt, NULL));

    double *y = malloc(n * sizeof *y), *dx = malloc(n * sizeof *dx);
    double *mean = malloc(c.rows * sizeof *mean), *rstd = malloc(c.rows * sizeof *rstd);
    double *dw = malloc(c.cols * sizeof *dw), *db = malloc(c.cols * sizeof *db);
    ref_layernorm_forward(x, w, b, c.rows, c.cols, 1e-5, y, mean, rstd);
    ref_layernorm_backward(x, w, dy, c.rows, c.cols, 1e-5, dx, dw, db);
    ln_errors e = {compare(ctx, ym, c.dtype, y, n),        compare(ctx, meanm, MCL_F32, mean, c.rows),
                   compare(ctx, rstdm, MCL_F32, rstd, c.rows), compare(ctx, dxm, c.dtype, dx, n),
                   compare(ctx, dwm, c.dtype, dw, c.cols),  compare(ctx, dbm, c.dtype, db, c.cols)};
    cl_mem mems[] = {xm, dym, wm, bm, ym, dxm, meanm, rstdm, dwm, dbm};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i]) clReleaseMemObject(mems[i]);
    free(x), free(dy), free(w), free(b), free(y), free(dx), free(mean), free(rstd), free(dw), free(db);
    return e;
}

static void check_case(mcl_context *ctx, ln_case c, host_rng *rng, const char *variant)
{
    ln_errors e = run_case(ctx, c, rng);
    double tol = host_tolerance(c.dtype);
    double long_tol = c.dtype == MCL_F32 ? 2e-5 : tol; /* reductions over rows or long rows */
    const double errs[] = {e.y, e.mean, e.rstd, e.dx, e.dweight, e.dbias};
    const double tols[] = {long_tol, 1e-5, 1e-5, long_tol, long_tol, long_tol};
    const char *names[] = {"y", "mean", "rstd", "dx", "dweight", "dbias"};
    for (int i = 0; i < 6; i++)
        cr_expect(errs[i] <= tols[i], "%s: %s rows=%zu cols=%zu %s w=%d b=%d: rel error %.3g > %.1g",
                  variant, names[i], c.rows, c.cols, mcl_dtype_name(c.dtype), c.weight, c.bias,
                  errs[i], tols[i]);
}

/* Shapes: size 1, non-multiples of every tile and vector width, the AF3 widths, 4096. */
static const size_t fixed_shapes[][2] = {
    {1, 1}, {1, 4096}, {3, 1}, {2, 3}, {7, 33}, {17, 128}, {37, 130}, {5, 384}, {300, 64},
    {4, 1000}, {2, 4095}, {129, 256},
};

Test(layernorm, matches_reference_over_shapes_and_dtypes, .timeout = 900)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (int dt = MCL_F32; dt <= MCL_F16; dt++) {
        for (size_t i = 0; i < sizeof fixed_shapes / sizeof fixed_shapes[0]; i++) {
            ln_case c = {fixed_shapes[i][0], fixed_shapes[i][1], (mcl_dtype)dt, (int)(i % 2), (int)(i % 3 != 1)};
            check_case(ctx, c, &rng, "default");
        }
        for (int i = 0; i < 4; i++) { /* fresh random shapes on every run */
            ln_case c = {1 + (size_t)host_uniform(&rng, 0, 200), 1 + (size_t)host_uniform(&rng, 0, 4096),
                         (mcl_dtype)dt, i % 2, i / 2};
            check_case(ctx, c, &rng, "random");
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
    for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
        assert_ok(mcl_context_set_params(ctx, "layernorm", variants[v]));
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            mcl_dtype dt = (mcl_dtype)((v + s) % 3);
            check_case(ctx, (ln_case){shapes[s][0], shapes[s][1], dt, 1, 1}, &rng, variants[v]);
        }
    }
    mcl_context_release(ctx);
}

/* Forward and backward twice on the same inputs: the bytes must be identical. */
Test(layernorm, results_are_bitwise_identical_on_repeat)
{
    enum { ROWS = 513, COLS = 200 };
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    float *x = host_random(&rng, MCL_F32, ROWS * COLS, -1, 1), *dy = host_random(&rng, MCL_F32, ROWS * COLS, -1, 1);
    float *w = host_random(&rng, MCL_F32, COLS, 0, 2);
    cl_mem xm = host_upload(ctx, MCL_F32, x, ROWS * COLS), dym = host_upload(ctx, MCL_F32, dy, ROWS * COLS);
    cl_mem wm = host_upload(ctx, MCL_F32, w, COLS);
    void *first[4] = {0};
    for (int run = 0; run < 2; run++) {
        cl_mem ym = host_upload(ctx, MCL_F32, NULL, ROWS * COLS), dxm = host_upload(ctx, MCL_F32, NULL, ROWS * COLS);
        cl_mem mm = host_upload(ctx, MCL_F32, NULL, ROWS), rm = host_upload(ctx, MCL_F32, NULL, ROWS);
        cl_mem dwm = host_upload(ctx, MCL_F32, NULL, COLS);
        mcl_layernorm_desc desc = {ROWS, COLS, MCL_F32, 1e-5f};
        mcl_layernorm_fwd_tensors ft = {.x = {xm, 0}, .weight = {wm, 0}, .y = {ym, 0}, .mean = {mm, 0}, .rstd = {rm, 0}};
        mcl_layernorm_bwd_tensors bt = {.x = {xm, 0}, .weight = {wm, 0}, .mean = {mm, 0}, .rstd = {rm, 0},
                                        .dy = {dym, 0}, .dx = {dxm, 0}, .dweight = {dwm, 0}};
        assert_ok(mcl_layernorm_forward(ctx, &desc, &ft, NULL));
        assert_ok(mcl_layernorm_backward(ctx, &desc, &bt, NULL));
        cl_mem outs[4] = {ym, dxm, dwm, rm};
        size_t bytes[4] = {ROWS * COLS * 4, ROWS * COLS * 4, COLS * 4, ROWS * 4};
        for (int i = 0; i < 4; i++) {
            void *data = test_read_all(ctx, outs[i], bytes[i]);
            if (run == 0)
                first[i] = data;
            else {
                cr_assert_eq(memcmp(first[i], data, bytes[i]), 0, "output %d differs between runs", i);
                free(data);
                free(first[i]);
            }
            clReleaseMemObject(outs[i]);
        }
        clReleaseMemObject(mm);
    }
    clReleaseMemObject(xm), clReleaseMemObject(dym), clReleaseMemObject(wm);
    free(x), free(dy), free(w);
    mcl_context_release(ctx);
}

/* The backward in place (dx written over dy) with the parameter gradients, in both variants:
 * dy must be read before it is overwritten (LayerNorm + Linear and Transition rely on it). */
Test(layernorm, backward_in_place_over_dy)
{
    enum { ROWS = 37, COLS = 50, N = ROWS * COLS };
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    float *x = host_random(&rng, MCL_F32, N, -2, 2), *dy = host_random(&rng, MCL_F32, N, -1, 1);
    float *w = host_random(&rng, MCL_F32, COLS, 0.5f, 1.5f);
    double dx[N], dw[COLS], db[COLS];
    ref_layernorm_backward(x, w, dy, ROWS, COLS, 1e-5, dx, dw, db);
    static const char *const variants[] = {NULL, "VARIANT=0"};
    for (int v = 0; v < 2; v++) {
        assert_ok(mcl_context_set_params(ctx, "layernorm", variants[v]));
        cl_mem xm = host_upload(ctx, MCL_F32, x, N), wm = host_upload(ctx, MCL_F32, w, COLS),
               dym = host_upload(ctx, MCL_F32, dy, N), ym = host_upload(ctx, MCL_F32, NULL, N),
               mean = host_upload(ctx, MCL_F32, NULL, ROWS), rstd = host_upload(ctx, MCL_F32, NULL, ROWS),
               dwm = host_upload(ctx, MCL_F32, NULL, COLS), dbm = host_upload(ctx, MCL_F32, NULL, COLS);
        mcl_layernorm_desc desc = {ROWS, COLS, MCL_F32, 1e-5f};
        mcl_layernorm_fwd_tensors ft = {.x = {xm, 0}, .weight = {wm, 0}, .y = {ym, 0}, .mean = {mean, 0},
                                        .rstd = {rstd, 0}};
        assert_ok(mcl_layernorm_forward(ctx, &desc, &ft, NULL));
        mcl_layernorm_bwd_tensors bt = {.x = {xm, 0}, .weight = {wm, 0}, .mean = {mean, 0}, .rstd = {rstd, 0},
                                        .dy = {dym, 0}, .dx = {dym, 0}, .dweight = {dwm, 0}, .dbias = {dbm, 0}};
        assert_ok(mcl_layernorm_backward(ctx, &desc, &bt, NULL));
        float out_dx[N], out_dw[COLS], out_db[COLS];
        host_download(ctx, dym, MCL_F32, out_dx, N);
        host_download(ctx, dwm, MCL_F32, out_dw, COLS);
        host_download(ctx, dbm, MCL_F32, out_db, COLS);
        const char *name = variants[v] ? variants[v] : "default";
        cr_expect_leq(host_rel_error(out_dx, dx, N), 1e-5, "%s: dx", name);
        cr_expect_leq(host_rel_error(out_dw, dw, COLS), 1e-5, "%s: dweight", name);
        cr_expect_leq(host_rel_error(out_db, db, COLS), 1e-5, "%s: dbias", name);
        cl_mem mems[] = {xm, wm, dym, ym, mean, rstd, dwm, dbm};
        for (size_t i = 0; i < COUNT_OF(mems); i++) clReleaseMemObject(mems[i]);
    }
    free(x), free(dy), free(w);
    mcl_context_release(ctx);
}

/* Tensors at odd offsets inside shared buffers, y written in place over x: results are right
 * and no byte outside the tensors changes. */
Test(layernorm, offsets_and_in_place_touch_nothing_else)
{
    enum { ROWS = 9, COLS = 64, N = ROWS * COLS, GUARD = 0x7b };
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    float *x = host_random(&rng, MCL_BF16, N, -2, 2), *dy = host_random(&rng, MCL_BF16, N, -1, 1);
    /* one buffer: [guard 6 B][x/y N][guard][dy N][guard][dx N][guard][mean ROWS f32][rstd ROWS f32][guard] */
    size_t x_off = 6, dy_off = x_off + 2 * N + 2, dx_off = dy_off + 2 * N + 2, mean_off = dx_off + 2 * N + 10;
    size_t rstd_off = mean_off + 4 * ROWS, total = rstd_off + 4 * ROWS + 16;
    cl_mem buf = test_buffer(ctx, total, GUARD);
    unsigned short staging[N];
    host_to_storage(MCL_BF16, x, staging, N);
    clEnqueueWriteBuffer(mcl_context_queue(ctx), buf, CL_TRUE, x_off, 2 * N, staging, 0, NULL, NULL);
    host_to_storage(MCL_BF16, dy, staging, N);
    clEnqueueWriteBuffer(mcl_context_queue(ctx), buf, CL_TRUE, dy_off, 2 * N, staging, 0, NULL, NULL);

    mcl_layernorm_desc desc = {ROWS, COLS, MCL_BF16, 1e-5f};
    mcl_layernorm_fwd_tensors ft = {.x = {buf, x_off}, .y = {buf, x_off}, .mean = {buf, mean_off}, .rstd = {buf, rstd_off}};
    assert_ok(mcl_layernorm_forward(ctx, &desc, &ft, NULL));
    /* x now holds y: the backward needs the original x, so upload it again elsewhere */
    cl_mem xm = host_upload(ctx, MCL_BF16, x, N);
    mcl_layernorm_bwd_tensors bt = {.x = {xm, 0}, .mean = {buf, mean_off}, .rstd = {buf, rstd_off},
                                    .dy = {buf, dy_off}, .dx = {buf, dx_off}};
    assert_ok(mcl_layernorm_backward(ctx, &desc, &bt, NULL));

    unsigned char *bytes = test_read_all(ctx, buf, total);
    size_t regions[][2] = {{x_off, 2 * N}, {dy_off, 2 * N}, {dx_off, 2 * N}, {mean_off, 8 * ROWS}};
    for (size_t i = 0; i < total; i++) {
        int inside = 0;
        for (size_t r = 0; r < 4; r++) inside |= i >= regions[r][0] && i < regions[r][0] + regions[r][1];
        if (!inside) cr_assert_eq(bytes[i], GUARD, "byte %zu outside every tensor changed", i);
    }
    double *y = malloc(N * sizeof *y), *dx = malloc(N * sizeof *dx);
    float out[N];
    ref_layernorm_forward(x, NULL, NULL, ROWS, COLS, 1e-5, y, NULL, NULL);
    ref_layernorm_backward(x, NULL, dy, ROWS, COLS, 1e-5, dx, NULL, NULL);
    host_from_storage(MCL_BF16, bytes + x_off, out, N);
    cr_assert_leq(host_rel_error(out, y, N), 2e-2);
    host_from_storage(MCL_BF16, bytes + dx_off, out, N);
    cr_assert_leq(host_rel_error(out, dx, N), 2e-2);
    free(bytes), free(y), free(dx), free(x), free(dy);
    clReleaseMemObject(xm), clReleaseMemObject(buf);
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

typedef struct bad_fixture {
    mcl_context *ctx;
    cl_mem x, y, small, stats, other_ctx_buf;
    mcl_context *other;
    mcl_layernorm_desc desc;
    mcl_layernorm_fwd_tensors ft;
    mcl_layernorm_bwd_tensors bt;
} bad_fixture;

enum { BAD_ROWS = 4, BAD_COLS = 384, BAD_N = BAD_ROWS * BAD_COLS, BAD_BYTE = 0x3c };

static bad_fixture bad_setup(void)
{
    bad_fixture f;
    f.ctx = test_context();
    f.x = test_buffer(f.ctx, BAD_N * 4, 0x11);
    f.y = test_buffer(f.ctx, BAD_N * 4 + 64, BAD_BYTE);
    f.small = test_buffer(f.ctx, 1024, BAD_BYTE);
    f.stats = test_buffer(f.ctx, 2 * BAD_ROWS * 4, BAD_BYTE);
    f.other = test_context();
    f.other_ctx_buf = test_buffer(f.other, BAD_N * 4, BAD_BYTE);
    f.desc = (mcl_layernorm_desc){BAD_ROWS, BAD_COLS, MCL_F32, 1e-5f};
    f.ft = (mcl_layernorm_fwd_tensors){.x = {f.x, 0}, .y = {f.y, 0}, .mean = {f.stats, 0},
                                       .rstd = {f.stats, BAD_ROWS * 4}};
    f.bt = (mcl_layernorm_bwd_tensors){.x = {f.x, 0}, .mean = {f.stats, 0}, .rstd = {f.stats, BAD_ROWS * 4},
                                       .dy = {f.x, 0}, .dx = {f.y, 0}};
    return f;
}

static void expect_untouched(bad_fixture *f, const char *label)
{
    const test_filled outs[] = {{f->y, BAD_N * 4 + 64, BAD_BYTE}, {f->small, 1024, BAD_BYTE},
                                {f->stats, 2 * BAD_ROWS * 4, BAD_BYTE}};
    test_expect_untouched(f->ctx, outs, COUNT_OF(outs), label);
}

/* op NULL: these tests never checked that a message names the op (unchanged here) */
static void expect_fwd(bad_fixture *f, mcl_layernorm_desc d, mcl_layernorm_fwd_tensors t,
                       mcl_status expected, const char *needle, const char *label)
{
    test_expect_status(mcl_layernorm_forward(f->ctx, &d, &t, NULL), expected, NULL, needle, label);
    expect_untouched(f, label);
}

Test(layernorm, bad_forward_inputs)
{
    bad_fixture f = bad_setup();
    mcl_layernorm_desc d = f.desc;
    mcl_layernorm_fwd_tensors t = f.ft;
    assert_null_args_rejected(mcl_layernorm_forward, f.ctx, &d, &t);

    d.rows = 0;
    expect_fwd(&f, d, t, MCL_ERR_INVALID_SIZE, "rows (0)", "zero rows");
    d = f.desc, d.cols = 0;
    expect_fwd(&f, d, t, MCL_ERR_INVALID_SIZE, "cols (0)", "zero cols");
    d = f.desc, d.dtype = (mcl_dtype)7;
    expect_fwd(&f, d, t, MCL_ERR_UNSUPPORTED_DTYPE, "dtype 7", "unknown dtype");
    d = f.desc, d.eps = -1.0f;
    expect_fwd(&f, d, t, MCL_ERR_INVALID_ARGUMENT, "eps", "negative eps");
    d = f.desc, d.eps = NAN;
    expect_fwd(&f, d, t, MCL_ERR_INVALID_ARGUMENT, "eps", "NaN eps");
    d = f.desc, d.rows = SIZE_MAX / 2, d.cols = 8;
    expect_fwd(&f, d, t, MCL_ERR_SIZE_OVERFLOW, "overflows", "element count overflow");
    d = f.desc;

    t = f.ft, t.x.mem = NULL;
    expect_fwd(&f, d, t, MCL_ERR_NULL_POINTER, "x is required", "missing x");
    t = f.ft, t.y = (mcl_tensor){f.small, 0};
    expect_fwd(&f, d, t, MCL_ERR_BUFFER_TOO_SMALL, "y buffer holds 1024 bytes", "small y");
    t = f.ft, t.y = (mcl_tensor){f.y, 128};
    expect_fwd(&f, d, t, MCL_ERR_BUFFER_TOO_SMALL, "from offset 128", "y past its buffer");
    t = f.ft, t.y = (mcl_tensor){f.y, 2};
    expect_fwd(&f, d, t, MCL_ERR_INVALID_ARGUMENT, "not a multiple", "misaligned offset");
    t = f.ft, t.weight = (mcl_tensor){f.small, 1000};
    expect_fwd(&f, d, t, MCL_ERR_BUFFER_TOO_SMALL, "weight", "small weight");
    t = f.ft, t.rstd.mem = NULL;
    expect_fwd(&f, d, t, MCL_ERR_INVALID_ARGUMENT, "together", "mean without rstd");
    t = f.ft, t.rstd = (mcl_tensor){f.stats, 4};
    expect_fwd(&f, d, t, MCL_ERR_INVALID_ARGUMENT, "overlaps", "overlapping outputs");
    t = f.ft, t.x = (mcl_tensor){f.y, 0}, t.y = (mcl_tensor){f.y, 64};
    expect_fwd(&f, d, t, MCL_ERR_INVALID_ARGUMENT, "overlaps", "y partly over x");
    t = f.ft, t.x = (mcl_tensor){f.other_ctx_buf, 0};
    expect_fwd(&f, d, t, MCL_ERR_INVALID_ARGUMENT, "another cl_context", "foreign buffer");
    mcl_context_release(f.other);
    mcl_context_release(f.ctx);
}

Test(layernorm, bad_backward_inputs)
{
    bad_fixture f = bad_setup();
    mcl_layernorm_desc d = f.desc;
    mcl_layernorm_bwd_tensors t = f.bt;
    t.dx.mem = NULL;
    assert_status(mcl_layernorm_backward(f.ctx, &d, &t, NULL), MCL_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(mcl_last_error(), "no output requested"));
    t = f.bt, t.mean.mem = NULL;
    assert_status(mcl_layernorm_backward(f.ctx, &d, &t, NULL), MCL_ERR_NULL_POINTER);
    t = f.bt, t.dy = (mcl_tensor){f.small, 0};
    assert_status(mcl_layernorm_backward(f.ctx, &d, &t, NULL), MCL_ERR_BUFFER_TOO_SMALL);
    t = f.bt, t.dweight = (mcl_tensor){f.y, 0};
    assert_status(mcl_layernorm_backward(f.ctx, &d, &t, NULL), MCL_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(mcl_last_error(), "overlaps"));
    d.dtype = MCL_BF16, t = f.bt;
    t.dx = (mcl_tensor){f.y, 1};
    assert_status(mcl_layernorm_backward(f.ctx, &d, &t, NULL), MCL_ERR_INVALID_ARGUMENT);
    expect_untouched(&f, "backward");
    size_t bytes;
    assert_status(mcl_layernorm_backward_workspace_size(f.ctx, &d, NULL), MCL_ERR_NULL_POINTER);
    d.cols = 0;
    assert_status(mcl_layernorm_backward_workspace_size(f.ctx, &d, &bytes), MCL_ERR_INVALID_SIZE);
    mcl_context_release(f.other);
    mcl_context_release(f.ctx);
}
