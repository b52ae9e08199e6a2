/* mcl_tune: the family's defaults measured as the reference configuration, then its declared
 * stages searched in turn, every candidate compiled ahead on host threads, verified against the
 * reference's outputs and timed (see megacl.h). */
#include "compile.h"
#include "measure.h"
#include "record.h"
#include "space.h"
#include "strategy.h"

#include "runtime/error.h"
#include "runtime/params.h"
#include "runtime/program.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MAX_CANDIDATES 128
#define MAX_BATCH 16
#define PRUNE_FACTOR 1.5   /* a candidate this much slower than the best after one run is not timed further */
#define TIMEOUT_FACTOR 20  /* ... and one this much slower than the reference, */
#define TIMEOUT_MS 100.0   /* and slower than this, counts as timed out */
#define FINALISTS 3        /* re-timed at the end of a stage, with twice the runs */
/* a winner must beat the defaults by the spread of repeated timings, or the defaults stay */
#define WIN_MARGIN 0.98

const char *mcl_tune_strategy_name(mcl_tune_strategy strategy)
{
    switch (strategy) {
    case MCL_TUNE_AUTO: return "auto";
    case MCL_TUNE_EXHAUSTIVE: return "exhaustive";
    case MCL_TUNE_RANDOM: return "random";
    case MCL_TUNE_ANNEALING: return "annealing";
    }
    return "?";
}

/* Everything one mcl_tune call works with. */
typedef struct tuning {
    mcl_context *ctx;
    const mcl_tune_target *target;
    const mcl_tune_settings *settings;
    const mcl_family *family;
    char bucket[MCL_BUCKET_CAP], job[256];
    int warmup, reps;
    double started, budget;
    tune_record *record;
    tune_compiler compiler;
    tune_outputs reference;
    mcl_param_block best;
    double best_ms, reference_ms;
    mcl_tune_result *result;
} tuning;

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double seconds_left(const tuning *t)
{
    return t->budget > 0.0 ? t->budget - (now_seconds() - t->started) : -1.0;
}

static int out_of_time(const tuning *t) { return t->budget > 0.0 && seconds_left(t) <= 0.0; }

static const char *failure_kind(mcl_status status)
{
    switch (status) {
    case MCL_ERR_BUILD: return "compile";
    case MCL_ERR_DEVICE_LIMIT:
    case MCL_ERR_OUT_OF_MEMORY: return "resource";
    case MCL_ERR_OPENCL: return "launch";
    default: return "error";
    }
}

static void format_values(const tuning *t, const void *values, char out[1024])
{
    if (mcl_params_format(t->family, values, out, 1024) != MCL_OK) out[0] = '\0';
}

static void report_progress(const tuning *t, const char *stage, size_t done, size_t total)
{
    if (!t->settings->progress) return;
    mcl_tune_progress p = {t->target->label, stage, done, total, t->best_ms, t->reference_ms, seconds_left(t)};
    t->settings->progress(t->settings->progress_user, &p);
}

/* Runs the candidate (its programs built already) on poisoned outputs, compares them with the
 * reference configuration's, and times it. *ms is INFINITY unless it passes. */
