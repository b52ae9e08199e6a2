/* EvoAttention: softmax(scale * Q K^T + mask bias + pair bias) V per (b, n, h), with an
 * optional sigmoid gate, and its backward. Q, K, V, G, O, Y: [B, N, S, H, D]; mask [B, N, S];
 * pair [B, H, S, S]; lse and delta [B, N, H, S] fp32.
 *
 * Tiled kernels (FlashAttention-2 style; nothing of size S x S is stored):
 *  - evoattn_forward: a work-group owns BQ query rows and streams key tiles with an online
 *    softmax; writes O (and Y) and the log-sum-exp.
 *  - evoattn_forward_mt: the same work micro-tiled like a GEMM (FWD_MT, see there).
 *  - evoattn_bwd_preprocess: delta = rowsum(dO * O) and dG.
 *  - evoattn_bwd_dq: a work-group owns BQ query rows and streams key tiles: dQ.
 *  - evoattn_bwd_dkdv: a work-group owns BK key rows of one (b, h) and a chunk of N; for each
 *    n it streams query tiles: dK, dV, per-head partial column sums of dS for d(mask bias),
 *    and dS added into its chunk's partial of d(pair bias) (the first n stores, later n add;
 *    no other work-group touches those entries, so no atomics; the partial is loaded
 *    EV_DKV_AHEAD queries ahead, since that read-modify-write bounds the kernel).
 *  - evoattn_bwd_dkdv_mt: the same work micro-tiled like a GEMM (DKV_MT, see there).
 *  - evoattn_sum_partials: sums partials in a fixed order (deterministic bias gradients).
 * Reference kernels (VARIANT 0) materialise scores and probabilities: the unfused baseline.
 *
 * Work decomposition of a tiled kernel: a work-item owns R of the work-group's rows (row
 * grp + r * G, G = rows / R) and a slice of DW head-dim columns (slice sl of DS; DS * DW >= D,
 * padded with zeros). Its rows' D-slices and accumulators live in registers; the streamed
 * tile sits in local memory and every work-item reads the same element at the same time, so
 * local reads are broadcasts that feed 4 * R FMAs each. With DS > 1 the partial dot products
 * of the slices are summed through local memory, in slice order, so every slice sees
 * bitwise-identical scores. With DS = 1 the backward kernels finish one streamed column
 * before the next, so no register array spans the tile: the NVIDIA compiler otherwise chose
 * per tile shape whether such arrays stayed in registers (the dK/dV kernel at D = 8 ran 10x
 * slower with BQ = 16 than with BQ = 8). Scores are kept in log2 units. A key whose mask bias is
 * <= EV_MASKED is removed; a row with no key left has probability 0 everywhere. */
#ifndef EV_D
#define EV_D 32
#endif
#ifndef EV_FWD_BQ
#define EV_FWD_BQ 128
#endif
#ifndef EV_FWD_BK
#define EV_FWD_BK 32
#endif
#ifndef EV_FWD_R
#define EV_FWD_R 1
#endif
#ifndef EV_FWD_DS
#define EV_FWD_DS 1
#endif
#ifndef EV_FWD_DW
#define EV_FWD_DW 32
#endif
#ifndef EV_DKV_BQ
#define EV_DKV_BQ 64
#endif
#ifndef EV_DKV_BK
#define EV_DKV_BK 64
#endif
#ifndef EV_DKV_R
#define EV_DKV_R 1
#endif
#ifndef EV_DKV_DS
#define EV_DKV_DS 1
#endif
#ifndef EV_DKV_DW
#define EV_DKV_DW 32
#endif
#ifndef EV_DQ_BQ
#define EV_DQ_BQ 128
#endif
#ifndef EV_DQ_BK
#define EV_DQ_BK 32
#endif
#ifndef EV_DQ_R
#define EV_DQ_R 1
#endif
#ifndef EV_DQ_DS
#define EV_DQ_DS 1
#endif
#ifndef EV_DQ_DW
#define EV_DQ_DW 32
#endif

#ifndef EV_DKV_AHEAD
#define EV_DKV_AHEAD 8
#endif

#ifndef EV_FWD_MT
#define EV_FWD_MT 1
#endif
#ifndef EV_FWD_MT_BQ
#define EV_FWD_MT_BQ 32
#endif
#ifndef EV_FWD_MT_BK
#define EV_FWD_MT_BK 32
#endif
#ifndef EV_DKV_MT
#define EV_DKV_MT 1
#endif
#ifndef EV_DKV_MT_BQ
#define EV_DKV_MT_BQ 32
#endif
#ifndef EV_DKV_MT_BK
#define EV_DKV_MT_BK 64
#endif

#ifndef EV_VEC4
#define EV_VEC4 0 /* D and every tensor offset are multiples of 4: vector loads and stores */
#endif

#define EV_MASKED (-1e8f)
#define EV_LOG2E 1.4426950408889634f
#define EV_LN2 0.6931471805599453f

#define EV_HAS_MASK 1u
#define EV_HAS_PAIR 2u
#define EV_HAS_GATE 4u
#define EV_WANT_LSE 8u
#define EV_WANT_DQ 16u
#define EV_WANT_DK 32u
#define EV_WANT_DV 64u
#define EV_WANT_DG 128u
#define EV_WANT_DMASK 256u
#define EV_WANT_DPAIR 512u

/* Every kernel takes the same arguments (the host sets them once). Tensors are a buffer and an
 * element offset; absent ones are NULL and only touched under their flag. */
#define EV_ARGS                                                                                \
    __global store_t *q, ulong q_off, __global store_t *k, ulong k_off, __global store_t *v,    \
        ulong v_off, __global store_t *mask, ulong mask_off, __global store_t *pair,            \
        ulong pair_off, __global store_t *g, ulong g_off, __global store_t *o, ulong o_off,     \
        __global store_t *y, ulong y_off, __global float *lse, ulong lse_off,                   \
        __global store_t *dout, ulong dout_off, __global store_t *dq, ulong dq_off,             \
        __global store_t *dk, ulong dk_off, __global store_t *dv, ulong dv_off,                 \
        __global store_t *dg, ulong dg_off, __global float *delta, ulong delta_off,             \
        __global float *mask_part, ulong mask_part_off, __global float *pair_part,              \
        ulong pair_part_off, __global float *scratch, ulong scratch_off, uint B, uint N, uint S, \
        uint H, float scale, uint flags, uint n_per_chunk
#define EV_OFFSETS                                                                             \
    q += q_off; k += k_off; v += v_off; mask += mask_off; pair += pair_off; g += g_off;         \
    o += o_off; y += y_off; lse += lse_off; dout += dout_off; dq += dq_off; dk += dk_off;      \
    dv += dv_off; dg += dg_off; delta += delta_off; mask_part += mask_part_off;                 \
    pair_part += pair_part_off; scratch += scratch_off

inline float sigmoid(float x) { return 1.0f / (1.0f + exp(-x)); }

/* Element (s, d) of the (b, n, h) slice of a [B, N, S, H, D] tensor. */
inline ulong slice_base(uint b, uint n, uint h, uint N, uint S, uint H)
{
    return (((ulong)b * N + n) * S * H + h) * EV_D;
}
#define AT(base, s, d) ((base) + (ulong)(s) * H * EV_D + (d))

/* Tiled kernels run on a 1-D grid (tiles of S x slices), which no device limits below 2^31
 * work-groups; the slice is get_group_id(0) / tiles. */

/* [B, N, H, S] statistics and [B, N, S] mask rows */
inline ulong stat_index(uint b, uint n, uint h, uint i, uint N, uint S, uint H)
{
    return (((ulong)b * N + n) * H + h) * S + i;
}

/* Element i of dO: dY times the gate's sigmoid when gated. */
inline float load_do(__global const store_t *dout, __global const store_t *g, ulong i, uint flags)
{
    float d = load_elem(dout, i);
    return (flags & EV_HAS_GATE) ? d * sigmoid(load_elem(g, i)) : d;
}

/* Mask bias of key j, and whether it removes the key. */
inline float mask_bias(__global const store_t *mask, ulong row, uint j, uint S, uint flags,
                       bool *removed)
{
    float m = (j < S && (flags & EV_HAS_MASK)) ? load_elem(mask, row + j) : 0.0f;
    *removed = j >= S || m <= EV_MASKED;
    return m;
}

/* Four elements of a slice's row from column d (a multiple of 4), zero past D; `gate`
 * non-NULL forms dO from dY. With EV_VEC4 (D and every tensor offset multiples of 4) one
 * vector load. */
