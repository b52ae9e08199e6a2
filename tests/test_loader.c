/* The prefetching loader: the stochastic steps and the example stream, batches that depend on
 * the seed only (never on the number of workers or their timing), the device copy, failures,
 * misuse, and shutdown with work in flight. */
#include "common.h"
#include "files.h"
#include "pipeline/pipeline.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- the stochastic steps ------------------------------------------------------------------- */

Test(loader, sampled_rows_are_distinct_and_start_with_the_query)
{
    enum { DEPTH = 50, LENGTH = 30 };
    size_t rows[DEPTH], scratch[DEPTH];
    for (uint64_t seed = 0; seed < 200; seed++) {
        sample_rng rng = sample_rng_make(seed, 7, 3);
        size_t start, width, want = 1 + seed % 60, crop = 1 + seed % 40;
        size_t taken = sample_rows_and_crop(&rng, DEPTH, LENGTH, want, crop, rows, scratch, &start, &width);
        cr_assert_eq(taken, want < DEPTH ? want : DEPTH);
        cr_assert_eq(rows[0], 0);
        int seen[DEPTH] = {0};
        for (size_t i = 0; i < taken; i++) {
            cr_assert_lt(rows[i], DEPTH);
            cr_assert_eq(seen[rows[i]]++, 0, "row %zu drawn twice", rows[i]);
        }
        cr_assert_eq(width, crop < LENGTH ? crop : LENGTH);
        cr_assert_leq(start + width, LENGTH);
    }
}

Test(loader, every_epoch_visits_every_example_once)
{
    for (size_t count = 1; count < 70; count += 7) {
        for (uint64_t epoch = 0; epoch < 3; epoch++) {
            char *seen = calloc(count, 1);
            cr_assert_not_null(seen);
            for (size_t i = 0; i < count; i++) {
                size_t e = sample_example_at(42, count, epoch * count + i);
                cr_assert_lt(e, count);
                cr_assert_eq(seen[e]++, 0, "count %zu epoch %llu: example %zu twice", count, (unsigned long long)epoch, e);
            }
            free(seen);
        }
    }
    /* epochs differ in order, seeds too */
    int same_epoch = 1, same_seed = 1;
    for (size_t i = 0; i < 50; i++) {
        same_epoch &= sample_example_at(1, 50, i) == sample_example_at(1, 50, 50 + i);
        same_seed &= sample_example_at(1, 50, i) == sample_example_at(2, 50, i);
    }
    cr_expect(!same_epoch && !same_seed);
}

/* ---- loaders over a directory of small chains ------------------------------------------------- */

typedef struct chains {
    char *root;
    mcl_msa_example *examples;
    size_t count;
} chains;

static uint64_t next_random(uint64_t *state)
{
    *state = *state * 6364136223846793005u + 1442695040888963407u; /* Knuth's MMIX LCG */
    return *state >> 17;
}

/* n chains of 40 to 60 rows and 30 to 50 columns, drawn from seed 5; chain `bad` is broken. */
static chains make_chains(size_t n, size_t bad)
{
    chains c = {.root = test_temp_dir()};
    uint64_t rng = 5;
    for (size_t i = 0; i < n; i++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/chain%03zu", c.root, i);
        cr_assert_eq(mkdir(dir, 0755), 0);
        size_t rows = 40 + next_random(&rng) % 21, length = 30 + next_random(&rng) % 21;
        char *text = malloc(rows * (length * 2 + 32) + 64), *at = text;
        for (size_t r = 0; r < rows; r++) {
            at += sprintf(at, ">s%zu\n", r);
            for (size_t j = 0; j < length; j++) {
                uint64_t x = next_random(&rng);
                if (r > 0 && x % 7 == 0) *at++ = "acdefg"[x % 6]; /* an insertion */
                *at++ = r > 0 && x % 5 == 0 ? '-' : "ARNDCQEGHILKMFPSTWYV"[(x >> 8) % 20];
            }
            *at++ = '\n';
        }
        *at = '\0';
        free(test_write_text(dir, "hits.a3m", i == bad ? ">q\nMKV\n>cut\nM" : text));
        free(text);
    }
    assert_ok(mcl_msa_examples_scan(c.root, &c.examples, &c.count));
    cr_assert_eq(c.count, n);
    return c;
}

static void free_chains(chains *c)
{
    mcl_msa_examples_free(c->examples, c->count);
    test_remove_tree(c->root);
}

static mcl_loader_desc loader_desc(const chains *c, mcl_feature_cache *cache, uint64_t seed, size_t workers)
{
    return (mcl_loader_desc){.cache = cache, .examples = c->examples, .example_count = c->count, .seed = seed,
                             .batch_size = 3, .msa_rows = 48, .crop_size = 40, .steps = 9, .workers = workers,
                             .prefetch = 2};
}

