/* megacl demo's report: the table of both paths, the check of their results against each other,
 * which kind of sub-block bounds the block, the largest N_res of each path, and the JSON of it all
 * (see demo.h). */
#include "demo.h"

#include <json-c/json.h>
#include <math.h>
#include <string.h>

json_object *cli_device_json(const mcl_device_info *d);

#define MIB (1024.0 * 1024.0)
#define GIB (1024.0 * MIB)

void demo_print_intro(const ps_config *c, const mcl_device_info *device)
{
    printf("megacl demo: one AF3 pair-stack block (Pairformer's pair track), forward and backward with every "
           "parameter's gradient\n");
    printf("  N_res = %zu, c = %zu, triangle attention %zu heads of %zu, triangle multiplication h = %zu, transition "
           "F = %zu; random pair mask; megacl in %s\n",
           c->n, c->channels, c->heads, c->head_dim, c->trimul_hidden, c->transition_hidden, mcl_dtype_name(c->dtype));
    printf("  device: %s (%s, %s)\n", device->name, mcl_vendor_name(device->vendor), device->arch);
    printf("  unfused: the path of PyTorch eager: CLBlast GEMMs, one kernel per elementwise operation, the "
           "attention's logits materialised; fp32 only%s\n",
           c->dtype == MCL_F32 ? "" : " (CLBlast has no bf16 GEMM): megacl's bf16 is compared with fp32");
    fflush(stdout);
}

/* ---- the step ------------------------------------------------------------------------------- */

static double subblock_ms(const path_result *r, int sub) { return r->ms[0][sub] + r->ms[1][sub]; }

static double total_ms(const path_result *r)
{
    double sum = 0.0;
    for (int sub = 0; sub < PS_SUBBLOCKS; sub++) sum += subblock_ms(r, sub);
    return sum;
}

static double peak_bytes(const path_result *r) { return r->buffer_bytes + r->workspace_bytes; }

/* The kinds of sub-block (the two of a kind summed), and which takes most of megacl's time. */
static const char *const kind_names[] = {"triangle multiplication", "triangle attention", "the pair transition"};
static int kind_of(int sub) { return sub <= PS_TRIMUL_IN ? 0 : sub <= PS_ATTN_END ? 1 : 2; }

static int bounding_kind(const path_result *r, double *share)
{
    double kind_ms[3] = {0};
    for (int sub = 0; sub < PS_SUBBLOCKS; sub++) kind_ms[kind_of(sub)] += subblock_ms(r, sub);
    int most = 0;
    for (int k = 1; k < 3; k++)
        if (kind_ms[k] > kind_ms[most]) most = k;
    *share = kind_ms[most] / total_ms(r);
    return most;
}

static void print_table(const path_result *fused, const path_result *unfused)
{
    printf("\n%-34s %12s %12s %9s %13s\n", "sub-block (forward + backward)", "megacl ms", "unfused ms", "speedup",
           "megacl share");
    for (int sub = 0; sub < PS_SUBBLOCKS; sub++) {
        double m = subblock_ms(fused, sub), u = subblock_ms(unfused, sub);
        printf("%-34s %12.3f %12.3f %8.2fx %12.1f%%\n", ps_subblock_names[sub], m, u, u / m, 100.0 * m / total_ms(fused));
    }
    printf("%-34s %12.3f %12.3f %8.2fx %12.1f%%\n", "block", total_ms(fused), total_ms(unfused),
           total_ms(unfused) / total_ms(fused), 100.0);
    printf("%-34s %12.1f %12.1f %8.2fx less\n", "peak device memory (MiB)", peak_bytes(fused) / MIB,
           peak_bytes(unfused) / MIB, peak_bytes(unfused) / peak_bytes(fused));
    printf("(device time of event-profiled commands, medians of %d megacl and %d unfused steps; peak memory beyond the "
           "block's inputs: buffers %.1f + workspace %.1f MiB for megacl, %.1f + %.1f for unfused, CLBlast's own "
           "temporaries not counted)\n",
           fused->reps, unfused->reps, fused->buffer_bytes / MIB, fused->workspace_bytes / MIB,
           unfused->buffer_bytes / MIB, unfused->workspace_bytes / MIB);
    double share;
    int kind = bounding_kind(fused, &share);
    printf("\nthe block is bound by %s: %.0f%% of megacl's time\n", kind_names[kind], 100.0 * share);
}