inline float4 load4(__global const store_t *src, __global const store_t *gate, ulong at, uint d, uint flags)
{
    float x[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#if EV_VEC4
    if (d < EV_D) {
        load_vec4(src, at, x);
        if (gate && (flags & EV_HAS_GATE)) {
            float gv[4];
            load_vec4(gate, at, gv);
            for (uint t = 0; t < 4; t++) x[t] *= sigmoid(gv[t]);
        }
    }
#else
    for (uint t = 0; t < 4 && d + t < EV_D; t++)
        x[t] = gate ? load_do(src, gate, at + t, flags) : load_elem(src, at + t);
#endif
    return vload4(0, x);
}

/* Float4 e of rows first .. first + count of a slice (dp4 float4s a row), zero past those
 * rows, past S and past D; `gate` non-NULL forms dO from dY. (The bounds are one condition:
 * nesting the row-count check outside it made the register-prefetching dK/dV kernel 2 %
 * slower on the H100.) */
inline float4 row_vec(__global const store_t *src, __global const store_t *gate, ulong base, uint first, uint e,
                      uint count, uint dp4, uint S, uint H, uint flags)
{
    uint r = e / dp4, d = 4 * (e % dp4);
    return e < count * dp4 && first + r < S ? load4(src, gate, AT(base, first + r, d), d, flags) : 0.0f;
}

/* Entry e of the pair-bias tile of queries i0 .. i0 + rows and keys j0 .. j0 + cols, in log2
 * units; 0 past the tile, past S or without a pair bias (one condition, as row_vec). */
inline float pair_entry(__global const store_t *pair, ulong pair_base, uint i0, uint rows, uint j0, uint cols,
                        uint e, uint S, uint flags)
{
    uint i = i0 + e / cols, j = j0 + e % cols;
    bool in = (flags & EV_HAS_PAIR) && e < rows * cols && i < S && j < S;
    return in ? load_elem(pair, pair_base + (ulong)i * S + j) * EV_LOG2E : 0.0f;
}

/* Rows first .. first + count of a slice into local rows of `stride` float4s, dp4 of them
 * filled, zero past S and past D; `gate` non-NULL forms dO from dY on the way. */
inline void stage_rows(__local float4 *dst, uint stride, __global const store_t *src,
                       __global const store_t *gate, ulong base, uint first, uint count, uint dp4,
                       uint S, uint H, uint flags, uint lid, uint items)
{
    for (uint e = lid; e < count * dp4; e += items)
        dst[e / dp4 * stride + e % dp4] = row_vec(src, gate, base, first, e, count, dp4, S, H, flags);
}

/* The mask bias of key j in log2 units, -inf for a removed key (masked, or past S). */
inline float mask_entry(__global const store_t *mask, ulong mask_row, uint j, uint S, uint flags)
{
    bool removed;
    float mb = mask_bias(mask, mask_row, j, S, flags, &removed);
    return removed ? -INFINITY : mb * EV_LOG2E;
}

/* The mask_entry of keys j0 .. j0 + cols */
inline void stage_mask(__local float *mask_l, __global const store_t *mask, ulong mask_row, uint j0, uint cols,
                       uint S, uint flags, uint lid, uint items)
{
    for (uint c = lid; c < cols; c += items) mask_l[c] = mask_entry(mask, mask_row, j0 + c, S, flags);
}

/* The bias tile of queries i0 .. i0 + rows and keys j0 .. j0 + cols: the keys' mask bias
 * (stage_mask) and the pair-bias tile (pair_entry; zeros without a pair bias) in rows of
 * `stride`. */
inline void stage_bias(__local float *mask_l, __local float *pair_l, uint stride,
                       __global const store_t *mask, ulong mask_row, __global const store_t *pair,
                       ulong pair_base, uint i0, uint rows, uint j0, uint cols, uint S, uint flags,
                       uint lid, uint items)
{
    stage_mask(mask_l, mask, mask_row, j0, cols, S, flags, lid, items);
    for (uint e = lid; e < rows * cols; e += items)
        pair_l[e / cols * stride + e % cols] = pair_entry(pair, pair_base, i0, rows, j0, cols, e, S, flags);
}

/* Register prefetch of a tile (the next one is loaded while the current one is computed):
 * work-item lid holds elements e = lid + x * items, x < n, and stores them to local memory
 * after the barrier that ends the current tile. */
#define EV_PER_ITEM(elems, items) (((elems) + (items) - 1) / (items))

/* Rows first .. first + count of a slice (row_vec) */
inline void fetch_rows(float4 *dst, uint n, __global const store_t *src, __global const store_t *gate,
                       ulong base, uint first, uint count, uint dp4, uint S, uint H, uint flags, uint lid,
                       uint items)
{
    for (uint x = 0; x < n; x++) dst[x] = row_vec(src, gate, base, first, lid + x * items, count, dp4, S, H, flags);
}

inline void put_rows(__local float4 *dst, uint stride, const float4 *src, uint n, uint count, uint dp4, uint lid,
                     uint items)
{
    for (uint x = 0; x < n; x++) {
        uint e = lid + x * items;
        if (e < count * dp4) dst[e / dp4 * stride + e % dp4] = src[x];
    }
}

/* The pair-bias tile of queries i0 .. i0 + rows and keys j0 .. j0 + cols (pair_entry) */
inline void fetch_pair(float *dst, uint n, __global const store_t *pair, ulong pair_base, uint i0, uint rows,
                       uint j0, uint cols, uint S, uint flags, uint lid, uint items)
{
    for (uint x = 0; x < n; x++) dst[x] = pair_entry(pair, pair_base, i0, rows, j0, cols, lid + x * items, S, flags);
}

/* The log2 log-sum-exp and delta of queries i0 .. (-inf and 0 past S) */
inline void fetch_stats(float *l2, float *dl, uint n, __global const float *lse, __global const float *delta,
                        ulong stat_row, uint i0, uint S, uint lid, uint items)
{
    for (uint x = 0; x < n; x++) {
        uint i = i0 + lid + x * items;
        l2[x] = i < S ? lse[stat_row + i] * EV_LOG2E : -INFINITY;
        dl[x] = i < S ? delta[stat_row + i] : 0.0f;
    }
}

/* A rows x cols tile of floats into local rows of `stride` */
inline void put_tile(__local float *dst, uint stride, const float *src, uint n, uint rows, uint cols, uint lid,
                     uint items)
{
    for (uint x = 0; x < n; x++) {
        uint e = lid + x * items;
        if (e < rows * cols) dst[e / cols * stride + e % cols] = src[x];
    }
}

/* The work-item's slice (columns d0 .. d0 + 4 * nvec) of row i, zero past S and past D;
 * `gate` non-NULL forms dO from dY. */
inline void load_slice(float4 *dst, uint nvec, __global const store_t *src, __global const store_t *gate,
                       ulong base, uint i, uint d0, uint S, uint H, uint flags)
{
    for (uint e = 0; e < nvec; e++)
        dst[e] = i < S ? load4(src, gate, AT(base, i, d0 + 4 * e), d0 + 4 * e, flags) : 0.0f;
}

/* Stores factor * src into the slice of row i (nothing past S or past D). */
inline void store_slice(__global store_t *dst, const float4 *src, uint nvec, float factor, ulong base,
                        uint i, uint d0, uint S, uint H)
{
    if (i >= S) return;
    for (uint e = 0; e < nvec; e++) {
        uint d = d0 + 4 * e;
        float x[4];
        vstore4(src[e] * factor, 0, x);
#if EV_VEC4
        if (d < EV_D) store_vec4(dst, AT(base, i, d), x);
#else
        for (uint t = 0; t < 4 && d + t < EV_D; t++) store_elem(dst, AT(base, i, d + t), x[t]);
#endif
    }
}

/* The forward's outputs of row i from column d0 (nvec float4s): O = inv * acc, and with a gate
 * Y = sigmoid(G) * O. */
inline void store_outputs(__global store_t *o, __global store_t *y, __global const store_t *g, const float4 *acc,
                          uint nvec, float inv, ulong base, uint i, uint d0, uint S, uint H, uint flags)
{
    store_slice(o, acc, nvec, inv, base, i, d0, S, H);
    if (!(flags & EV_HAS_GATE)) return;
    for (uint e = 0; e < nvec; e++) {
        float4 gv;
        load_slice(&gv, 1, g, NULL, base, i, d0 + 4 * e, S, H, flags);
        gv = acc[e] * inv * (1.0f / (1.0f + exp(-gv)));
        store_slice(y, &gv, 1, 1.0f, base, i, d0 + 4 * e, S, H);
    }
}

/* acc + a . b in a fixed order */
inline float dot_acc(float4 a, float4 b, float acc)
{
    return fma(a.w, b.w, fma(a.z, b.z, fma(a.y, b.y, fma(a.x, b.x, acc))));
}

/* x + y + z + w in a fixed order */
inline float hsum(float4 a) { return (a.x + a.y) + (a.z + a.w); }

/* P and dS = P (dP - delta) of one entry from its score, dP and bias (log2 units) and its
 * query's log2 log-sum-exp and delta; a fully masked query (l2 = -inf) gives zeros. */
inline float2 prob_and_dscore(float s, float dp, float bias, float l2, float delta, float scale2)
{
    float p = l2 == -INFINITY ? 0.0f : exp2(fma(s, scale2, bias) - l2);
    return (float2)(p, p * (dp - delta));
}

/* part[(i0 + r) * S + j0 + c] = (accumulate ? part[..] : 0) + tile[r * stride + c] over a
 * rows x cols tile, coalesced along c; nothing past S. */
inline void add_tile(__global float *part, ulong base, __local const float *tile, uint stride, uint i0,
                     uint rows, uint j0, uint cols, uint S, bool accumulate, uint lid, uint items)
{
    for (uint e = lid; e < rows * cols; e += items) {
        uint r = e / cols, c = e % cols, i = i0 + r, j = j0 + c;
        if (i >= S || j >= S) continue;
        ulong at = base + (ulong)i * S + j;
        part[at] = (accumulate ? part[at] : 0.0f) + tile[r * stride + c];
    }
}

/* Entry (i, j) of a chunk's d(pair bias) partial, 0 where nothing was added yet. */
inline float partial_so_far(__global const float *part, ulong base, uint i, uint j, uint S, uint flags,
                            bool added)
{
    return added && (flags & EV_WANT_DPAIR) && i < S && j < S ? part[base + (ulong)i * S + j] : 0.0f;
}

/* With DS > 1: sums each work-item's partial dot products vals[R][COLS] over the DS slices
 * of its rows, through part[DS][ROWS][COLS + 1], in slice order. Contains a barrier: every
 * work-item calls it. */
#define EV_SUM_SLICES(vals, part, COLS)                                                        \
    do {                                                                                       \
        for (uint r_ = 0; r_ < R; r_++)                                                        \
            for (uint c_ = 0; c_ < (COLS); c_++)                                               \
                part[sl][grp + r_ * G][c_] = vals[r_][c_];                                     \
        barrier(CLK_LOCAL_MEM_FENCE);                                                          \
        for (uint r_ = 0; r_ < R; r_++)                                                        \
            for (uint c_ = 0; c_ < (COLS); c_++) {                                             \
                float t_ = 0.0f;                                                               \
                for (uint u_ = 0; u_ < DS; u_++) t_ += part[u_][grp + r_ * G][c_];             \
                vals[r_][c_] = t_;                                                             \
            }                                                                                  \
    } while (0)

/* Where a forward or dQ work-group works (grid: query tiles x B x N x H): query tile i0 of
 * slice (b, n, h), that slice's base, its mask row and the pair bias of (b, h). */
typedef struct query_group {
    uint b, n, h, i0;
    ulong base, mask_row, pair_base;
} query_group;

inline query_group query_group_of(uint id, uint queries, uint N, uint S, uint H)
{
    const uint tiles = (S + queries - 1) / queries, bnh = id / tiles;
    query_group at;
    at.h = bnh % H;
    at.n = (bnh / H) % N;
    at.b = bnh / (H * N);
    at.i0 = (id % tiles) * queries;
    at.base = slice_base(at.b, at.n, at.h, N, S, H);
    at.mask_row = ((ulong)at.b * N + at.n) * S;
    at.pair_base = ((ulong)at.b * H + at.h) * S * S;
    return at;
}

/* ---- forward ---------------------------------------------------------------------------- */

#if !EV_FWD_MT /* built only where chosen */
#define BQ EV_FWD_BQ
#define BK EV_FWD_BK
#define R EV_FWD_R
#define DS EV_FWD_DS
#define DW EV_FWD_DW
#define G (BQ / R)
#define V4 (DW / 4)  /* float4 vectors in a work-item's slice */
#define DP4 (DS * V4) /* float4 vectors in a padded row */

__kernel __attribute__((reqd_work_group_size(G * DS, 1, 1)))
void evoattn_forward(EV_ARGS)
{
    EV_OFFSETS;
    __local float4 k_l[BK][DP4], v_l[BK][DP4];
    __local float mask_l[BK], pair_l[BQ][BK + 1];
#if DS > 1
    __local float part_l[DS][BQ][BK + 1];
#endif
    const uint lid = get_local_id(0), grp = lid % G, sl = lid / G, items = G * DS;
    const query_group at = query_group_of(get_group_id(0), BQ, N, S, H);
    const uint b = at.b, n = at.n, h = at.h, i0 = at.i0;
    const ulong base = at.base, mask_row = at.mask_row, pair_base = at.pair_base;
    const float scale2 = scale * EV_LOG2E;

    float4 qv[R][V4], acc[R][V4];
    float m[R], l[R];
    for (uint r = 0; r < R; r++) {
        load_slice(qv[r], V4, q, NULL, base, i0 + grp + r * G, sl * DW, S, H, flags);
        for (uint e = 0; e < V4; e++) acc[r][e] = 0.0f;
        m[r] = -INFINITY;
        l[r] = 0.0f;
    }

    for (uint j0 = 0; j0 < S; j0 += BK) {
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile's readers are done */
        stage_rows(&k_l[0][0], DP4, k, NULL, base, j0, BK, DP4, S, H, flags, lid, items);
        stage_rows(&v_l[0][0], DP4, v, NULL, base, j0, BK, DP4, S, H, flags, lid, items);
        stage_bias(mask_l, &pair_l[0][0], BK + 1, mask, mask_row, pair, pair_base, i0, BQ, j0, BK, S, flags, lid, items);
        barrier(CLK_LOCAL_MEM_FENCE);

        float s[R][BK];
        for (uint c = 0; c < BK; c++) {
            for (uint r = 0; r < R; r++) s[r][c] = 0.0f;
            for (uint e = 0; e < V4; e++) {
                float4 k4 = k_l[c][sl * V4 + e];
                for (uint r = 0; r < R; r++) s[r][c] = dot_acc(qv[r][e], k4, s[r][c]);
            }
        }
#if DS > 1
        EV_SUM_SLICES(s, part_l, BK);
#endif
        for (uint r = 0; r < R; r++) {
            float m_new = m[r];
            for (uint c = 0; c < BK; c++) {
                float bias = mask_l[c] + pair_l[grp + r * G][c];
                s[r][c] = fma(s[r][c], scale2, bias);
                m_new = fmax(m_new, s[r][c]);
            }
            float m_use = m_new == -INFINITY ? 0.0f : m_new; /* no key yet: every p is 0 */
            float alpha = exp2(m[r] - m_use);
            m[r] = m_new;
            l[r] *= alpha;
            for (uint e = 0; e < V4; e++) acc[r][e] *= alpha;
            for (uint c = 0; c < BK; c++) {
                s[r][c] = exp2(s[r][c] - m_use);
                l[r] += s[r][c];
            }
        }
        for (uint c = 0; c < BK; c++)
            for (uint e = 0; e < V4; e++) {
                float4 v4 = v_l[c][sl * V4 + e];
                for (uint r = 0; r < R; r++) acc[r][e] = fma((float4)(s[r][c]), v4, acc[r][e]);
            }
    }

    for (uint r = 0; r < R; r++) {
        uint i = i0 + grp + r * G;
        float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
        store_outputs(o, y, g, acc[r], V4, inv, base, i, sl * DW, S, H, flags);
        if ((flags & EV_WANT_LSE) && sl == 0 && i < S)
            lse[stat_index(b, n, h, i, N, S, H)] = l[r] > 0.0f ? (m[r] + log2(l[r])) * EV_LN2 : -INFINITY;
    }
}
#undef BQ
#undef BK
#undef R
#undef DS
#undef DW
#undef G
#undef V4
#undef DP4
#endif

/* ---- backward: delta = rowsum(dO * O), dG ------------------------------------------------- */

/* A work-group takes EV_PRE_ROWS consecutive rows (a row is the D elements of one (b, n, s, h);
 * rows are contiguous in memory): it reads them coalesced, forms dG on the way and keeps
 * dO * O in local memory, then a work-item sums one row in order. (A work-item per row read
 * D-strided elements and ran at a quarter of the memory bandwidth.) */
#ifndef EV_PRE_ITEMS
#define EV_PRE_ITEMS 256
#endif
#ifndef EV_PRE_ROWS
#define EV_PRE_ROWS 64
#endif

__kernel __attribute__((reqd_work_group_size(EV_PRE_ITEMS, 1, 1)))
void evoattn_bwd_preprocess(EV_ARGS)
{
    EV_OFFSETS;
    __local float prod[EV_PRE_ROWS][EV_D + 1]; /* padded: a row sum's readers hit distinct banks */
    const uint lid = get_local_id(0);
    const ulong rows = (ulong)B * N * S * H, row0 = (ulong)get_group_id(0) * EV_PRE_ROWS;
    const uint count = (uint)min((ulong)EV_PRE_ROWS, rows - row0);
    for (uint e = lid; e < count * EV_D; e += EV_PRE_ITEMS) {
        ulong i = row0 * EV_D + e;
        float out = load_elem(o, i), dy = load_elem(dout, i);
        if (flags & EV_HAS_GATE) {
            float sg = sigmoid(load_elem(g, i));
            if (flags & EV_WANT_DG) store_elem(dg, i, dy * out * sg * (1.0f - sg));
            dy *= sg;
        }
        prod[e / EV_D][e % EV_D] = dy * out;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint r = lid; r < count; r += EV_PRE_ITEMS) {
        ulong row = row0 + r; /* ((b * N + n) * S + s) * H + h */
        uint h = row % H, s = (row / H) % S;
        ulong bn = row / ((ulong)H * S);
        float sum = 0.0f;
        for (uint d = 0; d < EV_D; d++) sum += prod[r][d];
        delta[(bn * H + h) * S + s] = sum;
    }
}


/* ---- backward: dQ ----------------------------------------------------------------------- */

#define BQ EV_DQ_BQ
#define BK EV_DQ_BK
#define R EV_DQ_R
#define DS EV_DQ_DS
#define DW EV_DQ_DW
#define G (BQ / R)
#define V4 (DW / 4)
#define DP4 (DS * V4)

__kernel __attribute__((reqd_work_group_size(G * DS, 1, 1)))
void evoattn_bwd_dq(EV_ARGS)
{
    EV_OFFSETS;
    __local float4 k_l[BK][DP4], v_l[BK][DP4];
    __local float mask_l[BK], pair_l[BQ][BK + 1];
#if DS > 1
    __local float part_s[DS][BQ][BK + 1], part_dp[DS][BQ][BK + 1];
#endif
    const uint lid = get_local_id(0), grp = lid % G, sl = lid / G, items = G * DS;
    const query_group at = query_group_of(get_group_id(0), BQ, N, S, H);
    const uint b = at.b, n = at.n, h = at.h, i0 = at.i0;
    const ulong base = at.base, mask_row = at.mask_row, pair_base = at.pair_base;
    const ulong stat_row = stat_index(b, n, h, 0, N, S, H);
    const float scale2 = scale * EV_LOG2E;

    float4 qv[R][V4], dov[R][V4], dq_acc[R][V4];
    float l2[R], dl[R];
    for (uint r = 0; r < R; r++) {
        uint i = i0 + grp + r * G;
        load_slice(qv[r], V4, q, NULL, base, i, sl * DW, S, H, flags);
        load_slice(dov[r], V4, dout, g, base, i, sl * DW, S, H, flags);
        for (uint e = 0; e < V4; e++) dq_acc[r][e] = 0.0f;
        l2[r] = i < S ? lse[stat_row + i] * EV_LOG2E : -INFINITY;
        dl[r] = i < S ? delta[stat_row + i] : 0.0f;
    }

    for (uint j0 = 0; j0 < S; j0 += BK) {
        barrier(CLK_LOCAL_MEM_FENCE);
        stage_rows(&k_l[0][0], DP4, k, NULL, base, j0, BK, DP4, S, H, flags, lid, items);
        stage_rows(&v_l[0][0], DP4, v, NULL, base, j0, BK, DP4, S, H, flags, lid, items);
        stage_bias(mask_l, &pair_l[0][0], BK + 1, mask, mask_row, pair, pair_base, i0, BQ, j0, BK, S, flags, lid, items);
        barrier(CLK_LOCAL_MEM_FENCE);

#if DS == 1
        /* one slice: each key column is finished before the next (see the dK/dV kernel) */
        for (uint c = 0; c < BK; c++) {
            float4 k4[V4], v4[V4];
            for (uint e = 0; e < V4; e++) {
                k4[e] = k_l[c][e];
                v4[e] = v_l[c][e];
            }
            for (uint r = 0; r < R; r++) {
                float4 s4 = 0.0f, dp4 = 0.0f; /* four independent chains per dot */
                for (uint e = 0; e < V4; e++) {
                    s4 = fma(qv[r][e], k4[e], s4);
                    dp4 = fma(dov[r][e], v4[e], dp4);
                }
                float bias = mask_l[c] + pair_l[grp + r * G][c];
                float ds = prob_and_dscore(hsum(s4), hsum(dp4), bias, l2[r], dl[r], scale2).y;
                for (uint e = 0; e < V4; e++) dq_acc[r][e] = fma((float4)(ds), k4[e], dq_acc[r][e]);
            }
        }
#else
        float s[R][BK], dp[R][BK];
        for (uint c = 0; c < BK; c++) {
            for (uint r = 0; r < R; r++) s[r][c] = dp[r][c] = 0.0f;
            for (uint e = 0; e < V4; e++) {
                float4 k4 = k_l[c][sl * V4 + e], v4 = v_l[c][sl * V4 + e];
                for (uint r = 0; r < R; r++) {
                    s[r][c] = dot_acc(qv[r][e], k4, s[r][c]);
                    dp[r][c] = dot_acc(dov[r][e], v4, dp[r][c]);
                }
            }
        }
        EV_SUM_SLICES(s, part_s, BK);
        EV_SUM_SLICES(dp, part_dp, BK);
        for (uint r = 0; r < R; r++) /* s becomes dS */
            for (uint c = 0; c < BK; c++) {
                float bias = mask_l[c] + pair_l[grp + r * G][c];
                s[r][c] = prob_and_dscore(s[r][c], dp[r][c], bias, l2[r], dl[r], scale2).y;
            }
        for (uint c = 0; c < BK; c++)
            for (uint e = 0; e < V4; e++) {
                float4 k4 = k_l[c][sl * V4 + e];
                for (uint r = 0; r < R; r++) dq_acc[r][e] = fma((float4)(s[r][c]), k4, dq_acc[r][e]);
            }
#endif
    }
    for (uint r = 0; r < R; r++) store_slice(dq, dq_acc[r], V4, scale, base, i0 + grp + r * G, sl * DW, S, H);
}
#undef BQ
#undef BK
#undef R
#undef DS
#undef DW
#undef G
#undef V4
#undef DP4

/* Where a dK/dV work-group works (grid: key tiles x B x H x chunks of N): key tile j0 of
 * head h in batch b, rows n_first .. n_end of its chunk, the pair bias of (b, h) and its
 * chunk's d(pair bias) partial. */
typedef struct dkv_group {
    uint b, h, j0, n_first, n_end;
    ulong pair_base, part_base;
} dkv_group;

inline dkv_group dkv_group_of(uint id, uint keys, uint B, uint N, uint S, uint H, uint n_per_chunk)
{
    const uint chunks = (N + n_per_chunk - 1) / n_per_chunk, tiles = (S + keys - 1) / keys;
    const uint group = id / tiles, chunk = group % chunks;
    dkv_group at;
    at.h = (group / chunks) % H;
    at.b = group / (chunks * H);
    at.j0 = (id % tiles) * keys;
    at.n_first = chunk * n_per_chunk;
    at.n_end = min(N, at.n_first + n_per_chunk);
    at.pair_base = ((ulong)at.b * H + at.h) * S * S;
    at.part_base = (((ulong)chunk * B + at.b) * H + at.h) * S * S;
    return at;
}

/* ---- backward: dK, dV and the bias gradients' partials ---------------------------------- */

/* Rows are keys here (BK per work-group), the streamed tile is BQ queries. Work-groups: key
 * tiles x B x H x chunks of N; a work-group handles the rows n of its chunk one after the
 * other, so it alone owns its keys' columns of the chunk's pair partial. Built only where the
 * micro-tiled variant is not chosen. */
#if !EV_DKV_MT
#define BQ EV_DKV_BQ
#define BK EV_DKV_BK
#define R EV_DKV_R
#define DS EV_DKV_DS
#define DW EV_DKV_DW
#define G (BK / R)
#define V4 (DW / 4)
#define DP4 (DS * V4)
#define AHEAD (EV_DKV_AHEAD < BQ ? EV_DKV_AHEAD : BQ) /* queries of d(pair) partial loaded ahead */

__kernel __attribute__((reqd_work_group_size(G * DS, 1, 1)))
void evoattn_bwd_dkdv(EV_ARGS)
{
    EV_OFFSETS;
    __local float4 q_l[BQ][DP4], do_l[BQ][DP4];
    __local float mask_l[BK], pair_l[BQ][BK + 1];
    __local float l2_l[BQ], delta_l[BQ];
#if DS > 1
    __local float part_s[DS][BK][BQ + 1], part_dp[DS][BK][BQ + 1];
#endif
    const uint lid = get_local_id(0), grp = lid % G, sl = lid / G, items = G * DS;
    const dkv_group at = dkv_group_of(get_group_id(0), BK, B, N, S, H, n_per_chunk);
    const uint b = at.b, h = at.h, j0 = at.j0, n_first = at.n_first, n_end = at.n_end;
    const ulong pair_base = at.pair_base, part_base = at.part_base;
    const float scale2 = scale * EV_LOG2E;

    for (uint n = n_first; n < n_end; n++) {
        const ulong base = slice_base(b, n, h, N, S, H), mask_row = ((ulong)b * N + n) * S;
        const ulong stat_row = stat_index(b, n, h, 0, N, S, H);
        float4 kv[R][V4], vv[R][V4], dk_acc[R][V4], dv_acc[R][V4];
        float dmask_acc[R];
        for (uint r = 0; r < R; r++) {
            load_slice(kv[r], V4, k, NULL, base, j0 + grp + r * G, sl * DW, S, H, flags);
            load_slice(vv[r], V4, v, NULL, base, j0 + grp + r * G, sl * DW, S, H, flags);
            for (uint e = 0; e < V4; e++) dk_acc[r][e] = dv_acc[r][e] = 0.0f;
            dmask_acc[r] = 0.0f;
        }

        for (uint i0 = 0; i0 < S; i0 += BQ) {
            barrier(CLK_LOCAL_MEM_FENCE);
            stage_rows(&q_l[0][0], DP4, q, NULL, base, i0, BQ, DP4, S, H, flags, lid, items);
            stage_rows(&do_l[0][0], DP4, dout, g, base, i0, BQ, DP4, S, H, flags, lid, items);
            stage_bias(mask_l, &pair_l[0][0], BK + 1, mask, mask_row, pair, pair_base, i0, BQ, j0, BK, S, flags, lid, items);
            for (uint e = lid; e < BQ; e += items) {
                bool in = i0 + e < S;
                l2_l[e] = in ? lse[stat_row + i0 + e] * EV_LOG2E : -INFINITY;
                delta_l[e] = in ? delta[stat_row + i0 + e] : 0.0f;
            }
            barrier(CLK_LOCAL_MEM_FENCE);

#if DS == 1
            /* one slice: each query column is finished before the next, so nothing of the
             * tile's size lives in registers and the compiler's unrolling cannot spill it */
            /* the chunk's partial so far is loaded AHEAD queries ahead, so that many loads are
             * in flight while the dots run (the kernel is otherwise latency bound on them) */
            const bool added = n != n_first;
            float ahead[R][AHEAD];
            for (uint r = 0; r < R; r++)
                for (uint u = 0; u < AHEAD; u++)
                    ahead[r][u] = partial_so_far(pair_part, part_base, i0 + u, j0 + grp + r * G, S, flags, added);
            for (uint c0 = 0; c0 < BQ; c0 += AHEAD) {
                float next[R][AHEAD];
                for (uint r = 0; r < R; r++)
                    for (uint u = 0; u < AHEAD; u++)
                        next[r][u] = partial_so_far(pair_part, part_base, i0 + c0 + AHEAD + u, j0 + grp + r * G, S,
                                                    flags, added && c0 + AHEAD + u < BQ);
                for (uint u = 0; u < AHEAD; u++) {
                    const uint c = c0 + u;
                    float4 q4[V4], o4[V4];
                    for (uint e = 0; e < V4; e++) {
                        q4[e] = q_l[c][e];
                        o4[e] = do_l[c][e];
                    }
                    for (uint r = 0; r < R; r++) {
                        uint col = grp + r * G, i = i0 + c, j = j0 + col;
                        float4 s4 = 0.0f, dp4 = 0.0f; /* four independent chains per dot */
                        for (uint e = 0; e < V4; e++) {
                            s4 = fma(kv[r][e], q4[e], s4);
                            dp4 = fma(vv[r][e], o4[e], dp4);
                        }
                        float bias = mask_l[col] + pair_l[c][col];
                        float2 pds = prob_and_dscore(hsum(s4), hsum(dp4), bias, l2_l[c], delta_l[c], scale2);
                        dmask_acc[r] += pds.y;
                        if ((flags & EV_WANT_DPAIR) && i < S && j < S)
                            pair_part[part_base + (ulong)i * S + j] = ahead[r][u] + pds.y;
                        for (uint e = 0; e < V4; e++) {
                            dv_acc[r][e] = fma((float4)(pds.x), o4[e], dv_acc[r][e]);
                            dk_acc[r][e] = fma((float4)(pds.y), q4[e], dk_acc[r][e]);
                        }
                    }
                }
                for (uint r = 0; r < R; r++)
                    for (uint u = 0; u < AHEAD; u++) ahead[r][u] = next[r][u];
            }
#else
            float s[R][BQ], dp[R][BQ];
            for (uint c = 0; c < BQ; c++) {
                for (uint r = 0; r < R; r++) s[r][c] = dp[r][c] = 0.0f;
                for (uint e = 0; e < V4; e++) {
                    float4 q4 = q_l[c][sl * V4 + e], o4 = do_l[c][sl * V4 + e];
                    for (uint r = 0; r < R; r++) {
                        s[r][c] = dot_acc(kv[r][e], q4, s[r][c]);
                        dp[r][c] = dot_acc(vv[r][e], o4, dp[r][c]);
                    }
                }
            }
            EV_SUM_SLICES(s, part_s, BQ);
            EV_SUM_SLICES(dp, part_dp, BQ);
            for (uint r = 0; r < R; r++) /* s becomes P, dp becomes dS */
                for (uint c = 0; c < BQ; c++) {
                    uint col = grp + r * G;
                    float bias = mask_l[col] + pair_l[c][col];
                    float2 pds = prob_and_dscore(s[r][c], dp[r][c], bias, l2_l[c], delta_l[c], scale2);
                    s[r][c] = pds.x;
                    dp[r][c] = pds.y;
                    dmask_acc[r] += pds.y;
                }
            barrier(CLK_LOCAL_MEM_FENCE); /* every slice has read its bias */
            for (uint r = 0; r < R && sl == 0; r++)
                for (uint c = 0; c < BQ; c++) pair_l[c][grp + r * G] = dp[r][c];
            for (uint c = 0; c < BQ; c++)
                for (uint e = 0; e < V4; e++) {
                    float4 q4 = q_l[c][sl * V4 + e], o4 = do_l[c][sl * V4 + e];
                    for (uint r = 0; r < R; r++) {
                        dv_acc[r][e] = fma((float4)(s[r][c]), o4, dv_acc[r][e]);
                        dk_acc[r][e] = fma((float4)(dp[r][c]), q4, dk_acc[r][e]);
                    }
                }
            /* the tile's dS, now in pair_l, joins this chunk's d(pair bias) partial (the barrier
             * stays unconditional: PoCL 5 corrupted memory with it under a uniform branch) */
            barrier(CLK_LOCAL_MEM_FENCE);
            if (flags & EV_WANT_DPAIR)
                add_tile(pair_part, part_base, &pair_l[0][0], BK + 1, i0, BQ, j0, BK, S, n != n_first, lid, items);
#endif
        }

        for (uint r = 0; r < R; r++) {
            uint j = j0 + grp + r * G;
            if (flags & EV_WANT_DK) store_slice(dk, dk_acc[r], V4, scale, base, j, sl * DW, S, H);
            if (flags & EV_WANT_DV) store_slice(dv, dv_acc[r], V4, 1.0f, base, j, sl * DW, S, H);
            if ((flags & EV_WANT_DMASK) && sl == 0 && j < S) mask_part[stat_row + j] = dmask_acc[r];
        }
    }
}
#undef BQ
#undef BK
#undef R
#undef DS
#undef DW
#undef G
#undef V4
#undef DP4
#undef AHEAD
#endif

/* ---- micro-tiled kernels -------------------------------------------------------------------- */

/* Their D-wide local tiles have rows of EV_LD4 float4s, an odd number, so the 8 rows a
 * quarter-warp reads fall in 8 different banks. */
#define EV_DP4 ((EV_D + 3) / 4)                       /* float4 vectors in a row */
#define EV_LD4 (EV_DP4 % 2 ? EV_DP4 : EV_DP4 + 1)

/* The scores and dP of a 4 x 4 block: s[u][t] = K row k0 + t * kstep . Q row q0 + u * qstep,
 * and dp likewise from V and dO. */
inline void block_dots(float s[4][4], float dp[4][4], __local const float4 *k_l, __local const float4 *q_l,
                       __local const float4 *v_l, __local const float4 *do_l, uint k0, uint kstep, uint q0,
                       uint qstep)
{
    for (uint u = 0; u < 4; u++)
        for (uint t = 0; t < 4; t++) s[u][t] = dp[u][t] = 0.0f;
    for (uint d4 = 0; d4 < EV_DP4; d4++) {
        float4 kk[4], vv[4], qq[4], oo[4];
        for (uint t = 0; t < 4; t++) {
            kk[t] = k_l[(k0 + t * kstep) * EV_LD4 + d4];
            vv[t] = v_l[(k0 + t * kstep) * EV_LD4 + d4];
            qq[t] = q_l[(q0 + t * qstep) * EV_LD4 + d4];
            oo[t] = do_l[(q0 + t * qstep) * EV_LD4 + d4];
        }
        for (uint u = 0; u < 4; u++)
            for (uint t = 0; t < 4; t++) {
                s[u][t] = dot_acc(kk[t], qq[u], s[u][t]);
                dp[u][t] = dot_acc(vv[t], oo[u], dp[u][t]);
            }
    }
}

/* The scores of a 4 x 4 block: s[u][t] = K row k0 + t * kstep . Q row q0 + u * qstep */
inline void block_scores(float s[4][4], __local const float4 *k_l, __local const float4 *q_l, uint k0, uint kstep,
                         uint q0, uint qstep)
{
    for (uint u = 0; u < 4; u++)
        for (uint t = 0; t < 4; t++) s[u][t] = 0.0f;
    for (uint d4 = 0; d4 < EV_DP4; d4++) {
        float4 kk[4], qq[4];
        for (uint t = 0; t < 4; t++) {
            kk[t] = k_l[(k0 + t * kstep) * EV_LD4 + d4];
            qq[t] = q_l[(q0 + t * qstep) * EV_LD4 + d4];
        }
        for (uint u = 0; u < 4; u++)
            for (uint t = 0; t < 4; t++) s[u][t] = dot_acc(kk[t], qq[u], s[u][t]);
    }
}

/* acc[e] += sum over the tile's keys of P[row 4 qc + e][key] * V[key][column block dc]:
 * P rows of `pld` float4s (4 keys each), V rows of EV_LD4. */
inline void block_pv(float4 acc[4], __local const float4 *p_l, uint pld, __local const float4 *v_l, uint qc,
                     uint dc, uint key_blocks)
{
    for (uint kc = 0; kc < key_blocks; kc++) {
        float4 vv[4], pp[4];
        for (uint t = 0; t < 4; t++) {
            vv[t] = v_l[(4 * kc + t) * EV_LD4 + dc];
            pp[t] = p_l[(4 * qc + t) * pld + kc];
        }
        for (uint e = 0; e < 4; e++)
            acc[e] = fma((float4)(pp[e].w), vv[3], fma((float4)(pp[e].z), vv[2],
                     fma((float4)(pp[e].y), vv[1], fma((float4)(pp[e].x), vv[0], acc[e]))));
    }
}

/* ---- forward, micro-tiled (FWD_MT = 1) ------------------------------------------------------ */

/* The work of evoattn_forward (same grid) organised like a GEMM, for the head dims that
 * families.h gives: the query tile's Q stays in local memory and each key tile's K, V and bias
 * are staged beside it. A work-item computes the scores of 4 queries x 4 keys (queries
 * qg + u * QG, keys kg + t * KG); the tile's row maxima and row sums go through local memory,
 * P replaces the bias tile, and each work-item then adds P V into its tasks of O, 4
 * consecutive queries x 4 head-dim columns each. Every work-item of a query group keeps the
 * same running maximum (same inputs, same order); the kg = 0 items keep the row sums. The next
 * key tile is not prefetched into registers as in the dK/dV kernel: that took the NVIDIA
 * compiler from 128 to 250 registers a work-item and the kernel from 1.5 to 2.1 ms (H100,
 * triangle S = 384). */
#if EV_FWD_MT /* built only where chosen */
#define BQ EV_FWD_MT_BQ
#define BK EV_FWD_MT_BK
#define DP4 EV_DP4
#define LD4 EV_LD4
#define KG (BK / 4)
#define QG (BQ / 4)
#define ITEMS (KG * QG)
#define PLD (KG % 2 ? KG : KG + 1)             /* float4s a P row: odd, as EV_LD4 */
#define TASKS ((QG * DP4 + ITEMS - 1) / ITEMS) /* 4-query x 4-column blocks of O per item */

__kernel __attribute__((reqd_work_group_size(ITEMS, 1, 1)))
void evoattn_forward_mt(EV_ARGS)
{
    EV_OFFSETS;
    __local float4 q_l[BQ][LD4], k_l[BK][LD4], v_l[BK][LD4], p_l[BQ][PLD]; /* p_l: bias, then P */
    __local float mask_l[BK], max_l[BQ][KG], sum_l[BQ][KG];
    __local float4 rescale_l[QG]; /* each query's factor for O: the tile's alpha, at the end 1 / l */
    __local float *p_f = (__local float *)p_l, *rescale_f = (__local float *)rescale_l;
    const uint lid = get_local_id(0), kg = lid % KG, qg = lid / KG;
    const query_group at = query_group_of(get_group_id(0), BQ, N, S, H);
    const uint b = at.b, n = at.n, h = at.h, i0 = at.i0;
    const ulong base = at.base, mask_row = at.mask_row, pair_base = at.pair_base;
    const float scale2 = scale * EV_LOG2E;

    stage_rows(&q_l[0][0], LD4, q, NULL, base, i0, BQ, DP4, S, H, flags, lid, ITEMS);
    float4 acc[TASKS][4];
    float m[4], l[4];
    for (uint x = 0; x < TASKS; x++)
        for (uint e = 0; e < 4; e++) acc[x][e] = 0.0f;
    for (uint u = 0; u < 4; u++) m[u] = -INFINITY, l[u] = 0.0f;

    for (uint j0 = 0; j0 < S; j0 += BK) {
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile's readers are done */
        stage_rows(&k_l[0][0], LD4, k, NULL, base, j0, BK, DP4, S, H, flags, lid, ITEMS);
        stage_rows(&v_l[0][0], LD4, v, NULL, base, j0, BK, DP4, S, H, flags, lid, ITEMS);
        stage_bias(mask_l, p_f, 4 * PLD, mask, mask_row, pair, pair_base, i0, BQ, j0, BK, S, flags, lid, ITEMS);
        barrier(CLK_LOCAL_MEM_FENCE);

        float s[4][4];
        block_scores(s, &k_l[0][0], &q_l[0][0], kg, KG, qg, QG);
        for (uint u = 0; u < 4; u++) {
            uint ii = qg + u * QG;
            float top = -INFINITY;
            for (uint t = 0; t < 4; t++) {
                uint jj = kg + t * KG;
                s[u][t] = fma(s[u][t], scale2, mask_l[jj] + p_f[ii * 4 * PLD + jj]);
                top = fmax(top, s[u][t]);
            }
            max_l[ii][kg] = top;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        float alpha[4];
        for (uint u = 0; u < 4; u++) {
            uint ii = qg + u * QG;
            float m_new = m[u], sum = 0.0f;
            for (uint c = 0; c < KG; c++) m_new = fmax(m_new, max_l[ii][c]);
            float m_use = m_new == -INFINITY ? 0.0f : m_new; /* no key yet: every p is 0 */
            alpha[u] = exp2(m[u] - m_use);
            m[u] = m_new;
            for (uint t = 0; t < 4; t++) {
                uint jj = kg + t * KG;
                float p = exp2(s[u][t] - m_use);
                p_f[ii * 4 * PLD + jj] = p; /* each entry is read and replaced by one item */
                sum += p;
            }
            sum_l[ii][kg] = sum;
            if (kg == 0) rescale_f[ii] = alpha[u];
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        if (kg == 0)
            for (uint u = 0; u < 4; u++) {
                float sum = 0.0f;
                for (uint c = 0; c < KG; c++) sum += sum_l[qg + u * QG][c];
                l[u] = fma(l[u], alpha[u], sum);
            }
        for (uint x = 0; x < TASKS; x++) {
            uint task = lid + x * ITEMS, qc = task / DP4, dc = task % DP4;
            if (qc >= QG) break;
            float4 a4 = rescale_l[qc];
            acc[x][0] *= a4.x, acc[x][1] *= a4.y, acc[x][2] *= a4.z, acc[x][3] *= a4.w;
            block_pv(acc[x], &p_l[0][0], PLD, &v_l[0][0], qc, dc, KG);
        }
    }

    barrier(CLK_LOCAL_MEM_FENCE);
    if (kg == 0)
        for (uint u = 0; u < 4; u++) {
            uint ii = qg + u * QG, i = i0 + ii;
            rescale_f[ii] = l[u] > 0.0f ? 1.0f / l[u] : 0.0f;
            if ((flags & EV_WANT_LSE) && i < S)
                lse[stat_index(b, n, h, i, N, S, H)] = l[u] > 0.0f ? (m[u] + log2(l[u])) * EV_LN2 : -INFINITY;
        }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint x = 0; x < TASKS; x++) {
        uint task = lid + x * ITEMS, qc = task / DP4, dc = task % DP4;
        if (qc >= QG) break;
        float inv[4];
        vstore4(rescale_l[qc], 0, inv);
        for (uint e = 0; e < 4; e++) store_outputs(o, y, g, &acc[x][e], 1, inv[e], base, i0 + 4 * qc + e, 4 * dc, S, H, flags);
    }
}
#undef BQ
#undef BK
#undef DP4
#undef LD4
#undef KG
#undef QG
#undef ITEMS
#undef PLD
#undef TASKS
#endif

/* ---- backward: dK, dV and the bias gradients' partials, micro-tiled (DKV_MT = 1) --------- */

/* The work of evoattn_bwd_dkdv (same grid, same chunks of N, same partials) organised like a
 * GEMM, for head dims up to 64: the key tile's K and V, the query tile's Q and dO, and then
 * the tile's P and dS all sit in local memory. A work-item first computes the scores and dP
 * of 4 keys x 4 queries (keys kg + t * KG, queries qg + u * QG), then adds the tile into the
 * dK and dV of 4 consecutive keys x 4 head-dim columns per task. Each 16-byte local read
 * feeds 8 FMAs (the row kernel's broadcasts feed 4), and no row of D lives in registers. */
#if EV_DKV_MT /* built only where chosen */
#define BQ EV_DKV_MT_BQ
#define BK EV_DKV_MT_BK
#define DP4 EV_DP4
#define LD4 EV_LD4
#define KG (BK / 4)                            /* key groups of the score block */
#define QG (BQ / 4)                            /* query groups of the score block */
#define ITEMS (KG * QG)
#define TASKS ((KG * DP4 + ITEMS - 1) / ITEMS) /* 4-key x 4-column blocks of dK, dV per item */

#define FETCH_ROWS EV_PER_ITEM(BQ * DP4, ITEMS)
#define FETCH_PAIR EV_PER_ITEM(BQ * BK, ITEMS)
#define FETCH_STATS EV_PER_ITEM(BQ, ITEMS)
#define FETCH_TILE(i)                                                                          \
    do {                                                                                       \
        fetch_rows(q_next, FETCH_ROWS, q, NULL, base, (i), BQ, DP4, S, H, flags, lid, ITEMS);  \
        fetch_rows(do_next, FETCH_ROWS, dout, g, base, (i), BQ, DP4, S, H, flags, lid, ITEMS); \
        fetch_pair(pair_next, FETCH_PAIR, pair, pair_base, (i), BQ, j0, BK, S, flags, lid, ITEMS); \
        fetch_stats(l2_next, delta_next, FETCH_STATS, lse, delta, stat_row, (i), S, lid, ITEMS); \
    } while (0)

__kernel __attribute__((reqd_work_group_size(ITEMS, 1, 1)))
void evoattn_bwd_dkdv_mt(EV_ARGS)
{
    EV_OFFSETS;
    __local float4 k_l[BK][LD4], v_l[BK][LD4], q_l[BQ][LD4], do_l[BQ][LD4];
    __local float4 p_l[BQ][KG], ds_l[BQ][KG]; /* p_l holds the pair bias until P replaces it */
    __local float mask_l[BK], l2_l[BQ], delta_l[BQ];
    __local float *p_f = (__local float *)p_l, *ds_f = (__local float *)ds_l;
    const uint lid = get_local_id(0), kg = lid % KG, qg = lid / KG;
    const dkv_group at = dkv_group_of(get_group_id(0), BK, B, N, S, H, n_per_chunk);
    const uint b = at.b, h = at.h, j0 = at.j0, n_first = at.n_first, n_end = at.n_end;
    const ulong pair_base = at.pair_base, part_base = at.part_base;
    const float scale2 = scale * EV_LOG2E;

    for (uint n = n_first; n < n_end; n++) {
        const ulong base = slice_base(b, n, h, N, S, H), mask_row = ((ulong)b * N + n) * S;
        const ulong stat_row = stat_index(b, n, h, 0, N, S, H);
        float4 dk_acc[TASKS][4], dv_acc[TASKS][4];
        float dmask_acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (uint x = 0; x < TASKS; x++)
            for (uint e = 0; e < 4; e++) dk_acc[x][e] = dv_acc[x][e] = 0.0f;
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous row's readers are done */
        stage_rows(&k_l[0][0], LD4, k, NULL, base, j0, BK, DP4, S, H, flags, lid, ITEMS);
        stage_rows(&v_l[0][0], LD4, v, NULL, base, j0, BK, DP4, S, H, flags, lid, ITEMS);
        stage_mask(mask_l, mask, mask_row, j0, BK, S, flags, lid, ITEMS);

        /* each query tile's Q, dO, pair bias and statistics are loaded into registers while the
         * previous tile is computed */
        float4 q_next[FETCH_ROWS], do_next[FETCH_ROWS];
        float pair_next[FETCH_PAIR], l2_next[FETCH_STATS], delta_next[FETCH_STATS];
        FETCH_TILE(0);
        for (uint i0 = 0; i0 < S; i0 += BQ) {
            barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile's readers are done */
            put_rows(&q_l[0][0], LD4, q_next, FETCH_ROWS, BQ, DP4, lid, ITEMS);
            put_rows(&do_l[0][0], LD4, do_next, FETCH_ROWS, BQ, DP4, lid, ITEMS);
            put_tile(p_f, BK, pair_next, FETCH_PAIR, BQ, BK, lid, ITEMS);
            put_tile(l2_l, BQ, l2_next, FETCH_STATS, 1, BQ, lid, ITEMS);
            put_tile(delta_l, BQ, delta_next, FETCH_STATS, 1, BQ, lid, ITEMS);
            barrier(CLK_LOCAL_MEM_FENCE);
            if (i0 + BQ < S) FETCH_TILE(i0 + BQ);

            /* the chunk's d(pair bias) partial so far, loaded before the dots so that the
             * loads are in flight while they run */
            float part[4][4];
            for (uint u = 0; u < 4; u++)
                for (uint t = 0; t < 4; t++)
                    part[u][t] = partial_so_far(pair_part, part_base, i0 + qg + u * QG, j0 + kg + t * KG, S,
                                                flags, n != n_first);
            float s[4][4], dp[4][4];
            block_dots(s, dp, &k_l[0][0], &q_l[0][0], &v_l[0][0], &do_l[0][0], kg, KG, qg, QG);
            for (uint u = 0; u < 4; u++)
                for (uint t = 0; t < 4; t++) {
                    uint ii = qg + u * QG, jj = kg + t * KG, i = i0 + ii, j = j0 + jj;
                    float bias = mask_l[jj] + p_f[ii * BK + jj];
                    float2 pds = prob_and_dscore(s[u][t], dp[u][t], bias, l2_l[ii], delta_l[ii], scale2);
                    dmask_acc[t] += pds.y;
                    if ((flags & EV_WANT_DPAIR) && i < S && j < S)
                        pair_part[part_base + (ulong)i * S + j] = part[u][t] + pds.y;
                    p_f[ii * BK + jj] = pds.x; /* each entry is read and replaced by one item */
                    ds_f[ii * BK + jj] = pds.y;
                }
            barrier(CLK_LOCAL_MEM_FENCE);

            /* dV += P^T dO and dK += dS^T Q for 4 keys x 4 columns per task */
            for (uint x = 0; x < TASKS; x++) {
                uint task = lid + x * ITEMS, kc = task / DP4, dc = task % DP4;
                if (kc >= KG) break;
                for (uint ii = 0; ii < BQ; ii++) {
                    float4 p4 = p_l[ii][kc], s4 = ds_l[ii][kc], o4 = do_l[ii][dc], q4 = q_l[ii][dc];
                    dv_acc[x][0] = fma((float4)(p4.x), o4, dv_acc[x][0]);
                    dv_acc[x][1] = fma((float4)(p4.y), o4, dv_acc[x][1]);
                    dv_acc[x][2] = fma((float4)(p4.z), o4, dv_acc[x][2]);
                    dv_acc[x][3] = fma((float4)(p4.w), o4, dv_acc[x][3]);
                    dk_acc[x][0] = fma((float4)(s4.x), q4, dk_acc[x][0]);
                    dk_acc[x][1] = fma((float4)(s4.y), q4, dk_acc[x][1]);
                    dk_acc[x][2] = fma((float4)(s4.z), q4, dk_acc[x][2]);
                    dk_acc[x][3] = fma((float4)(s4.w), q4, dk_acc[x][3]);
                }
            }
        }

        for (uint x = 0; x < TASKS; x++) {
            uint task = lid + x * ITEMS, kc = task / DP4, dc = task % DP4;
            if (kc >= KG) break;
            for (uint e = 0; e < 4; e++) {
                uint j = j0 + 4 * kc + e;
                if (flags & EV_WANT_DK) store_slice(dk, &dk_acc[x][e], 1, scale, base, j, 4 * dc, S, H);
                if (flags & EV_WANT_DV) store_slice(dv, &dv_acc[x][e], 1, 1.0f, base, j, 4 * dc, S, H);
            }
        }
        /* d(mask bias): column sums of dS over the query groups, in order (the barriers
         * stay unconditional, see evoattn_bwd_dkdv) */
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint t = 0; t < 4; t++) ds_f[qg * BK + kg + t * KG] = dmask_acc[t];
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint jj = lid; jj < BK && (flags & EV_WANT_DMASK); jj += ITEMS) {
            float sum = 0.0f;
            for (uint r = 0; r < QG; r++) sum += ds_f[r * BK + jj];
            if (j0 + jj < S) mask_part[stat_row + j0 + jj] = sum;
        }
    }
}
#undef BQ
#undef BK
#undef DP4
#undef LD4
#undef KG
#undef QG
#undef ITEMS
#undef TASKS
#undef FETCH_ROWS
#undef FETCH_PAIR
#undef FETCH_STATS
#undef FETCH_TILE
#endif