/* Every host array of a batch, concatenated, to compare runs. */
static size_t batch_bytes(const mcl_batch *b)
{
    size_t cells = b->batch_size * b->rows * b->cols, columns = b->batch_size * b->cols;
    return cells * (1 + 3 * 4) + columns * (MCL_MSA_CLASSES + 2) * 4 + b->batch_size * 4;
}

static unsigned char *copy_batch(const mcl_batch *b)
{
    size_t cells = b->batch_size * b->rows * b->cols, columns = b->batch_size * b->cols;
    unsigned char *out = malloc(batch_bytes(b)), *at = out;
    cr_assert_not_null(out);
    const void *parts[] = {b->tokens, b->has_deletion, b->deletion_value, b->msa_mask, b->profile, b->deletion_mean,
                           b->residue_index, b->example_index};
    size_t sizes[] = {cells, cells * 4, cells * 4, cells * 4, columns * MCL_MSA_CLASSES * 4, columns * 4, columns * 4,
                      b->batch_size * 4};
    for (size_t i = 0; i < COUNT_OF(parts); i++) {
        memcpy(at, parts[i], sizes[i]);
        at += sizes[i];
    }
    return out;
}

/* All steps of a loader, copied. */
static unsigned char **run_loader(const mcl_loader_desc *desc, size_t *bytes)
{
    mcl_loader *loader;
    assert_ok(mcl_loader_create(desc, &loader));
    unsigned char **steps = calloc(desc->steps, sizeof *steps);
    for (size_t s = 0; s < desc->steps; s++) {
        mcl_batch b;
        assert_ok(mcl_loader_next(loader, &b));
        cr_assert_eq(b.step, s);
        *bytes = batch_bytes(&b);
        steps[s] = copy_batch(&b);
        assert_ok(mcl_loader_release(loader, &b));
    }
    mcl_batch b;
    assert_status(mcl_loader_next(loader, &b), MCL_ERR_EXHAUSTED);
    mcl_loader_destroy(loader);
    return steps;
}

static void free_steps(unsigned char **steps, size_t n)
{
    for (size_t i = 0; i < n; i++) free(steps[i]);
    free(steps);
}

Test(loader, batches_depend_on_the_seed_only)
{
    chains c = make_chains(7, 99);
    char *dir = test_temp_dir();
    mcl_feature_cache *cache;
    assert_ok(mcl_feature_cache_open(dir, 0, &cache));
    mcl_loader_desc one = loader_desc(&c, NULL, 11, 1), many = loader_desc(&c, cache, 11, 4),
                    other = loader_desc(&c, cache, 12, 3);
    size_t bytes = 0;
    unsigned char **a = run_loader(&one, &bytes), **b = run_loader(&many, &bytes), **again = run_loader(&many, &bytes),
                  **d = run_loader(&other, &bytes);
    int differs = 0;
    for (size_t s = 0; s < one.steps; s++) {
        cr_expect_eq(memcmp(a[s], b[s], bytes), 0, "step %zu: 1 worker without a cache and 4 with one differ", s);
        cr_expect_eq(memcmp(b[s], again[s], bytes), 0, "step %zu differs on a warm cache", s);
        differs |= memcmp(a[s], d[s], bytes) != 0;
    }
    cr_expect(differs, "another seed gave the same batches");
    free_steps(a, one.steps);
    free_steps(b, one.steps);
    free_steps(again, one.steps);
    free_steps(d, one.steps);
    mcl_feature_cache_close(cache);
    test_remove_tree(dir);
    free_chains(&c);
}

/* The row of the features whose tokens over the crop are `tokens` (the chains' rows are random
 * enough for it to be the one sampled); fails the test if there is none. */
static size_t source_row(const mcl_msa_arrays *a, const uint8_t *tokens, size_t start, size_t width)
{
    for (size_t r = 0; r < a->depth; r++)
        if (memcmp(a->tokens + r * a->length + start, tokens, width) == 0) return r;
    cr_assert_fail("a batch row matches no row of its example");
    return 0;
}

/* A sampled row's has_deletion and deletion_value are its source row's counts over the crop. */
static void check_row_deletions(const mcl_batch *b, size_t at, const mcl_msa_arrays *a, size_t start, size_t width)
{
    int32_t *counts = malloc(a->length * sizeof *counts);
    cr_assert_not_null(counts);
    assert_ok(mcl_msa_deletions_dense(a, source_row(a, b->tokens + at, start, width), 1, counts));
    for (size_t j = 0; j < width; j++) {
        int32_t count = counts[start + j];
        cr_assert_float_eq(b->has_deletion[at + j], count > 0 ? 1.0f : 0.0f, 0);
        cr_assert_float_eq(b->deletion_value[at + j], mcl_msa_deletion_value(count), 0);
    }
    free(counts);
}

