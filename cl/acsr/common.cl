/* ACSR sparse attention's shared helpers, put before every kernel source of the family (the
 * files of cl/acsr/). Q, K, V, O, dO, dQ, dK, dV: [B, H, N, D]; lse and delta [B, H, N] fp32.
 *
 * A mask's rows (ACSR_ROW_WORDS words each): up to ACSR_RUNS progressions (start, stride,
 * count; count 0 past a row's own), then the row's range in the CSR columns (first, count) when
 * the row is held there. Its tiles (ACSR_TILE_WORDS words): the first slot in `order` and the
 * rows of the tile, the components it walks, then per component a key lattice (stride, first
 * key, key count); stride 0 means the keys are the CSR columns from `first`, for a tile of one
 * CSR row. The rows of a tile share every lattice, so a key of a component's lattice is one of a
 * row's keys exactly when it lies between the row's first and last column of that component.
 *
 * The kernels:
 *  - forward.cl, acsr_forward: a work-group owns a tile's rows and streams BK keys of each
 *    lattice at a time through local memory, with an online softmax: O and the log-sum-exp.
 *  - dq.cl, acsr_dq: the same walk for dQ.
 *  - dkdv.cl, acsr_dkdv: a work-group owns a tile of the transposed mask's rows (keys) and
 *    streams their queries: dK and dV, each key owned by one work-group (deterministic).
 *  - delta.cl, acsr_delta: rowsum(dO * O), which the backward kernels read.
 *  - unfused.cl: SPLAT's pipeline, a work-group per row: scores into workspace, row softmax,
 *    then P V.
 * Work decomposition of a tile kernel: work-item (slot, sl) owns the tile's row `slot` and the
 * head-dim slice sl of DW columns (DS slices; partial dot products are summed through local
 * memory in slice order, so every slice sees the same scores). Scores are in log2 units. */
#ifndef ACSR_D
#define ACSR_D 64
#endif
#ifndef ACSR_VEC4
#define ACSR_VEC4 0 /* D and every tensor offset are multiples of 4: vector loads and stores */
#endif

#define ACSR_RUNS 4
#define ACSR_ROW_WORDS (3 * ACSR_RUNS + 2)
#define ACSR_TILE_WORDS (3 + 3 * ACSR_RUNS)
#define ACSR_WANT_LSE 1u
#define ACSR_WANT_DQ 2u
#define ACSR_WANT_DK 4u
#define ACSR_WANT_DV 8u
#define ACSR_LOG2E 1.4426950408889634f
#define ACSR_LN2 0.6931471805599453f

/* Every kernel takes the same arguments (the host sets them once); tensors are a buffer and an
 * element offset, absent ones NULL and untouched. */
#define ACSR_ARGS                                                                              \
    __global const uint *tiles, uint tile_count, __global const uint *order,                   \
        __global const uint *rows, __global const uint *csr, __global const ulong *row_offsets, \
        __global const store_t *q, ulong q_off, __global const store_t *k, ulong k_off,        \
        __global const store_t *v, ulong v_off, __global store_t *o, ulong o_off,              \
        __global float *lse, ulong lse_off, __global const store_t *dout, ulong dout_off,      \
        __global float *delta, ulong delta_off, __global store_t *dq, ulong dq_off,            \
        __global store_t *dk, ulong dk_off, __global store_t *dv, ulong dv_off,                \
        __global float *scores, ulong scores_off, ulong nonzeros, uint N, uint BH, float scale, uint flags
#define ACSR_OFFSETS                                                                           \
    q += q_off; k += k_off; v += v_off; o += o_off; lse += lse_off; dout += dout_off;          \
    delta += delta_off; dq += dq_off; dk += dk_off; dv += dv_off; scores += scores_off

/* Element (i, d) of head bh of a [B, H, N, D] tensor. */
inline ulong at(uint bh, uint i, uint d, uint N) { return ((ulong)bh * N + i) * ACSR_D + d; }

