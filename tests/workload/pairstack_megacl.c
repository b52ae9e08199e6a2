/* The pair stack on megacl's ops (see pairstack.h). Each sub-block is the library's op for it, or
 * for triangle attention: LayerNorm (LN(z) stored, as the five projections read it), Linear for
 * q, k, v, the gate and the pair bias, Transpose of the pair bias into EvoAttention's [H, N, N],
 * gated EvoAttention (nothing N x N stored), and the output projection with the residual added in
 * its GEMM's epilogue. The backward sums the five projections' dLN(z) in their GEMMs' epilogues
 * (dx_acc) and turns it into dz in place. The ending node swaps i and j of z going in and of its
 * output coming out (Transpose), and of the gradient the other way. The triangle updates and the
 * transition add their residual with Add; so does every backward, onto the running dz. */
#include "pairstack_path.h"

/* What each sub-block's forward keeps for its backward, and the temporaries: every sub-block's
 * (one runs at a time) output of its op before the residual (and dz through it) and the ending
 * node's before its swap (and its gradient); the attentions' pair-bias projection (and its
 * gradient) and gradients. */
enum { TM_T, TM_MEAN_IN, TM_RSTD_IN, TM_MEAN_OUT, TM_RSTD_OUT, TM_COUNT };
enum { AT_XN, AT_MEAN, AT_RSTD, AT_Q, AT_K, AT_V, AT_G, AT_PAIR, AT_O, AT_Y, AT_LSE, AT_COUNT };
enum { TR_MEAN, TR_RSTD, TR_H, TR_COUNT };
enum { TMP_C, TMP_T, BPROJ, DY, DQ, DK, DV, DG, DPAIR, TEMP_COUNT };
enum {
    TRIMULS = PS_COMMON_BUFFERS,             /* the two triangle updates' */
    ATTENTIONS = TRIMULS + 2 * TM_COUNT,     /* the two attentions' */
    ZT = ATTENTIONS + 2 * AT_COUNT,          /* the ending node's input, z with i and j swapped */
    TRANSITION = ZT + 1,
    TEMPS = TRANSITION + TR_COUNT,
    BUFFERS = TEMPS + TEMP_COUNT,
};

/* A library call, its failure's message made the workload layer's (wl_last_error). */
#define OP(call) WL_TRY(wl_op(call))

static size_t pairs(const ps_config *c) { return c->n * c->n; }
static size_t hd(const ps_config *c) { return c->heads * c->head_dim; }

static void buffers(const ps_config *c, ps_buffer *b)
{
    size_t np = pairs(c), ch = c->channels;
    for (int i = 0; i < BUFFERS; i++) b[i] = (ps_buffer){np * ch, 0, 0}; /* most are [N, N, c] */
    b[PS_DPARAMS].count = ps_params_elements(c);
    for (int sub = 0; sub < 2; sub++) {
        ps_buffer *t = b + TRIMULS + sub * TM_COUNT;
        t[TM_T].count = np * c->trimul_hidden;
        for (int s = TM_MEAN_IN; s <= TM_RSTD_OUT; s++) t[s] = (ps_buffer){np, 1, 0};
    }
    for (int sub = 0; sub < 2; sub++) {
        ps_buffer *a = b + ATTENTIONS + sub * AT_COUNT;
        for (int i = AT_Q; i <= AT_Y; i++) a[i].count = np * hd(c);
        a[AT_MEAN] = a[AT_RSTD] = (ps_buffer){np, 1, 0};
        a[AT_PAIR].count = np * c->heads;
        a[AT_LSE] = (ps_buffer){np * c->heads, 1, 0};
    }
    b[TRANSITION + TR_MEAN] = b[TRANSITION + TR_RSTD] = (ps_buffer){np, 1, 0};
    b[TRANSITION + TR_H].count = np * 2 * c->transition_hidden;
    for (int i = DY; i <= DG; i++) b[TEMPS + i].count = np * hd(c);
    b[TEMPS + BPROJ].count = b[TEMPS + DPAIR].count = np * c->heads;
    for (int i = BPROJ; i <= DPAIR; i++) b[TEMPS + i].temporary_of = PS_KIND_ATTENTION + 1;
}