static mcl_status measure(tuning *t, const mcl_param_block *values, const char *stage, const char *params,
                          double *ms)
{
    tune_outputs got = {0};
    char reason[300] = "";
    const char *kind = "ok";
    double err;
    *ms = INFINITY;
    mcl_status status = mcl_params_override(t->ctx, t->family, (int)t->target->dtype, t->bucket, values);
    if (status == MCL_OK) status = tune_run_outputs(t->ctx, t->target, &got);
    int bad = status == MCL_OK ? tune_outputs_differ(t->target, &got, &t->reference, &err) : -1;
    int timed = 0;
    if (status != MCL_OK) {
        kind = failure_kind(status);
        snprintf(reason, sizeof reason, "%s", mcl_last_error());
    } else if (bad >= 0) {
        kind = "wrong";
        snprintf(reason, sizeof reason, "%s differs from the reference configuration by %.3g (tolerance %.3g)",
                 t->target->outputs[bad].name, err, t->target->outputs[bad].tolerance);
    } else if ((status = tune_time(t->ctx, t->target, t->warmup, t->reps, PRUNE_FACTOR * t->best_ms, ms, &timed)) !=
               MCL_OK) {
        kind = failure_kind(status);
        snprintf(reason, sizeof reason, "%s", mcl_last_error());
        *ms = INFINITY;
    } else if (*ms > TIMEOUT_FACTOR * t->reference_ms && *ms > TIMEOUT_MS) {
        kind = "timeout";
        snprintf(reason, sizeof reason, "one run took %.3g ms, %dx the reference's", *ms, TIMEOUT_FACTOR);
        *ms = INFINITY;
    } else if (timed == 1) {
        snprintf(reason, sizeof reason, "timed once: slower than %.1fx the best", PRUNE_FACTOR);
    }
    tune_outputs_free(&got);
    if (strcmp(kind, "ok") != 0) t->result->failed++;
    else t->result->measured++;
    mcl_status recorded = tune_record_candidate(t->record, t->job, stage, params, kind, *ms, reason);
    /* a launch failure can leave the device unusable: the reference must still run */
    if (strcmp(kind, "launch") == 0) {
        MCL_TRY(mcl_params_override(t->ctx, t->family, (int)t->target->dtype, t->bucket, &t->best));
        tune_outputs check = {0};
        status = tune_run_outputs(t->ctx, t->target, &check);
        tune_outputs_free(&check);
        if (status != MCL_OK) return mcl_fail_within(status, "tuner: the device failed after candidate %s", params);
    }
    return recorded;
}

/* Measures one batch: candidates known from the record are taken from it, the others compiled
 * together and then measured one by one. */
static mcl_status measure_batch(tuning *t, const char *stage, const tune_space *space, const size_t *batch, size_t n,
                                double *ms)
{
    const mcl_param_block *fresh[MAX_BATCH] = {0};
    size_t fresh_index[MAX_BATCH], count = 0;
    char params[MAX_BATCH][1024];
    for (size_t i = 0; i < n; i++) {
        char status[16];
        format_values(t, &space->items[batch[i]].values, params[i]);
        int found = tune_record_find(t->record, t->job, params[i], status, &ms[i]);
        if (found) {
            if (strcmp(status, "ok") != 0) ms[i] = INFINITY;
            t->result->resumed += found == 2;
            continue;
        }
        fresh[count] = &space->items[batch[i]].values;
        fresh_index[count++] = i;
    }
    mcl_status prepared[MAX_BATCH];
    char why[MAX_BATCH][256];
    tune_compiler_prepare(&t->compiler, fresh, count, prepared, why);
    for (size_t k = 0; k < count; k++) {
        size_t i = fresh_index[k];
        if (prepared[k] != MCL_OK) {
            ms[i] = INFINITY;
            t->result->failed++;
            MCL_TRY(tune_record_candidate(t->record, t->job, stage, params[i], failure_kind(prepared[k]), NAN, why[k]));
            continue;
        }
        MCL_TRY(measure(t, fresh[k], stage, params[i], &ms[i]));
    }
    return MCL_OK;
}

/* Keeps the fastest few of a stage for a second, longer timing. */
static void keep_finalist(size_t *finalists, double *finalist_ms, size_t index, double ms)
{
    for (size_t f = 0; f < FINALISTS; f++) {
        if (ms < finalist_ms[f]) {
            for (size_t g = FINALISTS - 1; g > f; g--) finalists[g] = finalists[g - 1], finalist_ms[g] = finalist_ms[g - 1];
            finalists[f] = index, finalist_ms[f] = ms;
            return;
        }
    }
}

/* Times the stage's finalists and its starting point again with twice the runs, one after
 * another, and keeps the fastest as the best: a single timing's luck does not pick the winner. */
static mcl_status settle_stage(tuning *t, const tune_space *space, const size_t *finalists, const double *finalist_ms)
{
    double best_ms;
    int timed;
    MCL_TRY(mcl_params_override(t->ctx, t->family, (int)t->target->dtype, t->bucket, &t->best));
    MCL_TRY(tune_time(t->ctx, t->target, 1, 2 * t->reps, 0.0, &best_ms, &timed));
    for (size_t f = 0; f < FINALISTS && isfinite(finalist_ms[f]); f++) {
        const mcl_param_block *values = &space->items[finalists[f]].values;
        double ms;
        MCL_TRY(mcl_params_override(t->ctx, t->family, (int)t->target->dtype, t->bucket, values));
        MCL_TRY(tune_time(t->ctx, t->target, 1, 2 * t->reps, 0.0, &ms, &timed));
        if (ms < best_ms) t->best = *values, best_ms = ms;
    }
    t->best_ms = best_ms;
    return MCL_OK;
}

