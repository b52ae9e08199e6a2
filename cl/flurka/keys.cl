/* FLuRKA's keys, per head: the features of the (projected) keys phi(K~) [Nk, L], the matrix
 * [S | z] = phi(K~)^T [V~ | 1] [L, D + 1] the query rows read (for softmax [V~ | 1] itself), and
 * backward the gradients of K~ and V~ from those of S and z. K~ and V~ are fp32 [B * H, Nk, D];
 * every sum runs in a fixed order. */
#ifndef FL_KEY_WG
#define FL_KEY_WG 64
#endif

/* phik[bh][i][r] = phi(k~_i)_r; for FAVOR+ its exponent, w_r . k' - |k'|^2 / 2 (k' = a_scale k~),
 * which flurka_key_exponentials turns into the feature. Grid (L, Nk, B * H). */
__kernel void flurka_key_features(__global const float *kt, ulong kt_off, __global const float *w, ulong w_off,
                                  float a_scale, __global float *phik, ulong phik_off, ulong Nk)
{
    uint r = get_global_id(0);
    ulong i = get_global_id(1), bh = get_global_id(2);
    if (r >= FL_L) return;
    __global const float *x = kt + kt_off + (bh * Nk + i) * FL_D;
#if FL_MAP == FL_ELU
    float v = fl_elu1(x[r]);
#else
    __global const float *wr = w + w_off + r * FL_D;
    float dot = 0.0f, square = 0.0f;
    for (uint d = 0; d < FL_D; d++) dot += wr[d] * x[d], square += x[d] * x[d];
#if FL_MAP == FL_RELU
    float v = fmax(a_scale * dot, 0.0f) + FL_RELU_EPS;
#else
    float v = a_scale * dot - 0.5f * a_scale * a_scale * square;
#endif
#endif
    phik[phik_off + (bh * Nk + i) * FL_L + r] = v;
}

/* FAVOR+: phik = exp(exponent - c) / sqrt(m), c the head's largest exponent (it cancels in the
 * ratio). One work-group a head: grid (FL_KEY_WG, B * H). */
__kernel void flurka_key_exponentials(__global float *phik, ulong phik_off, ulong Nk)
{
    __local float scratch[FL_KEY_WG];
    uint lid = get_local_id(0);
    phik += phik_off + get_group_id(1) * Nk * FL_L;
    ulong count = Nk * FL_L;
    float c = -INFINITY;
    for (ulong j = lid; j < count; j += FL_KEY_WG) c = fmax(c, phik[j]);
    scratch[lid] = c;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint s = FL_KEY_WG / 2; s > 0; s >>= 1) {
        if (lid < s) scratch[lid] = fmax(scratch[lid], scratch[lid + s]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    c = scratch[0];
    const float norm = rsqrt((float)FL_L);
    for (ulong j = lid; j < count; j += FL_KEY_WG) phik[j] = norm * exp(phik[j] - c);
}

/* svz[bh][r][c] = sum over keys i of phik[i][r] * [V~ | 1][i][c]; for softmax [V~ | 1][r][c].
 * Grid (D + 1, L, B * H). */
__kernel void flurka_value_matrix(__global const float *phik, ulong phik_off, __global const float *vt,
                                  ulong vt_off, __global float *svz, ulong svz_off, ulong Nk)
{
    uint c = get_global_id(0), r = get_global_id(1);
    ulong bh = get_global_id(2);
    if (c >= FL_DV) return;
    vt += vt_off + bh * Nk * FL_D;
#if FL_MAP == FL_SOFTMAX
    float s = c < FL_D ? vt[r * FL_D + c] : 1.0f;
#else
    phik += phik_off + bh * Nk * FL_L;
    float s = 0.0f;
    for (ulong i = 0; i < Nk; i++) s += phik[i * FL_L + r] * (c < FL_D ? vt[i * FL_D + c] : 1.0f);
#endif
    svz[svz_off + (bh * FL_L + r) * FL_DV + c] = s;
}

#if FL_MAP != FL_SOFTMAX /* softmax's key gradients come straight from the query rows */
/* The kernel maps' key gradients from dsvz = [dS | dz] [B * H, L, D + 1]: dphi_ir = v~_i . dS_r +
 * dz_r, then dv~_i = sum_r phi_ir dS_r and dk~_i through the map (FAVOR+: a_scale sum_r dphi_ir
 * phi_ir (w_r - k'_i); ReLU: sum_r dphi_ir [phi_ir > eps] w_r; elu + 1: dphi_i phi'). One
 * work-group a key: grid (FL_KEY_WG, Nk, B * H). */
__kernel void flurka_key_grads(__global const float *kt, ulong kt_off, __global const float *vt, ulong vt_off,
                               __global const float *w, ulong w_off, float a_scale, __global const float *phik,
                               ulong phik_off, __global const float *dsvz, ulong dsvz_off, __global float *dkt,
                               ulong dkt_off, __global float *dvt, ulong dvt_off, ulong Nk)
{
    __local float dsk[FL_L];
    uint lid = get_local_id(0);
    ulong key = get_group_id(2) * Nk + get_group_id(1);
    __global const float *x = kt + kt_off + key * FL_D, *v = vt + vt_off + key * FL_D,
                         *phi = phik + phik_off + key * FL_L, *ds = dsvz + dsvz_off + get_group_id(2) * FL_L * FL_DV;
    for (uint r = lid; r < FL_L; r += FL_KEY_WG) {
        float dphi = ds[r * FL_DV + FL_D];
        for (uint c = 0; c < FL_D; c++) dphi += v[c] * ds[r * FL_DV + c];
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
        for (uint r = 0; r < FL_L; r++) along_w += dsk[r] * w[w_off + r * FL_D + d], total += dsk[r];
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
