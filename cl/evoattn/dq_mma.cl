/* EvoAttention backward, dQ on the tensor cores (cl/mma.cl, cl/evoattn/mma_tiles.cl; 16-bit storage
 * or f32 in tf32): the work of evoattn_bwd_dq (same grid) with its three products, S = Q K^T,
 * dP = dO V^T and dQ += dS K, as mma.sync instructions with fp32 accumulators. Each warp owns
 * 16 query rows; their Q and dO fragments stay in registers. Key tiles are staged as K and V
 * row-major (B operands over d) and K transposed (the B operand over keys); dS goes from the
 * accumulators to the A operand of dS K in registers, rounded to the storage type. */
#ifndef EV_DQ_MMA_WARPS
#define EV_DQ_MMA_WARPS 4
#endif
#ifndef EV_DQ_MMA_BK
#define EV_DQ_MMA_BK 64
#endif

#define WARPS EV_DQ_MMA_WARPS
#define ITEMS (32 * WARPS)
#define BQ (16 * WARPS)
#define BK EV_DQ_MMA_BK
#define DK EV_DK
#define QPAD (DK + 8) /* values a row of Q, dO, K or V holds: the extra spreads rows over the banks */
#define TPAD (BK + 8) /* values a row of K^T holds */
#define NB (BK / 8)   /* a warp's 16 x 8 score blocks per key tile */
#define OB (DK / 8)   /* its 16 x 8 blocks of dQ */

__kernel __attribute__((reqd_work_group_size(ITEMS, 1, 1)))
void evoattn_bwd_dq_mma(EV_ARGS)
{
    EV_OFFSETS;
    __local mma_t rows_l[BQ * QPAD] __attribute__((aligned(16))); /* Q, then dO */
    __local mma_t k_l[BK * QPAD] __attribute__((aligned(16)));
    __local mma_t v_l[BK * QPAD] __attribute__((aligned(16)));
    __local mma_t kt_l[DK * TPAD] __attribute__((aligned(16)));
    __local float mask_l[BK], mma_scratch[MMA_SCRATCH(ITEMS)];
    const uint lid = get_local_id(0), warp = lid / 32, quad = (lid & 31) >> 2, t = lid & 3;
    const query_group at = query_group_of(get_group_id(0), BQ, N, S, H);
    const ulong base = at.base, stat_row = stat_index(at.b, at.n, at.h, 0, N, S, H);
    const uint row0 = 16 * warp + quad; /* the lane's rows row0 and row0 + 8 of the query tile */
    const uint i_row[2] = {at.i0 + row0, at.i0 + row0 + 8};
    const float scale2 = scale * EV_LOG2E;

    uint qa[DK / MMA_K][4], da[MMA_DO_PARTS][DK / MMA_K][4];
    mma_stage(rows_l, QPAD, 0, q, NULL, base, at.i0, BQ, S, H, flags, lid, ITEMS);
    barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll
    for (uint kk = 0; kk < DK / MMA_K; kk++) mma_a(qa[kk], rows_l, QPAD, row0, MMA_K * kk, t);
#pragma unroll
    for (uint part = 0; part < MMA_DO_PARTS; part++) {
        barrier(CLK_LOCAL_MEM_FENCE);
        mma_stage(rows_l, QPAD, part ? MMA_RESIDUE : 0, dout, g, base, at.i0, BQ, S, H, flags, lid, ITEMS);
        barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll
        for (uint kk = 0; kk < DK / MMA_K; kk++) mma_a(da[part][kk], rows_l, QPAD, row0, MMA_K * kk, t);
    }

    float l2[2], dl[2], acc[OB][4];
#pragma unroll
    for (uint r = 0; r < 2; r++) {
        l2[r] = i_row[r] < S ? lse[stat_row + i_row[r]] * EV_LOG2E : -INFINITY;
        dl[r] = i_row[r] < S ? delta[stat_row + i_row[r]] : 0.0f;
    }
#pragma unroll
    for (uint ob = 0; ob < OB; ob++)
#pragma unroll
        for (uint e = 0; e < 4; e++) acc[ob][e] = 0.0f;

    for (uint j0 = 0; j0 < S; j0 += BK) {
        float pb[NB][4];
        mma_pair_bias(pb, NB, pair, at.pair_base, i_row, j0, t, S, flags);
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile's readers are done */
        mma_stage(k_l, QPAD, 0, k, NULL, base, j0, BK, S, H, flags, lid, ITEMS);
        mma_stage(kt_l, TPAD, MMA_TRANSPOSED, k, NULL, base, j0, BK, S, H, flags, lid, ITEMS);
        mma_stage(v_l, QPAD, 0, v, NULL, base, j0, BK, S, H, flags, lid, ITEMS);
        stage_mask(mask_l, mask, at.mask_row, j0, BK, S, flags, lid, ITEMS);
        barrier(CLK_LOCAL_MEM_FENCE);

        /* element e of block nb: row row0 + 8 (e / 2), key 8 nb + 2 t + e % 2; s becomes dS */
        float s[NB][4], dp[NB][4];
#pragma unroll
        for (uint nb = 0; nb < NB; nb++) {
#pragma unroll
            for (uint e = 0; e < 4; e++) s[nb][e] = dp[nb][e] = 0.0f;
            mma_block(s[nb], qa, DK / MMA_K, k_l, QPAD, 8 * nb + quad, t, mma_scratch, lid);
#pragma unroll
            for (uint part = 0; part < MMA_DO_PARTS; part++)
                mma_block(dp[nb], da[part], DK / MMA_K, v_l, QPAD, 8 * nb + quad, t, mma_scratch, lid);
#pragma unroll
            for (uint e = 0; e < 4; e++) {
                float bias = mask_l[8 * nb + 2 * t + e % 2] + pb[nb][e];
                s[nb][e] = prob_and_dscore(s[nb][e], dp[nb][e], bias, l2[e / 2], dl[e / 2], scale2).y;
            }
        }
        mma_blocks_times(acc, OB, s, BK / MMA_K, kt_l, TPAD, quad, t, mma_scratch, lid); /* dQ += dS K */
    }

#pragma unroll
    for (uint r = 0; r < 2; r++) {
        if (i_row[r] >= S) continue;
#pragma unroll
        for (uint ob = 0; ob < OB; ob++)
#pragma unroll
            for (uint c = 0; c < 2; c++) {
                uint d = 8 * ob + 2 * t + c;
                if (d < EV_D) store_elem(dq, AT(base, i_row[r], d), acc[ob][2 * r + c] * scale);
            }
    }
}
