/* The evoattn family: EvoAttention's kernels (cl/evoattn/) and their tuning parameters. */
#ifndef MCL_OPS_EVOATTN_H
#define MCL_OPS_EVOATTN_H

#include "runtime/family.h"

/* A row kernel's tiles (forward, dQ; dK/dV with the bias gradients): a query tile bq and a key
 * tile bk, one of them the work-group's own rows (bq for forward and dQ, bk for dK/dV) and the
 * other the tile it streams; r rows a work-item owns; dw the widest head-dim slice a work-item
 * holds (the head dim is split into the fewest slices of at most dw columns). */
typedef struct ev_row_tiles {
    int bq, bk, r, dw;
} ev_row_tiles;

/* A micro-tiled variant: bk keys by bq queries a step, a work-item per 4 x 4 block of them; on
 * is one of ev_mt_mode. */
typedef struct ev_mt_tiles {
    int on, bq, bk;
} ev_mt_tiles;

/* Where a micro-tiled variant runs: never; at the head dims measured to favour it
 * (EV_MT_MIN_HEAD_DIM to the kernel's maximum), the portable default; or at every head dim its
 * tiles fit the device, for the tuner to try where a shape bucket may favour it too. */
enum { EV_MT_OFF = 0, EV_MT_IN_RANGE = 1, EV_MT_WHEREVER_IT_FITS = 2 };

/* A tensor-core variant of a tiled kernel (cl/evoattn/forward_mma.cl, dq_mma.cl, dkdv_mma.cl),
 * for 16-bit calls and f32 ones where the context allows tf32: on is 0 (off), 1 (mma.sync,
 * where the device's probe ran it) or 2 (the instruction emulated, on any device: how the tests
 * check the kernels without a GPU); warps of 16 own rows each (queries, or dK/dV's keys), and
 * the streamed tile (keys, or dK/dV's queries). */
typedef struct ev_mma_tiles {
    int on, warps, stream;
} ev_mma_tiles;

/* variant: 0 the unfused reference kernels (materialised scores), 1 the tiled ones.
 * dpair_waves: the work-groups per compute unit the dK/dV kernel's split over N aims for when
 * d(pair bias) is wanted. dkv_ahead: queries ahead the row dK/dV kernel loads its d(pair bias)
 * partial (loads in flight hide the latency it is otherwise bound by). */
typedef struct ev_params {
    int variant;
    ev_row_tiles fwd, dkv, dq;
    int dpair_waves, dkv_ahead;
    ev_mt_tiles dkv_mt, fwd_mt;
    ev_mma_tiles fwd_mma, dq_mma, dkv_mma;
} ev_params;

enum { EV_VARIANT_REFERENCE = 0, EV_VARIANT_TILED = 1 };

/* The head dims the micro-tiled kernels are for. Below 17 their dot products are too short to
 * pay for the per-tile softmax and barriers (MSA rows, D = 8); at D = 64 the forward's
 * work-item holds two 4 x 4 blocks of O and the row kernel is faster. */
#define EV_MT_MIN_HEAD_DIM 17
#define EV_DKV_MT_MAX_HEAD_DIM 64
#define EV_FWD_MT_MAX_HEAD_DIM 48


extern const mcl_family mcl_family_evoattn;

#endif
