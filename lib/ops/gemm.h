/* The fused operators' GEMM (cl/gemm.cl): C = op(A) op(B) (+ bias) per batch entry, with A
 * formed as it is loaded (LayerNorm, SwiGLU), C transformed as it is stored (SwiGLU's
 * backward), and the K range split into fp32 partials summed in a fixed order when the output
 * tiles alone cannot fill the device. Internal: the ops validate their tensors before they
 * build a call. */
#ifndef MCL_OPS_GEMM_H
#define MCL_OPS_GEMM_H

#include "../runtime/context.h"

/* A matrix operand: element (r, c) of batch entry t at mem[off + t * batch_stride + r * ld + c]
 * (element units). With trans, A(m, k) is the stored element (k, m) (likewise for B). */
typedef struct gemm_matrix {
    cl_mem mem;
    size_t off, ld, batch_stride;
    int trans;
} gemm_matrix;

/* LayerNorm of A's stored matrix X: (x - mean[r]) * rstd[r] * gamma[col] + beta[col]; stats are
 * fp32, gamma and beta (optional) of the call's dtype. */
typedef struct gemm_layernorm {
    cl_mem mean, rstd;
    size_t mean_off, rstd_off, stat_batch;
    cl_mem gamma, beta;
    size_t gamma_off, beta_off;
} gemm_layernorm;

/* SwiGLU around the GEMM: with on_a, A is SwiGLU of its stored 2F-wide matrix; with h, C is
 * dS and is stored as SwiGLU's backward into a 2F-wide dH given the pre-activation h. The
 * halves start at columns silu_shift and gate_shift of a row. */
typedef struct gemm_swiglu {
    int on_a;
    cl_mem h;
    size_t h_off, ldh;
    size_t silu_shift, gate_shift;
} gemm_swiglu;

typedef struct gemm_call {
    mcl_dtype dtype;
    size_t m, n, k, batch;
    gemm_matrix a, b, c;
    const gemm_layernorm *ln; /* NULL: A as stored */
    const gemm_swiglu *swiglu; /* NULL: no SwiGLU */
    cl_mem bias;              /* [n], optional */
    size_t bias_off;
} gemm_call;

typedef struct gemm_plan {
    size_t splits, k_chunk, bk;
    size_t partial_bytes; /* fp32 split partials the call needs in the workspace */
    size_t local[2], global[3];
    char defines[320];
} gemm_plan;

mcl_status mcl_gemm_plan(mcl_context *ctx, const gemm_call *call, gemm_plan *plan);

/* Enqueues the call; split partials go to `workspace` at byte offset `partial_off`. */
mcl_status mcl_gemm_enqueue(mcl_context *ctx, const gemm_call *call, const gemm_plan *plan,
                            cl_mem workspace, size_t partial_off);

/* A K range run in pieces (calls differing in A's and B's offsets and k): each piece's splits
 * (the plan's, each piece's k spread over all of them) write fp32 partials to slots
 * first_slot .. first_slot + plan->splits - 1 of `slots` (slots x batch x m x n floats at
 * partial_off), or with `accumulate` add to what an earlier
 * piece wrote there (pieces run in queue order, so the sums stay deterministic); mcl_gemm_sum
 * adds every slot into C, in order, once all pieces are enqueued. */
mcl_status mcl_gemm_enqueue_piece(mcl_context *ctx, const gemm_call *call, const gemm_plan *plan,
                                  cl_mem workspace, size_t partial_off, size_t first_slot, size_t slots,
                                  int accumulate);
mcl_status mcl_gemm_sum(mcl_context *ctx, const gemm_call *call, cl_mem workspace, size_t partial_off,
                        size_t slots);

/* out[n] = sum over rows of x [m, n] (dtype), through fp32 split partials summed in a fixed
 * order: the workspace needs mcl_column_sums_bytes at byte offset `partial_off`. */
size_t mcl_column_sums_bytes(mcl_context *ctx, size_t m, size_t n);
mcl_status mcl_column_sums(mcl_context *ctx, mcl_dtype dtype, cl_mem x, size_t x_off, size_t m, size_t n,
                           cl_mem out, size_t out_off, cl_mem workspace, size_t partial_off);

#endif
