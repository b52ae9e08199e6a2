/* Program building: the in-memory cache, the on-disk binary cache, and the parameter seam
 * (overrides and tuning databases). */
#include "common.h"

#include "ops/gemm/gemm.h"
#include "ops/layernorm/layernorm.h"
#include "runtime/binary_cache.h"
#include "runtime/params.h"
#include "runtime/program.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A small LayerNorm forward: enough to build the layernorm program. */
static void run_layernorm(mcl_context *ctx, float *out)
{
    enum { ROWS = 3, COLS = 40 };
    float x[ROWS * COLS];
    for (int i = 0; i < ROWS * COLS; i++) x[i] = (float)((i * 7) % 13) - 6.0f;
    cl_mem xm = host_upload(ctx, MCL_F32, x, ROWS * COLS), ym = host_upload(ctx, MCL_F32, NULL, ROWS * COLS);
    mcl_layernorm_desc desc = {ROWS, COLS, MCL_F32, 1e-5f};
    mcl_layernorm_fwd_tensors t = {.x = {xm, 0}, .y = {ym, 0}};
    assert_ok(mcl_layernorm_forward(ctx, &desc, &t, NULL));
    host_download(ctx, ym, MCL_F32, out, ROWS * COLS);
    clReleaseMemObject(xm);
    clReleaseMemObject(ym);
}

static mcl_context_stats stats_of(mcl_context *ctx)
{
    mcl_context_stats s;
    mcl_context_get_stats(ctx, &s);
    return s;
}

Test(program, in_memory_cache_builds_once_per_options)
{
    mcl_context *ctx = test_context();
    float out[120];
    run_layernorm(ctx, out);
    cr_assert_eq(stats_of(ctx).programs_built, 1);
    run_layernorm(ctx, out);
    cr_assert_eq(stats_of(ctx).programs_built, 1, "the second call hits the cache");
    cr_assert_geq(stats_of(ctx).program_cache_hits, 1);
    assert_ok(mcl_context_set_params(ctx, "layernorm", "TPR=16"));
    run_layernorm(ctx, out);
    cr_assert_eq(stats_of(ctx).programs_built, 2, "other parameters, another program");
    mcl_context_release(ctx);
}

Test(program, build_options_are_the_defines_after_the_device_options)
{
    mcl_context *ctx = test_context();
    char options[2048];
    mcl_defines defines = {0};
    mcl_define(&defines, "LN_TPR", 8);
    assert_ok(mcl_program_options(ctx, &defines, options, sizeof options));
    cr_assert(strstr(options, "-DLN_TPR=8"));
    if (mcl_context_device(ctx)->vendor == MCL_VENDOR_POCL)
        cr_assert_null(strstr(options, "MMA"), "nothing vendor-specific reaches PoCL: %s", options);
    mcl_context_release(ctx);
}

Test(binary_cache, key_covers_source_options_and_driver)
{
    mcl_device_info info;
    memset(&info, 0, sizeof info);
    strcpy(info.name, "dev");
    strcpy(info.driver_version, "1.0");
    char base[33], other[33];
    mcl_binary_cache_key("kernel void k() {}", "-DA=1", &info, base);
    cr_assert_eq(strlen(base), 32);
    mcl_binary_cache_key("kernel void k() {}", "-DA=1", &info, other);
    cr_assert_str_eq(base, other, "the key is a function of its inputs");
    mcl_binary_cache_key("kernel void k() { }", "-DA=1", &info, other);
    cr_assert_str_neq(base, other, "source");
    mcl_binary_cache_key("kernel void k() {}", "-DA=2", &info, other);
    cr_assert_str_neq(base, other, "options");
    strcpy(info.driver_version, "1.1");
    mcl_binary_cache_key("kernel void k() {}", "-DA=1", &info, other);
    cr_assert_str_neq(base, other, "driver");
    strcpy(info.driver_version, "1.0");
    strcpy(info.name, "dev2");
    mcl_binary_cache_key("kernel void k() {}", "-DA=1", &info, other);
    cr_assert_str_neq(base, other, "device");
}

/* A fresh cache root with the binary cache switched on; returns the binaries folder. */
static void fresh_cache(char *root, size_t cap, char *binaries, size_t bcap)
{
    snprintf(root, cap, "/tmp/megacl-test-XXXXXX");
    cr_assert_not_null(mkdtemp(root));
    snprintf(binaries, bcap, "%s/binaries", root);
    setenv("MEGACL_CACHE_DIR", root, 1);
    setenv("MEGACL_BINARY_CACHE", "1", 1);
}

