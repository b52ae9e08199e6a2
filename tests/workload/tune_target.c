/* Workload cases as tuning targets (see tune_target.h). */
#include "tune_target.h"

#include <stdio.h>
#include <string.h>

static mcl_status run_set(void *user, mcl_context *ctx, size_t set)
{
    wl_tune_sets *sets = user;
    wl_problem view = *sets->problems[set]; /* the same tensors, on the context given */
    view.ctx = ctx;
    mcl_status status = wl_forward(&view, NULL);
    return status == MCL_OK ? wl_backward(&view, NULL) : status;
}

static double problem_bytes(const wl_problem *p)
{
    double bytes = 0.0;
    for (int i = 0; i < (int)p->w->tensor_count; i++) bytes += (double)p->t[i].count * mcl_dtype_size(p->t[i].dtype);
    return bytes;
}

void wl_tune_sets_free(wl_tune_sets *sets)
{
    for (size_t i = 0; i < sets->count; i++) wl_destroy(sets->problems[i]);
    sets->count = 0;
}

static mcl_status add_set(mcl_context *ctx, const wl_workload *w, const wl_case *c, size_t k, wl_tune_sets *sets)
{
    host_rng rng = host_rng_seeded(wl_case_seed(c) + k);
    wl_problem *p = NULL;
    mcl_status status = wl_create(w, ctx, c, &rng, &p);
    if (status == MCL_OK) status = wl_place(p, WL_OFF_ZERO);
    if (status != MCL_OK) {
        wl_destroy(p);
        return status;
    }
    sets->problems[sets->count++] = p;
    return MCL_OK;
}

mcl_status wl_tune_target(mcl_context *ctx, const wl_workload *w, const char *case_name, const wl_case *c,
                          const char *family, const size_t *shape, wl_tune_sets *sets, mcl_tune_target *target)
{
    memset(sets, 0, sizeof *sets);
    double cache = (double)mcl_context_device(ctx)->global_cache_bytes;
    do {
        mcl_status status = add_set(ctx, w, c, sets->count, sets);
        if (status != MCL_OK) {
            wl_tune_sets_free(sets);
            return status;
        }
    } while (sets->count < WL_MAX_SETS && (double)sets->count * problem_bytes(sets->problems[0]) < 2.0 * cache);
    const wl_problem *p = sets->problems[0];
    for (int i = 0; i < (int)w->tensor_count; i++) {
        if (!wl_has(p, i) || wl_is_input(p, i)) continue;
        sets->outputs[sets->output_count++] =
            (mcl_tune_output){w->tensors[i].name, wl_at(p, i), p->t[i].dtype, p->t[i].count, wl_tolerance(p, i)};
    }
    snprintf(sets->label, sizeof sets->label, "%s %s %s", w->name, case_name, mcl_dtype_name(c->dtype));
    *target = (mcl_tune_target){sets->label, family, c->dtype, shape, run_set, sets->count,
                                sets->outputs, sets->output_count, sets};
    return MCL_OK;
}
