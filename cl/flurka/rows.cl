/* FLuRKA's query rows between the GEMMs of lib/ops/flurka/flurka.c, which run a chunk of rows of
 * every head at a time: f [B * H, rows, L] holds a chunk's features (first the GEMM's dot
 * products q . A_r with the rows A_r of W or of the projected keys), numz [B * H, rows, D + 1]
 * their [phi(q) S | phi(q) z], g [B * H, rows, L] the features' gradients; `head` is the floats
 * between two heads' blocks of each (rows * L, rows * (D + 1)), and q, dout, out, dq are the
 * caller's [B * H, N, D] from the chunk's first row on. One work-group a row where a row is
 * reduced (FL_GROUP work-items), a work-item an element elsewhere; every sum in a fixed order. */

#define FL_SAVE_DEN 1u /* flurka_row_output: store the normaliser */

/* f = the features: a_scale times the dot products through the map, FAVOR+ and softmax less the
 * row's largest (it cancels in the ratio; FAVOR+'s -|q'|^2 / 2, constant along the row, too), or
 * elu + 1 of q itself. Grid (FL_GROUP, rows, B * H). */
__kernel void flurka_row_features(__global float *f, ulong f_off, ulong f_head, __global const store_t *q, ulong q_off,
                                  ulong N, float a_scale)
{
    __local float scratch[FL_GROUP];
    uint lid = get_local_id(0);
    ulong t = get_group_id(1), bh = get_group_id(2);
    f += f_off + bh * f_head + t * FL_L;
#if FL_MAP == FL_ELU
    q += q_off + (bh * N + t) * FL_D;
    for (uint r = lid; r < FL_L; r += FL_GROUP) f[r] = fl_elu1(load_elem(q, r));
#elif FL_MAP == FL_RELU
    for (uint r = lid; r < FL_L; r += FL_GROUP) f[r] = fmax(a_scale * f[r], 0.0f) + FL_RELU_EPS;
#else
    float c = -INFINITY;
    for (uint r = lid; r < FL_L; r += FL_GROUP) c = fmax(c, f[r]);
    c = group_max(c, scratch, lid, FL_GROUP);
    /* FAVOR+'s 1 / sqrt(m) */
    const float norm = FL_MAP == FL_FAVOR ? rsqrt((float)FL_L) : 1.0f;
    for (uint r = lid; r < FL_L; r += FL_GROUP) f[r] = norm * exp(a_scale * (f[r] - c));
#endif
}

/* row t's denominator, held at FLT_MIN or above (a query whose features all underflow gets 0) */
inline float fl_den(__global const float *numz) { return fmax(numz[FL_D], FLT_MIN); }

/* out = num / den, and the normaliser with FL_SAVE_DEN (den [B * H, N] from the chunk's first
 * row). Grid (D, rows, B * H). */
__kernel void flurka_row_output(__global const float *numz, ulong numz_off, ulong numz_head, __global store_t *out,
                                ulong out_off, __global float *den, ulong den_off, ulong N, uint flags)
{
    uint d = get_global_id(0);
    ulong t = get_global_id(1), bh = get_global_id(2);
    if (d >= FL_D) return;
    numz += numz_off + bh * numz_head + t * FL_DV;
    float z = fl_den(numz);
    store_elem(out + out_off, (bh * N + t) * FL_D + d, numz[d] / z);
    if (d == 0 && (flags & FL_SAVE_DEN)) den[den_off + bh * N + t] = z;
}

/* numz -> [dnum | dden] in place, from the output's gradient g: dnum = g / den and
 * dden = -g . O / den = -(g . num) / den^2. Grid (FL_GROUP, rows, B * H). */
__kernel void flurka_row_dz(__global float *numz, ulong numz_off, ulong numz_head, __global const store_t *dout,
                            ulong dout_off, ulong N)
{
    __local float scratch[FL_GROUP];
    uint lid = get_local_id(0);
    ulong t = get_group_id(1), bh = get_group_id(2);
    numz += numz_off + bh * numz_head + t * FL_DV;
    dout += dout_off + (bh * N + t) * FL_D;
    float z = fl_den(numz), g_num = 0.0f;
    for (uint d = lid; d < FL_D; d += FL_GROUP) g_num += load_elem(dout, d) * numz[d];
    g_num = group_sum(g_num, scratch, lid, FL_GROUP); /* every work-item has read numz */
    for (uint d = lid; d < FL_D; d += FL_GROUP) numz[d] = load_elem(dout, d) / z;
    if (lid == 0) numz[FL_D] = -g_num / (z * z);
}

/* g = the features' gradient dphi (from the GEMM dz [S | z]^T) times the map's slope and a_scale,
 * the gradient of the dot products q . A_r (elu + 1: of q itself). Grid (L, rows, B * H). */
__kernel void flurka_row_slopes(__global float *g, ulong g_off, __global const float *f, ulong f_off, ulong head,
                                __global const store_t *q, ulong q_off, ulong N, float a_scale)
{
    uint r = get_global_id(0);
    ulong t = get_global_id(1), bh = get_global_id(2);
    if (r >= FL_L) return;
    ulong at = bh * head + t * FL_L + r;
    float x = FL_MAP == FL_ELU ? load_elem(q + q_off, (bh * N + t) * FL_D + r) : 0.0f;
    g[g_off + at] *= a_scale * fl_map_slope(x, f[f_off + at]);
}

/* elu + 1's dq = g itself (L = D) into the storage type. Grid (D, rows, B * H). */
__kernel void flurka_row_dq(__global const float *g, ulong g_off, ulong g_head, __global store_t *dq, ulong dq_off,
                            ulong N)
{
    uint d = get_global_id(0);
    ulong t = get_global_id(1), bh = get_global_id(2);
    if (d < FL_D) store_elem(dq + dq_off, (bh * N + t) * FL_D + d, g[g_off + bh * g_head + t * FL_L + d]);
}
