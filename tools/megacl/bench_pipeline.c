/* megacl bench pipeline: the MSA feature pipeline in a simulated training loop. Examples are made
 * by replicating and perturbing the alignments of a directory; then parsing, the ahead-of-time
 * build at each --jobs, cache reads, and a loop whose compute step sleeps a fixed time are
 * measured, cold (the loader parses online) and warm (it reads the cache). */
#include "cli.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <dirent.h>
#include <errno.h>
#include <json-c/json.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char pipeline_help[] =
    "usage: megacl bench pipeline [options]\n"
    "\n"
    "Makes --examples chains by replicating and perturbing the chains of --msa-dir (each row copied\n"
    "--replicate times with about 2 % of its residues changed, so no copy is a duplicate), then\n"
    "measures: parsing each chain, `cache build` at each --jobs, reading each chain's cache entry,\n"
    "and a training loop whose compute step sleeps --step-ms, cold (the loader parses online) and\n"
    "warm (it reads the cache). Reports the consumer's wait per step and the share of the loop the\n"
    "device would sit idle.\n"
    "\n"
    "  --msa-dir DIR     alignments to replicate (default tests/data/msa)\n"
    "  --examples N      chains to make (default 200)\n"
    "  --replicate N     copies of each row (default 4)\n"
    "  --step-ms MS      the compute step (default 10)\n"
    "  --batch B         chains per step (default 1)\n"
    "  --rows R          MSA rows sampled per chain (default 512)\n"
    "  --crop C          residues per chain (default 256)\n"
    "  --workers N       loader threads (default 2)\n"
    "  --jobs LIST       `cache build` thread counts to time (default 1,2)\n"
    "  --device SEL      stage batches on this device (default MEGACL_DEVICE, else the first GPU,\n"
    "                    else the CPU); 'none' keeps them on the host\n"
    "  --json FILE       write every figure as JSON\n"
    "  --keep            keep the made chains and caches (their directory is printed)\n";

typedef struct pipeline_settings {
    const char *msa_dir, *device, *json;
    int examples, replicate, step_ms, batch, rows, crop, workers, keep;
    size_t jobs[8], job_count;
} pipeline_settings;

/* A hash of a number: which letters of a copied chain change. */
static uint64_t mix(uint64_t x) { return XXH3_64bits(&x, sizeof x); }

/* ---- making the chains ------------------------------------------------------------------------ */

/* A copy of an aligned sequence with about 2 % of its upper-case residues changed. */
static void put_perturbed(FILE *out, const char *seq, size_t n, uint64_t salt)
{
    for (size_t i = 0; i < n; i++) {
        char c = seq[i];
        uint64_t h = mix(salt ^ (i * 0x9e3779b97f4a7c15u));
        if (c >= 'A' && c <= 'Z' && h % 50 == 0) c = "ARNDCQEGHILKMFPSTWYV"[(h >> 8) % 20];
        fputc(c, out);
    }
}

static uint64_t hash_text(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325u;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3u;
    return h;
}

/* Writes the template's lines to out, each sequence of a non-query row followed by its
 * `copies` perturbed copies (A3M: whole records; Stockholm: per block, under new names). */
static void write_replicated(FILE *out, char *text, int stockholm, int copies, uint64_t example)
{
    char *query = NULL;
    size_t query_length = 0, record = 0;
    char *header = NULL;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        size_t n = strcspn(line, "\r");
        if (!stockholm) {
            if (line[0] == '>') { header = line; record++; continue; }
            if (!header) { fprintf(out, "%.*s\n", (int)n, line); continue; }
            fprintf(out, "%.*s\n", (int)strcspn(header, "\r"), header);
            put_perturbed(out, line, n, record > 1 ? mix(example * 977 + record) : 0);
            fputc('\n', out);
            for (int k = 1; k < copies && record > 1; k++) {
                fprintf(out, "%.*s copy %d\n", (int)strcspn(header, "\r"), header, k);
                put_perturbed(out, line, n, mix(example * 977 + record) ^ mix((uint64_t)k));
                fputc('\n', out);
            }
            header = NULL; /* one sequence line per record in the templates */
            continue;
        }
        size_t name_length = strcspn(line, " \t");
        int is_sequence = n > 0 && line[0] != '#' && strncmp(line, "//", 2) != 0 && name_length < n;
        if (is_sequence && !query) { query = line; query_length = name_length; }
        int is_query = is_sequence && name_length == query_length && strncmp(line, query, name_length) == 0;
        if (!is_sequence || is_query) { fprintf(out, "%.*s\n", (int)n, line); continue; }
        size_t start = name_length + strspn(line + name_length, " \t");
        uint64_t salt = mix(example * 977 + hash_text(line, name_length));
        for (int k = 0; k < copies; k++) {
            fprintf(out, "%.*s_%d ", (int)name_length, line, k);
            put_perturbed(out, line + start, n - start, salt ^ mix((uint64_t)k));
            fputc('\n', out);
        }
    }
}

