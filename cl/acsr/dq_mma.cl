/* ACSR backward, dQ on the tensor cores (cl/mma.cl; 16-bit storage or f32 in tf32): the work of acsr_dq
 * (a work-group per tile and head) with S = Q K^T, dP = dO V^T and dQ += dS K as mma.sync
 * instructions with fp32 accumulators. Each warp owns 16 of the tile's rows, their Q and dO
 * fragments in registers; BK keys of each lattice at a time are staged as K and V row-major
 * and K transposed, with their key indices; dS goes from the accumulators to the A operand of
 * dS K in registers, rounded to the storage type. */
#ifndef ACSR_DQ_MMA_WARPS
#define ACSR_DQ_MMA_WARPS 4
#endif
#ifndef ACSR_DQ_MMA_BK
#define ACSR_DQ_MMA_BK 64
#endif

#define WARPS ACSR_DQ_MMA_WARPS
#define ITEMS (32 * WARPS)
#define BQ (16 * WARPS)
#define BK ACSR_DQ_MMA_BK
#define DK ACSR_DK
#define QPAD (DK + 8) /* values a row of Q, dO, K or V holds: the extra spreads rows over the banks */
#define TPAD (BK + 8) /* values a row of K^T holds */
#define NB (BK / 8)   /* a warp's 16 x 8 score blocks per key step */
#define OB (DK / 8)   /* its 16 x 8 blocks of dQ */

__kernel __attribute__((reqd_work_group_size(ITEMS, 1, 1)))
void acsr_dq_mma(ACSR_ARGS)
{
    ACSR_OFFSETS;
    __local mma_t rows_tile[BQ * QPAD] __attribute__((aligned(16))); /* Q, then dO */
    __local mma_t k_l[BK * QPAD] __attribute__((aligned(16)));
    __local mma_t v_l[BK * QPAD] __attribute__((aligned(16)));
    __local mma_t kt_l[DK * TPAD] __attribute__((aligned(16)));
    __local uint row_l[BQ], key_l[BK];
    __local float mma_scratch[MMA_SCRATCH(ITEMS)];
    const uint lid = get_local_id(0), warp = lid / 32, quad = (lid & 31) >> 2, t = lid & 3;
    const tile_place p = tile_of(tiles, tile_count);
    const uint row0 = 16 * warp + quad; /* the lane's slots row0 and row0 + 8 of the tile */
    const float scale2 = scale * ACSR_LOG2E;

    uint qa[DK / MMA_K][4], da[MMA_DO_PARTS][DK / MMA_K][4];
    stage_tile_rows(row_l, rows_tile, QPAD, q, p, order, BQ, N, lid, ITEMS);
#pragma unroll
    for (uint kk = 0; kk < DK / MMA_K; kk++) mma_a(qa[kk], rows_tile, QPAD, row0, MMA_K * kk, t);
#pragma unroll
    for (uint part = 0; part < MMA_DO_PARTS; part++) {
        barrier(CLK_LOCAL_MEM_FENCE);
        stage_indexed(rows_tile, QPAD, part ? MMA_RESIDUE : 0, dout, row_l, BQ, p.bh, N, lid, ITEMS);
        barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll
        for (uint kk = 0; kk < DK / MMA_K; kk++) mma_a(da[part][kk], rows_tile, QPAD, row0, MMA_K * kk, t);
    }
    const uint row[2] = {row_l[row0], row_l[row0 + 8]};
    float l2[2], dl[2], acc[OB][4];
#pragma unroll
    for (uint r = 0; r < 2; r++) {
        l2[r] = row[r] < N ? lse[(ulong)p.bh * N + row[r]] * ACSR_LOG2E : -INFINITY;
        dl[r] = row[r] < N ? delta[(ulong)p.bh * N + row[r]] : 0.0f;
    }
#pragma unroll
    for (uint ob = 0; ob < OB; ob++)
#pragma unroll
        for (uint e = 0; e < 4; e++) acc[ob][e] = 0.0f;

    for (uint c = 0; c < p.tile[2]; c++) {
        const lattice lat = lattice_of(p.tile, c);
        const uint2 bounds[2] = {row_bounds(rows, row[0], c, N), row_bounds(rows, row[1], c, N)};
        for (uint t0 = 0; t0 < lat.keys; t0 += BK) {
            barrier(CLK_LOCAL_MEM_FENCE); /* the previous keys' readers are done */
            stage_key_indices(key_l, lat, csr, t0, BK, N, lid, ITEMS);
            barrier(CLK_LOCAL_MEM_FENCE);
            stage_indexed(k_l, QPAD, 0, k, key_l, BK, p.bh, N, lid, ITEMS);
            stage_indexed(kt_l, TPAD, MMA_TRANSPOSED, k, key_l, BK, p.bh, N, lid, ITEMS);
            stage_indexed(v_l, QPAD, 0, v, key_l, BK, p.bh, N, lid, ITEMS);
            barrier(CLK_LOCAL_MEM_FENCE);

            /* element e of block nb: slot row0 + 8 (e / 2), key position 8 nb + 2 t + e % 2; s
             * becomes dS */
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
                    uint j = 8 * nb + 2 * t + e % 2, r = e / 2;
                    bool has = l2[r] > -INFINITY && row_has(lat, t0 + j, key_l[j], bounds[r]);
                    float pj = has ? exp2(fma(s[nb][e], scale2, -l2[r])) : 0.0f;
                    s[nb][e] = pj * (dp[nb][e] - dl[r]);
                }
            }
            mma_blocks_times(acc, OB, s, BK / MMA_K, kt_l, TPAD, quad, t, mma_scratch, lid); /* dQ += dS K */
        }
    }

#pragma unroll
    for (uint r = 0; r < 2; r++) {
        if (row[r] >= N) continue;
#pragma unroll
        for (uint ob = 0; ob < OB; ob++)
#pragma unroll
            for (uint c = 0; c < 2; c++) {
                uint d = 8 * ob + 2 * t + c;
                if (d < ACSR_D) store_elem(dq, at(p.bh, row[r], d, N), acc[ob][2 * r + c] * scale);
            }
    }
}
