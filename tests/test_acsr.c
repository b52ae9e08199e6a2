/* ACSR sparse attention against the dense masked-softmax reference (the acsr workload,
 * tests/workload/acsr.c): every pattern and their unions, random masks through the CSR
 * fallback with empty and one-column rows, sizes that fill no tile and size 1, every dtype and
 * placement, every tile variant, the tensor-core kernels, the unfused pipeline and the dense
 * baseline, determinism; the builders' splits, the reference's own gradients, and bad inputs. */
#include "common.h"

#include "ref/acsr_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* the workload's tensors, in its order */
enum { Q, K, V, DOUT, OUT, LSE, DQ, DK, DV };
enum { WINDOW = 1, CAUSAL = 2, DILATED = 4, STRIDED = 8, BLOCKED = 16, BLOCK_DIAGONAL = 32, GLOBAL = 64, RANDOM = 128 };

static wl_case case_of(size_t b, size_t h, size_t n, size_t d, unsigned patterns, size_t reach, mcl_dtype dtype)
{
    return (wl_case){{b, h, n, d}, dtype, patterns, WL_ALL, (double)reach};
}

static const unsigned pattern_sets[] = {
    WINDOW, CAUSAL, DILATED, STRIDED, BLOCKED, BLOCK_DIAGONAL, GLOBAL, WINDOW | GLOBAL, WINDOW | DILATED,
    STRIDED | GLOBAL, CAUSAL | BLOCK_DIAGONAL, RANDOM, RANDOM | WINDOW,
};

/* {B, H, N, D, reach} */
static const size_t shapes[][5] = {
    {1, 1, 1, 1, 1}, {1, 2, 77, 16, 8}, {2, 1, 130, 40, 12}, {1, 1, 33, 64, 5}, {1, 1, 96, 7, 16},
};

Test(acsr, every_pattern_matches_reference_over_shapes_dtypes_and_offsets)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (size_t p = 0; p < COUNT_OF(pattern_sets); p++)
        for (size_t i = 0; i < COUNT_OF(shapes); i++) {
            const size_t *s = shapes[i];
            mcl_dtype dtype = (mcl_dtype)((p + i) % 3);
            test_check_case(ctx, &wl_acsr, case_of(s[0], s[1], s[2], s[3], pattern_sets[p], s[4], dtype),
                            (int)(p + i) % WL_OFF_MODES, &rng, "default");
        }
    mcl_context_release(ctx);
}

/* Tiles of few rows and keys, head dims split into slices (DS > 1), and large tiles. */
Test(acsr, every_tile_variant_is_correct)
{
    static const char *const variants[] = {
        "FWD_BQ=8,FWD_BK=4,FWD_DW=4,DQ_BQ=8,DQ_BK=4,DQ_DW=8,DKV_BQ=8,DKV_BK=4,DKV_DW=4",
        "FWD_BQ=16,FWD_BK=8,FWD_DW=16,DQ_BQ=32,DQ_BK=16,DQ_DW=16,DKV_BQ=16,DKV_BK=8,DKV_DW=16,WG=32",
        "FWD_BQ=128,FWD_BK=64,FWD_DW=64,DQ_BQ=128,DQ_BK=64,DKV_BQ=128,DKV_BK=64,WG=256",
    };
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (size_t v = 0; v < COUNT_OF(variants); v++) {
        assert_ok(mcl_context_set_params(ctx, "acsr", variants[v]));
        const unsigned sets[] = {WINDOW | GLOBAL, STRIDED, RANDOM};
        for (size_t k = 0; k < COUNT_OF(sets); k++)
            test_check_case(ctx, &wl_acsr, case_of(1, 2, 70, 36, sets[k], 9, (mcl_dtype)((v + k) % 3)), (int)k % 2, &rng,
                            variants[v]);
    }
    mcl_context_release(ctx);
}

/* The tensor-core kernels (forward, dQ, dK/dV) against the reference, bf16, f16 and f32 in
 * tf32, every pattern set (the CSR fallback's tiles of one row included) and shapes that fill no
 * 16-wide fragment: 1, 2, 4 and 8 warps, 16 to 128 rows staged a step; emulated (=2) on any
 * device and with mma.sync (=1) where the device's probe passed. */
