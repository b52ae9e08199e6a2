/* megacl bench: each workload's cases (tests/workload) verified against the double-precision
 * reference, then timed with event profiling next to the workload's baselines; a table on
 * stdout and every figure in JSON. */
#include "cli.h"

#include "workload/workload.h"

#include <json-c/json.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

json_object *cli_device_json(const mcl_device_info *d);

/* Names that run several workloads in one go: `fused` is MegaFold's set of fused operators. */
static const char *const fused_members[] = {"gating", "swiglu", "ln_linear", "transition", "trimul"};
#define WORKLOAD_NAMES CLI_WORKLOAD_NAMES "; fused runs gating, swiglu, ln_linear, transition and trimul"

typedef struct bench_settings {
    mcl_dtype dtypes[3];
    size_t dtype_count;
    int reps, warmup;
    size_t custom_shape[WL_MAX_RANK];
    int has_custom_shape;
    const char *params; /* --params: the megacl path's parameters */
    const char *impl;   /* --impl: run only this path */
    const char *json;
} bench_settings;

typedef struct bench_result {
    const char *case_name, *impl;
    mcl_dtype dtype;
    double fwd_ms, fwdbwd_ms, fwd_err, bwd_err, peak_bytes;
    int fwd_reps, fwdbwd_reps, ok;
    double err[WL_MAX_TENSORS], tol[WL_MAX_TENSORS]; /* err < 0: not checked */
    wl_counts counts;
} bench_result;

/* ---- one case --------------------------------------------------------------------------- */

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static mcl_status run_once(wl_problem *p, const wl_baseline *b, int with_backward)
{
    mcl_status status = wl_forward(p, b);
    return status == MCL_OK && with_backward ? wl_backward(p, b) : status;
}

static mcl_status time_once(wl_problem *p, const wl_baseline *b, int with_backward, double *ms)
{
    WL_TRY(wl_op(mcl_profile_begin(p->ctx)));
    mcl_status status = run_once(p, b, with_backward);
    mcl_status end = wl_op(mcl_profile_end(p->ctx, ms));
    return status != MCL_OK ? status : end;
}

/* Median device time of forward (and backward) over up to `reps` profiled runs. A slow case
 * (the unfused baselines at AF3 sizes take seconds) gets fewer runs: as many as fit in about
 * two seconds, never fewer than three, and a single warm-up. *reps_done says how many ran. */
static mcl_status time_median(wl_problem *p, const wl_baseline *b, int with_backward, const bench_settings *s,
                              double *ms, int *reps_done)
{
    double first = 0.0;
    WL_TRY(time_once(p, b, with_backward, &first)); /* the first warm-up, timed */
    int warmup = first > 100.0 ? 0 : s->warmup - 1, reps = s->reps;
    if (first > 0.0 && reps > 2000.0 / first) reps = 2000.0 / first < 3 ? 3 : (int)(2000.0 / first);
    double *times = calloc((size_t)reps, sizeof *times);
    if (!times) return wl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for %d timings", reps);
    mcl_status status = MCL_OK;
    for (int i = 0; i < warmup && status == MCL_OK; i++) status = run_once(p, b, with_backward);
    if (status == MCL_OK) status = wl_op(mcl_finish(p->ctx));
    for (int i = 0; i < reps && status == MCL_OK; i++) status = time_once(p, b, with_backward, &times[i]);
    if (status == MCL_OK) {
        qsort(times, (size_t)reps, sizeof *times, compare_doubles);
        *ms = times[reps / 2];
        *reps_done = reps;
    }
    free(times);
    return status;
}

/* Peak device memory of forward + backward beyond the inputs: what the op writes plus the most
 * workspace it held (design.md, "Benchmarks"). */
static mcl_status measure_peak(wl_problem *p, const wl_baseline *b, double *bytes)
{
    WL_TRY(wl_op(mcl_context_trim(p->ctx)));
    mcl_context_reset_peak(p->ctx);
    WL_TRY(run_once(p, b, 1));
    WL_TRY(wl_op(mcl_finish(p->ctx)));
    mcl_context_stats stats;
    mcl_context_get_stats(p->ctx, &stats);
    *bytes = wl_result_bytes(p) + (double)stats.workspace_peak_bytes;
    return MCL_OK;
}

