/* EvoAttention forward, micro-tiled: the work of evoattn_forward (same grid) organised like a
 * GEMM, for the head dims the family's declaration gives (lib/ops/evoattn/family.c): the query
 * tile's Q stays in local memory and each key tile's K, V and bias are staged beside it. A work-item computes the scores of 4 queries x 4 keys (queries
 * qg + u * QG, keys kg + t * KG); the tile's row maxima and row sums go through local memory,
 * P replaces the bias tile, and each work-item then adds P V into its tasks of O, 4
 * consecutive queries x 4 head-dim columns each. Every work-item of a query group keeps the
 * same running maximum (same inputs, same order); the kg = 0 items keep the row sums. The next
 * key tile is staged, not prefetched into registers as in the dK/dV kernel: the prefetch
 * doubled the registers a work-item takes and halved the work-groups a multiprocessor holds. */
#ifndef EV_FWD_MT_BQ
#define EV_FWD_MT_BQ 32
#endif
#ifndef EV_FWD_MT_BK
#define EV_FWD_MT_BK 32
#endif

#define BQ EV_FWD_MT_BQ
#define BK EV_FWD_MT_BK
#define DP4 EV_DP4
#define LD4 EV_LD4
#define KG (BK / 4)
#define QG (BQ / 4)
#define ITEMS (KG * QG)
#define PLD (KG % 2 ? KG : KG + 1)             /* float4s a P row: odd, as EV_LD4 */
#define TASKS ((QG * DP4 + ITEMS - 1) / ITEMS) /* 4-query x 4-column blocks of O per item */

__kernel __attribute__((reqd_work_group_size(ITEMS, 1, 1)))
void evoattn_forward_mt(EV_ARGS)
{
    EV_OFFSETS;
    __local float4 q_l[BQ][LD4], k_l[BK][LD4], v_l[BK][LD4], p_l[BQ][PLD]; /* p_l: bias, then P */
    __local float mask_l[BK], max_l[BQ][KG], sum_l[BQ][KG];
    __local float4 rescale_l[QG]; /* each query's factor for O: the tile's alpha, at the end 1 / l */
    __local float *p_f = (__local float *)p_l, *rescale_f = (__local float *)rescale_l;
    const uint lid = get_local_id(0), kg = lid % KG, qg = lid / KG;
    const query_group at = query_group_of(get_group_id(0), BQ, N, S, H);
    const uint b = at.b, n = at.n, h = at.h, i0 = at.i0;
    const ulong base = at.base, mask_row = at.mask_row, pair_base = at.pair_base;
    const float scale2 = scale * EV_LOG2E;

    stage_rows(&q_l[0][0], LD4, q, NULL, base, i0, BQ, DP4, S, H, flags, lid, ITEMS);
    float4 acc[TASKS][4];
    float m[4], l[4];
    for (uint x = 0; x < TASKS; x++)
        for (uint e = 0; e < 4; e++) acc[x][e] = 0.0f;
    for (uint u = 0; u < 4; u++) m[u] = -INFINITY, l[u] = 0.0f;

    for (uint j0 = 0; j0 < S; j0 += BK) {
        barrier(CLK_LOCAL_MEM_FENCE); /* the previous tile's readers are done */
        stage_rows(&k_l[0][0], LD4, k, NULL, base, j0, BK, DP4, S, H, flags, lid, ITEMS);
        stage_rows(&v_l[0][0], LD4, v, NULL, base, j0, BK, DP4, S, H, flags, lid, ITEMS);
        stage_bias(mask_l, p_f, 4 * PLD, mask, mask_row, pair, pair_base, i0, BQ, j0, BK, S, flags, lid, ITEMS);
        barrier(CLK_LOCAL_MEM_FENCE);

        float s[4][4];
        block_scores(s, &k_l[0][0], &q_l[0][0], kg, KG, qg, QG);
        for (uint u = 0; u < 4; u++) {
            uint ii = qg + u * QG;
            float top = -INFINITY;
            for (uint t = 0; t < 4; t++) {
                uint jj = kg + t * KG;
                s[u][t] = fma(s[u][t], scale2, mask_l[jj] + p_f[ii * 4 * PLD + jj]);
                top = fmax(top, s[u][t]);
            }
            max_l[ii][kg] = top;
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        float alpha[4];
        for (uint u = 0; u < 4; u++) {
            uint ii = qg + u * QG;
            float m_new = m[u], sum = 0.0f;
            for (uint c = 0; c < KG; c++) m_new = fmax(m_new, max_l[ii][c]);
            float m_use = m_new == -INFINITY ? 0.0f : m_new; /* no key yet: every p is 0 */
            alpha[u] = exp2(m[u] - m_use);
            m[u] = m_new;
            for (uint t = 0; t < 4; t++) {
                uint jj = kg + t * KG;
                float p = exp2(s[u][t] - m_use);
                p_f[ii * 4 * PLD + jj] = p; /* each entry is read and replaced by one item */
                sum += p;
            }
            sum_l[ii][kg] = sum;
            if (kg == 0) rescale_f[ii] = alpha[u];
        }
        barrier(CLK_LOCAL_MEM_FENCE);

        if (kg == 0)
            for (uint u = 0; u < 4; u++) {
                float sum = 0.0f;
                for (uint c = 0; c < KG; c++) sum += sum_l[qg + u * QG][c];
                l[u] = fma(l[u], alpha[u], sum);
            }
        for (uint x = 0; x < TASKS; x++) {
            uint task = lid + x * ITEMS, qc = task / DP4, dc = task % DP4;
            if (qc >= QG) break;
            float4 a4 = rescale_l[qc];
            acc[x][0] *= a4.x, acc[x][1] *= a4.y, acc[x][2] *= a4.z, acc[x][3] *= a4.w;
            block_pv(acc[x], &p_l[0][0], PLD, &v_l[0][0], qc, dc, KG);
        }
    }

    barrier(CLK_LOCAL_MEM_FENCE);
    if (kg == 0)
        for (uint u = 0; u < 4; u++) {
            uint ii = qg + u * QG, i = i0 + ii;
            rescale_f[ii] = l[u] > 0.0f ? 1.0f / l[u] : 0.0f;
            if ((flags & EV_WANT_LSE) && i < S)
                lse[stat_index(b, n, h, i, N, S, H)] = l[u] > 0.0f ? (m[u] + log2(l[u])) * EV_LN2 : -INFINITY;
        }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint x = 0; x < TASKS; x++) {
        uint task = lid + x * ITEMS, qc = task / DP4, dc = task % DP4;
        if (qc >= QG) break;
        float inv[4];
        vstore4(rescale_l[qc], 0, inv);
        for (uint e = 0; e < 4; e++) store_outputs(o, y, g, &acc[x][e], 1, inv[e], base, i0 + 4 * qc + e, 4 * dc, S, H, flags);
    }
}
