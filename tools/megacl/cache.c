/* megacl cache: build the MSA feature cache ahead of time, list, verify and sum it up. */
#include "cli.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char build_help[] =
    "usage: megacl cache build --msa-dir DIR --out CACHE [--jobs N] [--shard I/N] [--compress LEVEL]\n"
    "\n"
    "Parses every chain under DIR (a subdirectory of .a3m/.sto files per chain, as OpenFold lays\n"
    "them out, or single alignment files) and stores its MSA features in the cache directory CACHE.\n"
    "Entries already there are kept. A chain that fails to parse is reported and skipped.\n"
    "\n"
    "  --jobs N          worker threads (default 1)\n"
    "  --shard I/N       build only the chains whose index i has i %% N == I (0 <= I < N), so that\n"
    "                    N machines (a Slurm job array, say) share the work and one cache directory\n"
    "  --compress LEVEL  zstd level 1..19 for new entries (default 0: raw, read by mapping in place)\n";

static const char ls_help[] =
    "usage: megacl cache ls --cache DIR\n"
    "\n"
    "Lists the entries of a feature cache: key, chain name, rows, columns, size on disk, and any\n"
    "entry whose header is unsound (a full check is `megacl cache verify`).\n";

static const char verify_help[] =
    "usage: megacl cache verify --cache DIR [--delete]\n"
    "\n"
    "Checks every entry of a feature cache whole (header, checksums, values) and names each unsound\n"
    "one. Exits 1 if any is. --delete removes the unsound entries (the next build or load rebuilds\n"
    "them).\n";

static const char stats_help[] =
    "usage: megacl cache stats --cache DIR\n"
    "\n"
    "Sums up a feature cache: entries, rows, bytes on disk and uncompressed, unsound headers.\n";

/* Parses "I/N" with 0 <= I < N. */
static int parse_shard(const char *text, size_t *index, size_t *count)
{
    const char *slash = strchr(text, '/');
    if (!slash || slash == text) return 0;
    char first[32];
    size_t n = (size_t)(slash - text);
    if (n >= sizeof first) return 0;
    memcpy(first, text, n);
    first[n] = '\0';
    int i, total;
    if (!cli_parse_int(first, 0, 1 << 20, &i) || !cli_parse_int(slash + 1, 1, 1 << 20, &total) || i >= total) return 0;
    *index = (size_t)i;
    *count = (size_t)total;
    return 1;
}

/* ---- build ------------------------------------------------------------------------------------ */

typedef struct progress_view {
    int terminal;      /* redraw one bar in place, else print a line per tenth of the work */
    size_t last_tenth;
    int finished;
} progress_view;

static void show_progress(const mcl_cache_build_progress *p, void *user)
{
    progress_view *view = user;
    if (p->failed_example) {
        fprintf(stderr, "%smegacl cache build: %s: %s: %s\n", view->terminal ? "\r\033[K" : "", p->failed_example->name,
                mcl_status_name(p->failed_status), p->failed_message);
        return;
    }
    size_t total = p->total ? p->total : 1, tenth = p->done * 10 / total;
    int finished = p->done == p->total;
    if (view->finished || (!view->terminal && tenth <= view->last_tenth && !finished)) return;
    view->last_tenth = tenth;
    view->finished = finished;
    if (!view->terminal) {
        fprintf(stderr, "cache build: %zu/%zu built %zu present %zu failed %zu\n", p->done, p->total, p->built,
                p->present, p->failed);
        return;
    }
    char bar[41];
    for (size_t i = 0; i < 40; i++) bar[i] = i < p->done * 40 / total ? '#' : ' ';
    bar[40] = '\0';
    fprintf(stderr, "\r[%s] %zu/%zu  built %zu  present %zu  failed %zu%s", bar, p->done, p->total, p->built,
            p->present, p->failed, finished ? "\n" : "");
}

static int cache_build(int argc, char **argv)
{
    cli_option o[] = {{.name = "--msa-dir", .takes_value = 1}, {.name = "--out", .takes_value = 1}, {.name = "--jobs", .takes_value = 1}, {.name = "--shard", .takes_value = 1}, {.name = "--compress", .takes_value = 1}, {.name = "--help", .takes_value = 0}};
    if (!cli_parse(argc, argv, 2, o, 6, "cache build")) return 2;
    if (o[5].given) return fputs(build_help, stdout), 0;
    int jobs = 1, level = 0;
    size_t shard_index = 0, shard_count = 1;
    if (!o[0].value || !o[1].value) return cli_usage("cache build", "--msa-dir and --out are required") + 2;
    if (o[2].value && !cli_parse_int(o[2].value, 1, 4096, &jobs))
        return cli_usage("cache build", "--jobs '%s' is not a number from 1 to 4096", o[2].value) + 2;
    if (o[3].value && !parse_shard(o[3].value, &shard_index, &shard_count))
        return cli_usage("cache build", "--shard '%s' is not I/N with 0 <= I < N", o[3].value) + 2;
    if (o[4].value && !cli_parse_int(o[4].value, 0, 19, &level))
        return cli_usage("cache build", "--compress '%s' is not a level from 0 to 19", o[4].value) + 2;

    mcl_msa_example *examples;
    size_t count;
    mcl_status status = mcl_msa_examples_scan(o[0].value, &examples, &count);
    if (status != MCL_OK) return cli_fail("cache build", status);
    mcl_feature_cache *cache;
    status = mcl_feature_cache_open(o[1].value, level, &cache);
    if (status != MCL_OK) {
        mcl_msa_examples_free(examples, count);
        return cli_fail("cache build", status);
    }
    progress_view view = {.terminal = isatty(fileno(stderr))};
    mcl_cache_build_desc desc = {.jobs = (size_t)jobs, .shard_index = shard_index, .shard_count = shard_count,
                                 .report = show_progress, .user = &view};
    mcl_cache_build_progress result = {0};
    status = mcl_feature_cache_build(cache, examples, count, &desc, &result);
    printf("cache build: %zu chains in %s (shard %zu/%zu): %zu built, %zu present, %zu failed\n", result.total,
           o[0].value, shard_index, shard_count, result.built, result.present, result.failed);
    mcl_feature_cache_close(cache);
    mcl_msa_examples_free(examples, count);
    return status == MCL_OK ? 0 : 1;
}