/* Checks the case against the reference; each side's error is the worst of its outputs. */
static mcl_status verify(wl_problem *p, const wl_baseline *b, bench_result *r)
{
    WL_TRY(wl_verify(p, b, r->err, r->tol, &r->ok));
    r->fwd_err = r->bwd_err = 0.0;
    for (int i = 0; i < (int)p->w->tensor_count; i++) {
        double *side = p->w->tensors[i].role == WL_FORWARD ? &r->fwd_err : &r->bwd_err;
        if (r->err[i] >= 0.0) *side = fmax(*side, r->err[i]);
    }
    return MCL_OK;
}

static mcl_status bench_case(mcl_context *ctx, const wl_workload *w, const wl_baseline *b, const wl_case *c,
                             const bench_settings *s, bench_result *r)
{
    WL_TRY(wl_op(mcl_context_set_params(ctx, w->family, b ? b->params : s->params)));
    host_rng rng = host_rng_seeded(wl_case_seed(c));
    wl_problem *p = NULL;
    mcl_status status = wl_create(w, ctx, c, &rng, &p);
    if (status == MCL_OK) status = wl_place(p, WL_OFF_ZERO);
    if (status == MCL_OK) status = wl_setup_baseline(p, b);
    if (status == MCL_OK) status = verify(p, b, r);
    if (status == MCL_OK) status = measure_peak(p, b, &r->peak_bytes);
    if (status == MCL_OK) status = time_median(p, b, 0, s, &r->fwd_ms, &r->fwd_reps);
    if (status == MCL_OK) status = time_median(p, b, 1, s, &r->fwdbwd_ms, &r->fwdbwd_reps);
    r->counts = w->counts(c);
    wl_destroy(p);
    return status;
}

/* ---- reports ---------------------------------------------------------------------------- */

static void print_header(const wl_workload *w)
{
    printf("\n%s (parameters of family %s)\n", w->name, w->family);
    printf("%-26s %-7s %-5s %9s %9s %8s %8s %6s %9s %8s %9s %9s %s\n", "case", "impl", "dtype", "fwd ms", "f+b ms",
           "fwd GB/s", "f+b GB/s", "%copy", "f+b GF/s", "peak GiB", "fwd err", "bwd err", "check");
}

static double rate(double amount, double ms) { return amount / (ms * 1e-3) * 1e-9; }

static void print_row(const bench_result *r, const device_ceilings *ceil)
{
    double all_gbps = rate(r->counts.fwdbwd_bytes, r->fwdbwd_ms);
    printf("%-26s %-7s %-5s %9.4f %9.4f %8.1f %8.1f %5.0f%% %9.1f %8.4f %9.2e %9.2e %s\n", r->case_name, r->impl,
           mcl_dtype_name(r->dtype), r->fwd_ms, r->fwdbwd_ms, rate(r->counts.fwd_bytes, r->fwd_ms), all_gbps,
           100.0 * all_gbps / ceil->copy_gbps, rate(r->counts.fwdbwd_flops, r->fwdbwd_ms), r->peak_bytes / (1 << 30),
           r->fwd_err, r->bwd_err, r->ok ? "ok" : "FAIL");
    /* a ceiling below what an op reaches is a measurement to redo, not a figure to divide by */
    double gflops = fmax(rate(r->counts.fwd_flops, r->fwd_ms), rate(r->counts.fwdbwd_flops, r->fwdbwd_ms));
    double gbps = fmax(rate(r->counts.fwd_bytes, r->fwd_ms), all_gbps);
    if (gflops > ceil->fma_gflops || gbps > ceil->copy_gbps)
        printf("  note: this case reaches %.0f GFLOP/s and %.0f GB/s, above the ceilings (%.0f, %.0f): run megacl peak\n",
               gflops, gbps, ceil->fma_gflops, ceil->copy_gbps);
}

static void add_double(json_object *o, const char *key, double value)
{
    json_object_object_add(o, key, json_object_new_double(value));
}

