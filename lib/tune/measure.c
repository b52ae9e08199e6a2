/* Target runs, comparisons and timing (see measure.h). */
#include "measure.h"

#include "runtime/dtype.h"
#include "runtime/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static mcl_status poison(mcl_context *ctx, const mcl_tune_output *o)
{
    unsigned char nan_bytes[4];
    size_t size = mcl_dtype_size(o->dtype);
    mcl_dtype_nan(o->dtype, nan_bytes);
    MCL_CL_TRY(clEnqueueFillBuffer(ctx->queue, o->tensor.mem, nan_bytes, size, o->tensor.offset, o->count * size, 0,
                                   NULL, NULL),
               "tuner: poisoning an output");
    return MCL_OK;
}

static mcl_status read_back(mcl_context *ctx, const mcl_tune_output *o, float *values)
{
    size_t size = mcl_dtype_size(o->dtype);
    void *stored = malloc(o->count * size);
    if (!stored) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "tuner: reading back %s", o->name);
    cl_int err = clEnqueueReadBuffer(ctx->queue, o->tensor.mem, CL_TRUE, o->tensor.offset, o->count * size, stored,
                                     0, NULL, NULL);
    if (err == CL_SUCCESS) mcl_dtype_to_float(o->dtype, stored, values, o->count);
    free(stored);
    return err == CL_SUCCESS ? MCL_OK : mcl_fail_cl(err, "tuner: reading back an output");
}

mcl_status tune_run_outputs(mcl_context *ctx, const mcl_tune_target *target, tune_outputs *out)
{
    if (!out->values) {
        out->values = calloc(target->output_count, sizeof *out->values);
        if (!out->values) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "tuner: output arrays");
        out->count = target->output_count;
        for (size_t i = 0; i < out->count; i++)
            if (!(out->values[i] = malloc((target->outputs[i].count ? target->outputs[i].count : 1) * sizeof(float))))
                return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "tuner: %zu values of %s", target->outputs[i].count,
                                target->outputs[i].name);
    }
    for (size_t i = 0; i < target->output_count; i++) MCL_TRY(poison(ctx, &target->outputs[i]));
    MCL_TRY(target->run(target->user, ctx, 0));
    for (size_t i = 0; i < target->output_count; i++) MCL_TRY(read_back(ctx, &target->outputs[i], out->values[i]));
    return MCL_OK;
}

void tune_outputs_free(tune_outputs *out)
{
    for (size_t i = 0; out->values && i < out->count; i++) free(out->values[i]);
    free(out->values);
    out->values = NULL;
    out->count = 0;
}

static double relative_difference(const float *x, const float *ref, size_t n)
{
    double diff = 0.0, norm = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (isnan(x[i]) != isnan(ref[i])) return INFINITY;
        if (isinf(ref[i]) || isnan(ref[i])) { /* -inf log-sum-exps of masked rows must match exactly */
            if (x[i] != ref[i] && !(isnan(x[i]) && isnan(ref[i]))) return INFINITY;
            continue;
        }
        double d = (double)x[i] - (double)ref[i];
        diff += d * d;
        norm += (double)ref[i] * ref[i];
    }
    if (isnan(diff) || isinf(diff)) return INFINITY;
    return norm > 0.0 ? sqrt(diff / norm) : sqrt(diff);
}

int tune_outputs_differ(const mcl_tune_target *target, const tune_outputs *got, const tune_outputs *reference,
                        double *err)
{
    for (size_t i = 0; i < target->output_count; i++) {
        *err = relative_difference(got->values[i], reference->values[i], target->outputs[i].count);
        if (!(*err <= target->outputs[i].tolerance)) return (int)i;
    }
    return -1;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static mcl_status time_once(mcl_context *ctx, const mcl_tune_target *target, size_t set, double *ms)
{
    MCL_TRY(mcl_profile_begin(ctx));
    mcl_status status = target->run(target->user, ctx, set % target->input_sets);
    mcl_status end = mcl_profile_end(ctx, ms);
    return status != MCL_OK ? status : end;
}

mcl_status tune_time(mcl_context *ctx, const mcl_tune_target *target, int warmup, int reps, double prune_ms,
                     double *median, int *timed)
{
    size_t set = 0;
    double first;
    MCL_TRY(time_once(ctx, target, set++, &first));
    if (prune_ms > 0.0 && first > prune_ms) {
        *median = first, *timed = 1;
        return MCL_OK;
    }
    for (int i = 1; i < warmup; i++) MCL_TRY(time_once(ctx, target, set++, &first));
    double times[64];
    if (reps > 64) reps = 64;
    for (int i = 0; i < reps; i++) MCL_TRY(time_once(ctx, target, set++, &times[i]));
    qsort(times, (size_t)reps, sizeof times[0], compare_doubles);
    *median = times[reps / 2];
    *timed = reps;
    return MCL_OK;
}
