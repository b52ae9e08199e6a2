/* ACSR forward: a work-group owns a tile's rows and streams BK keys of each of the tile's key
 * lattices at a time through local memory, with an online softmax; writes O and the
 * log-sum-exp. */
#ifndef ACSR_FWD_BQ
#define ACSR_FWD_BQ 64
#endif
#ifndef ACSR_FWD_BK
#define ACSR_FWD_BK 32
#endif
#ifndef ACSR_FWD_DW
#define ACSR_FWD_DW 64
#endif
#ifndef ACSR_FWD_DS
#define ACSR_FWD_DS 1
#endif

#define BQ ACSR_FWD_BQ
#define BK ACSR_FWD_BK
#define DS ACSR_FWD_DS
#define V4 (ACSR_FWD_DW / 4) /* float4s of a work-item's slice */
#define DP4 (DS * V4)        /* float4s of a staged row */

__kernel __attribute__((reqd_work_group_size(BQ * DS, 1, 1)))
void acsr_forward(ACSR_ARGS)
{
    ACSR_OFFSETS;
    __local float4 k_l[BK * DP4], v_l[BK * DP4];
#if DS > 1
    __local float part_l[DS * BQ * (BK + 1)];
#endif
    const uint lid = get_local_id(0), slot = lid % BQ, sl = lid / BQ, items = BQ * DS;
    const tile_place p = tile_of(tiles, tile_count);
    const uint row = tile_row(p.tile, order, slot, N), d0 = sl * V4 * 4;
    const float scale2 = scale * ACSR_LOG2E;

    float4 qv[V4], acc[V4];
    load_slice(qv, V4, q, p.bh, row, d0, N);
    for (uint e = 0; e < V4; e++) acc[e] = 0.0f;
    float m = -INFINITY, l = 0.0f;

    for (uint c = 0; c < p.tile[2]; c++) {
        const lattice lat = lattice_of(p.tile, c);
        const uint2 bounds = row_bounds(rows, row, c, N);
        for (uint t0 = 0; t0 < lat.keys; t0 += BK) {
            barrier(CLK_LOCAL_MEM_FENCE); /* the previous keys' readers are done */
            stage_keys(k_l, DP4, k, lat, csr, t0, BK, p.bh, N, lid, items);
            stage_keys(v_l, DP4, v, lat, csr, t0, BK, p.bh, N, lid, items);
            barrier(CLK_LOCAL_MEM_FENCE);

            float s[BK];
            for (uint j = 0; j < BK; j++) {
                s[j] = 0.0f;
                for (uint e = 0; e < V4; e++) s[j] = dot4(qv[e], k_l[j * DP4 + sl * V4 + e], s[j]);
            }
#if DS > 1
            sum_slices(s, BK, part_l, BQ, slot, sl, DS);
#endif
            float m_new = m;
            for (uint j = 0; j < BK; j++) {
                uint t = t0 + j;
                s[j] = row_has(lat, t, t < lat.keys ? lattice_key(lat, csr, t) : 0, bounds) ? s[j] * scale2 : -INFINITY;
                m_new = fmax(m_new, s[j]);
            }
            float m_use = m_new == -INFINITY ? 0.0f : m_new; /* no key yet: every p is 0 */
            float alpha = exp2(m - m_use);
            m = m_new;
            l *= alpha;
            for (uint e = 0; e < V4; e++) acc[e] *= alpha;
            for (uint j = 0; j < BK; j++) {
                float pj = exp2(s[j] - m_use);
                l += pj;
                for (uint e = 0; e < V4; e++) acc[e] = fma((float4)(pj), v_l[j * DP4 + sl * V4 + e], acc[e]);
            }
        }
    }

    if (row >= N) return;
    store_slice(o, acc, V4, l > 0.0f ? 1.0f / l : 0.0f, p.bh, row, d0, N);
    if ((flags & ACSR_WANT_LSE) && sl == 0) lse[(ulong)p.bh * N + row] = l > 0.0f ? (m + log2(l)) * ACSR_LN2 : -INFINITY;
}
