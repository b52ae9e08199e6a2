/* Workloads: one description per op of what it computes on (its tensors, the inputs drawn for
 * them, how the op is called), what it is compared with (the double-precision reference in
 * tests/ref, the tolerance of each output), what it costs (FLOP and byte counts) and the
 * baselines it is timed against (the unfused path a framework runs, the naive kernels). The
 * Criterion tests, `megacl bench` and the tuner build their cases from it, so what is tested,
 * what is timed and what is tuned are the same calls.
 *
 * A problem is one case of a workload on a context: every tensor in its own buffer at the offset
 * the placement gives, between guard bytes (WL_GUARD), inputs drawn and uploaded, outputs
 * poisoned (NaN) before each run. The engine fetches the outputs back, checks that no byte
 * outside them changed and that the inputs are intact, and compares each output with the
 * reference. */
#ifndef MCL_WORKLOAD_H
#define MCL_WORKLOAD_H

#define MCL_EXPERIMENTAL
#include "megacl.h"
#include "ref/host.h"

#include <stddef.h>

#define WL_MAX_TENSORS 24
#define WL_MAX_RANK 5
#define WL_ALL (~0u) /* every gradient */
#define WL_UNSIZED ((size_t)-1)

#define WL_COUNT(a) (sizeof(a) / sizeof((a)[0]))

#define WL_TRY(expr)                                                                           \
    do {                                                                                       \
        mcl_status wl_try_status_ = (expr);                                                    \
        if (wl_try_status_ != MCL_OK) return wl_try_status_;                                   \
    } while (0)

typedef enum wl_role {
    WL_INPUT,    /* given to the forward or the backward (x, dy): drawn */
    WL_FORWARD,  /* written by the forward (y, saved statistics) */
    WL_GRADIENT, /* written by the backward */
} wl_role;

typedef struct wl_tensor_decl {
    const char *name;
    wl_role role;
    int fp32;     /* stored as fp32 whatever the case's dtype (statistics, lse) */
    float lo, hi; /* an input's values are drawn uniformly from [lo, hi) */
} wl_tensor_decl;

/* One case: a shape (the workload names its sizes), a dtype, the workload's option bits
 * (optional inputs given, direction, SiLU half, ...), the gradients asked for (bit g for the
 * g-th WL_GRADIENT tensor) and one scalar option (the workload says what). */
typedef struct wl_case {
    size_t shape[WL_MAX_RANK];
    mcl_dtype dtype;
    unsigned options;
    unsigned want;
    double arg;
} wl_case;

typedef struct wl_named_case {
    const char *name;
    wl_case c;
} wl_named_case;

/* How an output is compared with its reference: the 2-norm error ||out - ref|| / max(||ref||,
 * ||floor||) (floor NULL: ||ref||), or element by element |out - ref| <= tol (|ref| + floor[i])
 * (floor NULL: 1), for outputs whose elements cancel to sizes a relative norm would not see. A
 * reference entry of -inf must be -inf exactly. */
typedef enum wl_check { WL_NORM, WL_ELEMENTWISE } wl_check;

typedef struct wl_tensor {
    size_t count;     /* elements; 0 for a tensor the case leaves out */
    mcl_dtype dtype;  /* storage */
    float *values;    /* an input's values; an output's once fetched */
    mcl_tensor at;    /* the tensor the op is given */
    cl_mem buffer;    /* its own buffer, NULL where it shares another tensor's (alias) */
    size_t buffer_bytes;
    int alias;        /* the tensor whose place it shares (an output written in place), or -1 */
    double *ref;      /* the reference of an output */
    double *floor;    /* see wl_check, or NULL */
    wl_check check;
    double tol;
} wl_tensor;

typedef struct wl_problem {
    const struct wl_workload *w;
    wl_case c;
    mcl_context *ctx;
    int offsets; /* the placement (WL_OFF_*) */
    wl_tensor t[WL_MAX_TENSORS];
    const struct wl_baseline *baseline_path; /* set up by wl_setup_baseline, torn down with the problem */
    void *baseline;        /* its state */
    double baseline_bytes; /* the device memory of its intermediates */
    void *state;           /* what the workload's prepare made (an ACSR mask), or NULL */
    /* check on the workload's sample even where the full reference is its choice: megacl bench
     * sets it when the host has no room for the full reference */
    int sample_only;
} wl_problem;