static mcl_tensor trimul_saved(const ps_run *r, int sub, int i) { return ps_buffer_at(r, TRIMULS + sub * TM_COUNT + i); }
static mcl_tensor attention_saved(const ps_run *r, int sub, int i)
{
    return ps_buffer_at(r, ATTENTIONS + (sub - PS_ATTN_START) * AT_COUNT + i);
}
static mcl_tensor transition_saved(const ps_run *r, int i) { return ps_buffer_at(r, TRANSITION + i); }
static mcl_tensor temp(const ps_run *r, int i) { return ps_buffer_at(r, TEMPS + i); }

/* y = a + b over a pair tensor [N, N, c] (y may be a) */
static mcl_status residual(const ps_run *r, mcl_tensor a, mcl_tensor b, mcl_tensor y)
{
    mcl_add_desc d = {pairs(&r->config) * r->config.channels, r->config.dtype};
    mcl_add_fwd_tensors t = {a, b, y};
    return wl_op(mcl_add_forward(r->ctx, &d, &t, NULL));
}

/* ---- the triangle updates ---------------------------------------------------------------- */

#define TRIMUL_PARAMS(r, sub, at)                                                                \
    at(r, sub, PS_TM_LN_IN_WEIGHT), at(r, sub, PS_TM_LN_IN_BIAS), at(r, sub, PS_TM_W_IN),        \
        at(r, sub, PS_TM_LN_OUT_WEIGHT), at(r, sub, PS_TM_LN_OUT_BIAS), at(r, sub, PS_TM_W_OUT)
#define TRIMUL_SAVED(r, sub)                                                                     \
    trimul_saved(r, sub, TM_T), trimul_saved(r, sub, TM_MEAN_IN),                                \
        trimul_saved(r, sub, TM_RSTD_IN), trimul_saved(r, sub, TM_MEAN_OUT), trimul_saved(r, sub, TM_RSTD_OUT)

static mcl_status trimul_forward(ps_run *r, int sub)
{
    mcl_trimul_desc d = ps_trimul_desc(&r->config, sub);
    mcl_trimul_fwd_tensors t = {ps_z_in(r, sub), ps_input(r, PS_IN_MASK), TRIMUL_PARAMS(r, sub, ps_param_at),
                                temp(r, TMP_C), TRIMUL_SAVED(r, sub)};
    OP(mcl_trimul_forward(r->ctx, &d, &t, NULL));
    return residual(r, t.z, t.out, ps_z_out(r, sub));
}

static mcl_status trimul_backward(ps_run *r, int sub)
{
    mcl_trimul_desc d = ps_trimul_desc(&r->config, sub);
    mcl_trimul_bwd_tensors t = {ps_z_in(r, sub), ps_input(r, PS_IN_MASK), TRIMUL_PARAMS(r, sub, ps_param_at),
                                TRIMUL_SAVED(r, sub),   ps_dz_in(r, sub),       temp(r, TMP_C),
                                TRIMUL_PARAMS(r, sub, ps_dparam_at)};
    OP(mcl_trimul_backward(r->ctx, &d, &t, NULL));
    return residual(r, t.dout, t.dz, ps_buffer_at(r, PS_DZ));
}

/* ---- triangle attention ------------------------------------------------------------------ */

/* [N, N, c] with i and j swapped, forward (x -> y) or back (dy -> dx) */
static mcl_status swap_ij(const ps_run *r, int back, mcl_tensor from, mcl_tensor to)
{
    mcl_transpose_desc d = {1, r->config.n, r->config.n, r->config.channels, r->config.dtype};
    if (back) return wl_op(mcl_transpose_backward(r->ctx, &d, &(mcl_transpose_bwd_tensors){from, to}, NULL));
    return wl_op(mcl_transpose_forward(r->ctx, &d, &(mcl_transpose_fwd_tensors){from, to}, NULL));
}

/* The pair-bias projection [N*N, H] into EvoAttention's [H, N*N] (or its gradient back) */
static mcl_transpose_desc heads_desc(const ps_config *c) { return (mcl_transpose_desc){1, pairs(c), c->heads, 1, c->dtype}; }

static mcl_evoattn_desc attention_desc(const ps_config *c)
{
    return (mcl_evoattn_desc){1, c->n, c->n, c->heads, c->head_dim, c->dtype, 0.0f};
}

static mcl_tensor mask_bias(const ps_run *r, int sub)
{
    return ps_input(r, sub == PS_ATTN_START ? PS_IN_MASK_BIAS_START : PS_IN_MASK_BIAS_END);
}

