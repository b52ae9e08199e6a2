/* FLuRKA's keys, per head: [S | z] = phi(K~)^T [V~ | 1] (softmax's is [V~ | 1] itself) and,
 * backward, the kernel maps' gradients of K~ and V~ from those of S and z. K~ and V~ are fp32
 * [B * H, Nk, D]; [S | z] is one [L, D + 1] matrix `svz` a head. Every sum runs in a fixed order:
 * the keys' sums a chunk of FL_ROWS-key tiles per work-group (phi(K~) never leaves local
 * memory), then the chunks' partials in order. */
#ifndef FL_ROWS
#define FL_ROWS 8
#endif
#ifndef FL_WG
#define FL_WG 128
#endif
#ifndef FL_ACC
#define FL_ACC 1
#endif
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

#if FL_MAP != FL_SOFTMAX /* softmax's [S | z] is [V~ | 1] */
/* FAVOR+: maxima[bh][chunk] = the largest exponent of the features of the chunk's keys, rows
 * rows_per_chunk of K~ [B * H, Nk, D] (fp32). Grid (FL_WG, chunks, B * H). */
__kernel void flurka_key_maxima(__global const float *kt, ulong kt_off, __global const float *w, ulong w_off,
                                float a_scale, __global float *maxima, ulong maxima_off, ulong Nk,
                                ulong rows_per_chunk)
{
    __local float scratch[FL_WG];
    uint lid = get_local_id(0);
    ulong bh = get_group_id(2), chunk = get_group_id(1), begin = chunk * rows_per_chunk;
    ulong end = min(Nk, begin + rows_per_chunk);
    kt += kt_off + bh * Nk * FL_D;
    float c = -INFINITY;
    for (ulong j = lid; j < (end - begin) * FL_L; j += FL_WG)
        c = fmax(c, fl_key_argument(kt + (begin + j / FL_L) * FL_D, w + w_off, j % FL_L, a_scale));
    scratch[lid] = c;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = FL_WG / 2; s > 0; s >>= 1) {
        if (lid < s) scratch[lid] = fmax(scratch[lid], scratch[lid + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0) maxima[maxima_off + bh * get_num_groups(1) + chunk] = scratch[0];
}

/* The chunk's part of [S | z] = phi(K~)^T [V~ | 1]: partial_s[bh][chunk] [L, D + 1], summed over
 * its keys a tile of FL_ROWS at a time (phi(K~) never leaves local memory). maxima: FAVOR+'s
 * (flurka_key_maxima). Grid (FL_WG, chunks, B * H). */
__kernel void flurka_key_values(__global const float *kt, ulong kt_off, __global const float *vt, ulong vt_off,
                                __global const float *w, ulong w_off, float a_scale, __global const float *maxima,
                                ulong maxima_off, __global float *partial_s, ulong ps_off, ulong Nk,
                                ulong rows_per_chunk)
{
    __local float fs[FL_ROWS * FL_L], vs[FL_ROWS * FL_DV];
    uint lid = get_local_id(0);
    ulong bh = get_group_id(2), chunk = get_group_id(1), chunks = get_num_groups(1);
    ulong begin = chunk * rows_per_chunk, end = min(Nk, begin + rows_per_chunk);
    kt += kt_off + bh * Nk * FL_D;
    vt += vt_off + bh * Nk * FL_D;
    w += w_off;
    float c = FL_MAP == FL_FAVOR ? fl_head_max(maxima + maxima_off + bh * chunks, chunks) : 0.0f;
    float acc[FL_ACC];
    for (uint i = 0; i < FL_ACC; i++) acc[i] = 0.0f;
    for (ulong row0 = begin; row0 < end; row0 += FL_ROWS) {
        for (uint j = lid; j < FL_ROWS * FL_L; j += FL_WG) {
            ulong row = row0 + j / FL_L;
            fs[j] = row < end ? fl_key_feature(kt + row * FL_D, w, j % FL_L, a_scale, c) : 0.0f;
        }
        for (uint j = lid; j < FL_ROWS * FL_DV; j += FL_WG) {
            ulong row = row0 + j / FL_DV;
            uint col = j % FL_DV;
            vs[j] = row >= end ? 0.0f : col < FL_D ? vt[row * FL_D + col] : 1.0f;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint i = 0; i < FL_ACC; i++) {
            uint e = lid + i * FL_WG, r = e / FL_DV, col = e % FL_DV;
            if (e >= FL_L * FL_DV) break;
            float s = 0.0f;
            for (uint t = 0; t < FL_ROWS; t++) s += fs[t * FL_L + r] * vs[t * FL_DV + col];
            acc[i] += s;
        }
        barrier(CLK_LOCAL_MEM_FENCE); /* the next tile overwrites the local arrays */
    }
    for (uint i = 0; i < FL_ACC; i++) {
        uint e = lid + i * FL_WG;
        if (e < FL_L * FL_DV) partial_s[ps_off + (bh * chunks + chunk) * FL_L * FL_DV + e] = acc[i];
    }
}
#endif

/* out[bh][e] = sum over chunks c, in order, of partial[bh][c][e] (e < len). Grid (len, B * H). */
__kernel void flurka_sum_chunks(__global const float *partial, ulong part_off, ulong chunks, ulong len,
                                __global float *out, ulong out_off)
{
    ulong e = get_global_id(0), bh = get_global_id(1);
    if (e >= len) return;
    partial += part_off + bh * chunks * len + e;
    float s = 0.0f;
    for (ulong c = 0; c < chunks; c++) s += partial[c * len];
    out[out_off + bh * len + e] = s;
}
