/* Parallel candidate compilation (see compile.h). */
#include "compile.h"

#include "runtime/error.h"
#include "runtime/params.h"
#include "runtime/program.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct prepare_job {
    tune_compiler *compiler;
    mcl_context *worker;
    const mcl_param_block *const *values;
    size_t first, step, count;
    mcl_status *status;
    char (*why)[256];
} prepare_job;

static void *prepare_some(void *arg)
{
    prepare_job *job = arg;
    tune_compiler *c = job->compiler;
    for (size_t i = job->first; i < job->count; i += job->step) {
        mcl_status s = mcl_params_override(job->worker, c->family, (int)c->target->dtype, c->bucket, job->values[i]);
        if (s == MCL_OK) s = c->target->run(c->target->user, job->worker, 0);
        job->status[i] = s;
        snprintf(job->why[i], 256, "%s", s == MCL_OK ? "" : mcl_last_error());
    }
    return NULL;
}

mcl_status tune_compiler_init(tune_compiler *c, mcl_context *ctx, const mcl_tune_target *target,
                              const mcl_family *family, const char *bucket, unsigned threads)
{
    *c = (tune_compiler){.ctx = ctx, .target = target, .family = family, .bucket = bucket};
    c->workers = calloc(threads, sizeof *c->workers);
    if (!c->workers) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "tuner: %u compile contexts", threads);
    for (; c->count < threads; c->count++) {
        mcl_status s = mcl_context_create_from_queue(ctx->queue, &c->workers[c->count]);
        if (s != MCL_OK) {
            tune_compiler_free(c);
            return mcl_fail_within(s, "tuner: a compile context");
        }
        c->workers[c->count]->prepare_only = 1;
        c->workers[c->count]->tuning = 1;
        c->workers[c->count]->allow_tf32 = ctx->allow_tf32; /* the programs the run will use */
    }
    return MCL_OK;
}

void tune_compiler_prepare(tune_compiler *c, const mcl_param_block *const *values, size_t count,
                           mcl_status *status, char (*why)[256])
{
    unsigned threads = c->count < count ? c->count : (unsigned)count;
    prepare_job jobs[64];
    pthread_t ids[64];
    int started[64] = {0};
    if (threads > 64) threads = 64;
    for (unsigned t = 0; t < threads; t++) {
        jobs[t] = (prepare_job){c, c->workers[t], values, t, threads, count, status, why};
        started[t] = threads > 1 && pthread_create(&ids[t], NULL, prepare_some, &jobs[t]) == 0;
        if (!started[t]) prepare_some(&jobs[t]); /* one thread, or none could start: here */
    }
    for (unsigned t = 0; t < threads; t++) {
        if (started[t]) pthread_join(ids[t], NULL);
        mcl_program_cache_adopt(c->ctx, c->workers[t]);
    }
}

void tune_compiler_free(tune_compiler *c)
{
    for (unsigned i = 0; i < c->count; i++) mcl_context_release(c->workers[i]);
    free(c->workers);
    c->workers = NULL;
    c->count = 0;
}
