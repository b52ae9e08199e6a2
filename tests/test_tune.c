/* The autotuner: search spaces on fake NVIDIA, AMD and CPU devices (legal candidates only), the
 * strategies, the tuning databases (fallbacks, corrupt, truncated and foreign files), a tuning
 * run on the device under test whose winner the ops then use, a wrong candidate rejected, and a
 * tuner killed mid-run that a second run resumes. Timing is never asserted. */
#include "common.h"

#include "ops/layernorm/layernorm.h"
#include "runtime/params.h"
#include "tune/space.h"
#include "tune/strategy.h"
#include "workload/tune_target.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- search spaces on described devices ------------------------------------------------------ */

static mcl_device_info fake_device(mcl_vendor vendor, int is_gpu, unsigned simd, uint64_t local_kib, size_t max_wg)
{
    mcl_device_info d = {.vendor = vendor, .is_gpu = is_gpu, .simd_width = simd, .compute_units = 64,
                         .local_mem_bytes = local_kib * 1024, .max_work_group_size = max_wg,
                         .global_mem_bytes = (uint64_t)16 << 30, .max_alloc_bytes = (uint64_t)4 << 30};
    snprintf(d.name, sizeof d.name, "fake %s", mcl_vendor_name(vendor));
    return d;
}

static size_t work_items_of(const mcl_family *f, const void *values)
{
    if (f->work_items) return f->work_items(values);
    for (size_t i = 0; f->work_group && i < f->param_count; i++)
        if (strcmp(f->params[i].name, f->work_group) == 0) return (size_t)mcl_param_get(f, values, i);
    return 0;
}

/* Every candidate of every stage is legal there and, on a GPU, a whole number of SIMD groups;
 * only the tensor-core stages are empty, exactly where the device has no mma.sync. */
static void expect_legal_spaces(const mcl_device_info *d)
{
    for (size_t i = 0; i < mcl_family_registry_count; i++) {
        const mcl_family *f = mcl_family_registry[i];
        mcl_param_block start;
        assert_ok(mcl_params_defaults(f, d, &start, NULL));
        for (size_t s = 0; s < f->stage_count; s++) {
            tune_space space;
            assert_ok(tune_space_enumerate(f, &f->stages[s], &start, d, &space));
            if (strstr(f->stages[s].name, "tensor cores") && !d->has_mma_sync)
                cr_expect_eq(space.count, 0, "%s %s has candidates on %s", f->name, f->stages[s].name, d->name);
            else
                cr_expect_gt(space.count, 0, "%s %s has no candidate on %s", f->name, f->stages[s].name, d->name);
            for (size_t c = 0; c < space.count; c++) {
                const void *v = &space.items[c].values;
                const char *why = mcl_params_why_illegal(f, v, d);
                cr_assert_null(why, "%s candidate %zu illegal on %s: %s", f->name, c, d->name, why);
                size_t items = work_items_of(f, v);
                if (d->is_gpu && items)
                    cr_assert_eq(items % d->simd_width, 0, "%s: %zu work-items on %s (SIMD %u)", f->name, items,
                                 d->name, d->simd_width);
            }
            tune_space_free(&space);
        }
    }
}

Test(space, nvidia_candidates_are_legal_warp_multiples_within_48_kib)
{
    mcl_device_info d = fake_device(MCL_VENDOR_NVIDIA, 1, 32, 48, 1024);
    expect_legal_spaces(&d); /* a device whose mma.sync probe failed */
    d.has_mma_sync = 1;
    expect_legal_spaces(&d);
}

Test(space, amd_candidates_are_wave64_multiples_within_64_kib)
{
    mcl_device_info cdna = fake_device(MCL_VENDOR_AMD, 1, 64, 64, 256), rdna = fake_device(MCL_VENDOR_AMD, 1, 32, 64, 1024);
    expect_legal_spaces(&cdna);
    expect_legal_spaces(&rdna);
}

Test(space, cpu_candidates_use_the_cpu_values)
{
    mcl_device_info cpu = fake_device(MCL_VENDOR_POCL, 0, 1, 256, 4096);
    expect_legal_spaces(&cpu);
    const mcl_family *ln = mcl_family_find("layernorm");
    mcl_param_block start;
    assert_ok(mcl_params_defaults(ln, &cpu, &start, NULL));
    tune_space space;
    assert_ok(tune_space_enumerate(ln, &ln->stages[0], &start, &cpu, &space));
    for (size_t c = 0; c < space.count; c++) {
        const ln_params *v = (const ln_params *)&space.items[c].values;
        cr_assert(v->variant == 0 || v->tpr <= 16, "a tiled CPU candidate with TPR=%d", v->tpr);
    }
    tune_space_free(&space);
}

