/* megacl bench: each workload's cases (tests/workload) verified against the double-precision
 * reference, then timed with event profiling next to the workload's baselines; a table on
 * stdout and, on request, every figure in JSON, a chart in SVG and the change against an
 * earlier report. Without a workload it runs every workload's default cases. */
#include "bench.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Names that run several workloads in one go: `fused` is MegaFold's set of fused operators. */
static const char *const fused_members[] = {"gating", "swiglu", "ln_linear", "transition", "trimul"};
#define WORKLOAD_NAMES CLI_WORKLOAD_NAMES "; fused runs gating, swiglu, ln_linear, transition and trimul"

/* The workloads one command runs. */
typedef struct bench_plan {
    const char *what;
    const wl_workload *run[16];
    size_t run_count;
} bench_plan;

/* Every result of the run, in the order they ran. */
typedef struct bench_results {
    bench_result *items;
    size_t count, capacity;
} bench_results;

/* ---- the run ------------------------------------------------------------------------------ */

static bench_result *next_result(bench_results *all)
{
    if (all->count == all->capacity) {
        size_t capacity = all->capacity ? 2 * all->capacity : 32;
        bench_result *grown = realloc(all->items, capacity * sizeof *grown);
        if (!grown) return NULL;
        all->items = grown, all->capacity = capacity;
    }
    bench_result *r = &all->items[all->count++];
    memset(r, 0, sizeof *r);
    return r;
}

static int selected(const bench_settings *s, const wl_baseline *b)
{
    return !s->impl || strcmp(s->impl, b ? b->name : "megacl") == 0;
}

static int case_selected(const bench_settings *s, const char *name)
{
    return s->has_custom_shape || !s->only || strstr(name, s->only);
}

/* The cases of w this run covers: the device's defaults, or the one custom shape. */
static const wl_named_case *cases_of(const wl_workload *w, const mcl_device_info *device, const bench_settings *s,
                                     size_t *count)
{
    const wl_named_case *cases = wl_default_cases(w, device, count);
    if (s->has_custom_shape) *count = 1;
    return cases;
}

static size_t count_runs(const bench_plan *plan, const mcl_device_info *device, const bench_settings *s)
{
    size_t total = 0;
    for (size_t i = 0; i < plan->run_count; i++) {
        size_t count, cases = 0;
        const wl_named_case *named = cases_of(plan->run[i], device, s, &count);
        for (size_t k = 0; k < count; k++) cases += case_selected(s, named[k].name);
        for (size_t b = 0; b <= plan->run[i]->baseline_count; b++)
            total += selected(s, b ? &plan->run[i]->baselines[b - 1] : NULL) ? cases * s->dtype_count : 0;
    }
    return total;
}

/* "[3/24] layernorm pair M=4096 K=128 bf16 unfused" on the terminal's last line while it runs. */
static void show_progress(const bench_settings *s, size_t done, size_t total, const bench_result *r)
{
    if (!s->progress) return;
    fprintf(stderr, "\r\033[K[%zu/%zu] %s %s %s %s", done + 1, total, r->w->name, r->case_name,
            mcl_dtype_name(r->c.dtype), r->impl);
    fflush(stderr);
}

static void clear_progress(const bench_settings *s)
{
    if (s->progress) fputs("\r\033[K", stderr);
}

/* Runs every selected implementation of case c; 1 if one failed. */
static int run_case(mcl_context *ctx, const wl_workload *w, const char *name, const wl_case *c,
                    const bench_settings *s, const device_ceilings *ceil, bench_results *all, size_t total)
{
    int failed = 0;
    for (size_t i = 0; i <= w->baseline_count; i++) {
        const wl_baseline *b = i ? &w->baselines[i - 1] : NULL;
        if (!selected(s, b)) continue;
        bench_result *r = next_result(all);
        if (!r) {
            fprintf(stderr, "megacl bench: no memory for more results\n");
            return 1;
        }
        *r = (bench_result){.w = w, .case_name = name, .impl = b ? b->name : "megacl", .c = *c, .approx_err = -1.0};
        show_progress(s, all->count - 1, total, r);
        bench_run_case(ctx, b, s, r);
        clear_progress(s);
        bench_print_result(r, ceil);
        failed |= r->outcome == BENCH_FAILED || (r->outcome == BENCH_TIMED && !r->ok);
    }
    return failed;
}

