/* The reductions after the fused operators' GEMMs: split-K partials summed into C in a fixed
 * order, and column sums of a matrix (bias gradients) through the same partials. They depend on
 * the dtype alone, so every tile shape of cl/gemm/gemm.cl shares them. */

/* C[batch][m][n] = sum over s < slots of partial[batch][s][m][n], in slot order (+ bias, +
 * residual: laid out as C, and may be C itself). Grid (N, M, batches). */
__kernel void gemm_sum_splits(__global const float *partial, ulong partial_off, __global const store_t *bias,
                              ulong bias_off, __global const c_t *residual, ulong residual_off,
                              __global c_t *c, ulong c_off, ulong ldc, ulong c_batch, ulong M, ulong N,
                              uint slots, uint flags)
{
    ulong n = get_global_id(0), m = get_global_id(1), batch = get_global_id(2);
    if (n >= N || m >= M) return;
    partial += partial_off + batch * slots * M * N;
    float sum = 0.0f;
    for (uint s = 0; s < slots; s++) sum += partial[(s * M + m) * N + n];
    if (flags & GEMM_HAS_BIAS) sum += load_elem(bias + bias_off, n);
    if (flags & GEMM_HAS_RESIDUAL) sum += LOAD_C_ELEM(residual + residual_off + batch * c_batch, m * ldc + n);
    STORE_C_ELEM(c + c_off + batch * c_batch, m * ldc + n, sum);
}

/* partial[s][n] = sum over the rows of split s (rows_per_split of them) of x[m][n], in row
 * order; gemm_sum_splits then adds the splits (a bias gradient). Grid (N, splits). */
__kernel void column_sums(__global const store_t *x, ulong x_off, __global float *partial, ulong partial_off,
                          ulong M, ulong N, ulong rows_per_split)
{
    ulong n = get_global_id(0), s = get_global_id(1);
    if (n >= N) return;
    x += x_off;
    ulong end = min(M, (s + 1) * rows_per_split);
    float sum = 0.0f;
    for (ulong m = s * rows_per_split; m < end; m++) sum += load_elem(x, m * N + n);
    partial[partial_off + s * N + n] = sum;
}