/* The GEMM's tile stage on a device. */
static tune_space gemm_space(const mcl_device_info *d)
{
    const mcl_family *gemm = mcl_family_find("gemm");
    mcl_param_block start;
    assert_ok(mcl_params_defaults(gemm, d, &start, NULL));
    tune_space space;
    assert_ok(tune_space_enumerate(gemm, &gemm->stages[0], &start, d, &space));
    return space;
}

Test(space, the_gemm_tiles_leave_out_what_a_small_local_memory_cannot_hold)
{
    mcl_device_info small = fake_device(MCL_VENDOR_OTHER, 1, 32, 24, 256);
    tune_space space = gemm_space(&small);
    cr_assert_gt(space.count, 0);
    cr_assert_lt(space.count, space.proposed, "24 KiB of local memory must leave some tiles out");
    tune_space_free(&space);
}

/* The gemm family's tensor-core stage is tuned for 16-bit calls and for f32 ones only where
 * tf32 is allowed: elsewhere its candidates would all run the FMA kernel. */
Test(space, the_tensor_core_stage_is_skipped_where_no_call_could_take_it)
{
    const mcl_family *gemm = mcl_family_find("gemm");
    const mcl_tune_stage *mma = NULL;
    for (size_t s = 0; s < gemm->stage_count; s++)
        if (strcmp(gemm->stages[s].name, "tensor cores") == 0) mma = &gemm->stages[s];
    cr_assert(mma && mma->applies);
    cr_expect(!mma->applies(MCL_F32, 0));
    cr_expect(mma->applies(MCL_F32, 1));
    cr_expect(mma->applies(MCL_BF16, 0) && mma->applies(MCL_F16, 0));
}

/* ---- strategies ------------------------------------------------------------------------------- */

/* Proposes until the strategy stops, reporting a made-up time; each candidate at most once. */
static size_t drain(tune_strategy *s, const tune_space *space, size_t *order)
{
    unsigned char *seen = calloc(space->count, 1);
    size_t batch[8], n, total = 0;
    while ((n = tune_strategy_propose(s, batch, 8)) > 0) {
        for (size_t i = 0; i < n; i++) {
            cr_assert_lt(batch[i], space->count);
            cr_assert_eq(seen[batch[i]], 0, "candidate %zu proposed twice", batch[i]);
            seen[batch[i]] = 1;
            if (order) order[total] = batch[i];
            total++;
            tune_strategy_report(s, batch[i], 1.0 + (double)(batch[i] % 17));
        }
    }
    free(seen);
    return total;
}

Test(strategy, exhaustive_random_and_annealing_propose_each_candidate_once)
{
    mcl_device_info d = fake_device(MCL_VENDOR_NVIDIA, 1, 32, 48, 1024);
    tune_space space = gemm_space(&d);
    const mcl_tune_stage *stage = &mcl_family_find("gemm")->stages[0];
    tune_strategy s;
    assert_ok(tune_strategy_init(&s, MCL_TUNE_EXHAUSTIVE, &space, stage, 10, 1, TUNE_NONE));
    cr_expect_eq(drain(&s, &space, NULL), space.count, "exhaustive covers the whole stage");
    tune_strategy_free(&s);

    size_t *first = malloc(64 * sizeof *first), *again = malloc(64 * sizeof *again);
    assert_ok(tune_strategy_init(&s, MCL_TUNE_RANDOM, &space, stage, 50, 7, TUNE_NONE));
    cr_expect_eq(drain(&s, &space, first), 50);
    tune_strategy_free(&s);
    assert_ok(tune_strategy_init(&s, MCL_TUNE_RANDOM, &space, stage, 50, 7, TUNE_NONE));
    drain(&s, &space, again);
    cr_expect_eq(memcmp(first, again, 50 * sizeof *first), 0, "the same seed draws the same sample");
    tune_strategy_free(&s);

    assert_ok(tune_strategy_init(&s, MCL_TUNE_ANNEALING, &space, stage, 60, 3, 0));
    cr_expect_eq(drain(&s, &space, first), 60, "annealing spends its budget");
    cr_expect_eq(first[0], 0u, "annealing starts from the candidate it is given");
    tune_strategy_free(&s);

    assert_ok(tune_strategy_init(&s, MCL_TUNE_AUTO, &space, stage, 5, 3, 0));
    cr_expect_eq(s.kind, MCL_TUNE_ANNEALING, "auto anneals a stage larger than its budget");
    tune_strategy_free(&s);
    free(first), free(again);
    tune_space_free(&space);
}

