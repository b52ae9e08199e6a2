/* EvoAttention: softmax(scale * Q K^T + mask bias + pair bias) V per (b, n, h), with an
 * optional sigmoid gate, and its backward. Q, K, V, G, O, Y: [B, N, S, H, D]; mask [B, N, S];
 * pair [B, H, S, S]; lse and delta [B, N, H, S] fp32.
 *
 * Tiled kernels (FlashAttention-2 style; nothing of size S x S is stored):
 *  - evoattn_forward: a work-group owns a query tile and streams key tiles with an online
 *    softmax; writes O (and Y) and the log-sum-exp.
 *  - evoattn_bwd_preprocess: delta = rowsum(dO * O) and dG.
 *  - evoattn_bwd_dkdv: a work-group owns a key tile and streams query tiles: dK, dV, and the
 *    per-head partial column sums of dS for d(mask bias).
 *  - evoattn_bwd_dq: a work-group owns a query tile of one (b, h) and a chunk of N; for each n
 *    it streams key tiles: dQ, and adds dS into its chunk's partial of d(pair bias).
 *  - evoattn_sum_partials: sums partials in a fixed order (deterministic bias gradients).
 * Reference kernels (VARIANT 0) materialise scores and probabilities: the unfused baseline.
 *
 * Work-items of a tiled kernel form a TY x TX grid; item (ty, tx) owns tile rows ty + r * TY
 * and columns tx + c * TX (strided, so neighbouring items touch neighbouring local memory
 * words), and output head-dim columns tx + e * TX. Scores are kept in log2 units. A key whose
 * mask bias is <= EV_MASKED is removed; a row with no key left has probability 0 everywhere. */
#ifndef EV_D
#define EV_D 32
#endif
#ifndef EV_FWD_BQ
#define EV_FWD_BQ 64
#endif
#ifndef EV_FWD_BK
#define EV_FWD_BK 32
#endif
#ifndef EV_FWD_RQ
#define EV_FWD_RQ 4
#endif
#ifndef EV_FWD_RK
#define EV_FWD_RK 2
#endif
#ifndef EV_DKV_BQ
#define EV_DKV_BQ 32
#endif
#ifndef EV_DKV_BK
#define EV_DKV_BK 64
#endif
#ifndef EV_DKV_RQ
#define EV_DKV_RQ 2
#endif
#ifndef EV_DKV_RK
#define EV_DKV_RK 4
#endif
#ifndef EV_DQ_BQ
#define EV_DQ_BQ 64
#endif
#ifndef EV_DQ_BK
#define EV_DQ_BK 32
#endif
#ifndef EV_DQ_RQ
#define EV_DQ_RQ 4
#endif
#ifndef EV_DQ_RK
#define EV_DQ_RK 2
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
    q += q_off; k += k_off; v += v_off; mask += mask_off; pair += pair_off; g += g_off;        \
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

/* dO, formed on the fly from dY and the gate when gated */
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

/* ---- forward ---------------------------------------------------------------------------- */

#define BQ EV_FWD_BQ
#define BK EV_FWD_BK
#define RQ EV_FWD_RQ
#define RK EV_FWD_RK
#define TY (BQ / RQ)
#define TX (BK / RK)
#define RD ((EV_D + TX - 1) / TX)

