/* megacl tune: the autotuner over the workloads' cases (tests/workload). Each case is run once
 * and checked against the double-precision reference while the context records which families
 * and shape buckets its calls look up; each (family, dtype, bucket) met is then tuned with one
 * case that meets it (see add_job), through the very calls users make, and the winner is written to the
 * tuning database before the next job starts (later jobs run with it). megacl tune --show
 * prints what the databases hold for the device. */
#include "cli.h"

#include "workload/tune_target.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_CASES 96
#define MAX_JOBS 128

/* The order of the default set: the GEMM buckets are tuned on Transition and the triangle
 * update first, which run them most; the AF3 families before the SPLAT and FLuRKA ones. */
static const char *const tuning_order[] = {"transition", "trimul", "ln_linear", "layernorm", "gating",
                                           "swiglu",     "evoattn", "acsr",     "flurka"};

/* A case to tune on: a workload's named case (name NULL: every default case of the workload). */
typedef struct tune_case {
    const wl_workload *w;
    const char *name;
    wl_case c;
} tune_case;

typedef struct tune_cli {
    mcl_dtype dtypes[3];
    size_t dtype_count;
    const char *family, *shapes;
    tune_case cases[MAX_CASES];
    size_t case_count;
    int custom; /* --shapes chose the cases */
    double budget;
    mcl_tune_strategy strategy;
    int resume, reps, progress_bar;
    size_t candidates;
    mcl_tune_level level;
    char record[1100], command[512];
} tune_cli;

/* ---- the cases ---------------------------------------------------------------------------- */

static int add_case(tune_cli *t, const wl_workload *w, const char *name, const wl_case *c)
{
    if (t->case_count == MAX_CASES) return cli_usage("tune", "more than %d cases", MAX_CASES);
    t->cases[t->case_count++] = (tune_case){w, name, *c};
    return 1;
}

static int find_named_case(const wl_workload *w, const char *name, const wl_named_case **found)
{
    const wl_named_case *lists[2] = {w->cases, w->cpu_cases};
    size_t counts[2] = {w->case_count, w->cpu_case_count};
    for (int l = 0; l < 2; l++)
        for (size_t i = 0; i < counts[l]; i++)
            if (strcmp(lists[l][i].name, name) == 0) return *found = &lists[l][i], 1;
    return 0;
}

/* One --shapes item: WORKLOAD (its default cases, chosen once the device is known),
 * WORKLOAD:CASE NAME, or WORKLOAD=SIZES (a custom shape with the workload's first case's options). */
static int parse_item(tune_cli *t, const char *item)
{
    size_t len = strcspn(item, ":=");
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)len, item);
    const wl_workload *w = cli_find_workload(name);
    if (!w) return cli_usage("tune", "--shapes: no workload '%s' (%s)", name, CLI_WORKLOAD_NAMES);
    if (item[len] == '\0') {
        wl_case none = {{0}, MCL_F32, 0, 0, 0};
        return add_case(t, w, NULL, &none); /* a NULL name: every default case */
    }
    if (item[len] == ':') {
        const wl_named_case *found;
        if (!find_named_case(w, item + len + 1, &found))
            return cli_usage("tune", "--shapes: %s has no case '%s' (megacl bench --list shows them)", w->name,
                             item + len + 1);
        return add_case(t, w, found->name, &found->c);
    }
    wl_case c = w->cases[0].c;
    size_t n;
    if (!cli_parse_sizes(item + len + 1, c.shape, WL_MAX_RANK, &n) || n != w->rank)
        return cli_usage("tune", "--shapes: %s takes %zu positive sizes %s, not '%s'", w->name, w->rank,
                         w->shape_names, item + len + 1);
    return add_case(t, w, "custom", &c);
}

/* --shapes: an item, or a file with one item a line (# starts a comment). */
static int parse_shapes(tune_cli *t, const char *arg)
{
    t->custom = 1;
    FILE *file = fopen(arg, "r");
    if (!file) return parse_item(t, arg);
    char line[512];
    int ok = 1;
    while (ok && fgets(line, sizeof line, file)) {
        line[strcspn(line, "#\r\n")] = '\0';
        size_t end = strlen(line);
        while (end && line[end - 1] == ' ') line[--end] = '\0';
        if (line[0]) ok = parse_item(t, line);
    }
    fclose(file);
    return ok && (t->case_count ? 1 : cli_usage("tune", "--shapes file %s names no case", arg));
}