Test(acsr, tensor_core_kernels_match_reference, .timeout = 600)
{
    static const char *const variants[] = {
        "FWD_MMA=2,DQ_MMA=2,DKV_MMA=2",
        "FWD_MMA=2,FWD_MMA_WARPS=1,FWD_MMA_BK=16,DQ_MMA=2,DQ_MMA_WARPS=1,DQ_MMA_BK=16,DKV_MMA=2,DKV_MMA_WARPS=1,"
        "DKV_MMA_BK=16",
        "FWD_MMA=2,FWD_MMA_WARPS=2,FWD_MMA_BK=128,DQ_MMA=2,DQ_MMA_WARPS=2,DQ_MMA_BK=32,DKV_MMA=2,DKV_MMA_WARPS=2,"
        "DKV_MMA_BK=64",
        "FWD_MMA=1,DQ_MMA=1,DKV_MMA=1",
        "FWD_MMA=1,FWD_MMA_WARPS=1,FWD_MMA_BK=16,DQ_MMA=1,DQ_MMA_WARPS=1,DQ_MMA_BK=16,DKV_MMA=1,DKV_MMA_WARPS=1,"
        "DKV_MMA_BK=16",
        "FWD_MMA=1,FWD_MMA_WARPS=8,FWD_MMA_BK=32,DQ_MMA=1,DQ_MMA_WARPS=8,DQ_MMA_BK=32,DKV_MMA=1,DKV_MMA_WARPS=8,"
        "DKV_MMA_BK=32",
    };
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    int has_mma = mcl_context_device(ctx)->has_mma_sync;
    for (size_t v = 0; v < COUNT_OF(variants); v++) {
        if (strstr(variants[v], "MMA=1") && !has_mma) { /* the instruction is refused there */
            cr_expect_neq(mcl_context_set_params(ctx, "acsr", variants[v]), MCL_OK, "%s without mma.sync", variants[v]);
            continue;
        }
        assert_ok(mcl_context_set_params(ctx, "acsr", variants[v]));
        for (size_t p = 0; p < COUNT_OF(pattern_sets); p++) {
            const size_t *sh = shapes[(p + v) % COUNT_OF(shapes)];
            mcl_dtype dtype = (mcl_dtype)((p + v) % 3); /* f32 in tf32 */
            assert_ok(mcl_context_allow_tf32(ctx, dtype == MCL_F32));
            test_check_case(ctx, &wl_acsr, case_of(sh[0], sh[1], sh[2], sh[3], pattern_sets[p], sh[4], dtype),
                            (int)p % 2, &rng, variants[v]);
        }
    }
    assert_ok(mcl_context_allow_tf32(ctx, 0));
    mcl_context_release(ctx);
}

/* The tensor-core kernels take f32 calls in tf32 only where the context allows it. */
Test(acsr, tf32_only_where_allowed, .timeout = 300)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    const char *variant = "FWD_MMA=2,DQ_MMA=2,DKV_MMA=2";
    assert_ok(mcl_context_set_params(ctx, "acsr", variant));
    wl_case c = case_of(1, 2, 77, 16, WINDOW | GLOBAL, 8, MCL_F32);
    test_tf32_only_where_allowed(ctx, &wl_acsr, c, OUT, &rng, variant);
    test_tf32_only_where_allowed(ctx, &wl_acsr, c, DQ, &rng, variant);
    test_tf32_only_where_allowed(ctx, &wl_acsr, c, DK, &rng, variant);
    mcl_context_release(ctx);
}

/* Verifies the problem's own outputs (on the workload's sample when the full reference is too
 * large) and, with `baseline`, that baseline's. */
static void expect_verified(wl_problem *prob, const wl_baseline *baseline, const char *what)
{
    double err[WL_MAX_TENSORS], tol[WL_MAX_TENSORS];
    int ok = 0;
    if (baseline) assert_ok(wl_setup_baseline(prob, baseline));
    assert_ok(wl_verify(prob, baseline, err, tol, &ok));
    cr_expect(ok, "%s: outputs off the reference (out %.3g, lse %.3g, dq %.3g)", what, err[OUT], err[LSE], err[DQ]);
}