typedef struct wl_counts {
    double fwd_bytes, fwdbwd_bytes; /* the fewest bytes each must move */
    double fwd_flops, fwdbwd_flops;
} wl_counts;

/* Another path of the same problem, timed beside megacl's. */
typedef struct wl_baseline {
    const char *name;   /* "naive", "unfused" */
    const char *params; /* an override of the workload's family ("VARIANT=0"), or NULL */
    /* its intermediates (counted in baseline_bytes) and its own kernels; NULL: none.
     * MCL_ERR_UNSUPPORTED_DTYPE: it has no path for the dtype (reported, not a failure) */
    mcl_status (*setup)(wl_problem *p);
    void (*teardown)(wl_problem *p);
    mcl_status (*forward)(wl_problem *p); /* NULL: the workload's own, under `params` */
    mcl_status (*backward)(wl_problem *p);
} wl_baseline;

typedef struct wl_workload {
    const char *name;        /* "ln_linear" */
    const char *family;      /* the kernel family whose parameters its calls run with */
    const char *shape_names; /* "M,K,N": what a case's shape holds */
    size_t rank;
    const char *const *option_names; /* bit i of a case's options, for messages (NULL-terminated) */
    const wl_tensor_decl *tensors;
    size_t tensor_count;
    const wl_named_case *cases; /* the benchmark's AF3 shapes (the first one's options serve a custom shape) */
    size_t case_count;
    const wl_named_case *cpu_cases; /* the same kinds of calls at sizes a CPU runs in seconds */
    size_t cpu_case_count;
    /* element counts of every tensor for the case, 0 for one it leaves out */
    void (*sizes)(const wl_case *c, size_t *counts);
    /* changes drawn inputs the op needs particular values in (masks, rows of spread); NULL: none */
    void (*draw)(wl_problem *p, host_rng *rng);
    /* makes what the op's calls take besides tensors (an ACSR mask) into p->state, and releases
     * it; NULL: nothing */
    mcl_status (*prepare)(wl_problem *p);
    void (*release)(wl_problem *p);
    mcl_status (*forward)(wl_problem *p);
    mcl_status (*backward)(wl_problem *p);
    /* the workspace the forward and the backward take as their size functions report
     * (WL_UNSIZED: the op has none). The forward takes exactly that; the backward too with
     * *backward_exact, else at most that (a size for every gradient); NULL: no size function */
    mcl_status (*workspace)(wl_problem *p, size_t *forward, size_t *backward, int *backward_exact);
    /* ref, floor and check of every output present, from the inputs and, where the op continues
     * from its saved tensors, from the fetched forward outputs; 0, or -1 without memory */
    int (*reference)(wl_problem *p);
    /* the bound of each output's check; NULL: the storage dtype's (host_tolerance) */
    double (*tolerance)(const wl_case *c, int tensor);
    /* whether `reference` is affordable on the host for this case (NULL: always); where it is
     * not, `sample` gives the norm error of each output it checks (err[i] < 0: not checked) on
     * a sample */
    int (*full_reference)(const wl_case *c);
    int (*sample)(wl_problem *p, double *err);
    /* for an op that approximates another (FLuRKA, Linformer and the Performer approximate
     * softmax attention): after a check, the relative error ||O - O_exact|| / ||O_exact|| of its
     * fetched output against the exact op on the same inputs, over a sample of rows; negative
     * where the case is exact. NULL: the op is exact */
    double (*approximation_error)(const wl_problem *p);
    wl_counts (*counts)(const wl_case *c);
    const wl_baseline *baselines;
    size_t baseline_count;
} wl_workload;

/* A workload's descriptor from the statics its file defines by convention (options, tensors,
 * cases, sizes, forward, backward, reference, counts, baselines), the optional hooks (draw,
 * workspace, tolerance, full_reference, sample) following as designated initializers. */
