/* The prefetching loader. Worker threads claim steps in order; step s is prepared in slot
 * s % slots, a host buffer laid out exactly like its device buffer, and written to the device
 * with one non-blocking write on the loader's own queue. The consumer takes steps in order.
 *
 * Lifetimes, with a context:
 *   - next() makes the context's queue wait for the slot's write (a barrier on the write
 *     event), so the consumer's commands read a complete batch without the host blocking;
 *   - release() puts a marker on the context's queue after the consumer's commands; the next
 *     write into that slot's device buffer waits for it, so a buffer is never overwritten while
 *     a kernel still reads it;
 *   - a worker waits for the slot's previous write before it refills the host buffer (that
 *     write was waited for by the consumer long before, so this costs nothing in practice).
 * Without a context the slots are host buffers only. */
#include "pipeline.h"

#include "runtime/error.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { BATCH_ALIGN = 256 }; /* array offsets in a batch buffer: any device's base alignment */
enum { FIELD_TOKENS, FIELD_HAS_DELETION, FIELD_DELETION_VALUE, FIELD_MSA_MASK, FIELD_PROFILE,
       FIELD_DELETION_MEAN, FIELD_RESIDUE_INDEX, FIELD_EXAMPLE_INDEX, FIELD_COUNT };
enum { DELETION_TABLE = 256 }; /* deletion values of small counts, looked up, not recomputed */

typedef enum slot_state { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_HELD } slot_state;

typedef struct loader_slot {
    slot_state state;
    size_t step;         /* the step it holds, unless FREE */
    unsigned char *host; /* the batch, laid out as on the device */
    cl_mem device;
    cl_event written;    /* the last write of host into device */
    cl_event consumed;   /* after the consumer's commands that read device; the next write waits for it */
    mcl_status status;   /* of the step's preparation */
    char *message;       /* its detail when it failed */
} loader_slot;

struct mcl_loader {
    mcl_loader_desc desc;
    size_t steps;
    size_t offsets[FIELD_COUNT], bytes;
    float deletion_values[DELETION_TABLE];
    loader_slot *slots;
    size_t slot_count;
    pthread_t *threads;
    size_t thread_count;
    cl_command_queue queue; /* the loader's writes; NULL without a context */
    pthread_mutex_t lock;
    pthread_cond_t changed;
    size_t next_fill;    /* the next step a worker claims */
    size_t next_deliver; /* the next step next() returns */
    int stopping, holding;
    mcl_loader_stats stats; /* steps and waits under the lock; the counters below are atomic */
    atomic_uint_fast64_t hits, misses;
};

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- one step's batch --------------------------------------------------------------------- */

typedef struct batch_view {
    uint8_t *tokens;
    float *has_deletion, *deletion_value, *msa_mask, *profile, *deletion_mean;
    int32_t *residue_index, *example_index;
} batch_view;

static batch_view view_of(const mcl_loader *l, unsigned char *base)
{
    return (batch_view){
        .tokens = base + l->offsets[FIELD_TOKENS],
        .has_deletion = (float *)(base + l->offsets[FIELD_HAS_DELETION]),
        .deletion_value = (float *)(base + l->offsets[FIELD_DELETION_VALUE]),
        .msa_mask = (float *)(base + l->offsets[FIELD_MSA_MASK]),
        .profile = (float *)(base + l->offsets[FIELD_PROFILE]),
        .deletion_mean = (float *)(base + l->offsets[FIELD_DELETION_MEAN]),
        .residue_index = (int32_t *)(base + l->offsets[FIELD_RESIDUE_INDEX]),
        .example_index = (int32_t *)(base + l->offsets[FIELD_EXAMPLE_INDEX]),
    };
}

static float deletion_value(const mcl_loader *l, int32_t count)
{
    return count < DELETION_TABLE ? l->deletion_values[count] : mcl_msa_deletion_value(count);
}

/* The first of a row's nonzero deletion counts at a column >= start (the row's end if none). */
static uint64_t first_deletion_from(const mcl_msa_arrays *f, size_t row, size_t start)
{
    uint64_t low = f->deletion_row_start[row], high = f->deletion_row_start[row + 1];
    while (low < high) {
        uint64_t middle = low + (high - low) / 2;
        if (f->deletion_columns[middle] < start) low = middle + 1;
        else high = middle;
    }
    return low;
}

/* has_deletion and deletion_value of a row's crop [start, start + width) at `at`: the row's
 * nonzero counts there, 0 elsewhere. */
