/* megacl bench: time workloads with event profiling, verify them, report table and JSON. */
#include "bench.h"

#include "ref/host.h"

#include <math.h>

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

json_object *cli_device_json(const mcl_device_info *d);

static const bench_workload *const workloads[] = {&bench_layernorm, &bench_evoattn, &bench_gating, &bench_swiglu, &bench_ln_linear, &bench_transition, &bench_trimul};

/* Names that run several workloads in one go: `fused` is MegaFold's set of fused operators. */
static const bench_workload *const fused_members[] = {&bench_gating, &bench_swiglu, &bench_ln_linear,
                                                      &bench_transition, &bench_trimul};
static const struct {
    const char *name;
    const bench_workload *const *members;
    size_t count;
} groups[] = {{"fused", fused_members, sizeof fused_members / sizeof fused_members[0]}};
#define WORKLOAD_NAMES "layernorm, evoattn, gating, swiglu, ln_linear, transition, trimul; fused runs the last five"

typedef struct bench_settings {
    mcl_dtype dtypes[3];
    size_t dtype_count;
    int reps, warmup;
    size_t custom_shape[5];
    int has_custom_shape;
    const char *params; /* --params: the megacl implementation's parameters */
    const char *impl;   /* --impl: run only this implementation */
} bench_settings;

typedef struct bench_result {
    const char *workload;
    const char *case_name;
    const char *impl;
    mcl_dtype dtype;
    double fwd_ms, fwdbwd_ms, fwd_err, bwd_err, tolerance;
    double peak_bytes;
    int fwd_reps, fwdbwd_reps;
    const bench_op *op;
} bench_result;

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static mcl_status run_once(mcl_context *ctx, const bench_op *op, int with_backward)
{
    mcl_status status = op->forward(op->state, ctx);
    if (status == MCL_OK && with_backward) status = op->backward(op->state, ctx);
    return status;
}

static mcl_status time_once(mcl_context *ctx, const bench_op *op, int with_backward, double *ms)
{
    CLI_TRY(mcl_profile_begin(ctx));
    mcl_status status = run_once(ctx, op, with_backward);
    mcl_status end = mcl_profile_end(ctx, ms);
    return status != MCL_OK ? status : end;
}

/* Median device time of forward (and backward) over up to `reps` profiled runs. A slow case
 * (the unfused baselines at AF3 sizes take seconds) gets fewer runs: as many as fit in about
 * two seconds, never fewer than three, and a single warm-up. *reps_done says how many ran. */
static mcl_status time_median(mcl_context *ctx, const bench_op *op, int with_backward,
                              const bench_settings *s, double *ms, int *reps_done)
{
    double first = 0.0;
    CLI_TRY(time_once(ctx, op, with_backward, &first)); /* the first warm-up, timed */
    int warmup = first > 100.0 ? 0 : s->warmup - 1, reps = s->reps;
    if (first > 0.0 && reps > 2000.0 / first) reps = 2000.0 / first < 3 ? 3 : (int)(2000.0 / first);
    double *times = calloc((size_t)reps, sizeof *times);
    if (!times) return MCL_ERR_OUT_OF_MEMORY;
    mcl_status status = MCL_OK;
    for (int i = 0; i < warmup && status == MCL_OK; i++) status = run_once(ctx, op, with_backward);
    if (status == MCL_OK) status = mcl_finish(ctx);
    for (int i = 0; i < reps && status == MCL_OK; i++) status = time_once(ctx, op, with_backward, &times[i]);
    if (status == MCL_OK) {
        qsort(times, (size_t)reps, sizeof *times, compare_doubles);
        *ms = times[reps / 2];
        *reps_done = reps;
    }
    free(times);
    return status;
}

/* Peak device memory of forward + backward beyond the inputs: what the op writes plus the
 * most workspace it held (design.md, "Benchmarks"). */
static mcl_status measure_peak(mcl_context *ctx, const bench_op *op, double *bytes)
{
    CLI_TRY(mcl_context_trim(ctx));
    mcl_context_reset_peak(ctx);
    CLI_TRY(run_once(ctx, op, 1));
    CLI_TRY(mcl_finish(ctx));
    mcl_context_stats stats;
    mcl_context_get_stats(ctx, &stats);
    *bytes = (double)op->result_bytes + (double)stats.workspace_peak_bytes;
    return MCL_OK;
}

