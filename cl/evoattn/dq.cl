/* EvoAttention backward, dQ: a work-group owns BQ query rows and streams BK-key tiles,
 * recomputing the scores and dP. With DS = 1 each key column is finished before the next, so no
 * register array spans the tile (see dkdv.cl). */
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
#define EV_DQ_DW 64
#endif

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
        EV_SLICE_DOTS(s, dp, qv, dov, k_l, v_l, BK);
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
