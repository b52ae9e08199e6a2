/* Triangle attention around the starting node, with its residual, as a framework's eager mode runs
 * it (OpenFold's TriangleAttention in PyTorch): megacl's LayerNorm with LN(z) stored; the q, k, v,
 * gate and pair-bias projections by CLBlast's SGEMM; q scaled; q, k and v copied into the heads'
 * layout; the logits materialised by a batched SGEMM, the mask and pair biases added and the
 * softmax taken by kernels of their own; P V by a batched SGEMM, copied back; the gate and the
 * output projection; the residual added. The backward keeps the probabilities from the forward
 * (as autograd does) and materialises dP and dS once. */
#include "unfused.h"

#include <math.h>

#define WL_SOFTMAX_LANES 32 /* work-items a row of the softmax kernels (LANES below) */

/* The kernels of the materialised attention, over [N (batch of rows), H, S, S] scores. */
const char wl_unfused_attention_source[] =
    "/* s[b][h][i][j] += mask[b][j] + pair[h][i][j] */\n"
    "__kernel void k_attention_bias(__global float *s, ulong s_base, __global const float *mask, ulong mask_base,\n"
    "                               __global const float *pair, ulong pair_base, ulong heads, ulong seq, ulong n)\n"
    "{ ulong e = get_global_id(0); if (e >= n) return;\n"
    "  ulong j = e % seq, i = e / seq % seq, h = e / (seq * seq) % heads, b = e / (seq * seq * heads);\n"
    "  s[s_base + e] += mask[mask_base + b * seq + j] + pair[pair_base + (h * seq + i) * seq + j]; }\n"
    "/* Rows are reduced by 32 work-items each, as a framework's softmax kernels do (a group of 256\n"
    " * holds 8 rows; reads coalesce along the row). Every work-item reaches every barrier. */\n"
    "#define LANES 32\n"
    "inline float lanes_max(__local float *red, uint l, float v)\n"
    "{ red[l] = v; barrier(CLK_LOCAL_MEM_FENCE);\n"
    "  for (uint s = LANES / 2; s > 0; s /= 2) { if (l % LANES < s) red[l] = fmax(red[l], red[l + s]);\n"
    "    barrier(CLK_LOCAL_MEM_FENCE); }\n"
    "  float r = red[l - l % LANES]; barrier(CLK_LOCAL_MEM_FENCE); return r; }\n"
    "inline float lanes_sum(__local float *red, uint l, float v)\n"
    "{ red[l] = v; barrier(CLK_LOCAL_MEM_FENCE);\n"
    "  for (uint s = LANES / 2; s > 0; s /= 2) { if (l % LANES < s) red[l] += red[l + s];\n"
    "    barrier(CLK_LOCAL_MEM_FENCE); }\n"
    "  float r = red[l - l % LANES]; barrier(CLK_LOCAL_MEM_FENCE); return r; }\n"
    "/* each row of `cols` values to its softmax, in place; n = rows x LANES */\n"
    "__kernel __attribute__((reqd_work_group_size(256, 1, 1)))\n"
    "void k_softmax(__global float *x, ulong x_base, ulong cols, ulong n)\n"
    "{ __local float red[256];\n"
    "  ulong g = get_global_id(0); uint l = get_local_id(0), lane = l % LANES; bool live = g < n;\n"
    "  __global float *row = x + x_base + g / LANES * cols;\n"
    "  float m = -INFINITY, sum = 0.0f;\n"
    "  for (ulong j = lane; live && j < cols; j += LANES) m = fmax(m, row[j]);\n"
    "  m = lanes_max(red, l, m);\n"
    "  for (ulong j = lane; live && j < cols; j += LANES) { float v = exp(row[j] - m); row[j] = v; sum += v; }\n"
    "  sum = lanes_sum(red, l, sum);\n"
    "  for (ulong j = lane; live && j < cols; j += LANES) row[j] /= sum; }\n"
    "/* dS = P (dP - sum_j P dP) per row, in place of dP; n = rows x LANES */\n"
    "__kernel __attribute__((reqd_work_group_size(256, 1, 1)))\n"
    "void k_softmax_backward(__global const float *p, ulong p_base, __global float *d, ulong d_base,\n"
    "                        ulong cols, ulong n)\n"
    "{ __local float red[256];\n"
    "  ulong g = get_global_id(0); uint l = get_local_id(0), lane = l % LANES; bool live = g < n;\n"
    "  __global const float *pr = p + p_base + g / LANES * cols; __global float *dr = d + d_base + g / LANES * cols;\n"
    "  float dot = 0.0f;\n"
    "  for (ulong j = lane; live && j < cols; j += LANES) dot += pr[j] * dr[j];\n"
    "  dot = lanes_sum(red, l, dot);\n"
    "  for (ulong j = lane; live && j < cols; j += LANES) dr[j] = pr[j] * (dr[j] - dot); }\n"
    "/* y[e] = sum over t < batches of x[t][e], x [batches, n] */\n"
    "__kernel void k_sum_batches(__global const float *x, ulong x_base, __global float *y, ulong y_base,\n"
    "                            ulong batches, ulong n)\n"
    "{ ulong e = get_global_id(0); if (e >= n) return;\n"
    "  float sum = 0.0f;\n"
    "  for (ulong t = 0; t < batches; t++) sum += x[x_base + t * n + e];\n"
    "  y[y_base + e] = sum; }\n";