static size_t find_start(const tuning *t, const tune_space *space)
{
    for (size_t i = 0; i < space->count; i++)
        if (memcmp(&space->items[i].values, &t->best, t->family->values_size) == 0) return i;
    return TUNE_NONE;
}

static mcl_status search_stage(tuning *t, const mcl_tune_stage *stage, double stage_budget)
{
    tune_space space;
    MCL_TRY(tune_space_enumerate(t->family, stage, &t->best, &t->ctx->device.info, &space));
    size_t max = t->settings->max_candidates ? t->settings->max_candidates : DEFAULT_MAX_CANDIDATES;
    tune_strategy strategy;
    mcl_status status =
        tune_strategy_init(&strategy, t->settings->strategy, &space, stage, max, t->settings->seed, find_start(t, &space));
    if (status != MCL_OK) {
        tune_space_free(&space);
        return status;
    }
    mcl_log(MCL_LOG_INFO, "tuning %s stage %s: %zu legal candidates of %zu proposed, %s", t->job, stage->name,
            space.count, space.proposed, mcl_tune_strategy_name(strategy.kind));
    size_t finalists[FINALISTS], batch[MAX_BATCH], done = 0, n;
    double finalist_ms[FINALISTS] = {INFINITY, INFINITY, INFINITY}, ms[MAX_BATCH];
    double stage_end = now_seconds() + stage_budget;
    size_t width = t->compiler.count < MAX_BATCH ? t->compiler.count : MAX_BATCH;
    while (status == MCL_OK && (stage_budget <= 0.0 || now_seconds() < stage_end) &&
           (n = tune_strategy_propose(&strategy, batch, width)) > 0) {
        status = measure_batch(t, stage->name, &space, batch, n, ms);
        for (size_t i = 0; i < n && status == MCL_OK; i++) {
            tune_strategy_report(&strategy, batch[i], ms[i]);
            keep_finalist(finalists, finalist_ms, batch[i], ms[i]);
            if (ms[i] < t->best_ms) t->best_ms = ms[i]; /* pruning follows the best time seen */
        }
        done += n;
        report_progress(t, stage->name, done, strategy.budget);
    }
    if (status == MCL_OK) status = settle_stage(t, &space, finalists, finalist_ms);
    tune_strategy_free(&strategy);
    tune_space_free(&space);
    return status;
}

/* The defaults: run, read back as the reference outputs, timed. */
static mcl_status measure_reference(tuning *t, const mcl_param_block *defaults)
{
    char params[1024];
    int timed;
    format_values(t, defaults, params);
    MCL_TRY(mcl_params_override(t->ctx, t->family, (int)t->target->dtype, t->bucket, defaults));
    MCL_TRY(mcl_fail_within(tune_run_outputs(t->ctx, t->target, &t->reference), "tuner: the reference configuration"));
    MCL_TRY(tune_time(t->ctx, t->target, t->warmup, 2 * t->reps, 0.0, &t->reference_ms, &timed));
    t->best = *defaults;
    t->best_ms = t->reference_ms;
    return tune_record_candidate(t->record, t->job, "reference", params, "ok", t->reference_ms, "");
}

static mcl_status check_target(const mcl_tune_target *target, const mcl_family **family)
{
    if (!target->family || !target->shape || !target->run || (!target->outputs && target->output_count))
        return mcl_fail(MCL_ERR_NULL_POINTER, "mcl_tune: the target needs a family, a shape, run and its outputs");
    if (!(*family = mcl_family_find(target->family)))
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "mcl_tune: no kernel family '%s'", target->family);
    if (!(*family)->stage_count)
        return mcl_fail(MCL_ERR_UNSUPPORTED, "mcl_tune: family %s declares no tuning space", target->family);
    if (!mcl_dtype_size(target->dtype) || target->input_sets == 0)
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "mcl_tune: dtype %d or %zu input sets", (int)target->dtype,
                        target->input_sets);
    for (size_t i = 0; i < target->output_count; i++)
        if (!target->outputs[i].tensor.mem || !mcl_dtype_size(target->outputs[i].dtype))
            return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "mcl_tune: output %zu has no buffer or dtype", i);
    return MCL_OK;
}

