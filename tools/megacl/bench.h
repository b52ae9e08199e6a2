/* megacl bench's parts: the run (bench.c), the memory check before a case (bench_memory.c), the
 * JSON report and the comparison with an earlier one (bench_report.c), and the chart
 * (bench_svg.c). */
#ifndef MCL_BENCH_H
#define MCL_BENCH_H

#include "cli.h"

#include "workload/workload.h"

#include <json-c/json.h>

#define BENCH_MAX_KERNELS 32

/* The device as megacl devices --json describes it (devices.c). */
json_object *cli_device_json(const mcl_device_info *d);

typedef struct bench_settings {
    mcl_dtype dtypes[3];
    size_t dtype_count;
    int reps, warmup;
    size_t custom_shape[WL_MAX_RANK];
    int has_custom_shape;
    int kernels;        /* --kernels: each kernel's median too */
    int tf32;           /* --tf32: f32 GEMMs may take the tensor cores in tf32 */
    int progress;       /* a progress line on stderr (a terminal) */
    const char *params; /* --params: the megacl path's parameters */
    const char *impl;   /* --impl: run only this path */
    const char *only;   /* --case: run only the cases whose name holds this text */
    const char *json, *svg;
    json_object *compare; /* --compare: the earlier report, checked to be one */
} bench_settings;

/* The spread of a case's timed runs (device milliseconds). */
typedef struct bench_spread {
    double min, median, max;
    int reps;
} bench_spread;

typedef struct bench_kernel_time {
    const char *name;
    double median_ms; /* the kernel's time in one forward+backward, summed over its launches */
} bench_kernel_time;

typedef enum bench_outcome { BENCH_TIMED, BENCH_SKIPPED, BENCH_FAILED } bench_outcome;

/* One implementation of one case: its figures when timed, or why it was not. */
typedef struct bench_result {
    const wl_workload *w;
    const char *case_name, *impl;
    wl_case c;
    bench_outcome outcome;
    char reason[320];   /* why skipped or failed */
    int sample_checked; /* verified on the workload's sample, the full reference not affordable */
    bench_spread fwd, fwdbwd;
    double fwd_err, bwd_err, peak_bytes;
    double approx_err; /* the workload's approximation_error; < 0: an exact op */
    int ok;
    double err[WL_MAX_TENSORS], tol[WL_MAX_TENSORS]; /* err < 0: not checked */
    wl_counts counts;
    bench_kernel_time kernels[BENCH_MAX_KERNELS];
    size_t kernel_count;
} bench_result;

/* What a report says about the run as a whole. */
typedef struct bench_run_info {
    const char *what; /* the workload named on the command line, or "all" */
    const mcl_device_info *device;
    device_ceilings ceilings;
    int ceilings_stored; /* from megacl peak (else measured by this run) */
    char ceilings_date[32];
    int reps, warmup;
    int tf32; /* f32 GEMMs were allowed tf32 */
} bench_run_info;

/* ---- bench_run.c ------------------------------------------------------------------------- */

/* Runs r's case (r->w, r->c, r->case_name, r->impl set) on the megacl path (b NULL) or baseline
 * b: r->outcome says whether it was timed, skipped (does not fit, no path for the dtype) or
 * failed, r->reason why not. */
void bench_run_case(mcl_context *ctx, const wl_baseline *b, const bench_settings *s, bench_result *r);

/* ---- bench_memory.c ---------------------------------------------------------------------- */

/* Whether case c of w fits the host and the device before anything is allocated: *sample_only
 * set where the full reference does not fit the host but the workload's sample check does.
 * Where it does not fit at all, 0 with the reason ("host reference needs 24.1 GB, 21.3 GB
 * available"). */
int bench_case_fits(const wl_workload *w, const wl_case *c, const mcl_device_info *device, int *sample_only,
                    char *reason, size_t cap);

/* ---- bench_report.c ---------------------------------------------------------------------- */

/* The table on stdout: a header per workload, a row per implementation of a case. */
void bench_print_header(const wl_workload *w);
void bench_print_result(const bench_result *r, const device_ceilings *ceilings);

double bench_rate(double amount, double ms);
/* The share of the device roofline a forward+backward reaches: the time the ceilings allow for
 * its bytes and FLOP over the time it took. */
double bench_roofline_fraction(const bench_result *r, const device_ceilings *ceilings);
/* "R=1024,C=256": a case's shape with the workload's names for its sizes. */
void bench_shape_text(const wl_workload *w, const wl_case *c, char *out, size_t cap);

int bench_write_json(const char *path, const bench_run_info *run, const bench_result *results, size_t count);
/* The earlier report of --compare, or NULL with the reason printed (the command exits 2). */
json_object *bench_load_report(const char *path);
void bench_print_comparison(json_object *old_report, const bench_result *results, size_t count);

/* ---- bench_svg.c ------------------------------------------------------------------------- */

int bench_write_svg(const char *path, const bench_run_info *run, const bench_result *results, size_t count);

#endif
