/* The fused operators' GEMM (cl/gemm/): C = op(A) op(B) (+ bias) (+ R) per batch entry, with A
 * formed as it is loaded (LayerNorm, SwiGLU), C transformed as it is stored (SwiGLU's
 * backward), and the K range split into fp32 partials summed in a fixed order when the output
 * tiles alone cannot fill the device. Internal: the ops validate their tensors before they
 * build a call, and run GEMMs as steps of their walks (ops/common/walk.h). */
#ifndef MCL_OPS_GEMM_H
#define MCL_OPS_GEMM_H

#include "ops/common/walk.h"
#include "runtime/family.h"

/* The family's tuning parameters. A work-group computes a bm x bn tile in steps of bk; a
 * work-item owns tm x tn outputs (float4 groups from 4 on). split_waves: the K range is split
 * until the grid fills this many work-groups per compute unit (partials summed in a fixed
 * order). prefetch: load the next step's operands while computing the current one (two local
 * buffers, one barrier a step). unroll: values of k within a bk step unrolled together. mma:
 * the tile's products on tensor cores for bf16 and f16 calls whose A and B are of the storage
 * type, an A formed by LayerNorm or SwiGLU rounded to it first, and for f32 calls in tf32 where
 * the context allows it (1: mma.sync, only where the device's probe passed; 2: the same kernel
 * with the instruction emulated, for tests on any device); other calls keep the FMA kernel. */
typedef struct gemm_params {
    int bm, bn, bk, tm, tn, split_waves, prefetch, unroll, mma;
} gemm_params;

extern const mcl_family mcl_family_gemm;

/* A matrix operand: element (r, c) of batch entry t at mem[off + t * batch_stride + r * ld + c]
 * (element units). With trans, A(m, k) is the stored element (k, m) (likewise for B). With
 * fp32, it is stored in fp32 whatever the call's dtype (an op's fp32 intermediate; for C, not
 * with SwiGLU's backward, and a residual is then fp32 too). */
typedef struct gemm_matrix {
    cl_mem mem;
    size_t off, ld, batch_stride;
    int trans;
    int fp32;
} gemm_matrix;

/* An operand stored in an op's tensor from element `first` on, rows `ld` elements apart. */
gemm_matrix gemm_operand(const mcl_tensor *t, mcl_dtype dtype, size_t first, size_t ld, int trans);

/* LayerNorm of A's stored matrix X: (x - mean[r]) * rstd[r] * gamma[col] + beta[col]; stats are
 * fp32, gamma and beta (optional) of the call's dtype. */
typedef struct gemm_layernorm {
    cl_mem mean, rstd;
    size_t mean_off, rstd_off, stat_batch;
    cl_mem gamma, beta;
    size_t gamma_off, beta_off;
} gemm_layernorm;

/* SwiGLU around the GEMM: on A, A is SwiGLU of its stored 2F-wide matrix; as C's backward, C is
 * dS and is stored as SwiGLU's backward into a 2F-wide dH given the pre-activation h. The
 * halves start at columns silu_shift and gate_shift of a row. */
typedef enum gemm_swiglu_role { GEMM_SWIGLU_ON_A = 1, GEMM_SWIGLU_BACKWARD_ON_C = 2 } gemm_swiglu_role;

typedef struct gemm_swiglu {
    gemm_swiglu_role role;
    cl_mem h; /* GEMM_SWIGLU_BACKWARD_ON_C */
    size_t h_off, ldh;
    size_t silu_shift, gate_shift;
} gemm_swiglu;

/* A's LayerNorm from the op's tensors: statistics of rows first_row on, optional weight and bias. */
gemm_layernorm gemm_layernorm_of(const mcl_tensor *mean, const mcl_tensor *rstd, const mcl_tensor *weight,
                                 const mcl_tensor *bias, mcl_dtype dtype, size_t first_row);

typedef struct gemm_call {
    mcl_dtype dtype;
    size_t m, n, k, batch;
    gemm_matrix a, b, c;
    const gemm_layernorm *ln;  /* NULL: A as stored */
    const gemm_swiglu *swiglu; /* NULL: no SwiGLU */
    cl_mem bias;               /* [n], optional */
    size_t bias_off;
    /* R, added to C: laid out as C (its ld and batch stride), from element residual_off; may be C
     * itself. Optional; not with SwiGLU's backward on C */
    cl_mem residual;
    size_t residual_off;
} gemm_call;

typedef struct gemm_plan {
    gemm_params params; /* mma cleared where the call or its tile cannot take the tensor cores */
    int warps_m;        /* with mma: the warps along M of the tile */
    size_t splits, k_chunk;
    size_t partial_bytes; /* fp32 split partials the call needs */
    size_t local[2], global[3];
} gemm_plan;

mcl_status mcl_gemm_plan(mcl_context *ctx, const gemm_call *call, gemm_plan *plan);

/* With mma: the warps along M that split the tile into warp tiles of whole 16 x 8 products (the
 * squarest such split), or 0 where none does or BK is no multiple of 16; the local memory the
 * tensor-core kernel takes for operands of `value_bytes` (2, or 4 for tf32). */
int gemm_mma_warps_m(const gemm_params *p);
uint64_t gemm_mma_local_bytes(const gemm_params *p, unsigned value_bytes);

/* A GEMM step of a walk: planned, its split partials in part `part`, enqueued in the enqueue
 * pass. */
mcl_status mcl_gemm_step(mcl_walk *walk, const char *step, const gemm_call *call, int part);

/* The same with a plan made already and the partials at `partials` (a place the caller chose). */
mcl_status mcl_gemm_planned_step(mcl_walk *walk, const char *step, const gemm_call *call, const gemm_plan *plan,
                                 mcl_tensor partials);

/* A K range run in pieces (calls differing in A's and B's offsets and k), all with `plan` (each
 * piece's k spread over its splits): each piece's splits write fp32 partials to slots
 * first_slot .. first_slot + plan->splits - 1 of the `slot_count` at `slots` (slot_count x
 * batch x m x n floats), or with `accumulate` add to what an earlier piece wrote there (pieces
 * run in queue order, so the sums stay deterministic); mcl_gemm_sum_step adds every slot into
 * C, in order, once all pieces are enqueued. */
mcl_status mcl_gemm_piece_step(mcl_walk *walk, const char *step, const gemm_call *call, const gemm_plan *plan,
                               mcl_tensor slots, size_t first_slot, size_t slot_count, int accumulate);
mcl_status mcl_gemm_sum_step(mcl_walk *walk, const char *step, const gemm_call *call, mcl_tensor slots,
                             size_t slot_count);

/* out[n] = sum over rows of x [m, n] (dtype), through fp32 split partials in part `part`,
 * summed in a fixed order. */
mcl_status mcl_column_sums_step(mcl_walk *walk, const char *step, mcl_dtype dtype, const mcl_tensor *x, size_t m,
                                size_t n, const mcl_tensor *out, int part);

#endif