/* The batch agrees with the example's features: the query first, the crop a window, each row's
 * deletions its own, padding. */
static void check_batch_against_features(const mcl_batch *b, const mcl_loader_desc *desc)
{
    for (size_t e = 0; e < b->batch_size; e++) {
        const mcl_msa_example *ex = &desc->examples[b->example_index[e]];
        mcl_msa_features *f;
        assert_ok(mcl_msa_features_from_files(ex->paths, ex->path_count, &f));
        mcl_msa_arrays a;
        mcl_msa_features_arrays(f, &a);
        const int32_t *index = b->residue_index + e * b->cols;
        size_t start = (size_t)index[0], width = a.length < b->cols ? a.length : b->cols;
        for (size_t j = 0; j < b->cols; j++) {
            cr_assert_eq(index[j], j < width ? (int32_t)(start + j) : -1);
            if (j >= width) continue;
            const uint8_t *query = b->tokens + (e * b->rows) * b->cols;
            cr_assert_eq(query[j], a.tokens[start + j], "the first row is the query");
            cr_assert_float_eq(b->deletion_mean[e * b->cols + j], a.deletion_mean[start + j], 0);
            cr_assert_float_eq(b->profile[(e * b->cols + j) * MCL_MSA_CLASSES + 3], a.profile[(start + j) * MCL_MSA_CLASSES + 3], 0);
        }
        for (size_t r = 0; r < b->rows; r++) {
            size_t row_at = (e * b->rows + r) * b->cols;
            if (r < a.depth) check_row_deletions(b, row_at, &a, start, width);
            for (size_t j = 0; j < b->cols; j++) {
                size_t at = row_at + j;
                int real = r < a.depth && j < width;
                cr_assert_float_eq(b->msa_mask[at], real ? 1.0f : 0.0f, 0);
                if (real) continue;
                cr_assert_eq(b->tokens[at], MCL_MSA_TOKEN_GAP);
                cr_assert_float_eq(b->has_deletion[at], 0.0f, 0);
                cr_assert_float_eq(b->deletion_value[at], 0.0f, 0);
            }
        }
        mcl_msa_features_release(f);
    }
}

Test(loader, batches_hold_the_query_the_crop_and_padding)
{
    chains c = make_chains(4, 99);
    mcl_loader_desc desc = loader_desc(&c, NULL, 3, 2);
    desc.msa_rows = 70; /* more than any chain has: padding rows */
    desc.crop_size = 55; /* more than any chain's length: padding columns */
    desc.steps = 0;      /* one epoch: ceil(4 / 3) = 2 steps */
    mcl_loader *loader;
    assert_ok(mcl_loader_create(&desc, &loader));
    mcl_batch b;
    for (size_t s = 0; s < 2; s++) {
        assert_ok(mcl_loader_next(loader, &b));
        check_batch_against_features(&b, &desc);
        assert_status(mcl_loader_next(loader, &b), MCL_ERR_INVALID_ARGUMENT); /* one batch at a time */
        assert_ok(mcl_loader_release(loader, &b));
    }
    assert_status(mcl_loader_next(loader, &b), MCL_ERR_EXHAUSTED);
    mcl_loader_stats stats;
    mcl_loader_get_stats(loader, &stats);
    cr_expect_eq(stats.steps, 2);
    cr_expect_eq(stats.cache_misses, 6);
    cr_expect_geq(stats.wait_seconds, stats.max_wait_seconds);
    mcl_loader_destroy(loader);
    free_chains(&c);
}

Test(loader, a_failed_example_fails_its_step_and_the_next_goes_on)
{
    chains c = make_chains(3, 1);
    mcl_loader_desc desc = loader_desc(&c, NULL, 9, 2);
    desc.batch_size = 1;
    desc.steps = 6; /* two epochs: chain001 comes twice */
    mcl_loader *loader;
    assert_ok(mcl_loader_create(&desc, &loader));
    size_t failures = 0;
    for (size_t s = 0; s < desc.steps; s++) {
        mcl_batch b;
        mcl_status got = mcl_loader_next(loader, &b);
        if (got == MCL_OK) {
            assert_ok(mcl_loader_release(loader, &b));
            continue;
        }
        failures++;
        cr_expect_eq(got, MCL_ERR_PARSE, "%s", mcl_status_name(got));
        cr_expect(strstr(mcl_last_error(), "chain001") && strstr(mcl_last_error(), "hits.a3m"), "%s", mcl_last_error());
    }
    cr_expect_eq(failures, 2);
    mcl_loader_destroy(loader);
    free_chains(&c);
}