/* ---- tuning databases ------------------------------------------------------------------------- */

/* A fresh database path under the suite's cache directory, made the user database. */
static const char *use_database(const char *name)
{
    static char path[512];
    const char *root = getenv("MEGACL_CACHE_DIR");
    if (!root) root = "/tmp";
    mkdir(root, 0755);
    snprintf(path, sizeof path, "%s/test-tune-%ld-%s.json", root, (long)getpid(), name);
    unlink(path);
    setenv("MEGACL_TUNING_DB", path, 1);
    return path;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static void expect_origin(mcl_context *ctx, const char *family, const size_t *shape, size_t rank, const char *needle)
{
    mcl_param_choice choice;
    assert_ok(mcl_context_get_params(ctx, family, MCL_F32, shape, rank, &choice));
    cr_expect(strstr(choice.origin, needle), "%s comes from '%s', expected '%s'", family, choice.origin, needle);
}

/* The lookup does not take its parameters from the database at `path`. */
static void expect_not_from(mcl_context *ctx, const char *family, const size_t *shape, size_t rank, const char *path)
{
    mcl_param_choice choice;
    assert_ok(mcl_context_get_params(ctx, family, MCL_F32, shape, rank, &choice));
    cr_expect_null(strstr(choice.origin, path), "%s comes from '%s'", family, choice.origin);
}

static void store(mcl_context *ctx, const char *family, mcl_tune_level level, const char *bucket, const char *params)
{
    mcl_tuning_entry e = {family, level, MCL_F32, bucket, params, 1.0, 2.0, "test_tune"};
    assert_ok(mcl_tuning_db_store(NULL, mcl_context_device(ctx), &e));
}

static const size_t ln_shape[2] = {4096, 128}, glu_shape[1] = {1000}, tm_shape[3] = {64, 128, 128};

Test(database, lookups_fall_back_from_device_to_arch_to_vendor_to_any)
{
    const char *path = use_database("levels");
    mcl_context *ctx = test_context();
    store(ctx, "layernorm", MCL_TUNE_DEVICE, "cols<=128", "TPR=16");
    store(ctx, "layernorm", MCL_TUNE_ARCH, "cols<=128", "TPR=8");
    store(ctx, "glu", MCL_TUNE_ARCH, "any", "VEC=2");
    store(ctx, "trimul", MCL_TUNE_VENDOR, "any", "WG=64");
    assert_ok(mcl_context_reload_tuning(ctx));
    expect_origin(ctx, "layernorm", ln_shape, 2, "(device)");
    expect_origin(ctx, "glu", glu_shape, 1, "(arch)");
    expect_origin(ctx, "trimul", tm_shape, 3, "(vendor)");
    expect_not_from(ctx, "evoattn", (const size_t[]){1, 8, 8, 1, 8}, 5, path);
    mcl_param_choice choice;
    assert_ok(mcl_context_get_params(ctx, "layernorm", MCL_F32, ln_shape, 2, &choice));
    cr_expect(strstr(choice.values, "TPR=16"), "the device entry wins over the arch one: %s", choice.values);
    cr_expect(strstr(choice.origin, path), "the origin names the file: %s", choice.origin);
    /* an entry for any device, written by hand */
    write_text(path, "{\"format\": 1, \"entries\": [{\"family\": \"glu\", \"params\": {\"WG\": 128}}]}");
    assert_ok(mcl_context_reload_tuning(ctx));
    expect_origin(ctx, "glu", glu_shape, 1, "(any device)");
    mcl_tuning_entry_info first;
    assert_ok(mcl_context_tuning_entry(ctx, 0, &first));
    cr_expect(strstr(first.origin, path) && strcmp(first.family, "glu") == 0 && first.in_use,
              "the user database's entry comes first and is in use: %s %s", first.origin, first.family);
    mcl_context_release(ctx);
}

Test(database, corrupt_truncated_and_foreign_files_are_ignored_and_never_overwritten)
{
    static const char *const bad[] = {
        "\x7f" "ELF garbage\x01\x02",
        "{\"format\": 1, \"entries\": [{\"family\": \"glu\", \"params\": {\"VEC\": 2}}",
        "{\"format\": 2, \"entries\": [{\"family\": \"glu\", \"params\": {\"VEC\": 2}}]}",
        "{\"entries\": [{\"family\": \"glu\", \"params\": {\"VEC\": 2}}]}",
    };
    for (size_t i = 0; i < COUNT_OF(bad); i++) {
        const char *path = use_database("bad");
        write_text(path, bad[i]);
        mcl_context *ctx = test_context();
        expect_not_from(ctx, "glu", glu_shape, 1, path);
        mcl_tuning_entry e = {"glu", MCL_TUNE_DEVICE, MCL_F32, "any", "VEC=1", 1.0, 1.0, "test"};
        assert_status(mcl_tuning_db_store(NULL, mcl_context_device(ctx), &e), MCL_ERR_PARSE);
        char *after = test_read_file(path);
        cr_expect_str_eq(after, bad[i], "file %zu was changed", i);
        free(after);
        mcl_context_release(ctx);
    }
}

Test(database, an_entry_with_an_illegal_value_is_skipped)
{
    const char *path = use_database("illegal");
    write_text(path, "{\"format\": 1, \"entries\": [{\"family\": \"glu\", \"params\": {\"VEC\": 3}},"
                     "{\"family\": \"glu\", \"params\": {\"NO_SUCH\": 1}}]}");
    mcl_context *ctx = test_context();
    expect_not_from(ctx, "glu", glu_shape, 1, path);
    mcl_context_release(ctx);
}

/* ---- tuning runs on the device under test ---------------------------------------------------------- */

static const size_t gating_shape[1] = {512 * 128};

/* The gating workload's case at M = 512, c = 128 as a target tuning glu. */
static void gating_target(mcl_context *ctx, wl_tune_sets *sets, mcl_tune_target *target)
{
    wl_case c = wl_gating.cases[0].c;
    c.shape[0] = 512, c.shape[1] = 128;
    assert_ok(wl_tune_target(ctx, &wl_gating, "M=512 c=128", &c, "glu", gating_shape, sets, target));
}

static mcl_tune_settings quick(const char *record, size_t candidates)
{
    return (mcl_tune_settings){.strategy = MCL_TUNE_RANDOM, .max_candidates = candidates, .warmup = 1, .reps = 3,
                               .compile_threads = 2, .seed = 11, .record = record};
}

Test(tune, the_winner_is_stored_and_then_used_by_the_op)
{
    const char *path = use_database("winner");
    mcl_context *ctx = test_context();
    wl_tune_sets sets;
    mcl_tune_target target;
    gating_target(ctx, &sets, &target);
    mcl_tune_settings settings = quick(NULL, 6);
    mcl_tune_result result;
    assert_ok(mcl_tune(ctx, &target, &settings, &result));
    wl_tune_sets_free(&sets);
    cr_expect_eq(result.failed, 0, "every candidate of glu is correct");
    cr_expect_gt(result.measured, 0);
    cr_expect(isfinite(result.ms) && isfinite(result.reference_ms));
    mcl_tuning_entry e = {"glu", MCL_TUNE_DEVICE, MCL_F32, result.bucket, result.params, result.ms,
                          result.reference_ms, "test_tune"};
    assert_ok(mcl_tuning_db_store(NULL, mcl_context_device(ctx), &e));
    assert_ok(mcl_context_reload_tuning(ctx));
    mcl_param_choice choice;
    assert_ok(mcl_context_get_params(ctx, "glu", MCL_F32, gating_shape, 1, &choice));
    cr_expect_str_eq(choice.values, result.params);
    cr_expect(strstr(choice.origin, path), "the op's parameters come from %s", choice.origin);
    host_rng rng = host_rng_seeded(test_seed());
    wl_case c = wl_gating.cases[0].c;
    c.shape[0] = 512, c.shape[1] = 128;
    test_check_case(ctx, &wl_gating, c, WL_OFF_ZERO, &rng, NULL); /* the op with the winner, against the reference */
    mcl_context_release(ctx);
}

/* ACSR's calls take a mask built on the tuning context; the compile threads, on contexts of
 * their own over the same OpenCL context, prepare its candidates too. */
Test(tune, acsr_candidates_take_the_mask_of_the_tuning_context)
{
    use_database("acsr");
    mcl_context *ctx = test_context();
    wl_case c = wl_acsr.cpu_cases[0].c; /* a window of reach 32 at N = 512 */
    const size_t shape[5] = {c.shape[0], c.shape[1], c.shape[2], c.shape[3], 63}; /* 63 keys a row */
    wl_tune_sets sets;
    mcl_tune_target target;
    assert_ok(wl_tune_target(ctx, &wl_acsr, wl_acsr.cpu_cases[0].name, &c, "acsr", shape, &sets, &target));
    mcl_tune_settings settings = quick(NULL, 3);
    mcl_tune_result result;
    assert_ok(mcl_tune(ctx, &target, &settings, &result));
    wl_tune_sets_free(&sets);
    cr_expect_eq(result.failed, 0, "every ACSR candidate runs and is correct");
    cr_expect_gt(result.measured, 0);
    mcl_context_release(ctx);
}

/* Runs the gating target, then spoils its output whenever the candidate has VEC=2. */
typedef struct spoiled {
    mcl_tune_target inner;
} spoiled;

static mcl_status run_spoiled(void *user, mcl_context *ctx, size_t set)
{
    spoiled *s = user;
    mcl_status status = s->inner.run(s->inner.user, ctx, set);
    mcl_param_choice choice;
    if (status != MCL_OK || mcl_context_get_params(ctx, "glu", MCL_F32, gating_shape, 1, &choice) != MCL_OK)
        return status;
    if (strncmp(choice.values, "VEC=2,", 6) != 0) return MCL_OK;
    const mcl_tune_output *y = &s->inner.outputs[0];
    float zero = 0.0f;
    return clEnqueueFillBuffer(mcl_context_queue(ctx), y->tensor.mem, &zero, sizeof zero, y->tensor.offset,
                               sizeof zero, 0, NULL, NULL) == CL_SUCCESS
               ? MCL_OK
               : MCL_ERR_OPENCL;
}

static size_t count_lines_with(const char *path, const char *a, const char *b)
{
    char *text = test_read_file(path), *save = NULL;
    size_t n = 0;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        n += strstr(line, a) && strstr(line, b);
    free(text);
    return n;
}

Test(tune, a_candidate_with_a_wrong_result_is_rejected)
{
    use_database("wrong");
    char record[600];
    snprintf(record, sizeof record, "%s.record", getenv("MEGACL_TUNING_DB"));
    unlink(record);
    mcl_context *ctx = test_context();
    wl_tune_sets sets;
    spoiled s;
    gating_target(ctx, &sets, &s.inner);
    cr_assert_str_eq(s.inner.outputs[0].name, "y");
    mcl_tune_target target = s.inner;
    target.run = run_spoiled, target.user = &s;
    mcl_tune_settings settings = quick(record, 64);
    settings.strategy = MCL_TUNE_EXHAUSTIVE;
    mcl_tune_result result;
    assert_ok(mcl_tune(ctx, &target, &settings, &result));
    wl_tune_sets_free(&sets);
    cr_expect_gt(result.failed, 0);
    cr_expect_neq(strncmp(result.params, "VEC=2,", 6), 0, "a wrong candidate won: %s", result.params);
    size_t wrong = count_lines_with(record, "\"params\":\"VEC=2,", "\"status\":\"wrong\"");
    size_t vec2 = count_lines_with(record, "\"params\":\"VEC=2,", "\"record\":\"candidate\"");
    cr_expect_gt(vec2, 0);
    cr_expect_eq(wrong, vec2, "%zu of %zu VEC=2 candidates recorded as wrong", wrong, vec2);
    mcl_context_release(ctx);
}

/* A child tunes with a record and is killed once a few results are in; a second run resumes. */
Test(tune, a_run_killed_midway_resumes_from_its_record)
{
    use_database("resume");
    char record[600];
    snprintf(record, sizeof record, "%s.record", getenv("MEGACL_TUNING_DB"));
    unlink(record);
    mcl_tune_settings settings = quick(record, 12);
    pid_t child = fork(); /* before this process touches OpenCL */
    cr_assert_geq(child, 0);
    if (child == 0) {
        mcl_context *ctx;
        if (mcl_context_create(test_selector(), &ctx) != MCL_OK) _exit(3);
        wl_tune_sets sets;
        mcl_tune_target target;
        wl_case c = wl_gating.cases[0].c;
        c.shape[0] = 512, c.shape[1] = 128;
        if (wl_tune_target(ctx, &wl_gating, "M=512 c=128", &c, "glu", gating_shape, &sets, &target) != MCL_OK) _exit(4);
        mcl_tune_result result;
        mcl_tune(ctx, &target, &settings, &result);
        _exit(0); /* not reached before the kill unless the run is over */
    }
    size_t lines = 0;
    for (int waited = 0; waited < 6000 && lines < 5; waited++) {
        nanosleep(&(struct timespec){0, 20000000}, NULL);
        FILE *f = fopen(record, "r");
        lines = 0;
        for (int ch; f && (ch = fgetc(f)) != EOF;) lines += ch == '\n';
        if (f) fclose(f);
    }
    kill(child, SIGKILL);
    int status;
    waitpid(child, &status, 0);
    cr_assert(WIFSIGNALED(status), "the tuner finished before it could be killed (%zu lines)", lines);
    cr_assert_eq(count_lines_with(record, "\"record\":\"winner\"", ""), 0);

    mcl_context *ctx = test_context();
    wl_tune_sets sets;
    mcl_tune_target target;
    gating_target(ctx, &sets, &target);
    mcl_tune_result result;
    assert_ok(mcl_tune(ctx, &target, &settings, &result));
    wl_tune_sets_free(&sets);
    cr_expect_geq(result.resumed, 3, "the results of the killed run are taken, not measured again (%zu)",
                  result.resumed);
    cr_expect_eq(count_lines_with(record, "\"record\":\"winner\"", ""), 1);
    /* no candidate measured twice: each params string on one candidate line besides the reference's */
    char *text = test_read_file(record), *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *p = strstr(line, "\"params\":\"");
        if (!strstr(line, "\"record\":\"candidate\"") || strstr(line, "\"stage\":\"reference\"") || !p) continue;
        char needle[300];
        snprintf(needle, sizeof needle, "%.*s", (int)(strchr(p + 10, '"') - p + 1), p);
        cr_expect_eq(count_lines_with(record, needle, "\"stage\":\"elementwise\""), 1, "%s measured twice", needle);
    }
    free(text);
    mcl_context_release(ctx);
}

