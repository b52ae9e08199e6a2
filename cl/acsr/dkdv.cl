/* ACSR backward, dK and dV: a work-group owns a tile of the transposed mask's rows, which are
 * keys, and streams BK of their queries at a time from each query lattice:
 *   dV_j = sum_i P_ij dO_i,   dK_j = scale * sum_i P_ij (dO_i . v_j - delta_i) q_i.
 * Every key has one owner, so the sums run in a fixed order without atomics. */
#ifndef ACSR_DKV_BQ
#define ACSR_DKV_BQ 64
#endif
#ifndef ACSR_DKV_BK
#define ACSR_DKV_BK 32
#endif
#ifndef ACSR_DKV_DW
#define ACSR_DKV_DW 64
#endif
#ifndef ACSR_DKV_DS
#define ACSR_DKV_DS 1
#endif

#define BQ ACSR_DKV_BQ
#define BK ACSR_DKV_BK
#define DS ACSR_DKV_DS
#define V4 (ACSR_DKV_DW / 4)
#define DP4 (DS * V4)

/* The log2 log-sum-exp and delta of queries t0 .. t0 + BK of lattice l (-inf and 0 past it). */
inline void stage_stats(__local float *lse_l, __local float *delta_l, __global const float *lse,
                        __global const float *delta, lattice l, __global const uint *csr, uint t0, uint bh, uint N,
                        uint lid, uint items)
{
    for (uint j = lid; j < BK; j += items) {
        uint t = t0 + j;
        uint i = t < l.keys ? lattice_key(l, csr, t) : 0;
        lse_l[j] = t < l.keys ? lse[(ulong)bh * N + i] * ACSR_LOG2E : -INFINITY;
        delta_l[j] = t < l.keys ? delta[(ulong)bh * N + i] : 0.0f;
    }
}

__kernel __attribute__((reqd_work_group_size(BQ * DS, 1, 1)))
void acsr_dkdv(ACSR_ARGS)
{
    ACSR_OFFSETS;
    __local float4 q_l[BK * DP4], do_l[BK * DP4];
    __local float lse_l[BK], delta_l[BK];
#if DS > 1
    __local float part_l[DS * BQ * (BK + 1)];
#endif
    const uint lid = get_local_id(0), slot = lid % BQ, sl = lid / BQ, items = BQ * DS;
    const tile_place p = tile_of(tiles, tile_count);
    const uint key = tile_row(p.tile, order, slot, N), d0 = sl * V4 * 4;
    const float scale2 = scale * ACSR_LOG2E;

    float4 kv[V4], vv[V4], dk_acc[V4], dv_acc[V4];
    load_slice(kv, V4, k, p.bh, key, d0, N);
    load_slice(vv, V4, v, p.bh, key, d0, N);
    for (uint e = 0; e < V4; e++) dk_acc[e] = dv_acc[e] = 0.0f;

    for (uint c = 0; c < p.tile[2]; c++) {
        const lattice lat = lattice_of(p.tile, c);
        const uint2 bounds = row_bounds(rows, key, c, N);
        for (uint t0 = 0; t0 < lat.keys; t0 += BK) {
            barrier(CLK_LOCAL_MEM_FENCE);
            stage_keys(q_l, DP4, q, lat, csr, t0, BK, p.bh, N, lid, items);
            stage_keys(do_l, DP4, dout, lat, csr, t0, BK, p.bh, N, lid, items);
            stage_stats(lse_l, delta_l, lse, delta, lat, csr, t0, p.bh, N, lid, items);
            barrier(CLK_LOCAL_MEM_FENCE);

            float s[BK], dp[BK];
            for (uint j = 0; j < BK; j++) {
                s[j] = dp[j] = 0.0f;
                for (uint e = 0; e < V4; e++) {
                    s[j] = dot4(q_l[j * DP4 + sl * V4 + e], kv[e], s[j]);
                    dp[j] = dot4(do_l[j * DP4 + sl * V4 + e], vv[e], dp[j]);
                }
            }
#if DS > 1
            sum_slices(s, BK, part_l, BQ, slot, sl, DS);
            sum_slices(dp, BK, part_l, BQ, slot, sl, DS);
#endif
            for (uint j = 0; j < BK; j++) {
                uint t = t0 + j;
                bool has = lse_l[j] > -INFINITY && row_has(lat, t, t < lat.keys ? lattice_key(lat, csr, t) : 0, bounds);
                float pj = has ? exp2(fma(s[j], scale2, -lse_l[j])) : 0.0f;
                float ds = pj * (dp[j] - delta_l[j]);
                for (uint e = 0; e < V4; e++) {
                    dv_acc[e] = fma((float4)(pj), do_l[j * DP4 + sl * V4 + e], dv_acc[e]);
                    dk_acc[e] = fma((float4)(ds), q_l[j * DP4 + sl * V4 + e], dk_acc[e]);
                }
            }
        }
    }
    if (key >= N) return;
    if (flags & ACSR_WANT_DK) store_slice(dk, dk_acc, V4, scale, p.bh, key, d0, N);
    if (flags & ACSR_WANT_DV) store_slice(dv, dv_acc, V4, 1.0f, p.bh, key, d0, N);
}