Test(loader, bad_descriptions_are_refused)
{
    chains c = make_chains(1, 99);
    mcl_loader *loader;
    mcl_loader_desc desc = loader_desc(&c, NULL, 1, 1);
    assert_status(mcl_loader_create(NULL, &loader), MCL_ERR_NULL_POINTER);
    desc.batch_size = 0;
    assert_status(mcl_loader_create(&desc, &loader), MCL_ERR_INVALID_SIZE);
    desc = loader_desc(&c, NULL, 1, 1);
    desc.example_count = 0;
    assert_status(mcl_loader_create(&desc, &loader), MCL_ERR_INVALID_SIZE);
    desc = loader_desc(&c, NULL, 1, 1);
    desc.msa_rows = (size_t)1 << 40;
    assert_status(mcl_loader_create(&desc, &loader), MCL_ERR_SIZE_OVERFLOW);
    mcl_loader_destroy(NULL);
    free_chains(&c);
}

static int count_sound(const mcl_cache_entry_info *info, void *user)
{
    *(size_t *)user += info->check == MCL_OK;
    return 0;
}

Test(loader, shutdown_with_work_in_flight_loses_nothing)
{
    chains c = make_chains(24, 99);
    for (int round = 0; round < 4; round++) {
        char *dir = test_temp_dir();
        mcl_feature_cache *cache;
        assert_ok(mcl_feature_cache_open(dir, round % 2 ? 3 : 0, &cache));
        mcl_loader_desc desc = loader_desc(&c, cache, (uint64_t)round, 4);
        desc.batch_size = 4;
        desc.prefetch = 3;
        mcl_loader *loader;
        assert_ok(mcl_loader_create(&desc, &loader));
        if (round >= 2) { /* take one batch, keep it, and stop with the rest in preparation */
            mcl_batch b;
            assert_ok(mcl_loader_next(loader, &b));
        }
        mcl_loader_destroy(loader);
        cr_expect_eq(test_count_files(dir, ".tmp"), 0, "a half-written entry was left behind");
        size_t sound = 0;
        assert_ok(mcl_feature_cache_walk(cache, 1, count_sound, &sound));
        cr_expect_eq(sound, test_count_files(dir, ".msaf"), "an entry is unsound");
        mcl_feature_cache_close(cache);
        test_remove_tree(dir);
    }
    free_chains(&c);
}

Test(loader, device_copies_are_the_host_batches)
{
    chains c = make_chains(5, 99);
    mcl_context *ctx = test_context();
    mcl_loader_desc desc = loader_desc(&c, NULL, 21, 2);
    desc.context = ctx;
    mcl_loader *loader;
    assert_ok(mcl_loader_create(&desc, &loader));
    for (size_t s = 0; s < desc.steps; s++) {
        mcl_batch b;
        assert_ok(mcl_loader_next(loader, &b));
        cr_assert_not_null(b.d_tokens.mem);
        size_t cells = b.batch_size * b.rows * b.cols, columns = b.batch_size * b.cols;
        uint8_t *tokens = malloc(cells);
        float *values = malloc(cells * 4), *profile = malloc(columns * MCL_MSA_CLASSES * 4);
        int32_t *index = malloc(columns * 4);
        cl_command_queue q = mcl_context_queue(ctx);
        /* reads on the context's queue: ordered after the loader's write by next()'s barrier */
        cr_assert_eq(clEnqueueReadBuffer(q, b.d_tokens.mem, CL_FALSE, b.d_tokens.offset, cells, tokens, 0, NULL, NULL), CL_SUCCESS);
        cr_assert_eq(clEnqueueReadBuffer(q, b.d_deletion_value.mem, CL_FALSE, b.d_deletion_value.offset, cells * 4, values, 0, NULL, NULL), CL_SUCCESS);
        cr_assert_eq(clEnqueueReadBuffer(q, b.d_profile.mem, CL_FALSE, b.d_profile.offset, columns * MCL_MSA_CLASSES * 4, profile, 0, NULL, NULL), CL_SUCCESS);
        cr_assert_eq(clEnqueueReadBuffer(q, b.d_residue_index.mem, CL_FALSE, b.d_residue_index.offset, columns * 4, index, 0, NULL, NULL), CL_SUCCESS);
        assert_ok(mcl_finish(ctx));
        cr_expect_eq(memcmp(tokens, b.tokens, cells), 0, "step %zu: device tokens differ", s);
        cr_expect_eq(memcmp(values, b.deletion_value, cells * 4), 0, "step %zu: device deletion values differ", s);
        cr_expect_eq(memcmp(profile, b.profile, columns * MCL_MSA_CLASSES * 4), 0, "step %zu: device profile differs", s);
        cr_expect_eq(memcmp(index, b.residue_index, columns * 4), 0, "step %zu: device residue index differs", s);
        free(tokens);
        free(values);
        free(profile);
        free(index);
        assert_ok(mcl_loader_release(loader, &b));
    }
    mcl_loader_destroy(loader);
    mcl_context_release(ctx);
    free_chains(&c);
}
