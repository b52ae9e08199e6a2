/* The pair-stack block (tests/workload/pairstack.c) that `megacl demo` runs: its two paths, megacl's
 * ops and the unfused path, agree on the block's output and every gradient at a small size on
 * fresh inputs; the memory a step needs is the buffers a run holds plus the workspace its ops
 * take; and the search for the largest N_res that fits finds it on a fake memory budget. Nothing
 * here is timed. */
#include "common.h"

#include "workload/pairstack.h"

#include <math.h>
#include <stdlib.h>

/* A size that fills no tile: N_res = 20, the block's AF3 channels. */
#define SMALL_N 20

/* The forward of every sub-block, then every backward in reverse order. */
static void run_step(ps_run *r, const char *path)
{
    for (int sub = 0; sub < PS_SUBBLOCKS; sub++)
        cr_assert_eq(ps_run_forward(r, sub), MCL_OK, "%s: %s forward: %s", path, ps_subblock_names[sub],
                     wl_last_error());
    for (int sub = PS_SUBBLOCKS - 1; sub >= 0; sub--)
        cr_assert_eq(ps_run_backward(r, sub), MCL_OK, "%s: %s backward: %s", path, ps_subblock_names[sub],
                     wl_last_error());
}

/* The block's results on one path. */
static void results_of(mcl_context *ctx, const ps_block *b, const ps_path *path, ps_results *out)
{
    ps_run *r = NULL;
    cr_assert_eq(ps_run_create(ctx, b, path, &r), MCL_OK, "%s: %s", ps_path_name(path), wl_last_error());
    run_step(r, ps_path_name(path));
    cr_assert_eq(ps_run_fetch(r, out), MCL_OK, "%s: %s", ps_path_name(path), wl_last_error());
    ps_run_destroy(r);
}

static double norm(const float *v, size_t n)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += (double)v[i] * v[i];
    return sqrt(sum);
}

static void expect_paths_agree(mcl_dtype dtype)
{
    mcl_context *ctx = test_context();
    ps_config c = ps_af3(SMALL_N, dtype);
    ps_block *b = NULL;
    cr_assert_eq(ps_block_create(&c, test_seed(), &b), MCL_OK, "%s", wl_last_error());
    ps_results fused, unfused;
    results_of(ctx, b, &ps_megacl, &fused);
    results_of(ctx, b, &ps_unfused, &unfused);
    cr_assert_eq(fused.count, unfused.count);
    size_t params = 0; /* z_out, dz and every parameter's gradient */
    for (int sub = 0; sub < PS_SUBBLOCKS; sub++) params += ps_params_of(&c, sub, (ps_param[PS_MAX_PARAMS]){{0}});
    cr_assert_eq(fused.count, 2 + params);
    for (size_t i = 0; i < fused.count; i++) {
        double diff = ps_difference(fused.values[i], unfused.values[i], fused.sizes[i]);
        cr_expect_gt(norm(unfused.values[i], unfused.sizes[i]), 0.0, "%s is all zero: the paths would agree trivially",
                     unfused.names[i]);
        cr_expect_leq(diff, ps_tolerance(dtype), "%s: %s differs from the unfused path's by %.3g (tolerance %.2g)",
                      mcl_dtype_name(dtype), fused.names[i], diff, ps_tolerance(dtype));
    }
    ps_results_free(&fused), ps_results_free(&unfused);
    ps_block_destroy(b);
    mcl_context_release(ctx);
}

Test(pairstack, megacl_and_unfused_paths_agree_in_f32, .timeout = 900)
{
    expect_paths_agree(MCL_F32);
}

Test(pairstack, megacl_bf16_and_unfused_paths_agree, .timeout = 900)
{
    expect_paths_agree(MCL_BF16);
}

/* ---- memory --------------------------------------------------------------------------------- */

/* A run holds exactly the buffers the memory need counts, and its ops take no more workspace
 * than they report. */