/* SPLAT's unfused pipeline and the dense baseline compute the same outputs. */
Test(acsr, unfused_pipeline_and_dense_baseline_match_reference)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (size_t b = 0; b < wl_acsr.baseline_count; b++)
        for (size_t p = 0; p < COUNT_OF(pattern_sets); p += 3) {
            wl_problem *prob = test_problem(ctx, &wl_acsr, case_of(1, 2, 45, 24, pattern_sets[p], 6, MCL_F32),
                                            (int)p % 2, &rng);
            expect_verified(prob, &wl_acsr.baselines[b], wl_acsr.baselines[b].name);
            wl_destroy(prob);
        }
    mcl_context_release(ctx);
}

Test(acsr, results_are_bitwise_identical_on_repeat)
{
    test_repeat_and_check_each_dtype(&wl_acsr, case_of(2, 2, 90, 32, WINDOW | GLOBAL, 10, MCL_F32), WL_OFF_MIXED);
    test_repeat_and_check_each_dtype(&wl_acsr, case_of(1, 2, 60, 16, RANDOM, 4, MCL_F32), WL_OFF_ZERO);
}

/* N = 131072: metadata and indices past 2^31 products, checked on sampled rows. */
Test(acsr, long_sequences_run)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    wl_problem *prob = test_problem(ctx, &wl_acsr, case_of(1, 1, 131072, 4, WINDOW | GLOBAL, 3, MCL_F32), WL_OFF_ZERO,
                                    &rng);
    expect_verified(prob, NULL, "N = 131072");
    wl_destroy(prob);
    mcl_context_release(ctx);
}

/* ---- builders -------------------------------------------------------------------------------- */

static mcl_acsr_mask_info info_of(mcl_acsr_mask *m)
{
    mcl_acsr_mask_info info;
    assert_ok(mcl_acsr_mask_get_info(m, &info));
    return info;
}

Test(acsr_mask, patterns_split_into_progressions)
{
    mcl_context *ctx = test_context();
    mcl_acsr_mask *m;
    const mcl_acsr_pattern window = {.kind = MCL_ACSR_WINDOW, .width = 3};
    assert_ok(mcl_acsr_mask_from_patterns(ctx, 100, &window, 1, &m));
    mcl_acsr_mask_info info = info_of(m);
    cr_expect_eq(info.nonzeros, 100 * 7 - 2 * (3 + 2 + 1));
    cr_expect_eq(info.components, 1);
    cr_expect_eq(info.fallback_rows, 0);
    cr_expect_eq(info.lattices, 1, "a window's rows share stride 1");
    mcl_acsr_mask_release(m);

    const mcl_acsr_pattern strided = {.kind = MCL_ACSR_STRIDED, .step = 8};
    assert_ok(mcl_acsr_mask_from_patterns(ctx, 100, &strided, 1, &m));
    info = info_of(m);
    cr_expect_eq(info.components, 1);
    cr_expect_eq(info.lattices, 8, "rows grouped by i mod 8");
    mcl_acsr_mask_release(m);

    const mcl_acsr_pattern longformer[] = {{.kind = MCL_ACSR_WINDOW, .width = 4}, {.kind = MCL_ACSR_GLOBAL, .count = 2}};
    assert_ok(mcl_acsr_mask_from_patterns(ctx, 64, longformer, 2, &m));
    info = info_of(m);
    cr_expect_eq(info.components, 2, "global columns and the window are two progressions");
    cr_expect_eq(info.fallback_rows, 0);
    cr_expect_eq(info.component_rows[1], 64 - 7, "rows 0 .. 6 are one progression (0, 1 see every key)");
    mcl_acsr_mask_release(m);
    mcl_context_release(ctx);
}

/* The prototype trusted a row's first two nonzeros: {0, 1, 3} is not one progression, and a
 * row of one column keeps its column. */
