/* The steps of FLuRKA's walks (lib/ops/flurka/flurka.c), internal to the family: the projections
 * along the sequence (projection.c), the keys' features and [S | z] and their gradients (keys.c),
 * the query rows (rows.c), and what they share (steps.c). The dense products are GEMMs of the
 * gemm family (its tuned tiles and split-K) with the fp32 intermediates as fp32 operands beside
 * tensors of the storage type; keys and query rows run a chunk of every head at a time, so their
 * features take a bounded workspace (CHUNK_KIB), never N x m; small kernels between the GEMMs
 * (cl/flurka/) apply the maps and normalise. Every sum runs in a fixed order. */
#ifndef MCL_OPS_FLURKA_STEPS_H
#define MCL_OPS_FLURKA_STEPS_H

#include "flurka.h"

#include "ops/common/walk.h"
#include "ops/gemm/gemm.h"
#include "runtime/program.h"

/* What a call runs with, from its descriptor and the family's parameters. */
typedef struct fl_plan {
    fl_params params;
    size_t bh, keys, len;  /* heads in all; keys Nk (k, or N without projection); features L */
    size_t row_chunk;      /* query rows of every head whose features are in the workspace at once */
    size_t key_chunk;      /* likewise keys */
    float a_scale;         /* on the features' dot products */
} fl_plan;

/* The workspace's parts: fp32 intermediates. Several steps share a part one after another. */
enum {
    FL_PART_KT,          /* K~ [B * H, Nk, D] */
    FL_PART_VT,          /* [V~ | 1] [B * H, Nk, D + 1] */
    FL_PART_MAXIMA,      /* FAVOR+: every key's largest exponent [B * H, Nk], then each head's [B * H] */
    FL_PART_SVZ,         /* [S | z] [B * H, L, D + 1] (softmax: [V~ | 1] itself) */
    FL_PART_DSVZ,        /* [dS | dz] */
    FL_PART_DA,          /* softmax's dK~ [B * H, k, D] */
    FL_PART_DKT,         /* the kernel maps' dK~, dV~ [B * H, Nk, D] */
    FL_PART_DVT,
    FL_PART_F,           /* a chunk's features [B * H, chunk, L] */
    FL_PART_G,           /* their gradients */
    FL_PART_NUMZ,        /* a chunk's [num | den], then [dnum | dden]; FAVOR+ keys' sums of g */
    FL_PART_SUMS,        /* a sum over chunks (or over the heads sharing E): its fp32 slots */
    FL_PART_SUMS_A,      /* softmax's second sum over chunks (dK~) */
    FL_PART_GEMM_SPLITS, /* a GEMM's split-K partials */
};

/* A part (or a tensor) as the kernels take it: a buffer and an offset in its own elements. */
typedef struct fl_buf {
    cl_mem mem;
    cl_ulong off;
} fl_buf;

fl_buf fl_part(mcl_walk *w, int part, size_t floats);
fl_buf fl_tensor(const mcl_tensor *t, mcl_dtype dtype);

/* What the keys' steps leave for the query rows: K~, [V~ | 1], [S | z], and FAVOR+'s maxima (the
 * heads' at `heads`). */
typedef struct fl_keys {
    fl_buf kt, vt, maxima, heads, svz;
} fl_keys;

/* The kernel `name` of cl/flurka/<source>.cl, with the call's defines, over `global` (rounded up
 * to `local`). */
mcl_status fl_launch(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const char *source, const char *name,
                     cl_uint dims, const size_t *global, const size_t *local, const mcl_arg *args, size_t nargs);

/* A chunk: rows (query rows or keys) first .. first + count - 1 of every head, of at most
 * `capacity`, and where its intermediates live. */
typedef struct fl_chunk {
    size_t first, count, capacity;
    fl_buf f, g, numz; /* [B * H, capacity, L], [.., L], [.., D + 1] */
} fl_chunk;