static mcl_status bench_case(mcl_context *ctx, const bench_workload *w, const bench_impl *impl,
                             const size_t *shape, mcl_dtype dtype, const bench_settings *s,
                             bench_result *r, bench_op *op)
{
    CLI_TRY(mcl_context_set_params(ctx, w->family, impl->params ? impl->params : s->params));
    CLI_TRY((impl->create ? impl->create : w->create)(ctx, shape, dtype, op));
    r->op = op;
    r->tolerance = w->tolerance(dtype);
    CLI_TRY(op->verify(op->state, ctx, &r->fwd_err, &r->bwd_err));
    CLI_TRY(measure_peak(ctx, op, &r->peak_bytes));
    CLI_TRY(time_median(ctx, op, 0, s, &r->fwd_ms, &r->fwd_reps));
    CLI_TRY(time_median(ctx, op, 1, s, &r->fwdbwd_ms, &r->fwdbwd_reps));
    return MCL_OK;
}

static void print_row(const bench_result *r, const device_ceilings *ceil)
{
    double fwd_gbps = r->op->fwd_bytes / (r->fwd_ms * 1e-3) * 1e-9;
    double all_gbps = r->op->fwdbwd_bytes / (r->fwdbwd_ms * 1e-3) * 1e-9;
    double all_gflops = r->op->fwdbwd_flops / (r->fwdbwd_ms * 1e-3) * 1e-9;
    int ok = r->fwd_err <= r->tolerance && r->bwd_err <= r->tolerance;
    printf("%-22s %-7s %-5s %9.4f %9.4f %8.1f %8.1f %5.0f%% %9.1f %8.4f %9.2e %9.2e %s\n",
           r->case_name, r->impl, mcl_dtype_name(r->dtype), r->fwd_ms, r->fwdbwd_ms, fwd_gbps,
           all_gbps, 100.0 * all_gbps / ceil->copy_gbps, all_gflops, r->peak_bytes / (1 << 30),
           r->fwd_err, r->bwd_err, ok ? "ok" : "FAIL");
}

static json_object *result_json(const bench_result *r, const device_ceilings *ceil)
{
    json_object *o = json_object_new_object();
    double all_gbps = r->op->fwdbwd_bytes / (r->fwdbwd_ms * 1e-3) * 1e-9;
    json_object_object_add(o, "workload", json_object_new_string(r->workload));
    json_object_object_add(o, "case", json_object_new_string(r->case_name));
    json_object_object_add(o, "impl", json_object_new_string(r->impl));
    json_object_object_add(o, "dtype", json_object_new_string(mcl_dtype_name(r->dtype)));
    json_object_object_add(o, "fwd_ms", json_object_new_double(r->fwd_ms));
    json_object_object_add(o, "fwdbwd_ms", json_object_new_double(r->fwdbwd_ms));
    json_object_object_add(o, "fwd_reps", json_object_new_int(r->fwd_reps));
    json_object_object_add(o, "fwdbwd_reps", json_object_new_int(r->fwdbwd_reps));
    json_object_object_add(o, "fwd_gbps", json_object_new_double(r->op->fwd_bytes / (r->fwd_ms * 1e-3) * 1e-9));
    json_object_object_add(o, "fwdbwd_gbps", json_object_new_double(all_gbps));
    json_object_object_add(o, "fwdbwd_fraction_of_copy", json_object_new_double(all_gbps / ceil->copy_gbps));
    json_object_object_add(o, "fwd_gflops", json_object_new_double(r->op->fwd_flops / (r->fwd_ms * 1e-3) * 1e-9));
    json_object_object_add(o, "fwdbwd_gflops", json_object_new_double(r->op->fwdbwd_flops / (r->fwdbwd_ms * 1e-3) * 1e-9));
    json_object_object_add(o, "fwd_bytes", json_object_new_double(r->op->fwd_bytes));
    json_object_object_add(o, "fwdbwd_bytes", json_object_new_double(r->op->fwdbwd_bytes));
    json_object_object_add(o, "peak_bytes", json_object_new_double(r->peak_bytes));
    json_object_object_add(o, "fwd_rel_error", json_object_new_double(r->fwd_err));
    json_object_object_add(o, "bwd_rel_error", json_object_new_double(r->bwd_err));
    json_object_object_add(o, "tolerance", json_object_new_double(r->tolerance));
    return o;
}