/* The attention's input: z, or for the ending node z with i and j swapped. */
static mcl_tensor attention_input(const ps_run *r, int sub)
{
    return sub == PS_ATTN_START ? ps_z_in(r, sub) : ps_buffer_at(r, ZT);
}

/* The five projections of LN(z): q, k, v, the gate (into the saved tensors) and the pair bias. */
static const int projections[] = {PS_AT_W_Q, PS_AT_W_K, PS_AT_W_V, PS_AT_W_G, PS_AT_W_B};

static mcl_tensor projected(const ps_run *r, int sub, int k)
{
    return k == PS_AT_W_B ? temp(r, BPROJ) : attention_saved(r, sub, AT_Q + k - PS_AT_W_Q);
}

static mcl_tensor projection_gradient(const ps_run *r, int k)
{
    return k == PS_AT_W_B ? temp(r, BPROJ) : temp(r, DQ + k - PS_AT_W_Q);
}

static mcl_linear_desc projection_desc(const ps_config *c, int k)
{
    return (mcl_linear_desc){pairs(c), c->channels, k == PS_AT_W_B ? c->heads : hd(c), c->dtype};
}

/* z (or its swap) -> LN -> the projections -> the pair bias into its heads -> gated EvoAttention */
static mcl_status attention_core_forward(ps_run *r, int sub)
{
    const ps_config *c = &r->config;
    mcl_layernorm_desc ld = {pairs(c), c->channels, c->dtype, 1e-5f};
    mcl_layernorm_fwd_tensors lt = {attention_input(r, sub),         ps_param_at(r, sub, PS_AT_LN_WEIGHT),
                                    ps_param_at(r, sub, PS_AT_LN_BIAS), attention_saved(r, sub, AT_XN),
                                    attention_saved(r, sub, AT_MEAN), attention_saved(r, sub, AT_RSTD)};
    OP(mcl_layernorm_forward(r->ctx, &ld, &lt, NULL));
    for (size_t k = 0; k < WL_COUNT(projections); k++) {
        mcl_linear_desc d = projection_desc(c, projections[k]);
        mcl_linear_fwd_tensors t = {.x = lt.y, .weight = ps_param_at(r, sub, projections[k]),
                                    .y = projected(r, sub, projections[k])};
        OP(mcl_linear_forward(r->ctx, &d, &t, NULL));
    }
    mcl_transpose_desc hdesc = heads_desc(c);
    mcl_transpose_fwd_tensors ht = {temp(r, BPROJ), attention_saved(r, sub, AT_PAIR)};
    OP(mcl_transpose_forward(r->ctx, &hdesc, &ht, NULL));
    mcl_evoattn_desc ed = attention_desc(c);
    mcl_evoattn_fwd_tensors et = {attention_saved(r, sub, AT_Q), attention_saved(r, sub, AT_K),
                                  attention_saved(r, sub, AT_V), mask_bias(r, sub),
                                  attention_saved(r, sub, AT_PAIR), attention_saved(r, sub, AT_G),
                                  attention_saved(r, sub, AT_O), attention_saved(r, sub, AT_Y),
                                  attention_saved(r, sub, AT_LSE)};
    return wl_op(mcl_evoattn_forward(r->ctx, &ed, &et, NULL));
}

/* the output projection onto the residual: out = input + Y W_o */
static mcl_linear_desc output_desc(const ps_config *c) { return (mcl_linear_desc){pairs(c), hd(c), c->channels, c->dtype}; }

static mcl_status attention_forward(ps_run *r, int sub)
{
    int ending = sub == PS_ATTN_END;
    if (ending) WL_TRY(swap_ij(r, 0, ps_z_in(r, sub), ps_buffer_at(r, ZT)));
    WL_TRY(attention_core_forward(r, sub));
    mcl_linear_desc d = output_desc(&r->config);
    mcl_tensor in = attention_input(r, sub), out = ending ? temp(r, TMP_T) : ps_z_out(r, sub);
    mcl_linear_fwd_tensors t = {.x = attention_saved(r, sub, AT_Y), .weight = ps_param_at(r, sub, PS_AT_W_O),
                                .residual = in, .y = out};
    OP(mcl_linear_forward(r->ctx, &d, &t, NULL));
    return ending ? swap_ij(r, 0, out, ps_z_out(r, sub)) : MCL_OK;
}

/* From dY (DY) back through EvoAttention and the pair bias's layout: dq, dk, dv, dgate, and the
 * pair-bias projection's gradient in BPROJ. */
