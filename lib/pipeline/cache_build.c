/* The ahead-of-time build: a shard of the examples on worker threads, progress and failures
 * reported on the calling thread. */
#include "pipeline.h"

#include "runtime/error.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct build_failure {
    size_t example;
    mcl_status status;
    char *message;
} build_failure;

typedef struct build_run {
    mcl_feature_cache *cache;
    const mcl_msa_example *examples;
    size_t first, stride, total; /* the shard: examples first, first + stride, ... */
    pthread_mutex_t lock;
    pthread_cond_t changed;
    size_t next; /* the shard's next example to claim */
    mcl_cache_build_progress progress;
    build_failure *unreported; /* failures the calling thread has not reported yet */
    size_t unreported_count;
    build_failure lowest; /* the failure of lowest example index; example SIZE_MAX if none */
} build_run;

/* Records a failed example (under the lock). The message is the worker's detail. */
static void record_failure(build_run *run, size_t example, mcl_status status)
{
    run->progress.failed++;
    build_failure failure = {example, status, strdup(mcl_last_error())};
    if (example < run->lowest.example) {
        free(run->lowest.message);
        run->lowest = (build_failure){example, status, failure.message ? strdup(failure.message) : NULL};
    }
    /* the array grows by one failure at a time: failures are rare and each costs a parse */
    build_failure *grown = realloc(run->unreported, (run->unreported_count + 1) * sizeof *grown);
    if (grown) {
        run->unreported = grown;
        run->unreported[run->unreported_count++] = failure;
    } else {
        free(failure.message); /* still counted and, if lowest, returned; only its report is lost */
    }
}

static void *build_worker(void *arg)
{
    build_run *run = arg;
    pthread_mutex_lock(&run->lock);
    while (run->next < run->total) {
        size_t example = run->first + run->next++ * run->stride;
        pthread_mutex_unlock(&run->lock);
        mcl_msa_features *features = NULL;
        int built = 0;
        mcl_status status = cache_get_or_build(run->cache, &run->examples[example], 1, &features, &built);
        mcl_msa_features_release(features);
        pthread_mutex_lock(&run->lock);
        run->progress.done++;
        if (status != MCL_OK) record_failure(run, example, status);
        else if (built) run->progress.built++;
        else run->progress.present++;
        pthread_cond_signal(&run->changed);
    }
    pthread_mutex_unlock(&run->lock);
    return NULL;
}

/* Reports the failures collected so far and the progress; called with the lock held, which it
 * drops while the callback runs. */
static void report(build_run *run, const mcl_cache_build_desc *desc)
{
    build_failure *failures = run->unreported;
    size_t count = run->unreported_count;
    run->unreported = NULL;
    run->unreported_count = 0;
    mcl_cache_build_progress progress = run->progress;
    pthread_mutex_unlock(&run->lock);
    for (size_t i = 0; i < count; i++) {
        if (desc->report) {
            mcl_cache_build_progress failed = progress;
            failed.failed_example = &run->examples[failures[i].example];
            failed.failed_status = failures[i].status;
            failed.failed_message = failures[i].message ? failures[i].message : "(no memory for the message)";
            desc->report(&failed, desc->user);
        }
        free(failures[i].message);
    }
    free(failures);
    if (desc->report) desc->report(&progress, desc->user);
    pthread_mutex_lock(&run->lock);
}

/* Waits until a tenth of a second has passed or the shard is done (lock held). */
static void wait_a_tenth(build_run *run)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 100000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    while (run->progress.done < run->total && pthread_cond_timedwait(&run->changed, &run->lock, &until) != ETIMEDOUT)
        ;
}

static mcl_status check_build_args(mcl_feature_cache *cache, const mcl_msa_example *examples, size_t count,
                                   const mcl_cache_build_desc *desc)
{
    if (!cache || !desc || (!examples && count))
        return mcl_fail(MCL_ERR_NULL_POINTER, "feature_cache_build: cache, examples and desc are required");
    size_t shards = desc->shard_count ? desc->shard_count : 1;
    if (desc->shard_index >= shards)
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "feature_cache_build: shard %zu of %zu (the index counts from 0)",
                        desc->shard_index, shards);
    if (desc->jobs > 4096) return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "feature_cache_build: %zu jobs", desc->jobs);
    return MCL_OK;
}

mcl_status mcl_feature_cache_build(mcl_feature_cache *cache, const mcl_msa_example *examples, size_t count,
                                   const mcl_cache_build_desc *desc, mcl_cache_build_progress *result)
{
    MCL_TRY(check_build_args(cache, examples, count, desc));
    size_t shards = desc->shard_count ? desc->shard_count : 1;
    build_run run = {.cache = cache, .examples = examples, .first = desc->shard_index, .stride = shards,
                     .lowest = {.example = SIZE_MAX}};
    run.total = count > desc->shard_index ? (count - desc->shard_index + shards - 1) / shards : 0;
    run.progress.total = run.total;
    size_t jobs = desc->jobs ? desc->jobs : 1;
    if (jobs > run.total) jobs = run.total ? run.total : 1;
    pthread_t *threads = calloc(jobs, sizeof *threads);
    if (!threads) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for %zu threads", jobs);
    pthread_mutex_init(&run.lock, NULL);
    pthread_cond_init(&run.changed, NULL);
    size_t started = 0;
    int err = 0;
    while (started < jobs && (err = pthread_create(&threads[started], NULL, build_worker, &run)) == 0) started++;
    if (started == 0 && run.total) {
        free(threads);
        return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "feature_cache_build: cannot start a thread: %s", strerror(err));
    }
    pthread_mutex_lock(&run.lock);
    do {
        wait_a_tenth(&run);
        report(&run, desc);
    } while (run.progress.done < run.total);
    pthread_mutex_unlock(&run.lock);
    for (size_t i = 0; i < started; i++) pthread_join(threads[i], NULL);
    free(threads);
    pthread_cond_destroy(&run.changed);
    pthread_mutex_destroy(&run.lock);
    if (result) *result = run.progress;
    if (run.lowest.example == SIZE_MAX) return MCL_OK;
    mcl_status status = mcl_fail(run.lowest.status, "%s", run.lowest.message ? run.lowest.message : "(no memory for the message)");
    free(run.lowest.message);
    return status;
}