Test(acsr_mask, a_non_affine_row_is_not_taken_for_affine)
{
    mcl_context *ctx = test_context();
    enum { N = 8 };
    unsigned char dense[N * N] = {0};
    dense[0 * N + 0] = dense[0 * N + 1] = dense[0 * N + 3] = 1; /* two progressions */
    dense[1 * N + 5] = 1;                                       /* one column, not at 0 */
    for (int j = 0; j < N; j += 1) dense[2 * N + j] = (j * j) % 3 == 1; /* 1, 2, 4, 5, 7 */
    for (int j = 0; j < N; j++) dense[3 * N + j] = j != 4;      /* 0..3, 5..7 */
    mcl_acsr_mask *m;
    assert_ok(mcl_acsr_mask_from_dense(ctx, N, dense, &m));
    mcl_acsr_mask_info info = info_of(m);
    cr_expect_eq(info.nonzeros, 3 + 1 + 5 + 7);
    cr_expect_eq(info.empty_rows, 4);
    cr_expect_eq(info.component_rows[1], 3, "rows 0, 2 and 3 need a second progression");
    mcl_acsr_mask_release(m);
    mcl_context_release(ctx);
}

/* A row of more progressions than a mask holds goes whole to CSR; the CSR builder splits a mask
 * as the dense one does. */
Test(acsr_mask, irregular_rows_fall_back_to_csr_and_csr_input_agrees)
{
    mcl_context *ctx = test_context();
    enum { N = 40 };
    unsigned char dense[N * N];
    uint64_t row_ptr[N + 1] = {0};
    uint32_t cols[N * N];
    host_rng rng = host_rng_seeded(test_seed());
    for (int i = 0; i < N; i++) {
        row_ptr[i + 1] = row_ptr[i];
        for (int j = N - 1; j >= 0; j--) { /* CSR columns in descending order, each twice */
            dense[i * N + j] = host_uniform(&rng, 0.0f, 1.0f) < 0.3f;
            if (dense[i * N + j]) cols[row_ptr[i + 1]++] = (uint32_t)j, cols[row_ptr[i + 1]++] = (uint32_t)j;
        }
    }
    mcl_acsr_mask *a, *b;
    assert_ok(mcl_acsr_mask_from_dense(ctx, N, dense, &a));
    assert_ok(mcl_acsr_mask_from_csr(ctx, N, row_ptr, cols, &b));
    mcl_acsr_mask_info ia = info_of(a), ib = info_of(b);
    cr_expect_gt(ia.fallback_rows, 0, "random rows need more than %d progressions", MCL_ACSR_MAX_COMPONENTS);
    cr_expect_eq(memcmp(&ia, &ib, sizeof ia), 0, "the CSR and dense builders split the mask alike");
    cr_expect_eq(ia.nonzeros * 2, row_ptr[N], "repeated CSR columns count once");
    mcl_acsr_mask_release(a);
    mcl_acsr_mask_release(b);
    mcl_context_release(ctx);
}

/* Each builder refuses a bad mask with its status and a message naming the fault, and leaves
 * *mask NULL. */
