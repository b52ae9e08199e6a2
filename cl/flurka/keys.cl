/* FLuRKA's keys between the GEMMs of lib/ops/flurka/flurka.c, which run a chunk of keys of every
 * head at a time (as the query rows, flurka/rows.cl): f [B * H, rows, L] holds a chunk's
 * features (first the GEMM's dot products k~ . w_r), g their gradients; `head` the floats
 * between two heads' blocks. K~ [B * H, Nk, D] and V~ [B * H, Nk, D + 1] (its last column 1, so
 * that phi^T V~ gives [S | z]) are fp32, addressed from the chunk's first key on. One work-group
 * a key where a key is reduced (FL_GROUP work-items), a work-item an element elsewhere. */

/* V~'s last column: 1. Grid (rows of every head). */
__kernel void flurka_values_ones(__global float *vt, ulong vt_off, ulong rows)
{
    ulong i = get_global_id(0);
    if (i < rows) vt[vt_off + i * FL_DV + FL_D] = 1.0f;
}

/* FAVOR+'s exponent of key k~ (its squared norm sq): w_r . k' - |k'|^2 / 2 with k' = a_scale k~ */
inline float fl_key_exponent(float dot, float sq, float a_scale) { return a_scale * dot - 0.5f * a_scale * a_scale * sq; }

/* The chunk's key features in f. FAVOR+ in two launches: with `maxima_only`, the largest exponent
 * of each key into maxima[bh][key] (flurka_head_max then takes each head's), else
 * exp(exponent - the head's largest) / sqrt(m), from heads [B * H] (the constant cancels in the
 * ratio and keeps every feature finite). ReLU and elu + 1 as the queries'. Grid (FL_GROUP, rows,
 * B * H). */
__kernel void flurka_key_features(__global float *f, ulong f_off, ulong f_head, __global const float *kt, ulong kt_off,
                                  ulong Nk, float a_scale, __global float *maxima, ulong maxima_off,
                                  __global const float *heads, ulong heads_off, uint maxima_only)
{
    __local float scratch[FL_GROUP];
    uint lid = get_local_id(0);
    ulong t = get_group_id(1), bh = get_group_id(2);
    f += f_off + bh * f_head + t * FL_L;
    kt += kt_off + (bh * Nk + t) * FL_D;
#if FL_MAP == FL_ELU
    for (uint r = lid; r < FL_L; r += FL_GROUP) f[r] = fl_elu1(kt[r]);
#elif FL_MAP == FL_RELU
    for (uint r = lid; r < FL_L; r += FL_GROUP) f[r] = fmax(a_scale * f[r], 0.0f) + FL_RELU_EPS;
#else
    float sq = 0.0f;
    for (uint d = lid; d < FL_D; d += FL_GROUP) sq += kt[d] * kt[d];
    sq = group_sum(sq, scratch, lid, FL_GROUP);
    if (maxima_only) {
        float c = -INFINITY;
        for (uint r = lid; r < FL_L; r += FL_GROUP) c = fmax(c, fl_key_exponent(f[r], sq, a_scale));
        c = group_max(c, scratch, lid, FL_GROUP);
        if (lid == 0) maxima[maxima_off + bh * Nk + t] = c;
        return;
    }
    float c = heads[heads_off + bh];
    for (uint r = lid; r < FL_L; r += FL_GROUP) f[r] = rsqrt((float)FL_L) * exp(fl_key_exponent(f[r], sq, a_scale) - c);
#endif
}

/* heads[bh] = the largest of the head's Nk key maxima. Grid (FL_GROUP, B * H). */
__kernel void flurka_head_max(__global const float *maxima, ulong maxima_off, ulong Nk, __global float *heads,
                              ulong heads_off)
{
    __local float scratch[FL_GROUP];
    uint lid = get_local_id(0);
    ulong bh = get_group_id(1);
    maxima += maxima_off + bh * Nk;
    float c = -INFINITY;
    for (ulong i = lid; i < Nk; i += FL_GROUP) c = fmax(c, maxima[i]);
    c = group_max(c, scratch, lid, FL_GROUP);
    if (lid == 0) heads[heads_off + bh] = c;
}

/* g = dphi (from the GEMM [v~ | 1] [dS | dz]^T) times the map's slope and a_scale; for FAVOR+
 * also s[bh][t] = the sum of the key's g, which its exponent's -|k'|^2 / 2 turns into
 * -a_scale k~ s in dk~. Grid (FL_GROUP, rows, B * H). */
__kernel void flurka_key_slopes(__global float *g, ulong g_off, __global const float *f, ulong f_off, ulong head,
                                __global const float *kt, ulong kt_off, ulong Nk, float a_scale, __global float *s,
                                ulong s_off, ulong s_head)
{
    __local float scratch[FL_GROUP];
    uint lid = get_local_id(0);
    ulong t = get_group_id(1), bh = get_group_id(2);
    g += g_off + bh * head + t * FL_L;
    f += f_off + bh * head + t * FL_L;
    kt += kt_off + (bh * Nk + t) * FL_D;
    float total = 0.0f;
    for (uint r = lid; r < FL_L; r += FL_GROUP) {
        g[r] *= a_scale * fl_map_slope(FL_MAP == FL_ELU ? kt[r] : 0.0f, f[r]);
        total += g[r];
    }
#if FL_MAP == FL_FAVOR
    total = group_sum(total, scratch, lid, FL_GROUP);
    if (lid == 0) s[s_off + bh * s_head + t] = total;
#endif
}

/* dk~ of the chunk's keys (fp32, from its first key on): FAVOR+ adds -a_scale k~ s to the GEMM's
 * g W; elu + 1's is g itself (L = D). Grid (D, rows, B * H). */
__kernel void flurka_key_dk(__global float *dkt, ulong dkt_off, __global const float *kt, ulong kt_off, ulong Nk,
                            __global const float *g, ulong g_off, ulong head, __global const float *s, ulong s_off,
                            ulong s_head, float a_scale)
{
    uint d = get_global_id(0);
    ulong t = get_global_id(1), bh = get_global_id(2);
    if (d >= FL_D) return;
    ulong at = (bh * Nk + t) * FL_D + d;
#if FL_MAP == FL_ELU
    dkt[dkt_off + at] = g[g_off + bh * head + t * FL_L + d];
#else
    dkt[dkt_off + at] -= a_scale * kt[kt_off + at] * s[s_off + bh * s_head + t];
#endif
}