#define WL_WORKLOAD(name_, family_, shape_names_, rank_, ...)                                  \
    {.name = name_, .family = family_, .shape_names = shape_names_, .rank = rank_, .option_names = options, \
     .tensors = tensors, .tensor_count = WL_COUNT(tensors), .cases = cases, .case_count = WL_COUNT(cases), \
     .cpu_cases = cpu_cases, .cpu_case_count = WL_COUNT(cpu_cases), \
     .sizes = sizes, .forward = forward, .backward = backward, .reference = reference, .counts = counts, \
     .baselines = baselines, .baseline_count = WL_COUNT(baselines), __VA_ARGS__}

/* The forward and backward hooks of a workload whose op is mcl_<op>_forward and _backward, called
 * without an event on the descriptor desc_of(p) and the tensors fwd_tensors(p) and
 * bwd_tensors(p), statics the workload's file defines. */
#define WL_OP_PASSES(op)                                                                       \
    static mcl_status forward(wl_problem *p)                                                   \
    {                                                                                          \
        mcl_##op##_desc d = desc_of(p);                                                        \
        mcl_##op##_fwd_tensors t = fwd_tensors(p);                                             \
        return mcl_##op##_forward(p->ctx, &d, &t, NULL);                                       \
    }                                                                                          \
    static mcl_status backward(wl_problem *p)                                                  \
    {                                                                                          \
        mcl_##op##_desc d = desc_of(p);                                                        \
        mcl_##op##_bwd_tensors t = bwd_tensors(p);                                             \
        return mcl_##op##_backward(p->ctx, &d, &t, NULL);                                      \
    }

/* The workspace hook of such a workload whose forward takes no workspace and whose backward
 * takes exactly what mcl_<op>_backward_workspace_size reports for its tensors. */
#define WL_SIZED_BACKWARD(op)                                                                  \
    static mcl_status workspace(wl_problem *p, size_t *fwd, size_t *bwd, int *backward_exact)  \
    {                                                                                          \
        mcl_##op##_desc d = desc_of(p);                                                        \
        mcl_##op##_bwd_tensors t = bwd_tensors(p);                                             \
        *fwd = WL_UNSIZED;                                                                     \
        *backward_exact = 1;                                                                   \
        return mcl_##op##_backward_workspace_size(p->ctx, &d, &t, bwd);                        \
    }

extern const wl_workload wl_layernorm, wl_evoattn, wl_gating, wl_swiglu, wl_ln_linear, wl_transition, wl_trimul,
    wl_linear, wl_add, wl_transpose, wl_acsr, wl_flurka;
extern const wl_workload *const wl_workloads[];
extern const size_t wl_workload_count;

/* The cases a device runs by default: the AF3 shapes on a GPU, the CPU ones elsewhere. */
const wl_named_case *wl_default_cases(const wl_workload *w, const mcl_device_info *device, size_t *count);

/* Element counts of every tensor of case c, 0 for one it leaves out (a gradient not wanted). */
void wl_case_counts(const wl_workload *w, const wl_case *c, size_t *counts);

/* The seed a case's inputs are drawn from: every run of a case sees the same values. */
uint64_t wl_case_seed(const wl_case *c);

/* ---- problems ---------------------------------------------------------------------------- */

/* Placement of a problem's tensors: element offsets 0, multiples of 8, odd, or the two mixed. */
enum { WL_OFF_ZERO, WL_OFF_VEC, WL_OFF_ODD, WL_OFF_MIXED, WL_OFF_MODES };
extern const char *const wl_offset_names[WL_OFF_MODES];
enum { WL_GUARD = 37, WL_POISON = 0x7f }; /* guard elements after each tensor, and their bytes */

/* A problem of case c: inputs drawn from rng (quantized to the dtype). wl_place then puts every
 * tensor in a buffer of its own, at the placement's element offset; an output set to alias an
 * input before it shares that input's place (in place). */