static void write_deletions(const mcl_loader *l, const batch_view *v, size_t at, const mcl_msa_arrays *f, size_t row,
                            size_t start, size_t width)
{
    memset(v->has_deletion + at, 0, width * sizeof(float));
    memset(v->deletion_value + at, 0, width * sizeof(float));
    uint64_t end = f->deletion_row_start[row + 1];
    for (uint64_t k = first_deletion_from(f, row, start); k < end && f->deletion_columns[k] < start + width; k++) {
        size_t j = f->deletion_columns[k] - start;
        v->has_deletion[at + j] = 1.0f;
        v->deletion_value[at + j] = deletion_value(l, f->deletion_counts[k]);
    }
}

/* Writes example slot b of a batch from the chosen rows and crop; padding everywhere else. */
static void write_example(const mcl_loader *l, const batch_view *v, size_t b, const mcl_msa_arrays *f,
                          const size_t *rows, size_t taken, size_t start, size_t width)
{
    size_t R = l->desc.msa_rows, C = l->desc.crop_size;
    for (size_t r = 0; r < R; r++) {
        size_t at = (b * R + r) * C;
        size_t filled = r < taken ? width : 0;
        if (filled) {
            memcpy(v->tokens + at, f->tokens + rows[r] * f->length + start, filled);
            write_deletions(l, v, at, f, rows[r], start, filled);
            for (size_t j = 0; j < filled; j++) v->msa_mask[at + j] = 1.0f;
        }
        memset(v->tokens + at + filled, MCL_MSA_TOKEN_GAP, C - filled);
        memset(v->has_deletion + at + filled, 0, (C - filled) * sizeof(float));
        memset(v->deletion_value + at + filled, 0, (C - filled) * sizeof(float));
        memset(v->msa_mask + at + filled, 0, (C - filled) * sizeof(float));
    }
    memcpy(v->profile + b * C * MCL_MSA_CLASSES, f->profile + start * MCL_MSA_CLASSES, width * MCL_MSA_CLASSES * sizeof(float));
    memset(v->profile + (b * C + width) * MCL_MSA_CLASSES, 0, (C - width) * MCL_MSA_CLASSES * sizeof(float));
    memcpy(v->deletion_mean + b * C, f->deletion_mean + start, width * sizeof(float));
    memset(v->deletion_mean + b * C + width, 0, (C - width) * sizeof(float));
    for (size_t j = 0; j < C; j++) v->residue_index[b * C + j] = j < width ? (int32_t)(start + j) : -1;
}

static mcl_status load_features(mcl_loader *l, const mcl_msa_example *example, mcl_msa_features **features)
{
    if (!l->desc.cache) {
        atomic_fetch_add(&l->misses, 1);
        return mcl_msa_features_from_files(example->paths, example->path_count, features);
    }
    int built = 0;
    MCL_TRY(cache_get_or_build(l->desc.cache, example, 0, features, &built));
    atomic_fetch_add(built ? &l->misses : &l->hits, 1);
    return MCL_OK;
}

/* Features, sampled rows and crop of place b of the step, into the slot's host buffer. */
static mcl_status prepare_example(mcl_loader *l, size_t step, size_t b, const batch_view *v)
{
    const mcl_loader_desc *d = &l->desc;
    size_t index = sample_example_at(d->seed, d->example_count, (uint64_t)step * d->batch_size + b);
    const mcl_msa_example *example = &d->examples[index];
    mcl_msa_features *features = NULL;
    mcl_status status = load_features(l, example, &features);
    if (status != MCL_OK) return mcl_fail_within(status, "loader step %zu: example '%s'", step, example->name);
    const mcl_msa_arrays *f = &features->arrays;
    size_t *rows = malloc(2 * f->depth * sizeof *rows);
    if (!rows) {
        mcl_msa_features_release(features);
        return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "loader: no memory to sample %zu rows", f->depth);
    }
    sample_rng rng = sample_rng_make(d->seed, step, b);
    size_t start, width;
    size_t taken = sample_rows_and_crop(&rng, f->depth, f->length, d->msa_rows, d->crop_size, rows, rows + f->depth,
                                        &start, &width);
    write_example(l, v, b, f, rows, taken, start, width);
    v->example_index[b] = (int32_t)index;
    free(rows);
    mcl_msa_features_release(features);
    return MCL_OK;
}

