/* The benchmark frame every op plugs into: a workload lists cases (shape, dtype); each case
 * is created per implementation (megacl's tuned path and the naive unfused path, chosen through
 * parameter overrides), verified against the double-precision reference, then timed. */
#ifndef MCL_CLI_BENCH_H
#define MCL_CLI_BENCH_H

#include "cli.h"

#include <stdint.h>

typedef struct bench_op {
    void *state;
    mcl_status (*forward)(void *state, mcl_context *ctx);  /* enqueue only */
    mcl_status (*backward)(void *state, mcl_context *ctx); /* enqueue only; after forward */
    /* runs forward and backward on fresh poisoned outputs and compares with the reference */
    mcl_status (*verify)(void *state, mcl_context *ctx, double *fwd_err, double *bwd_err);
    void (*destroy)(void *state);
    double fwd_bytes, fwdbwd_bytes;   /* fewest bytes each must move */
    double fwd_flops, fwdbwd_flops;
    uint64_t result_bytes; /* outputs, saved state and gradients the op writes (peak memory) */
} bench_op;

typedef struct bench_impl {
    const char *name;    /* "megacl", "naive", "unfused" */
    const char *params;  /* override of the workload's family, NULL for the tuned lookup */
    /* the implementation's own create, NULL for the workload's; MCL_ERR_UNSUPPORTED_DTYPE: it
     * has no path for the dtype (reported, not a failure) */
    mcl_status (*create)(mcl_context *ctx, const size_t *shape, mcl_dtype dtype, struct bench_op *op);
} bench_impl;

typedef struct bench_workload {
    const char *name;
    const char *family;
    const bench_impl *impls;
    size_t impl_count;
    const char *const *case_names; /* default cases */
    const size_t (*case_shapes)[5]; /* the first shape_rank numbers of each are used */
    size_t case_count;
    size_t shape_rank; /* how many numbers --shape takes */
    mcl_status (*create)(mcl_context *ctx, const size_t *shape, mcl_dtype dtype, bench_op *op);
    double (*tolerance)(mcl_dtype dtype);
} bench_workload;

/* ||out - ref|| / ||ref|| accumulated over any selection of elements (host_rel_error's
 * definition), for checks on samples of large outputs; a non-finite output, or a reference
 * -inf (a fully masked row's lse) not matched exactly, makes it infinite. */
typedef struct bench_err {
    double diff, norm;
    int bad;
} bench_err;

void bench_err_add(bench_err *e, float out, double ref);
double bench_err_value(const bench_err *e);

/* host_rel_error of a whole device tensor (n elements of dtype) against its reference;
 * infinite if the host copy cannot be made. */
double bench_compare(mcl_context *ctx, cl_mem mem, mcl_dtype dtype, const double *ref, size_t n);

/* An fp32 operand of an unfused elementwise kernel: a flat array (cols 0), or element i at
 * (i / cols) * stride + shift + i % cols (a block of `cols` columns of a matrix `stride` wide),
 * or with `broadcast` at (i / cols) * stride + shift (one value per row, as a mask over the
 * channels). */
typedef struct bench_view {
    cl_mem mem;
    size_t cols, stride, shift;
    int broadcast;
} bench_view;

/* The unfused baselines' elementwise kernels, built for the context (release it; NULL and a
 * message on failure), and one of them run over n elements of its views, counted in the
 * profiling window: k_sigmoid, k_silu (x -> y), k_mul (a, b -> y), k_sigmoid_backward (dy, s ->
 * dx, s the saved sigmoid), k_silu_backward (dy, x -> dx). */
cl_program bench_eltwise_program(mcl_context *ctx);
bench_view bench_flat(cl_mem mem);
bench_view bench_block(cl_mem mem, size_t stride, size_t shift, size_t cols); /* columns [shift, shift + cols) */
bench_view bench_per_row(cl_mem mem, size_t cols); /* one value per row of `cols` elements */

/* MCL_OK for fp32, the one dtype of the unfused baselines (CLBlast has no bf16); else
 * MCL_ERR_UNSUPPORTED_DTYPE with a message, which the bench reports as a skipped row. */
mcl_status bench_unfused_dtype(mcl_dtype dtype);
mcl_status bench_eltwise(mcl_context *ctx, cl_program program, const char *kernel, size_t n, const bench_view *views,
                         size_t view_count);

/* C [m, n] = op(A) op(B), fp32 row-major, through CLBlast on the context's queue (the unfused
 * baselines' GEMMs); the command counts in the profiling window. */
mcl_status bench_sgemm(mcl_context *ctx, int trans_a, int trans_b, size_t m, size_t n, size_t k, cl_mem a,
                       size_t lda, cl_mem b, size_t ldb, cl_mem c, size_t ldc);
/* The same for `batch` products of packed matrices (entry t of each at t times its size). */
mcl_status bench_sgemm_batched(mcl_context *ctx, int trans_a, int trans_b, size_t m, size_t n, size_t k, cl_mem a,
                               size_t lda, cl_mem b, size_t ldb, cl_mem c, size_t ldc, size_t batch);
/* b [cols, rows] = a [rows, cols]^T, fp32, through CLBlast. */
mcl_status bench_transpose(mcl_context *ctx, size_t rows, size_t cols, cl_mem a, cl_mem b);

extern const bench_workload bench_layernorm;
extern const bench_workload bench_evoattn;
extern const bench_workload bench_gating;
extern const bench_workload bench_swiglu;
extern const bench_workload bench_ln_linear;
extern const bench_workload bench_transition;
extern const bench_workload bench_trimul;

#endif