__kernel __attribute__((reqd_work_group_size(TY * TX, 1, 1)))
void evoattn_forward(EV_ARGS)
{
    EV_OFFSETS;
    __local float q_l[BQ][EV_D];
    __local float kt_l[EV_D][BK + 1];
    __local float v_l[BK][EV_D];
    __local float p_l[BQ][BK + 1];
    __local float red[BQ][TX];
    const uint lid = get_local_id(0), tx = lid % TX, ty = lid / TX;
    const uint tiles = (S + BQ - 1) / BQ, bnh = get_group_id(0) / tiles;
    const uint h = bnh % H, n = (bnh / H) % N, b = bnh / (H * N);
    const uint i0 = (get_group_id(0) % tiles) * BQ;
    const ulong base = slice_base(b, n, h, N, S, H), mask_row = ((ulong)b * N + n) * S;
    const ulong pair_base = ((ulong)b * H + h) * S * S;
    const float scale2 = scale * EV_LOG2E;

    for (uint e = lid; e < BQ * EV_D; e += TY * TX) {
        uint r = e / EV_D, d = e % EV_D;
        q_l[r][d] = i0 + r < S ? load_elem(q, AT(base, i0 + r, d)) : 0.0f;
    }
    float m[RQ], l[RQ], acc[RQ][RD];
    for (uint r = 0; r < RQ; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
        for (uint e = 0; e < RD; e++) acc[r][e] = 0.0f;
    }

    for (uint j0 = 0; j0 < S; j0 += BK) {
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile's readers are done */
        for (uint e = lid; e < BK * EV_D; e += TY * TX) {
            uint c = e / EV_D, d = e % EV_D;
            bool in = j0 + c < S;
            kt_l[d][c] = in ? load_elem(k, AT(base, j0 + c, d)) : 0.0f;
            v_l[c][d] = in ? load_elem(v, AT(base, j0 + c, d)) : 0.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        float s[RQ][RK];
        for (uint r = 0; r < RQ; r++)
            for (uint c = 0; c < RK; c++) s[r][c] = 0.0f;
        for (uint d = 0; d < EV_D; d++) {
            float qv[RQ], kv[RK];
            for (uint r = 0; r < RQ; r++) qv[r] = q_l[ty + r * TY][d];
            for (uint c = 0; c < RK; c++) kv[c] = kt_l[d][tx + c * TX];
            for (uint r = 0; r < RQ; r++)
                for (uint c = 0; c < RK; c++) s[r][c] = fma(qv[r], kv[c], s[r][c]);
        }
        for (uint c = 0; c < RK; c++) {
            uint j = j0 + tx + c * TX;
            bool removed;
            float mb = mask_bias(mask, mask_row, j, S, flags, &removed);
            for (uint r = 0; r < RQ; r++) {
                uint i = i0 + ty + r * TY;
                float pb = ((flags & EV_HAS_PAIR) && !removed && i < S) ? load_elem(pair, pair_base + (ulong)i * S + j) : 0.0f;
                s[r][c] = removed ? -INFINITY : s[r][c] * scale2 + (mb + pb) * EV_LOG2E;
            }
        }
        for (uint r = 0; r < RQ; r++) {
            float mx = -INFINITY;
            for (uint c = 0; c < RK; c++) mx = fmax(mx, s[r][c]);
            red[ty + r * TY][tx] = mx;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint r = 0; r < RQ; r++) {
            uint row = ty + r * TY;
            float m_new = m[r];
            for (uint t = 0; t < TX; t++) m_new = fmax(m_new, red[row][t]);
            float m_use = m_new == -INFINITY ? 0.0f : m_new; /* no key yet: every p is 0 */
            float alpha = exp2(m[r] - m_use);
            m[r] = m_new;
            l[r] *= alpha;
            for (uint e = 0; e < RD; e++) acc[r][e] *= alpha;
            for (uint c = 0; c < RK; c++) {
                float p = exp2(s[r][c] - m_use);
                l[r] += p;
                p_l[row][tx + c * TX] = p;
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint kk = 0; kk < BK; kk++) {
            float vv[RD];
            for (uint e = 0; e < RD; e++) vv[e] = tx + e * TX < EV_D ? v_l[kk][tx + e * TX] : 0.0f;
            for (uint r = 0; r < RQ; r++) {
                float p = p_l[ty + r * TY][kk];
                for (uint e = 0; e < RD; e++) acc[r][e] = fma(p, vv[e], acc[r][e]);
            }
        }
    }

    /* each work-item summed only its own columns: add the partial sums of a row */
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint r = 0; r < RQ; r++) red[ty + r * TY][tx] = l[r];
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint r = 0; r < RQ; r++) {
        uint row = ty + r * TY, i = i0 + row;
        if (i >= S) continue;
        float total = 0.0f;
        for (uint t = 0; t < TX; t++) total += red[row][t];
        float inv = total > 0.0f ? 1.0f / total : 0.0f;
        for (uint e = 0; e < RD; e++) {
            uint d = tx + e * TX;
            if (d >= EV_D) break;
            float out = acc[r][e] * inv;
            store_elem(o, AT(base, i, d), out);
            if (flags & EV_HAS_GATE) store_elem(y, AT(base, i, d), out * sigmoid(load_elem(g, AT(base, i, d))));
        }
        if ((flags & EV_WANT_LSE) && tx == 0)
            lse[stat_index(b, n, h, i, N, S, H)] = total > 0.0f ? (m[r] + log2(total)) * EV_LN2 : -INFINITY;
    }
}
#undef BQ
#undef BK
#undef RQ
#undef RK
#undef TY
#undef TX
#undef RD