static int parse_settings(int argc, char **argv, const bench_workload *w, bench_settings *s)
{
    const char *dtypes = cli_option(argc, argv, "--dtype");
    const char *reps = cli_option(argc, argv, "--reps");
    const char *warmup = cli_option(argc, argv, "--warmup");
    const char *shape = cli_option(argc, argv, "--shape");
    s->params = cli_option(argc, argv, "--params");
    s->impl = cli_option(argc, argv, "--impl");
    s->reps = reps ? atoi(reps) : 20;
    s->warmup = warmup ? atoi(warmup) : 3;
    if (s->reps < 1 || s->warmup < 0) {
        fprintf(stderr, "megacl bench: --reps must be >= 1 and --warmup >= 0\n");
        return 0;
    }
    char list[64];
    snprintf(list, sizeof list, "%s", dtypes ? dtypes : "f32,bf16");
    s->dtype_count = 0;
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
        int found = 0;
        for (int d = MCL_F32; d <= MCL_F16 && !found; d++) {
            if (strcmp(tok, mcl_dtype_name((mcl_dtype)d)) == 0 && s->dtype_count < 3) {
                s->dtypes[s->dtype_count++] = (mcl_dtype)d;
                found = 1;
            }
        }
        if (!found) {
            fprintf(stderr, "megacl bench: unknown dtype '%s' (f32, bf16, f16)\n", tok);
            return 0;
        }
    }
    s->has_custom_shape = shape != NULL;
    if (shape) {
        size_t n = 0;
        char buf[128];
        snprintf(buf, sizeof buf, "%s", shape);
        for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ","), n++)
            if (n < sizeof s->custom_shape / sizeof s->custom_shape[0])
                s->custom_shape[n] = strtoull(tok, NULL, 10);
        if (!w) {
            fprintf(stderr, "megacl bench: --shape needs a single workload, not a group\n");
            return 0;
        }
        if (n != w->shape_rank) {
            fprintf(stderr, "megacl bench %s: --shape takes %zu comma-separated sizes\n", w->name,
                    w->shape_rank);
            return 0;
        }
    }
    return 1;
}

static int run_workload(mcl_context *ctx, const bench_workload *w, const bench_settings *s,
                        const device_ceilings *ceil, json_object *results)
{
    size_t case_count = s->has_custom_shape ? 1 : w->case_count;
    int failed = 0;
    printf("\n%s (parameters of family %s)\n", w->name, w->family);
    printf("%-22s %-7s %-5s %9s %9s %8s %8s %6s %9s %8s %9s %9s %s\n", "case", "impl", "dtype",
           "fwd ms", "f+b ms", "fwd GB/s", "f+b GB/s", "%copy", "f+b GF/s", "peak GiB",
           "fwd err", "bwd err", "check");
    for (size_t c = 0; c < case_count; c++) {
        char custom_name[64];
        const size_t *shape = s->has_custom_shape ? s->custom_shape : w->case_shapes[c];
        const char *name = w->case_names[c < w->case_count ? c : 0];
        if (s->has_custom_shape) {
            snprintf(custom_name, sizeof custom_name, "custom");
            name = custom_name;
        }
        for (size_t d = 0; d < s->dtype_count; d++) {
            for (size_t i = 0; i < w->impl_count; i++) {
                if (s->impl && strcmp(s->impl, w->impls[i].name) != 0) continue;
                bench_op op = {0};
                bench_result r = {.workload = w->name, .case_name = name, .impl = w->impls[i].name, .dtype = s->dtypes[d]};
                mcl_status status = bench_case(ctx, w, &w->impls[i], shape, s->dtypes[d], s, &r, &op);
                if (status == MCL_OK) {
                    print_row(&r, ceil);
                    json_object_array_add(results, result_json(&r, ceil));
                    failed |= !(r.fwd_err <= r.tolerance && r.bwd_err <= r.tolerance);
                } else if ((status == MCL_ERR_DEVICE_LIMIT || status == MCL_ERR_OUT_OF_MEMORY ||
                            status == MCL_ERR_UNSUPPORTED_DTYPE) &&
                           strcmp(w->impls[i].name, "megacl") != 0) {
                    /* a baseline too big for the device, or without this dtype, is reported, not
                     * a failure */
                    printf("%-22s %-7s %-5s skipped: %s (%s)\n", name, w->impls[i].name,
                           mcl_dtype_name(s->dtypes[d]),
                           status == MCL_ERR_UNSUPPORTED_DTYPE ? "no such dtype" : "does not fit",
                           mcl_last_error());
                } else {
                    printf("%-22s %-7s %-5s failed: %s: %s\n", name, w->impls[i].name,
                           mcl_dtype_name(s->dtypes[d]), mcl_status_name(status), mcl_last_error());
                    failed = 1;
                }
                if (op.destroy) op.destroy(op.state);
                fflush(stdout);
            }
        }
    }
    mcl_context_set_params(ctx, w->family, NULL);
    return failed;
}

