/* One AF3 pair-stack block (Pairformer's pair track) on a pair representation z [N, N, c] with a
 * pair mask [N, N], each sub-block with its residual (z = z + f(z)):
 *   1. triangle multiplication, outgoing   2. incoming
 *   3. triangle attention around the starting node   4. the ending node (3 on z with i, j swapped)
 *   5. the pair transition
 * and the backward of the whole block with every parameter's gradient. The same block runs on two
 * paths: megacl's ops (pairstack_megacl.c) and the unfused path a PyTorch-eager user has
 * (pairstack_unfused.c: CLBlast GEMMs, one elementwise operation a kernel, the attention's logits
 * materialised; fp32 only, as CLBlast is). `megacl demo` times both sub-block by sub-block and
 * compares their results; the tests check that they agree.
 *
 * It is no workload (workload.h): it is checked by the two paths' agreement, each of its ops being
 * checked against its double-precision reference by its own workload, and it is timed sub-block
 * by sub-block with its state (what the forward keeps for the backward) held between the passes. */
#ifndef MCL_WORKLOAD_PAIRSTACK_H
#define MCL_WORKLOAD_PAIRSTACK_H

#include "workload.h"

#include <stdint.h>

enum { PS_TRIMUL_OUT, PS_TRIMUL_IN, PS_ATTN_START, PS_ATTN_END, PS_TRANSITION, PS_SUBBLOCKS };
extern const char *const ps_subblock_names[PS_SUBBLOCKS]; /* "triangle multiplication outgoing", ... */

typedef struct ps_config {
    size_t n;                 /* N_res */
    size_t channels;          /* c */
    size_t heads, head_dim;   /* triangle attention's H and D */
    size_t trimul_hidden;     /* the triangle updates' h */
    size_t transition_hidden; /* the transition's F */
    mcl_dtype dtype;
} ps_config;

/* AF3's sizes: c = 128, H = 4, D = 32, h = 128, F = 4c. */
ps_config ps_af3(size_t n, mcl_dtype dtype);

/* ---- the block's inputs: z, the mask, every parameter and dz at the block's output ----------- */

#define PS_MAX_PARAMS 8 /* of one sub-block */

/* A parameter: a [rows, cols] matrix (rows 1 for a vector) at `offset` elements into the one
 * buffer that holds every parameter (its gradient at the same place in the gradients' buffer). */
typedef struct ps_param {
    const char *name;
    size_t rows, cols, offset;
} ps_param;

/* The parameters of sub-block `sub`, in order; returns how many. */
size_t ps_params_of(const ps_config *c, int sub, ps_param out[PS_MAX_PARAMS]);
size_t ps_params_elements(const ps_config *c);

/* The inputs on the host, drawn from a seed and rounded to the config's dtype, so that both paths
 * run on the same values. */
typedef struct ps_block {
    ps_config config;
    float *z, *mask, *params, *dz_out;
} ps_block;

mcl_status ps_block_create(const ps_config *c, uint64_t seed, ps_block **out);
void ps_block_destroy(ps_block *b);

/* ---- the two paths -------------------------------------------------------------------------- */

typedef struct ps_path ps_path;
extern const ps_path ps_megacl, ps_unfused;
const char *ps_path_name(const ps_path *path);
/* The dtype the path runs a config's block in: its own, or fp32 where the path has only that. */
mcl_dtype ps_path_dtype(const ps_path *path, mcl_dtype dtype);

/* One path's step on a context: its inputs uploaded (in the path's dtype), and every buffer the
 * step holds (outputs, gradients, what the forward keeps for the backward, temporaries). */
typedef struct ps_run ps_run;

mcl_status ps_run_create(mcl_context *ctx, const ps_block *b, const ps_path *path, ps_run **out);
void ps_run_destroy(ps_run *r);

/* Sub-block `sub`'s forward, or its backward (the step runs the forwards in order, then the
 * backwards in reverse order). */
mcl_status ps_run_forward(ps_run *r, int sub);
mcl_status ps_run_backward(ps_run *r, int sub);

/* The device bytes of the run's buffers: its memory beyond the inputs, but for the workspace the
 * context's ops take (mcl_context_get_stats). */
double ps_run_buffer_bytes(const ps_run *r);

/* ---- results -------------------------------------------------------------------------------- */

#define PS_MAX_RESULTS (2 + PS_SUBBLOCKS * PS_MAX_PARAMS)

/* The block's output and every gradient, read back as floats: "z_out", "dz", then each parameter's
 * gradient ("triangle attention starting node: dw_q"). */
typedef struct ps_results {
    size_t count;
    char names[PS_MAX_RESULTS][80];
    size_t sizes[PS_MAX_RESULTS];
    float *values[PS_MAX_RESULTS];
} ps_results;

mcl_status ps_run_fetch(ps_run *r, ps_results *out);
void ps_results_free(ps_results *results);

/* ||a - b|| / ||b|| over n values; infinite where a value is not finite. */
double ps_difference(const float *a, const float *b, size_t n);

/* How far megacl's results may lie from the unfused path's (ps_difference) for megacl's dtype:
 * fp32 2e-5, the design's bound of long fp32 reductions (both paths sum in fp32, in different
 * orders, through the five sub-blocks and back); 16-bit dtypes the storage's rounding. */
double ps_tolerance(mcl_dtype dtype);

/* ---- memory --------------------------------------------------------------------------------- */

/* What a path's step needs of the device: its inputs, its buffers (the largest of them too, which
 * the device's allocation limit bounds) and the most workspace its ops report taking. */
typedef struct ps_memory {
    double inputs, buffers, workspace, largest;
} ps_memory;

mcl_status ps_memory_need(mcl_context *ctx, const ps_path *path, const ps_config *c, ps_memory *out);

/* The largest n in [1, limit] with fits(n) (fits growing false with n: a step's need grows with
 * N); 0 when not even n = 1 fits. Pure: the tests give it a fake memory budget. */
size_t ps_max_tokens(int (*fits)(size_t n, void *user), void *user, size_t limit);

/* A device's memory as a step must fit it: all of it, and the largest buffer it allocates. */
typedef struct ps_budget {
    double global_bytes, max_alloc_bytes;
} ps_budget;

ps_budget ps_budget_of(const mcl_device_info *device);
double ps_memory_total(const ps_memory *need);
int ps_fits(const ps_memory *need, const ps_budget *budget);

/* The largest N_res up to `limit` whose step on the path fits the budget, the config's other sizes
 * kept (0 if none does), and that step's need. An N beyond an op's limits does not fit. */
size_t ps_max_tokens_within(mcl_context *ctx, const ps_path *path, const ps_config *c, const ps_budget *budget,
                            size_t limit, ps_memory *need);

#endif