mcl_status wl_create(const wl_workload *w, mcl_context *ctx, const wl_case *c, host_rng *rng, wl_problem **out);
mcl_status wl_place(wl_problem *p, int offsets);
void wl_destroy(wl_problem *p);

/* The tensor the op is given for tensor i (mem NULL where the case leaves it out). */
static inline mcl_tensor wl_at(const wl_problem *p, int i) { return p->t[i].at; }
static inline int wl_has(const wl_problem *p, int i) { return p->t[i].count > 0; }
static inline int wl_is_input(const wl_problem *p, int i) { return p->w->tensors[i].role == WL_INPUT; }

/* NaN into every output (its own bytes; the guards keep WL_POISON). */
mcl_status wl_poison(wl_problem *p);

/* A baseline's intermediates and kernels for the problem (wl_baseline.setup), released with it. */
mcl_status wl_setup_baseline(wl_problem *p, const wl_baseline *b);

/* The workload's own forward and backward, or a baseline's. */
mcl_status wl_forward(wl_problem *p, const wl_baseline *b);
mcl_status wl_backward(wl_problem *p, const wl_baseline *b);

/* What a fetch found: bytes outside the tensors written, inputs changed. */
typedef struct wl_fetch_report {
    size_t stray_bytes;  /* the most of any buffer */
    int stray_tensor;    /* the tensor whose buffer they are in, or -1 */
    int changed_input;   /* an input whose values changed, or -1 */
} wl_fetch_report;

/* Reads every output back into its values (inputs too with check_inputs: compared with what
 * was given), and checks every byte around the tensors. */
mcl_status wl_fetch(wl_problem *p, int check_inputs, wl_fetch_report *report);

/* The comparison of one output with its reference. */
typedef struct wl_error {
    double err;          /* the 2-norm error (infinite when an element is NaN or a -inf missed) */
    size_t bad;          /* elements outside the bound (WL_ELEMENTWISE), or 1 if err > tol (WL_NORM) */
    size_t worst;        /* the worst element */
    double worst_ratio;  /* its error over its bound */
} wl_error;

/* The reference of every output (wl_workload.reference, tolerances from wl_tolerance). */
mcl_status wl_reference(wl_problem *p);
double wl_tolerance(const wl_problem *p, int i);
int wl_full_reference(const wl_problem *p);
wl_error wl_compare(const wl_problem *p, int i);

/* Runs the problem's forward and backward (a baseline's where given) once on poisoned outputs
 * and compares every output with the double-precision reference: in full, or on the workload's
 * sample where the full reference is not affordable. err[i] is output i's error (< 0 for a
 * tensor that is no output or was not checked) and tol[i] its bound; *ok says whether every
 * output is within it and nothing outside the tensors was written. */
mcl_status wl_verify(wl_problem *p, const wl_baseline *b, double *err, double *tol, int *ok);

/* A value far out in sigmoid's tails, where exp overflows in fp32, rounded to the dtype: the
 * saturated inputs of gates and SiLU. */
float wl_sigmoid_tail(host_rng *rng, mcl_dtype dtype);

/* The 2-norm error of a selection of an output's elements (a sample of a large output),
 * accumulated pair by pair as wl_compare defines it. */
typedef struct wl_err {
    double diff, norm;
    int bad; /* a non-finite output, or a -inf reference missed */
} wl_err;
void wl_err_add(wl_err *e, float out, double ref);
double wl_err_value(const wl_err *e);

/* "ln_linear f32 M,K,N=77,130,16 ln_weight bias want=0x1f": a case in words. */
void wl_describe(const wl_problem *p, char *out, size_t cap);
void wl_describe_case(const wl_workload *w, const wl_case *c, char *out, size_t cap);

/* The device bytes of the problem's outputs (what forward and backward write). */
double wl_result_bytes(const wl_problem *p);

/* The detail of the last failure of the workload layer (or of the op it called). */
const char *wl_last_error(void);
mcl_status wl_fail(mcl_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* An op's status: on failure its message becomes the workload layer's. */
mcl_status wl_op(mcl_status status);

#endif