/* The one entry in the binaries folder. */
static void only_entry(const char *dir, char *path, size_t cap)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "no %s", dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        snprintf(path, cap, "%s/%s", dir, e->d_name);
        n++;
    }
    closedir(d);
    cr_assert_eq(n, 1, "expected one cache entry in %s, found %d", dir, n);
}

/* A fresh binary cache, then a first run on a context of its own, which stores one entry: its
 * results in out, the entry's path in entry; returns that context's stats. */
static mcl_context_stats first_cached_run(float *out, char *entry, size_t cap)
{
    char root[64], dir[96];
    fresh_cache(root, sizeof root, dir, sizeof dir);
    mcl_context *ctx = test_context();
    run_layernorm(ctx, out);
    mcl_context_stats stats = stats_of(ctx);
    mcl_context_release(ctx);
    only_entry(dir, entry, cap);
    return stats;
}

Test(binary_cache, stores_then_loads)
{
    char entry[512];
    float first[120], second[120];
    cr_assert_eq(first_cached_run(first, entry, sizeof entry).binary_cache_writes, 1);

    mcl_context *ctx = test_context();
    run_layernorm(ctx, second);
    cr_assert_eq(stats_of(ctx).binary_cache_hits, 1);
    cr_assert_eq(stats_of(ctx).programs_built, 0);
    cr_assert_arr_eq(first, second, sizeof first);
    mcl_context_release(ctx);
}

static void corrupt(const char *path, long at, int truncate_there)
{
    if (truncate_there) {
        cr_assert_eq(truncate(path, at), 0);
        return;
    }
    FILE *f = fopen(path, "r+b");
    cr_assert_not_null(f);
    fseek(f, at, SEEK_SET);
    int c = fgetc(f);
    fseek(f, at, SEEK_SET);
    fputc(c ^ 0x5a, f);
    fclose(f);
}

Test(binary_cache, corrupt_entries_are_rebuilt)
{
    char entry[512];
    float reference[120], out[120];
    first_cached_run(reference, entry, sizeof entry);
    struct stat st;
    cr_assert_eq(stat(entry, &st), 0);

    const long places[][2] = {{st.st_size / 2, 0}, {3, 0}, {st.st_size - 1, 0}, {st.st_size / 3, 1}, {0, 1}};
    for (size_t i = 0; i < sizeof places / sizeof places[0]; i++) {
        corrupt(entry, places[i][0], (int)places[i][1]);
        mcl_context *ctx = test_context();
        run_layernorm(ctx, out);
        cr_assert_eq(stats_of(ctx).binary_cache_hits, 0, "corruption %zu was loaded", i);
        cr_assert_eq(stats_of(ctx).programs_built, 1, "corruption %zu: rebuilt", i);
        cr_assert_eq(stats_of(ctx).binary_cache_writes, 1, "corruption %zu: rewritten", i);
        cr_assert_arr_eq(reference, out, sizeof out);
        mcl_context_release(ctx);
        ctx = test_context();
        run_layernorm(ctx, out);
        cr_assert_eq(stats_of(ctx).binary_cache_hits, 1, "after corruption %zu the entry is good", i);
        mcl_context_release(ctx);
    }
}

Test(binary_cache, unwritable_directory_only_warns)
{
    /* a cache root below a regular file can never be created, even by root */
    char root[64], dir[96], blocked[160];
    fresh_cache(root, sizeof root, dir, sizeof dir);
    snprintf(blocked, sizeof blocked, "%s/file", root);
    FILE *f = fopen(blocked, "w");
    cr_assert_not_null(f);
    fclose(f);
    strcat(blocked, "/cache");
    setenv("MEGACL_CACHE_DIR", blocked, 1);
    float out[120];
    mcl_context *ctx = test_context();
    run_layernorm(ctx, out);
    cr_assert_eq(stats_of(ctx).programs_built, 1);
    cr_assert_eq(stats_of(ctx).binary_cache_writes, 0);
    mcl_context_release(ctx);

    /* a read-only directory (meaningful when not running as root) */
    setenv("MEGACL_CACHE_DIR", root, 1);
    mkdir(dir, 0755);
    chmod(dir, 0555);
    ctx = test_context();
    run_layernorm(ctx, out);
    cr_assert_eq(stats_of(ctx).programs_built + stats_of(ctx).binary_cache_hits, 1);
    mcl_context_release(ctx);
    chmod(dir, 0755);
}