Test(acsr_mask, bad_builder_inputs)
{
    mcl_context *ctx = test_context();
    enum { N = 6 };
    const struct {
        mcl_acsr_pattern pattern;
        const char *needle;
    } bad_patterns[] = {
        {{.kind = MCL_ACSR_STRIDED, .step = 0}, "step 0"},
        {{.kind = MCL_ACSR_DILATED, .width = 2, .step = N + 1}, "step 7"},
        {{.kind = MCL_ACSR_WINDOW, .width = N}, "width 6; it must be below seq 6"},
        {{.kind = MCL_ACSR_CAUSAL_WINDOW, .width = 100}, "width 100"},
        {{.kind = MCL_ACSR_BLOCKED, .width = 1, .block = 0}, "block 0"},
        {{.kind = MCL_ACSR_BLOCK_DIAGONAL, .block = N + 1}, "block 7"},
        {{.kind = MCL_ACSR_GLOBAL, .count = 0}, "count 0"},
        {{.kind = (mcl_acsr_pattern_kind)9}, "kind 9"},
    };
    mcl_acsr_mask *m = (mcl_acsr_mask *)&m;
    for (size_t i = 0; i < COUNT_OF(bad_patterns); i++) {
        const mcl_acsr_pattern pats[] = {{.kind = MCL_ACSR_WINDOW, .width = 1}, bad_patterns[i].pattern};
        test_expect_status(mcl_acsr_mask_from_patterns(ctx, N, pats, 2, &m), MCL_ERR_INVALID_ARGUMENT,
                           "acsr_mask_from_patterns", bad_patterns[i].needle, bad_patterns[i].needle);
        cr_expect_null(m, "a refused build leaves *mask NULL");
    }
    const mcl_acsr_pattern window = {.kind = MCL_ACSR_WINDOW, .width = 1};
    test_expect_status(mcl_acsr_mask_from_patterns(ctx, 0, &window, 1, &m), MCL_ERR_INVALID_SIZE,
                       "acsr_mask_from_patterns", "seq 0", "seq 0");
    test_expect_status(mcl_acsr_mask_from_patterns(ctx, N, NULL, 1, &m), MCL_ERR_NULL_POINTER,
                       "acsr_mask_from_patterns", "no patterns", "NULL patterns");
    test_expect_status(mcl_acsr_mask_from_patterns(ctx, N, &window, 0, &m), MCL_ERR_NULL_POINTER,
                       "acsr_mask_from_patterns", "no patterns", "no patterns");
    test_expect_status(mcl_acsr_mask_from_patterns(NULL, N, &window, 1, &m), MCL_ERR_NULL_POINTER,
                       "acsr_mask_from_patterns", NULL, "NULL context");
    test_expect_status(mcl_acsr_mask_from_patterns(ctx, N, &window, 1, NULL), MCL_ERR_NULL_POINTER,
                       "acsr_mask_from_patterns", NULL, "NULL mask");
    test_expect_status(mcl_acsr_mask_from_dense(ctx, N, NULL, &m), MCL_ERR_NULL_POINTER, "acsr_mask_from_dense",
                       "dense mask is NULL", "NULL dense");

    const uint32_t cols[] = {0, 1, 2, N};
    const struct {
        uint64_t row_ptr[N + 1];
        const char *needle;
    } bad_csr[] = {
        {{1, 1, 1, 1, 1, 1, 1}, "row_ptr[0] is 1"},
        {{0, 2, 1, 3, 3, 3, 3}, "row_ptr decreases at row 1"},
        {{0, 1, 2, 3, 4, 4, 4}, "row 3 has column 6"},
    };
    for (size_t i = 0; i < COUNT_OF(bad_csr); i++) {
        test_expect_status(mcl_acsr_mask_from_csr(ctx, N, bad_csr[i].row_ptr, cols, &m), MCL_ERR_INVALID_ARGUMENT,
                           "acsr_mask_from_csr", bad_csr[i].needle, bad_csr[i].needle);
        cr_expect_null(m, "a refused build leaves *mask NULL");
    }
    test_expect_status(mcl_acsr_mask_from_csr(ctx, N, bad_csr[2].row_ptr, NULL, &m), MCL_ERR_NULL_POINTER,
                       "acsr_mask_from_csr", "cols is NULL", "NULL cols");
    mcl_acsr_mask_info info;
    test_expect_status(mcl_acsr_mask_get_info(NULL, &info), MCL_ERR_NULL_POINTER, "acsr_mask_get_info", NULL,
                       "NULL mask");
    mcl_acsr_mask_release(NULL);
    mcl_context_release(ctx);
}

/* ---- bad inputs: a specific status, a message, and outputs left untouched ------------------ */

enum { BAD_B = 2, BAD_H = 1, BAD_N = 5, BAD_D = 4, BAD_BYTES = BAD_B * BAD_H * BAD_N * BAD_D * 4,
       BAD_LSE = BAD_B * BAD_H * BAD_N * 4 };

