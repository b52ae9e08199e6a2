/* ACSR backward, dQ: a work-group owns a tile's rows and streams BK keys of each key lattice at
 * a time: dQ_i = scale * sum_j P_ij (dO_i . v_j - delta_i) k_j. */
#ifndef ACSR_DQ_BQ
#define ACSR_DQ_BQ 64
#endif
#ifndef ACSR_DQ_BK
#define ACSR_DQ_BK 32
#endif
#ifndef ACSR_DQ_DW
#define ACSR_DQ_DW 64
#endif
#ifndef ACSR_DQ_DS
#define ACSR_DQ_DS 1
#endif

#define BQ ACSR_DQ_BQ
#define BK ACSR_DQ_BK
#define DS ACSR_DQ_DS
#define V4 (ACSR_DQ_DW / 4)
#define DP4 (DS * V4)

__kernel __attribute__((reqd_work_group_size(BQ * DS, 1, 1)))
void acsr_dq(ACSR_ARGS)
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
    const float lse2 = row < N ? lse[(ulong)p.bh * N + row] * ACSR_LOG2E : -INFINITY;
    const float dlt = row < N ? delta[(ulong)p.bh * N + row] : 0.0f;

    float4 qv[V4], dov[V4], acc[V4];
    load_slice(qv, V4, q, p.bh, row, d0, N);
    load_slice(dov, V4, dout, p.bh, row, d0, N);
    for (uint e = 0; e < V4; e++) acc[e] = 0.0f;

    for (uint c = 0; c < p.tile[2]; c++) {
        const lattice lat = lattice_of(p.tile, c);
        const uint2 bounds = row_bounds(rows, row, c, N);
        for (uint t0 = 0; t0 < lat.keys; t0 += BK) {
            barrier(CLK_LOCAL_MEM_FENCE);
            stage_keys(k_l, DP4, k, lat, csr, t0, BK, p.bh, N, lid, items);
            stage_keys(v_l, DP4, v, lat, csr, t0, BK, p.bh, N, lid, items);
            barrier(CLK_LOCAL_MEM_FENCE);

            float s[BK], dp[BK];
            for (uint j = 0; j < BK; j++) {
                s[j] = dp[j] = 0.0f;
                for (uint e = 0; e < V4; e++) {
                    s[j] = dot4(qv[e], k_l[j * DP4 + sl * V4 + e], s[j]);
                    dp[j] = dot4(dov[e], v_l[j * DP4 + sl * V4 + e], dp[j]);
                }
            }
#if DS > 1
            sum_slices(s, BK, part_l, BQ, slot, sl, DS);
            sum_slices(dp, BK, part_l, BQ, slot, sl, DS);
#endif
            for (uint j = 0; j < BK; j++) {
                uint t = t0 + j;
                bool has = lse2 > -INFINITY && row_has(lat, t, t < lat.keys ? lattice_key(lat, csr, t) : 0, bounds);
                float pj = has ? exp2(fma(s[j], scale2, -lse2)) : 0.0f;
                float ds = pj * (dp[j] - dlt);
                for (uint e = 0; e < V4; e++) acc[e] = fma((float4)(ds), k_l[j * DP4 + sl * V4 + e], acc[e]);
            }
        }
    }
    if (row < N) store_slice(dq, acc, V4, scale, p.bh, row, d0, N);
}