static mcl_status attention_core_backward(ps_run *r, int sub)
{
    const ps_config *c = &r->config;
    mcl_evoattn_desc ed = attention_desc(c);
    mcl_evoattn_bwd_tensors et = {
        attention_saved(r, sub, AT_Q),    attention_saved(r, sub, AT_K),   attention_saved(r, sub, AT_V),
        mask_bias(r, sub),                attention_saved(r, sub, AT_PAIR), attention_saved(r, sub, AT_G),
        attention_saved(r, sub, AT_O),    attention_saved(r, sub, AT_LSE), temp(r, DY),
        temp(r, DQ),                      temp(r, DK),                      temp(r, DV),
        temp(r, DG),                      {NULL, 0},                        temp(r, DPAIR)};
    OP(mcl_evoattn_backward(r->ctx, &ed, &et, NULL));
    mcl_transpose_desc hdesc = heads_desc(c);
    mcl_transpose_bwd_tensors ht = {temp(r, DPAIR), temp(r, BPROJ)};
    return wl_op(mcl_transpose_backward(r->ctx, &hdesc, &ht, NULL));
}

/* dLN(z) into TMP_C, the projections' gradients summed in their GEMMs' epilogues; every dW */
static mcl_status projections_backward(ps_run *r, int sub)
{
    mcl_tensor dxn = temp(r, TMP_C);
    for (size_t k = 0; k < WL_COUNT(projections); k++) {
        int p = projections[k];
        mcl_linear_desc d = projection_desc(&r->config, p);
        mcl_linear_bwd_tensors t = {.x = attention_saved(r, sub, AT_XN), .weight = ps_param_at(r, sub, p),
                                    .dy = projection_gradient(r, p), .dx_acc = k ? dxn : (mcl_tensor){NULL, 0},
                                    .dx = dxn, .dweight = ps_dparam_at(r, sub, p)};
        OP(mcl_linear_backward(r->ctx, &d, &t, NULL));
    }
    return MCL_OK;
}

/* dout: the gradient at the attention's output (the ending node's swapped back); on return it
 * holds the gradient at its input, the residual's and the attention's summed. */
static mcl_status attention_gradient(ps_run *r, int sub, mcl_tensor dout)
{
    const ps_config *c = &r->config;
    mcl_linear_desc od = output_desc(c);
    mcl_linear_bwd_tensors ot = {.x = attention_saved(r, sub, AT_Y), .weight = ps_param_at(r, sub, PS_AT_W_O),
                                 .dy = dout, .dx = temp(r, DY), .dweight = ps_dparam_at(r, sub, PS_AT_W_O)};
    OP(mcl_linear_backward(r->ctx, &od, &ot, NULL));
    WL_TRY(attention_core_backward(r, sub));
    WL_TRY(projections_backward(r, sub));
    mcl_layernorm_desc ld = {pairs(c), c->channels, c->dtype, 1e-5f};
    mcl_tensor dxn = temp(r, TMP_C);
    mcl_layernorm_bwd_tensors lt = {attention_input(r, sub),          ps_param_at(r, sub, PS_AT_LN_WEIGHT),
                                    attention_saved(r, sub, AT_MEAN), attention_saved(r, sub, AT_RSTD),
                                    dxn,                              dxn,
                                    ps_dparam_at(r, sub, PS_AT_LN_WEIGHT), ps_dparam_at(r, sub, PS_AT_LN_BIAS)};
    OP(mcl_layernorm_backward(r->ctx, &ld, &lt, NULL));
    return residual(r, dout, dxn, dout);
}

static mcl_status attention_backward(ps_run *r, int sub)
{
    if (sub == PS_ATTN_START) return attention_gradient(r, sub, ps_dz_in(r, sub));
    mcl_tensor dzt = temp(r, TMP_T), dz = ps_buffer_at(r, PS_DZ);
    WL_TRY(swap_ij(r, 1, ps_dz_in(r, sub), dzt));
    WL_TRY(attention_gradient(r, sub, dzt));
    return swap_ij(r, 1, dzt, dz);
}

/* ---- the transition ---------------------------------------------------------------------- */

#define TRANSITION_PARAMS(r, at)                                                                 \
    at(r, PS_TRANSITION, PS_TR_LN_WEIGHT), at(r, PS_TRANSITION, PS_TR_LN_BIAS), at(r, PS_TRANSITION, PS_TR_W1), \
        at(r, PS_TRANSITION, PS_TR_W2)