static char *read_all(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = size >= 0 ? malloc((size_t)size + 1) : NULL;
    if (text && fread(text, 1, (size_t)size, f) == (size_t)size) text[size] = '\0';
    else { free(text); text = NULL; }
    fclose(f);
    return text;
}

/* Chain i is a directory with a perturbed, replicated copy of each file of template i % count. */
static int make_chains(const pipeline_settings *s, const mcl_msa_example *templates, size_t count, const char *root)
{
    for (int i = 0; i < s->examples; i++) {
        const mcl_msa_example *t = &templates[(size_t)i % count];
        char dir[1200];
        snprintf(dir, sizeof dir, "%s/chain%04d", root, i);
        if (mkdir(dir, 0755) != 0) return fprintf(stderr, "megacl bench pipeline: cannot create %s\n", dir), 0;
        for (size_t f = 0; f < t->path_count; f++) {
            const char *base = strrchr(t->paths[f], '/');
            char path[1500];
            snprintf(path, sizeof path, "%s/%s", dir, base ? base + 1 : t->paths[f]);
            char *text = read_all(t->paths[f]);
            FILE *out = fopen(path, "wb");
            if (!text || !out) {
                free(text);
                if (out) fclose(out);
                return fprintf(stderr, "megacl bench pipeline: cannot copy %s to %s\n", t->paths[f], path), 0;
            }
            const char *dot = strrchr(path, '.');
            write_replicated(out, text, dot && strcmp(dot, ".a3m") != 0, s->replicate, (uint64_t)i);
            free(text);
            if (fclose(out) != 0) return fprintf(stderr, "megacl bench pipeline: cannot write %s\n", path), 0;
        }
    }
    return 1;
}

