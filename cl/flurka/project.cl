/* FLuRKA's projections along the sequence, K~ = E K and V~ = F V, and their backward: dK = E^T
 * dK~ and dE = dK~ K^T summed over the heads that share E (likewise V, F). E is [k, N], one for
 * every head (p_head 0) or one per head h = bh mod H (p_head = k * N). Square tiles of
 * FL_PROJ_TILE through local memory; fp32 sums in a fixed order. Without a projection the keys
 * and values are copied to fp32 and their gradients back. */
#ifndef FL_PROJ_TILE
#define FL_PROJ_TILE 16
#endif
#define FL_T FL_PROJ_TILE

/* xt[bh][i][d] = sum_n p[i][n] x[bh][n][d]. Grid (D, k, B * H) rounded up to tiles, local
 * (FL_T, FL_T). */
__kernel void flurka_project(__global const store_t *x, ulong x_off, __global const store_t *p, ulong p_off,
                             ulong p_head, ulong heads, __global float *xt, ulong xt_off, ulong N, ulong k)
{
    __local float ps[FL_T][FL_T], xs[FL_T][FL_T];
    uint lx = get_local_id(0), ly = get_local_id(1), d0 = get_group_id(0) * FL_T;
    ulong i0 = get_group_id(1) * FL_T, bh = get_global_id(2);
    x += x_off + bh * N * FL_D;
    p += p_off + (bh % heads) * p_head;
    float acc = 0.0f;
    for (ulong n0 = 0; n0 < N; n0 += FL_T) {
        ps[ly][lx] = i0 + ly < k && n0 + lx < N ? load_elem(p, (i0 + ly) * N + n0 + lx) : 0.0f;
        xs[ly][lx] = n0 + ly < N && d0 + lx < FL_D ? load_elem(x, (n0 + ly) * FL_D + d0 + lx) : 0.0f;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint t = 0; t < FL_T; t++) acc += ps[ly][t] * xs[t][lx];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (i0 + ly < k && d0 + lx < FL_D) xt[xt_off + (bh * k + i0 + ly) * FL_D + d0 + lx] = acc;
}

/* dx[bh][n][d] = sum_i p[i][n] dxt[bh][i][d], dxt's rows ldx apart. Grid (D, N, B * H) rounded up
 * to tiles, local (FL_T, FL_T). */
__kernel void flurka_project_back(__global const float *dxt, ulong dxt_off, ulong ldx, __global const store_t *p,
                                  ulong p_off, ulong p_head, ulong heads, __global store_t *dx, ulong dx_off, ulong N,
                                  ulong k)
{
    __local float ps[FL_T][FL_T], gs[FL_T][FL_T];
    uint lx = get_local_id(0), ly = get_local_id(1), d0 = get_group_id(0) * FL_T;
    ulong n0 = get_group_id(1) * FL_T, bh = get_global_id(2);
    dxt += dxt_off + bh * k * ldx;
    p += p_off + (bh % heads) * p_head;
    float acc = 0.0f;
    for (ulong i0 = 0; i0 < k; i0 += FL_T) {
        ps[ly][lx] = n0 + ly < N && i0 + lx < k ? load_elem(p, (i0 + lx) * N + n0 + ly) : 0.0f;
        gs[ly][lx] = i0 + ly < k && d0 + lx < FL_D ? dxt[(i0 + ly) * ldx + d0 + lx] : 0.0f;
        barrier(CLK_LOCAL_MEM_FENCE);
        for (uint t = 0; t < FL_T; t++) acc += ps[ly][t] * gs[t][lx];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (n0 + ly < N && d0 + lx < FL_D) store_elem(dx + dx_off + bh * N * FL_D, (n0 + ly) * FL_D + d0 + lx, acc);
}

/* dp[ph][i][n] = sum over the heads bh of projection ph (in order) of sum_d dxt[bh][i][d] x[bh][n][d]:
 * ph = 0 and every head when shared, ph = h and the batch's heads h when per head. Grid (N, k,
 * per_head ? H : 1) rounded up to tiles, local (FL_T, FL_T). */
__kernel void flurka_project_grad(__global const float *dxt, ulong dxt_off, ulong ldx, __global const store_t *x,
                                  ulong x_off, __global store_t *dp, ulong dp_off, ulong batch, ulong heads,
                                  uint per_head, ulong N, ulong k)
{
    __local float gs[FL_T][FL_T], xs[FL_T][FL_T];
    uint lx = get_local_id(0), ly = get_local_id(1);
    ulong n0 = get_group_id(0) * FL_T, i0 = get_group_id(1) * FL_T, ph = get_global_id(2);
    ulong sharing = per_head ? batch : batch * heads;
    float acc = 0.0f;
    for (ulong s = 0; s < sharing; s++) {
        ulong bh = per_head ? s * heads + ph : s;
        for (uint d0 = 0; d0 < FL_D; d0 += FL_T) {
            gs[ly][lx] = i0 + ly < k && d0 + lx < FL_D ? dxt[dxt_off + (bh * k + i0 + ly) * ldx + d0 + lx] : 0.0f;
            xs[lx][ly] = n0 + ly < N && d0 + lx < FL_D ? load_elem(x + x_off, (bh * N + n0 + ly) * FL_D + d0 + lx) : 0.0f;
            barrier(CLK_LOCAL_MEM_FENCE);
            for (uint t = 0; t < FL_T; t++) acc += gs[ly][t] * xs[t][lx];
            barrier(CLK_LOCAL_MEM_FENCE);
        }
    }
    if (i0 + ly < k && n0 + lx < N) store_elem(dp + dp_off, (ph * k + i0 + ly) * N + n0 + lx, acc);
}

/* Without a projection: xt = x in fp32 (grid: the element count), and dx = dxt back. */
__kernel void flurka_copy_in(__global const store_t *x, ulong x_off, __global float *xt, ulong xt_off, ulong count)
{
    ulong j = get_global_id(0);
    if (j < count) xt[xt_off + j] = load_elem(x + x_off, j);
}

__kernel void flurka_copy_out(__global const float *dxt, ulong dxt_off, __global store_t *dx, ulong dx_off,
                              ulong count)
{
    ulong j = get_global_id(0);
    if (j < count) store_elem(dx + dx_off, j, dxt[dxt_off + j]);
}