Test(binary_cache, off_by_default_on_pocl_and_nvidia)
{
    unsetenv("MEGACL_BINARY_CACHE");
    mcl_context *ctx = test_context();
    float out[120];
    run_layernorm(ctx, out);
    mcl_vendor vendor = mcl_context_device(ctx)->vendor;
    if (vendor == MCL_VENDOR_POCL || vendor == MCL_VENDOR_NVIDIA)
        cr_assert_eq(stats_of(ctx).binary_cache_writes, 0);
    if (vendor == MCL_VENDOR_AMD) cr_assert_eq(stats_of(ctx).binary_cache_writes + stats_of(ctx).binary_cache_hits, 1);
    mcl_context_release(ctx);
}

/* ---- parameters ------------------------------------------------------------------------- */

Test(params, overrides_are_validated)
{
    mcl_context *ctx = test_context();
    assert_status(mcl_context_set_params(ctx, "layernorm", "NOPE=1"), MCL_ERR_INVALID_ARGUMENT);
    assert_status(mcl_context_set_params(ctx, "layernorm", "TPR=3"), MCL_ERR_INVALID_ARGUMENT);
    assert_status(mcl_context_set_params(ctx, "layernorm", "TPR=256,WG=128"), MCL_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(mcl_last_error(), "TPR exceeds WG"), "%s", mcl_last_error());
    assert_status(mcl_context_set_params(ctx, "layernorm", "TPR"), MCL_ERR_PARSE);
    assert_status(mcl_context_set_params(ctx, "layernorm", "TPR=x"), MCL_ERR_PARSE);
    assert_status(mcl_context_set_params(ctx, "no_family", "TPR=8"), MCL_ERR_INVALID_ARGUMENT);
    assert_status(mcl_context_set_params(NULL, "layernorm", "TPR=8"), MCL_ERR_NULL_POINTER);
    assert_ok(mcl_context_set_params(ctx, "layernorm", "TPR=8,WG=64"));
    ln_params p;
    char origin[MCL_ORIGIN_CAP];
    const size_t shape[2] = {10, 100};
    assert_ok(mcl_params_lookup(ctx, &mcl_family_layernorm, MCL_F32, shape, &p, origin));
    cr_assert_eq(p.tpr, 8);
    cr_assert_eq(p.wg, 64);
    cr_assert_eq(p.vec, 4, "an unassigned parameter keeps its default");
    cr_assert_str_eq(origin, "override");
    assert_ok(mcl_context_set_params(ctx, "layernorm", NULL));
    assert_ok(mcl_params_lookup(ctx, &mcl_family_layernorm, MCL_F32, shape, &p, origin));
    cr_assert_str_neq(origin, "override");
    mcl_context_release(ctx);
}

/* Every family's defaults, or a fallback of them, are legal on a device with OpenCL 1.2's
 * minimum local memory (32 KiB) and 256 work-items a group; the GEMM double-buffers its local
 * tiles only where they fit, and a device too small for any fallback is told so. */
Test(params, defaults_fit_the_smallest_conformant_device)
{
    mcl_device_info small = {.compute_units = 1, .local_mem_bytes = 32 * 1024, .max_work_group_size = 256,
                             .simd_width = 1};
    strcpy(small.name, "a 32 KiB device");
    mcl_param_block values;
    for (size_t i = 0; i < mcl_family_registry_count; i++) {
        assert_ok(mcl_params_defaults(mcl_family_registry[i], &small, &values, NULL));
        assert_ok(mcl_params_check(mcl_family_registry[i], &values, &small));
    }
    const char *applied;
    gemm_params gemm;
    assert_ok(mcl_params_defaults(&mcl_family_gemm, &small, &gemm, &applied));
    cr_assert_eq(gemm.prefetch, 0);
    cr_assert_str_eq(applied, "PREFETCH=0");
    mcl_device_info roomy = small;
    roomy.local_mem_bytes = 48 * 1024;
    assert_ok(mcl_params_defaults(&mcl_family_gemm, &roomy, &gemm, &applied));
    cr_assert_eq(gemm.prefetch, 1);
    cr_assert_str_eq(applied, "");
    mcl_device_info tiny = small;
    tiny.local_mem_bytes = 4 * 1024;
    assert_status(mcl_params_defaults(&mcl_family_gemm, &tiny, &gemm, NULL), MCL_ERR_INVALID_ARGUMENT);
    cr_assert(strstr(mcl_last_error(), "local memory"), "%s", mcl_last_error());
}