/* out[o * inner + x] = sum over c < chunks of part[(o * chunks + c) * inner + x], in c order:
 * d(mask bias) sums per-head partials (chunks = H), d(pair bias) per-chunk partials. */
__kernel void evoattn_sum_partials(__global const float *part, ulong part_off, __global store_t *out,
                                   ulong out_off, ulong outer, uint chunks, ulong inner)
{
    part += part_off;
    ulong x = get_global_id(0), o = get_global_id(1);
    if (x >= inner || o >= outer) return;
    float sum = 0.0f;
    for (uint c = 0; c < chunks; c++) sum += part[(o * chunks + c) * inner + x];
    store_elem(out + out_off, o * inner + x, sum);
}

/* ---- reference variant: materialised scores ----------------------------------------------- */

/* scratch[bnh][i][j] = s_ij in natural units, or -inf for a removed key. Grid (S, S, B*N*H). */
__kernel void evoattn_ref_scores(EV_ARGS)
{
    EV_OFFSETS;
    uint j = get_global_id(0), i = get_global_id(1), bnh = get_global_id(2);
    if (j >= S || i >= S) return;
    uint h = bnh % H, n = (bnh / H) % N, b = bnh / (H * N);
    ulong base = slice_base(b, n, h, N, S, H);
    bool removed;
    float mb = mask_bias(mask, ((ulong)b * N + n) * S, j, S, flags, &removed);
    float dot = 0.0f;
    for (uint d = 0; d < EV_D; d++) dot = fma(load_elem(q, AT(base, i, d)), load_elem(k, AT(base, j, d)), dot);
    float pb = (flags & EV_HAS_PAIR) ? load_elem(pair, (((ulong)b * H + h) * S + i) * S + j) : 0.0f;
    scratch[((ulong)bnh * S + i) * S + j] = removed ? -INFINITY : dot * scale + mb + pb;
}