/* The cases to run on the device: --shapes's, with a workload alone standing for its defaults. */
static size_t device_cases(const tune_cli *t, const mcl_device_info *device, tune_case *out)
{
    size_t n = 0;
    tune_case all[MAX_CASES];
    size_t count = t->case_count;
    if (!t->custom) {
        count = 0;
        for (size_t i = 0; i < WL_COUNT(tuning_order); i++)
            all[count++] = (tune_case){cli_find_workload(tuning_order[i]), NULL, {{0}, MCL_F32, 0, 0, 0}};
    } else {
        memcpy(all, t->cases, count * sizeof *all);
    }
    for (size_t i = 0; i < count && n < MAX_CASES; i++) {
        if (all[i].name) {
            out[n++] = all[i];
            continue;
        }
        size_t k;
        const wl_named_case *cases = wl_default_cases(all[i].w, device, &k);
        for (size_t j = 0; j < k && n < MAX_CASES; j++) out[n++] = (tune_case){all[i].w, cases[j].name, cases[j].c};
    }
    return n;
}

/* ---- progress ---------------------------------------------------------------------------- */

typedef struct progress_state {
    const tune_cli *t;
    size_t job, jobs;
    size_t last_done;
} progress_state;

static void show_progress(void *user, const mcl_tune_progress *p)
{
    progress_state *s = user;
    char left[32] = "";
    if (p->seconds_left >= 0.0) snprintf(left, sizeof left, ", %.0f s left", p->seconds_left);
    if (s->t->progress_bar) {
        int width = 24, filled = p->total ? (int)(width * p->done / p->total) : width;
        fprintf(stderr, "\r[%zu/%zu] %-9s [%.*s%*s] %zu/%zu  best %.4g ms (defaults %.4g)%s   ", s->job, s->jobs,
                p->stage, filled, "########################", width - filled, "", p->done, p->total, p->best_ms,
                p->reference_ms, left);
    } else if (p->done == p->total || p->done >= s->last_done + 16 || p->done < s->last_done) {
        fprintf(stderr, "  %s: %zu/%zu candidates, best %.4g ms (defaults %.4g)%s\n", p->stage, p->done, p->total,
                p->best_ms, p->reference_ms, left);
    }
    s->last_done = p->done;
}

/* ---- the run ------------------------------------------------------------------------------- */

/* A (family, dtype, bucket) to tune, and the case it is tuned on. */
typedef struct tune_job {
    tune_case tc;
    mcl_lookup_info lookup;
} tune_job;

static tune_job *find_job(tune_job *jobs, size_t n, const mcl_lookup_info *l)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(jobs[i].lookup.family, l->family) == 0 && jobs[i].lookup.dtype == l->dtype &&
            strcmp(jobs[i].lookup.bucket, l->bucket) == 0)
            return &jobs[i];
    return NULL;
}

/* A bucket is tuned with the first case that meets it, unless a case of the family's own
 * workload meets it too (LayerNorm's bucket on the LayerNorm case, not inside Transition, whose
 * time its GEMMs would drown). */
static void add_job(tune_job *jobs, size_t *n, const tune_case *tc, const mcl_lookup_info *l)
{
    tune_job *known = find_job(jobs, *n, l);
    if (!known && *n < MAX_JOBS) jobs[(*n)++] = (tune_job){*tc, *l};
    else if (known && strcmp(known->tc.w->family, l->family) != 0 && strcmp(tc->w->family, l->family) == 0)
        *known = (tune_job){*tc, *l};
}

/* Runs a case once against the reference, recording its lookups; adds a job for each new one. */
static int discover(mcl_context *ctx, const tune_cli *t, const tune_case *tc, tune_job *jobs, size_t *n)
{
    host_rng rng = host_rng_seeded(wl_case_seed(&tc->c));
    wl_problem *p = NULL;
    double err[WL_MAX_TENSORS], tol[WL_MAX_TENSORS];
    int ok = 0;
    mcl_status status = wl_create(tc->w, ctx, &tc->c, &rng, &p);
    if (status == MCL_OK) status = wl_place(p, WL_OFF_ZERO);
    if (status == MCL_OK) status = wl_op(mcl_context_trace_lookups(ctx, 1));
    if (status == MCL_OK) status = wl_verify(p, NULL, err, tol, &ok);
    mcl_context_trace_lookups(ctx, 0);
    wl_destroy(p);
    if (status != MCL_OK || !ok) {
        printf("%s %s %s: skipped, %s\n", tc->w->name, tc->name, mcl_dtype_name(tc->c.dtype),
               status != MCL_OK ? wl_last_error() : "the current parameters fail the reference check");
        return status == MCL_OK;
    }
    for (size_t i = 0; i < mcl_context_lookup_count(ctx); i++) {
        mcl_lookup_info l;
        mcl_context_lookup(ctx, i, &l);
        if (!t->family || strcmp(t->family, l.family) == 0) add_job(jobs, n, tc, &l);
    }
    return 1;
}

