/* FLuRKA, Linformer and Performer forward and backward against the double-precision reference
 * (the flurka workload, tests/workload/flurka.c): every map with each projection, sizes that fill
 * no tile and size 1, every dtype, each gradient alone, determinism; the oracles of the method
 * (an identity projection gives the kernel method, and Linformer full attention; FAVOR+ nears
 * Linformer as m grows; the denominator stays positive on inputs that overflow unstabilised
 * features); the draw of W; the reference's own gradients; bad inputs. */
#include "common.h"

#include "ref/flurka_ref.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The workload's tensors and options (tests/workload/flurka.c). */
enum { T_Q, T_K, T_V, T_E, T_F, T_W, T_DOUT, T_OUT, T_DEN, T_LSE, T_DQ, T_DK, T_DV, T_DE, T_DF };
enum { OPT_NONE = 0, OPT_SHARED = 4, OPT_PER_HEAD = 8, OPT_FULL = 16, OPT_SQRT_NORMS = 32 };
#define WANT(t) (1u << ((t) - T_DQ))

typedef struct shape {
    size_t b, h, n, d, k, m;
} shape;

static wl_case make_case(shape s, mcl_flurka_map map, unsigned projection, mcl_dtype dtype, unsigned want)
{
    return (wl_case){{s.b, s.h, s.n, s.d, s.k}, dtype, (unsigned)map | projection, want, (double)s.m};
}

static const mcl_flurka_map maps[] = {MCL_FLURKA_FAVOR, MCL_FLURKA_RELU, MCL_FLURKA_ELU, MCL_FLURKA_SOFTMAX};
static const unsigned projections[] = {OPT_SHARED, OPT_PER_HEAD, OPT_NONE};

/* size 1; several heads and a batch with sizes that are multiples of no tile (16-row projection
 * tiles, 8-row query tiles); a head dim above the projection tile */
static const shape shapes[] = {{1, 1, 1, 1, 1, 1}, {2, 3, 37, 8, 5, 12}, {1, 2, 70, 33, 17, 40}};

Test(flurka, every_map_and_projection_matches_reference, .timeout = 900)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    int placement = 0;
    for (size_t s = 0; s < COUNT_OF(shapes); s++)
        for (size_t m = 0; m < COUNT_OF(maps); m++)
            for (size_t p = 0; p < COUNT_OF(projections); p++) {
                if (maps[m] == MCL_FLURKA_SOFTMAX && projections[p] == OPT_NONE) continue; /* full attention */
                wl_case c = make_case(shapes[s], maps[m], projections[p], MCL_F32, WL_ALL);
                test_check_case(ctx, &wl_flurka, c, placement++ % WL_OFF_MODES, &rng, "default");
            }
    mcl_context_release(ctx);
}

/* bf16 and f16 storage, each map, W with rows of norm sqrt(D) */
Test(flurka, sixteen_bit_storage_matches_reference, .timeout = 900)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    const mcl_dtype dtypes[] = {MCL_BF16, MCL_F16};
    for (size_t t = 0; t < COUNT_OF(dtypes); t++)
        for (size_t m = 0; m < COUNT_OF(maps); m++) {
            wl_case c = make_case(shapes[1], maps[m], (m % 2 ? OPT_PER_HEAD : OPT_SHARED) | OPT_SQRT_NORMS, dtypes[t],
                                  WL_ALL);
            test_check_case(ctx, &wl_flurka, c, (int)(m + t) % WL_OFF_MODES, &rng, "default");
        }
    wl_case performer = make_case(shapes[2], MCL_FLURKA_FAVOR, OPT_NONE, MCL_BF16, WL_ALL);
    test_check_case(ctx, &wl_flurka, performer, WL_OFF_ODD, &rng, "default");
    mcl_context_release(ctx);
}

/* Each gradient alone, FLuRKA and Linformer. */
Test(flurka, each_backward_output_alone, .timeout = 600)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    for (int t = T_DQ; t <= T_DF; t++) {
        test_check_case(ctx, &wl_flurka, make_case(shapes[1], MCL_FLURKA_FAVOR, OPT_SHARED, MCL_F32, WANT(t)),
                        WL_OFF_MIXED, &rng, "default");
        test_check_case(ctx, &wl_flurka, make_case(shapes[1], MCL_FLURKA_SOFTMAX, OPT_PER_HEAD, MCL_F32, WANT(t)),
                        WL_OFF_VEC, &rng, "default");
    }
    mcl_context_release(ctx);
}