static json_object *result_json(const wl_workload *w, const bench_result *r, const device_ceilings *ceil)
{
    json_object *o = json_object_new_object(), *errors = json_object_new_object();
    double all_gbps = rate(r->counts.fwdbwd_bytes, r->fwdbwd_ms);
    json_object_object_add(o, "workload", json_object_new_string(w->name));
    json_object_object_add(o, "case", json_object_new_string(r->case_name));
    json_object_object_add(o, "impl", json_object_new_string(r->impl));
    json_object_object_add(o, "dtype", json_object_new_string(mcl_dtype_name(r->dtype)));
    add_double(o, "fwd_ms", r->fwd_ms);
    add_double(o, "fwdbwd_ms", r->fwdbwd_ms);
    json_object_object_add(o, "fwd_reps", json_object_new_int(r->fwd_reps));
    json_object_object_add(o, "fwdbwd_reps", json_object_new_int(r->fwdbwd_reps));
    add_double(o, "fwd_gbps", rate(r->counts.fwd_bytes, r->fwd_ms));
    add_double(o, "fwdbwd_gbps", all_gbps);
    add_double(o, "fwdbwd_fraction_of_copy", all_gbps / ceil->copy_gbps);
    add_double(o, "fwd_gflops", rate(r->counts.fwd_flops, r->fwd_ms));
    add_double(o, "fwdbwd_gflops", rate(r->counts.fwdbwd_flops, r->fwdbwd_ms));
    add_double(o, "fwd_bytes", r->counts.fwd_bytes);
    add_double(o, "fwdbwd_bytes", r->counts.fwdbwd_bytes);
    add_double(o, "peak_bytes", r->peak_bytes);
    add_double(o, "fwd_rel_error", r->fwd_err);
    add_double(o, "bwd_rel_error", r->bwd_err);
    for (int i = 0; i < (int)w->tensor_count; i++) {
        if (r->err[i] < 0.0) continue;
        json_object *e = json_object_new_object();
        add_double(e, "error", r->err[i]);
        add_double(e, "tolerance", r->tol[i]);
        json_object_object_add(errors, w->tensors[i].name, e);
    }
    json_object_object_add(o, "outputs", errors);
    json_object_object_add(o, "ok", json_object_new_boolean(r->ok));
    return o;
}

/* ---- a workload's cases ------------------------------------------------------------------ */

/* A baseline too big for the device, or without the dtype, is reported, not a failure. */
static int skippable(mcl_status status, const wl_baseline *b)
{
    return b && (status == MCL_ERR_DEVICE_LIMIT || status == MCL_ERR_OUT_OF_MEMORY ||
                 status == MCL_ERR_UNSUPPORTED_DTYPE || status == MCL_ERR_UNSUPPORTED);
}

static int run_one(mcl_context *ctx, const wl_workload *w, const wl_baseline *b, const char *name, const wl_case *c,
                   const bench_settings *s, const device_ceilings *ceil, json_object *results)
{
    const char *impl = b ? b->name : "megacl";
    bench_result r = {.case_name = name, .impl = impl, .dtype = c->dtype};
    mcl_status status = bench_case(ctx, w, b, c, s, &r);
    if (status == MCL_OK) {
        print_row(&r, ceil);
        json_object_array_add(results, result_json(w, &r, ceil));
        fflush(stdout);
        return !r.ok;
    }
    printf("%-26s %-7s %-5s %s: %s\n", name, impl, mcl_dtype_name(c->dtype),
           skippable(status, b) ? "skipped" : "failed", wl_last_error());
    fflush(stdout);
    return !skippable(status, b);
}

