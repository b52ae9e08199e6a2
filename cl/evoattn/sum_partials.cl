/* out[o * inner + x] = sum over c < chunks of part[(o * chunks + c) * inner + x], in c order:
 * d(mask bias) sums per-head partials (chunks = H), d(pair bias) per-chunk partials. */
__kernel void evoattn_sum_partials(__global const float *part, ulong part_off, __global store_t *out,
                                   ulong out_off, ulong outer, uint chunks, ulong inner)
{
    part += part_off;
    ulong x = get_global_id(0), o = get_global_id(1);
    if (x >= inner || o >= outer) return;
    float sum = 0.0f;
    for (uint c = 0; c < chunks; c++) sum += part[(o * chunks + c) * inner + x];
    store_elem(out + out_off, o * inner + x, sum);
}