/* Chunks of rows and keys smaller than N (70 rows or keys of 40 features in chunks of 51: the
 * sums over chunks, a short last chunk; the Performer's 70 keys too), small work-groups, and the
 * GEMMs' smallest tiles (one output a work-item, 16 x 16 tiles over 4-long steps, unrolled
 * once) under every product, FLuRKA's and the Performer's. */
#define SMALL_VARIANT "CHUNK_KIB=16,ROW_WG=32"
#define SMALL_GEMM "BM=16,BN=16,BK=4,TM=1,TN=1,PREFETCH=0,UNROLL=1"

Test(flurka, small_tiles_and_many_chunks_match_reference, .timeout = 600)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    assert_ok(mcl_context_set_params(ctx, "flurka", SMALL_VARIANT));
    assert_ok(mcl_context_set_params(ctx, "gemm", SMALL_GEMM));
    for (size_t m = 0; m < COUNT_OF(maps); m++) {
        test_check_case(ctx, &wl_flurka, make_case(shapes[2], maps[m], OPT_PER_HEAD, MCL_F32, WL_ALL), WL_OFF_ODD, &rng,
                        SMALL_VARIANT);
        if (maps[m] != MCL_FLURKA_SOFTMAX)
            test_check_case(ctx, &wl_flurka, make_case(shapes[2], maps[m], OPT_NONE, MCL_F32, WL_ALL), WL_OFF_MIXED,
                            &rng, SMALL_VARIANT);
    }
    mcl_context_release(ctx);
}

/* Forward and backward twice on the same inputs: every output's bytes identical (no float
 * atomics), default and small tiles. */
Test(flurka, results_are_bitwise_identical_on_repeat, .timeout = 600)
{
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    static const char *const variants[] = {NULL, SMALL_VARIANT};
    for (int v = 0; v < 2; v++) {
        assert_ok(mcl_context_set_params(ctx, "flurka", variants[v]));
        test_repeat_is_bitwise(ctx, &wl_flurka, make_case(shapes[2], MCL_FLURKA_FAVOR, OPT_SHARED, v ? MCL_F16 : MCL_F32, WL_ALL),
                               WL_OFF_VEC, &rng, variants[v]);
        test_repeat_is_bitwise(ctx, &wl_flurka, make_case(shapes[1], MCL_FLURKA_SOFTMAX, OPT_PER_HEAD, MCL_F32, WL_ALL),
                               WL_OFF_ZERO, &rng, variants[v]);
    }
    mcl_context_release(ctx);
}

/* ---- oracles ----------------------------------------------------------------------------- */

/* An f32 forward on host arrays: out [B, H, N, D] and den [B, H, N] (either may be NULL); e, f and
 * w NULL where the descriptor reads none. */
typedef struct host_call {
    const float *q, *k, *v, *e, *f, *w;
} host_call;

static size_t projection_elems(const mcl_flurka_desc *d)
{
    return d->projection == MCL_FLURKA_NO_PROJECTION ? 0
                                                     : (d->projection == MCL_FLURKA_PER_HEAD ? d->heads : 1) * d->rank * d->seq;
}

static cl_mem upload_or_null(mcl_context *ctx, const float *x, size_t n)
{
    return x && n ? host_upload(ctx, MCL_F32, x, n) : NULL;
}

static void run_forward(mcl_context *ctx, const mcl_flurka_desc *d, const host_call *in, float *out, float *den)
{
    size_t t = d->batch * d->heads * d->seq * d->head_dim, rows = d->batch * d->heads * d->seq;
    cl_mem q = host_upload(ctx, MCL_F32, in->q, t), k = host_upload(ctx, MCL_F32, in->k, t),
           v = host_upload(ctx, MCL_F32, in->v, t), e = upload_or_null(ctx, in->e, projection_elems(d)),
           f = upload_or_null(ctx, in->f, projection_elems(d)), w = upload_or_null(ctx, in->w, d->features * d->head_dim),
           o = host_upload(ctx, MCL_F32, NULL, t), n = host_upload(ctx, MCL_F32, NULL, rows);
    mcl_flurka_fwd_tensors tensors = {{q, 0}, {k, 0}, {v, 0}, {e, 0}, {f, 0}, {w, 0}, {o, 0}, {n, 0}};
    assert_ok(mcl_flurka_forward(ctx, d, &tensors, NULL));
    if (out) host_download(ctx, o, MCL_F32, out, t);
    if (den) host_download(ctx, n, MCL_F32, den, rows);
    cl_mem all[] = {q, k, v, e, f, w, o, n};
    for (size_t i = 0; i < COUNT_OF(all); i++)
        if (all[i]) clReleaseMemObject(all[i]);
}

/* ||a - b|| / ||b|| */
static double rel_error(const float *a, const float *b, size_t n)
{
    double diff = 0.0, norm = 0.0;
    for (size_t i = 0; i < n; i++) diff += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), norm += (double)b[i] * b[i];
    return sqrt(diff / norm);
}