/* LayerNorm over 24 columns: a bucket (cols<=32) the built-in database has no entry for. */
Test(tune, ondemand_tunes_a_bucket_the_first_time_a_call_meets_it)
{
    const char *path = use_database("ondemand");
    setenv("MEGACL_TUNE", "ondemand", 1);
    setenv("MEGACL_TUNE_BUDGET", "20", 1);
    mcl_context *ctx = test_context();
    host_rng rng = host_rng_seeded(test_seed());
    wl_case c = wl_layernorm.cases[0].c;
    c.shape[0] = 300, c.shape[1] = 24;
    /* the first forward call tunes the bucket; a size asked for before it may change with it */
    wl_problem *p = test_problem(ctx, &wl_layernorm, c, WL_OFF_ZERO, &rng);
    assert_ok(wl_forward(p, NULL));
    wl_destroy(p);
    test_check_case(ctx, &wl_layernorm, c, WL_OFF_ZERO, &rng, NULL); /* the tuned parameters are right */
    char *first = test_read_file(path);
    cr_expect(strstr(first, "\"family\":\"layernorm\"") && strstr(first, "ondemand"), "no on-demand entry: %s", first);
    expect_origin(ctx, "layernorm", (const size_t[]){300, 24}, 2, path);
    test_check_case(ctx, &wl_layernorm, c, WL_OFF_ZERO, &rng, NULL);
    char *second = test_read_file(path);
    cr_expect_str_eq(first, second, "a covered bucket was tuned again");
    free(first), free(second);
    mcl_context_release(ctx);
}

Test(tune, an_unknown_tune_mode_is_refused)
{
    setenv("MEGACL_TUNE", "sometimes", 1);
    mcl_context *ctx = NULL;
    assert_status(mcl_context_create(test_selector(), &ctx), MCL_ERR_INVALID_ARGUMENT);
    cr_expect(strstr(mcl_last_error(), "MEGACL_TUNE"), "%s", mcl_last_error());
    cr_expect_null(ctx);
}
