/* FLuRKA's keys, per head, one work-group a key (flurka/rows.cl sums the keys' features into
 * [S | z]): softmax's [S | z], which is [V~ | 1], and backward the kernel maps' gradients of K~
 * and V~ from those of S and z. K~ and V~ are fp32 [B * H, Nk, D]; every sum runs in a fixed
 * order. */
#ifndef FL_KEY_WG
#define FL_KEY_WG 64
#endif

/* Softmax reads [V~ | 1] as its [S | z]: svz[bh][r] = [v~_r | 1]. Grid (D + 1, L, B * H). */
__kernel void flurka_softmax_values(__global const float *vt, ulong vt_off, __global float *svz, ulong svz_off)
{
    uint c = get_global_id(0), r = get_global_id(1);
    ulong bh = get_global_id(2);
    if (c < FL_DV) svz[svz_off + (bh * FL_L + r) * FL_DV + c] = c < FL_D ? vt[vt_off + (bh * FL_L + r) * FL_D + c] : 1.0f;
}

#if FL_MAP != FL_SOFTMAX /* softmax's key gradients come straight from the query rows */
/* The kernel maps' key gradients from dsvz = [dS | dz] [B * H, L, D + 1]: phi(k~_i) recomputed,
 * dphi_ir = v~_i . dS_r + dz_r, then dv~_i = sum_r phi_ir dS_r and dk~_i through the map (FAVOR+:
 * a_scale sum_r dphi_ir phi_ir (w_r - k'_i); ReLU: sum_r dphi_ir [phi_ir > eps] w_r; elu + 1:
 * dphi_i phi'). maxima: the FAVOR+ exponents' maxima of the head's key chunks. One work-group a
 * key: grid (FL_KEY_WG, Nk, B * H). */
__kernel void flurka_key_grads(__global const float *kt, ulong kt_off, __global const float *vt, ulong vt_off,
                               __global const float *w, ulong w_off, float a_scale, __global const float *maxima,
                               ulong maxima_off, ulong key_chunks, __global const float *dsvz, ulong dsvz_off,
                               __global float *dkt, ulong dkt_off, __global float *dvt, ulong dvt_off, ulong Nk)
{
    __local float phi[FL_L], dsk[FL_L];
    uint lid = get_local_id(0);
    ulong bh = get_group_id(2), key = bh * Nk + get_group_id(1);
    __global const float *x = kt + kt_off + key * FL_D, *v = vt + vt_off + key * FL_D,
                         *ds = dsvz + dsvz_off + bh * FL_L * FL_DV;
    w += w_off;
    float c = FL_MAP == FL_FAVOR ? fl_head_max(maxima + maxima_off + bh * key_chunks, key_chunks) : 0.0f;
    for (uint r = lid; r < FL_L; r += FL_KEY_WG) {
        float dphi = ds[r * FL_DV + FL_D];
        for (uint d = 0; d < FL_D; d++) dphi += v[d] * ds[r * FL_DV + d];
        phi[r] = fl_key_feature(x, w, r, a_scale, c);
        dsk[r] = dphi * fl_map_slope(FL_MAP == FL_ELU ? x[r % FL_D] : 0.0f, phi[r]);
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint d = lid; d < FL_D; d += FL_KEY_WG) {
        float dv = 0.0f;
        for (uint r = 0; r < FL_L; r++) dv += phi[r] * ds[r * FL_DV + d];
#if FL_MAP == FL_ELU
        float dk = dsk[d];
#else
        float along_w = 0.0f, total = 0.0f;
        for (uint r = 0; r < FL_L; r++) along_w += dsk[r] * w[r * FL_D + d], total += dsk[r];
#if FL_MAP == FL_FAVOR
        float dk = a_scale * (along_w - a_scale * x[d] * total);
#else
        float dk = a_scale * along_w;
#endif
#endif
        dkt[dkt_off + key * FL_D + d] = dk;
        dvt[dvt_off + key * FL_D + d] = dv;
    }
}
#endif
