/* EvoAttention backward, dK, dV and the bias gradients' partials, the row kernel. Rows are keys
 * here (BK per work-group), the streamed tile is BQ queries. Work-groups: key tiles x B x H x
 * chunks of N; a work-group handles the rows n of its chunk one after the other, so it alone
 * owns its keys' columns of the chunk's pair partial. With DS = 1 each query column is finished
 * before the next, so no register array spans the tile: the NVIDIA compiler otherwise chose per
 * tile shape whether such arrays stayed in registers. The chunk's d(pair bias) partial is loaded
 * EV_DKV_AHEAD queries ahead, since that read-modify-write bounds the kernel. */
#ifndef EV_DKV_BQ
#define EV_DKV_BQ 64
#endif
#ifndef EV_DKV_BK
#define EV_DKV_BK 128
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
#ifndef EV_DKV_AHEAD
#define EV_DKV_AHEAD 8
#endif

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
            EV_SLICE_DOTS(s, dp, kv, vv, q_l, do_l, BQ);
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
