/* EvoAttention backward, dK, dV and the bias gradients' partials, micro-tiled: the work of
 * evoattn_bwd_dkdv (same grid, same chunks of N, same partials) organised like a GEMM, for the
 * head dims the family's declaration gives: the key tile's K and V, the query tile's Q and dO, and then
 * the tile's P and dS all sit in local memory. A work-item first computes the scores and dP
 * of 4 keys x 4 queries (keys kg + t * KG, queries qg + u * QG), then adds the tile into the
 * dK and dV of 4 consecutive keys x 4 head-dim columns per task. Each 16-byte local read
 * feeds 8 FMAs (the row kernel's broadcasts feed 4), and no row of D lives in registers. */
#ifndef EV_DKV_MT_BQ
#define EV_DKV_MT_BQ 32
#endif
#ifndef EV_DKV_MT_BK
#define EV_DKV_MT_BK 64
#endif

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
