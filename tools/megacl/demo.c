/* megacl demo: one AF3 pair-stack block (tests/workload/pairstack.h) forward and backward on
 * megacl's ops and on the unfused path a PyTorch-eager user has, on the same inputs: their
 * results checked against each other, their time per sub-block and peak device memory compared;
 * or, with --max-tokens, the largest N_res whose step fits the device for each. */
#include "cli.h"

#include "demo.h"

#include <stdlib.h>
#include <string.h>

/* N_res by default: AF3's crop on a GPU; on a CPU a size whose whole demo takes well under a
 * minute on two cores through PoCL, compiling included. */
#define GPU_TOKENS 384
#define CPU_TOKENS 32
#define MAX_TOKENS 32768 /* of --tokens and of the --max-tokens search */
#define SEED 16          /* the block's inputs: every run of a size sees the same values */

static const char demo_help[] =
    "usage: megacl demo [--device SEL] [--tokens N] [--dtype f32|bf16] [--max-tokens] [--json FILE]\n"
    "\n"
    "One AF3 pair-stack block (Pairformer's pair track: triangle multiplication outgoing and\n"
    "incoming, triangle attention around the starting and the ending node, the pair transition,\n"
    "each with its residual) forward and backward with every parameter's gradient, on megacl's ops\n"
    "and on the unfused path a PyTorch-eager user has (CLBlast GEMMs, one elementwise operation a\n"
    "kernel, the attention's logits materialised; fp32 only). Checks that both give the same\n"
    "output and gradients, and prints each sub-block's time, the total and the peak device memory\n"
    "of both.\n"
    "\n"
    "  --device SEL    device selector (default: MEGACL_DEVICE, else the first GPU, else the CPU)\n"
    "  --tokens N      N_res (default 384 on a GPU, 32 on a CPU)\n"
    "  --dtype D       f32 (default) or bf16 storage for megacl; the unfused path stays fp32\n"
    "  --max-tokens    instead: the largest N_res whose step fits in the device's memory, each path\n"
    "  --json FILE     every figure, the checks and the device, as JSON\n";

enum { OPT_DEVICE, OPT_TOKENS, OPT_DTYPE, OPT_MAX_TOKENS, OPT_JSON, OPT_HELP, OPT_COUNT };

/* 1 with the settings, 0 after printing why (the command exits with 2). */
static int parse_settings(cli_option *o, demo_settings *s)
{
    *s = (demo_settings){.dtype = MCL_F32, .json = o[OPT_JSON].value, .max_tokens = o[OPT_MAX_TOKENS].given};
    if (o[OPT_TOKENS].value && !cli_parse_int(o[OPT_TOKENS].value, 1, MAX_TOKENS, &s->tokens))
        return cli_usage("demo", "--tokens takes a whole number from 1 to %d, not '%s'", MAX_TOKENS, o[OPT_TOKENS].value);
    if (s->tokens && s->max_tokens) return cli_usage("demo", "--tokens and --max-tokens do not go together");
    const char *dtype = o[OPT_DTYPE].value;
    if (dtype && strcmp(dtype, "f32") != 0 && strcmp(dtype, "bf16") != 0)
        return cli_usage("demo", "--dtype takes f32 or bf16, not '%s'", dtype);
    if (dtype) s->dtype = strcmp(dtype, "bf16") == 0 ? MCL_BF16 : MCL_F32;
    return 1;
}

/* ---- one path's step ------------------------------------------------------------------------ */

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, compare_doubles);
    return v[n / 2];
}

/* Every forward, then every backward in reverse order; with `ms`, each pass's device time
 * (ms[pass][sub], pass 0 the forward) from event profiling. Failures leave their message in
 * wl_last_error, as the block's own do. */