static float *random_array(host_rng *rng, size_t n, float lo, float hi)
{
    float *x = malloc(n * sizeof *x);
    cr_assert_not_null(x);
    host_fill_uniform(rng, x, n, lo, hi);
    return x;
}

/* k = N with E = F = I: FLuRKA is the kernel method (Performer) for every map, and Linformer is
 * full attention (EvoAttention without biases). */
Test(flurka, identity_projection_gives_the_kernel_method_and_full_attention, .timeout = 600)
{
    enum { B = 1, H = 2, N = 24, D = 8, M = 16 };
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    size_t t = B * H * N * D;
    float *q = random_array(&rng, t, -1, 1), *k = random_array(&rng, t, -1, 1), *v = random_array(&rng, t, -1, 1);
    float *eye = calloc(N * N, sizeof *eye), w[M * D], *with = malloc(t * sizeof *with), *without = malloc(t * sizeof *without);
    for (size_t i = 0; i < N; i++) eye[i * N + i] = 1.0f;
    assert_ok(mcl_flurka_draw_features(test_seed(), M, D, MCL_FLURKA_CHI_NORMS, w));
    for (size_t m = 0; m < 3; m++) {
        size_t features = maps[m] == MCL_FLURKA_ELU ? 0 : M;
        const float *wm = features ? w : NULL;
        mcl_flurka_desc projected = {B, H, N, D, N, features, maps[m], MCL_FLURKA_SHARED, MCL_F32};
        mcl_flurka_desc kernel = {B, H, N, D, 0, features, maps[m], MCL_FLURKA_NO_PROJECTION, MCL_F32};
        run_forward(ctx, &projected, &(host_call){q, k, v, eye, eye, wm}, with, NULL);
        run_forward(ctx, &kernel, &(host_call){q, k, v, NULL, NULL, wm}, without, NULL);
        double err = rel_error(with, without, t);
        cr_expect_lt(err, 1e-5, "map %d: FLuRKA with E = F = I differs from the kernel method by %.3g", (int)maps[m], err);
    }
    mcl_flurka_desc linformer = {B, H, N, D, N, 0, MCL_FLURKA_SOFTMAX, MCL_FLURKA_SHARED, MCL_F32};
    run_forward(ctx, &linformer, &(host_call){q, k, v, eye, eye, NULL}, with, NULL);
    cl_mem qb = host_upload(ctx, MCL_F32, q, t), kb = host_upload(ctx, MCL_F32, k, t), vb = host_upload(ctx, MCL_F32, v, t),
           ob = host_upload(ctx, MCL_F32, NULL, t);
    mcl_evoattn_desc full = {B, H, N, 1, D, MCL_F32, 0.0f};
    mcl_evoattn_fwd_tensors ft = {.q = {qb, 0}, .k = {kb, 0}, .v = {vb, 0}, .out = {ob, 0}};
    assert_ok(mcl_evoattn_forward(ctx, &full, &ft, NULL));
    host_download(ctx, ob, MCL_F32, without, t);
    double err = rel_error(with, without, t);
    cr_expect_lt(err, 1e-5, "Linformer with E = F = I differs from full attention by %.3g", err);
    clReleaseMemObject(qb), clReleaseMemObject(kb), clReleaseMemObject(vb), clReleaseMemObject(ob);
    float *arrays[] = {q, k, v, eye, with, without};
    test_free_all(arrays, COUNT_OF(arrays));
    mcl_context_release(ctx);
}

/* The bench's quality figure (the workload's approximation_error): at N = 8 its sample is every
 * row, so it is the relative error against full attention (EvoAttention) on the same Q, K, V;
 * O = 0 is off by exactly 1; full attention reports none. */
