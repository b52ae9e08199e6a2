/* The triangle multiplicative update as a framework's eager mode runs it (see unfused.h): megacl's
 * LayerNorm, CLBlast's GEMMs, batched GEMM and transposes, and one elementwise operation per
 * kernel, every intermediate stored. Outgoing: t_ch = A_ch B_ch^T per channel, with A_ch[i][k] =
 * a[i, k]; incoming: t_ch = A_ch^T B_ch, with A_ch[k][i] = a[k, i] (the same channel-first copy
 * of a, read transposed). */
#include "unfused.h"

static mcl_status eltwise(const wl_problem *p, const char *kernel, size_t n, wl_view a, wl_view b, wl_view y)
{
    const wl_view views[] = {a, b, y};
    return wl_eltwise(p, kernel, n, views, 3);
}

static mcl_status sigmoid_of(const wl_problem *p, size_t n, wl_view x, wl_view y)
{
    const wl_view views[] = {x, y};
    return wl_eltwise(p, "k_sigmoid", n, views, 2);
}

static size_t width_of(const mcl_trimul_desc *d) { return 4 * d->hidden + d->channels; }
static size_t pairs_of(const mcl_trimul_desc *d) { return d->n * d->n; }
static int incoming(const mcl_trimul_desc *d) { return d->direction == MCL_TRIMUL_INCOMING; }

/* Column block `block` (h columns) of p or dp */
static wl_view p_block(const wl_unfused_trimul *u, mcl_tensor m, size_t block)
{
    return wl_block(m, width_of(&u->desc), block * u->desc.hidden, u->desc.hidden);
}

/* x = sigmoid(p[gate]) * p[proj] * mask for one side (proj block `first`, gate the next) */
static mcl_status gate_forward(const wl_problem *p, const wl_unfused_trimul *u, size_t first, int sig, int x)
{
    const mcl_trimul_desc *d = &u->desc;
    size_t n = pairs_of(d) * d->hidden;
    wl_view s = wl_flat(u->saved[sig]), out = wl_flat(u->saved[x]);
    WL_TRY(sigmoid_of(p, n, p_block(u, u->saved[WL_TM_P], first + 1), s));
    WL_TRY(eltwise(p, "k_mul", n, p_block(u, u->saved[WL_TM_P], first), s, out));
    return eltwise(p, "k_mul", n, out, wl_per_row(u->fwd.mask, d->hidden), out);
}

/* dp[proj] = dx mask sig, dp[gate] = sigmoid'(dx mask p[proj]) */
static mcl_status gate_backward(const wl_problem *p, const wl_unfused_trimul *u, size_t first, int sig, int dx)
{
    const mcl_trimul_desc *d = &u->desc;
    size_t n = pairs_of(d) * d->hidden;
    wl_view s = wl_flat(u->saved[sig]), tmp = wl_flat(u->temp[WL_TM_TMP]), tmp2 = wl_flat(u->temp[WL_TM_TMP2]);
    mcl_tensor dp = u->temp[WL_TM_DP];
    WL_TRY(eltwise(p, "k_mul", n, wl_flat(u->temp[dx]), wl_per_row(u->fwd.mask, d->hidden), tmp));
    WL_TRY(eltwise(p, "k_mul", n, tmp, s, p_block(u, dp, first)));
    WL_TRY(eltwise(p, "k_mul", n, tmp, p_block(u, u->saved[WL_TM_P], first), tmp2));
    return eltwise(p, "k_sigmoid_backward", n, tmp2, s, p_block(u, dp, first + 1));
}

mcl_status wl_unfused_trimul_forward(const wl_problem *p, const wl_unfused_trimul *u)
{
    const mcl_trimul_desc *d = &u->desc;
    const mcl_trimul_fwd_tensors *f = &u->fwd;
    size_t n = d->n, np = pairs_of(d), c = d->channels, h = d->hidden, w = width_of(d);
    const mcl_tensor *s = u->saved;
    mcl_layernorm_fwd_tensors l1 = {f->z, f->ln_in_weight, f->ln_in_bias, s[WL_TM_ZN], f->mean_in, f->rstd_in};
    WL_TRY(wl_unfused_ln_linear_forward(p, np, c, w, &l1, f->w_in, s[WL_TM_P]));
    WL_TRY(gate_forward(p, u, 0, WL_TM_SA, WL_TM_A));
    WL_TRY(gate_forward(p, u, 2, WL_TM_SB, WL_TM_B));
    WL_TRY(wl_somatcopy(p, np, h, s[WL_TM_A], s[WL_TM_ACF]));
    WL_TRY(wl_somatcopy(p, np, h, s[WL_TM_B], s[WL_TM_BCF]));
    /* a b^T per channel, or a^T b */
    WL_TRY(wl_sgemm_batched(p, incoming(d), !incoming(d), n, n, n, s[WL_TM_ACF], n, s[WL_TM_BCF], n, s[WL_TM_TCF], n,
                            h));
    WL_TRY(wl_somatcopy(p, h, np, s[WL_TM_TCF], f->t));
    mcl_layernorm_fwd_tensors l2 = {f->t, f->ln_out_weight, f->ln_out_bias, s[WL_TM_TN], f->mean_out, f->rstd_out};
    WL_TRY(wl_unfused_ln_linear_forward(p, np, h, c, &l2, f->w_out, s[WL_TM_O]));
    wl_view sg = wl_flat(s[WL_TM_SG]);
    WL_TRY(sigmoid_of(p, np * c, wl_block(s[WL_TM_P], w, 4 * h, c), sg));
    return eltwise(p, "k_mul", np * c, sg, wl_flat(s[WL_TM_O]), wl_flat(f->out));
}

