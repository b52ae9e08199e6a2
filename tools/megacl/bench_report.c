/* megacl bench's reports: the table on stdout, the JSON report (docs/bench-report.schema.json)
 * and the comparison of this run with an earlier report (--compare). */
#include "bench.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

double bench_rate(double amount, double ms) { return amount / (ms * 1e-3) * 1e-9; }

double bench_roofline_fraction(const bench_result *r, const device_ceilings *ceil)
{
    double memory_ms = r->counts.fwdbwd_bytes / (ceil->copy_gbps * 1e9) * 1e3;
    double compute_ms = r->counts.fwdbwd_flops / (ceil->fma_gflops * 1e9) * 1e3;
    return fmax(memory_ms, compute_ms) / r->fwdbwd.median;
}

void bench_shape_text(const wl_workload *w, const wl_case *c, char *out, size_t cap)
{
    const char *names = w->shape_names;
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < w->rank && used < cap; i++) {
        size_t len = strcspn(names, ",");
        used += (size_t)snprintf(out + used, cap - used, "%s%.*s=%zu", i ? "," : "", (int)len, names, c->shape[i]);
        names += len + (names[len] == ',');
    }
}

/* ---- the table ---------------------------------------------------------------------------- */

void bench_print_header(const wl_workload *w)
{
    printf("\n%s (parameters of family %s)\n", w->name, w->family);
    printf("%-26s %-7s %-5s %9s %9s %8s %8s %6s %9s %8s %9s %9s %s\n", "case", "impl", "dtype", "fwd ms", "f+b ms",
           "fwd GB/s", "f+b GB/s", "%copy", "f+b GF/s", "peak GiB", "fwd err", "bwd err", "check");
}

static void print_timed(const bench_result *r, const device_ceilings *ceil)
{
    double all_gbps = bench_rate(r->counts.fwdbwd_bytes, r->fwdbwd.median);
    printf("%-26s %-7s %-5s %9.4f %9.4f %8.1f %8.1f %5.0f%% %9.1f %8.4f %9.2e %9.2e %s%s\n", r->case_name, r->impl,
           mcl_dtype_name(r->c.dtype), r->fwd.median, r->fwdbwd.median, bench_rate(r->counts.fwd_bytes, r->fwd.median),
           all_gbps, 100.0 * all_gbps / ceil->copy_gbps, bench_rate(r->counts.fwdbwd_flops, r->fwdbwd.median),
           r->peak_bytes / (1 << 30), r->fwd_err, r->bwd_err, r->ok ? "ok" : "FAIL", r->sample_checked ? " (sample)" : "");
    if (r->approx_err >= 0.0) printf("  %-40s %9.2e\n", "relative error against the exact op", r->approx_err);
    for (size_t k = 0; k < r->kernel_count; k++)
        printf("  %-40s %9.4f ms\n", r->kernels[k].name, r->kernels[k].median_ms);
    /* a ceiling below what an op reaches is a measurement to redo, not a figure to divide by */
    double gflops = fmax(bench_rate(r->counts.fwd_flops, r->fwd.median), bench_rate(r->counts.fwdbwd_flops, r->fwdbwd.median));
    double gbps = fmax(bench_rate(r->counts.fwd_bytes, r->fwd.median), all_gbps);
    if (gflops > ceil->fma_gflops || gbps > ceil->copy_gbps)
        printf("  note: this case reaches %.0f GFLOP/s and %.0f GB/s, above the ceilings (%.0f, %.0f): run megacl peak\n",
               gflops, gbps, ceil->fma_gflops, ceil->copy_gbps);
}

void bench_print_result(const bench_result *r, const device_ceilings *ceil)
{
    if (r->outcome == BENCH_TIMED) print_timed(r, ceil);
    else
        printf("%-26s %-7s %-5s %s: %s\n", r->case_name, r->impl, mcl_dtype_name(r->c.dtype),
               r->outcome == BENCH_SKIPPED ? "skipped" : "failed", r->reason);
    fflush(stdout);
}

/* ---- the JSON report ---------------------------------------------------------------------- */

/* A figure, or null where it is not a number JSON can hold (an error made infinite by a NaN). */
static void add_number(json_object *o, const char *key, double value)
{
    json_object_object_add(o, key, isfinite(value) ? json_object_new_double(value) : NULL);
}

static void add_string(json_object *o, const char *key, const char *value)
{
    json_object_object_add(o, key, json_object_new_string(value));
}

static json_object *shape_json(const wl_workload *w, const wl_case *c)
{
    json_object *o = json_object_new_object();
    const char *names = w->shape_names;
    for (size_t i = 0; i < w->rank; i++) {
        size_t len = strcspn(names, ",");
        char name[32];
        snprintf(name, sizeof name, "%.*s", (int)len, names);
        json_object_object_add(o, name, json_object_new_int64((int64_t)c->shape[i]));
        names += len + (names[len] == ',');
    }
    return o;
}