/* Scores to probabilities in place, one work-item per row; the forward also writes lse, the
 * backward (EV_WANT_LSE clear) uses the saved lse instead. Grid (S, B*N*H). */
__kernel void evoattn_ref_softmax(EV_ARGS)
{
    EV_OFFSETS;
    uint i = get_global_id(0), bnh = get_global_id(1);
    if (i >= S) return;
    uint h = bnh % H, n = (bnh / H) % N, b = bnh / (H * N);
    __global float *row = scratch + ((ulong)bnh * S + i) * S;
    ulong at = stat_index(b, n, h, i, N, S, H);
    float m = -INFINITY, sum = 0.0f;
    if (flags & EV_WANT_LSE) {
        for (uint j = 0; j < S; j++) m = fmax(m, row[j]);
        for (uint j = 0; m != -INFINITY && j < S; j++) sum += exp(row[j] - m);
        lse[at] = m == -INFINITY ? -INFINITY : m + log(sum);
    }
    float l = lse[at];
    for (uint j = 0; j < S; j++) row[j] = l == -INFINITY ? 0.0f : exp(row[j] - l);
}

/* O (and Y) = P V, one work-item per output element. Grid (D, S, B*N*H). */
__kernel void evoattn_ref_pv(EV_ARGS)
{
    EV_OFFSETS;
    uint d = get_global_id(0), i = get_global_id(1), bnh = get_global_id(2);
    if (d >= EV_D || i >= S) return;
    uint h = bnh % H, n = (bnh / H) % N, b = bnh / (H * N);
    ulong base = slice_base(b, n, h, N, S, H);
    __global const float *prow = scratch + ((ulong)bnh * S + i) * S;
    float sum = 0.0f;
    for (uint j = 0; j < S; j++) sum = fma(prow[j], load_elem(v, AT(base, j, d)), sum);
    store_elem(o, AT(base, i, d), sum);
    if (flags & EV_HAS_GATE) store_elem(y, AT(base, i, d), sum * sigmoid(load_elem(g, AT(base, i, d))));
}