static int run_workload(mcl_context *ctx, const wl_workload *w, const bench_settings *s, const device_ceilings *ceil,
                        bench_results *all, size_t total)
{
    int failed = 0;
    bench_print_header(w);
    size_t case_count;
    const wl_named_case *cases = cases_of(w, mcl_context_device(ctx), s, &case_count);
    for (size_t k = 0; k < case_count; k++) {
        if (!case_selected(s, cases[k].name)) continue;
        wl_case c = cases[k].c;
        if (s->has_custom_shape) memcpy(c.shape, s->custom_shape, sizeof c.shape);
        for (size_t d = 0; d < s->dtype_count; d++) {
            c.dtype = s->dtypes[d];
            failed |= run_case(ctx, w, s->has_custom_shape ? "custom" : cases[k].name, &c, s, ceil, all, total);
        }
    }
    return failed;
}

/* ---- --list ------------------------------------------------------------------------------ */

static void list_cases(const char *title, const wl_workload *w, const wl_named_case *cases, size_t count)
{
    printf("  %s\n", title);
    for (size_t k = 0; k < count; k++) {
        char shape[160], described[256];
        bench_shape_text(w, &cases[k].c, shape, sizeof shape);
        wl_describe_case(w, &cases[k].c, described, sizeof described);
        /* the description's options and gradients follow the "names=sizes" it repeats */
        const char *options = strchr(strchr(described, '='), ' ');
        printf("    %-28s %s%s\n", cases[k].name, shape, options ? options : "");
    }
}

static int list_workloads(const bench_plan *plan)
{
    for (size_t i = 0; i < plan->run_count; i++) {
        const wl_workload *w = plan->run[i];
        printf("%s (family %s; shape %s; implementations megacl", w->name, w->family, w->shape_names);
        for (size_t b = 0; b < w->baseline_count; b++) printf(", %s", w->baselines[b].name);
        printf(")\n");
        list_cases("on a GPU (AF3 shapes):", w, w->cases, w->case_count);
        list_cases("elsewhere (CPU shapes):", w, w->cpu_cases, w->cpu_case_count);
    }
    return 0;
}

/* ---- command line ------------------------------------------------------------------------ */

static int parse_shape(const char *text, const bench_plan *plan, bench_settings *s)
{
    if (plan->run_count != 1) return cli_usage("bench", "--shape needs a single workload, not %s", plan->what);
    const wl_workload *w = plan->run[0];
    size_t n = 0;
    if (!cli_parse_sizes(text, s->custom_shape, WL_MAX_RANK, &n) || n != w->rank)
        return cli_usage("bench", "%s: --shape takes %zu positive sizes %s, not '%s'", w->name, w->rank,
                         w->shape_names, text);
    s->has_custom_shape = 1;
    return 1;
}

static int parse_impl(const char *impl, const bench_plan *plan)
{
    if (strcmp(impl, "megacl") == 0) return 1;
    for (size_t i = 0; i < plan->run_count; i++)
        for (size_t b = 0; b < plan->run[i]->baseline_count; b++)
            if (strcmp(plan->run[i]->baselines[b].name, impl) == 0) return 1;
    return cli_usage("bench", "no implementation '%s' (megacl, or a baseline: naive, unfused, dense)", impl);
}

/* Some case of the plan's workloads, on a GPU or elsewhere, is named with `only` in it. */
static int parse_case(const char *only, const bench_plan *plan)
{
    for (size_t i = 0; i < plan->run_count; i++) {
        const wl_workload *w = plan->run[i];
        for (size_t k = 0; k < w->case_count; k++)
            if (strstr(w->cases[k].name, only)) return 1;
        for (size_t k = 0; k < w->cpu_case_count; k++)
            if (strstr(w->cpu_cases[k].name, only)) return 1;
    }
    return cli_usage("bench", "no case of %s is named with '%s' (megacl bench --list)", plan->what, only);
}

enum {
    OPT_DEVICE, OPT_DTYPE, OPT_SHAPE, OPT_REPS, OPT_WARMUP, OPT_JSON, OPT_SVG, OPT_COMPARE,
    OPT_PARAMS, OPT_IMPL, OPT_CASE, OPT_KERNELS, OPT_TF32, OPT_LIST, OPT_HELP, OPT_COUNT
};