/* Prepares the step in the slot and starts its device write. */
static mcl_status fill_slot(mcl_loader *l, loader_slot *slot, size_t step, cl_event consumed)
{
    if (slot->written) { /* the host buffer is the source of the previous write */
        cl_int err = clWaitForEvents(1, &slot->written);
        clReleaseEvent(slot->written);
        slot->written = NULL;
        if (err != CL_SUCCESS) return mcl_fail_cl(err, "loader: clWaitForEvents on the previous write");
    }
    batch_view v = view_of(l, slot->host);
    for (size_t b = 0; b < l->desc.batch_size; b++) MCL_TRY(prepare_example(l, step, b, &v));
    if (!l->queue) return MCL_OK;
    cl_int err = clEnqueueWriteBuffer(l->queue, slot->device, CL_FALSE, 0, l->bytes, slot->host, consumed ? 1 : 0,
                                      consumed ? &consumed : NULL, &slot->written);
    if (err == CL_SUCCESS) err = clFlush(l->queue);
    return err == CL_SUCCESS ? MCL_OK : mcl_fail_cl(err, "loader: clEnqueueWriteBuffer of a batch");
}

/* ---- workers -------------------------------------------------------------------------------- */

static void *loader_worker(void *arg)
{
    mcl_loader *l = arg;
    pthread_mutex_lock(&l->lock);
    for (;;) {
        loader_slot *slot = l->next_fill < l->steps ? &l->slots[l->next_fill % l->slot_count] : NULL;
        if (l->stopping || !slot) break;
        if (slot->state != SLOT_FREE) { /* the consumer still has the step that used it */
            pthread_cond_wait(&l->changed, &l->lock);
            continue;
        }
        size_t step = l->next_fill++;
        slot->state = SLOT_FILLING;
        slot->step = step;
        cl_event consumed = slot->consumed;
        slot->consumed = NULL;
        pthread_mutex_unlock(&l->lock);
        mcl_status status = fill_slot(l, slot, step, consumed);
        char *message = status == MCL_OK ? NULL : strdup(mcl_last_error());
        if (consumed) clReleaseEvent(consumed);
        pthread_mutex_lock(&l->lock);
        slot->status = status;
        free(slot->message);
        slot->message = message;
        slot->state = SLOT_READY;
        pthread_cond_broadcast(&l->changed);
    }
    pthread_mutex_unlock(&l->lock);
    return NULL;
}

/* ---- creation ------------------------------------------------------------------------------- */

static mcl_status check_desc(const mcl_loader_desc *d)
{
    if (!d->examples) return mcl_fail(MCL_ERR_NULL_POINTER, "loader_create: examples are required");
    if (d->example_count == 0 || d->example_count > INT32_MAX)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "loader_create: %zu examples (1 to 2^31 - 1)", d->example_count);
    for (size_t i = 0; i < d->example_count; i++)
        if (!d->examples[i].paths || d->examples[i].path_count == 0 || !d->examples[i].name)
            return mcl_fail(MCL_ERR_NULL_POINTER, "loader_create: example %zu has no name or no alignment files", i);
    if (d->batch_size == 0 || d->msa_rows == 0 || d->crop_size == 0)
        return mcl_fail(MCL_ERR_INVALID_SIZE, "loader_create: batch_size %zu, msa_rows %zu, crop_size %zu (each >= 1)",
                        d->batch_size, d->msa_rows, d->crop_size);
    if (d->crop_size > INT32_MAX || d->workers > 256 || d->prefetch > 64)
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "loader_create: crop_size %zu, workers %zu (<= 256), prefetch %zu (<= 64)",
                        d->crop_size, d->workers, d->prefetch);
    return MCL_OK;
}

/* Offsets of the batch's arrays in one buffer. */
static mcl_status lay_out(mcl_loader *l)
{
    const mcl_loader_desc *d = &l->desc;
    const size_t limit = (size_t)1 << 40;
    size_t B = d->batch_size, R = d->msa_rows, C = d->crop_size;
    if (B > limit / R || B * R > limit / C || B * C > limit / MCL_MSA_CLASSES)
        return mcl_fail(MCL_ERR_SIZE_OVERFLOW, "loader_create: a batch of %zu x %zu rows x %zu columns", B, R, C);
    size_t cells = B * R * C;
    size_t sizes[FIELD_COUNT] = {cells, cells * 4, cells * 4, cells * 4, B * C * MCL_MSA_CLASSES * 4, B * C * 4, B * C * 4, B * 4};
    size_t at = 0;
    for (int i = 0; i < FIELD_COUNT; i++) {
        l->offsets[i] = at;
        at = (at + sizes[i] + BATCH_ALIGN - 1) / BATCH_ALIGN * BATCH_ALIGN;
    }
    l->bytes = at;
    return MCL_OK;
}

