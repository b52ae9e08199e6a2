/* FLuRKA's query rows, forward and backward, and the keys' sum into [S | z]: a work-group holds
 * FL_ROWS rows of a head at a time in local memory, their features (phi(q) or phi(k~) [ROWS, L]),
 * the queries' values and normalisers [phi(q) S | phi(q) z] and, backward, the gradient of each,
 * so nothing of size N x L reaches global memory. S and z come as one [L, D + 1] matrix `svz` (flurka/keys.cl); A [L, D] is the
 * matrix whose rows give the features (W, or the projected keys for softmax), a_scale the
 * factor on its dot products (D^-1/4, 1 or D^-1/2). */
#ifndef FL_ROWS
#define FL_ROWS 8
#endif
#ifndef FL_WG
#define FL_WG 128
#endif
#ifndef FL_ACC
#define FL_ACC 1
#endif
#ifndef FL_ACC_A
#define FL_ACC_A 1
#endif

#define FL_SAVE_DEN 1u /* forward: store the normaliser */
#define FL_WANT_DQ 1u  /* backward: store dq */

/* dst[t][d] = rows row0 + t of x, zero from row `end` on */
inline void fl_load_rows(__local float *dst, uint ld, __global const store_t *x, ulong row0, ulong end, uint lid)
{
    for (uint j = lid; j < FL_ROWS * FL_D; j += FL_WG) {
        ulong row = row0 + j / FL_D;
        dst[(j / FL_D) * ld + j % FL_D] = row < end ? load_elem(x, row * FL_D + j % FL_D) : 0.0f;
    }
}