static int print_bench_help(void)
{
    printf("usage: megacl bench [WORKLOAD] [options]  verify every output against the double-precision\n"
           "                                         reference, then time forward and forward+backward\n"
           "  workloads: " WORKLOAD_NAMES "; none: every workload;\n"
           "             pipeline (megacl bench pipeline --help)\n"
           "  --list          every workload's cases and their shapes; nothing runs\n"
           "  --device SEL    device selector (default: MEGACL_DEVICE, else the first GPU)\n"
           "  --dtype LIST    f32,bf16,f16 (default f32,bf16)\n"
           "  --shape LIST    one custom shape (the workload's sizes, e.g. evoattn B,N,S,H,D)\n"
           "  --reps N        timed runs: min, median and max reported (default 20)\n"
           "  --warmup N      untimed runs first (default 3)\n"
           "  --kernels       each kernel's median time in a forward+backward too\n"
           "  --json FILE     every figure, the device and the skipped or failed cases as JSON\n"
           "                  (docs/bench-report.schema.json)\n"
           "  --svg FILE      a chart: time per case, megacl beside the baselines\n"
           "  --compare OLD   the change against an earlier --json report, per case and implementation\n"
           "  --params P      the megacl path's kernel parameters (NAME=V,...; megacl params lists them)\n"
           "  --impl NAME     one implementation only: megacl, or a baseline (naive, unfused, dense)\n"
           "  --case TEXT     only the cases whose name holds TEXT (megacl bench --list names them)\n"
           "  --tf32          f32 calls may take the tensor cores in tf32 where their parameters choose\n"
           "                  them (mcl_context_allow_tf32); f32 checks then hold tf32's tolerance\n"
           "A case whose buffers or host reference do not fit in memory is skipped with what it needs.\n");
    return 0;
}

static int parse_settings(cli_option *o, const bench_plan *plan, bench_settings *s)
{
    *s = (bench_settings){.reps = 20, .warmup = 3, .params = o[OPT_PARAMS].value, .impl = o[OPT_IMPL].value,
                          .only = o[OPT_CASE].value,
                          .json = o[OPT_JSON].value, .svg = o[OPT_SVG].value, .kernels = o[OPT_KERNELS].given,
                          .tf32 = o[OPT_TF32].given,
                          .progress = isatty(STDERR_FILENO)};
    if (o[OPT_REPS].value && !cli_parse_int(o[OPT_REPS].value, 1, 1000000, &s->reps))
        return cli_usage("bench", "--reps takes a whole number from 1, not '%s'", o[OPT_REPS].value);
    if (o[OPT_WARMUP].value && !cli_parse_int(o[OPT_WARMUP].value, 0, 1000000, &s->warmup))
        return cli_usage("bench", "--warmup takes a whole number from 0, not '%s'", o[OPT_WARMUP].value);
    if (!cli_parse_dtypes(o[OPT_DTYPE].value ? o[OPT_DTYPE].value : "f32,bf16", s->dtypes, &s->dtype_count, "bench"))
        return 0;
    if (o[OPT_SHAPE].value && !parse_shape(o[OPT_SHAPE].value, plan, s)) return 0;
    if (s->impl && !parse_impl(s->impl, plan)) return 0;
    if (s->only && s->has_custom_shape) return cli_usage("bench", "--case and --shape exclude each other");
    if (s->only && !parse_case(s->only, plan)) return 0;
    return !o[OPT_COMPARE].value || (s->compare = bench_load_report(o[OPT_COMPARE].value)) != NULL;
}

/* The workloads named by argv[1] (none: all of them); 0 with a message for an unknown name. */
static int parse_plan(int argc, char **argv, bench_plan *plan, int *first_option)
{
    *first_option = 1;
    if (argc < 2 || argv[1][0] == '-') {
        plan->what = "all";
        for (size_t i = 0; i < wl_workload_count; i++) plan->run[plan->run_count++] = wl_workloads[i];
        return 1;
    }
    *first_option = 2;
    plan->what = argv[1];
    if (strcmp(argv[1], "fused") == 0) {
        for (size_t i = 0; i < WL_COUNT(fused_members); i++) plan->run[plan->run_count++] = cli_find_workload(fused_members[i]);
        return 1;
    }
    if (!(plan->run[0] = cli_find_workload(argv[1])))
        return cli_usage("bench", "unknown workload '%s' (" WORKLOAD_NAMES ")", argv[1]);
    plan->run_count = 1;
    return 1;
}

/* The ceilings the rates are divided by: megacl peak's where stored, else measured now. */
static mcl_status find_ceilings(mcl_context *ctx, bench_run_info *info)
{
    info->ceilings_stored = load_ceilings(info->device, &info->ceilings, info->ceilings_date, sizeof info->ceilings_date);
    if (info->ceilings_stored) return MCL_OK;
    CLI_TRY(measure_copy_bandwidth(ctx, &info->ceilings.copy_gbps));
    return measure_fma_rate(ctx, &info->ceilings.fma_gflops);
}

static void print_device(const bench_run_info *info)
{
    const mcl_device_info *d = info->device;
    char source[64] = "measured now; megacl peak stores them";
    if (info->ceilings_stored) snprintf(source, sizeof source, "from megacl peak, %s", info->ceilings_date);
    printf("device: %s (%s, %s); copy %.0f GB/s, fp32 FMA %.0f GFLOP/s (%s); medians of up to %d runs%s\n", d->name,
           mcl_vendor_name(d->vendor), d->arch, info->ceilings.copy_gbps, info->ceilings.fma_gflops, source, info->reps,
           info->tf32 ? "; tf32 allowed" : "");
}