Test(flurka, approximation_error_is_against_full_attention)
{
    enum { B = 1, H = 2, N = 8, D = 16, T = B * H * N * D };
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    const shape s = {B, H, N, D, 4, 16};
    wl_problem *p = test_problem(ctx, &wl_flurka, make_case(s, MCL_FLURKA_FAVOR, OPT_SHARED, MCL_F32, WL_ALL),
                                 WL_OFF_ZERO, &rng);
    double err[WL_MAX_TENSORS], tol[WL_MAX_TENSORS];
    int ok = 0;
    assert_ok(wl_verify(p, NULL, err, tol, &ok));
    cl_mem qb = host_upload(ctx, MCL_F32, p->t[T_Q].values, T), kb = host_upload(ctx, MCL_F32, p->t[T_K].values, T),
           vb = host_upload(ctx, MCL_F32, p->t[T_V].values, T), ob = host_upload(ctx, MCL_F32, NULL, T);
    mcl_evoattn_desc full = {B, H, N, 1, D, MCL_F32, 0.0f};
    mcl_evoattn_fwd_tensors ft = {.q = {qb, 0}, .k = {kb, 0}, .v = {vb, 0}, .out = {ob, 0}};
    assert_ok(mcl_evoattn_forward(ctx, &full, &ft, NULL));
    float exact[T];
    host_download(ctx, ob, MCL_F32, exact, T);
    double want = rel_error(p->t[T_OUT].values, exact, T), got = wl_flurka.approximation_error(p);
    cr_expect(fabs(got - want) <= 1e-5 * want, "approximation error %.6g, against full attention %.6g", got, want);
    memset(p->t[T_OUT].values, 0, T * sizeof(float));
    cr_expect(fabs(wl_flurka.approximation_error(p) - 1.0) < 1e-12, "O = 0 is off by exactly 1");
    clReleaseMemObject(qb), clReleaseMemObject(kb), clReleaseMemObject(vb), clReleaseMemObject(ob);
    wl_destroy(p);
    wl_case exact_case = {{B, H, N, D, 4}, MCL_F32, OPT_FULL, WL_ALL, 16};
    p = test_problem(ctx, &wl_flurka, exact_case, WL_OFF_ZERO, &rng);
    cr_expect_lt(wl_flurka.approximation_error(p), 0.0, "full attention is exact");
    wl_destroy(p);
    mcl_context_release(ctx);
}

/* FAVOR+ estimates the softmax kernel with an error of order 1/sqrt(m): against Linformer on the
 * same projection, its mean error over draws of W falls from m = 64 to m = 1024 by well over the
 * 2x of a 1/m^(1/4) rate (1/sqrt(m) gives 4x) and ends within a few 1/sqrt(m). */
Test(flurka, favor_approaches_linformer_as_features_grow, .timeout = 600)
{
    enum { B = 1, H = 2, N = 64, D = 16, K = 16, DRAWS = 8 };
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    size_t t = B * H * N * D;
    float *q = random_array(&rng, t, -0.5f, 0.5f), *k = random_array(&rng, t, -0.5f, 0.5f), *v = random_array(&rng, t, -1, 1);
    float *e = random_array(&rng, K * N, -0.25f, 0.25f), *f = random_array(&rng, K * N, -0.25f, 0.25f);
    float *lin = malloc(t * sizeof *lin), *fav = malloc(t * sizeof *fav), *w = malloc(1024 * D * sizeof *w);
    mcl_flurka_desc linformer = {B, H, N, D, K, 0, MCL_FLURKA_SOFTMAX, MCL_FLURKA_SHARED, MCL_F32};
    run_forward(ctx, &linformer, &(host_call){q, k, v, e, f, NULL}, lin, NULL);
    const size_t ms[] = {64, 1024};
    double mean[2] = {0, 0};
    for (size_t i = 0; i < 2; i++) {
        for (uint64_t draw = 0; draw < DRAWS; draw++) {
            assert_ok(mcl_flurka_draw_features(test_seed() + draw, ms[i], D, MCL_FLURKA_CHI_NORMS, w));
            mcl_flurka_desc favor = {B, H, N, D, K, ms[i], MCL_FLURKA_FAVOR, MCL_FLURKA_SHARED, MCL_F32};
            run_forward(ctx, &favor, &(host_call){q, k, v, e, f, w}, fav, NULL);
            mean[i] += rel_error(fav, lin, t) / DRAWS;
        }
        cr_log_info("m = %zu: FAVOR+ against Linformer %.4f (1/sqrt(m) = %.4f)\n", ms[i], mean[i], 1.0 / sqrt((double)ms[i]));
    }
    cr_expect_lt(mean[1], mean[0] / 2.5, "m = 1024 (%.4f) is not 2.5x closer than m = 64 (%.4f)", mean[1], mean[0]);
    cr_expect_lt(mean[1], 3.0 / sqrt(1024.0), "m = 1024: %.4f is not within 3 / sqrt(m)", mean[1]);
    float *arrays[] = {q, k, v, e, f, lin, fav, w};
    test_free_all(arrays, COUNT_OF(arrays));
    mcl_context_release(ctx);
}

/* Inputs whose FAVOR+ exponents reach about 90 (exp overflows fp32 without the stabilisers), keys
 * and queries that elu + 1 maps to about e^-60 (their products underflow), ReLU features at their
 * offset: the denominator stays at FLT_MIN or above, and the outputs and gradients finite. */