int cmd_bench(int argc, char **argv)
{
    if (argc < 2 || argv[1][0] == '-') {
        fprintf(stderr, "megacl bench: name a workload (" WORKLOAD_NAMES ")\n");
        return 2;
    }
    const bench_workload *const *run = NULL;
    size_t run_count = 1;
    for (size_t i = 0; i < sizeof workloads / sizeof workloads[0]; i++)
        if (strcmp(workloads[i]->name, argv[1]) == 0) run = &workloads[i];
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
        if (strcmp(groups[i].name, argv[1]) == 0) run = groups[i].members, run_count = groups[i].count;
    if (!run) {
        fprintf(stderr, "megacl bench: unknown workload '%s' (" WORKLOAD_NAMES ")\n", argv[1]);
        return 2;
    }
    bench_settings s;
    if (!parse_settings(argc, argv, run_count == 1 ? run[0] : NULL, &s)) return 2;
    mcl_context *ctx;
    mcl_status status = mcl_context_create(cli_option(argc, argv, "--device"), &ctx);
    if (status != MCL_OK) return cli_fail("creating a context", status);
    const mcl_device_info *info = mcl_context_device(ctx);
    device_ceilings ceil = {0};
    if ((status = measure_copy_bandwidth(ctx, &ceil.copy_gbps)) != MCL_OK ||
        (status = measure_fma_rate(ctx, &ceil.fma_gflops)) != MCL_OK) {
        mcl_context_release(ctx);
        return cli_fail("measuring device ceilings", status);
    }
    printf("device: %s (%s, %s); copy %.0f GB/s, fp32 FMA %.0f GFLOP/s; medians of up to %d runs\n",
           info->name, mcl_vendor_name(info->vendor), info->arch, ceil.copy_gbps, ceil.fma_gflops,
           s.reps);
    json_object *results = json_object_new_array();
    int failed = 0;
    for (size_t i = 0; i < run_count; i++) failed |= run_workload(ctx, run[i], &s, &ceil, results);

    const char *json_path = cli_option(argc, argv, "--json");
    if (json_path) {
        json_object *root = json_object_new_object();
        json_object_object_add(root, "megacl_version", json_object_new_string(mcl_version_string()));
        json_object_object_add(root, "workload", json_object_new_string(argv[1]));
        json_object_object_add(root, "device", cli_device_json(info));
        json_object *c = json_object_new_object();
        json_object_object_add(c, "copy_gbps", json_object_new_double(ceil.copy_gbps));
        json_object_object_add(c, "fma_gflops", json_object_new_double(ceil.fma_gflops));
        json_object_object_add(root, "ceilings", c);
        json_object_object_add(root, "reps", json_object_new_int(s.reps));
        json_object_object_add(root, "results", json_object_get(results));
        if (json_object_to_file_ext(json_path, root, JSON_C_TO_STRING_PRETTY) != 0) {
            fprintf(stderr, "megacl bench: cannot write %s\n", json_path);
            failed = 1;
        }
        json_object_put(root);
    }
    json_object_put(results);
    mcl_context_release(ctx);
    return failed;
}

void bench_err_add(bench_err *e, float out, double ref)
{
    if (isinf(ref) && ref < 0) {
        if (!(isinf(out) && out < 0)) e->bad = 1;
        return;
    }
    if (!isfinite(out)) {
        e->bad = 1;
        return;
    }
    double d = (double)out - ref;
    e->diff += d * d;
    e->norm += ref * ref;
}

double bench_err_value(const bench_err *e)
{
    if (e->bad) return INFINITY;
    return e->norm > 0.0 ? sqrt(e->diff / e->norm) : sqrt(e->diff);
}

double bench_compare(mcl_context *ctx, cl_mem mem, mcl_dtype dtype, const double *ref, size_t n)
{
    float *out = malloc(n * sizeof *out);
    if (!out) return INFINITY;
    host_download(ctx, mem, dtype, out, n);
    double err = host_rel_error(out, ref, n);
    free(out);
    return err;
}
