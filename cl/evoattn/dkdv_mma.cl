/* EvoAttention backward, dK, dV and the bias gradients' partials on the tensor cores
 * (cl/mma.cl, cl/evoattn/mma_tiles.cl; 16-bit storage or f32 in tf32): the work of evoattn_bwd_dkdv
 * (same grid, same chunks of N, same partials) with its four products, S^T = K Q^T,
 * dP^T = V dO^T, dV += P^T dO and dK += dS^T Q, as mma.sync instructions with fp32
 * accumulators. Each warp owns 16 keys of the work-group's BK = 16 x WARPS; their K and V
 * fragments stay in registers for a row n. Query tiles of BQ rows are staged as Q and dO
 * row-major (B operands over d) and transposed (B operands over queries); P^T and dS^T go from
 * the accumulators to the A operands of the next products in registers, rounded to the storage
 * type. Each lane adds its entries of dS into the chunk's d(pair bias) partial (a read-modify-
 * write no other work-group touches) and sums its keys' column of dS for d(mask bias). */
#ifndef EV_DKV_MMA_WARPS
#define EV_DKV_MMA_WARPS 4
#endif
#ifndef EV_DKV_MMA_BQ
#define EV_DKV_MMA_BQ 32
#endif

#define WARPS EV_DKV_MMA_WARPS
#define ITEMS (32 * WARPS)
#define BK (16 * WARPS)
#define BQ EV_DKV_MMA_BQ
#define DK EV_DK
#define ROWS (BK > BQ ? BK : BQ) /* rows of the row-major tile that holds K, V, then Q */
#define RPAD (DK + 8)            /* values a row-major row holds: the extra spreads rows over the banks */
#define TPAD (BQ + 8)            /* values a row of Q^T or dO^T holds */
#define NB (BQ / 8)              /* a warp's 16 x 8 score blocks per query tile */
#define OB (DK / 8)              /* its 16 x 8 blocks of dK and of dV */

