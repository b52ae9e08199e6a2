/* Without a projection (the Performer) the keys and values go to fp32 rows `ld` apart as the
 * projected ones do, and their fp32 gradients come back to the storage type. Grid: rows * D. */
__kernel void flurka_copy_in(__global const store_t *x, ulong x_off, __global float *xt, ulong xt_off, ulong rows,
                             ulong ld)
{
    ulong j = get_global_id(0);
    if (j < rows * FL_D) xt[xt_off + j / FL_D * ld + j % FL_D] = load_elem(x + x_off, j);
}

__kernel void flurka_copy_out(__global const float *dxt, ulong dxt_off, __global store_t *dx, ulong dx_off, ulong rows,
                              ulong ld)
{
    ulong j = get_global_id(0);
    if (j < rows * FL_D) store_elem(dx + dx_off, j, dxt[dxt_off + j / FL_D * ld + j % FL_D]);
}