/* ---- backward: delta = rowsum(dO * O), dG ------------------------------------------------- */

/* One work-item per (b, n, s, h) row of D elements. */
__kernel void evoattn_bwd_preprocess(EV_ARGS)
{
    EV_OFFSETS;
    ulong row = get_global_id(0); /* ((b * N + n) * S + s) * H + h */
    if (row >= (ulong)B * N * S * H) return;
    uint h = row % H, s = (row / H) % S;
    ulong bn = row / ((ulong)H * S);
    float sum = 0.0f;
    for (uint d = 0; d < EV_D; d++) {
        ulong i = row * EV_D + d;
        float out = load_elem(o, i), dy = load_elem(dout, i);
        if (flags & EV_HAS_GATE) {
            float sg = sigmoid(load_elem(g, i));
            if (flags & EV_WANT_DG) store_elem(dg, i, dy * out * sg * (1.0f - sg));
            dy *= sg;
        }
        sum = fma(dy, out, sum);
    }
    delta[(bn * H + h) * S + s] = sum;
}

/* ---- backward: dK, dV and d(mask bias) partials ------------------------------------------- */

/* Tile rows are keys (BK of them, RK per work-item), columns are queries (BQ, RQ per item). */
#define BQ EV_DKV_BQ
#define BK EV_DKV_BK
#define RQ EV_DKV_RQ
#define RK EV_DKV_RK
#define TY (BK / RK)
#define TX (BQ / RQ)
#define RD ((EV_D + TX - 1) / TX)