Test(flurka, the_denominator_never_reaches_zero, .timeout = 600)
{
    enum { B = 1, H = 2, N = 40, D = 16, K = 8, M = 32 };
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    size_t t = B * H * N * D;
    float *q = random_array(&rng, t, -20, 20), *k = random_array(&rng, t, -20, 20), *v = random_array(&rng, t, -1, 1);
    float *e = random_array(&rng, K * N, 0.0f, 0.05f), *out = malloc(t * sizeof *out), *den = malloc(B * H * N * sizeof *den);
    float *low = malloc(t * sizeof *low), w[M * D];
    for (size_t i = 0; i < t; i++) low[i] = -60.0f;
    assert_ok(mcl_flurka_draw_features(test_seed(), M, D, MCL_FLURKA_CHI_NORMS, w));
    for (size_t m = 0; m < 3; m++) {
        const float *x = maps[m] == MCL_FLURKA_ELU ? low : q;
        mcl_flurka_desc d = {B, H, N, D, K, maps[m] == MCL_FLURKA_ELU ? 0 : M, maps[m], MCL_FLURKA_SHARED, MCL_F32};
        run_forward(ctx, &d, &(host_call){x, maps[m] == MCL_FLURKA_ELU ? low : k, v, e, e, maps[m] == MCL_FLURKA_ELU ? NULL : w},
                    out, den);
        for (size_t i = 0; i < B * H * N; i++)
            cr_assert(den[i] >= FLT_MIN && isfinite(den[i]), "map %d: den[%zu] = %g", (int)maps[m], i, den[i]);
        for (size_t i = 0; i < t; i++) cr_assert(isfinite(out[i]), "map %d: out[%zu] = %g", (int)maps[m], i, out[i]);
    }
    float *arrays[] = {q, k, v, e, out, den, low};
    test_free_all(arrays, COUNT_OF(arrays));
    mcl_context_release(ctx);
}

/* ---- the random features ----------------------------------------------------------------- */

/* The same seed gives the same W, another seed another; with sqrt(D) norms every block of D rows
 * is orthogonal with rows of norm sqrt(D); chi(D) norms average |w|^2 = D. */
Test(flurka, draw_features_is_seeded_orthogonal_and_normed)
{
    enum { D = 16, M = 40, MANY = 4096 };
    float a[M * D], b[M * D], c[M * D];
    assert_ok(mcl_flurka_draw_features(7, M, D, MCL_FLURKA_SQRT_D_NORMS, a));
    assert_ok(mcl_flurka_draw_features(7, M, D, MCL_FLURKA_SQRT_D_NORMS, b));
    assert_ok(mcl_flurka_draw_features(8, M, D, MCL_FLURKA_SQRT_D_NORMS, c));
    cr_expect_eq(memcmp(a, b, sizeof a), 0, "the same seed drew two different W");
    cr_expect_neq(memcmp(a, c, sizeof a), 0, "seeds 7 and 8 drew the same W");
    for (size_t i = 0; i < M; i++)
        for (size_t j = i - i % D; j <= i; j++) { /* rows of i's block up to i */
            double dot = 0.0;
            for (size_t x = 0; x < D; x++) dot += (double)a[i * D + x] * a[j * D + x];
            double expected = i == j ? D : 0.0;
            cr_expect(fabs(dot - expected) < 1e-4 * D, "rows %zu and %zu: dot %.6g, expected %g", i, j, dot, expected);
        }
    float *many = malloc(MANY * D * sizeof *many);
    assert_ok(mcl_flurka_draw_features(test_seed(), MANY, D, MCL_FLURKA_CHI_NORMS, many));
    double mean = 0.0;
    for (size_t i = 0; i < MANY * D; i++) mean += (double)many[i] * many[i] / MANY;
    cr_expect(fabs(mean - D) < 1.0, "chi(%d) norms: mean |w|^2 %.3f, expected %d", D, mean, D);
    free(many);
    assert_status(mcl_flurka_draw_features(1, M, D, MCL_FLURKA_CHI_NORMS, NULL), MCL_ERR_NULL_POINTER);
    assert_status(mcl_flurka_draw_features(1, 0, D, MCL_FLURKA_CHI_NORMS, a), MCL_ERR_INVALID_SIZE);
    assert_status(mcl_flurka_draw_features(1, M, 0, MCL_FLURKA_CHI_NORMS, a), MCL_ERR_INVALID_SIZE);
    assert_status(mcl_flurka_draw_features(1, M, D, (mcl_flurka_norms)7, a), MCL_ERR_INVALID_ARGUMENT);
}

/* ---- the reference itself ------------------------------------------------------------- */

