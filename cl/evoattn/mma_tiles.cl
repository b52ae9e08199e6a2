/* What EvoAttention's tensor-core kernels (forward_mma.cl, dq_mma.cl, dkdv_mma.cl) share beyond
 * cl/mma.cl's fragments, present where the host sets MCL_MMA: the head dim padded with zeros to
 * EV_DK, a multiple of 16; a slice's rows staged as the instruction's values, row-major (Q, K,
 * V, dO: a row per sequence position, d along it) or transposed (d rows, positions along them);
 * the score bias. */
#if defined(MCL_MMA) && MCL_MMA
#define EV_DK ((EV_D + 15) / 16 * 16)

/* Rows first .. first + rows of a slice into a local tile of `pad` values a row, laid out as
 * `how` says (cl/mma.cl; transposed: EV_DK rows), zero past S and past D; `gate` non-NULL forms
 * dO from dY. */
inline void mma_stage(__local mma_t *dst, uint pad, uint how, __global const store_t *src,
                      __global const store_t *gate, ulong base, uint first, uint rows, uint S, uint H, uint flags,
                      uint lid, uint items)
{
    for (uint e = lid; e < rows * EV_DK; e += items) {
        uint r = e / EV_DK, d = e % EV_DK;
        float x = 0.0f;
        if (first + r < S && d < EV_D) x = gate ? load_do(src, gate, AT(base, first + r, d), flags) : load_elem(src, AT(base, first + r, d));
        dst[how & MMA_TRANSPOSED ? d * pad + r : r * pad + d] = mma_staged(x, how);
    }
}

/* The pair bias in log2 units of the lane's elements of a warp's nblocks 16 x 8 score blocks
 * from key j0 on (element e of block nb: query rows[e / 2], key j0 + 8 nb + 2 t + e % 2), read
 * before the key tile is staged so that the loads' latency hides behind the staging. */
inline void mma_pair_bias(float (*pb)[4], uint nblocks, __global const store_t *pair, ulong pair_base,
                          const uint *rows, uint j0, uint t, uint S, uint flags)
{
MMA_UNROLL
    for (uint nb = 0; nb < nblocks; nb++)
#pragma unroll
        for (uint e = 0; e < 4; e++)
            pb[nb][e] = pair_entry(pair, pair_base, rows[e / 2], 1, j0 + 8 * nb + 2 * t + e % 2, 1, 0, S, flags);
}
#endif