static void print_result(const tune_job *j, const mcl_tune_result *r)
{
    printf("%-9s %-5s %-24s %-10s %-26s %9.4f %9.4f %6.2fx %s%s\n", j->lookup.family, mcl_dtype_name(j->lookup.dtype),
           j->lookup.bucket, j->tc.w->name, j->tc.name, r->reference_ms, r->ms, r->reference_ms / r->ms, r->params,
           r->finished_before ? " (from the record)" : "");
    fflush(stdout);
}

static mcl_status tune_job_run(mcl_context *ctx, const tune_cli *t, const tune_job *j, double budget,
                               progress_state *progress, mcl_tune_result *result)
{
    wl_tune_sets sets;
    mcl_tune_target target;
    WL_TRY(wl_tune_target(ctx, j->tc.w, j->tc.name, &j->tc.c, j->lookup.family, j->lookup.shape, &sets, &target));
    mcl_tune_settings settings = {.strategy = t->strategy, .budget_seconds = budget, .max_candidates = t->candidates,
                                  .reps = t->reps, .seed = 0x6d65676163ull, .record = t->record,
                                  .progress = show_progress, .progress_user = progress};
    mcl_status status = wl_op(mcl_tune(ctx, &target, &settings, result));
    if (t->progress_bar) fputc('\n', stderr);
    wl_tune_sets_free(&sets);
    if (status != MCL_OK) return status;
    mcl_tuning_entry entry = {j->lookup.family, t->level, j->lookup.dtype, result->bucket, result->params,
                              result->ms, result->reference_ms, t->command};
    WL_TRY(wl_op(mcl_tuning_db_store(NULL, mcl_context_device(ctx), &entry)));
    return wl_op(mcl_context_reload_tuning(ctx));
}

static int run_tuning(mcl_context *ctx, const tune_cli *t)
{
    tune_case cases[MAX_CASES];
    size_t case_count = device_cases(t, mcl_context_device(ctx), cases), job_count = 0;
    static tune_job jobs[MAX_JOBS];
    double started = cli_seconds(); /* the budget covers finding the jobs too */
    printf("finding what the cases' calls look up (each case checked against the reference once)\n");
    for (size_t i = 0; i < case_count * t->dtype_count; i++) {
        if (t->budget > 0.0 && cli_seconds() - started >= t->budget) {
            printf("budget spent: %zu of %zu cases not looked at\n", case_count * t->dtype_count - i,
                   case_count * t->dtype_count);
            break;
        }
        tune_case tc = cases[i / t->dtype_count];
        tc.c.dtype = t->dtypes[i % t->dtype_count];
        if (!discover(ctx, t, &tc, jobs, &job_count)) return 1;
    }
    printf("%zu jobs; record %s\n\n%-9s %-5s %-24s %-10s %-26s %9s %9s %7s %s\n", job_count, t->record, "family", "dtype",
           "bucket", "workload", "case", "dflt ms", "tuned ms", "speedup", "parameters");
    int failed = 0;
    for (size_t i = 0; i < job_count; i++) {
        double left = t->budget - (cli_seconds() - started);
        if (t->budget > 0.0 && left <= 0.0) {
            printf("budget spent: %zu of %zu jobs not run\n", job_count - i, job_count);
            break;
        }
        double share = t->budget > 0.0 ? left / (double)(job_count - i) : 0.0;
        progress_state progress = {t, i + 1, job_count, 0};
        mcl_tune_result result;
        if (tune_job_run(ctx, t, &jobs[i], share, &progress, &result) == MCL_OK) {
            print_result(&jobs[i], &result);
        } else {
            printf("%-9s %-5s %-24s failed: %s\n", jobs[i].lookup.family, mcl_dtype_name(jobs[i].lookup.dtype),
                   jobs[i].lookup.bucket, wl_last_error());
            failed = 1;
        }
    }
    char db[1100];
    if (mcl_tuning_db_path(db, sizeof db) == MCL_OK) printf("\nwinners in %s\n", db);
    return failed;
}

/* ---- --show --------------------------------------------------------------------------------- */