/* ---- ls, verify, stats -------------------------------------------------------------------------- */

/* Opens an existing cache directory (ls, verify and stats create nothing). */
static int open_existing(const char *dir, const char *command, mcl_feature_cache **cache)
{
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "megacl %s: %s is not a directory\n", command, dir);
        return 0;
    }
    mcl_status status = mcl_feature_cache_open(dir, 0, cache);
    return status == MCL_OK || (cli_fail(command, status), 0);
}

static int print_entry(const mcl_cache_entry_info *e, void *user)
{
    (void)user;
    if (e->check != MCL_OK)
        printf("%s  UNSOUND: %s\n", e->key, e->problem);
    else
        printf("%s  %-24s %7llu %6llu %10.1f%s\n", e->key, e->name, (unsigned long long)e->depth,
               (unsigned long long)e->length, (double)e->file_bytes / 1024.0, e->compressed ? "  zstd" : "");
    return 0;
}

typedef struct tally {
    size_t entries, unsound, removed;
    uint64_t rows, file_bytes, array_bytes, compressed;
    mcl_feature_cache *cache; /* verify --delete: remove unsound entries through it */
} tally;

static int count_entry(const mcl_cache_entry_info *e, void *user)
{
    tally *t = user;
    t->entries++;
    if (e->check != MCL_OK) {
        t->unsound++;
        printf("%s: %s: %s\n", e->path, mcl_status_name(e->check), e->problem);
        if (t->cache && mcl_feature_cache_remove(t->cache, e->key) == MCL_OK) t->removed++;
        return 0;
    }
    t->rows += e->depth;
    t->file_bytes += e->file_bytes;
    t->array_bytes += e->array_bytes;
    t->compressed += e->compressed != 0;
    return 0;
}

static int cache_inspect(int argc, char **argv, const char *name, const char *help, int full)
{
    cli_option o[] = {{.name = "--cache", .takes_value = 1}, {.name = "--help", .takes_value = 0}, {.name = "--delete", .takes_value = 0}};
    size_t option_count = full ? 3 : 2; /* --delete is verify's */
    char command[32];
    snprintf(command, sizeof command, "cache %s", name);
    if (!cli_parse(argc, argv, 2, o, option_count, command)) return 2;
    if (o[1].given) return fputs(help, stdout), 0;
    if (!o[0].value) return cli_usage(command, "--cache is required") + 2;
    mcl_feature_cache *cache;
    if (!open_existing(o[0].value, command, &cache)) return 1;
    tally t = {.cache = o[2].given ? cache : NULL};
    int listing = strcmp(name, "ls") == 0;
    if (listing) printf("%-32s  %-24s %7s %6s %10s\n", "key", "name", "rows", "cols", "KiB");
    mcl_status status = mcl_feature_cache_walk(cache, full, listing ? print_entry : count_entry, &t);
    mcl_feature_cache_close(cache);
    if (status != MCL_OK) return cli_fail(command, status);
    if (listing) return 0;
    if (full) {
        printf("cache verify: %zu entries, %zu sound, %zu unsound%s\n", t.entries, t.entries - t.unsound, t.unsound,
               t.cache ? (t.removed == t.unsound ? " (removed)" : " (not all could be removed)") : "");
        return t.unsound ? 1 : 0;
    }
    printf("entries            %zu (%llu zstd-compressed, %zu with an unsound header)\n", t.entries,
           (unsigned long long)t.compressed, t.unsound);
    printf("rows               %llu (%.1f per entry)\n", (unsigned long long)t.rows,
           t.entries > t.unsound ? (double)t.rows / (double)(t.entries - t.unsound) : 0.0);
    printf("bytes on disk      %.1f MiB\n", (double)t.file_bytes / (1 << 20));
    printf("arrays             %.1f MiB uncompressed\n", (double)t.array_bytes / (1 << 20));
    return 0;
}

int cmd_cache(int argc, char **argv)
{
    const char *sub = argc >= 2 ? argv[1] : "";
    if (strcmp(sub, "build") == 0) return cache_build(argc, argv);
    if (strcmp(sub, "ls") == 0) return cache_inspect(argc, argv, "ls", ls_help, 0);
    if (strcmp(sub, "verify") == 0) return cache_inspect(argc, argv, "verify", verify_help, 1);
    if (strcmp(sub, "stats") == 0) return cache_inspect(argc, argv, "stats", stats_help, 0);
    if (strcmp(sub, "--help") == 0 && argc == 2) {
        printf("usage: megacl cache build|ls|verify|stats [options]   (megacl cache <command> --help)\n");
        return 0;
    }
    fprintf(stderr, "megacl cache: unknown command '%s' (build, ls, verify, stats)\n", sub);
    return 2;
}
