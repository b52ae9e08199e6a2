/* The pair stack's paths as pairstack.c runs them (see pairstack.h): each declares the buffers its
 * step holds and runs its sub-blocks on them. */
#ifndef MCL_WORKLOAD_PAIRSTACK_PATH_H
#define MCL_WORKLOAD_PAIRSTACK_PATH_H

#include "pairstack.h"

/* Buffers every path holds, first in its list: the block's output, dz, every parameter's gradient
 * (laid out as the parameters), and the inputs of sub-blocks 2 to 5, which the backward reads. */
enum { PS_Z_OUT, PS_DZ, PS_DPARAMS, PS_Z1, PS_COMMON_BUFFERS = PS_Z1 + PS_SUBBLOCKS - 1 };

/* The kinds of sub-block: the two triangle updates, the two attentions, the transition. */
enum { PS_KIND_TRIMUL, PS_KIND_ATTENTION, PS_KIND_TRANSITION, PS_KINDS };
int ps_kind_of(int sub);

typedef struct ps_buffer {
    size_t count;
    int fp32; /* statistics and log-sum-exps: fp32 whatever the dtype */
    /* 0: held through the step; PS_KIND_* + 1: a temporary of that kind of sub-block, which shares
     * its bytes with the other kinds' (one sub-block runs at a time, and a framework's caching
     * allocator reuses them so) */
    int temporary_of;
} ps_buffer;

#define PS_MAX_BUFFERS 160

/* Where a path's buffers lie: each held buffer in a device buffer of its own, the temporaries of
 * each kind of sub-block one after another in one shared region, as large as the largest kind's. */
typedef struct ps_layout {
    ps_buffer buffers[PS_MAX_BUFFERS];
    size_t bytes[PS_MAX_BUFFERS];
    size_t offsets[PS_MAX_BUFFERS]; /* a temporary's, into the region */
    size_t region_bytes;
    double total, largest;
} ps_layout;

void ps_layout_of(const ps_path *path, const ps_config *c, ps_layout *out);

/* A pass of a sub-block: its forward, or its backward. A failure leaves its message in
 * wl_last_error. */
typedef mcl_status (*ps_pass)(ps_run *r, int sub);

struct ps_path {
    const char *name;
    int fp32_only;
    size_t buffer_count;
    /* every buffer of the step, PS_COMMON_BUFFERS first */
    void (*buffers)(const ps_config *c, ps_buffer *out);
    /* the most workspace its ops report taking from the context */
    mcl_status (*workspace)(mcl_context *ctx, const ps_config *c, size_t *bytes);
    ps_pass forward[PS_KINDS], backward[PS_KINDS];
};

/* The inputs, uploaded in the path's dtype; the mask's two additive biases for EvoAttention, 0 for
 * a kept pair and -1e9 for a masked one: the starting node's [i, j], and the ending node's,
 * [j, i] (its rows are the original columns). */
enum { PS_IN_Z, PS_IN_MASK, PS_IN_MASK_BIAS_START, PS_IN_MASK_BIAS_END, PS_IN_PARAMS, PS_IN_DZ_OUT, PS_INPUTS };

struct ps_run {
    const ps_path *path;
    ps_config config; /* the block's, in the path's dtype */
    mcl_context *ctx;
    cl_mem inputs[PS_INPUTS];
    mcl_tensor buffers[PS_MAX_BUFFERS];
    cl_mem owned[PS_MAX_BUFFERS + 1]; /* the held buffers and the temporaries' region */
    size_t owned_count;
    double buffer_bytes;
    wl_problem *kernels; /* the unfused path's own kernels (its elementwise program) */
};

/* Buffer i, input i, as tensors. */
mcl_tensor ps_buffer_at(const ps_run *r, int i);
mcl_tensor ps_input(const ps_run *r, int i);

/* Parameter k of sub-block `sub` in the parameters' buffer, and its gradient in dparams. */
mcl_tensor ps_param_at(const ps_run *r, int sub, int k);
mcl_tensor ps_dparam_at(const ps_run *r, int sub, int k);

/* Sub-block sub's input z and its output; the gradient arriving at its output (dz at the block's
 * output for the last, else the running one, PS_DZ, which every backward leaves holding the
 * gradient at its input). */
mcl_tensor ps_z_in(const ps_run *r, int sub);
mcl_tensor ps_z_out(const ps_run *r, int sub);
mcl_tensor ps_dz_in(const ps_run *r, int sub);

/* The parameters of the two triangle updates, of the two attentions and of the transition, in
 * the order ps_params_of lists them. */
enum { PS_TM_LN_IN_WEIGHT, PS_TM_LN_IN_BIAS, PS_TM_W_IN, PS_TM_LN_OUT_WEIGHT, PS_TM_LN_OUT_BIAS, PS_TM_W_OUT };
enum { PS_AT_LN_WEIGHT, PS_AT_LN_BIAS, PS_AT_W_Q, PS_AT_W_K, PS_AT_W_V, PS_AT_W_G, PS_AT_W_B, PS_AT_W_O };
enum { PS_TR_LN_WEIGHT, PS_TR_LN_BIAS, PS_TR_W1, PS_TR_W2 };

/* The sub-blocks' descriptors. */
mcl_trimul_desc ps_trimul_desc(const ps_config *c, int sub);
mcl_transition_desc ps_transition_desc(const ps_config *c);

#endif