static mcl_status step(ps_run *r, mcl_context *ctx, double (*ms)[PS_SUBBLOCKS])
{
    for (int pass = 0; pass < 2; pass++)
        for (int k = 0; k < PS_SUBBLOCKS; k++) {
            int sub = pass ? PS_SUBBLOCKS - 1 - k : k;
            if (ms) WL_TRY(wl_op(mcl_profile_begin(ctx)));
            WL_TRY(pass ? ps_run_backward(r, sub) : ps_run_forward(r, sub));
            if (ms) WL_TRY(wl_op(mcl_profile_end(ctx, &ms[pass][sub])));
        }
    return wl_op(mcl_finish(ctx));
}

/* The warm-up step, which builds every kernel the path runs, measures its peak memory: the
 * run's buffers and the most workspace its ops took. */
static mcl_status warm_up(ps_run *r, mcl_context *ctx, path_result *out)
{
    printf("%s: warm-up step (compiling kernels for %s on first use)... ", out->name, mcl_context_device(ctx)->name);
    fflush(stdout);
    double start = cli_seconds();
    WL_TRY(wl_op(mcl_context_trim(ctx)));
    mcl_context_reset_peak(ctx);
    WL_TRY(step(r, ctx, NULL));
    mcl_context_stats stats;
    mcl_context_get_stats(ctx, &stats);
    out->buffer_bytes = ps_run_buffer_bytes(r);
    out->workspace_bytes = (double)stats.workspace_peak_bytes;
    printf("%.1f s\n", cli_seconds() - start);
    return MCL_OK;
}

/* Up to max_reps timed steps, fewer where they pass `budget_s` seconds (at least one); the
 * median of each pass. */
static mcl_status time_steps(ps_run *r, mcl_context *ctx, int max_reps, double budget_s, path_result *out)
{
    printf("%s: timing up to %d steps... ", out->name, max_reps);
    fflush(stdout);
    double times[2][PS_SUBBLOCKS][DEMO_MAX_REPS], start = cli_seconds();
    int reps = 0;
    while (reps < max_reps && (reps == 0 || cli_seconds() - start < budget_s)) {
        double ms[2][PS_SUBBLOCKS];
        WL_TRY(step(r, ctx, ms));
        for (int pass = 0; pass < 2; pass++)
            for (int sub = 0; sub < PS_SUBBLOCKS; sub++) times[pass][sub][reps] = ms[pass][sub];
        reps++;
    }
    for (int pass = 0; pass < 2; pass++)
        for (int sub = 0; sub < PS_SUBBLOCKS; sub++) out->ms[pass][sub] = median(times[pass][sub], reps);
    out->reps = reps;
    printf("%d in %.1f s\n", reps, cli_seconds() - start);
    return MCL_OK;
}

static mcl_status run_path(mcl_context *ctx, const ps_block *b, const ps_path *path, path_result *out)
{
    const mcl_device_info *device = mcl_context_device(ctx);
    *out = (path_result){.name = ps_path_name(path), .dtype = ps_path_dtype(path, b->config.dtype)};
    ps_run *r = NULL;
    mcl_status status = ps_run_create(ctx, b, path, &r);
    if (status == MCL_OK) status = warm_up(r, ctx, out);
    if (status == MCL_OK) status = time_steps(r, ctx, device->is_gpu ? 5 : 3, device->is_gpu ? 20.0 : 8.0, out);
    if (status == MCL_OK) status = ps_run_fetch(r, &out->results);
    ps_run_destroy(r);
    return status;
}

/* ---- the command ---------------------------------------------------------------------------- */

/* The status of the workload layer (pairstack.h) as a CLI failure. */
static int fail(const char *what, mcl_status status)
{
    fprintf(stderr, "megacl demo: %s: %s: %s\n", what, mcl_status_name(status), wl_last_error());
    return 1;
}

/* 1 when both paths' steps fit the device, else 0 after saying which does not: a size too large
 * is refused before anything is allocated on the host or the device. */