static void remove_tree(const char *path)
{
    DIR *d = opendir(path);
    if (d) {
        for (struct dirent *e; (e = readdir(d));) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char child[4096];
            snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            remove_tree(child);
        }
        closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* ---- measurements -------------------------------------------------------------------------------- */

/* Waits of the consumer: the first step's (the loader starts empty) apart from the rest's. */
typedef struct loop_result {
    double first_wait_ms, wait_mean_ms, wait_max_ms; /* mean and max over the steps after the first */
    double idle_share;                                /* all waits over waits plus compute, every step */
    double seconds;
    size_t steps, failed;
} loop_result;

typedef struct pipeline_figures {
    size_t chains, rows_total;
    double parse_ms, read_ms;           /* per chain */
    uint64_t reads_indexed;             /* of the timed reads, those whose key came from the key index */
    double build_seconds[8];            /* per --jobs value */
    loop_result cold, warm;
} pipeline_figures;

static mcl_status time_parsing(const mcl_msa_example *ex, size_t count, pipeline_figures *fig)
{
    double start = cli_seconds();
    for (size_t i = 0; i < count; i++) {
        mcl_msa_features *f;
        CLI_TRY(mcl_msa_features_from_files(ex[i].paths, ex[i].path_count, &f));
        mcl_msa_arrays a;
        mcl_msa_features_arrays(f, &a);
        fig->rows_total += a.depth;
        mcl_msa_features_release(f);
    }
    fig->parse_ms = (cli_seconds() - start) * 1e3 / (double)count;
    return MCL_OK;
}

static mcl_status time_build(const char *dir, const mcl_msa_example *ex, size_t count, size_t jobs, double *seconds)
{
    remove_tree(dir);
    mcl_feature_cache *cache;
    CLI_TRY(mcl_feature_cache_open(dir, 0, &cache));
    mcl_cache_build_desc desc = {.jobs = jobs};
    double start = cli_seconds();
    mcl_status status = mcl_feature_cache_build(cache, ex, count, &desc, NULL);
    *seconds = cli_seconds() - start;
    mcl_feature_cache_close(cache);
    return status;
}

static mcl_status time_reads(mcl_feature_cache *cache, const mcl_msa_example *ex, size_t count, pipeline_figures *fig)
{
    double start = cli_seconds();
    for (size_t i = 0; i < count; i++) {
        mcl_msa_features *f;
        CLI_TRY(mcl_feature_cache_get(cache, &ex[i], &f));
        mcl_msa_features_release(f);
    }
    fig->read_ms = (cli_seconds() - start) * 1e3 / (double)count;
    mcl_feature_cache_stats stats;
    mcl_feature_cache_get_stats(cache, &stats);
    fig->reads_indexed = stats.indexed;
    return MCL_OK;
}

/* One pass over the chains: next, the compute step (a sleep), release. */
static mcl_status run_loop(const pipeline_settings *s, mcl_feature_cache *cache, mcl_context *ctx,
                           const mcl_msa_example *ex, size_t count, loop_result *r)
{
    mcl_loader_desc desc = {.cache = cache, .examples = ex, .example_count = count, .seed = 1,
                            .batch_size = (size_t)s->batch, .msa_rows = (size_t)s->rows, .crop_size = (size_t)s->crop,
                            .workers = (size_t)s->workers, .prefetch = 2, .context = ctx};
    mcl_loader *loader;
    CLI_TRY(mcl_loader_create(&desc, &loader));
    struct timespec step = {s->step_ms / 1000, (long)(s->step_ms % 1000) * 1000000L};
    double start = cli_seconds(), later_waits = 0;
    mcl_status status;
    mcl_batch b;
    *r = (loop_result){0};
    while ((status = mcl_loader_next(loader, &b)) != MCL_ERR_EXHAUSTED) {
        if (status != MCL_OK) {
            r->failed++;
            continue;
        }
        double wait_ms = b.wait_seconds * 1e3;
        if (r->steps++ == 0) r->first_wait_ms = wait_ms;
        else later_waits += wait_ms;
        if (r->steps > 1 && wait_ms > r->wait_max_ms) r->wait_max_ms = wait_ms;
        nanosleep(&step, NULL);
        if ((status = mcl_loader_release(loader, &b)) != MCL_OK) break;
    }
    r->seconds = cli_seconds() - start;
    mcl_loader_stats stats;
    mcl_loader_get_stats(loader, &stats);
    mcl_loader_destroy(loader);
    if (status != MCL_ERR_EXHAUSTED) return status;
    r->wait_mean_ms = r->steps > 1 ? later_waits / (double)(r->steps - 1) : 0;
    double compute = (double)r->steps * s->step_ms * 1e-3;
    r->idle_share = stats.wait_seconds / (stats.wait_seconds + compute);
    return MCL_OK;
}

/* ---- report ---------------------------------------------------------------------------------------- */

static json_object *loop_json(const loop_result *r)
{
    json_object *o = json_object_new_object();
    json_object_object_add(o, "steps", json_object_new_int64((int64_t)r->steps));
    json_object_object_add(o, "first_wait_ms", json_object_new_double(r->first_wait_ms));
    json_object_object_add(o, "wait_mean_ms_after_first", json_object_new_double(r->wait_mean_ms));
    json_object_object_add(o, "wait_max_ms_after_first", json_object_new_double(r->wait_max_ms));
    json_object_object_add(o, "idle_share", json_object_new_double(r->idle_share));
    json_object_object_add(o, "seconds", json_object_new_double(r->seconds));
    json_object_object_add(o, "failed_steps", json_object_new_int64((int64_t)r->failed));
    return o;
}

static int write_figures_json(const pipeline_settings *s, const pipeline_figures *f, const char *device)
{
    json_object *root = json_object_new_object(), *builds = json_object_new_array();
    json_object_object_add(root, "bench", json_object_new_string("pipeline"));
    json_object_object_add(root, "device", json_object_new_string(device));
    json_object_object_add(root, "chains", json_object_new_int64((int64_t)f->chains));
    json_object_object_add(root, "rows_per_chain", json_object_new_double((double)f->rows_total / (double)f->chains));
    json_object_object_add(root, "step_ms", json_object_new_int(s->step_ms));
    json_object_object_add(root, "batch", json_object_new_int(s->batch));
    json_object_object_add(root, "parse_ms_per_chain", json_object_new_double(f->parse_ms));
    json_object_object_add(root, "cache_read_ms_per_chain", json_object_new_double(f->read_ms));
    json_object_object_add(root, "read_speedup", json_object_new_double(f->parse_ms / f->read_ms));
    json_object_object_add(root, "reads_with_key_from_index", json_object_new_int64((int64_t)f->reads_indexed));
    for (size_t i = 0; i < s->job_count; i++) {
        json_object *b = json_object_new_object();
        json_object_object_add(b, "jobs", json_object_new_int64((int64_t)s->jobs[i]));
        json_object_object_add(b, "seconds", json_object_new_double(f->build_seconds[i]));
        json_object_object_add(b, "chains_per_second", json_object_new_double((double)f->chains / f->build_seconds[i]));
        json_object_array_add(builds, b);
    }
    json_object_object_add(root, "cache_build", builds);
    json_object_object_add(root, "cold", loop_json(&f->cold));
    json_object_object_add(root, "warm", loop_json(&f->warm));
    int ok = json_object_to_file_ext(s->json, root, JSON_C_TO_STRING_PRETTY) == 0;
    if (!ok) fprintf(stderr, "megacl bench pipeline: cannot write %s\n", s->json);
    json_object_put(root);
    return ok;
}

static void print_figures(const pipeline_settings *s, const pipeline_figures *f, const char *device)
{
    printf("pipeline bench: %zu chains (%.0f rows each on average), step %d ms, batch %d, %d x %d per chain, "
           "%d loader threads, staging on %s\n",
           f->chains, (double)f->rows_total / (double)f->chains, s->step_ms, s->batch, s->rows, s->crop, s->workers,
           device);
    printf("  parse            %8.3f ms per chain\n", f->parse_ms);
    printf("  cache read       %8.3f ms per chain  (%.1fx faster than parsing; target 20x; %llu of %zu keys from the"
           " key index)\n", f->read_ms, f->parse_ms / f->read_ms, (unsigned long long)f->reads_indexed, f->chains);
    for (size_t i = 0; i < s->job_count; i++)
        printf("  cache build      %8.2f s with %zu job%s (%.1f chains/s, %.2fx of 1 job)\n", f->build_seconds[i],
               s->jobs[i], s->jobs[i] == 1 ? "" : "s", (double)f->chains / f->build_seconds[i],
               f->build_seconds[0] / f->build_seconds[i]);
    const loop_result *loops[2] = {&f->cold, &f->warm};
    const char *names[2] = {"cold (parse online)", "warm (cache)"};
    for (int i = 0; i < 2; i++)
        printf("  %-20s wait %8.3f ms per step (%.2f %% of the step%s), max %.3f ms, first step %.3f ms;"
               " device idle %.2f %% of %zu steps\n",
               names[i], loops[i]->wait_mean_ms, 100.0 * loops[i]->wait_mean_ms / s->step_ms,
               i == 1 ? "; target under 1 %" : "", loops[i]->wait_max_ms, loops[i]->first_wait_ms,
               100.0 * loops[i]->idle_share, loops[i]->steps);
}

/* ---- the command ----------------------------------------------------------------------------------- */

static int parse_settings(int argc, char **argv, pipeline_settings *s)
{
    cli_option o[] = {{.name = "--msa-dir", .takes_value = 1}, {.name = "--examples", .takes_value = 1}, {.name = "--replicate", .takes_value = 1}, {.name = "--step-ms", .takes_value = 1}, {.name = "--batch", .takes_value = 1},
                      {.name = "--rows", .takes_value = 1},    {.name = "--crop", .takes_value = 1},     {.name = "--workers", .takes_value = 1},   {.name = "--jobs", .takes_value = 1},    {.name = "--device", .takes_value = 1},
                      {.name = "--json", .takes_value = 1},    {.name = "--keep", .takes_value = 0},     {.name = "--help", .takes_value = 0}};
    if (!cli_parse(argc, argv, 2, o, sizeof o / sizeof o[0], "bench pipeline")) return 2;
    if (o[12].given) return fputs(pipeline_help, stdout), 0;
    *s = (pipeline_settings){.msa_dir = "tests/data/msa", .examples = 200, .replicate = 4, .step_ms = 10, .batch = 1,
                             .rows = 512, .crop = 256, .workers = 2, .jobs = {1, 2}, .job_count = 2};
    int *ints[] = {NULL, &s->examples, &s->replicate, &s->step_ms, &s->batch, &s->rows, &s->crop, &s->workers};
    const int max[] = {0, 100000, 64, 100000, 64, 1 << 16, 1 << 16, 256};
    for (int i = 1; i < 8; i++)
        if (o[i].value && !cli_parse_int(o[i].value, 1, max[i], ints[i]))
            return cli_usage("bench pipeline", "%s '%s' is not a number from 1 to %d", o[i].name, o[i].value, max[i]) + 2;
    if (o[8].value && (!cli_parse_sizes(o[8].value, s->jobs, 8, &s->job_count) || s->jobs[0] > 4096))
        return cli_usage("bench pipeline", "--jobs '%s' is not a list of thread counts", o[8].value) + 2;
    if (o[0].value) s->msa_dir = o[0].value;
    s->device = o[9].value;
    s->json = o[10].value;
    s->keep = o[11].given;
    return -1;
}

static mcl_status run_bench(const pipeline_settings *s, const char *root, mcl_context *ctx, pipeline_figures *fig)
{
    char chains_dir[1100], cache_dir[1100];
    snprintf(chains_dir, sizeof chains_dir, "%s/chains", root);
    snprintf(cache_dir, sizeof cache_dir, "%s/cache", root);
    mcl_msa_example *templates, *ex;
    size_t template_count, count;
    CLI_TRY(mcl_msa_examples_scan(s->msa_dir, &templates, &template_count));
    int made = template_count > 0 && mkdir(chains_dir, 0755) == 0 && make_chains(s, templates, template_count, chains_dir);
    mcl_msa_examples_free(templates, template_count);
    if (!made) {
        fprintf(stderr, "megacl bench pipeline: no chains made from %s\n", s->msa_dir);
        return MCL_ERR_IO;
    }
    CLI_TRY(mcl_msa_examples_scan(chains_dir, &ex, &count));
    fig->chains = count;
    mcl_status status = time_parsing(ex, count, fig);
    for (size_t i = 0; i < s->job_count && status == MCL_OK; i++)
        status = time_build(cache_dir, ex, count, s->jobs[i], &fig->build_seconds[i]);
    mcl_feature_cache *cache = NULL;
    if (status == MCL_OK) status = mcl_feature_cache_open(cache_dir, 0, &cache);
    if (status == MCL_OK) status = time_reads(cache, ex, count, fig);
    if (status == MCL_OK) status = run_loop(s, NULL, ctx, ex, count, &fig->cold);
    if (status == MCL_OK) status = run_loop(s, cache, ctx, ex, count, &fig->warm);
    mcl_feature_cache_close(cache);
    mcl_msa_examples_free(ex, count);
    return status;
}

int cmd_bench_pipeline(int argc, char **argv)
{
    pipeline_settings s;
    int parsed = parse_settings(argc, argv, &s);
    if (parsed >= 0) return parsed;
    mcl_context *ctx = NULL;
    char device[160] = "host memory (no device)";
    if (!s.device || strcmp(s.device, "none") != 0) {
        mcl_status status = mcl_context_create(s.device, &ctx);
        if (status != MCL_OK) return cli_fail("bench pipeline", status);
        snprintf(device, sizeof device, "%s", mcl_context_device(ctx)->name);
    }
    const char *tmp = getenv("TMPDIR");
    char root[1024];
    snprintf(root, sizeof root, "%s/megacl-bench-pipeline-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(root)) {
        mcl_context_release(ctx);
        fprintf(stderr, "megacl bench pipeline: cannot create %s: %s\n", root, strerror(errno));
        return 1;
    }
    pipeline_figures fig = {0};
    mcl_status status = run_bench(&s, root, ctx, &fig);
    mcl_context_release(ctx);
    if (s.keep) printf("chains and cache kept in %s\n", root);
    else remove_tree(root);
    if (status != MCL_OK) return cli_fail("bench pipeline", status);
    print_figures(&s, &fig, device);
    return s.json && !write_figures_json(&s, &fig, device) ? 1 : 0;
}