/* fs[t][r] = the features of the query rows qs (rowc: scratch for the exponentials' row maxima) */
inline void fl_row_features(__local float *fs, __local const float *qs, __global const float *amat, float a_scale,
                            __local float *rowc, uint lid)
{
    for (uint j = lid; j < FL_ROWS * FL_L; j += FL_WG) {
        uint t = j / FL_L, r = j % FL_L;
#if FL_MAP == FL_ELU
        fs[j] = fl_elu1(qs[t * FL_D + r]);
#elif FL_MAP == FL_RELU
        fs[j] = fmax(a_scale * fl_dot_gl(amat + r * FL_D, qs + t * FL_D), 0.0f) + FL_RELU_EPS;
#else
        fs[j] = a_scale * fl_dot_gl(amat + r * FL_D, qs + t * FL_D);
#endif
    }
    barrier(CLK_LOCAL_MEM_FENCE);
#if FL_EXPONENTIAL
    for (uint t = lid; t < FL_ROWS; t += FL_WG) {
        float c = -INFINITY;
        for (uint r = 0; r < FL_L; r++) c = fmax(c, fs[t * FL_L + r]);
        rowc[t] = c;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    /* FAVOR+'s 1 / sqrt(m); its -|q'|^2 / 2 is constant along the row and is part of the maximum */
    const float norm = FL_MAP == FL_FAVOR ? rsqrt((float)FL_L) : 1.0f;
    for (uint j = lid; j < FL_ROWS * FL_L; j += FL_WG) fs[j] = norm * exp(fs[j] - rowc[j / FL_L]);
    barrier(CLK_LOCAL_MEM_FENCE);
#endif
}

/* numz[t] = [phi(q_t) S | phi(q_t) z] */
inline void fl_row_values(__local float *numz, __local const float *fs, __global const float *svz, uint lid)
{
    for (uint j = lid; j < FL_ROWS * FL_DV; j += FL_WG) {
        uint t = j / FL_DV, c = j % FL_DV;
        float s = 0.0f;
        for (uint r = 0; r < FL_L; r++) s += fs[t * FL_L + r] * svz[r * FL_DV + c];
        numz[j] = s;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
}

/* row t's denominator, held at FLT_MIN or above (a query whose features all underflow gets 0) */
inline float fl_den(__local const float *numz, uint t) { return fmax(numz[t * FL_DV + FL_D], FLT_MIN); }

/* out = num / den of FL_ROWS rows of head get_group_id(2) from row get_group_id(1) * FL_ROWS; the
 * normaliser too with FL_SAVE_DEN. Grid (FL_WG, ceil(N / FL_ROWS), B * H). */
__kernel void flurka_rows_forward(__global const store_t *q, ulong q_off, __global const float *amat, ulong a_off,
                                  ulong a_head, float a_scale, __global const float *svz, ulong svz_off,
                                  __global store_t *out, ulong out_off, __global float *den, ulong den_off, ulong N,
                                  uint flags)
{
    __local float qs[FL_ROWS * FL_D], fs[FL_ROWS * FL_L], numz[FL_ROWS * FL_DV], rowc[FL_ROWS];
    uint lid = get_local_id(0);
    ulong bh = get_group_id(2), row0 = get_group_id(1) * FL_ROWS;
    q += q_off + bh * N * FL_D;
    out += out_off + bh * N * FL_D;
    amat += a_off + bh * a_head;
    svz += svz_off + bh * FL_L * FL_DV;
    fl_load_rows(qs, FL_D, q, row0, N, lid);
    barrier(CLK_LOCAL_MEM_FENCE);
    fl_row_features(fs, qs, amat, a_scale, rowc, lid);
    fl_row_values(numz, fs, svz, lid);
    for (uint j = lid; j < FL_ROWS * FL_D; j += FL_WG) {
        uint t = j / FL_D;
        if (row0 + t < N) store_elem(out, (row0 + t) * FL_D + j % FL_D, numz[t * FL_DV + j % FL_D] / fl_den(numz, t));
    }
    for (uint t = lid; t < FL_ROWS && (flags & FL_SAVE_DEN); t += FL_WG)
        if (row0 + t < N) den[den_off + bh * N + row0 + t] = fl_den(numz, t);
}

/* The backward of a chunk of rows_per_chunk rows (a multiple of FL_ROWS) of head get_group_id(2):
 * dq (FL_WANT_DQ), and the chunk's sums over its rows of phi(q)^T [dnum | dden] -> partial_s
 * [B * H, chunks, L, D + 1] (the gradients of S and z) and, for softmax, of ds^T q * a_scale ->
 * partial_a [B * H, chunks, L, D] (the projected keys'). Work-item lid owns entries lid + i * FL_WG
 * of each. Grid (FL_WG, chunks, B * H). */
__kernel void flurka_rows_backward(__global const store_t *q, ulong q_off, __global const store_t *dout,
                                   ulong dout_off, __global const float *amat, ulong a_off, ulong a_head,
                                   float a_scale, __global const float *svz, ulong svz_off, __global store_t *dq,
                                   ulong dq_off, __global float *partial_s, ulong ps_off, __global float *partial_a,
                                   ulong pa_off, ulong N, ulong rows_per_chunk, uint flags)
{
    __local float qs[FL_ROWS * FL_D], fs[FL_ROWS * FL_L], gs[FL_ROWS * FL_L], numz[FL_ROWS * FL_DV],
        dz[FL_ROWS * FL_DV], rowc[FL_ROWS];
    uint lid = get_local_id(0);
    ulong bh = get_group_id(2), chunk = get_group_id(1), chunks = get_num_groups(1);
    q += q_off + bh * N * FL_D;
    dout += dout_off + bh * N * FL_D;
    dq += dq_off + bh * N * FL_D;
    amat += a_off + bh * a_head;
    svz += svz_off + bh * FL_L * FL_DV;
    float acc[FL_ACC], acc_a[FL_ACC_A];
    for (uint i = 0; i < FL_ACC; i++) acc[i] = 0.0f;
    for (uint i = 0; i < FL_ACC_A; i++) acc_a[i] = 0.0f;
    ulong begin = chunk * rows_per_chunk, end = min(N, begin + rows_per_chunk);
    for (ulong row0 = begin; row0 < end; row0 += FL_ROWS) {
        fl_load_rows(qs, FL_D, q, row0, end, lid);
        fl_load_rows(dz, FL_DV, dout, row0, end, lid); /* g, turned into dnum below */
        barrier(CLK_LOCAL_MEM_FENCE);
        fl_row_features(fs, qs, amat, a_scale, rowc, lid);
        fl_row_values(numz, fs, svz, lid);
        /* dnum = g / den, dden = -g . O / den = -(g . num) / den^2 */
        for (uint t = lid; t < FL_ROWS; t += FL_WG) {
            float den = fl_den(numz, t), g_num = 0.0f;
            for (uint d = 0; d < FL_D; d++) g_num += dz[t * FL_DV + d] * numz[t * FL_DV + d];
            for (uint d = 0; d < FL_D; d++) dz[t * FL_DV + d] /= den;
            dz[t * FL_DV + FL_D] = -g_num / (den * den);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        /* ds = dphi * phi'(.), dphi_r = S_r . dnum + z_r dden */
        for (uint j = lid; j < FL_ROWS * FL_L; j += FL_WG) {
            uint t = j / FL_L, r = j % FL_L;
            float dphi = 0.0f;
            for (uint c = 0; c < FL_DV; c++) dphi += svz[r * FL_DV + c] * dz[t * FL_DV + c];
            gs[j] = dphi * fl_map_slope(FL_MAP == FL_ELU ? qs[t * FL_D + r % FL_D] : 0.0f, fs[j]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint j = lid; j < FL_ROWS * FL_D && (flags & FL_WANT_DQ); j += FL_WG) {
            uint t = j / FL_D, d = j % FL_D;
#if FL_MAP == FL_ELU
            float v = gs[t * FL_L + d];
#else
            float v = 0.0f;
            for (uint r = 0; r < FL_L; r++) v += gs[t * FL_L + r] * amat[r * FL_D + d];
            v *= a_scale;
#endif
            if (row0 + t < end) store_elem(dq, (row0 + t) * FL_D + d, v);
        }
        for (uint i = 0; i < FL_ACC; i++) {
            uint e = lid + i * FL_WG, r = e / FL_DV, c = e % FL_DV;
            if (e >= FL_L * FL_DV) break;
            float s = 0.0f;
            for (uint t = 0; t < FL_ROWS; t++) s += fs[t * FL_L + r] * dz[t * FL_DV + c];
            acc[i] += s;
        }
#if FL_MAP == FL_SOFTMAX
        for (uint i = 0; i < FL_ACC_A; i++) {
            uint e = lid + i * FL_WG, r = e / FL_D, d = e % FL_D;
            if (e >= FL_L * FL_D) break;
            float s = 0.0f;
            for (uint t = 0; t < FL_ROWS; t++) s += gs[t * FL_L + r] * qs[t * FL_D + d];
            acc_a[i] += s;
        }
#endif
        barrier(CLK_LOCAL_MEM_FENCE); /* the next tile overwrites the local arrays */
    }
    for (uint i = 0; i < FL_ACC; i++) {
        uint e = lid + i * FL_WG;
        if (e < FL_L * FL_DV) partial_s[ps_off + (bh * chunks + chunk) * FL_L * FL_DV + e] = acc[i];
    }
#if FL_MAP == FL_SOFTMAX
    for (uint i = 0; i < FL_ACC_A; i++) {
        uint e = lid + i * FL_WG;
        if (e < FL_L * FL_D) partial_a[pa_off + (bh * chunks + chunk) * FL_L * FL_D + e] = a_scale * acc_a[i];
    }
#endif
}

#if FL_MAP != FL_SOFTMAX /* softmax's [S | z] is [V~ | 1] (flurka/keys.cl) */
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