/* out = sigmoid(g) o back to LN_out(t), its parameters' gradients and dw_out */
static mcl_status output_backward(const wl_problem *p, const wl_unfused_trimul *u)
{
    const mcl_trimul_desc *d = &u->desc;
    const mcl_trimul_bwd_tensors *b = &u->bwd;
    size_t np = pairs_of(d), c = d->channels, h = d->hidden, w = width_of(d);
    const mcl_tensor *s = u->saved, *t = u->temp;
    wl_view dout = wl_flat(b->dout), sg = wl_flat(s[WL_TM_SG]), dsg = wl_flat(t[WL_TM_DSG]);
    WL_TRY(eltwise(p, "k_mul", np * c, dout, sg, wl_flat(t[WL_TM_DO])));
    WL_TRY(eltwise(p, "k_mul", np * c, dout, wl_flat(s[WL_TM_O]), dsg));
    WL_TRY(eltwise(p, "k_sigmoid_backward", np * c, dsg, sg, wl_block(t[WL_TM_DP], w, 4 * h, c)));
    mcl_layernorm_bwd_tensors l2 = {b->t,           b->ln_out_weight,   b->mean_out,        b->rstd_out,
                                    t[WL_TM_DTN],   t[WL_TM_DT],        b->dln_out_weight,  b->dln_out_bias};
    return wl_unfused_ln_linear_backward(p, np, h, c, &l2, s[WL_TM_TN], b->w_out, t[WL_TM_DO], b->dw_out);
}

mcl_status wl_unfused_trimul_backward(const wl_problem *p, const wl_unfused_trimul *u)
{
    const mcl_trimul_desc *d = &u->desc;
    const mcl_trimul_bwd_tensors *b = &u->bwd;
    size_t n = d->n, np = pairs_of(d), c = d->channels, h = d->hidden, w = width_of(d);
    const mcl_tensor *s = u->saved, *t = u->temp;
    WL_TRY(output_backward(p, u));
    WL_TRY(wl_somatcopy(p, np, h, t[WL_TM_DT], t[WL_TM_DTCF]));
    if (incoming(d)) {
        WL_TRY(wl_sgemm_batched(p, 0, 1, n, n, n, s[WL_TM_BCF], n, t[WL_TM_DTCF], n, t[WL_TM_DACF], n, h)); /* b dt^T */
        WL_TRY(wl_sgemm_batched(p, 0, 0, n, n, n, s[WL_TM_ACF], n, t[WL_TM_DTCF], n, t[WL_TM_DBCF], n, h)); /* a dt */
    } else {
        WL_TRY(wl_sgemm_batched(p, 0, 0, n, n, n, t[WL_TM_DTCF], n, s[WL_TM_BCF], n, t[WL_TM_DACF], n, h)); /* dt b */
        WL_TRY(wl_sgemm_batched(p, 1, 0, n, n, n, t[WL_TM_DTCF], n, s[WL_TM_ACF], n, t[WL_TM_DBCF], n, h)); /* dt^T a */
    }
    WL_TRY(wl_somatcopy(p, h, np, t[WL_TM_DACF], t[WL_TM_DA]));
    WL_TRY(wl_somatcopy(p, h, np, t[WL_TM_DBCF], t[WL_TM_DB]));
    WL_TRY(gate_backward(p, u, 0, WL_TM_SA, WL_TM_DA));
    WL_TRY(gate_backward(p, u, 2, WL_TM_SB, WL_TM_DB));
    mcl_layernorm_bwd_tensors l1 = {b->z,          b->ln_in_weight, b->mean_in,        b->rstd_in,
                                    t[WL_TM_DZN],  b->dz,           b->dln_in_weight,  b->dln_in_bias};
    return wl_unfused_ln_linear_backward(p, np, c, w, &l1, s[WL_TM_ZN], b->w_in, t[WL_TM_DP], b->dw_in);
}

void wl_unfused_trimul_sizes(const mcl_trimul_desc *d, size_t saved[WL_TM_SAVED], size_t temp[WL_TM_TEMPS])
{
    size_t np = pairs_of(d), c = d->channels, h = d->hidden;
    for (int i = 0; i < WL_TM_SAVED; i++) saved[i] = np * h; /* most are [np, h] or [h, np] */
    saved[WL_TM_ZN] = saved[WL_TM_O] = saved[WL_TM_SG] = np * c;
    saved[WL_TM_P] = np * width_of(d);
    for (int i = 0; i < WL_TM_TEMPS; i++) temp[i] = np * h;
    temp[WL_TM_DO] = temp[WL_TM_DSG] = temp[WL_TM_DZN] = np * c;
    temp[WL_TM_DP] = np * width_of(d);
}
