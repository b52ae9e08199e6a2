/* The unfused baselines' building blocks: an op as a framework's eager mode runs it, one
 * operation per kernel with every intermediate stored, fp32 only (CLBlast has no bf16). Dense
 * products and transposes through CLBlast, elementwise operations through small kernels of
 * their own; every command joins the context's profiling window. */
#ifndef MCL_WORKLOAD_UNFUSED_H
#define MCL_WORKLOAD_UNFUSED_H

#include "workload.h"

#define WL_MAX_SCRATCH 32

/* The source of the materialised attention's kernels (unfused_attention.c), built into the same
 * program as the elementwise ones. */
extern const char wl_unfused_attention_source[];

/* The baseline's state: its kernels and intermediates. */
typedef struct wl_unfused {
    cl_program eltwise;
    cl_mem scratch[WL_MAX_SCRATCH];
    size_t scratch_count;
} wl_unfused;

/* For an unfused baseline's setup: fp32 only (MCL_ERR_UNSUPPORTED_DTYPE otherwise), its
 * elementwise kernels built, and `count` fp32 intermediates of counts[i] elements, counted in
 * the problem's baseline_bytes. */
mcl_status wl_unfused_setup(wl_problem *p, const size_t *counts, size_t count);
void wl_unfused_teardown(wl_problem *p);

/* Intermediate i of the baseline. */
mcl_tensor wl_scratch(const wl_problem *p, int i);

/* A composite op's intermediates (unfused_*.c) from the baseline's: `saved_count` of them kept by
 * its forward, then `temp_count` of its backward's. */
void wl_scratch_parts(const wl_problem *p, mcl_tensor *saved, size_t saved_count, mcl_tensor *temp,
                      size_t temp_count);

/* An fp32 operand of an elementwise kernel: element i at the tensor's i (cols 0), or at
 * (i / cols) * stride + shift + i % cols (a block of `cols` columns of a matrix `stride` wide),
 * or with broadcast at (i / cols) * stride + shift (one value per row, as a mask over channels). */
typedef struct wl_view {
    mcl_tensor t;
    size_t cols, stride, shift;
    int broadcast;
} wl_view;

wl_view wl_flat(mcl_tensor t);
wl_view wl_block(mcl_tensor t, size_t stride, size_t shift, size_t cols); /* columns [shift, shift + cols) */
wl_view wl_per_row(mcl_tensor t, size_t cols);                             /* one value per row of cols */

/* One elementwise kernel over n elements of its views: k_sigmoid, k_silu (x -> y), k_mul, k_add
 * (a, b -> y), k_sigmoid_backward (dy, s -> dx, s the saved sigmoid), k_silu_backward
 * (dy, x -> dx). */
mcl_status wl_eltwise(const wl_problem *p, const char *kernel, size_t n, const wl_view *views, size_t count);

/* y [batch, cols, rows, width] = x [batch, rows, cols, width] with i and j swapped, copied by one
 * kernel as a framework makes a transposed view contiguous. */
mcl_status wl_unfused_transpose(const wl_problem *p, size_t batch, size_t rows, size_t cols, size_t width,
                                mcl_tensor x, mcl_tensor y);

/* y = x * scale over n elements (a tensor times a scalar; y may be x). */
mcl_status wl_unfused_scale(const wl_problem *p, size_t n, float scale, mcl_tensor x, mcl_tensor y);

/* An argument of one of the unfused path's kernels: a tensor (its buffer, then its offset in
 * floats as a ulong), a size (ulong) or a float. */
typedef struct wl_kernel_arg {
    enum { WL_ARG_TENSOR, WL_ARG_SIZE, WL_ARG_FLOAT } kind;
    mcl_tensor tensor;
    size_t size;
    float value;
} wl_kernel_arg;

wl_kernel_arg wl_arg_tensor(mcl_tensor t);
wl_kernel_arg wl_arg_size(size_t v);
wl_kernel_arg wl_arg_float(float v);