/* The check of every result; 0 when megacl's agree with the unfused path's. */
static int print_checks(const path_result *fused, const path_result *unfused, json_object *checks)
{
    double tolerance = ps_tolerance(fused->dtype), worst = 0.0;
    size_t worst_at = 2, bad = 0;
    printf("\ncheck: megacl %s against unfused %s, relative 2-norm, tolerance %.0e\n", mcl_dtype_name(fused->dtype),
           mcl_dtype_name(unfused->dtype), tolerance);
    for (size_t i = 0; i < fused->results.count; i++) {
        double diff = ps_difference(fused->results.values[i], unfused->results.values[i], fused->results.sizes[i]);
        int ok = diff <= tolerance;
        json_object *o = json_object_new_object();
        json_object_object_add(o, "name", json_object_new_string(fused->results.names[i]));
        json_object_object_add(o, "difference", json_object_new_double(diff));
        json_object_object_add(o, "ok", json_object_new_boolean(ok));
        json_object_array_add(checks, o);
        if (!ok) bad++, printf("  DIFFERS: %s by %.3g\n", fused->results.names[i], diff);
        if (i >= 2 && diff > worst) worst = diff, worst_at = i;
    }
    double dz = ps_difference(fused->results.values[1], unfused->results.values[1], fused->results.sizes[1]);
    printf("  z_out %.2e, dz %.2e, the %zu parameter gradients within %.2e (the farthest: %s)\n",
           ps_difference(fused->results.values[0], unfused->results.values[0], fused->results.sizes[0]), dz,
           fused->results.count - 2, worst, fused->results.names[worst_at]);
    if (bad) printf("  %zu of %zu results differ\n", bad, fused->results.count);
    else printf("  the paths agree on all %zu results\n", fused->results.count);
    return bad > 0;
}

/* ---- JSON ------------------------------------------------------------------------------------ */

static void add_double(json_object *o, const char *key, double value)
{
    json_object_object_add(o, key, json_object_new_double(value));
}

static json_object *config_json(const ps_config *c)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "n_res", json_object_new_int64((int64_t)c->n));
    json_object_object_add(o, "channels", json_object_new_int64((int64_t)c->channels));
    json_object_object_add(o, "heads", json_object_new_int64((int64_t)c->heads));
    json_object_object_add(o, "head_dim", json_object_new_int64((int64_t)c->head_dim));
    json_object_object_add(o, "trimul_hidden", json_object_new_int64((int64_t)c->trimul_hidden));
    json_object_object_add(o, "transition_hidden", json_object_new_int64((int64_t)c->transition_hidden));
    json_object_object_add(o, "dtype", json_object_new_string(mcl_dtype_name(c->dtype)));
    return o;
}

static json_object *path_json(const path_result *r)
{
    json_object *o = json_object_new_object(), *subs = json_object_new_array();
    json_object_object_add(o, "name", json_object_new_string(r->name));
    json_object_object_add(o, "dtype", json_object_new_string(mcl_dtype_name(r->dtype)));
    json_object_object_add(o, "steps_timed", json_object_new_int(r->reps));
    for (int sub = 0; sub < PS_SUBBLOCKS; sub++) {
        json_object *s = json_object_new_object();
        json_object_object_add(s, "name", json_object_new_string(ps_subblock_names[sub]));
        add_double(s, "forward_ms", r->ms[0][sub]);
        add_double(s, "backward_ms", r->ms[1][sub]);
        json_object_array_add(subs, s);
    }
    json_object_object_add(o, "subblocks", subs);
    add_double(o, "total_ms", total_ms(r));
    add_double(o, "peak_bytes", peak_bytes(r));
    add_double(o, "buffer_bytes", r->buffer_bytes);
    add_double(o, "workspace_bytes", r->workspace_bytes);
    return o;
}