static mcl_status make_slots(mcl_loader *l)
{
    l->slots = calloc(l->slot_count, sizeof *l->slots);
    if (!l->slots) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "loader: no memory for %zu slots", l->slot_count);
    cl_context cl = l->desc.context ? mcl_context_cl_context(l->desc.context) : NULL;
    for (size_t i = 0; i < l->slot_count; i++) {
        loader_slot *s = &l->slots[i];
        s->host = aligned_alloc(BATCH_ALIGN, l->bytes);
        if (!s->host) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "loader: no memory for a batch of %zu bytes", l->bytes);
        if (!cl) continue;
        cl_int err;
        s->device = clCreateBuffer(cl, CL_MEM_READ_ONLY, l->bytes, NULL, &err);
        if (err != CL_SUCCESS) return mcl_fail_cl(err, "loader: clCreateBuffer of a batch");
    }
    return MCL_OK;
}

static mcl_status make_queue(mcl_loader *l)
{
    if (!l->desc.context) return MCL_OK;
    cl_device_id device;
    MCL_CL_TRY(clGetCommandQueueInfo(mcl_context_queue(l->desc.context), CL_QUEUE_DEVICE, sizeof device, &device, NULL),
               "loader: clGetCommandQueueInfo");
    cl_int err;
    l->queue = clCreateCommandQueue(mcl_context_cl_context(l->desc.context), device, 0, &err);
    return err == CL_SUCCESS ? MCL_OK : mcl_fail_cl(err, "loader: clCreateCommandQueue");
}

static mcl_status start_workers(mcl_loader *l)
{
    size_t workers = l->desc.workers ? l->desc.workers : 2;
    l->threads = calloc(workers, sizeof *l->threads);
    if (!l->threads) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "loader: no memory for %zu threads", workers);
    for (; l->thread_count < workers; l->thread_count++) {
        int err = pthread_create(&l->threads[l->thread_count], NULL, loader_worker, l);
        if (err) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "loader: cannot start a worker thread: %s", strerror(err));
    }
    return MCL_OK;
}

mcl_status mcl_loader_create(const mcl_loader_desc *desc, mcl_loader **loader)
{
    if (!desc || !loader) return mcl_fail(MCL_ERR_NULL_POINTER, "loader_create: desc and loader are required");
    *loader = NULL;
    MCL_TRY(check_desc(desc));
    mcl_loader *l = calloc(1, sizeof *l);
    if (!l) return mcl_fail(MCL_ERR_OUT_OF_MEMORY, "loader: no memory");
    l->desc = *desc;
    l->steps = desc->steps ? desc->steps : (desc->example_count + desc->batch_size - 1) / desc->batch_size;
    l->slot_count = (desc->prefetch ? desc->prefetch : 2) + 1; /* one more for the batch the consumer holds */
    for (int32_t d = 0; d < DELETION_TABLE; d++) l->deletion_values[d] = mcl_msa_deletion_value(d);
    pthread_mutex_init(&l->lock, NULL);
    pthread_cond_init(&l->changed, NULL);
    mcl_status status = lay_out(l);
    if (status == MCL_OK) status = make_queue(l);
    if (status == MCL_OK) status = make_slots(l);
    if (status == MCL_OK) status = start_workers(l);
    if (status != MCL_OK) {
        mcl_loader_destroy(l);
        return status;
    }
    *loader = l;
    return MCL_OK;
}

/* ---- the consumer ------------------------------------------------------------------------------ */

static void describe_batch(const mcl_loader *l, const loader_slot *slot, mcl_batch *batch)
{
    batch_view v = view_of(l, slot->host);
    *batch = (mcl_batch){
        .step = slot->step, .batch_size = l->desc.batch_size, .rows = l->desc.msa_rows, .cols = l->desc.crop_size,
        .tokens = v.tokens, .has_deletion = v.has_deletion, .deletion_value = v.deletion_value,
        .msa_mask = v.msa_mask, .profile = v.profile, .deletion_mean = v.deletion_mean,
        .residue_index = v.residue_index, .example_index = v.example_index, .ready = slot->written,
    };
    mcl_tensor *tensors[] = {&batch->d_tokens, &batch->d_has_deletion, &batch->d_deletion_value, &batch->d_msa_mask,
                             &batch->d_profile, &batch->d_deletion_mean, &batch->d_residue_index};
    for (int i = 0; i < (int)(sizeof tensors / sizeof *tensors); i++)
        *tensors[i] = (mcl_tensor){slot->device, slot->device ? l->offsets[i] : 0};
}

