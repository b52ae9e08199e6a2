/* ACSR backward, dK and dV on the tensor cores (cl/mma.cl; 16-bit storage or f32 in tf32): the work of
 * acsr_dkdv (a work-group per tile of the transposed mask's rows, the keys, and head) with
 * S^T = K Q^T, dP^T = V dO^T, dV += P^T dO and dK += dS^T Q as mma.sync instructions with fp32
 * accumulators. Each warp owns 16 of the tile's keys, their K and V fragments in registers; BQ
 * queries of each lattice at a time are staged as Q and dO row-major and transposed, with
 * their indices and statistics; P^T and dS^T go from the accumulators to the A operands of the
 * next products in registers, rounded to the storage type. */
#ifndef ACSR_DKV_MMA_WARPS
#define ACSR_DKV_MMA_WARPS 4
#endif
#ifndef ACSR_DKV_MMA_BK
#define ACSR_DKV_MMA_BK 32
#endif

#define WARPS ACSR_DKV_MMA_WARPS
#define ITEMS (32 * WARPS)
#define BK (16 * WARPS)          /* the tile's keys */
#define BQ ACSR_DKV_MMA_BK       /* queries staged at a time */
#define DK ACSR_DK
#define ROWS (BK > BQ ? BK : BQ) /* rows of the row-major tile that holds K, V, then Q */
#define RPAD (DK + 8)            /* values a row-major row holds: the extra spreads rows over the banks */
#define TPAD (BQ + 8)            /* values a row of Q^T or dO^T holds */
#define NB (BQ / 8)              /* a warp's 16 x 8 score blocks per query step */
#define OB (DK / 8)              /* its 16 x 8 blocks of dK and of dV */