__kernel __attribute__((reqd_work_group_size(TY * TX, 1, 1)))
void evoattn_bwd_dkdv(EV_ARGS)
{
    EV_OFFSETS;
    __local float k_l[BK][EV_D];
    __local float v_l[BK][EV_D];
    __local float qt_l[EV_D][BQ + 1];
    __local float dot_l[EV_D][BQ + 1];
    __local float t_l[BK][BQ + 1]; /* pair bias, then P, then dS (all transposed) */
    __local float lse_l[BQ], delta_l[BQ];
    const uint lid = get_local_id(0), tx = lid % TX, ty = lid / TX;
    const uint tiles = (S + BK - 1) / BK, bnh = get_group_id(0) / tiles;
    const uint h = bnh % H, n = (bnh / H) % N, b = bnh / (H * N);
    const uint j0 = (get_group_id(0) % tiles) * BK;
    const ulong base = slice_base(b, n, h, N, S, H), mask_row = ((ulong)b * N + n) * S;
    const ulong pair_base = ((ulong)b * H + h) * S * S, stat_row = stat_index(b, n, h, 0, N, S, H);

    for (uint e = lid; e < BK * EV_D; e += TY * TX) {
        uint r = e / EV_D, d = e % EV_D;
        bool in = j0 + r < S;
        k_l[r][d] = in ? load_elem(k, AT(base, j0 + r, d)) : 0.0f;
        v_l[r][d] = in ? load_elem(v, AT(base, j0 + r, d)) : 0.0f;
    }
    float mb[RK];
    bool removed[RK];
    for (uint r = 0; r < RK; r++) mb[r] = mask_bias(mask, mask_row, j0 + ty + r * TY, S, flags, &removed[r]);
    float dk_acc[RK][RD], dv_acc[RK][RD], dmask_acc[RK];
    for (uint r = 0; r < RK; r++) {
        dmask_acc[r] = 0.0f;
        for (uint e = 0; e < RD; e++) dk_acc[r][e] = dv_acc[r][e] = 0.0f;
    }

    for (uint i0 = 0; i0 < S; i0 += BQ) {
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint e = lid; e < BQ * EV_D; e += TY * TX) {
            uint c = e / EV_D, d = e % EV_D;
            bool in = i0 + c < S;
            qt_l[d][c] = in ? load_elem(q, AT(base, i0 + c, d)) : 0.0f;
            dot_l[d][c] = in ? load_do(dout, g, AT(base, i0 + c, d), flags) : 0.0f;
        }
        for (uint e = lid; e < BQ; e += TY * TX) {
            bool in = i0 + e < S;
            lse_l[e] = in ? lse[stat_row + i0 + e] : -INFINITY;
            delta_l[e] = in ? delta[stat_row + i0 + e] : 0.0f;
        }
        if (flags & EV_HAS_PAIR) /* stage the pair tile transposed: reads run along keys */
            for (uint e = lid; e < BQ * BK; e += TY * TX) {
                uint c = e / BK, r = e % BK;
                t_l[r][c] = (i0 + c < S && j0 + r < S) ? load_elem(pair, pair_base + (ulong)(i0 + c) * S + j0 + r) : 0.0f;
            }
        barrier(CLK_LOCAL_MEM_FENCE);

        float p[RK][RQ], dp[RK][RQ];
        for (uint r = 0; r < RK; r++)
            for (uint c = 0; c < RQ; c++) p[r][c] = dp[r][c] = 0.0f;
        for (uint d = 0; d < EV_D; d++) {
            float kv[RK], vv[RK], qv[RQ], ov[RQ];
            for (uint r = 0; r < RK; r++) kv[r] = k_l[ty + r * TY][d], vv[r] = v_l[ty + r * TY][d];
            for (uint c = 0; c < RQ; c++) qv[c] = qt_l[d][tx + c * TX], ov[c] = dot_l[d][tx + c * TX];
            for (uint r = 0; r < RK; r++)
                for (uint c = 0; c < RQ; c++) {
                    p[r][c] = fma(kv[r], qv[c], p[r][c]);
                    dp[r][c] = fma(vv[r], ov[c], dp[r][c]);
                }
        }
        for (uint r = 0; r < RK; r++)
            for (uint c = 0; c < RQ; c++) {
                uint row = ty + r * TY, col = tx + c * TX;
                float pb = (flags & EV_HAS_PAIR) ? t_l[row][col] : 0.0f;
                float l2 = lse_l[col] * EV_LOG2E;
                float s2 = (p[r][c] * scale + mb[r] + pb) * EV_LOG2E;
                p[r][c] = (removed[r] || l2 == -INFINITY) ? 0.0f : exp2(s2 - l2);
                t_l[row][col] = p[r][c]; /* the same item read this slot: no barrier needed */
            }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint qq = 0; qq < BQ; qq++) { /* dV += P^T dO */
            float ov[RD];
            for (uint e = 0; e < RD; e++) ov[e] = tx + e * TX < EV_D ? dot_l[tx + e * TX][qq] : 0.0f;
            for (uint r = 0; r < RK; r++) {
                float pv = t_l[ty + r * TY][qq];
                for (uint e = 0; e < RD; e++) dv_acc[r][e] = fma(pv, ov[e], dv_acc[r][e]);
            }
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint r = 0; r < RK; r++)
            for (uint c = 0; c < RQ; c++) {
                float ds = p[r][c] * (dp[r][c] - delta_l[tx + c * TX]);
                dmask_acc[r] += ds;
                t_l[ty + r * TY][tx + c * TX] = ds;
            }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint qq = 0; qq < BQ; qq++) { /* dK += dS^T Q */
            float qv[RD];
            for (uint e = 0; e < RD; e++) qv[e] = tx + e * TX < EV_D ? qt_l[tx + e * TX][qq] : 0.0f;
            for (uint r = 0; r < RK; r++) {
                float ds = t_l[ty + r * TY][qq];
                for (uint e = 0; e < RD; e++) dk_acc[r][e] = fma(ds, qv[e], dk_acc[r][e]);
            }
        }
    }

    for (uint r = 0; r < RK; r++) {
        uint j = j0 + ty + r * TY;
        if (j >= S) continue;
        for (uint e = 0; e < RD; e++) {
            uint d = tx + e * TX;
            if (d >= EV_D) break;
            if (flags & EV_WANT_DK) store_elem(dk, AT(base, j, d), dk_acc[r][e] * scale);
            if (flags & EV_WANT_DV) store_elem(dv, AT(base, j, d), dv_acc[r][e]);
        }
    }
    if (!(flags & EV_WANT_DMASK)) return; /* uniform over the group */
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint r = 0; r < RK; r++) t_l[ty + r * TY][tx] = dmask_acc[r];
    barrier(CLK_LOCAL_MEM_FENCE);
    if (tx == 0)
        for (uint r = 0; r < RK; r++) {
            uint row = ty + r * TY;
            float sum = 0.0f;
            for (uint t = 0; t < TX; t++) sum += t_l[row][t];
            if (j0 + row < S) mask_part[stat_row + j0 + row] = sum;
        }
}
#undef BQ
#undef BK
#undef RQ
#undef RK
#undef TY
#undef TX
#undef RD