typedef int (*report_writer)(const char *path, const bench_run_info *run, const bench_result *results, size_t count);

/* Writes a report beside its path and renames it there, so the file is always a whole report. */
static int write_whole(report_writer write, const char *path, const bench_run_info *info, const bench_results *all)
{
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.partial", path) >= (int)sizeof tmp) {
        fprintf(stderr, "megacl bench: the path %s is too long\n", path);
        return 0;
    }
    if (!write(tmp, info, all->items, all->count)) return 0;
    if (rename(tmp, path) == 0) return 1;
    fprintf(stderr, "megacl bench: cannot rename %s to %s: %s\n", tmp, path, strerror(errno));
    return 0;
}

/* The JSON and SVG reports of the workloads done so far: rewritten after each workload, so that a
 * run stopped part-way keeps what it measured; 0 if a file could not be written. */
static int write_reports(const bench_settings *s, const bench_run_info *info, const bench_results *all)
{
    int ok = 1;
    if (s->json) ok &= write_whole(bench_write_json, s->json, info, all);
    if (s->svg) ok &= write_whole(bench_write_svg, s->svg, info, all);
    return ok;
}

/* Exit status 1 when a case failed, a report could not be written, or nothing was timed. */
static int run_plan(mcl_context *ctx, const bench_plan *plan, const bench_settings *s, bench_run_info *info)
{
    bench_results all = {0};
    size_t total = count_runs(plan, info->device, s);
    int failed = 0;
    int written = 1;
    for (size_t i = 0; i < plan->run_count; i++) {
        failed |= run_workload(ctx, plan->run[i], s, &info->ceilings, &all, total);
        written &= write_reports(s, info, &all);
    }
    if (s->compare) bench_print_comparison(s->compare, all.items, all.count);
    size_t timed = 0;
    for (size_t i = 0; i < all.count; i++) timed += all.items[i].outcome == BENCH_TIMED;
    if (!timed) fprintf(stderr, "megacl bench: no case was timed\n");
    failed |= !written || !timed;
    free(all.items);
    return failed;
}

static int bench_with_options(cli_option *options, const bench_plan *plan, bench_settings *s)
{
    mcl_context *ctx;
    mcl_status status = mcl_context_create(options[OPT_DEVICE].value, &ctx);
    if (status != MCL_OK) return cli_fail("creating a context", status);
    if (s->tf32 && (status = mcl_context_allow_tf32(ctx, 1)) != MCL_OK) {
        mcl_context_release(ctx);
        return cli_fail("allowing tf32", status);
    }
    bench_run_info info = {.what = plan->what, .device = mcl_context_device(ctx), .reps = s->reps, .warmup = s->warmup,
                           .tf32 = s->tf32};
    if ((status = find_ceilings(ctx, &info)) != MCL_OK) {
        mcl_context_release(ctx);
        return cli_fail("measuring device ceilings", status);
    }
    print_device(&info);
    int failed = run_plan(ctx, plan, s, &info);
    mcl_context_release(ctx);
    return failed;
}

int cmd_bench(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "pipeline") == 0) return cmd_bench_pipeline(argc, argv);
    bench_plan plan = {0};
    int first;
    if (!parse_plan(argc, argv, &plan, &first)) return 2;
    cli_option options[OPT_COUNT] = {
        {.name = "--device", .takes_value = 1}, {.name = "--dtype", .takes_value = 1},
        {.name = "--shape", .takes_value = 1},  {.name = "--reps", .takes_value = 1},
        {.name = "--warmup", .takes_value = 1}, {.name = "--json", .takes_value = 1},
        {.name = "--svg", .takes_value = 1},    {.name = "--compare", .takes_value = 1},
        {.name = "--params", .takes_value = 1}, {.name = "--impl", .takes_value = 1},
        {.name = "--case", .takes_value = 1},   {.name = "--kernels"},                  {.name = "--tf32"},
        {.name = "--list"},                     {.name = "--help"}};
    if (!cli_parse(argc, argv, first, options, OPT_COUNT, "bench")) return 2;
    if (options[OPT_HELP].given) return print_bench_help();
    bench_settings s;
    if (!parse_settings(options, &plan, &s)) return 2;
    int status = options[OPT_LIST].given ? list_workloads(&plan) : bench_with_options(options, &plan, &s);
    json_object_put(s.compare);
    return status;
}