/* L = sum dout . out by the reference forward */
static double loss(const void *problem)
{
    const ref_flurka_problem *p = problem;
    size_t n = p->batch * p->heads * p->seq * p->dim;
    double *out = malloc(n * sizeof *out), l = 0.0;
    cr_assert_eq(ref_flurka_forward(p, out, NULL, NULL), 0);
    for (size_t i = 0; i < n; i++) l += p->dout[i] * out[i];
    free(out);
    return l;
}

/* Its gradients are those of L for every map and projection, per-head E and F included. */
/* The smallest |w_r . x| over every query, key and projected key (E shared, and E per head) of
 * the finite-difference problem. A central difference across ReLU's kink at 0 is no derivative,
 * so the inputs are drawn again until the step (2^-16, moving w_r . x by far less than 0.01)
 * cannot reach one. */
static double nearest_relu_kink(ref_flurka_problem p)
{
    double nearest = INFINITY;
    size_t rank = p.rank;
    p.map = MCL_FLURKA_RELU;
    for (int projection = MCL_FLURKA_NO_PROJECTION; projection <= MCL_FLURKA_PER_HEAD; projection++) {
        p.projection = projection, p.rank = projection == MCL_FLURKA_NO_PROJECTION ? 0 : rank;
        nearest = fmin(nearest, ref_flurka_nearest_relu_kink(&p));
    }
    return nearest;
}

Test(flurka, reference_matches_finite_differences)
{
    enum { B = 1, H = 2, N = 5, D = 3, K = 3, M = 4, T = B * H * N * D, P = H * K * N };
    host_rng rng = host_rng_seeded(test_seed());
    float q[T], k[T], v[T], e[P], f[P], w[M * D], dout[T];
    assert_ok(mcl_flurka_draw_features(test_seed(), M, D, MCL_FLURKA_CHI_NORMS, w));
    do {
        host_fill_uniform(&rng, q, T, -1, 1), host_fill_uniform(&rng, k, T, -1, 1), host_fill_uniform(&rng, v, T, -1, 1);
        host_fill_uniform(&rng, e, P, -0.5f, 0.5f), host_fill_uniform(&rng, f, P, -0.5f, 0.5f);
        host_fill_uniform(&rng, dout, T, -1, 1);
    } while (nearest_relu_kink((ref_flurka_problem){B, H, N, D, K, M, MCL_FLURKA_RELU, MCL_FLURKA_SHARED, q, k, v, e,
                                                    f, w, dout}) < 0.01);
    for (size_t m = 0; m < COUNT_OF(maps); m++)
        for (int projection = MCL_FLURKA_NO_PROJECTION; projection <= MCL_FLURKA_PER_HEAD; projection++) {
            if (maps[m] == MCL_FLURKA_SOFTMAX && projection == MCL_FLURKA_NO_PROJECTION) continue;
            int proj = projection != MCL_FLURKA_NO_PROJECTION;
            size_t pe = proj ? (projection == MCL_FLURKA_PER_HEAD ? H : 1) * K * N : 0;
            size_t features = maps[m] == MCL_FLURKA_FAVOR || maps[m] == MCL_FLURKA_RELU ? M : 0;
            ref_flurka_problem p = {B, H, N, D, proj ? K : 0, features, maps[m], projection, q, k, v, e, f, w, dout};
            double dq[T], dk[T], dv[T], de[P], df[P];
            cr_assert_eq(ref_flurka_backward(&p, dq, dk, dv, proj ? de : NULL, proj ? df : NULL), 0);
            const test_fd_gradient g[] = {{"q", q, T, dq}, {"k", k, T, dk}, {"v", v, T, dv}, {"e", e, pe, de}, {"f", f, pe, df}};
            cr_log_info("map %d, projection %d\n", (int)maps[m], projection);
            test_expect_fd_gradients(loss, &p, g, proj ? 5 : 3, 1.0f / 65536, 1e-5);
        }
}

/* ---- bad inputs: a specific status, a message, and no buffer touched ------------------------ */

enum { BB = 1, BH = 2, BN = 8, BD = 4, BK = 3, BM = 5 };
/* inputs: q, k, v, dout [1,2,8,4] @0, 256, 512, 768; e, f [3,8] @1024, 1120; w [5,4] @1216
 * (1296 bytes); outputs: out @0, normalizer [1,2,8] @256, dq @320, dk @576, dv @832, de @1088,
 * df @1184 (1280 bytes) */
enum { IN_BYTES = 1296, OUT_BYTES = 1280 };

typedef struct bad_fixture {
    TEST_BAD_FIXTURE_OF(flurka);
} bad_fixture;

