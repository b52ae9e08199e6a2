/* Triangle multiplicative update: the elementwise steps around its GEMMs (lib/ops/trimul/trimul.c).
 * The k-sum is a batched GEMM over channels, T_ch = A_ch B_ch^T, on channel-first operands
 * [h][N][N] that these kernels prepare: for the outgoing update A_ch[i][k] = a[i, k] and
 * B_ch[j][k] = b[j, k]; for the incoming one both are transposed (A_ch[i][k] = a[k, i]), so
 * one GEMM shape serves both. The host runs the core a chunk of channels at a time: there p is
 * the chunk's projections [N*N, 4 chunk] and h the chunk's channels. One work-item per element,
 * channels fastest, so the reads of p are coalesced. */
#define TM_HAS_MASK 1u
#define TM_INCOMING 2u


/* Element e = (i * N + j) * h + ch of the pair's channels-last [N, N, h] layout, and its slot in
 * the channel-first operand layout. */
inline ulong operand_slot(ulong e, uint n, uint h, uint flags)
{
    ulong ch = e % h, ij = e / h, i = ij / n, j = ij % n;
    return ch * n * n + ((flags & TM_INCOMING) ? j * n + i : ij);
}

inline float pair_mask(__global const store_t *mask, ulong ij, uint flags)
{
    return (flags & TM_HAS_MASK) ? load_elem(mask, ij) : 1.0f;
}

/* A and B from p: a = sigmoid(a_gate) * a_proj * mask, likewise b. */
__kernel void trimul_gates(__global const store_t *p, ulong p_off, __global const store_t *mask, ulong mask_off,
                           __global store_t *a, ulong a_off, __global store_t *b, ulong b_off, uint n, uint h,
                           uint width, uint flags)
{
    ulong e = get_global_id(0), count = (ulong)n * n * h;
    if (e >= count) return;
    p += p_off;
    mask += mask_off;
    ulong ij = e / h, ch = e % h, row = ij * width;
    float m = pair_mask(mask, ij, flags);
    ulong slot = operand_slot(e, n, h, flags);
    store_elem(a, a_off + slot, mcl_sigmoid(load_elem(p, row + h + ch)) * load_elem(p, row + ch) * m);
    store_elem(b, b_off + slot, mcl_sigmoid(load_elem(p, row + 3 * h + ch)) * load_elem(p, row + 2 * h + ch) * m);
}

/* The projections' gradient dp from dA and dB (the gradients of the prepared operands); dp may
 * be p itself: each work-item reads its elements of p before it writes them. */
__kernel void trimul_gates_backward(__global const store_t *p, ulong p_off, __global const store_t *mask,
                                    ulong mask_off, __global const store_t *da, ulong da_off,
                                    __global const store_t *db, ulong db_off, __global store_t *dp, ulong dp_off,
                                    uint n, uint h, uint width, uint flags)
{
    ulong e = get_global_id(0), count = (ulong)n * n * h;
    if (e >= count) return;
    p += p_off;
    mask += mask_off;
    dp += dp_off;
    ulong ij = e / h, ch = e % h, row = ij * width, slot = operand_slot(e, n, h, flags);
    float m = pair_mask(mask, ij, flags);
    for (uint side = 0; side < 2; side++) { /* a, then b */
        ulong proj = row + 2 * side * h + ch, gate = proj + h;
        float d = (side ? load_elem(db, db_off + slot) : load_elem(da, da_off + slot)) * m, x = load_elem(p, proj), s = mcl_sigmoid(load_elem(p, gate));
        store_elem(dp, proj, d * s);
        store_elem(dp, gate, d * x * s * (1.0f - s));
    }
}

/* wc [c, 4 chunk]: W_in's columns of channels first .. first + chunk - 1 of each of its four
 * h-wide blocks (a_proj, a_gate, b_proj, b_gate), side by side. */
__kernel void trimul_gather_weights(__global const store_t *w, ulong w_off, __global store_t *wc, ulong wc_off,
                                    uint c, uint h, uint width, uint first, uint chunk)
{
    uint e = get_global_id(0), cols = 4 * chunk;
    if (e >= c * cols) return;
    uint r = e / cols, col = e % cols, block = col / chunk;
    store_elem(wc, wc_off + e, load_elem(w, w_off + (ulong)r * width + block * h + first + col % chunk));
}

/* dst [N*N, h] (channels last) from src [h, N*N] (channel first), or back with to_first. */
__kernel void trimul_permute(__global const store_t *src, ulong src_off, __global store_t *dst, ulong dst_off,
                             ulong pairs, uint h, uint to_first)
{
    ulong e = get_global_id(0); /* channels-last index */
    if (e >= pairs * h) return;
    ulong first = (e % h) * pairs + e / h;
    if (to_first)
        store_elem(dst, dst_off + first, load_elem(src, src_off + e));
    else
        store_elem(dst, dst_off + e, load_elem(src, src_off + first));
}

/* out = o * sigmoid(g) with g [pairs, c]. */
__kernel void trimul_out_gate(__global const store_t *o, ulong o_off, __global const store_t *g, ulong g_off,
                              __global store_t *out, ulong out_off, ulong pairs, uint c)
{
    ulong e = get_global_id(0);
    if (e >= pairs * c) return;
    store_elem(out, out_off + e, load_elem(o, o_off + e) * mcl_sigmoid(load_elem(g, g_off + e)));
}

/* do = dout * sigmoid(g) in place of o, and (with want_dg) dg = dout * o * s (1 - s) in place of
 * g. */
__kernel void trimul_out_gate_backward(__global store_t *o, ulong o_off, __global store_t *g, ulong g_off,
                                       __global const store_t *dout, ulong dout_off, ulong pairs, uint c,
                                       uint want_dg)
{
    ulong e = get_global_id(0);
    if (e >= pairs * c) return;
    float s = mcl_sigmoid(load_elem(g, g_off + e)), d = load_elem(dout, dout_off + e), ov = load_elem(o, o_off + e);
    if (want_dg) store_elem(g, g_off + e, d * ov * s * (1.0f - s));
    store_elem(o, o_off + e, d * s);
}