typedef struct bad_fixture {
    TEST_BAD_FIXTURE_OF(acsr);
    mcl_acsr_mask *mask, *other_n, *other_context;
    mcl_context *other;
    cl_mem foreign;
} bad_fixture;

/* Inputs q, k, v, out, lse, dout one after another in b.in; outputs out, lse (forward) and dq,
 * dk, dv (backward) in b.out. */
static bad_fixture bad_setup(void)
{
    bad_fixture f = {.b = test_bad_buffers_make("acsr", 5 * BAD_BYTES + BAD_LSE, 3 * BAD_BYTES)};
    const mcl_acsr_pattern window = {.kind = MCL_ACSR_WINDOW, .width = 1};
    assert_ok(mcl_acsr_mask_from_patterns(f.b.ctx, BAD_N, &window, 1, &f.mask));
    assert_ok(mcl_acsr_mask_from_patterns(f.b.ctx, BAD_N + 1, &window, 1, &f.other_n));
    f.other = test_context();
    assert_ok(mcl_acsr_mask_from_patterns(f.other, BAD_N, &window, 1, &f.other_context));
    f.foreign = test_foreign_buffer(&f.b, 3 * BAD_BYTES);
    f.desc = (mcl_acsr_desc){BAD_B, BAD_H, BAD_N, BAD_D, MCL_F32, 0.0f, f.mask, MCL_ACSR_FUSED};
    cl_mem in = f.b.in, out = f.b.out;
    f.ft = (mcl_acsr_fwd_tensors){.q = {in, 0}, .k = {in, BAD_BYTES}, .v = {in, 2 * BAD_BYTES},
                                  .out = {out, 0}, .lse = {out, BAD_BYTES}};
    f.bt = (mcl_acsr_bwd_tensors){.q = {in, 0}, .k = {in, BAD_BYTES}, .v = {in, 2 * BAD_BYTES},
                                  .out = {in, 3 * BAD_BYTES}, .lse = {in, 5 * BAD_BYTES},
                                  .dout = {in, 4 * BAD_BYTES}, .dq = {out, 0}, .dk = {out, BAD_BYTES},
                                  .dv = {out, 2 * BAD_BYTES}};
    return f;
}

static void bad_release(bad_fixture *f)
{
    mcl_acsr_mask_release(f->mask);
    mcl_acsr_mask_release(f->other_n);
    mcl_acsr_mask_release(f->other_context);
    mcl_context_release(f->other);
    test_bad_buffers_release(&f->b);
}

