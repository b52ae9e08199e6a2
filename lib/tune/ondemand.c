/* On-demand tuning (MEGACL_TUNE=ondemand; see ops/common/check.h): the call is first prepared
 * (programs built, nothing enqueued) with the context recording its parameter lookups; each
 * lookup that falls through to the family's defaults is then tuned with the call itself as the
 * target, within MEGACL_TUNE_BUDGET seconds (default 60) per bucket, and the winner written to
 * the user database at the device's level, where the next call (and the next process) finds it.
 * This is cuEquivariance's ONDEMAND mode for a trainer whose shapes no table foresaw. */
#include "ops/common/check.h"
#include "runtime/error.h"
#include "runtime/params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_BUDGET_SECONDS 60.0
#define CANDIDATES_PER_STAGE 48

typedef struct call_again {
    mcl_call_again again;
    const void *desc, *tensors;
} call_again;

static mcl_status run_call(void *user, mcl_context *ctx, size_t set)
{
    const call_again *c = user;
    (void)set;
    return c->again(ctx, c->desc, c->tensors);
}

static double budget_seconds(void)
{
    const char *text = getenv("MEGACL_TUNE_BUDGET");
    char *end;
    double seconds = text ? strtod(text, &end) : 0.0;
    if (text && (end == text || *end || !(seconds > 0.0))) {
        mcl_log(MCL_LOG_WARN, "MEGACL_TUNE_BUDGET='%s' is not a positive number of seconds; using %g", text,
                DEFAULT_BUDGET_SECONDS);
        seconds = 0.0;
    }
    return seconds > 0.0 ? seconds : DEFAULT_BUDGET_SECONDS;
}

/* Whether a lookup of (family, dtype, shape) takes the family's defaults: nothing covers it. */
static int untuned(mcl_context *ctx, const mcl_lookup_record *r)
{
    mcl_param_block values;
    char origin[MCL_ORIGIN_CAP];
    return mcl_params_lookup(ctx, r->family, r->dtype, r->shape, &values, origin) == MCL_OK &&
           strncmp(origin, "defaults", 8) == 0;
}

static mcl_status tune_bucket(mcl_context *ctx, const char *op, const mcl_lookup_record *r, call_again *call,
                              const mcl_tune_output *outputs, size_t output_count)
{
    char label[160], command[200];
    snprintf(label, sizeof label, "%s on demand", op);
    snprintf(command, sizeof command, "MEGACL_TUNE=ondemand, at a call of %s", op);
    mcl_tune_target target = {label, r->family->name, r->dtype, r->shape, run_call, 1, outputs, output_count, call};
    mcl_tune_settings settings = {.budget_seconds = budget_seconds(), .max_candidates = CANDIDATES_PER_STAGE};
    mcl_tune_result result;
    MCL_TRY(mcl_tune(ctx, &target, &settings, &result));
    mcl_tuning_entry entry = {r->family->name, MCL_TUNE_DEVICE, r->dtype, result.bucket, result.params,
                              result.ms, result.reference_ms, command};
    MCL_TRY(mcl_tuning_db_store(NULL, &ctx->device.info, &entry));
    mcl_log(MCL_LOG_INFO, "on-demand tuning of %s %s %s at %s: %s (%.4g ms against %.4g)", r->family->name,
            mcl_dtype_name(r->dtype), result.bucket, op, result.params, result.ms, result.reference_ms);
    mcl_params_reload(ctx);
    return MCL_OK;
}

/* The call's lookups, found by preparing it once with the context recording them. */
static mcl_status find_lookups(mcl_context *ctx, call_again *call, mcl_lookup_record *out, size_t cap, size_t *count)
{
    int was_tracing = ctx->trace_lookups;
    ctx->trace_lookups = 1, ctx->lookup_count = 0, ctx->prepare_only = 1, ctx->tuning = 1;
    mcl_status status = run_call(call, ctx, 0);
    ctx->trace_lookups = was_tracing, ctx->prepare_only = 0, ctx->tuning = 0;
    *count = ctx->lookup_count < cap ? ctx->lookup_count : cap;
    memcpy(out, ctx->lookups, *count * sizeof *out);
    ctx->lookup_count = 0;
    return status;
}

mcl_status mcl_tune_on_demand(mcl_context *ctx, const char *op, mcl_call_again again, const void *desc,
                              const void *tensors)
{
    if (ctx->tune_mode != MCL_TUNE_MODE_ONDEMAND || ctx->tuning || ctx->prepare_only) return MCL_OK;
    if (ctx->call.in_place) {
        mcl_log(MCL_LOG_INFO, "on-demand tuning skips %s: an output is in place of an input", op);
        return MCL_OK;
    }
    mcl_tune_output outputs[MCL_COUNT(ctx->call.items)];
    size_t output_count = ctx->call.count;
    for (size_t i = 0; i < output_count; i++) {
        const mcl_call_output *o = &ctx->call.items[i];
        /* within the storage dtype's rounding of the defaults' result (design.md's bounds) */
        double tolerance = o->dtype == MCL_F32 ? 2e-5 : o->dtype == MCL_BF16 ? 2e-2 : 3e-3;
        outputs[i] = (mcl_tune_output){o->name, o->tensor, o->dtype, o->count, tolerance};
    }
    call_again call = {again, desc, tensors};
    mcl_lookup_record lookups[16];
    size_t count = 0;
    mcl_status status = find_lookups(ctx, &call, lookups, MCL_COUNT(lookups), &count);
    for (size_t i = 0; i < count && status == MCL_OK; i++)
        if (lookups[i].family->stage_count && untuned(ctx, &lookups[i]))
            status = tune_bucket(ctx, op, &lookups[i], &call, outputs, output_count);
    if (status != MCL_OK) mcl_log(MCL_LOG_WARN, "on-demand tuning at %s failed, the call runs as it is: %s", op, mcl_last_error());
    return MCL_OK;
}
