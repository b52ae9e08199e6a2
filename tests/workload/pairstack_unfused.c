/* The pair stack on the unfused path a PyTorch-eager user has (see pairstack.h): every sub-block
 * as unfused.h's composite ops run it (CLBlast GEMMs, megacl's LayerNorm and SwiGLU, one
 * elementwise operation a kernel, the attention's logits materialised), fp32 only. The forward
 * keeps what autograd would; the backward's temporaries are shared by the sub-blocks, one of
 * which runs at a time. Residuals and the ending node's swaps of i and j are kernels of their own. */
#include "pairstack_path.h"

#include "unfused.h"

/* What each triangle update keeps: the op's saved tensors, then its intermediates. */
enum { TM_T, TM_MEAN_IN, TM_RSTD_IN, TM_MEAN_OUT, TM_RSTD_OUT, TM_INTERMEDIATES, TM_COUNT = TM_INTERMEDIATES + WL_TM_SAVED };
enum { TR_MEAN, TR_RSTD, TR_H, TR_INTERMEDIATES, TR_COUNT = TR_INTERMEDIATES + WL_TR_SAVED };
/* The temporaries: a sub-block's output before its residual (and dz through it), the ending
 * node's before its swap (and its gradient), then each kind of sub-block's own (sharing their
 * bytes with the other kinds', see ps_buffer). */
enum { TMP_C, TMP_T, TM_TEMPS, AT_TEMPS = TM_TEMPS + WL_TM_TEMPS, TR_TEMPS = AT_TEMPS + WL_AT_TEMPS,
       TEMP_COUNT = TR_TEMPS + WL_TR_TEMPS };
enum {
    TRIMULS = PS_COMMON_BUFFERS,
    ATTENTIONS = TRIMULS + 2 * TM_COUNT,
    ZT = ATTENTIONS + 2 * WL_AT_SAVED, /* the ending node's input, z with i and j swapped */
    TRANSITION = ZT + 1,
    TEMPS = TRANSITION + TR_COUNT,
    BUFFERS = TEMPS + TEMP_COUNT,
};

static size_t pairs(const ps_config *c) { return c->n * c->n; }

/* The sizes `counts` of a composite op's intermediates from `first` on: held, or temporaries of
 * the kind of sub-block (temporary_of, see ps_buffer) */
static void sized(ps_buffer *b, int first, const size_t *counts, size_t count, int temporary_of)
{
    for (size_t i = 0; i < count; i++) b[first + (int)i] = (ps_buffer){counts[i], 0, temporary_of};
}

static void buffers(const ps_config *c, ps_buffer *b)
{
    size_t np = pairs(c), ch = c->channels, saved[WL_AT_SAVED + WL_TM_SAVED], temp[WL_AT_TEMPS + WL_TM_TEMPS];
    for (int i = 0; i < BUFFERS; i++) b[i] = (ps_buffer){np * ch, 0, 0};
    b[PS_DPARAMS].count = ps_params_elements(c);
    for (int sub = PS_TRIMUL_OUT; sub <= PS_TRIMUL_IN; sub++) {
        mcl_trimul_desc d = ps_trimul_desc(c, sub);
        ps_buffer *t = b + TRIMULS + sub * TM_COUNT;
        t[TM_T].count = np * d.hidden;
        for (int s = TM_MEAN_IN; s <= TM_RSTD_OUT; s++) t[s].count = np;
        wl_unfused_trimul_sizes(&d, saved, temp);
        sized(t, TM_INTERMEDIATES, saved, WL_TM_SAVED, 0);
        sized(b, TEMPS + TM_TEMPS, temp, WL_TM_TEMPS, PS_KIND_TRIMUL + 1);
    }
    wl_unfused_attention_sizes(c->n, ch, c->heads, c->head_dim, saved, temp);
    for (int sub = 0; sub < 2; sub++) sized(b, ATTENTIONS + sub * WL_AT_SAVED, saved, WL_AT_SAVED, 0);
    sized(b, TEMPS + AT_TEMPS, temp, WL_AT_TEMPS, PS_KIND_ATTENTION + 1);
    mcl_transition_desc td = ps_transition_desc(c);
    b[TRANSITION + TR_MEAN].count = b[TRANSITION + TR_RSTD].count = np;
    b[TRANSITION + TR_H].count = np * 2 * td.hidden;
    wl_unfused_transition_sizes(&td, saved, temp);
    sized(b, TRANSITION + TR_INTERMEDIATES, saved, WL_TR_SAVED, 0);
    sized(b, TEMPS + TR_TEMPS, temp, WL_TR_TEMPS, PS_KIND_TRANSITION + 1);
}

static mcl_tensor temp(const ps_run *r, int i) { return ps_buffer_at(r, TEMPS + i); }