__kernel __attribute__((reqd_work_group_size(ITEMS, 1, 1)))
void evoattn_bwd_dkdv_mma(EV_ARGS)
{
    EV_OFFSETS;
    __local mma_t rows_l[ROWS * RPAD] __attribute__((aligned(16))); /* K, V, then each tile's Q */
    __local mma_t do_l[MMA_DO_PARTS][BQ * RPAD] __attribute__((aligned(16)));
    __local mma_t qt_l[DK * TPAD] __attribute__((aligned(16)));
    __local mma_t dot_l[DK * TPAD] __attribute__((aligned(16)));
    __local float mask_l[BK], l2_l[BQ], delta_l[BQ], red[2 * ITEMS], mma_scratch[MMA_SCRATCH(ITEMS)];
    const uint lid = get_local_id(0), warp = lid / 32, quad = (lid & 31) >> 2, t = lid & 3;
    const dkv_group at = dkv_group_of(get_group_id(0), BK, B, N, S, H, n_per_chunk);
    const uint row0 = 16 * warp + quad; /* the lane's keys row0 and row0 + 8 of the key tile */
    const uint jj[2] = {row0, row0 + 8};
    const float scale2 = scale * EV_LOG2E;

    for (uint n = at.n_first; n < at.n_end; n++) {
        const ulong base = slice_base(at.b, n, at.h, N, S, H), mask_row = ((ulong)at.b * N + n) * S;
        const ulong stat_row = stat_index(at.b, n, at.h, 0, N, S, H);
        uint ka[DK / MMA_K][4], va[DK / MMA_K][4];
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous row's readers are done */
        mma_stage(rows_l, RPAD, 0, k, NULL, base, at.j0, BK, S, H, flags, lid, ITEMS);
        stage_mask(mask_l, mask, mask_row, at.j0, BK, S, flags, lid, ITEMS);
        barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll
        for (uint kk = 0; kk < DK / MMA_K; kk++) mma_a(ka[kk], rows_l, RPAD, row0, MMA_K * kk, t);
        barrier(CLK_LOCAL_MEM_FENCE);
        mma_stage(rows_l, RPAD, 0, v, NULL, base, at.j0, BK, S, H, flags, lid, ITEMS);
        barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll
        for (uint kk = 0; kk < DK / MMA_K; kk++) mma_a(va[kk], rows_l, RPAD, row0, MMA_K * kk, t);

        float dk_acc[OB][4], dv_acc[OB][4], dmask[2] = {0.0f, 0.0f};
#pragma unroll
        for (uint ob = 0; ob < OB; ob++)
#pragma unroll
            for (uint e = 0; e < 4; e++) dk_acc[ob][e] = dv_acc[ob][e] = 0.0f;
        for (uint i0 = 0; i0 < S; i0 += BQ) {
            /* the tile's pair bias and d(pair bias) partial so far, read before the staging so
             * that their latency hides behind it; element e of block nb as below */
            float pb[NB][4], part[NB][4];
#pragma unroll
            for (uint nb = 0; nb < NB; nb++)
#pragma unroll
                for (uint e = 0; e < 4; e++) {
                    uint i = i0 + 8 * nb + 2 * t + e % 2, j = at.j0 + jj[e / 2];
                    bool so_far = (flags & EV_WANT_DPAIR) && n != at.n_first && i < S && j < S;
                    pb[nb][e] = pair_entry(pair, at.pair_base, i, 1, j, 1, 0, S, flags);
                    part[nb][e] = so_far ? pair_part[at.part_base + (ulong)i * S + j] : 0.0f;
                }
            barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile's (or K's and V's) readers are done */
            mma_stage(rows_l, RPAD, 0, q, NULL, base, i0, BQ, S, H, flags, lid, ITEMS);
            mma_stage(qt_l, TPAD, MMA_TRANSPOSED, q, NULL, base, i0, BQ, S, H, flags, lid, ITEMS);
#pragma unroll
            for (uint part = 0; part < MMA_DO_PARTS; part++)
                mma_stage(do_l[part], RPAD, part ? MMA_RESIDUE : 0, dout, g, base, i0, BQ, S, H, flags, lid, ITEMS);
            mma_stage(dot_l, TPAD, MMA_TRANSPOSED, dout, g, base, i0, BQ, S, H, flags, lid, ITEMS);
            for (uint r = lid; r < BQ; r += ITEMS) {
                uint i = i0 + r;
                l2_l[r] = i < S ? lse[stat_row + i] * EV_LOG2E : -INFINITY;
                delta_l[r] = i < S ? delta[stat_row + i] : 0.0f;
            }
            barrier(CLK_LOCAL_MEM_FENCE);

            /* element e of block nb: key row0 + 8 (e / 2), query 8 nb + 2 t + e % 2; s becomes
             * P^T and dp dS^T */
            float s[NB][4], dp[NB][4];
#pragma unroll
            for (uint nb = 0; nb < NB; nb++) {
#pragma unroll
                for (uint e = 0; e < 4; e++) s[nb][e] = dp[nb][e] = 0.0f;
                mma_block(s[nb], ka, DK / MMA_K, rows_l, RPAD, 8 * nb + quad, t, mma_scratch, lid);
#pragma unroll
                for (uint part = 0; part < MMA_DO_PARTS; part++)
                    mma_block(dp[nb], va, DK / MMA_K, do_l[part], RPAD, 8 * nb + quad, t, mma_scratch, lid);
#pragma unroll
                for (uint e = 0; e < 4; e++) {
                    uint ii = 8 * nb + 2 * t + e % 2, i = i0 + ii, key = jj[e / 2], j = at.j0 + key;
                    float2 pds = prob_and_dscore(s[nb][e], dp[nb][e], mask_l[key] + pb[nb][e], l2_l[ii], delta_l[ii],
                                                 scale2);
                    s[nb][e] = pds.x, dp[nb][e] = pds.y;
                    dmask[e / 2] += pds.y;
                    if ((flags & EV_WANT_DPAIR) && i < S && j < S)
                        pair_part[at.part_base + (ulong)i * S + j] = part[nb][e] + pds.y;
                }
            }
            mma_blocks_times(dv_acc, OB, s, BQ / MMA_K, dot_l, TPAD, quad, t, mma_scratch, lid); /* dV += P^T dO */
            mma_blocks_times(dk_acc, OB, dp, BQ / MMA_K, qt_l, TPAD, quad, t, mma_scratch, lid); /* dK += dS^T Q */
        }

#pragma unroll
        for (uint r = 0; r < 2; r++) {
            uint j = at.j0 + jj[r];
            if (j >= S) continue;
#pragma unroll
            for (uint ob = 0; ob < OB; ob++)
#pragma unroll
                for (uint c = 0; c < 2; c++) {
                    uint d = 8 * ob + 2 * t + c;
                    if (d >= EV_D) continue;
                    if (flags & EV_WANT_DK) store_elem(dk, AT(base, j, d), dk_acc[ob][2 * r + c] * scale);
                    if (flags & EV_WANT_DV) store_elem(dv, AT(base, j, d), dv_acc[ob][2 * r + c]);
                }
        }
        MMA_QUAD(MMA_ADD, dmask[0], dmask[1], red, lid);
#pragma unroll
        for (uint r = 0; r < 2; r++)
            if (t == 0 && (flags & EV_WANT_DMASK) && at.j0 + jj[r] < S) mask_part[stat_row + at.j0 + jj[r]] = dmask[r];
    }
}