/* The report's root: the version, the device, the block's sizes. */
static json_object *root_json(const ps_config *c, const mcl_device_info *device)
{
    json_object *root = json_object_new_object();
    json_object_object_add(root, "megacl_version", json_object_new_string(mcl_version_string()));
    json_object_object_add(root, "device", cli_device_json(device));
    json_object_object_add(root, "config", config_json(c));
    return root;
}

/* Writes and releases root; 0 when written. */
static int write_json(json_object *root, const char *path)
{
    int failed = json_object_to_file_ext(path, root, JSON_C_TO_STRING_PRETTY) != 0;
    if (failed) fprintf(stderr, "megacl demo: cannot write %s\n", path);
    json_object_put(root);
    return failed;
}

int demo_report(const ps_config *c, const mcl_device_info *device, const path_result results[2], const char *json)
{
    const path_result *fused = &results[0], *unfused = &results[1];
    print_table(fused, unfused);
    json_object *root = root_json(c, device), *paths = json_object_new_array(), *checks = json_object_new_array();
    int differ = print_checks(fused, unfused, checks);
    json_object_array_add(paths, path_json(fused));
    json_object_array_add(paths, path_json(unfused));
    json_object_object_add(root, "paths", paths);
    add_double(root, "speedup", total_ms(unfused) / total_ms(fused));
    add_double(root, "memory_ratio", peak_bytes(unfused) / peak_bytes(fused));
    double share;
    json_object_object_add(root, "bound_by", json_object_new_string(kind_names[bounding_kind(fused, &share)]));
    add_double(root, "bound_by_share", share);
    add_double(root, "tolerance", ps_tolerance(fused->dtype));
    json_object_object_add(root, "checks", checks);
    json_object_object_add(root, "agree", json_object_new_boolean(!differ));
    int failed = json ? write_json(root, json) : (json_object_put(root), 0);
    return differ || failed;
}

/* ---- the largest N_res ----------------------------------------------------------------------- */

static json_object *need_json(size_t n, const ps_memory *need)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "max_tokens", json_object_new_int64((int64_t)n));
    add_double(o, "input_bytes", need->inputs);
    add_double(o, "buffer_bytes", need->buffers);
    add_double(o, "workspace_bytes", need->workspace);
    add_double(o, "largest_buffer_bytes", need->largest);
    add_double(o, "total_bytes", ps_memory_total(need));
    return o;
}

int demo_report_max_tokens(const ps_config *c, const mcl_device_info *device, const ps_path *const paths[2],
                           const size_t n[2], const ps_memory need[2], const char *json)
{
    json_object *root = root_json(c, device), *list = json_object_new_array();
    for (int i = 0; i < 2; i++) {
        printf("  %-8s N_res = %zu: needs %.2f GiB (inputs %.2f, buffers %.2f, workspace %.2f; largest buffer %.2f)\n",
               ps_path_name(paths[i]), n[i], ps_memory_total(&need[i]) / GIB, need[i].inputs / GIB,
               need[i].buffers / GIB, need[i].workspace / GIB, need[i].largest / GIB);
        json_object *o = need_json(n[i], &need[i]);
        json_object_object_add(o, "name", json_object_new_string(ps_path_name(paths[i])));
        json_object_array_add(list, o);
    }
    double ratio = n[1] ? (double)n[0] / (double)n[1] : INFINITY;
    printf("megacl fits %.2fx the unfused path's N_res (the unfused path's CLBlast temporaries not counted)\n", ratio);
    json_object_object_add(root, "paths", list);
    add_double(root, "global_mem_bytes", (double)device->global_mem_bytes);
    add_double(root, "max_alloc_bytes", (double)device->max_alloc_bytes);
    add_double(root, "ratio", ratio);
    return json ? write_json(root, json) : (json_object_put(root), 0);
}