/* The sizes the attention runs at. */
typedef struct dims {
    size_t n, pairs, c, heads, d, hd;
} dims;

static dims dims_of(const wl_unfused_attention *u)
{
    return (dims){u->n, u->n * u->n, u->channels, u->heads, u->head_dim, u->heads * u->head_dim};
}

void wl_unfused_attention_sizes(size_t n, size_t channels, size_t heads, size_t head_dim, size_t saved[WL_AT_SAVED],
                                size_t temp[WL_AT_TEMPS])
{
    size_t pairs = n * n, hd = heads * head_dim;
    for (int i = 0; i < WL_AT_SAVED; i++) saved[i] = pairs * hd;
    saved[WL_AT_XN] = pairs * channels;
    saved[WL_AT_MEAN] = saved[WL_AT_RSTD] = pairs;
    saved[WL_AT_PROB] = pairs * heads * n;
    for (int i = 0; i < WL_AT_TEMPS; i++) temp[i] = pairs * hd;
    temp[WL_AT_BPROJ] = temp[WL_AT_PAIR] = pairs * heads;
    temp[WL_AT_OUT_DXN] = temp[WL_AT_DXI] = pairs * channels;
    temp[WL_AT_DS] = pairs * heads * n;
}

static mcl_status eltwise(const wl_problem *p, const char *kernel, size_t n, mcl_tensor a, mcl_tensor b, mcl_tensor y)
{
    const wl_view views[] = {wl_flat(a), wl_flat(b), wl_flat(y)};
    return wl_eltwise(p, kernel, n, views, 3);
}

/* [N, S, H, D] (the projections' rows) to [N, H, S, D] (a head's rows contiguous), or back */
static mcl_status to_heads(const wl_problem *p, dims d, mcl_tensor x, mcl_tensor y)
{
    return wl_unfused_transpose(p, d.n, d.n, d.heads, d.d, x, y);
}

static mcl_status from_heads(const wl_problem *p, dims d, mcl_tensor x, mcl_tensor y)
{
    return wl_unfused_transpose(p, d.n, d.heads, d.n, d.d, x, y);
}

/* The weight of projection k and its width */
static size_t width_of(dims d, int k) { return k == WL_AT_W_B ? d.heads : d.hd; }

/* probabilities = softmax(q k^T + mask + pair) per row, heads and queries */
static mcl_status probabilities(const wl_problem *p, const wl_unfused_attention *u, dims d)
{
    const mcl_tensor *s = u->saved;
    mcl_tensor prob = s[WL_AT_PROB];
    size_t slices = d.n * d.heads;
    WL_TRY(wl_sgemm_batched(p, 0, 1, d.n, d.n, d.d, s[WL_AT_QH], d.d, s[WL_AT_KH], d.d, prob, d.n, slices));
    const wl_kernel_arg bias[] = {wl_arg_tensor(prob), wl_arg_tensor(u->mask_bias), wl_arg_tensor(u->temp[WL_AT_PAIR]),
                                  wl_arg_size(d.heads), wl_arg_size(d.n)};
    WL_TRY(wl_unfused_kernel(p, "k_attention_bias", bias, WL_COUNT(bias), slices * d.n * d.n));
    const wl_kernel_arg softmax[] = {wl_arg_tensor(prob), wl_arg_size(d.n)};
    return wl_unfused_kernel(p, "k_softmax", softmax, WL_COUNT(softmax), slices * d.n * WL_SOFTMAX_LANES);
}