static int run_workload(mcl_context *ctx, const wl_workload *w, const bench_settings *s, const device_ceilings *ceil,
                        json_object *results)
{
    int failed = 0;
    print_header(w);
    size_t case_count;
    const wl_named_case *cases = wl_default_cases(w, mcl_context_device(ctx), &case_count);
    if (s->has_custom_shape) case_count = 1;
    for (size_t k = 0; k < case_count; k++) {
        wl_case c = cases[k].c;
        if (s->has_custom_shape) memcpy(c.shape, s->custom_shape, sizeof c.shape);
        const char *name = s->has_custom_shape ? "custom" : cases[k].name;
        for (size_t d = 0; d < s->dtype_count; d++) {
            c.dtype = s->dtypes[d];
            for (size_t i = 0; i <= w->baseline_count; i++) {
                const wl_baseline *b = i ? &w->baselines[i - 1] : NULL;
                if (!s->impl || strcmp(s->impl, b ? b->name : "megacl") == 0)
                    failed |= run_one(ctx, w, b, name, &c, s, ceil, results);
            }
        }
    }
    mcl_context_set_params(ctx, w->family, NULL);
    return failed;
}

/* ---- command line ------------------------------------------------------------------------ */

static int parse_shape(const char *text, const wl_workload *const *run, size_t run_count, bench_settings *s)
{
    if (run_count != 1) return cli_usage("bench", "--shape needs a single workload, not a group");
    size_t n = 0;
    if (!cli_parse_sizes(text, s->custom_shape, WL_MAX_RANK, &n) || n != run[0]->rank)
        return cli_usage("bench", "%s: --shape takes %zu positive sizes %s, not '%s'", run[0]->name, run[0]->rank,
                         run[0]->shape_names, text);
    s->has_custom_shape = 1;
    return 1;
}

static int parse_impl(const char *impl, const wl_workload *const *run, size_t run_count)
{
    if (strcmp(impl, "megacl") == 0) return 1;
    for (size_t i = 0; i < run_count; i++)
        for (size_t b = 0; b < run[i]->baseline_count; b++)
            if (strcmp(run[i]->baselines[b].name, impl) == 0) return 1;
    return cli_usage("bench", "no implementation '%s' (megacl, or a baseline: naive, unfused)", impl);
}

enum { OPT_DEVICE, OPT_DTYPE, OPT_SHAPE, OPT_REPS, OPT_WARMUP, OPT_JSON, OPT_PARAMS, OPT_IMPL, OPT_HELP, OPT_COUNT };

static int print_bench_help(void)
{
    printf("usage: megacl bench WORKLOAD [options]   verify every output against the double-precision reference,\n"
           "                                         then time forward and forward+backward (medians)\n"
           "  workloads: " WORKLOAD_NAMES "; pipeline (megacl bench pipeline --help)\n"
           "  --device SEL    device selector (default: MEGACL_DEVICE, else the first GPU)\n"
           "  --dtype LIST    f32,bf16,f16 (default f32,bf16)\n"
           "  --shape LIST    one custom shape (the workload's sizes, e.g. evoattn B,N,S,H,D)\n"
           "  --reps N        timed runs, median reported (default 20)\n"
           "  --warmup N      untimed runs first (default 3)\n"
           "  --json FILE     every figure and the device description as JSON\n"
           "  --params P      the megacl path's kernel parameters (NAME=V,...; megacl params lists them)\n"
           "  --impl NAME     one implementation only: megacl, or a baseline (naive, unfused)\n");
    return 0;
}

static int parse_settings(cli_option *o, const wl_workload *const *run, size_t run_count, bench_settings *s)
{
    *s = (bench_settings){.reps = 20, .warmup = 3, .params = o[OPT_PARAMS].value, .impl = o[OPT_IMPL].value,
                          .json = o[OPT_JSON].value};
    if (o[OPT_REPS].value && !cli_parse_int(o[OPT_REPS].value, 1, 1000000, &s->reps))
        return cli_usage("bench", "--reps takes a whole number from 1, not '%s'", o[OPT_REPS].value);
    if (o[OPT_WARMUP].value && !cli_parse_int(o[OPT_WARMUP].value, 0, 1000000, &s->warmup))
        return cli_usage("bench", "--warmup takes a whole number from 0, not '%s'", o[OPT_WARMUP].value);
    if (!cli_parse_dtypes(o[OPT_DTYPE].value ? o[OPT_DTYPE].value : "f32,bf16", s->dtypes, &s->dtype_count, "bench"))
        return 0;
    if (o[OPT_SHAPE].value && !parse_shape(o[OPT_SHAPE].value, run, run_count, s)) return 0;
    return !s->impl || parse_impl(s->impl, run, run_count);
}

