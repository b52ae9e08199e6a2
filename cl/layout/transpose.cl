/* The pair representation's layout changes: y [batch, cols, rows, width] from x [batch, rows,
 * cols, width], y[t, j, i, :] = x[t, i, j, :]. A work-item moves LAYOUT_VEC consecutive values of
 * one output row (the host picks LAYOUT_VEC to divide the width and every offset, so vector
 * accesses are aligned and in bounds); consecutive work-items write consecutive values, and read
 * runs of the width. */
#ifndef LAYOUT_VEC
#define LAYOUT_VEC 4
#endif
#ifndef LAYOUT_WG
#define LAYOUT_WG 256
#endif

#define LOADV(p, i, dst) MCL_CAT(load_vec, LAYOUT_VEC)(p, i, dst)
#define STOREV(p, i, src) MCL_CAT(store_vec, LAYOUT_VEC)(p, i, src)

/* units: batch x cols x rows x width / LAYOUT_VEC */
__kernel __attribute__((reqd_work_group_size(LAYOUT_WG, 1, 1)))
void transpose(__global const store_t *x, ulong x_off, __global store_t *y, ulong y_off, ulong rows, ulong cols,
               ulong width, ulong units)
{
    ulong u = get_global_id(0);
    if (u >= units) return;
    ulong groups = width / LAYOUT_VEC, q = u % groups * LAYOUT_VEC, out_row = u / groups;
    ulong i = out_row % rows, tj = out_row / rows, j = tj % cols, t = tj / cols;
    float v[LAYOUT_VEC];
    LOADV(x + x_off, ((t * rows + i) * cols + j) * width + q, v);
    STOREV(y + y_off, out_row * width + q, v);
}