static bad_fixture bad_setup(void)
{
    bad_fixture f = {.b = test_bad_buffers_make("flurka", IN_BYTES, OUT_BYTES)};
    cl_mem i = f.b.in, o = f.b.out;
    f.desc = (mcl_flurka_desc){BB, BH, BN, BD, BK, BM, MCL_FLURKA_FAVOR, MCL_FLURKA_SHARED, MCL_F32};
    f.ft = (mcl_flurka_fwd_tensors){{i, 0}, {i, 256}, {i, 512}, {i, 1024}, {i, 1120}, {i, 1216}, {o, 0}, {o, 256}};
    f.bt = (mcl_flurka_bwd_tensors){{i, 0},   {i, 256}, {i, 512},  {i, 1024}, {i, 1120}, {i, 1216},
                                    {i, 768}, {o, 320}, {o, 576}, {o, 832},  {o, 1088}, {o, 1184}};
    return f;
}

#define DESC(b, h, n, d, k, m, map, projection, dtype) {b, h, n, d, k, m, map, projection, dtype}
static const TEST_DESC_FAULT(mcl_flurka_desc) desc_faults[] = {
    {DESC(0, BH, BN, BD, BK, BM, MCL_FLURKA_FAVOR, MCL_FLURKA_SHARED, MCL_F32), MCL_ERR_INVALID_SIZE, "batch (0)", "zero batch"},
    {DESC(BB, BH, BN, BD, BN + 1, BM, MCL_FLURKA_FAVOR, MCL_FLURKA_SHARED, MCL_F32), MCL_ERR_INVALID_SIZE, "rank k (9)",
     "k > N"},
    {DESC(BB, BH, BN, BD, BK, 0, MCL_FLURKA_FAVOR, MCL_FLURKA_SHARED, MCL_F32), MCL_ERR_INVALID_SIZE, "features m (0)",
     "m = 0"},
    {DESC(BB, BH, BN, 300, BK, BM, MCL_FLURKA_FAVOR, MCL_FLURKA_SHARED, MCL_F32), MCL_ERR_INVALID_SIZE, "head_dim 300",
     "head dim above 256"},
    {DESC(BB, BH, BN, BD, BK, BM, MCL_FLURKA_FAVOR, MCL_FLURKA_SHARED, (mcl_dtype)7), MCL_ERR_UNSUPPORTED_DTYPE, "dtype 7",
     "unknown dtype"},
    {DESC(BB, BH, BN, BD, BK, BM, (mcl_flurka_map)9, MCL_FLURKA_SHARED, MCL_F32), MCL_ERR_INVALID_ARGUMENT, "map 9",
     "unknown map"},
    {DESC(BB, BH, BN, BD, BK, BM, MCL_FLURKA_FAVOR, (mcl_flurka_projection)5, MCL_F32), MCL_ERR_INVALID_ARGUMENT,
     "projection 5", "unknown projection"},
    {DESC(BB, BH, BN, BD, 0, 0, MCL_FLURKA_SOFTMAX, MCL_FLURKA_NO_PROJECTION, MCL_F32), MCL_ERR_UNSUPPORTED,
     "full attention", "softmax without a projection"},
    {DESC(BB, BH, BN, BD, BK, 0, MCL_FLURKA_FAVOR, MCL_FLURKA_NO_PROJECTION, MCL_F32), MCL_ERR_INVALID_ARGUMENT,
     "without a projection", "a rank without a projection"},
    {DESC(BB, BH, BN, BD, BK, BM, MCL_FLURKA_ELU, MCL_FLURKA_SHARED, MCL_F32), MCL_ERR_INVALID_ARGUMENT,
     "features 5 are given", "features for elu+1"},
    {DESC(BB, BH, SIZE_MAX / 4, BD, BK, BM, MCL_FLURKA_FAVOR, MCL_FLURKA_SHARED, MCL_F32), MCL_ERR_SIZE_OVERFLOW,
     "overflows", "element count overflow"},
};

/* Every refused call of the forward and the backward, no buffer touched; tensors the options
 * leave unread are refused too; the size function refuses what it cannot size. */