static unsigned compile_threads(const mcl_tune_settings *s)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    unsigned n = s->compile_threads ? s->compile_threads : cores > 0 ? (unsigned)cores : 1;
    return n > MAX_BATCH ? MAX_BATCH : n;
}

static int stage_applies(const tuning *t, const mcl_tune_stage *stage)
{
    return !stage->applies || stage->applies(t->target->dtype, t->ctx->allow_tf32);
}

static mcl_status tune_all_stages(tuning *t)
{
    mcl_param_block defaults;
    MCL_TRY(mcl_params_defaults(t->family, &t->ctx->device.info, &defaults, NULL));
    format_values(t, &defaults, t->result->reference_params);
    MCL_TRY(measure_reference(t, &defaults));
    MCL_TRY(tune_compiler_init(&t->compiler, t->ctx, t->target, t->family, t->bucket, compile_threads(t->settings)));
    mcl_status status = MCL_OK;
    size_t stages_left = 0;
    for (size_t s = 0; s < t->family->stage_count; s++) stages_left += stage_applies(t, &t->family->stages[s]);
    for (size_t s = 0; s < t->family->stage_count && status == MCL_OK && !out_of_time(t); s++) {
        if (!stage_applies(t, &t->family->stages[s])) continue;
        double left = seconds_left(t), share = left > 0.0 ? left / (double)stages_left-- : 0.0;
        status = search_stage(t, &t->family->stages[s], share);
    }
    tune_compiler_free(&t->compiler);
    MCL_TRY(status);
    if (!(t->best_ms < WIN_MARGIN * t->reference_ms)) t->best = defaults, t->best_ms = t->reference_ms;
    format_values(t, &t->best, t->result->params);
    t->result->ms = t->best_ms;
    t->result->reference_ms = t->reference_ms;
    return tune_record_winner_add(t->record, t->job, t->result->params, t->best_ms, t->result->reference_params,
                                  t->reference_ms);
}

mcl_status mcl_tune(mcl_context *ctx, const mcl_tune_target *target, const mcl_tune_settings *settings,
                    mcl_tune_result *result)
{
    if (!ctx || !target || !settings || !result) return mcl_fail(MCL_ERR_NULL_POINTER, "mcl_tune: NULL argument");
    tuning t = {.ctx = ctx, .target = target, .settings = settings, .result = result, .started = now_seconds(),
                .budget = settings->budget_seconds};
    MCL_TRY(check_target(target, &t.family));
    if (!ctx->profiling) return mcl_fail(MCL_ERR_UNSUPPORTED, "mcl_tune: the context's queue does not profile");
    memset(result, 0, sizeof *result);
    t.warmup = settings->warmup > 0 ? settings->warmup : 1;
    t.reps = settings->reps > 0 ? settings->reps : 5;
    mcl_params_bucket(t.family, target->shape, t.bucket);
    snprintf(result->bucket, sizeof result->bucket, "%s", t.bucket);
    snprintf(t.job, sizeof t.job, "%s|%s|%s|%s", t.family->name, mcl_dtype_name(target->dtype), t.bucket,
             target->label ? target->label : "");
    MCL_TRY(tune_record_open(settings->record, &ctx->device.info, &t.record));
    if (tune_record_winner(t.record, t.job, result->params, &result->ms, &result->reference_ms,
                           result->reference_params)) {
        result->finished_before = 1;
        tune_record_close(t.record);
        return MCL_OK;
    }
    int was_tuning = ctx->tuning;
    ctx->tuning = 1;
    mcl_status status = tune_all_stages(&t);
    ctx->tuning = was_tuning;
    mcl_params_override(ctx, t.family, (int)target->dtype, t.bucket, NULL);
    tune_outputs_free(&t.reference);
    tune_record_close(t.record);
    mcl_program_cache_clear(ctx); /* the losers' programs */
    return status;
}
