/* EvoAttention backward, first step: delta = rowsum(dO * O) and dG. A work-group takes
 * EV_PRE_ROWS consecutive rows (a row is the D elements of one (b, n, s, h); rows are contiguous
 * in memory): it reads them coalesced, forms dG on the way and keeps dO * O in local memory,
 * then a work-item sums one row in order (a work-item per row would read D-strided elements). */
#ifndef EV_PRE_ITEMS
#define EV_PRE_ITEMS 256
#endif
#ifndef EV_PRE_ROWS
#define EV_PRE_ROWS 64
#endif

__kernel __attribute__((reqd_work_group_size(EV_PRE_ITEMS, 1, 1)))
void evoattn_bwd_preprocess(EV_ARGS)
{
    EV_OFFSETS;
    __local float prod[EV_PRE_ROWS][EV_D + 1]; /* padded: a row sum's readers hit distinct banks */
    const uint lid = get_local_id(0);
    const ulong rows = (ulong)B * N * S * H, row0 = (ulong)get_group_id(0) * EV_PRE_ROWS;
    const uint count = (uint)min((ulong)EV_PRE_ROWS, rows - row0);
    for (uint e = lid; e < count * EV_D; e += EV_PRE_ITEMS) {
        ulong i = row0 * EV_D + e;
        float out = load_elem(o, i), dy = load_elem(dout, i);
        if (flags & EV_HAS_GATE) {
            float sg = mcl_sigmoid(load_elem(g, i));
            if (flags & EV_WANT_DG) store_elem(dg, i, dy * out * sg * (1.0f - sg));
            dy *= sg;
        }
        prod[e / EV_D][e % EV_D] = dy * out;
    }
    barrier(CLK_LOCAL_MEM_FENCE);
    for (uint r = lid; r < count; r += EV_PRE_ITEMS) {
        ulong row = row0 + r; /* ((b * N + n) * S + s) * H + h */
        uint h = row % H, s = (row / H) % S;
        ulong bn = row / ((ulong)H * S);
        float sum = 0.0f;
        for (uint d = 0; d < EV_D; d++) sum += prod[r][d];
        delta[(bn * H + h) * S + s] = sum;
    }
}