Test(flurka, bad_inputs)
{
    bad_fixture f = bad_setup();
    cl_mem in = f.b.in, out = f.b.out, small = f.b.small;
    cl_mem other_n = test_bad_buffer(&f.b, BK * 4 * sizeof(float), TEST_IN_BYTE); /* E of N = 4 */
    mcl_flurka_fwd_tensors ft;
    const test_required fwd_required[] = {TEST_REQUIRED(ft, q), TEST_REQUIRED(ft, k), TEST_REQUIRED(ft, v),
                                          TEST_REQUIRED(ft, e), TEST_REQUIRED(ft, f), TEST_REQUIRED(ft, w),
                                          TEST_REQUIRED(ft, out)};
    const test_tensor_fault fwd_faults[] = {
        {"small out", MCL_ERR_BUFFER_TOO_SMALL, "out buffer holds 16 bytes", {{&ft.out, {small, 0}}}},
        {"E for another N", MCL_ERR_BUFFER_TOO_SMALL, "e buffer holds 48 bytes", {{&ft.e, {other_n, 0}}}},
        {"k of fewer heads (shapes do not match)", MCL_ERR_BUFFER_TOO_SMALL, "k buffer", {{&ft.k, {in, 1100}}}},
        {"small W", MCL_ERR_BUFFER_TOO_SMALL, "w buffer", {{&ft.w, {small, 0}}}},
        {"small normalizer", MCL_ERR_BUFFER_TOO_SMALL, "normalizer buffer", {{&ft.normalizer, {small, 0}}}},
        {"misaligned out", MCL_ERR_INVALID_ARGUMENT, "not a multiple", {{&ft.out, {out, 2}}}},
        {"out over q", MCL_ERR_INVALID_ARGUMENT, "output out overlaps q", {{&ft.out, {in, 0}}}},
    };
    mcl_flurka_bwd_tensors bt;
    const test_required bwd_required[] = {TEST_REQUIRED(bt, q), TEST_REQUIRED(bt, k), TEST_REQUIRED(bt, v),
                                          TEST_REQUIRED(bt, e), TEST_REQUIRED(bt, f), TEST_REQUIRED(bt, w),
                                          TEST_REQUIRED(bt, dout)};
    const test_tensor_fault bwd_faults[] = {
        {"no output", MCL_ERR_INVALID_ARGUMENT, "no output requested",
         {TEST_LEFT_OUT(bt, dq), TEST_LEFT_OUT(bt, dk), TEST_LEFT_OUT(bt, dv), TEST_LEFT_OUT(bt, de),
          TEST_LEFT_OUT(bt, df)}},
        {"small dq", MCL_ERR_BUFFER_TOO_SMALL, "dq buffer", {{&bt.dq, {small, 0}}}},
        {"F for another N", MCL_ERR_BUFFER_TOO_SMALL, "f buffer holds 48 bytes", {{&bt.f, {other_n, 0}}}},
        {"dE over e", MCL_ERR_INVALID_ARGUMENT, "output de overlaps e", {{&bt.de, {in, 1024}}}},
        {"dk on dv", MCL_ERR_INVALID_ARGUMENT, "overlaps", {{&bt.dk, f.bt.dv}}},
    };
    EXPECT_REFUSED_CALLS(&f.b, mcl_flurka_forward, f.desc, f.ft, ft, desc_faults, fwd_required, fwd_faults);
    EXPECT_REFUSED_CALLS(&f.b, mcl_flurka_backward, f.desc, f.bt, bt, desc_faults, bwd_required, bwd_faults);

    /* tensors the call does not read: E and F without a projection, W for elu + 1 */
    mcl_flurka_desc performer = {BB, BH, BN, BD, 0, BM, MCL_FLURKA_FAVOR, MCL_FLURKA_NO_PROJECTION, MCL_F32};
    test_expect_refused(&f.b, "mcl_flurka_forward", mcl_flurka_forward(f.b.ctx, &performer, &f.ft, NULL),
                        MCL_ERR_INVALID_ARGUMENT, "e is given", "E for a Performer");
    mcl_flurka_desc elu = {BB, BH, BN, BD, BK, 0, MCL_FLURKA_ELU, MCL_FLURKA_SHARED, MCL_F32};
    test_expect_refused(&f.b, "mcl_flurka_backward", mcl_flurka_backward(f.b.ctx, &elu, &f.bt, NULL),
                        MCL_ERR_INVALID_ARGUMENT, "w is given", "W for elu + 1");

    size_t fwd, bwd;
    assert_status(mcl_flurka_workspace_size(f.b.ctx, &f.desc, &fwd, NULL), MCL_ERR_NULL_POINTER);
    assert_status(mcl_flurka_workspace_size(NULL, &f.desc, &fwd, &bwd), MCL_ERR_NULL_POINTER);
    assert_status(mcl_flurka_workspace_size(f.b.ctx, &desc_faults[1].desc, &fwd, &bwd), MCL_ERR_INVALID_SIZE);
    assert_ok(mcl_flurka_workspace_size(f.b.ctx, &f.desc, &fwd, &bwd));
    cr_expect(fwd > 0 && bwd > fwd, "workspace: forward %zu, backward %zu bytes", fwd, bwd);
    test_bad_buffers_release(&f.b);
}

TEST_EVENTS_RETURNED(flurka)
