/* EvoAttention's shared helpers, put before every kernel source of the family (the files of
 * cl/evoattn/): softmax(scale * Q K^T + mask bias + pair bias) V per (b, n, h), with an optional
 * sigmoid gate, and its backward. Q, K, V, G, O, Y: [B, N, S, H, D]; mask [B, N, S]; pair
 * [B, H, S, S]; lse and delta [B, N, H, S] fp32.
 *
 * The kernels, one source each (FlashAttention-2 style; nothing of size S x S is stored):
 *  - forward.cl, evoattn_forward: a work-group owns BQ query rows and streams key tiles with an
 *    online softmax; writes O (and Y) and the log-sum-exp.
 *  - forward_mt.cl, evoattn_forward_mt: the same work micro-tiled like a GEMM.
 *  - preprocess.cl, evoattn_bwd_preprocess: delta = rowsum(dO * O) and dG.
 *  - dq.cl, evoattn_bwd_dq: a work-group owns BQ query rows and streams key tiles: dQ.
 *  - dkdv.cl, evoattn_bwd_dkdv: a work-group owns BK key rows of one (b, h) and a chunk of N;
 *    for each n it streams query tiles: dK, dV, per-head partial column sums of dS for d(mask
 *    bias), and dS added into its chunk's partial of d(pair bias) (the first n stores, later n
 *    add; no other work-group touches those entries, so no atomics).
 *  - dkdv_mt.cl, evoattn_bwd_dkdv_mt: the same work micro-tiled like a GEMM.
 *  - sum_partials.cl, evoattn_sum_partials: sums partials in a fixed order (deterministic bias
 *    gradients).
 *  - reference.cl: kernels that materialise scores and probabilities, the unfused baseline.
 * blocks.cl holds the 4 x 4 block products of the micro-tiled kernels.
 *
 * Work decomposition of a row kernel (forward, dq, dkdv): a work-item owns R of the
 * work-group's rows (row grp + r * G, G = rows / R) and a slice of DW head-dim columns (slice
 * sl of DS; DS * DW >= D, padded with zeros). Its rows' D-slices and accumulators live in
 * registers; the streamed tile sits in local memory and every work-item reads the same element
 * at the same time, so local reads are broadcasts that feed 4 * R FMAs each. With DS > 1 the
 * partial dot products of the slices are summed through local memory, in slice order, so every
 * slice sees bitwise-identical scores. Scores are kept in log2 units. A key whose mask bias is
 * <= EV_MASKED is removed; a row with no key left has probability 0 everywhere. */
#ifndef EV_D
#define EV_D 32
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
    return (flags & EV_HAS_GATE) ? d * mcl_sigmoid(load_elem(g, i)) : d;
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
            for (uint t = 0; t < 4; t++) x[t] *= mcl_sigmoid(gv[t]);
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
 * the register-prefetching dK/dV kernel ran slower with the row-count check nested outside.) */
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
        gv = acc[e] * inv * mcl_sigmoid4(gv);
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

/* With DS > 1: the scores s[r][c] = own_s[r] . tile_s[c] and dP dp[r][c] = own_dp[r] .
 * tile_dp[c] of the work-item's R rows against the COLS columns of the streamed tile, each
 * summed over the DS slices (EV_SUM_SLICES through part_s and part_dp). Every work-item calls
 * it. */
#define EV_SLICE_DOTS(s, dp, own_s, own_dp, tile_s, tile_dp, COLS)                             \
    do {                                                                                       \
        for (uint c_ = 0; c_ < (COLS); c_++) {                                                 \
            for (uint r_ = 0; r_ < R; r_++) s[r_][c_] = dp[r_][c_] = 0.0f;                     \
            for (uint e_ = 0; e_ < V4; e_++) {                                                 \
                float4 ts_ = tile_s[c_][sl * V4 + e_], tdp_ = tile_dp[c_][sl * V4 + e_];       \
                for (uint r_ = 0; r_ < R; r_++) {                                              \
                    s[r_][c_] = dot_acc(own_s[r_][e_], ts_, s[r_][c_]);                        \
                    dp[r_][c_] = dot_acc(own_dp[r_][e_], tdp_, dp[r_][c_]);                    \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
        EV_SUM_SLICES(s, part_s, COLS);                                                        \
        EV_SUM_SLICES(dp, part_dp, COLS);                                                      \
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