__kernel __attribute__((reqd_work_group_size(ITEMS, 1, 1)))
void acsr_dkdv_mma(ACSR_ARGS)
{
    ACSR_OFFSETS;
    __local mma_t rows_tile[ROWS * RPAD] __attribute__((aligned(16))); /* K, V, then each step's Q */
    __local mma_t do_l[MMA_DO_PARTS][BQ * RPAD] __attribute__((aligned(16)));
    __local mma_t qt_l[DK * TPAD] __attribute__((aligned(16)));
    __local mma_t dot_l[DK * TPAD] __attribute__((aligned(16)));
    __local uint key_l[BK], query_l[BQ];
    __local float l2_l[BQ], delta_l[BQ], mma_scratch[MMA_SCRATCH(ITEMS)];
    const uint lid = get_local_id(0), warp = lid / 32, quad = (lid & 31) >> 2, t = lid & 3;
    const tile_place p = tile_of(tiles, tile_count);
    const uint row0 = 16 * warp + quad; /* the lane's keys row0 and row0 + 8 of the tile */
    const float scale2 = scale * ACSR_LOG2E;

    uint ka[DK / MMA_K][4], va[DK / MMA_K][4];
    stage_tile_rows(key_l, rows_tile, RPAD, k, p, order, BK, N, lid, ITEMS);
#pragma unroll
    for (uint kk = 0; kk < DK / MMA_K; kk++) mma_a(ka[kk], rows_tile, RPAD, row0, MMA_K * kk, t);
    barrier(CLK_LOCAL_MEM_FENCE);
    stage_indexed(rows_tile, RPAD, 0, v, key_l, BK, p.bh, N, lid, ITEMS);
    barrier(CLK_LOCAL_MEM_FENCE);
#pragma unroll
    for (uint kk = 0; kk < DK / MMA_K; kk++) mma_a(va[kk], rows_tile, RPAD, row0, MMA_K * kk, t);
    const uint key[2] = {key_l[row0], key_l[row0 + 8]};

    float dk_acc[OB][4], dv_acc[OB][4];
#pragma unroll
    for (uint ob = 0; ob < OB; ob++)
#pragma unroll
        for (uint e = 0; e < 4; e++) dk_acc[ob][e] = dv_acc[ob][e] = 0.0f;
    for (uint c = 0; c < p.tile[2]; c++) {
        const lattice lat = lattice_of(p.tile, c);
        const uint2 bounds[2] = {row_bounds(rows, key[0], c, N), row_bounds(rows, key[1], c, N)};
        for (uint t0 = 0; t0 < lat.keys; t0 += BQ) {
            barrier(CLK_LOCAL_MEM_FENCE); /* the previous step's (or K's and V's) readers are done */
            stage_key_indices(query_l, lat, csr, t0, BQ, N, lid, ITEMS);
            barrier(CLK_LOCAL_MEM_FENCE);
            stage_indexed(rows_tile, RPAD, 0, q, query_l, BQ, p.bh, N, lid, ITEMS);
            stage_indexed(qt_l, TPAD, MMA_TRANSPOSED, q, query_l, BQ, p.bh, N, lid, ITEMS);
#pragma unroll
            for (uint part = 0; part < MMA_DO_PARTS; part++)
                stage_indexed(do_l[part], RPAD, part ? MMA_RESIDUE : 0, dout, query_l, BQ, p.bh, N, lid, ITEMS);
            stage_indexed(dot_l, TPAD, MMA_TRANSPOSED, dout, query_l, BQ, p.bh, N, lid, ITEMS);
            for (uint j = lid; j < BQ; j += ITEMS) {
                uint i = query_l[j];
                l2_l[j] = i < N ? lse[(ulong)p.bh * N + i] * ACSR_LOG2E : -INFINITY;
                delta_l[j] = i < N ? delta[(ulong)p.bh * N + i] : 0.0f;
            }
            barrier(CLK_LOCAL_MEM_FENCE);

            /* element e of block nb: key row0 + 8 (e / 2), query position 8 nb + 2 t + e % 2; s
             * becomes P^T and dp dS^T */
            float s[NB][4], dp[NB][4];
#pragma unroll
            for (uint nb = 0; nb < NB; nb++) {
#pragma unroll
                for (uint e = 0; e < 4; e++) s[nb][e] = dp[nb][e] = 0.0f;
                mma_block(s[nb], ka, DK / MMA_K, rows_tile, RPAD, 8 * nb + quad, t, mma_scratch, lid);
#pragma unroll
                for (uint part = 0; part < MMA_DO_PARTS; part++)
                    mma_block(dp[nb], va, DK / MMA_K, do_l[part], RPAD, 8 * nb + quad, t, mma_scratch, lid);
#pragma unroll
                for (uint e = 0; e < 4; e++) {
                    uint j = 8 * nb + 2 * t + e % 2;
                    bool has = l2_l[j] > -INFINITY && row_has(lat, t0 + j, query_l[j], bounds[e / 2]);
                    float pj = has ? exp2(fma(s[nb][e], scale2, -l2_l[j])) : 0.0f;
                    s[nb][e] = pj, dp[nb][e] = pj * (dp[nb][e] - delta_l[j]);
                }
            }
            mma_blocks_times(dv_acc, OB, s, BQ / MMA_K, dot_l, TPAD, quad, t, mma_scratch, lid); /* dV += P^T dO */
            mma_blocks_times(dk_acc, OB, dp, BQ / MMA_K, qt_l, TPAD, quad, t, mma_scratch, lid); /* dK += dS^T Q */
        }
    }

#pragma unroll
    for (uint r = 0; r < 2; r++) {
        if (key[r] >= N) continue;
#pragma unroll
        for (uint ob = 0; ob < OB; ob++)
#pragma unroll
            for (uint c = 0; c < 2; c++) {
                uint d = 8 * ob + 2 * t + c;
                if (d >= ACSR_D) continue;
                if (flags & ACSR_WANT_DK) store_elem(dk, at(p.bh, key[r], d, N), dk_acc[ob][2 * r + c] * scale);
                if (flags & ACSR_WANT_DV) store_elem(dv, at(p.bh, key[r], d, N), dv_acc[ob][2 * r + c]);
            }
    }
}