static void write_db(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

/* TPR chosen for (f32, cols 100) under a user database holding `entries`. */
static int tpr_with(const char *entries, char *origin)
{
    char path[] = "/tmp/megacl-db-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    char text[4096];
    snprintf(text, sizeof text, "{\"format\": 1, \"entries\": [%s]}", entries);
    write_db(path, text);
    setenv("MEGACL_TUNING_DB", path, 1);
    mcl_context *ctx = test_context();
    ln_params p;
    const size_t shape[2] = {10, 100};
    assert_ok(mcl_params_lookup(ctx, &mcl_family_layernorm, MCL_F32, shape, &p, origin));
    mcl_context_release(ctx);
    unlink(path);
    return p.tpr;
}

Test(params, database_falls_back_device_arch_vendor_any)
{
    mcl_context *ctx = test_context();
    const mcl_device_info *d = mcl_context_device(ctx);
    char device[512], arch[512], vendor[512], all[2048], origin[256];
    snprintf(device, sizeof device, "{\"family\":\"layernorm\",\"device\":\"%s\",\"params\":{\"TPR\":4}}", d->name);
    snprintf(arch, sizeof arch, "{\"family\":\"layernorm\",\"arch\":\"%s\",\"params\":{\"TPR\":8}}", d->arch);
    snprintf(vendor, sizeof vendor, "{\"family\":\"layernorm\",\"vendor\":\"%s\",\"params\":{\"TPR\":16}}",
             mcl_vendor_name(d->vendor));
    const char *any = "{\"family\":\"layernorm\",\"params\":{\"TPR\":64}}";
    mcl_context_release(ctx);

    snprintf(all, sizeof all, "%s,%s,%s,%s", any, vendor, arch, device);
    cr_assert_eq(tpr_with(all, origin), 4);
    cr_assert(strstr(origin, "(device)"), "%s", origin);
    snprintf(all, sizeof all, "%s,%s,%s", any, vendor, arch);
    cr_assert_eq(tpr_with(all, origin), 8);
    cr_assert(strstr(origin, "(arch)"), "%s", origin);
    snprintf(all, sizeof all, "%s,%s", any, vendor);
    cr_assert_eq(tpr_with(all, origin), 16);
    cr_assert(strstr(origin, "(vendor)"), "%s", origin);
    cr_assert_eq(tpr_with(any, origin), 64);
    cr_assert(strstr(origin, "(any device)"), "%s", origin);
}

Test(params, database_prefers_exact_dtype_and_bucket)
{
    char origin[256];
    const char *entries =
        "{\"family\":\"layernorm\",\"params\":{\"TPR\":64}},"
        "{\"family\":\"layernorm\",\"dtype\":\"f32\",\"params\":{\"TPR\":16}},"
        "{\"family\":\"layernorm\",\"dtype\":\"f32\",\"bucket\":\"cols<=128\",\"params\":{\"TPR\":8}},"
        "{\"family\":\"layernorm\",\"dtype\":\"bf16\",\"bucket\":\"cols<=128\",\"params\":{\"TPR\":2}},"
        "{\"family\":\"layernorm\",\"dtype\":\"f32\",\"bucket\":\"cols<=4096\",\"params\":{\"TPR\":1}}";
    cr_assert_eq(tpr_with(entries, origin), 8);
}

Test(params, bad_databases_are_ignored)
{
    char origin[256], baseline_origin[256];
    int tpr_default = tpr_with("", baseline_origin); /* built-in database, else defaults */
    /* illegal values and malformed entries are skipped; the op still runs */
    cr_assert_eq(tpr_with("{\"family\":\"layernorm\",\"params\":{\"TPR\":3}}", origin), tpr_default);
    cr_assert_eq(tpr_with("{\"family\":\"layernorm\",\"params\":{\"TPR\":256,\"WG\":64}}", origin), tpr_default);
    cr_assert_eq(tpr_with("{\"family\":\"layernorm\",\"params\":{\"NOPE\":3}}", origin), tpr_default);
    cr_assert_eq(tpr_with("{\"family\":\"layernorm\",\"dtype\":\"f64\",\"params\":{\"TPR\":4}}", origin), tpr_default);
    cr_assert_eq(tpr_with("{\"params\":{\"TPR\":4}}", origin), tpr_default);
    cr_assert_eq(tpr_with("{\"family\":\"layernorm\",\"arch\":\"x\",\"vendor\":\"y\",\"params\":{\"TPR\":4}}", origin), tpr_default);
    cr_assert_eq(tpr_with("]]] not json", origin), tpr_default);
    cr_assert_str_eq(origin, baseline_origin);
}