mcl_status mcl_loader_next(mcl_loader *l, mcl_batch *batch)
{
    if (!l || !batch) return mcl_fail(MCL_ERR_NULL_POINTER, "loader_next: loader and batch are required");
    if (l->holding) return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "loader_next: release step %zu's batch first", l->next_deliver - 1);
    if (l->next_deliver == l->steps) return mcl_fail(MCL_ERR_EXHAUSTED, "loader_next: all %zu steps delivered", l->steps);
    size_t step = l->next_deliver++;
    loader_slot *slot = &l->slots[step % l->slot_count];
    double start = now_seconds();
    pthread_mutex_lock(&l->lock);
    while (!(slot->state == SLOT_READY && slot->step == step)) pthread_cond_wait(&l->changed, &l->lock);
    double waited = now_seconds() - start;
    l->stats.steps++;
    l->stats.wait_seconds += waited;
    if (waited > l->stats.max_wait_seconds) l->stats.max_wait_seconds = waited;
    mcl_status status = slot->status;
    cl_int err = CL_SUCCESS;
    if (status == MCL_OK && slot->written)
        err = clEnqueueBarrierWithWaitList(mcl_context_queue(l->desc.context), 1, &slot->written, NULL);
    if (status == MCL_OK && err == CL_SUCCESS) {
        slot->state = SLOT_HELD;
        l->holding = 1;
        describe_batch(l, slot, batch);
        batch->wait_seconds = waited;
    } else {
        /* the message is the worker's, copied before the slot can be refilled */
        if (status != MCL_OK) mcl_fail(status, "%s", slot->message ? slot->message : "(no memory for the message)");
        else status = mcl_fail_cl(err, "loader_next: clEnqueueBarrierWithWaitList");
        slot->state = SLOT_FREE; /* nothing of it reaches the consumer */
        pthread_cond_broadcast(&l->changed);
    }
    pthread_mutex_unlock(&l->lock);
    return status;
}

mcl_status mcl_loader_release(mcl_loader *l, mcl_batch *batch)
{
    if (!l || !batch) return mcl_fail(MCL_ERR_NULL_POINTER, "loader_release: loader and batch are required");
    loader_slot *slot = &l->slots[batch->step % l->slot_count];
    if (!l->holding || batch->step + 1 != l->next_deliver || slot->state != SLOT_HELD)
        return mcl_fail(MCL_ERR_INVALID_ARGUMENT, "loader_release: step %zu's batch is not the one held", batch->step);
    cl_event consumed = NULL;
    if (slot->device) {
        cl_int err = clEnqueueMarkerWithWaitList(mcl_context_queue(l->desc.context), 0, NULL, &consumed);
        if (err != CL_SUCCESS) return mcl_fail_cl(err, "loader_release: clEnqueueMarkerWithWaitList");
        clFlush(mcl_context_queue(l->desc.context));
    }
    pthread_mutex_lock(&l->lock);
    slot->consumed = consumed;
    slot->state = SLOT_FREE;
    l->holding = 0;
    pthread_cond_broadcast(&l->changed);
    pthread_mutex_unlock(&l->lock);
    *batch = (mcl_batch){0};
    return MCL_OK;
}

void mcl_loader_get_stats(mcl_loader *l, mcl_loader_stats *stats)
{
    *stats = (mcl_loader_stats){0};
    if (!l) return;
    pthread_mutex_lock(&l->lock);
    *stats = l->stats;
    pthread_mutex_unlock(&l->lock);
    stats->cache_hits = atomic_load(&l->hits);
    stats->cache_misses = atomic_load(&l->misses);
}

void mcl_loader_destroy(mcl_loader *l)
{
    if (!l) return;
    pthread_mutex_lock(&l->lock);
    l->stopping = 1;
    pthread_cond_broadcast(&l->changed);
    pthread_mutex_unlock(&l->lock);
    for (size_t i = 0; i < l->thread_count; i++) pthread_join(l->threads[i], NULL); /* each finishes its batch */
    for (size_t i = 0; l->slots && i < l->slot_count; i++) {
        loader_slot *s = &l->slots[i];
        if (s->written) clWaitForEvents(1, &s->written); /* the host buffer is its source */
        if (s->written) clReleaseEvent(s->written);
        if (s->consumed) clReleaseEvent(s->consumed);
        if (s->device) clReleaseMemObject(s->device); /* freed once the consumer's commands are done */
        free(s->host);
        free(s->message);
    }
    if (l->queue) clReleaseCommandQueue(l->queue);
    free(l->slots);
    free(l->threads);
    pthread_cond_destroy(&l->changed);
    pthread_mutex_destroy(&l->lock);
    free(l);
}