static mcl_status transition_forward(ps_run *r, int sub)
{
    mcl_transition_desc d = ps_transition_desc(&r->config);
    mcl_transition_fwd_tensors t = {ps_z_in(r, sub), TRANSITION_PARAMS(r, ps_param_at), temp(r, TMP_C),
                                    transition_saved(r, TR_MEAN), transition_saved(r, TR_RSTD),
                                    transition_saved(r, TR_H)};
    OP(mcl_transition_forward(r->ctx, &d, &t, NULL));
    return residual(r, t.x, t.y, ps_z_out(r, sub));
}

static mcl_status transition_backward(ps_run *r, int sub)
{
    mcl_transition_desc d = ps_transition_desc(&r->config);
    mcl_transition_bwd_tensors t = {ps_z_in(r, sub),      TRANSITION_PARAMS(r, ps_param_at),
                                    transition_saved(r, TR_MEAN), transition_saved(r, TR_RSTD),
                                    transition_saved(r, TR_H),    ps_dz_in(r, sub),
                                    temp(r, TMP_C),               TRANSITION_PARAMS(r, ps_dparam_at)};
    OP(mcl_transition_backward(r->ctx, &d, &t, NULL));
    return residual(r, t.dy, t.dx, ps_buffer_at(r, PS_DZ));
}

/* ---- the workspace its ops report ------------------------------------------------------------ */

static void at_least(size_t *most, size_t bytes)
{
    if (bytes > *most) *most = bytes;
}

/* The size functions read only which gradients are asked for: a placeholder buffer marks each. */
static mcl_status sized_with(mcl_context *ctx, const ps_config *c, cl_mem wanted, size_t *most)
{
    mcl_tensor w = {wanted, 0};
    size_t fwd = 0, bwd = 0;
    for (int sub = PS_TRIMUL_OUT; sub <= PS_TRIMUL_IN; sub++) {
        mcl_trimul_desc td = ps_trimul_desc(c, sub);
        OP(mcl_trimul_workspace_size(ctx, &td, &fwd, &bwd));
        at_least(most, fwd), at_least(most, bwd);
    }
    mcl_transition_desc trd = ps_transition_desc(c);
    mcl_transition_bwd_tensors trt = {.dx = w, .dln_weight = w, .dln_bias = w, .dw1 = w, .dw2 = w};
    OP(mcl_transition_backward_workspace_size(ctx, &trd, &trt, &bwd));
    at_least(most, bwd);
    mcl_evoattn_desc ed = attention_desc(c);
    mcl_evoattn_bwd_tensors et = {.mask = w, .pair = w, .gate = w, .dq = w, .dk = w, .dv = w, .dgate = w, .dpair = w};
    OP(mcl_evoattn_backward_workspace_size(ctx, &ed, &et, &bwd));
    at_least(most, bwd);
    mcl_layernorm_desc ld = {pairs(c), c->channels, c->dtype, 1e-5f};
    OP(mcl_layernorm_backward_workspace_size(ctx, &ld, &bwd));
    at_least(most, bwd);
    const mcl_linear_desc linear[] = {projection_desc(c, PS_AT_W_Q), projection_desc(c, PS_AT_W_B), output_desc(c)};
    for (size_t i = 0; i < WL_COUNT(linear); i++) {
        OP(mcl_linear_workspace_size(ctx, &linear[i], &fwd, &bwd));
        at_least(most, fwd), at_least(most, bwd);
    }
    return MCL_OK;
}

/* The context holds one workspace, grown to the most any op takes. */
static mcl_status workspace(mcl_context *ctx, const ps_config *c, size_t *bytes)
{
    cl_int err;
    cl_mem wanted = clCreateBuffer(mcl_context_cl_context(ctx), CL_MEM_READ_WRITE, 4, NULL, &err);
    if (err != CL_SUCCESS) return wl_fail(MCL_ERR_OUT_OF_MEMORY, "a 4-byte buffer (%d)", err);
    *bytes = 0;
    mcl_status status = sized_with(ctx, c, wanted, bytes);
    clReleaseMemObject(wanted);
    return status;
}

const ps_path ps_megacl = {"megacl", 0, BUFFERS, buffers, workspace,
                           {trimul_forward, attention_forward, transition_forward},
                           {trimul_backward, attention_backward, transition_backward}};
