/* The 4 x 4 block products of the micro-tiled kernels (forward_mt.cl, dkdv_mt.cl). Their
 * D-wide local tiles have rows of EV_LD4 float4s, an odd number, so the 8 rows a quarter-warp
 * reads fall in 8 different banks. */
#define EV_DP4 ((EV_D + 3) / 4)                       /* float4 vectors in a row */
#define EV_LD4 (EV_DP4 % 2 ? EV_DP4 : EV_DP4 + 1)

/* The scores and dP of a 4 x 4 block: s[u][t] = K row k0 + t * kstep . Q row q0 + u * qstep,
 * and dp likewise from V and dO. */
inline void block_dots(float s[4][4], float dp[4][4], __local const float4 *k_l, __local const float4 *q_l,
                       __local const float4 *v_l, __local const float4 *do_l, uint k0, uint kstep, uint q0,
                       uint qstep)
{
    for (uint u = 0; u < 4; u++)
        for (uint t = 0; t < 4; t++) s[u][t] = dp[u][t] = 0.0f;
    for (uint d4 = 0; d4 < EV_DP4; d4++) {
        float4 kk[4], vv[4], qq[4], oo[4];
        for (uint t = 0; t < 4; t++) {
            kk[t] = k_l[(k0 + t * kstep) * EV_LD4 + d4];
            vv[t] = v_l[(k0 + t * kstep) * EV_LD4 + d4];
            qq[t] = q_l[(q0 + t * qstep) * EV_LD4 + d4];
            oo[t] = do_l[(q0 + t * qstep) * EV_LD4 + d4];
        }
        for (uint u = 0; u < 4; u++)
            for (uint t = 0; t < 4; t++) {
                s[u][t] = dot_acc(kk[t], qq[u], s[u][t]);
                dp[u][t] = dot_acc(vv[t], oo[u], dp[u][t]);
            }
    }
}

/* The scores of a 4 x 4 block: s[u][t] = K row k0 + t * kstep . Q row q0 + u * qstep */
inline void block_scores(float s[4][4], __local const float4 *k_l, __local const float4 *q_l, uint k0, uint kstep,
                         uint q0, uint qstep)
{
    for (uint u = 0; u < 4; u++)
        for (uint t = 0; t < 4; t++) s[u][t] = 0.0f;
    for (uint d4 = 0; d4 < EV_DP4; d4++) {
        float4 kk[4], qq[4];
        for (uint t = 0; t < 4; t++) {
            kk[t] = k_l[(k0 + t * kstep) * EV_LD4 + d4];
            qq[t] = q_l[(q0 + t * qstep) * EV_LD4 + d4];
        }
        for (uint u = 0; u < 4; u++)
            for (uint t = 0; t < 4; t++) s[u][t] = dot_acc(kk[t], qq[u], s[u][t]);
    }
}

/* acc[e] += sum over the tile's keys of P[row 4 qc + e][key] * V[key][column block dc]:
 * P rows of `pld` float4s (4 keys each), V rows of EV_LD4. */
inline void block_pv(float4 acc[4], __local const float4 *p_l, uint pld, __local const float4 *v_l, uint qc,
                     uint dc, uint key_blocks)
{
    for (uint kc = 0; kc < key_blocks; kc++) {
        float4 vv[4], pp[4];
        for (uint t = 0; t < 4; t++) {
            vv[t] = v_l[(4 * kc + t) * EV_LD4 + dc];
            pp[t] = p_l[(4 * qc + t) * pld + kc];
        }
        for (uint e = 0; e < 4; e++)
            acc[e] = fma((float4)(pp[e].w), vv[3], fma((float4)(pp[e].z), vv[2],
                     fma((float4)(pp[e].y), vv[1], fma((float4)(pp[e].x), vv[0], acc[e]))));
    }
}
