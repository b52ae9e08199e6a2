/* ACSR forward on the tensor cores (cl/mma.cl; 16-bit storage or f32 in tf32): the work of acsr_forward
 * (a work-group per tile and head, same outputs) with S = Q K^T and O += P V as mma.sync
 * instructions with fp32 accumulators. Each warp owns 16 of the tile's rows (BQ = 16 x WARPS),
 * their Q fragments in registers; BK keys of each lattice at a time are staged as K row-major
 * and V transposed, with their key indices; a score counts where the key lies within its row's
 * bounds on the lattice. P goes from the accumulators to the A operand of P V in registers. The
 * head dim is padded with zeros to DK, a multiple of 16. */
#ifndef ACSR_FWD_MMA_WARPS
#define ACSR_FWD_MMA_WARPS 4
#endif
#ifndef ACSR_FWD_MMA_BK
#define ACSR_FWD_MMA_BK 64
#endif

#define WARPS ACSR_FWD_MMA_WARPS
#define ITEMS (32 * WARPS)
#define BQ (16 * WARPS)
#define BK ACSR_FWD_MMA_BK
#define DK ACSR_DK
#define QPAD (DK + 8) /* values a Q or K row holds: the extra spreads the rows over the banks */
#define VPAD (BK + 8) /* values a row of V^T holds */
#define NB (BK / 8)   /* a warp's 16 x 8 score blocks per key step */
#define OB (DK / 8)   /* its 16 x 8 output blocks */

__kernel __attribute__((reqd_work_group_size(ITEMS, 1, 1)))
void acsr_forward_mma(ACSR_ARGS)
{
    ACSR_OFFSETS;
    __local mma_t q_l[BQ * QPAD] __attribute__((aligned(16)));
    __local mma_t k_l[BK * QPAD] __attribute__((aligned(16)));
    __local mma_t vt_l[DK * VPAD] __attribute__((aligned(16)));
    __local uint row_l[BQ], key_l[BK];
    __local float red[2 * ITEMS], mma_scratch[MMA_SCRATCH(ITEMS)];
    const uint lid = get_local_id(0), warp = lid / 32, quad = (lid & 31) >> 2, t = lid & 3;
    const tile_place p = tile_of(tiles, tile_count);
    const uint row0 = 16 * warp + quad; /* the lane's slots row0 and row0 + 8 of the tile */
    const float scale2 = scale * ACSR_LOG2E;

    stage_tile_rows(row_l, q_l, QPAD, q, p, order, BQ, N, lid, ITEMS);
    uint qa[DK / MMA_K][4];
#pragma unroll
    for (uint kk = 0; kk < DK / MMA_K; kk++) mma_a(qa[kk], q_l, QPAD, row0, MMA_K * kk, t);
    const uint row[2] = {row_l[row0], row_l[row0 + 8]};

    float acc[OB][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
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
            stage_indexed(vt_l, VPAD, MMA_TRANSPOSED, v, key_l, BK, p.bh, N, lid, ITEMS);
            barrier(CLK_LOCAL_MEM_FENCE);

            /* element e of block nb: slot row0 + 8 (e / 2), key position 8 nb + 2 t + e % 2 */
            float s[NB][4];
#pragma unroll
            for (uint nb = 0; nb < NB; nb++) {
#pragma unroll
                for (uint e = 0; e < 4; e++) s[nb][e] = 0.0f;
                mma_block(s[nb], qa, DK / MMA_K, k_l, QPAD, 8 * nb + quad, t, mma_scratch, lid);
#pragma unroll
                for (uint e = 0; e < 4; e++) {
                    uint j = 8 * nb + 2 * t + e % 2;
                    s[nb][e] = row_has(lat, t0 + j, key_l[j], bounds[e / 2]) ? s[nb][e] * scale2 : -INFINITY;
                }
            }
            mma_online_softmax(s, NB, m, l, acc, OB, red, lid);
            mma_blocks_times(acc, OB, s, BK / MMA_K, vt_l, VPAD, quad, t, mma_scratch, lid); /* O += P V */
        }
    }

    MMA_QUAD(MMA_ADD, l[0], l[1], red, lid);
#pragma unroll
    for (uint r = 0; r < 2; r++) {
        if (row[r] >= N) continue;
        float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
        if (t == 0 && (flags & ACSR_WANT_LSE))
            lse[(ulong)p.bh * N + row[r]] = l[r] > 0.0f ? (m[r] + log2(l[r])) * ACSR_LN2 : -INFINITY;
#pragma unroll
        for (uint ob = 0; ob < OB; ob++)
#pragma unroll
            for (uint c = 0; c < 2; c++) {
                uint d = 8 * ob + 2 * t + c;
                if (d < ACSR_D) store_elem(o, at(p.bh, row[r], d, N), acc[ob][2 * r + c] * inv);
            }
    }
}