/* Four elements of row i from column d (a multiple of 4), zero past D. */
inline float4 load4(__global const store_t *src, uint bh, uint i, uint d, uint N)
{
    float x[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#if ACSR_VEC4
    if (d < ACSR_D) load_vec4(src, at(bh, i, d, N), x);
#else
    for (uint t = 0; t < 4 && d + t < ACSR_D; t++) x[t] = load_elem(src, at(bh, i, d + t, N));
#endif
    return vload4(0, x);
}

/* Stores factor * src into row i's columns d0 .. d0 + 4 * nvec (nothing past D). */
inline void store_slice(__global store_t *dst, const float4 *src, uint nvec, float factor, uint bh, uint i,
                        uint d0, uint N)
{
    for (uint e = 0; e < nvec; e++) {
        uint d = d0 + 4 * e;
        float x[4];
        vstore4(src[e] * factor, 0, x);
#if ACSR_VEC4
        if (d < ACSR_D) store_vec4(dst, at(bh, i, d, N), x);
#else
        for (uint t = 0; t < 4 && d + t < ACSR_D; t++) store_elem(dst, at(bh, i, d + t, N), x[t]);
#endif
    }
}

/* The row's slice of nvec float4s from column d0 (zero for no row: i == N). */
inline void load_slice(float4 *dst, uint nvec, __global const store_t *src, uint bh, uint i, uint d0, uint N)
{
    for (uint e = 0; e < nvec; e++) dst[e] = i < N ? load4(src, bh, i, d0 + 4 * e, N) : 0.0f;
}

/* Where a work-group is: its tile (the group's index modulo the tiles) and head. */
typedef struct tile_place {
    __global const uint *tile;
    uint bh;
} tile_place;

inline tile_place tile_of(__global const uint *tiles, uint tile_count)
{
    size_t group = get_group_id(0);
    tile_place p = {tiles + (group % tile_count) * ACSR_TILE_WORDS, (uint)(group / tile_count)};
    return p;
}

/* The row of slot `slot` in the tile, or N past its rows. */
inline uint tile_row(__global const uint *tile, __global const uint *order, uint slot, uint N)
{
    return slot < tile[1] ? order[tile[0] + slot] : N;
}

/* A component's key lattice, and a row's bounds on it. */
typedef struct lattice {
    uint stride, first, keys; /* stride 0: the keys are csr[first ..] */
} lattice;

inline lattice lattice_of(__global const uint *tile, uint c)
{
    lattice l = {tile[3 + 3 * c], tile[4 + 3 * c], tile[5 + 3 * c]};
    return l;
}

inline uint lattice_key(lattice l, __global const uint *csr, uint t)
{
    return l.stride ? l.first + l.stride * t : csr[l.first + t];
}

/* Row `row`'s first and last column of component c (a CSR row: all of the tile's keys). */
inline uint2 row_bounds(__global const uint *rows, uint row, uint c, uint N)
{
    if (row >= N) return (uint2)(1, 0); /* empty */
    __global const uint *r = rows + (ulong)row * ACSR_ROW_WORDS + 3 * c;
    if (r[2] == 0) return (uint2)(0, N - 1);
    return (uint2)(r[0], r[0] + r[1] * (r[2] - 1));
}

/* Whether key position t of lattice l is a key of the row with these bounds. */
inline bool row_has(lattice l, uint t, uint key, uint2 bounds)
{
    return t < l.keys && key >= bounds.x && key <= bounds.y;
}

/* Key rows first + t, t < BK, of lattice l into local rows of dp4 float4s (zero past the
 * lattice and past D). */
inline void stage_keys(__local float4 *dst, uint dp4, __global const store_t *src, lattice l,
                       __global const uint *csr, uint t0, uint count, uint bh, uint N, uint lid, uint items)
{
    for (uint e = lid; e < count * dp4; e += items) {
        uint t = t0 + e / dp4, d = 4 * (e % dp4);
        dst[e] = t < l.keys ? load4(src, bh, lattice_key(l, csr, t), d, N) : 0.0f;
    }
}

/* With DS > 1: vals[c] summed over the DS slices of row `slot` through part (DS x rows x
 * (cols + 1) floats), in slice order. Every work-item calls it. */
inline void sum_slices(float *vals, uint cols, __local float *part, uint rows, uint slot, uint sl, uint ds)
{
    uint stride = cols + 1;
    for (uint c = 0; c < cols; c++) part[(sl * rows + slot) * stride + c] = vals[c];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint c = 0; c < cols; c++) {
        float t = 0.0f;
        for (uint u = 0; u < ds; u++) t += part[(u * rows + slot) * stride + c];
        vals[c] = t;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}

inline float dot4(float4 a, float4 b, float acc)
{
    return fma(a.x, b.x, fma(a.y, b.y, fma(a.z, b.z, fma(a.w, b.w, acc))));
}

#if defined(MCL_MMA) && MCL_MMA
/* ---- the tensor-core kernels' (forward_mma.cl, dq_mma.cl) ---------------------------------- */
#define ACSR_DK ((ACSR_D + 15) / 16 * 16) /* the head dim padded with zeros to the instruction's k */

/* Rows idx[0 .. count) of head bh (N: none, zeros) into a local tile of `pad` values a row, laid
 * out as `how` says (cl/mma.cl; transposed: ACSR_DK rows), zero past D. */
inline void stage_indexed(__local mma_t *dst, uint pad, uint how, __global const store_t *src,
                          __local const uint *idx, uint count, uint bh, uint N, uint lid, uint items)
{
    for (uint e = lid; e < count * ACSR_DK; e += items) {
        uint r = e / ACSR_DK, d = e % ACSR_DK, i = idx[r];
        float x = i < N && d < ACSR_D ? load_elem(src, at(bh, i, d, N)) : 0.0f;
        dst[how & MMA_TRANSPOSED ? d * pad + r : r * pad + d] = mma_staged(x, how);
    }
}

/* The rows of the tile's slots 0 .. count (N past its rows), then (after a barrier) their Q as
 * a row-major tile, and the warp's A fragments of it: the lane's rows quad and quad + 8 of its
 * warp's 16. Every work-item calls it. */
inline void stage_tile_rows(__local uint *row_l, __local mma_t *rows_tile, uint pad, __global const store_t *src,
                            tile_place p, __global const uint *order, uint count, uint N, uint lid, uint items)
{
    for (uint r = lid; r < count; r += items) row_l[r] = tile_row(p.tile, order, r, N);
    barrier(CLK_LOCAL_MEM_FENCE);
    stage_indexed(rows_tile, pad, 0, src, row_l, count, p.bh, N, lid, items);
    barrier(CLK_LOCAL_MEM_FENCE);
}

/* Keys t0 .. t0 + count of lattice l (N past its keys) into key_l. */
inline void stage_key_indices(__local uint *key_l, lattice l, __global const uint *csr, uint t0, uint count, uint N,
                              uint lid, uint items)
{
    for (uint j = lid; j < count; j += items) key_l[j] = t0 + j < l.keys ? lattice_key(l, csr, t0 + j) : N;
}
#endif