Test(acsr, bad_inputs)
{
    bad_fixture f = bad_setup();
    mcl_acsr_mask *m = f.mask;
    const mcl_acsr_mode fused = MCL_ACSR_FUSED;
    /* {B, H, N, D, dtype, scale, mask, mode} with one field bad */
    const TEST_DESC_FAULT(mcl_acsr_desc) desc_faults[] = {
        {{0, BAD_H, BAD_N, BAD_D, MCL_F32, 0.0f, m, fused}, MCL_ERR_INVALID_SIZE, "must be positive", "zero B"},
        {{BAD_B, 0, BAD_N, BAD_D, MCL_F32, 0.0f, m, fused}, MCL_ERR_INVALID_SIZE, "must be positive", "zero H"},
        {{BAD_B, BAD_H, BAD_N, 0, MCL_F32, 0.0f, m, fused}, MCL_ERR_INVALID_SIZE, "must be positive", "zero D"},
        {{BAD_B, BAD_H, BAD_N, 257, MCL_F32, 0.0f, m, fused}, MCL_ERR_INVALID_SIZE, "head dim 257 exceeds 256", "D = 257"},
        {{BAD_B, BAD_H, BAD_N, BAD_D, (mcl_dtype)7, 0.0f, m, fused}, MCL_ERR_UNSUPPORTED_DTYPE, "dtype 7",
         "unknown dtype"},
        {{BAD_B, BAD_H, BAD_N, BAD_D, MCL_F32, -0.5f, m, fused}, MCL_ERR_INVALID_ARGUMENT, "scale", "negative scale"},
        {{BAD_B, BAD_H, BAD_N, BAD_D, MCL_F32, NAN, m, fused}, MCL_ERR_INVALID_ARGUMENT, "scale", "NaN scale"},
        {{BAD_B, BAD_H, BAD_N, BAD_D, MCL_F32, 0.0f, m, (mcl_acsr_mode)5}, MCL_ERR_INVALID_ARGUMENT, "mode",
         "unknown mode"},
        {{BAD_B, BAD_H, BAD_N, BAD_D, MCL_F32, 0.0f, NULL, fused}, MCL_ERR_NULL_POINTER, "no mask", "no mask"},
        {{BAD_B, BAD_H, BAD_N, BAD_D, MCL_F32, 0.0f, f.other_n, fused}, MCL_ERR_INVALID_SIZE,
         "the mask was built for N = 6, the call has N = 5", "mask of another N"},
        {{BAD_B, BAD_H, BAD_N + 1, BAD_D, MCL_F32, 0.0f, m, fused}, MCL_ERR_INVALID_SIZE, "built for N = 5",
         "Q of another N"},
        {{BAD_B, BAD_H, BAD_N, BAD_D, MCL_F32, 0.0f, f.other_context, fused}, MCL_ERR_INVALID_ARGUMENT,
         "another context", "mask of another context"},
        {{(size_t)1 << 33, BAD_H, BAD_N, BAD_D, MCL_F32, 0.0f, m, fused}, MCL_ERR_INVALID_SIZE, "below 2^32",
         "B x H past 32 bits"},
    };
    cl_mem in = f.b.in, out = f.b.out, small = f.b.small;
    mcl_acsr_fwd_tensors ft;
    const test_required fwd_required[] = {TEST_REQUIRED(ft, q), TEST_REQUIRED(ft, k), TEST_REQUIRED(ft, v),
                                          TEST_REQUIRED(ft, out)};
    const test_tensor_fault fwd_faults[] = {
        {"small out", MCL_ERR_BUFFER_TOO_SMALL, "out buffer holds 16 bytes", {{&ft.out, {small, 0}}}},
        {"v past its buffer", MCL_ERR_BUFFER_TOO_SMALL, "v buffer", {{&ft.v, {in, 5 * BAD_BYTES + 4}}}},
        {"small lse", MCL_ERR_BUFFER_TOO_SMALL, "lse", {{&ft.lse, {small, 0}}}},
        {"misaligned out", MCL_ERR_INVALID_ARGUMENT, "not a multiple", {{&ft.out, {out, 2}}}},
        {"out over q", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&ft.out, {in, 0}}}},
        {"lse over out", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&ft.lse, {out, 8}}}},
        {"foreign q", MCL_ERR_INVALID_ARGUMENT, "another cl_context", {{&ft.q, {f.foreign, 0}}}},
    };
    mcl_acsr_bwd_tensors bt;
    const test_required bwd_required[] = {TEST_REQUIRED(bt, q),   TEST_REQUIRED(bt, k),   TEST_REQUIRED(bt, v),
                                          TEST_REQUIRED(bt, out), TEST_REQUIRED(bt, lse), TEST_REQUIRED(bt, dout)};
    const test_tensor_fault bwd_faults[] = {
        {"no gradient requested", MCL_ERR_INVALID_ARGUMENT, "no output requested",
         {TEST_LEFT_OUT(bt, dq), TEST_LEFT_OUT(bt, dk), TEST_LEFT_OUT(bt, dv)}},
        {"small dk", MCL_ERR_BUFFER_TOO_SMALL, "dk", {{&bt.dk, {small, 0}}}},
        {"small lse", MCL_ERR_BUFFER_TOO_SMALL, "lse", {{&bt.lse, {small, 0}}}},
        {"dv over dq", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&bt.dv, {out, 4}}}},
        {"dq over dout", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&bt.dq, {in, 4 * BAD_BYTES}}}},
        {"foreign dv", MCL_ERR_INVALID_ARGUMENT, "another cl_context", {{&bt.dv, {f.foreign, 0}}}},
    };
    EXPECT_REFUSED_CALLS(&f.b, mcl_acsr_forward, f.desc, f.ft, ft, desc_faults, fwd_required, fwd_faults);
    EXPECT_REFUSED_CALLS(&f.b, mcl_acsr_backward, f.desc, f.bt, bt, desc_faults, bwd_required, bwd_faults);

    size_t fwd_bytes, bwd_bytes;
    assert_status(mcl_acsr_workspace_size(f.b.ctx, &f.desc, NULL, &bwd_bytes), MCL_ERR_NULL_POINTER);
    assert_status(mcl_acsr_workspace_size(f.b.ctx, &desc_faults[3].desc, &fwd_bytes, &bwd_bytes),
                  MCL_ERR_INVALID_SIZE);
    bad_release(&f);
}