mcl_status wl_unfused_attention_forward(const wl_problem *p, const wl_unfused_attention *u)
{
    dims d = dims_of(u);
    const mcl_tensor *s = u->saved, *t = u->temp;
    mcl_layernorm_desc ld = {d.pairs, d.c, MCL_F32, 1e-5f};
    mcl_layernorm_fwd_tensors lt = {u->z, u->ln_weight, u->ln_bias, s[WL_AT_XN], s[WL_AT_MEAN], s[WL_AT_RSTD]};
    WL_TRY(wl_op(mcl_layernorm_forward(p->ctx, &ld, &lt, NULL)));
    static const int projected[WL_AT_PROJECTIONS] = {WL_AT_Q_DY, WL_AT_K_DO, WL_AT_V_DG, WL_AT_G_DOH, WL_AT_BPROJ};
    for (int k = 0; k < WL_AT_PROJECTIONS; k++)
        WL_TRY(wl_sgemm(p, 0, 0, d.pairs, width_of(d, k), d.c, s[WL_AT_XN], d.c, u->w[k], width_of(d, k),
                        t[projected[k]], width_of(d, k)));
    WL_TRY(wl_unfused_transpose(p, 1, d.pairs, d.heads, 1, t[WL_AT_BPROJ], t[WL_AT_PAIR]));
    WL_TRY(wl_unfused_scale(p, d.pairs * d.hd, 1.0f / sqrtf((float)d.d), t[WL_AT_Q_DY], t[WL_AT_Q_DY]));
    WL_TRY(to_heads(p, d, t[WL_AT_Q_DY], s[WL_AT_QH]));
    WL_TRY(to_heads(p, d, t[WL_AT_K_DO], s[WL_AT_KH]));
    WL_TRY(to_heads(p, d, t[WL_AT_V_DG], s[WL_AT_VH]));
    WL_TRY(probabilities(p, u, d));
    WL_TRY(wl_sgemm_batched(p, 0, 0, d.n, d.d, d.n, s[WL_AT_PROB], d.n, s[WL_AT_VH], d.d, t[WL_AT_OH_DVH], d.d,
                            d.n * d.heads));
    WL_TRY(from_heads(p, d, t[WL_AT_OH_DVH], s[WL_AT_O]));
    const wl_view sigmoid[] = {wl_flat(t[WL_AT_G_DOH]), wl_flat(s[WL_AT_SG])};
    WL_TRY(wl_eltwise(p, "k_sigmoid", d.pairs * d.hd, sigmoid, 2));
    WL_TRY(eltwise(p, "k_mul", d.pairs * d.hd, s[WL_AT_O], s[WL_AT_SG], s[WL_AT_Y]));
    WL_TRY(wl_sgemm(p, 0, 0, d.pairs, d.c, d.hd, s[WL_AT_Y], d.hd, u->w_o, d.c, t[WL_AT_OUT_DXN], d.c));
    return eltwise(p, "k_add", d.pairs * d.c, u->z, t[WL_AT_OUT_DXN], u->out);
}

