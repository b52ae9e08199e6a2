/* EvoAttention forward on the tensor cores (cl/mma.cl; 16-bit storage or f32 in tf32): the work of
 * evoattn_forward (same grid, same outputs) with both products, S = Q K^T and O += P V, as
 * mma.sync instructions with fp32 accumulators. Each warp owns 16 query rows of the
 * work-group's BQ = 16 x WARPS; Q's fragments stay in registers. Key tiles of BK rows are
 * staged in local memory as stored: K row-major along d, V transposed (a fragment register of
 * B takes two consecutive keys). A warp's scores stay in registers in the accumulators'
 * layout, which is the layout of P as the A operand of P V, so P never leaves registers. The
 * four lanes that share a row combine their maxima (shuffles on the GPU, local memory in the
 * emulation) and keep partial row sums, combined once at the end. The head dim is padded with
 * zeros to DK, a multiple of 16. */
#ifndef EV_FWD_MMA_WARPS
#define EV_FWD_MMA_WARPS 4
#endif
#ifndef EV_FWD_MMA_BK
#define EV_FWD_MMA_BK 64
#endif

#define WARPS EV_FWD_MMA_WARPS
#define ITEMS (32 * WARPS)
#define BQ (16 * WARPS)
#define BK EV_FWD_MMA_BK
#define DK EV_DK
#define QPAD (DK + 8) /* values a Q or K row holds: the extra spreads the rows over the banks */
#define VPAD (BK + 8) /* values a row of V^T holds */
#define NB (BK / 8)   /* a warp's 16 x 8 score blocks per key tile */
#define OB (DK / 8)   /* its 16 x 8 output blocks */

__kernel __attribute__((reqd_work_group_size(ITEMS, 1, 1)))
void evoattn_forward_mma(EV_ARGS)
{
    EV_OFFSETS;
    __local mma_t q_l[BQ * QPAD] __attribute__((aligned(16)));
    __local mma_t k_l[BK * QPAD] __attribute__((aligned(16)));
    __local mma_t vt_l[DK * VPAD] __attribute__((aligned(16)));
    __local float mask_l[BK], red[2 * ITEMS], mma_scratch[MMA_SCRATCH(ITEMS)];
    const uint lid = get_local_id(0), warp = lid / 32, quad = (lid & 31) >> 2, t = lid & 3;
    const query_group at = query_group_of(get_group_id(0), BQ, N, S, H);
    const ulong base = at.base;
    const uint row0 = 16 * warp + quad; /* the lane's rows row0 and row0 + 8 of the query tile */
    const float scale2 = scale * EV_LOG2E;

    mma_stage(q_l, QPAD, 0, q, NULL, base, at.i0, BQ, S, H, flags, lid, ITEMS);
    barrier(CLK_LOCAL_MEM_FENCE);
    uint qa[DK / MMA_K][4];
#pragma unroll
    for (uint kk = 0; kk < DK / MMA_K; kk++) mma_a(qa[kk], q_l, QPAD, row0, MMA_K * kk, t);

    float acc[OB][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
#pragma unroll
    for (uint ob = 0; ob < OB; ob++)
#pragma unroll
        for (uint e = 0; e < 4; e++) acc[ob][e] = 0.0f;
    const uint i_row[2] = {at.i0 + row0, at.i0 + row0 + 8};

    for (uint j0 = 0; j0 < S; j0 += BK) {
        float pb[NB][4];
        mma_pair_bias(pb, NB, pair, at.pair_base, i_row, j0, t, S, flags);
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile's readers are done */
        mma_stage(k_l, QPAD, 0, k, NULL, base, j0, BK, S, H, flags, lid, ITEMS);
        mma_stage(vt_l, VPAD, MMA_TRANSPOSED, v, NULL, base, j0, BK, S, H, flags, lid, ITEMS);
        stage_mask(mask_l, mask, at.mask_row, j0, BK, S, flags, lid, ITEMS);
        barrier(CLK_LOCAL_MEM_FENCE);

        /* scores of the warp's 16 rows against the tile's keys, then the bias, in log2 units;
         * element e of block nb: row row0 + 8 (e / 2), key 8 nb + 2 t + e % 2 */
        float s[NB][4];
#pragma unroll
        for (uint nb = 0; nb < NB; nb++) {
#pragma unroll
            for (uint e = 0; e < 4; e++) s[nb][e] = 0.0f;
            mma_block(s[nb], qa, DK / MMA_K, k_l, QPAD, 8 * nb + quad, t, mma_scratch, lid);
#pragma unroll
            for (uint e = 0; e < 4; e++) {
                uint jj = 8 * nb + 2 * t + e % 2;
                s[nb][e] = fma(s[nb][e], scale2, mask_l[jj] + pb[nb][e]);
            }
        }
        mma_online_softmax(s, NB, m, l, acc, OB, red, lid);
        mma_blocks_times(acc, OB, s, BK / MMA_K, vt_l, VPAD, quad, t, mma_scratch, lid); /* O += P V */
    }

    MMA_QUAD(MMA_ADD, l[0], l[1], red, lid);
#pragma unroll
    for (uint r = 0; r < 2; r++) {
        uint i = i_row[r];
        if (i >= S) continue;
        float inv = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
        if (t == 0 && (flags & EV_WANT_LSE))
            lse[stat_index(at.b, at.n, at.h, i, N, S, H)] = l[r] > 0.0f ? (m[r] + log2(l[r])) * EV_LN2 : -INFINITY;
#pragma unroll
        for (uint ob = 0; ob < OB; ob++)
#pragma unroll
            for (uint c = 0; c < 2; c++) {
                uint d = 8 * ob + 2 * t + c;
                if (d >= EV_D) continue;
                float x = acc[ob][2 * r + c] * inv;
                store_elem(o, AT(base, i, d), x);
                if (flags & EV_HAS_GATE) store_elem(y, AT(base, i, d), x * mcl_sigmoid(load_elem(g, AT(base, i, d))));
            }
    }
}