static int write_json(const char *path, const char *what, const mcl_device_info *info, const device_ceilings *ceil,
                      const bench_settings *s, json_object *results)
{
    json_object *root = json_object_new_object(), *c = json_object_new_object();
    json_object_object_add(root, "megacl_version", json_object_new_string(mcl_version_string()));
    json_object_object_add(root, "workload", json_object_new_string(what));
    json_object_object_add(root, "device", cli_device_json(info));
    add_double(c, "copy_gbps", ceil->copy_gbps);
    add_double(c, "fma_gflops", ceil->fma_gflops);
    json_object_object_add(root, "ceilings", c);
    json_object_object_add(root, "reps", json_object_new_int(s->reps));
    json_object_object_add(root, "results", json_object_get(results));
    int ok = json_object_to_file_ext(path, root, JSON_C_TO_STRING_PRETTY) == 0;
    if (!ok) fprintf(stderr, "megacl bench: cannot write %s\n", path);
    json_object_put(root);
    return ok;
}

int cmd_bench(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "pipeline") == 0) return cmd_bench_pipeline(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "--help") == 0) return print_bench_help();
    if (argc < 2 || argv[1][0] == '-') {
        cli_usage("bench", "name a workload (" WORKLOAD_NAMES ")");
        return 2;
    }
    const wl_workload *run[WL_COUNT(fused_members)];
    size_t run_count = 1;
    if (strcmp(argv[1], "fused") == 0) {
        run_count = WL_COUNT(fused_members);
        for (size_t i = 0; i < run_count; i++) run[i] = cli_find_workload(fused_members[i]);
    } else if (!(run[0] = cli_find_workload(argv[1]))) {
        cli_usage("bench", "unknown workload '%s' (" WORKLOAD_NAMES ")", argv[1]);
        return 2;
    }
    cli_option options[OPT_COUNT] = {{.name = "--device", .takes_value = 1}, {.name = "--dtype", .takes_value = 1}, {.name = "--shape", .takes_value = 1}, {.name = "--reps", .takes_value = 1},
                                     {.name = "--warmup", .takes_value = 1}, {.name = "--json", .takes_value = 1},  {.name = "--params", .takes_value = 1}, {.name = "--impl", .takes_value = 1},
                                     {.name = "--help"}};
    bench_settings s;
    if (!cli_parse(argc, argv, 2, options, OPT_COUNT, "bench")) return 2;
    if (options[OPT_HELP].given) return print_bench_help();
    if (!parse_settings(options, run, run_count, &s)) return 2;
    mcl_context *ctx;
    mcl_status status = mcl_context_create(options[OPT_DEVICE].value, &ctx);
    if (status != MCL_OK) return cli_fail("creating a context", status);
    const mcl_device_info *info = mcl_context_device(ctx);
    device_ceilings ceil = {0};
    char measured[64] = "measured now; megacl peak stores them";
    char date[32];
    if (load_ceilings(info, &ceil, date, sizeof date)) {
        snprintf(measured, sizeof measured, "from megacl peak, %s", date);
    } else if ((status = measure_copy_bandwidth(ctx, &ceil.copy_gbps)) != MCL_OK ||
               (status = measure_fma_rate(ctx, &ceil.fma_gflops)) != MCL_OK) {
        mcl_context_release(ctx);
        return cli_fail("measuring device ceilings", status);
    }
    printf("device: %s (%s, %s); copy %.0f GB/s, fp32 FMA %.0f GFLOP/s (%s); medians of up to %d runs\n",
           info->name, mcl_vendor_name(info->vendor), info->arch, ceil.copy_gbps, ceil.fma_gflops, measured, s.reps);
    json_object *results = json_object_new_array();
    int failed = 0;
    for (size_t i = 0; i < run_count; i++) failed |= run_workload(ctx, run[i], &s, &ceil, results);
    if (s.json && !write_json(s.json, argv[1], info, &ceil, &s, results)) failed = 1;
    json_object_put(results);
    mcl_context_release(ctx);
    return failed;
}
