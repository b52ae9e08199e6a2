/* EvoAttention forward, the row kernel: a work-group owns BQ query rows and streams BK-key
 * tiles through local memory with an online softmax; writes O (and Y) and the log-sum-exp. */
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
#define EV_FWD_DW 64
#endif

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