Test(pairstack, memory_need_is_what_a_run_holds_and_takes, .timeout = 900)
{
    mcl_context *ctx = test_context();
    const ps_path *paths[] = {&ps_megacl, &ps_unfused};
    ps_config c = ps_af3(SMALL_N, MCL_F32);
    ps_block *b = NULL;
    cr_assert_eq(ps_block_create(&c, test_seed(), &b), MCL_OK, "%s", wl_last_error());
    for (size_t i = 0; i < COUNT_OF(paths); i++) {
        ps_memory need;
        cr_assert_eq(ps_memory_need(ctx, paths[i], &c, &need), MCL_OK, "%s", wl_last_error());
        ps_run *r = NULL;
        cr_assert_eq(ps_run_create(ctx, b, paths[i], &r), MCL_OK, "%s", wl_last_error());
        cr_expect_eq(ps_run_buffer_bytes(r), need.buffers, "%s: the run holds %.0f bytes, the need counts %.0f",
                     ps_path_name(paths[i]), ps_run_buffer_bytes(r), need.buffers);
        assert_ok(mcl_context_trim(ctx));
        mcl_context_reset_peak(ctx);
        run_step(r, ps_path_name(paths[i]));
        assert_ok(mcl_finish(ctx));
        mcl_context_stats stats;
        mcl_context_get_stats(ctx, &stats);
        cr_expect_leq((double)stats.workspace_peak_bytes, need.workspace,
                      "%s: the ops took %llu workspace bytes, their size functions report %.0f", ps_path_name(paths[i]),
                      (unsigned long long)stats.workspace_peak_bytes, need.workspace);
        ps_run_destroy(r);
    }
    ps_block_destroy(b);
    mcl_context_release(ctx);
}

/* ---- the largest N_res that fits -------------------------------------------------------------- */

/* fits(n) while n <= the limit in `user`; counts its calls */
typedef struct fake_budget {
    size_t largest, calls;
} fake_budget;

static int fits_below(size_t n, void *user)
{
    fake_budget *b = user;
    b->calls++;
    return n <= b->largest;
}

/* Every answer from none to the search's limit, each found in a logarithmic number of calls. */
Test(pairstack, max_tokens_search_finds_the_edge_of_a_fake_budget)
{
    static const size_t largest[] = {0, 1, 2, 3, 7, 100, 383, 384, 385, 1000, 4095, 4096, 5000};
    for (size_t i = 0; i < COUNT_OF(largest); i++) {
        fake_budget b = {largest[i], 0};
        size_t limit = 4096, expected = largest[i] < limit ? largest[i] : limit;
        size_t found = ps_max_tokens(fits_below, &b, limit);
        cr_expect_eq(found, expected, "largest %zu: found %zu", largest[i], found);
        cr_expect_leq(b.calls, 2 * 13 + 2, "largest %zu: %zu calls", largest[i], b.calls);
    }
    cr_expect_eq(ps_max_tokens(fits_below, &(fake_budget){10, 0}, 0), 0);
}

/* A budget of exactly a step's need at N admits N and no more; a byte less, N - 1; an allocation
 * limit below its largest buffer, less than N. */
Test(pairstack, max_tokens_of_each_path_on_a_fake_device)
{
    mcl_context *ctx = test_context();
    const ps_path *paths[] = {&ps_megacl, &ps_unfused};
    for (size_t i = 0; i < COUNT_OF(paths); i++) {
        ps_config c = ps_af3(100, MCL_F32);
        ps_memory need, found;
        cr_assert_eq(ps_memory_need(ctx, paths[i], &c, &need), MCL_OK, "%s", wl_last_error());
        ps_budget exact = {ps_memory_total(&need), need.largest};
        cr_expect_eq(ps_max_tokens_within(ctx, paths[i], &c, &exact, 4096, &found), 100, "%s", ps_path_name(paths[i]));
        cr_expect_eq(ps_memory_total(&found), ps_memory_total(&need));
        ps_budget short_a_byte = {exact.global_bytes - 1, exact.max_alloc_bytes};
        cr_expect_eq(ps_max_tokens_within(ctx, paths[i], &c, &short_a_byte, 4096, &found), 99, "%s",
                     ps_path_name(paths[i]));
        ps_budget small_allocations = {1e18, need.largest - 1};
        cr_expect_lt(ps_max_tokens_within(ctx, paths[i], &c, &small_allocations, 4096, &found), 100, "%s",
                     ps_path_name(paths[i]));
    }
    mcl_context_release(ctx);
}