static json_object *spread_json(const bench_spread *s)
{
    json_object *o = json_object_new_object();
    add_number(o, "min", s->min);
    add_number(o, "median", s->median);
    add_number(o, "max", s->max);
    json_object_object_add(o, "reps", json_object_new_int(s->reps));
    return o;
}

/* What names the case in both kinds of entry: workload, case, implementation, dtype, shape. */
static json_object *case_json(const bench_result *r)
{
    json_object *o = json_object_new_object();
    add_string(o, "workload", r->w->name);
    add_string(o, "case", r->case_name);
    add_string(o, "impl", r->impl);
    add_string(o, "dtype", mcl_dtype_name(r->c.dtype));
    json_object_object_add(o, "shape", shape_json(r->w, &r->c));
    char described[256];
    wl_describe_case(r->w, &r->c, described, sizeof described);
    add_string(o, "description", described);
    return o;
}

static json_object *outputs_json(const bench_result *r)
{
    json_object *outputs = json_object_new_object();
    for (int i = 0; i < (int)r->w->tensor_count; i++) {
        if (r->err[i] < 0.0) continue;
        json_object *e = json_object_new_object();
        add_number(e, "error", r->err[i]);
        add_number(e, "tolerance", r->tol[i]);
        json_object_object_add(outputs, r->w->tensors[i].name, e);
    }
    return outputs;
}

static json_object *kernels_json(const bench_result *r)
{
    json_object *kernels = json_object_new_array();
    for (size_t k = 0; k < r->kernel_count; k++) {
        json_object *e = json_object_new_object();
        add_string(e, "name", r->kernels[k].name);
        add_number(e, "median_ms", r->kernels[k].median_ms);
        json_object_array_add(kernels, e);
    }
    return kernels;
}

static json_object *timed_json(const bench_result *r, const bench_run_info *run)
{
    json_object *o = case_json(r);
    const wl_counts *n = &r->counts;
    double all_gbps = bench_rate(n->fwdbwd_bytes, r->fwdbwd.median);
    json_object_object_add(o, "fwd_ms", spread_json(&r->fwd));
    json_object_object_add(o, "fwdbwd_ms", spread_json(&r->fwdbwd));
    add_number(o, "fwd_gbps", bench_rate(n->fwd_bytes, r->fwd.median));
    add_number(o, "fwdbwd_gbps", all_gbps);
    add_number(o, "fwdbwd_fraction_of_copy", all_gbps / run->ceilings.copy_gbps);
    add_number(o, "fwdbwd_roofline_fraction", bench_roofline_fraction(r, &run->ceilings));
    add_number(o, "fwd_gflops", bench_rate(n->fwd_flops, r->fwd.median));
    add_number(o, "fwdbwd_gflops", bench_rate(n->fwdbwd_flops, r->fwdbwd.median));
    add_number(o, "fwd_bytes", n->fwd_bytes);
    add_number(o, "fwdbwd_bytes", n->fwdbwd_bytes);
    add_number(o, "fwd_flops", n->fwd_flops);
    add_number(o, "fwdbwd_flops", n->fwdbwd_flops);
    add_number(o, "peak_bytes", r->peak_bytes);
    add_number(o, "fwd_rel_error", r->fwd_err);
    add_number(o, "bwd_rel_error", r->bwd_err);
    if (r->approx_err >= 0.0) add_number(o, "approx_rel_error", r->approx_err);
    add_string(o, "check", r->sample_checked ? "sample" : "full");
    json_object_object_add(o, "outputs", outputs_json(r));
    json_object_object_add(o, "ok", json_object_new_boolean(r->ok));
    if (r->kernel_count) json_object_object_add(o, "kernels", kernels_json(r));
    return o;
}

static json_object *not_run_json(const bench_result *r)
{
    json_object *o = case_json(r);
    add_string(o, "status", r->outcome == BENCH_SKIPPED ? "skipped" : "failed");
    add_string(o, "reason", r->reason);
    return o;
}

static json_object *ceilings_json(const bench_run_info *run)
{
    json_object *c = json_object_new_object();
    add_number(c, "copy_gbps", run->ceilings.copy_gbps);
    add_number(c, "fma_gflops", run->ceilings.fma_gflops);
    add_string(c, "source", run->ceilings_stored ? "megacl peak" : "measured now");
    if (run->ceilings_stored) add_string(c, "date", run->ceilings_date);
    return c;
}