/* The unfused program's kernel `name` over n elements (its last argument, a ulong) with `args`
 * before it. */
mcl_status wl_unfused_kernel(const wl_problem *p, const char *name, const wl_kernel_arg *args, size_t count, size_t n);

/* C [m, n] = op(A) op(B), fp32 row-major; the batched form for `batch` products of packed
 * matrices; b [cols, rows] = a [rows, cols]^T. */
mcl_status wl_sgemm(const wl_problem *p, int trans_a, int trans_b, size_t m, size_t n, size_t k, mcl_tensor a,
                    size_t lda, mcl_tensor b, size_t ldb, mcl_tensor c, size_t ldc);
mcl_status wl_sgemm_batched(const wl_problem *p, int trans_a, int trans_b, size_t m, size_t n, size_t k,
                            mcl_tensor a, size_t lda, mcl_tensor b, size_t ldb, mcl_tensor c, size_t ldc,
                            size_t batch);
mcl_status wl_somatcopy(const wl_problem *p, size_t rows, size_t cols, mcl_tensor a, mcl_tensor b);

/* y = LN(x) W as the unfused path runs it, x [rows, k_in] and W [k_in, k_out]: megacl's LayerNorm
 * over the tensors ln gives (LN(x) stored in its y, the statistics in its mean and rstd), then a
 * CLBlast GEMM. */
mcl_status wl_unfused_ln_linear_forward(const wl_problem *p, size_t rows, size_t k_in, size_t k_out,
                                        const mcl_layernorm_fwd_tensors *ln, mcl_tensor w, mcl_tensor y);

/* Back through it from dy: dLN(x) = dy W^T into ln's dy and dW = LN(x)^T dy (xn: the stored
 * LN(x)) by CLBlast, then megacl's LayerNorm backward over ln into its dx, dweight and dbias. */
mcl_status wl_unfused_ln_linear_backward(const wl_problem *p, size_t rows, size_t k_in, size_t k_out,
                                         const mcl_layernorm_bwd_tensors *ln, mcl_tensor xn, mcl_tensor w,
                                         mcl_tensor dy, mcl_tensor dw);

/* ---- composite ops, on tensors given explicitly (a workload's, or the pair stack's) ----------- */

/* The triangle multiplicative update, outgoing or incoming, with a mask and every gradient: the
 * op's tensors, the forward's intermediates (kept for the backward) and the backward's. Saved:
 * p = LN(z) W_in, LN(z), the gates' sigmoids, a and b, a and b channel-first, t channel-first, LN(t), o =
 * LN(t) W_out, sigmoid(g). Backward: dO, d sigmoid(g), dLN(t), dt, dt channel-first, da and db
 * channel-first and pair-major, two temporaries, dp and dLN(z). */
enum { WL_TM_P, WL_TM_ZN, WL_TM_SA, WL_TM_SB, WL_TM_A, WL_TM_B, WL_TM_ACF, WL_TM_BCF, WL_TM_TCF, WL_TM_TN, WL_TM_O, WL_TM_SG,
       WL_TM_SAVED };
enum { WL_TM_DO, WL_TM_DSG, WL_TM_DTN, WL_TM_DT, WL_TM_DTCF, WL_TM_DACF, WL_TM_DBCF, WL_TM_DA, WL_TM_DB, WL_TM_TMP,
       WL_TM_TMP2, WL_TM_DP, WL_TM_DZN, WL_TM_TEMPS };

typedef struct wl_unfused_trimul {
    mcl_trimul_desc desc;
    mcl_trimul_fwd_tensors fwd;
    mcl_trimul_bwd_tensors bwd;
    mcl_tensor saved[WL_TM_SAVED], temp[WL_TM_TEMPS];
} wl_unfused_trimul;

/* Elements of each intermediate. */
void wl_unfused_trimul_sizes(const mcl_trimul_desc *desc, size_t saved[WL_TM_SAVED], size_t temp[WL_TM_TEMPS]);
mcl_status wl_unfused_trimul_forward(const wl_problem *p, const wl_unfused_trimul *u);
mcl_status wl_unfused_trimul_backward(const wl_problem *p, const wl_unfused_trimul *u);