/* ---- backward: dQ and d(pair bias) partials ----------------------------------------------- */

/* Work-groups: query tiles x B x H x chunks of N; a work-group handles rows n of its chunk one after the
 * other, so it alone owns its slice of the chunk's pair partial: n_first stores, later n add. */
#define BQ EV_DQ_BQ
#define BK EV_DQ_BK
#define RQ EV_DQ_RQ
#define RK EV_DQ_RK
#define TY (BQ / RQ)
#define TX (BK / RK)
#define RD ((EV_D + TX - 1) / TX)

__kernel __attribute__((reqd_work_group_size(TY * TX, 1, 1)))
void evoattn_bwd_dq(EV_ARGS)
{
    EV_OFFSETS;
    __local float q_l[BQ][EV_D];
    __local float do_l[BQ][EV_D];
    __local float kt_l[EV_D][BK + 1];
    __local float vt_l[EV_D][BK + 1];
    __local float ds_l[BQ][BK + 1];
    const uint lid = get_local_id(0), tx = lid % TX, ty = lid / TX;
    const uint chunks = (N + n_per_chunk - 1) / n_per_chunk, tiles = (S + BQ - 1) / BQ;
    const uint group = get_group_id(0) / tiles, chunk = group % chunks, h = (group / chunks) % H;
    const uint b = group / (chunks * H);
    const uint i0 = (get_group_id(0) % tiles) * BQ;
    const ulong pair_base = ((ulong)b * H + h) * S * S;
    const ulong part_base = (((ulong)chunk * B + b) * H + h) * S * S;
    const uint n_first = chunk * n_per_chunk, n_end = min(N, n_first + n_per_chunk);

    for (uint n = n_first; n < n_end; n++) {
        const ulong base = slice_base(b, n, h, N, S, H), mask_row = ((ulong)b * N + n) * S;
        const ulong stat_row = stat_index(b, n, h, 0, N, S, H);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint e = lid; e < BQ * EV_D; e += TY * TX) {
            uint r = e / EV_D, d = e % EV_D;
            bool in = i0 + r < S;
            q_l[r][d] = in ? load_elem(q, AT(base, i0 + r, d)) : 0.0f;
            do_l[r][d] = in ? load_do(dout, g, AT(base, i0 + r, d), flags) : 0.0f;
        }
        float l2[RQ], dl[RQ], dq_acc[RQ][RD];
        for (uint r = 0; r < RQ; r++) {
            uint i = i0 + ty + r * TY;
            l2[r] = i < S ? lse[stat_row + i] * EV_LOG2E : -INFINITY;
            dl[r] = i < S ? delta[stat_row + i] : 0.0f;
            for (uint e = 0; e < RD; e++) dq_acc[r][e] = 0.0f;
        }

        for (uint j0 = 0; j0 < S; j0 += BK) {
            barrier(CLK_LOCAL_MEM_FENCE);
            for (uint e = lid; e < BK * EV_D; e += TY * TX) {
                uint c = e / EV_D, d = e % EV_D;
                bool in = j0 + c < S;
                kt_l[d][c] = in ? load_elem(k, AT(base, j0 + c, d)) : 0.0f;
                vt_l[d][c] = in ? load_elem(v, AT(base, j0 + c, d)) : 0.0f;
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            float p[RQ][RK], dp[RQ][RK];
            for (uint r = 0; r < RQ; r++)
                for (uint c = 0; c < RK; c++) p[r][c] = dp[r][c] = 0.0f;
            for (uint d = 0; d < EV_D; d++) {
                float qv[RQ], ov[RQ], kv[RK], vv[RK];
                for (uint r = 0; r < RQ; r++) qv[r] = q_l[ty + r * TY][d], ov[r] = do_l[ty + r * TY][d];
                for (uint c = 0; c < RK; c++) kv[c] = kt_l[d][tx + c * TX], vv[c] = vt_l[d][tx + c * TX];
                for (uint r = 0; r < RQ; r++)
                    for (uint c = 0; c < RK; c++) {
                        p[r][c] = fma(qv[r], kv[c], p[r][c]);
                        dp[r][c] = fma(ov[r], vv[c], dp[r][c]);
                    }
            }
            for (uint c = 0; c < RK; c++) {
                uint j = j0 + tx + c * TX;
                bool removed;
                float mb = mask_bias(mask, mask_row, j, S, flags, &removed);
                for (uint r = 0; r < RQ; r++) {
                    uint i = i0 + ty + r * TY;
                    bool live = !removed && i < S && l2[r] != -INFINITY;
                    float pb = ((flags & EV_HAS_PAIR) && live) ? load_elem(pair, pair_base + (ulong)i * S + j) : 0.0f;
                    float pr = live ? exp2((p[r][c] * scale + mb + pb) * EV_LOG2E - l2[r]) : 0.0f;
                    float ds = pr * (dp[r][c] - dl[r]);
                    ds_l[ty + r * TY][tx + c * TX] = ds;
                    if ((flags & EV_WANT_DPAIR) && i < S && j < S) {
                        ulong at = part_base + (ulong)i * S + j;
                        pair_part[at] = n == n_first ? ds : pair_part[at] + ds;
                    }
                }
            }
            barrier(CLK_LOCAL_MEM_FENCE);
            for (uint kk = 0; kk < BK; kk++) { /* dQ += dS K */
                float kv[RD];
                for (uint e = 0; e < RD; e++) kv[e] = tx + e * TX < EV_D ? kt_l[tx + e * TX][kk] : 0.0f;
                for (uint r = 0; r < RQ; r++) {
                    float ds = ds_l[ty + r * TY][kk];
                    for (uint e = 0; e < RD; e++) dq_acc[r][e] = fma(ds, kv[e], dq_acc[r][e]);
                }
            }
        }
        if (flags & EV_WANT_DQ)
            for (uint r = 0; r < RQ; r++) {
                uint i = i0 + ty + r * TY;
                if (i >= S) continue;
                for (uint e = 0; e < RD; e++) {
                    uint d = tx + e * TX;
                    if (d < EV_D) store_elem(dq, AT(base, i, d), dq_acc[r][e] * scale);
                }
            }
    }
}
#undef BQ
#undef BK
#undef RQ
#undef RK
#undef TY
#undef TX
#undef RD

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
