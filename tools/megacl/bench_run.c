/* One implementation of one bench case: verified against the double-precision reference (or the
 * workload's sample where the host cannot hold the full one), then timed with event profiling:
 * the spread of forward and forward+backward, and with --kernels each kernel's median. */
#include "bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Each kernel's time in each timed run: the runs of a forward+backward launch the same kernels,
 * so a kernel's median over the runs is its share of the median run. */
typedef struct kernel_log {
    const char *names[BENCH_MAX_KERNELS];
    size_t count;
    double *times; /* [run][kernel], BENCH_MAX_KERNELS per run */
} kernel_log;

/* The most commands one forward+backward enqueues that a run's breakdown reads back. */
#define MAX_COMMANDS 512

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

/* Adds a run's commands to the log, each kernel's launches summed; kernels past
 * BENCH_MAX_KERNELS distinct names are left out of the breakdown (not of the run's time). */
static void log_kernels(kernel_log *log, int run, const mcl_profile_kernel *commands, size_t count)
{
    for (size_t i = 0; i < count && i < MAX_COMMANDS; i++) {
        size_t k = 0;
        while (k < log->count && strcmp(log->names[k], commands[i].name) != 0) k++;
        if (k == BENCH_MAX_KERNELS) continue;
        if (k == log->count) log->names[log->count++] = commands[i].name;
        log->times[(size_t)run * BENCH_MAX_KERNELS + k] += commands[i].milliseconds;
    }
}

static mcl_status time_once(wl_problem *p, const wl_baseline *b, int with_backward, double *ms, kernel_log *log,
                            int run)
{
    WL_TRY(wl_op(mcl_profile_begin(p->ctx)));
    mcl_status status = run_once(p, b, with_backward);
    mcl_profile_kernel commands[MAX_COMMANDS];
    size_t count = 0;
    mcl_status end = wl_op(mcl_profile_end_kernels(p->ctx, ms, commands, MAX_COMMANDS, &count));
    if (status == MCL_OK && end == MCL_OK && log) log_kernels(log, run, commands, count);
    return status != MCL_OK ? status : end;
}

static bench_spread spread_of(double *times, int reps)
{
    qsort(times, (size_t)reps, sizeof *times, compare_doubles);
    return (bench_spread){times[0], times[reps / 2], times[reps - 1], reps};
}

static void kernel_medians(const kernel_log *log, int reps, bench_result *r)
{
    double *column = malloc((size_t)reps * sizeof *column);
    if (!column) return; /* a breakdown left out for want of memory does not fail the case */
    for (size_t k = 0; k < log->count; k++) {
        for (int i = 0; i < reps; i++) column[i] = log->times[(size_t)i * BENCH_MAX_KERNELS + k];
        qsort(column, (size_t)reps, sizeof *column, compare_doubles);
        r->kernels[k] = (bench_kernel_time){log->names[k], column[reps / 2]};
    }
    r->kernel_count = log->count;
    free(column);
}

/* How many timed runs: a slow case (the unfused baselines at AF3 sizes take seconds) gets as
 * many as fit in about two seconds, never fewer than three. */
static int reps_for(double first_ms, int wanted)
{
    if (first_ms <= 0.0 || wanted <= 2000.0 / first_ms) return wanted;
    return 2000.0 / first_ms < 3 ? 3 : (int)(2000.0 / first_ms);
}

/* The spread of forward (and backward) device times; one timed warm-up, then the settings'
 * untimed ones (none after a warm-up of over 100 ms). */
static mcl_status time_spread(wl_problem *p, const wl_baseline *b, int with_backward, const bench_settings *s,
                              bench_spread *spread, kernel_log *log)
{
    double first = 0.0;
    WL_TRY(time_once(p, b, with_backward, &first, NULL, 0));
    int warmup = first > 100.0 ? 0 : s->warmup - 1, reps = reps_for(first, s->reps);
    double *times = calloc((size_t)reps, sizeof *times);
    if (log && !(log->times = calloc((size_t)reps * BENCH_MAX_KERNELS, sizeof *log->times))) log = NULL;
    if (!times) return wl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for %d timings", reps);
    mcl_status status = MCL_OK;
    for (int i = 0; i < warmup && status == MCL_OK; i++) status = run_once(p, b, with_backward);
    if (status == MCL_OK) status = wl_op(mcl_finish(p->ctx));
    for (int i = 0; i < reps && status == MCL_OK; i++) status = time_once(p, b, with_backward, &times[i], log, i);
    if (status == MCL_OK) *spread = spread_of(times, reps);
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
    r->sample_checked = !wl_full_reference(p) && p->w->sample;
    WL_TRY(wl_verify(p, b, r->err, r->tol, &r->ok));
    r->fwd_err = r->bwd_err = 0.0;
    for (int i = 0; i < (int)p->w->tensor_count; i++) {
        double *side = p->w->tensors[i].role == WL_FORWARD ? &r->fwd_err : &r->bwd_err;
        if (r->err[i] >= 0.0) *side = fmax(*side, r->err[i]);
    }
    r->approx_err = !b && p->w->approximation_error ? p->w->approximation_error(p) : -1.0;
    return MCL_OK;
}

static mcl_status measure(mcl_context *ctx, const wl_baseline *b, const bench_settings *s, int sample_only,
                          bench_result *r)
{
    const wl_workload *w = r->w;
    WL_TRY(wl_op(mcl_context_set_params(ctx, w->family, b ? b->params : s->params)));
    host_rng rng = host_rng_seeded(wl_case_seed(&r->c));
    wl_problem *p = NULL;
    kernel_log log = {0};
    mcl_status status = wl_create(w, ctx, &r->c, &rng, &p);
    if (status == MCL_OK) {
        p->sample_only = sample_only;
        status = wl_place(p, WL_OFF_ZERO);
    }
    if (status == MCL_OK) status = wl_setup_baseline(p, b);
    if (status == MCL_OK) status = verify(p, b, r);
    if (status == MCL_OK) status = measure_peak(p, b, &r->peak_bytes);
    if (status == MCL_OK) status = time_spread(p, b, 0, s, &r->fwd, NULL);
    if (status == MCL_OK) status = time_spread(p, b, 1, s, &r->fwdbwd, s->kernels ? &log : NULL);
    if (status == MCL_OK && log.times) kernel_medians(&log, r->fwdbwd.reps, r);
    free(log.times);
    r->counts = w->counts(&r->c);
    wl_destroy(p);
    return status;
}

/* A baseline too big for the device, or without the dtype, is reported, not a failure. */
static int skippable(mcl_status status, const wl_baseline *b)
{
    return b && (status == MCL_ERR_DEVICE_LIMIT || status == MCL_ERR_OUT_OF_MEMORY ||
                 status == MCL_ERR_UNSUPPORTED_DTYPE || status == MCL_ERR_UNSUPPORTED);
}

void bench_run_case(mcl_context *ctx, const wl_baseline *b, const bench_settings *s, bench_result *r)
{
    int sample_only = 0;
    if (!bench_case_fits(r->w, &r->c, mcl_context_device(ctx), &sample_only, r->reason, sizeof r->reason)) {
        r->outcome = BENCH_SKIPPED;
        return;
    }
    mcl_status status = measure(ctx, b, s, sample_only, r);
    mcl_context_set_params(ctx, r->w->family, NULL);
    if (status == MCL_OK) {
        r->outcome = BENCH_TIMED;
        return;
    }
    r->outcome = skippable(status, b) ? BENCH_SKIPPED : BENCH_FAILED;
    snprintf(r->reason, sizeof r->reason, "%s", wl_last_error());
}