/* The parts of chunks of `capacity` rows; g only where `gradients` */
fl_chunk fl_chunk_of(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, size_t capacity, int gradients);
/* the next chunk of `total` rows (count 0: none left) */
int fl_chunk_next(fl_chunk *c, size_t total);
/* a [B * H, capacity, ld] intermediate of the chunk as a GEMM operand */
gemm_matrix fl_chunk_operand(const fl_chunk *c, fl_buf b, size_t ld, int trans);
/* a [B * H, N, D] tensor of the storage type from element `first` on (a head's row first / D,
 * or head first / (N * D)), batched over the heads, as a GEMM operand */
gemm_matrix fl_heads_operand(const mcl_flurka_desc *d, const mcl_tensor *t, size_t first, int trans);
/* an fp32 [B * H, rows, ld] intermediate from row `first` of every head on, as a GEMM operand */
gemm_matrix fl_fp32_rows(fl_buf b, size_t rows, size_t ld, size_t first);
/* a row kernel over the chunk: grid (width, count, B * H), work-groups (local, 1, 1) */
mcl_status fl_chunk_launch(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const fl_chunk *c,
                           const char *source, const char *name, size_t width, size_t local, const mcl_arg *args,
                           size_t nargs);
/* The matrix A [L, D] whose rows give the features (W, or each head's K~ for softmax), as a GEMM
 * operand. */
gemm_matrix fl_amat(const mcl_flurka_desc *d, const fl_plan *plan, const fl_keys *keys, const mcl_tensor *w, int trans);

/* A sum over chunks of `call` (k its rows): planned on the first chunk, each chunk's GEMM added to
 * fp32 slots in chunk order, summed into call->c at the end. */
typedef struct fl_sum {
    gemm_call call;
    gemm_plan plan;
    mcl_tensor slots;
    size_t b_row; /* elements of B a row moves its first row by (0: B is the chunk's own) */
} fl_sum;

mcl_status fl_sum_begin(mcl_walk *w, const char *step, int part, fl_sum *sum);
mcl_status fl_sum_add(mcl_walk *w, const char *step, const fl_sum *sum, const fl_chunk *c);
mcl_status fl_sum_end(mcl_walk *w, const char *step, const fl_sum *sum);

/* projection.c: xt = p x into rows ld apart (K~ = E K, V~ = F V; x itself in fp32 without a
 * projection); dx = p^T dxt; dp = the sum over the heads sharing p of dxt x^T. */
mcl_status fl_project(mcl_walk *w, const char *step, const mcl_flurka_desc *d, const fl_plan *plan,
                      const mcl_tensor *x, const mcl_tensor *p, fl_buf xt, size_t ld);
mcl_status fl_project_back(mcl_walk *w, const char *step, const mcl_flurka_desc *d, const fl_plan *plan, fl_buf dxt,
                           size_t ldx, const mcl_tensor *p, const mcl_tensor *dx);
mcl_status fl_project_grad(mcl_walk *w, const char *step, const mcl_flurka_desc *d, const fl_plan *plan, fl_buf dxt,
                           size_t ldx, const mcl_tensor *x, const mcl_tensor *dp);

/* keys.c: K~ and [V~ | 1] projected, then [S | z]; backward the kernel maps' dK~ and dV~ from
 * [dS | dz]. */
mcl_status fl_keys_forward(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const mcl_tensor *k,
                           const mcl_tensor *v, const mcl_tensor *e, const mcl_tensor *f, const mcl_tensor *wt,
                           fl_keys *keys);
mcl_status fl_keys_backward(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const fl_keys *keys,
                            const mcl_tensor *wt, fl_buf dsvz, fl_buf dkt, fl_buf dvt);

/* rows.c: the output (and the normaliser); backward dq and the rows' sums [dS | dz] (and
 * softmax's dK~). */
mcl_status fl_rows_forward(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const fl_keys *keys,
                           const mcl_flurka_fwd_tensors *t);
mcl_status fl_rows_backward(mcl_walk *w, const mcl_flurka_desc *d, const fl_plan *plan, const fl_keys *keys,
                            const mcl_flurka_bwd_tensors *t, int want_dq, fl_buf dsvz, fl_buf da);

#endif