/* Transition, with every gradient. Saved: LN(x), SwiGLU(h). Backward: dS, dh, dLN(x). */
enum { WL_TR_XN, WL_TR_SW, WL_TR_SAVED };
enum { WL_TR_DS, WL_TR_DH, WL_TR_DXN, WL_TR_TEMPS };

typedef struct wl_unfused_transition {
    mcl_transition_desc desc;
    mcl_transition_fwd_tensors fwd;
    mcl_transition_bwd_tensors bwd;
    mcl_tensor saved[WL_TR_SAVED], temp[WL_TR_TEMPS];
} wl_unfused_transition;

void wl_unfused_transition_sizes(const mcl_transition_desc *desc, size_t saved[WL_TR_SAVED],
                                 size_t temp[WL_TR_TEMPS]);
mcl_status wl_unfused_transition_forward(const wl_problem *p, const wl_unfused_transition *u);
mcl_status wl_unfused_transition_backward(const wl_problem *p, const wl_unfused_transition *u);

/* Triangle attention around the starting node with its residual (the ending node is this on z
 * with i and j swapped), H heads of D: out = z + (sigmoid(LN(z) W_g) * softmax(q k^T / sqrt(D) +
 * mask + pair) v) W_o with q, k, v = LN(z) W_q, W_k, W_v and pair = LN(z) W_b in the heads' layout;
 * no Linear biases (AF3). mask_bias is [N, N] (added to the logits of key j in row n). The backward
 * gives dz = dout + the gradient through the attention (dz may be dout) and every parameter's.
 * Saved: LN(z) and its statistics, q (scaled), k and v in the heads' layout, the probabilities,
 * o, sigmoid(g), the gated output. Temporaries, shared where their lives do not overlap: the
 * projections and their gradients, the pair bias, o and dv in the heads' layout, dq and dk there,
 * the output projection and dLN(z), one projection's part of dLN(z), dS. */
enum { WL_AT_W_Q, WL_AT_W_K, WL_AT_W_V, WL_AT_W_G, WL_AT_W_B, WL_AT_PROJECTIONS };
enum { WL_AT_XN, WL_AT_MEAN, WL_AT_RSTD, WL_AT_QH, WL_AT_KH, WL_AT_VH, WL_AT_PROB, WL_AT_O, WL_AT_SG, WL_AT_Y,
       WL_AT_SAVED };
enum { WL_AT_Q_DY, WL_AT_K_DO, WL_AT_V_DG, WL_AT_G_DOH, WL_AT_OH_DVH, WL_AT_DQH, WL_AT_DKH, WL_AT_DQ, WL_AT_DK,
       WL_AT_DV, WL_AT_BPROJ, WL_AT_PAIR, WL_AT_OUT_DXN, WL_AT_DXI, WL_AT_DS, WL_AT_TEMPS };

typedef struct wl_unfused_attention {
    size_t n, channels, heads, head_dim;
    mcl_tensor z, mask_bias, ln_weight, ln_bias, w[WL_AT_PROJECTIONS], w_o; /* in */
    mcl_tensor out;                                                         /* out [N, N, c] */
    mcl_tensor dout;                                                        /* in  [N, N, c] */
    mcl_tensor dz, dln_weight, dln_bias, dw[WL_AT_PROJECTIONS], dw_o;        /* out */
    mcl_tensor saved[WL_AT_SAVED], temp[WL_AT_TEMPS];
} wl_unfused_attention;

void wl_unfused_attention_sizes(size_t n, size_t channels, size_t heads, size_t head_dim, size_t saved[WL_AT_SAVED],
                                size_t temp[WL_AT_TEMPS]);
mcl_status wl_unfused_attention_forward(const wl_problem *p, const wl_unfused_attention *u);
mcl_status wl_unfused_attention_backward(const wl_problem *p, const wl_unfused_attention *u);

#endif