int bench_write_json(const char *path, const bench_run_info *run, const bench_result *results, size_t count)
{
    json_object *root = json_object_new_object(), *timed = json_object_new_array(), *not_run = json_object_new_array();
    add_string(root, "report", "megacl bench");
    add_string(root, "megacl_version", mcl_version_string());
    add_string(root, "workload", run->what);
    json_object_object_add(root, "device", cli_device_json(run->device));
    json_object_object_add(root, "ceilings", ceilings_json(run));
    json_object_object_add(root, "reps", json_object_new_int(run->reps));
    json_object_object_add(root, "warmup", json_object_new_int(run->warmup));
    json_object_object_add(root, "tf32", json_object_new_boolean(run->tf32));
    for (size_t i = 0; i < count; i++)
        json_object_array_add(results[i].outcome == BENCH_TIMED ? timed : not_run,
                              results[i].outcome == BENCH_TIMED ? timed_json(&results[i], run) : not_run_json(&results[i]));
    json_object_object_add(root, "results", timed);
    json_object_object_add(root, "not_run", not_run);
    int ok = json_object_to_file_ext(path, root, JSON_C_TO_STRING_PRETTY) == 0;
    if (!ok) fprintf(stderr, "megacl bench: cannot write %s: %s\n", path, json_util_get_last_err());
    json_object_put(root);
    return ok;
}

/* ---- --compare ---------------------------------------------------------------------------- */

static const char *string_of(json_object *o, const char *key)
{
    json_object *v;
    return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string) ? json_object_get_string(v)
                                                                                             : NULL;
}

/* A median in milliseconds: {"median": ms} in this report's form, a bare number in the form of
 * reports before the spread was recorded; NaN if neither. */
static double median_of(json_object *entry, const char *key)
{
    json_object *v, *median;
    if (!json_object_object_get_ex(entry, key, &v)) return NAN;
    if (json_object_is_type(v, json_type_double) || json_object_is_type(v, json_type_int)) return json_object_get_double(v);
    if (json_object_object_get_ex(v, "median", &median) &&
        (json_object_is_type(median, json_type_double) || json_object_is_type(median, json_type_int)))
        return json_object_get_double(median);
    return NAN;
}

/* The first result entry that does not name its case or carry a median, or -1. */
static long first_malformed(json_object *results)
{
    for (size_t i = 0; i < json_object_array_length(results); i++) {
        json_object *e = json_object_array_get_idx(results, i);
        if (!string_of(e, "workload") || !string_of(e, "case") || !string_of(e, "impl") || !string_of(e, "dtype") ||
            isnan(median_of(e, "fwd_ms")) || isnan(median_of(e, "fwdbwd_ms")))
            return (long)i;
    }
    return -1;
}

json_object *bench_load_report(const char *path)
{
    json_object *root = json_object_from_file(path), *results;
    if (!root) {
        cli_usage("bench", "--compare: cannot read %s as JSON: %s", path, json_util_get_last_err());
        return NULL;
    }
    long bad = -1;
    if (!string_of(root, "megacl_version") || !json_object_object_get_ex(root, "results", &results) ||
        !json_object_is_type(results, json_type_array))
        cli_usage("bench", "--compare: %s is no megacl bench report (no megacl_version or results)", path);
    else if ((bad = first_malformed(results)) >= 0)
        cli_usage("bench", "--compare: %s: results[%ld] lacks workload, case, impl, dtype or a median", path, bad);
    else
        return root;
    json_object_put(root);
    return NULL;
}

static json_object *find_entry(json_object *results, const bench_result *r)
{
    for (size_t i = 0; i < json_object_array_length(results); i++) {
        json_object *e = json_object_array_get_idx(results, i);
        if (strcmp(string_of(e, "workload"), r->w->name) == 0 && strcmp(string_of(e, "case"), r->case_name) == 0 &&
            strcmp(string_of(e, "impl"), r->impl) == 0 && strcmp(string_of(e, "dtype"), mcl_dtype_name(r->c.dtype)) == 0)
            return e;
    }
    return NULL;
}

void bench_print_comparison(json_object *old_report, const bench_result *results, size_t count)
{
    json_object *old_results;
    json_object_object_get_ex(old_report, "results", &old_results);
    printf("\nchange against %s's report (new / old: below 1 is faster)\n", string_of(old_report, "megacl_version"));
    printf("%-11s %-26s %-7s %-5s %10s %10s %7s %10s %10s %7s\n", "workload", "case", "impl", "dtype", "old fwd",
           "new fwd", "ratio", "old f+b", "new f+b", "ratio");
    size_t matched = 0;
    for (size_t i = 0; i < count; i++) {
        const bench_result *r = &results[i];
        json_object *old = r->outcome == BENCH_TIMED ? find_entry(old_results, r) : NULL;
        if (!old) continue;
        double old_fwd = median_of(old, "fwd_ms"), old_all = median_of(old, "fwdbwd_ms");
        printf("%-11s %-26s %-7s %-5s %10.4f %10.4f %7.3f %10.4f %10.4f %7.3f\n", r->w->name, r->case_name, r->impl,
               mcl_dtype_name(r->c.dtype), old_fwd, r->fwd.median, r->fwd.median / old_fwd, old_all,
               r->fwdbwd.median, r->fwdbwd.median / old_all);
        matched++;
    }
    if (!matched) printf("  no case of this run is in the earlier report\n");
}
