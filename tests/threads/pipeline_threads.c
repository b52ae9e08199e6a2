/* The feature pipeline's threads under ThreadSanitizer. Criterion cannot run under TSan (its
 * inheritable arena maps where TSan's shadow memory lives), so this plain program drives what
 * runs on several threads at once and checks the results itself: the cache build on 4 threads,
 * threads reading and writing one entry at once, loaders with 1 and 4 workers (cold, warm, with
 * a device when one is there) that must give the same batches, and loaders destroyed with work
 * in flight. Exits 0 when all is well. */
#include "megacl.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHECK(cond, ...)                                                                      \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "pipeline_threads: " __VA_ARGS__);                                \
            fprintf(stderr, " (%s)\n", mcl_last_error());                                     \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

/* n chains of 40 to 70 rows and 20 to 50 columns under root. */
static void make_chains(const char *root, int n)
{
    uint64_t state = 7;
    for (int i = 0; i < n; i++) {
        char dir[1024], path[1100];
        snprintf(dir, sizeof dir, "%s/chain%03d", root, i);
        CHECK(mkdir(dir, 0755) == 0, "cannot create %s", dir);
        snprintf(path, sizeof path, "%s/hits.a3m", dir);
        FILE *f = fopen(path, "w");
        CHECK(f != NULL, "cannot write %s", path);
        state = state * 6364136223846793005u + 1442695040888963407u;
        int rows = 40 + (int)(state >> 33) % 31, length = 20 + (int)(state >> 40) % 31;
        for (int r = 0; r < rows; r++) {
            fprintf(f, ">s%d\n", r);
            for (int j = 0; j < length; j++) {
                state = state * 6364136223846793005u + 1442695040888963407u;
                uint64_t x = state >> 20;
                if (r > 0 && x % 7 == 0) fputc("acdefg"[x % 6], f);
                fputc(r > 0 && x % 5 == 0 ? '-' : "ARNDCQEGHILKMFPSTWYV"[(x >> 8) % 20], f);
            }
            fputc('\n', f);
        }
        CHECK(fclose(f) == 0, "cannot write %s", path);
    }
}

/* Every step's tokens and deletion values, concatenated (malloc'd). */
static unsigned char *run_loader(const mcl_loader_desc *desc, size_t *bytes)
{
    mcl_loader *loader;
    CHECK(mcl_loader_create(desc, &loader) == MCL_OK, "loader_create");
    size_t cells = desc->batch_size * desc->msa_rows * desc->crop_size, step_bytes = cells * 5;
    unsigned char *all = malloc(step_bytes * desc->steps);
    CHECK(all != NULL, "no memory");
    for (size_t s = 0; s < desc->steps; s++) {
        mcl_batch b;
        CHECK(mcl_loader_next(loader, &b) == MCL_OK, "loader_next %zu", s);
        memcpy(all + s * step_bytes, b.tokens, cells);
        memcpy(all + s * step_bytes + cells, b.deletion_value, cells * 4);
        CHECK(mcl_loader_release(loader, &b) == MCL_OK, "loader_release");
    }
    mcl_loader_destroy(loader);
    *bytes = step_bytes * desc->steps;
    return all;
}

typedef struct reader_arg {
    mcl_feature_cache *cache;
    const mcl_msa_example *example;
    mcl_status status;
} reader_arg;

static void *read_entry(void *p)
{
    reader_arg *arg = p;
    for (int i = 0; i < 20 && arg->status == MCL_OK; i++) {
        mcl_msa_features *f;
        arg->status = mcl_feature_cache_get(arg->cache, arg->example, &f);
        if (arg->status == MCL_OK) mcl_msa_features_release(f);
    }
    return NULL;
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    char root[512], chains[600], cache_dir[600], command[700];
    snprintf(root, sizeof root, "%s/megacl-threads-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECK(mkdtemp(root) != NULL, "cannot create %s", root);
    snprintf(chains, sizeof chains, "%s/chains", root);
    snprintf(cache_dir, sizeof cache_dir, "%s/cache", root);
    CHECK(mkdir(chains, 0755) == 0, "cannot create %s", chains);
    make_chains(chains, 24);
    mcl_msa_example *examples;
    size_t count;
    CHECK(mcl_msa_examples_scan(chains, &examples, &count) == MCL_OK && count == 24, "scan");

    /* threads reading one entry that none has written yet, through one cache handle */
    mcl_feature_cache *cache;
    CHECK(mcl_feature_cache_open(cache_dir, 0, &cache) == MCL_OK, "cache_open");
    pthread_t readers[4];
    reader_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (reader_arg){cache, &examples[3], MCL_OK};
        CHECK(pthread_create(&readers[i], NULL, read_entry, &args[i]) == 0, "pthread_create");
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(readers[i], NULL);
        CHECK(args[i].status == MCL_OK, "reader %d", i);
    }

    mcl_cache_build_desc build = {.jobs = 4};
    mcl_cache_build_progress progress;
    CHECK(mcl_feature_cache_build(cache, examples, count, &build, &progress) == MCL_OK && progress.built == 23,
          "cache_build: %zu built", progress.built);

    mcl_context *ctx = NULL;
    int has_device = mcl_context_create(getenv("MEGACL_DEVICE") ? NULL : "pocl", &ctx) == MCL_OK;
    if (!has_device) ctx = NULL;
    mcl_loader_desc desc = {.examples = examples, .example_count = count, .seed = 3, .batch_size = 2,
                            .msa_rows = 32, .crop_size = 24, .steps = 30, .workers = 1, .prefetch = 1};
    size_t bytes_one, bytes_many;
    unsigned char *one = run_loader(&desc, &bytes_one);
    desc.cache = cache;
    desc.workers = 4;
    desc.prefetch = 3;
    desc.context = ctx;
    unsigned char *many = run_loader(&desc, &bytes_many);
    CHECK(bytes_one == bytes_many && memcmp(one, many, bytes_one) == 0, "1 worker and 4 give other batches");
    free(one);
    free(many);

    for (int round = 0; round < 6; round++) { /* destroyed with work in flight */
        mcl_loader *loader;
        desc.seed = (uint64_t)round;
        desc.cache = round % 2 ? cache : NULL;
        CHECK(mcl_loader_create(&desc, &loader) == MCL_OK, "loader_create");
        mcl_batch b;
        if (round >= 3) CHECK(mcl_loader_next(loader, &b) == MCL_OK, "loader_next");
        mcl_loader_destroy(loader);
    }
    mcl_context_release(ctx);
    mcl_feature_cache_close(cache);
    mcl_msa_examples_free(examples, count);
    snprintf(command, sizeof command, "rm -rf '%s'", root);
    CHECK(system(command) == 0, "cannot remove %s", root);
    printf("pipeline_threads: all passed%s\n", has_device ? "" : " (no device: host batches only)");
    return 0;
}