static int show(mcl_context *ctx)
{
    size_t n = mcl_context_tuning_entry_count(ctx);
    const mcl_device_info *d = mcl_context_device(ctx);
    printf("tuning entries for %s (%s, %s): %zu\n", d->name, mcl_vendor_name(d->vendor), d->arch, n);
    for (size_t i = 0; i < n; i++) {
        mcl_tuning_entry_info e;
        if (mcl_context_tuning_entry(ctx, i, &e) != MCL_OK) return cli_fail("reading the tuning databases", MCL_ERR_PARSE);
        printf("%s %-9s %-5s %-24s %s\n", e.in_use ? "*" : " ", e.family, e.dtype, e.bucket[0] ? e.bucket : "(any)",
               e.params);
        printf("    from %s (%s)", e.origin, e.level);
        if (isfinite(e.ms) && isfinite(e.default_ms))
            printf("; %.4g ms against %.4g with the defaults", e.ms, e.default_ms);
        if (e.measured_on[0]) printf("; measured on %s", e.measured_on);
        printf("\n");
        if (e.command[0]) printf("    by: %s\n", e.command);
    }
    printf("(* the entry a lookup takes; MEGACL_TUNE=off ignores them all)\n");
    return 0;
}

/* ---- options ------------------------------------------------------------------------------- */

enum {
    OPT_DEVICE, OPT_FAMILY, OPT_DTYPE, OPT_SHAPES, OPT_BUDGET, OPT_STRATEGY, OPT_RESUME, OPT_RECORD, OPT_DB,
    OPT_LEVEL, OPT_CANDIDATES, OPT_REPS, OPT_SHOW, OPT_HELP, OPT_COUNT
};

static void print_tune_help(void)
{
    printf("usage: megacl tune [options]        tune kernel families on the device, winners to the database\n"
           "       megacl tune --show           what the tuning databases hold for the device\n"
           "  --device SEL       device selector (default: MEGACL_DEVICE, else first GPU)\n"
           "  --family F         tune only this family (see megacl params)\n"
           "  --dtype LIST       f32,bf16,f16 (default f32,bf16)\n"
           "  --shapes ITEM      WORKLOAD, WORKLOAD:CASE NAME, WORKLOAD=SIZES, or a file of such lines\n"
           "                     (default: every workload's cases for the device)\n"
           "  --budget SECONDS   wall time for the whole run, finding the jobs included (default: none)\n"
           "  --strategy S       auto, exhaustive, random or annealing (default auto)\n"
           "  --candidates N     candidates per stage at most (default 128)\n"
           "  --reps N           timed runs per candidate, median kept (default 5)\n"
           "  --record FILE      JSON lines of every result (default tune-record.jsonl beside the database)\n"
           "  --resume           continue the record's run instead of starting anew\n"
           "  --db FILE          read and write this database instead of MEGACL_TUNING_DB\n"
           "  --level L          where winners apply: device (default), arch or vendor\n");
}

static int parse_strategy(const char *name, mcl_tune_strategy *out)
{
    for (int s = MCL_TUNE_AUTO; s <= MCL_TUNE_ANNEALING; s++)
        if (strcmp(name, mcl_tune_strategy_name((mcl_tune_strategy)s)) == 0) return *out = (mcl_tune_strategy)s, 1;
    return cli_usage("tune", "--strategy takes auto, exhaustive, random or annealing, not '%s'", name);
}

static int parse_level(const char *name, mcl_tune_level *out)
{
    static const char *const names[] = {"device", "arch", "vendor"};
    for (int l = 0; l < 3; l++)
        if (strcmp(name, names[l]) == 0) return *out = (mcl_tune_level)l, 1;
    return cli_usage("tune", "--level takes device, arch or vendor, not '%s'", name);
}

static int family_known(const char *name)
{
    mcl_family_info f;
    for (size_t i = 0; i < mcl_family_count(); i++)
        if (mcl_family_get(i, &f) == MCL_OK && strcmp(f.name, name) == 0) return 1;
    return cli_usage("tune", "--family: no kernel family '%s' (megacl params lists them)", name);
}

static void record_command(tune_cli *t, int argc, char **argv)
{
    size_t used = (size_t)snprintf(t->command, sizeof t->command, "megacl");
    for (int i = 0; i < argc && used < sizeof t->command; i++)
        used += (size_t)snprintf(t->command + used, sizeof t->command - used, " %s", argv[i]);
}

