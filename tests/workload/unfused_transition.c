/* Transition as a framework's eager mode runs it (see unfused.h): megacl's LayerNorm and SwiGLU
 * and CLBlast's SGEMM as separate kernels, with LN(x), SwiGLU(h), dS, dh and dLN(x) stored. */
#include "unfused.h"

void wl_unfused_transition_sizes(const mcl_transition_desc *d, size_t saved[WL_TR_SAVED], size_t temp[WL_TR_TEMPS])
{
    size_t rows = d->rows, c = d->channels, f = d->hidden;
    saved[WL_TR_XN] = rows * c;
    saved[WL_TR_SW] = temp[WL_TR_DS] = rows * f;
    temp[WL_TR_DH] = rows * 2 * f;
    temp[WL_TR_DXN] = rows * c;
}

mcl_status wl_unfused_transition_forward(const wl_problem *p, const wl_unfused_transition *u)
{
    const mcl_transition_desc *d = &u->desc;
    const mcl_transition_fwd_tensors *t = &u->fwd;
    size_t rows = d->rows, c = d->channels, f = d->hidden;
    mcl_layernorm_fwd_tensors lt = {t->x, t->ln_weight, t->ln_bias, u->saved[WL_TR_XN], t->mean, t->rstd};
    WL_TRY(wl_unfused_ln_linear_forward(p, rows, c, 2 * f, &lt, t->w1, t->h));
    mcl_swiglu_desc sd = {rows, f, MCL_F32, d->silu_half};
    mcl_swiglu_fwd_tensors st = {t->h, u->saved[WL_TR_SW]};
    WL_TRY(wl_op(mcl_swiglu_forward(p->ctx, &sd, &st, NULL)));
    return wl_sgemm(p, 0, 0, rows, c, f, u->saved[WL_TR_SW], f, t->w2, c, t->y, c);
}

mcl_status wl_unfused_transition_backward(const wl_problem *p, const wl_unfused_transition *u)
{
    const mcl_transition_desc *d = &u->desc;
    const mcl_transition_bwd_tensors *t = &u->bwd;
    size_t rows = d->rows, c = d->channels, f = d->hidden;
    const mcl_tensor *tmp = u->temp;
    WL_TRY(wl_sgemm(p, 0, 1, rows, f, c, t->dy, c, t->w2, c, tmp[WL_TR_DS], f));               /* dS = dy W2^T */
    WL_TRY(wl_sgemm(p, 1, 0, f, c, rows, u->saved[WL_TR_SW], f, t->dy, c, t->dw2, c)); /* dW2 = S^T dy */
    mcl_swiglu_desc sd = {rows, f, MCL_F32, d->silu_half};
    mcl_swiglu_bwd_tensors st = {t->h, tmp[WL_TR_DS], tmp[WL_TR_DH]};
    WL_TRY(wl_op(mcl_swiglu_backward(p->ctx, &sd, &st, NULL)));
    mcl_layernorm_bwd_tensors lt = {t->x,          t->ln_weight, t->mean,       t->rstd,
                                    tmp[WL_TR_DXN], t->dx,       t->dln_weight, t->dln_bias};
    return wl_unfused_ln_linear_backward(p, rows, c, 2 * f, &lt, u->saved[WL_TR_XN], t->w1, tmp[WL_TR_DH], t->dw1);
}