/* From dout back to dq, dk, dv (heads' layout) and d(pair bias) [pairs, H]; dgate into V_DG */
static mcl_status attention_backward(const wl_problem *p, const wl_unfused_attention *u, dims d)
{
    const mcl_tensor *s = u->saved, *t = u->temp;
    size_t slices = d.n * d.heads, nhd = d.pairs * d.hd;
    WL_TRY(wl_sgemm(p, 0, 1, d.pairs, d.hd, d.c, u->dout, d.c, u->w_o, d.c, t[WL_AT_Q_DY], d.hd));
    WL_TRY(wl_sgemm(p, 1, 0, d.hd, d.c, d.pairs, s[WL_AT_Y], d.hd, u->dout, d.c, u->dw_o, d.c));
    WL_TRY(eltwise(p, "k_mul", nhd, t[WL_AT_Q_DY], s[WL_AT_SG], t[WL_AT_K_DO]));
    WL_TRY(eltwise(p, "k_mul", nhd, t[WL_AT_Q_DY], s[WL_AT_O], t[WL_AT_V_DG]));
    WL_TRY(eltwise(p, "k_sigmoid_backward", nhd, t[WL_AT_V_DG], s[WL_AT_SG], t[WL_AT_V_DG]));
    WL_TRY(to_heads(p, d, t[WL_AT_K_DO], t[WL_AT_G_DOH]));
    mcl_tensor ds = t[WL_AT_DS];
    WL_TRY(wl_sgemm_batched(p, 0, 1, d.n, d.n, d.d, t[WL_AT_G_DOH], d.d, s[WL_AT_VH], d.d, ds, d.n, slices));
    WL_TRY(wl_sgemm_batched(p, 1, 0, d.n, d.d, d.n, s[WL_AT_PROB], d.n, t[WL_AT_G_DOH], d.d, t[WL_AT_OH_DVH], d.d,
                            slices));
    const wl_kernel_arg softmax[] = {wl_arg_tensor(s[WL_AT_PROB]), wl_arg_tensor(ds), wl_arg_size(d.n)};
    WL_TRY(wl_unfused_kernel(p, "k_softmax_backward", softmax, WL_COUNT(softmax), slices * d.n * WL_SOFTMAX_LANES));
    const wl_kernel_arg sum[] = {wl_arg_tensor(ds), wl_arg_tensor(t[WL_AT_PAIR]), wl_arg_size(d.n)};
    WL_TRY(wl_unfused_kernel(p, "k_sum_batches", sum, WL_COUNT(sum), d.heads * d.pairs));
    WL_TRY(wl_unfused_transpose(p, 1, d.heads, d.pairs, 1, t[WL_AT_PAIR], t[WL_AT_BPROJ]));
    WL_TRY(wl_sgemm_batched(p, 0, 0, d.n, d.d, d.n, ds, d.n, s[WL_AT_KH], d.d, t[WL_AT_DQH], d.d, slices));
    WL_TRY(wl_sgemm_batched(p, 1, 0, d.n, d.d, d.n, ds, d.n, s[WL_AT_QH], d.d, t[WL_AT_DKH], d.d, slices));
    WL_TRY(wl_unfused_scale(p, nhd, 1.0f / sqrtf((float)d.d), t[WL_AT_DQH], t[WL_AT_DQH]));
    WL_TRY(from_heads(p, d, t[WL_AT_DQH], t[WL_AT_DQ]));
    WL_TRY(from_heads(p, d, t[WL_AT_DKH], t[WL_AT_DK]));
    return from_heads(p, d, t[WL_AT_OH_DVH], t[WL_AT_DV]);
}

mcl_status wl_unfused_attention_backward(const wl_problem *p, const wl_unfused_attention *u)
{
    dims d = dims_of(u);
    const mcl_tensor *s = u->saved, *t = u->temp;
    WL_TRY(attention_backward(p, u, d));
    /* dLN(z) = the sum over the projections of dX W^T, and each dW = LN(z)^T dX */
    const mcl_tensor dx[WL_AT_PROJECTIONS] = {t[WL_AT_DQ], t[WL_AT_DK], t[WL_AT_DV], t[WL_AT_V_DG], t[WL_AT_BPROJ]};
    mcl_tensor dxn = t[WL_AT_OUT_DXN];
    for (int k = 0; k < WL_AT_PROJECTIONS; k++) {
        size_t w = width_of(d, k);
        WL_TRY(wl_sgemm(p, 1, 0, d.c, w, d.pairs, s[WL_AT_XN], d.c, dx[k], w, u->dw[k], w));
        WL_TRY(wl_sgemm(p, 0, 1, d.pairs, d.c, w, dx[k], w, u->w[k], w, k ? t[WL_AT_DXI] : dxn, d.c));
        if (k) WL_TRY(eltwise(p, "k_add", d.pairs * d.c, dxn, t[WL_AT_DXI], dxn));
    }
    mcl_layernorm_desc ld = {d.pairs, d.c, MCL_F32, 1e-5f};
    mcl_layernorm_bwd_tensors lt = {u->z, u->ln_weight, s[WL_AT_MEAN], s[WL_AT_RSTD], dxn, dxn,
                                    u->dln_weight, u->dln_bias};
    WL_TRY(wl_op(mcl_layernorm_backward(p->ctx, &ld, &lt, NULL)));
    return eltwise(p, "k_add", d.pairs * d.c, u->dout, dxn, u->dz);
}