static int fits_device(mcl_context *ctx, const ps_path *const paths[2], const ps_config *c)
{
    const mcl_device_info *device = mcl_context_device(ctx);
    ps_budget budget = ps_budget_of(device);
    for (int i = 0; i < 2; i++) {
        ps_memory need;
        mcl_status status = ps_memory_need(ctx, paths[i], c, &need);
        if (status != MCL_OK) return !fail("sizing the step", status);
        if (ps_fits(&need, &budget)) continue;
        fprintf(stderr,
                "megacl demo: N_res = %zu does not fit %s: the %s path needs %.2f GiB with buffers of up to %.2f GiB, "
                "the device has %.2f GiB and buffers of up to %.2f GiB (megacl demo --max-tokens finds the largest "
                "N_res)\n",
                c->n, device->name, ps_path_name(paths[i]), ps_memory_total(&need) / (1 << 30), need.largest / (1 << 30),
                budget.global_bytes / (1 << 30), budget.max_alloc_bytes / (1 << 30));
        return 0;
    }
    return 1;
}

static int run_demo(mcl_context *ctx, const demo_settings *s)
{
    const mcl_device_info *device = mcl_context_device(ctx);
    size_t n = s->tokens ? (size_t)s->tokens : device->is_gpu ? GPU_TOKENS : CPU_TOKENS;
    ps_config c = ps_af3(n, s->dtype);
    const ps_path *paths[2] = {&ps_megacl, &ps_unfused};
    if (!fits_device(ctx, paths, &c)) return 1;
    demo_print_intro(&c, device);
    ps_block *b = NULL;
    mcl_status status = ps_block_create(&c, SEED, &b);
    if (status != MCL_OK) return fail("drawing the block's inputs", status);
    path_result results[2];
    int ran = 0, failed = 0;
    for (; ran < 2 && !failed; ran++)
        if ((status = run_path(ctx, b, paths[ran], &results[ran])) != MCL_OK)
            failed = fail(ps_path_name(paths[ran]), status);
    if (!failed) failed = demo_report(&c, device, results, s->json);
    for (int i = 0; i < ran; i++) ps_results_free(&results[i].results);
    ps_block_destroy(b);
    return failed;
}

static int max_tokens(mcl_context *ctx, const demo_settings *s)
{
    const mcl_device_info *device = mcl_context_device(ctx);
    ps_config c = ps_af3(1, s->dtype);
    ps_budget budget = ps_budget_of(device);
    const ps_path *paths[2] = {&ps_megacl, &ps_unfused};
    size_t n[2];
    ps_memory need[2];
    printf("the largest N_res whose pair-stack step (forward and backward) fits %s: %.1f GiB of memory, buffers "
           "of at most %.1f GiB\n",
           device->name, budget.global_bytes / (1 << 30), budget.max_alloc_bytes / (1 << 30));
    for (int i = 0; i < 2; i++) n[i] = ps_max_tokens_within(ctx, paths[i], &c, &budget, MAX_TOKENS, &need[i]);
    return demo_report_max_tokens(&c, device, paths, n, need, s->json);
}

int cmd_demo(int argc, char **argv)
{
    cli_option o[OPT_COUNT] = {{.name = "--device", .takes_value = 1}, {.name = "--tokens", .takes_value = 1},
                               {.name = "--dtype", .takes_value = 1},  {.name = "--max-tokens"},
                               {.name = "--json", .takes_value = 1},   {.name = "--help"}};
    demo_settings s;
    if (!cli_parse(argc, argv, 1, o, OPT_COUNT, "demo")) return 2;
    if (o[OPT_HELP].given) return fputs(demo_help, stdout), 0;
    if (!parse_settings(o, &s)) return 2;
    mcl_context *ctx;
    mcl_status status = mcl_context_create(o[OPT_DEVICE].value, &ctx);
    if (status != MCL_OK) return cli_fail("creating a context", status);
    int failed = s.max_tokens ? max_tokens(ctx, &s) : run_demo(ctx, &s);
    mcl_context_release(ctx);
    return failed;
}