/* Buffers [first, first + count) into tensors */
static void tensors_from(const ps_run *r, int first, mcl_tensor *out, size_t count)
{
    for (size_t i = 0; i < count; i++) out[i] = ps_buffer_at(r, first + (int)i);
}

/* y = a + b over a pair tensor [N, N, c] (y may be a) */
static mcl_status residual(const ps_run *r, mcl_tensor a, mcl_tensor b, mcl_tensor y)
{
    const wl_view views[] = {wl_flat(a), wl_flat(b), wl_flat(y)};
    return wl_eltwise(r->kernels, "k_add", pairs(&r->config) * r->config.channels, views, 3);
}

/* The passes of sub-blocks that are a composite op of unfused.h (wl_unfused_<op>, made by
 * <op>_of), with the residual: the op's input and output fields x and y, and their gradients' dx
 * and dy. */
#define UNFUSED_PASSES(op, x, y, dy, dx)                                                         \
    static mcl_status op##_forward(ps_run *r, int sub)                                           \
    {                                                                                            \
        wl_unfused_##op u = op##_of(r, sub);                                                     \
        WL_TRY(wl_unfused_##op##_forward(r->kernels, &u));                                       \
        return residual(r, u.fwd.x, u.fwd.y, ps_z_out(r, sub));                                  \
    }                                                                                            \
    static mcl_status op##_backward(ps_run *r, int sub)                                          \
    {                                                                                            \
        wl_unfused_##op u = op##_of(r, sub);                                                     \
        WL_TRY(wl_unfused_##op##_backward(r->kernels, &u));                                      \
        return residual(r, u.bwd.dy, u.bwd.dx, ps_buffer_at(r, PS_DZ));                          \
    }

/* ---- the triangle updates ---------------------------------------------------------------- */

static wl_unfused_trimul trimul_of(const ps_run *r, int sub)
{
    int saved = TRIMULS + sub * TM_COUNT;
    wl_unfused_trimul u = {.desc = ps_trimul_desc(&r->config, sub)};
    mcl_tensor s[TM_INTERMEDIATES];
    tensors_from(r, saved, s, TM_INTERMEDIATES);
    mcl_tensor params[PS_MAX_PARAMS], dparams[PS_MAX_PARAMS];
    for (int k = PS_TM_LN_IN_WEIGHT; k <= PS_TM_W_OUT; k++) params[k] = ps_param_at(r, sub, k), dparams[k] = ps_dparam_at(r, sub, k);
    u.fwd = (mcl_trimul_fwd_tensors){ps_z_in(r, sub), ps_input(r, PS_IN_MASK), params[0], params[1], params[2],
                                     params[3], params[4], params[5], temp(r, TMP_C), s[TM_T],
                                     s[TM_MEAN_IN], s[TM_RSTD_IN], s[TM_MEAN_OUT], s[TM_RSTD_OUT]};
    u.bwd = (mcl_trimul_bwd_tensors){u.fwd.z,  u.fwd.mask,     params[0],   params[1],   params[2],
                                     params[3], params[4],      params[5],   s[TM_T],
                                     s[TM_MEAN_IN], s[TM_RSTD_IN], s[TM_MEAN_OUT], s[TM_RSTD_OUT], ps_dz_in(r, sub),
                                     temp(r, TMP_C), dparams[0], dparams[1], dparams[2], dparams[3],
                                     dparams[4],    dparams[5]};
    tensors_from(r, saved + TM_INTERMEDIATES, u.saved, WL_TM_SAVED);
    tensors_from(r, TEMPS + TM_TEMPS, u.temp, WL_TM_TEMPS);
    return u;
}

UNFUSED_PASSES(trimul, z, out, dout, dz)

/* ---- triangle attention ------------------------------------------------------------------ */

/* The attention of sub-block sub on `z` into `out`, from `dout` back into `dz`. */
static wl_unfused_attention attention_of(const ps_run *r, int sub, mcl_tensor z, mcl_tensor out, mcl_tensor dout)
{
    const ps_config *c = &r->config;
    int mask = sub == PS_ATTN_START ? PS_IN_MASK_BIAS_START : PS_IN_MASK_BIAS_END;
    wl_unfused_attention u = {c->n, c->channels, c->heads, c->head_dim, .z = z, .mask_bias = ps_input(r, mask),
                              .ln_weight = ps_param_at(r, sub, PS_AT_LN_WEIGHT),
                              .ln_bias = ps_param_at(r, sub, PS_AT_LN_BIAS), .w_o = ps_param_at(r, sub, PS_AT_W_O),
                              .out = out, .dout = dout, .dz = dout,
                              .dln_weight = ps_dparam_at(r, sub, PS_AT_LN_WEIGHT),
                              .dln_bias = ps_dparam_at(r, sub, PS_AT_LN_BIAS), .dw_o = ps_dparam_at(r, sub, PS_AT_W_O)};
    for (int k = 0; k < WL_AT_PROJECTIONS; k++) {
        u.w[k] = ps_param_at(r, sub, PS_AT_W_Q + k);
        u.dw[k] = ps_dparam_at(r, sub, PS_AT_W_Q + k);
    }
    tensors_from(r, ATTENTIONS + (sub - PS_ATTN_START) * WL_AT_SAVED, u.saved, WL_AT_SAVED);
    tensors_from(r, TEMPS + AT_TEMPS, u.temp, WL_AT_TEMPS);
    return u;
}

/* [N, N, c] with i and j swapped (its own inverse) */
static mcl_status swap_ij(const ps_run *r, mcl_tensor from, mcl_tensor to)
{
    return wl_unfused_transpose(r->kernels, 1, r->config.n, r->config.n, r->config.channels, from, to);
}

static mcl_status attention_forward(ps_run *r, int sub)
{
    if (sub == PS_ATTN_START) {
        wl_unfused_attention u = attention_of(r, sub, ps_z_in(r, sub), ps_z_out(r, sub), (mcl_tensor){0});
        return wl_unfused_attention_forward(r->kernels, &u);
    }
    mcl_tensor zt = ps_buffer_at(r, ZT), out = temp(r, TMP_T);
    WL_TRY(swap_ij(r, ps_z_in(r, sub), zt));
    wl_unfused_attention u = attention_of(r, sub, zt, out, (mcl_tensor){0});
    WL_TRY(wl_unfused_attention_forward(r->kernels, &u));
    return swap_ij(r, out, ps_z_out(r, sub));
}

static mcl_status attention_backward(ps_run *r, int sub)
{
    if (sub == PS_ATTN_START) {
        wl_unfused_attention u = attention_of(r, sub, ps_z_in(r, sub), ps_z_out(r, sub), ps_dz_in(r, sub));
        return wl_unfused_attention_backward(r->kernels, &u);
    }
    mcl_tensor zt = ps_buffer_at(r, ZT), dzt = temp(r, TMP_T);
    WL_TRY(swap_ij(r, ps_dz_in(r, sub), dzt));
    wl_unfused_attention u = attention_of(r, sub, zt, dzt, dzt);
    WL_TRY(wl_unfused_attention_backward(r->kernels, &u));
    return swap_ij(r, dzt, ps_buffer_at(r, PS_DZ));
}

/* ---- the transition ---------------------------------------------------------------------- */

static wl_unfused_transition transition_of(const ps_run *r, int sub)
{
    mcl_tensor s[TR_INTERMEDIATES];
    tensors_from(r, TRANSITION, s, TR_INTERMEDIATES);
    mcl_tensor lw = ps_param_at(r, sub, PS_TR_LN_WEIGHT), lb = ps_param_at(r, sub, PS_TR_LN_BIAS);
    mcl_tensor w1 = ps_param_at(r, sub, PS_TR_W1), w2 = ps_param_at(r, sub, PS_TR_W2);
    wl_unfused_transition u = {.desc = ps_transition_desc(&r->config)};
    u.fwd = (mcl_transition_fwd_tensors){ps_z_in(r, sub), lw, lb, w1, w2, temp(r, TMP_C), s[TR_MEAN], s[TR_RSTD],
                                         s[TR_H]};
    u.bwd = (mcl_transition_bwd_tensors){u.fwd.x,  lw, lb, w1, w2, s[TR_MEAN], s[TR_RSTD], s[TR_H],
                                         ps_dz_in(r, sub), temp(r, TMP_C),
                                         ps_dparam_at(r, sub, PS_TR_LN_WEIGHT), ps_dparam_at(r, sub, PS_TR_LN_BIAS),
                                         ps_dparam_at(r, sub, PS_TR_W1), ps_dparam_at(r, sub, PS_TR_W2)};
    tensors_from(r, TRANSITION + TR_INTERMEDIATES, u.saved, WL_TR_SAVED);
    tensors_from(r, TEMPS + TR_TEMPS, u.temp, WL_TR_TEMPS);
    return u;
}

UNFUSED_PASSES(transition, x, y, dy, dx)

/* ---- the path ------------------------------------------------------------------------------ */

/* Of megacl's ops the path takes only LayerNorm's backward's workspace (its weight and bias
 * gradients' partials), for the widest LayerNorm; CLBlast's own temporaries are not counted. */
static mcl_status workspace(mcl_context *ctx, const ps_config *c, size_t *bytes)
{
    size_t widest = c->channels > c->trimul_hidden ? c->channels : c->trimul_hidden;
    mcl_layernorm_desc d = {pairs(c), widest, MCL_F32, 1e-5f};
    return wl_op(mcl_layernorm_backward_workspace_size(ctx, &d, bytes));
}

const ps_path ps_unfused = {"unfused", 1, BUFFERS, buffers, workspace,
                            {trimul_forward, attention_forward, transition_forward},
                            {trimul_backward, attention_backward, transition_backward}};
