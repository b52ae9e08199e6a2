/* What the tensor-core kernels of EvoAttention share (forward_mma.cl, dq_mma.cl), present where
 * the host sets MCL_MMA (cl/mma.cl). A warp owns 16 query rows; lane = 4 quad + t holds rows
 * quad and quad + 8 of them. Tiles sit in local memory as the instruction's 16-bit values, in
 * rows of `pad` values: row-major tiles (Q, K, V, dO: a row per sequence position, d along it)
 * serve as A fragments and as the B fragments of products over d; transposed ones (d rows,
 * positions along them) as the B fragments of products over positions. The head dim is padded
 * with zeros to EV_DK, a multiple of 16. */
#if defined(MCL_MMA) && MCL_MMA
#define EV_DK ((EV_D + 15) / 16 * 16)

/* Rows first .. first + rows of a slice into a local tile of `pad` values a row (transposed: row
 * r becomes column r of EV_DK rows), zero past S and past D; `gate` non-NULL forms dO from dY. */
inline void mma_stage(__local mma_t *dst, uint pad, int transposed, __global const store_t *src,
                      __global const store_t *gate, ulong base, uint first, uint rows, uint S, uint H, uint flags,
                      uint lid, uint items)
{
    for (uint e = lid; e < rows * EV_DK; e += items) {
        uint r = e / EV_DK, d = e % EV_DK;
        float x = 0.0f;
        if (first + r < S && d < EV_D) x = gate ? load_do(src, gate, AT(base, first + r, d), flags) : load_elem(src, AT(base, first + r, d));
        mma_put(dst, transposed ? d * pad + r : r * pad + d, x);
    }
}

/* The A fragment of rows row, row + 8 and k = k0 .. k0 + 15 of a row-major tile */
inline void mma_a(uint *a, __local const mma_t *tile, uint pad, uint row, uint k0, uint t)
{
    uint at = row * pad + k0 + 2 * t;
    a[0] = mma_reg(tile, at), a[1] = mma_reg(tile, at + 8 * pad);
    a[2] = mma_reg(tile, at + 8), a[3] = mma_reg(tile, at + 8 * pad + 8);
}

/* The B fragment of column n and k = k0 .. k0 + 15: row n of a tile whose rows run along k */
inline void mma_b(uint *b, __local const mma_t *tile, uint pad, uint n, uint k0, uint t)
{
    uint at = n * pad + k0 + 2 * t;
    b[0] = mma_reg(tile, at), b[1] = mma_reg(tile, at + 8);
}

/* Two 16 x 8 accumulator blocks (columns 0-7 and 8-15) as one 16 x 16 A fragment: the
 * accumulators' layout is the A operand's, so a product's result feeds the next product from
 * registers. */
inline void mma_a_of(uint *a, const float *lo, const float *hi)
{
    a[0] = mma_pack(lo[0], lo[1]), a[1] = mma_pack(lo[2], lo[3]);
    a[2] = mma_pack(hi[0], hi[1]), a[3] = mma_pack(hi[2], hi[3]);
}

/* c (a 16 x 8 block) += A B over k = 0 .. EV_DK: A the warp's fragments a[EV_DK / 16], B column n
 * of a tile whose rows run along k (every work-item calls it: the emulation has barriers) */
inline void mma_block(float *c, const uint (*a)[4], __local const mma_t *tile, uint pad, uint n, uint t,
                      __local float *scratch, uint lid)
{
    for (uint kk = 0; kk < EV_DK / 16; kk++) {
        uint b[2];
        mma_b(b, tile, pad, n, 16 * kk, t);
        mma(c, a[kk], b, scratch, lid);
    }
}

/* acc[EV_DK / 8] += X Y: X the lane's 16 x 8 accumulator blocks x[0 .. 2 kblocks] as A fragments
 * (two blocks a 16-wide step of k), Y the rows of a tile that run along k, one per output
 * column (every work-item calls it) */
inline void mma_blocks_times(float (*acc)[4], const float (*x)[4], uint kblocks, __local const mma_t *tile,
                             uint pad, uint quad, uint t, __local float *scratch, uint lid)
{
    for (uint kb = 0; kb < kblocks; kb++) {
        uint a[4];
        mma_a_of(a, x[2 * kb], x[2 * kb + 1]);
        for (uint ob = 0; ob < EV_DK / 8; ob++) {
            uint b[2];
            mma_b(b, tile, pad, 8 * ob + quad, 16 * kb, t);
            mma(acc[ob], a, b, scratch, lid);
        }
    }
}

/* x and y become the maximum (sum) of the values of the four lanes of their row, in one fixed
 * order on every lane: with the instruction by butterfly shuffles within the warp, emulated
 * through red (two floats a work-item; every work-item calls it). */
#if MCL_MMA == 1
inline float quad_shuffle(float x, uint lanes)
{
    uint y;
    asm volatile("shfl.sync.bfly.b32 %0, %1, %2, 0x1f, 0xffffffff;" : "=r"(y) : "r"(as_uint(x)), "r"(lanes));
    return as_float(y);
}
#define EV_QUAD(op, x, y, red, lid)                                                            \
    do {                                                                                       \
        x = op(x, quad_shuffle(x, 1)), y = op(y, quad_shuffle(y, 1));                          \
        x = op(x, quad_shuffle(x, 2)), y = op(y, quad_shuffle(y, 2));                          \
    } while (0)
#else
#define EV_QUAD(op, x, y, red, lid)                                                            \
    do {                                                                                       \
        red[2 * (lid)] = x, red[2 * (lid) + 1] = y;                                            \
        barrier(CLK_LOCAL_MEM_FENCE);                                                          \
        __local const float *q_ = red + 2 * ((lid) & ~3u);                                     \
        x = op(op(q_[0], q_[2]), op(q_[4], q_[6])), y = op(op(q_[1], q_[3]), op(q_[5], q_[7])); \
        barrier(CLK_LOCAL_MEM_FENCE);                                                          \
    } while (0)
#endif
#define EV_ADD(a, b) ((a) + (b))

/* The bias of element e of a 16 x 8 score block in log2 units: the mask bias of its key jj of
 * the tile (mask_l) and the pair bias of query rows[e / 2] and key j0 + jj. */
inline float mma_bias(__local const float *mask_l, __global const store_t *pair, ulong pair_base, const uint *rows,
                      uint j0, uint jj, uint e, uint S, uint flags)
{
    return mask_l[jj] + pair_entry(pair, pair_base, rows[e / 2], 1, j0 + jj, 1, 0, S, flags);
}
#endif