static int parse_options(cli_option *o, tune_cli *t)
{
    int budget = 0, candidates = 0;
    if (o[OPT_BUDGET].value && !cli_parse_int(o[OPT_BUDGET].value, 1, 100000000, &budget))
        return cli_usage("tune", "--budget takes whole seconds from 1, not '%s'", o[OPT_BUDGET].value);
    if (o[OPT_CANDIDATES].value && !cli_parse_int(o[OPT_CANDIDATES].value, 1, 1000000, &candidates))
        return cli_usage("tune", "--candidates takes a whole number from 1, not '%s'", o[OPT_CANDIDATES].value);
    if (o[OPT_REPS].value && !cli_parse_int(o[OPT_REPS].value, 1, 64, &t->reps))
        return cli_usage("tune", "--reps takes a whole number from 1 to 64, not '%s'", o[OPT_REPS].value);
    t->budget = budget, t->candidates = (size_t)candidates;
    t->family = o[OPT_FAMILY].value;
    t->resume = o[OPT_RESUME].given;
    if (t->family && !family_known(t->family)) return 0;
    if (!cli_parse_dtypes(o[OPT_DTYPE].value ? o[OPT_DTYPE].value : "f32,bf16", t->dtypes, &t->dtype_count, "tune"))
        return 0;
    if (o[OPT_STRATEGY].value && !parse_strategy(o[OPT_STRATEGY].value, &t->strategy)) return 0;
    if (o[OPT_LEVEL].value && !parse_level(o[OPT_LEVEL].value, &t->level)) return 0;
    if (o[OPT_SHAPES].value && !parse_shapes(t, o[OPT_SHAPES].value)) return 0;
    if (o[OPT_SHOW].given) {
        for (int i = 0; i < OPT_COUNT; i++)
            if (o[i].given && i != OPT_SHOW && i != OPT_DEVICE && i != OPT_DB)
                return cli_usage("tune", "--show takes only --device and --db, not %s", o[i].name);
    }
    return 1;
}

/* The record's path: --record, else beside the database the run reads and writes. */
static int choose_record(tune_cli *t, const char *given)
{
    char db[1100];
    if (given) snprintf(t->record, sizeof t->record, "%s", given);
    else if (mcl_tuning_db_path(db, sizeof db) == MCL_OK) {
        char *slash = strrchr(db, '/');
        snprintf(t->record, sizeof t->record, "%.*stune-record.jsonl", slash ? (int)(slash - db + 1) : 0, db);
    }
    if (t->resume) return 1;
    FILE *fresh = fopen(t->record, "w"); /* a new run starts a new record */
    if (fresh) fclose(fresh);
    return 1;
}

int cmd_tune(int argc, char **argv)
{
    cli_option o[OPT_COUNT] = {
        {.name = "--device", .takes_value = 1},   {.name = "--family", .takes_value = 1},
        {.name = "--dtype", .takes_value = 1},    {.name = "--shapes", .takes_value = 1},
        {.name = "--budget", .takes_value = 1},   {.name = "--strategy", .takes_value = 1},
        {.name = "--resume"},                     {.name = "--record", .takes_value = 1},
        {.name = "--db", .takes_value = 1},       {.name = "--level", .takes_value = 1},
        {.name = "--candidates", .takes_value = 1}, {.name = "--reps", .takes_value = 1},
        {.name = "--show"},                       {.name = "--help"},
    };
    static tune_cli t;
    memset(&t, 0, sizeof t);
    if (!cli_parse(argc, argv, 1, o, OPT_COUNT, "tune") || !parse_options(o, &t)) return 2;
    if (o[OPT_HELP].given) {
        print_tune_help();
        return 0;
    }
    if (o[OPT_DB].value && setenv("MEGACL_TUNING_DB", o[OPT_DB].value, 1) != 0) return cli_usage("tune", "--db: setenv failed") + 2;
    record_command(&t, argc, argv);
    t.progress_bar = isatty(fileno(stderr));
    setvbuf(stdout, NULL, _IOLBF, 0); /* each job's line as it finishes, also into a file */
    mcl_context *ctx;
    mcl_status status = mcl_context_create(o[OPT_DEVICE].value, &ctx);
    if (status != MCL_OK) return cli_fail("creating a context", status);
    int rc;
    if (o[OPT_SHOW].given) {
        rc = show(ctx);
    } else {
        const mcl_device_info *d = mcl_context_device(ctx);
        printf("tuning on %s (%s, %s)%s\n", d->name, mcl_vendor_name(d->vendor), d->arch,
               t.budget > 0 ? "" : "; no --budget: every job runs its whole space");
        rc = choose_record(&t, o[OPT_RECORD].value) ? run_tuning(ctx, &t) : 2;
    }
    mcl_context_release(ctx);
    return rc;
}