/* Forward and backward return their events; the workspace sizes are the unfused scores and the
 * backward's row sums. */
Test(acsr, events_and_workspace_sizes)
{
    bad_fixture f = bad_setup();
    cl_event fwd = NULL, bwd = NULL;
    assert_ok(mcl_acsr_forward(f.b.ctx, &f.desc, &f.ft, &fwd));
    test_wait_event(fwd);
    assert_ok(mcl_acsr_backward(f.b.ctx, &f.desc, &f.bt, &bwd));
    test_wait_event(bwd);
    size_t fwd_bytes = 1, bwd_bytes = 0;
    assert_ok(mcl_acsr_workspace_size(f.b.ctx, &f.desc, &fwd_bytes, &bwd_bytes));
    cr_expect_eq(fwd_bytes, 0, "the fused forward takes no workspace");
    cr_expect_geq(bwd_bytes, BAD_B * BAD_H * BAD_N * sizeof(float), "the backward holds a row sum per row");
    mcl_acsr_desc unfused = f.desc;
    unfused.mode = MCL_ACSR_UNFUSED;
    assert_ok(mcl_acsr_workspace_size(f.b.ctx, &unfused, &fwd_bytes, &bwd_bytes));
    cr_expect_geq(fwd_bytes, BAD_B * BAD_H * (3 * BAD_N - 2) * sizeof(float), "the scores of every nonzero");
    bad_release(&f);
}

/* ---- the reference's own gradients ---------------------------------------------------------- */

static double loss(const void *problem)
{
    const ref_acsr_problem *p = problem;
    size_t total = p->batch * p->heads * p->seq * p->head_dim;
    double *out = malloc(total * sizeof *out), l = 0.0;
    ref_acsr_forward_rows(p, NULL, 0, out, NULL);
    for (size_t e = 0; e < total; e++) l += out[e] * p->dout[e];
    free(out);
    return l;
}

Test(acsr_reference, gradients_match_central_differences)
{
    enum { B = 1, H = 2, N = 13, D = 5, T = B * H * N * D };
    const mcl_acsr_pattern pats[] = {{.kind = MCL_ACSR_WINDOW, .width = 2}, {.kind = MCL_ACSR_STRIDED, .step = 5}};
    ref_acsr_mask mask = {N, pats, 2, NULL};
    float q[T], k[T], v[T], dout[T];
    host_rng rng = host_rng_seeded(test_seed());
    host_fill_uniform(&rng, q, T, -1.0f, 1.0f);
    host_fill_uniform(&rng, k, T, -1.0f, 1.0f);
    host_fill_uniform(&rng, v, T, -1.0f, 1.0f);
    host_fill_uniform(&rng, dout, T, -1.0f, 1.0f);
    ref_acsr_problem p = {B, H, N, D, 0.447, &mask, q, k, v, dout};
    double dq[T], dk[T], dv[T];
    ref_acsr_dq_rows(&p, NULL, 0, dq);
    cr_assert_eq(ref_acsr_dkdv(&p, dk, dv), 0);
    const test_fd_gradient g[] = {{"dq", q, T, dq}, {"dk", k, T, dk}, {"dv", v, T, dv}};
    test_expect_fd_gradients(loss, &p, g, COUNT_OF(g), 1.0f / 4096, 1e-6);
}