/* dS = P (dP - delta) into the second half of scratch. Grid (S, S, B*N*H). */
__kernel void evoattn_ref_ds(EV_ARGS)
{
    EV_OFFSETS;
    uint j = get_global_id(0), i = get_global_id(1), bnh = get_global_id(2);
    if (j >= S || i >= S) return;
    uint h = bnh % H, n = (bnh / H) % N, b = bnh / (H * N);
    ulong base = slice_base(b, n, h, N, S, H), at = ((ulong)bnh * S + i) * S + j;
    float dp = 0.0f;
    for (uint d = 0; d < EV_D; d++) dp = fma(load_do(dout, g, AT(base, i, d), flags), load_elem(v, AT(base, j, d)), dp);
    ulong total = (ulong)B * N * H * S * S;
    scratch[total + at] = scratch[at] * (dp - delta[stat_index(b, n, h, i, N, S, H)]);
}

/* dQ, dK, dV: one work-item per output element of all three. Grid (D, S, B*N*H). */
__kernel void evoattn_ref_dqkv(EV_ARGS)
{
    EV_OFFSETS;
    uint d = get_global_id(0), t = get_global_id(1), bnh = get_global_id(2);
    if (d >= EV_D || t >= S) return;
    uint h = bnh % H, n = (bnh / H) % N, b = bnh / (H * N);
    ulong base = slice_base(b, n, h, N, S, H), total = (ulong)B * N * H * S * S;
    __global const float *p = scratch + (ulong)bnh * S * S, *ds = p + total;
    float sq = 0.0f, sk = 0.0f, sv = 0.0f;
    for (uint u = 0; u < S; u++) {
        sq = fma(ds[(ulong)t * S + u], load_elem(k, AT(base, u, d)), sq);
        sk = fma(ds[(ulong)u * S + t], load_elem(q, AT(base, u, d)), sk);
        sv = fma(p[(ulong)u * S + t], load_do(dout, g, AT(base, u, d), flags), sv);
    }
    if (flags & EV_WANT_DQ) store_elem(dq, AT(base, t, d), sq * scale);
    if (flags & EV_WANT_DK) store_elem(dk, AT(base, t, d), sk * scale);
    if (flags & EV_WANT_DV) store_elem(dv, AT(base, t, d), sv);
}

/* Bias gradients from the materialised dS: d(pair bias)[b,h,i,j] = sum over n, and per-head
 * column sums into mask_part (summed over heads by evoattn_sum_partials). Grid (S, S, B*H). */
__kernel void evoattn_ref_dbias(EV_ARGS)
{
    EV_OFFSETS;
    uint j = get_global_id(0), i = get_global_id(1), bh = get_global_id(2);
    if (j >= S || i >= S) return;
    uint h = bh % H, b = bh / H;
    ulong total = (ulong)B * N * H * S * S;
    __global const float *ds = scratch + total;
    if (flags & EV_WANT_DPAIR) {
        float sum = 0.0f;
        for (uint n = 0; n < N; n++) sum += ds[((((ulong)b * N + n) * H + h) * S + i) * S + j];
        pair_part[((ulong)bh * S + i) * S + j] = sum;
    }
    if ((flags & EV_WANT_DMASK) && i == 0)
        for (uint n = 0; n < N; n++) {
            ulong bnh = ((ulong)b * N + n) * H + h;
            float sum = 0.0f;
            for (uint r = 0; r < S; r++) sum += ds[(bnh * S + r) * S + j];
            mask_part[bnh * S + j] = sum;
        }
}
