/* bench gating and bench swiglu: the elementwise fused operators, forward and backward, at
 * AF3 pair shapes (M = 384^2 pair entries, c = 128; SwiGLU as in a Transition with expansion
 * 4). Memory-bound: the figure of merit is the fraction of copy bandwidth. Next to megacl's
 * ops, the unfused path: one elementwise operation per kernel with the intermediates stored,
 * as a framework's eager mode runs them (fp32). */
#include "bench.h"

#include "ref/glu_ref.h"
#include "ref/host.h"

#include <math.h>
#include <stdlib.h>

typedef struct glu_state {
    int swiglu;
    mcl_gating_desc gating;
    mcl_swiglu_desc swi;
    size_t n_in, n_out;       /* elements of x (and g, dx, dg) and of y (and dy) */
    float *x, *g, *dy;        /* host inputs, quantized to the dtype; g only for gating */
    cl_mem x_mem, g_mem, dy_mem, y_mem, dx_mem, dg_mem;
    /* the unfused path: its kernels, the saved activation (sigmoid(g) or silu(a)) and the
     * backward's intermediate (dy x or dy b) */
    cl_program eltwise;
    cl_mem act_mem, tmp_mem;
} glu_state;

static bench_view half(const glu_state *s, cl_mem mem, int second)
{
    size_t f = s->swi.features;
    return bench_block(mem, 2 * f, second ? f : 0, f);
}

/* gating: s = sigmoid(g), y = x s; swiglu: s = silu(a), y = s b */
static mcl_status unfused_forward(glu_state *s, mcl_context *ctx)
{
    size_t n = s->n_out;
    bench_view act[] = {s->swiglu ? half(s, s->x_mem, 0) : bench_flat(s->g_mem),
                        bench_flat(s->act_mem)};
    CLI_TRY(bench_eltwise(ctx, s->eltwise, s->swiglu ? "k_silu" : "k_sigmoid", n, act, 2));
    bench_view mul[] = {s->swiglu ? half(s, s->x_mem, 1) : bench_flat(s->x_mem),
                        bench_flat(s->act_mem), bench_flat(s->y_mem)};
    return bench_eltwise(ctx, s->eltwise, "k_mul", n, mul, 3);
}

/* gating: dx = dy s, t = dy x, dg = t s (1 - s); swiglu: db = dy s, t = dy b, da = silu'(a) t */
static mcl_status unfused_backward(glu_state *s, mcl_context *ctx)
{
    size_t n = s->n_out;
    bench_view other = s->swiglu ? half(s, s->x_mem, 1) : bench_flat(s->x_mem);
    bench_view d_other = s->swiglu ? half(s, s->dx_mem, 1) : bench_flat(s->dx_mem);
    bench_view d_act = s->swiglu ? half(s, s->dx_mem, 0) : bench_flat(s->dg_mem);
    bench_view d1[] = {bench_flat(s->dy_mem), bench_flat(s->act_mem), d_other};
    CLI_TRY(bench_eltwise(ctx, s->eltwise, "k_mul", n, d1, 3));
    bench_view d2[] = {bench_flat(s->dy_mem), other, bench_flat(s->tmp_mem)};
    CLI_TRY(bench_eltwise(ctx, s->eltwise, "k_mul", n, d2, 3));
    if (s->swiglu) {
        bench_view d3[] = {bench_flat(s->tmp_mem), half(s, s->x_mem, 0), d_act};
        return bench_eltwise(ctx, s->eltwise, "k_silu_backward", n, d3, 3);
    }
    bench_view d3[] = {bench_flat(s->tmp_mem), bench_flat(s->act_mem), d_act};
    return bench_eltwise(ctx, s->eltwise, "k_sigmoid_backward", n, d3, 3);
}

static mcl_status glu_forward(void *opaque, mcl_context *ctx)
{
    glu_state *s = opaque;
    if (s->eltwise) return unfused_forward(s, ctx);
    if (s->swiglu) {
        mcl_swiglu_fwd_tensors t = {.x = {s->x_mem, 0}, .y = {s->y_mem, 0}};
        return mcl_swiglu_forward(ctx, &s->swi, &t, NULL);
    }
    mcl_gating_fwd_tensors t = {.x = {s->x_mem, 0}, .g = {s->g_mem, 0}, .y = {s->y_mem, 0}};
    return mcl_gating_forward(ctx, &s->gating, &t, NULL);
}

static mcl_status glu_backward(void *opaque, mcl_context *ctx)
{
    glu_state *s = opaque;
    if (s->eltwise) return unfused_backward(s, ctx);
    if (s->swiglu) {
        mcl_swiglu_bwd_tensors t = {.x = {s->x_mem, 0}, .dy = {s->dy_mem, 0}, .dx = {s->dx_mem, 0}};
        return mcl_swiglu_backward(ctx, &s->swi, &t, NULL);
    }
    mcl_gating_bwd_tensors t = {.x = {s->x_mem, 0}, .g = {s->g_mem, 0}, .dy = {s->dy_mem, 0},
                                .dx = {s->dx_mem, 0}, .dg = {s->dg_mem, 0}};
    return mcl_gating_backward(ctx, &s->gating, &t, NULL);
}

static mcl_status glu_verify(void *opaque, mcl_context *ctx, double *fwd_err, double *bwd_err)
{
    glu_state *s = opaque;
    mcl_dtype dt = s->swiglu ? s->swi.dtype : s->gating.dtype;
    double *y = malloc(s->n_out * sizeof *y), *dx = malloc(s->n_in * sizeof *dx);
    double *dg = s->swiglu ? NULL : malloc(s->n_in * sizeof *dg);
    mcl_status status = y && dx && (s->swiglu || dg) ? MCL_OK : MCL_ERR_OUT_OF_MEMORY;
    if (status == MCL_OK) {
        host_poison(ctx, s->y_mem, dt, s->n_out);
        host_poison(ctx, s->dx_mem, dt, s->n_in);
        if (!s->swiglu) host_poison(ctx, s->dg_mem, dt, s->n_in);
        status = glu_forward(s, ctx);
    }
    if (status == MCL_OK) status = glu_backward(s, ctx);
    if (status == MCL_OK) {
        if (s->swiglu) {
            ref_swiglu_forward(s->x, s->swi.rows, s->swi.features, s->swi.silu_half, y);
            ref_swiglu_backward(s->x, s->dy, s->swi.rows, s->swi.features, s->swi.silu_half, dx);
        } else {
            ref_gating_forward(s->x, s->g, s->n_in, y);
            ref_gating_backward(s->x, s->g, s->dy, s->n_in, dx, dg);
        }
        *fwd_err = bench_compare(ctx, s->y_mem, dt, y, s->n_out);
        *bwd_err = bench_compare(ctx, s->dx_mem, dt, dx, s->n_in);
        if (!s->swiglu) *bwd_err = fmax(*bwd_err, bench_compare(ctx, s->dg_mem, dt, dg, s->n_in));
    }
    free(y), free(dx), free(dg);
    return status;
}

static void glu_destroy(void *opaque)
{
    glu_state *s = opaque;
    if (!s) return;
    cl_mem mems[] = {s->x_mem, s->g_mem, s->dy_mem, s->y_mem, s->dx_mem, s->dg_mem, s->act_mem, s->tmp_mem};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i]) clReleaseMemObject(mems[i]);
    if (s->eltwise) clReleaseProgram(s->eltwise);
    free(s->x), free(s->g), free(s->dy);
    free(s);
}

/* Uploads the inputs and makes the outputs; `tensors_moved` counts, in units of y's size, the
 * tensors forward and forward + backward read or write at least once. */
static mcl_status glu_setup(mcl_context *ctx, glu_state *s, mcl_dtype dtype, bench_op *op, double fwd_moved,
                            double fwdbwd_moved)
{
    *op = (bench_op){.state = s, .forward = glu_forward, .backward = glu_backward,
                     .verify = glu_verify, .destroy = glu_destroy};
    host_rng rng = host_rng_seeded(s->n_in * 7 + (size_t)s->swiglu);
    s->x = host_random(&rng, dtype, s->n_in, -4.0f, 4.0f);
    s->dy = host_random(&rng, dtype, s->n_out, -1.0f, 1.0f);
    if (!s->swiglu) s->g = host_random(&rng, dtype, s->n_in, -4.0f, 4.0f);
    if (!s->x || !s->dy || (!s->swiglu && !s->g)) return MCL_ERR_OUT_OF_MEMORY;
    s->x_mem = host_upload(ctx, dtype, s->x, s->n_in);
    s->dy_mem = host_upload(ctx, dtype, s->dy, s->n_out);
    s->y_mem = host_upload(ctx, dtype, NULL, s->n_out);
    s->dx_mem = host_upload(ctx, dtype, NULL, s->n_in);
    if (!s->swiglu) {
        s->g_mem = host_upload(ctx, dtype, s->g, s->n_in);
        s->dg_mem = host_upload(ctx, dtype, NULL, s->n_in);
    }
    if (!s->x_mem || !s->dy_mem || !s->y_mem || !s->dx_mem || (!s->swiglu && (!s->g_mem || !s->dg_mem)))
        return MCL_ERR_OUT_OF_MEMORY;
    double y_bytes = (double)s->n_out * mcl_dtype_size(dtype);
    op->fwd_bytes = fwd_moved * y_bytes;
    op->fwdbwd_bytes = fwdbwd_moved * y_bytes;
    op->fwd_flops = 6.0 * s->n_out;
    op->fwdbwd_flops = op->fwd_flops + 12.0 * s->n_out;
    op->result_bytes = (uint64_t)((double)(s->n_out + (s->swiglu ? 1 : 2) * s->n_in) * mcl_dtype_size(dtype));
    return MCL_OK;
}

static mcl_status gating_create(mcl_context *ctx, const size_t *shape, mcl_dtype dtype, bench_op *op)
{
    glu_state *s = calloc(1, sizeof *s);
    if (!s) return MCL_ERR_OUT_OF_MEMORY;
    s->n_in = s->n_out = shape[0] * shape[1];
    s->gating = (mcl_gating_desc){s->n_in, dtype};
    /* forward: x, g in, y out; backward: x, g, dy in, dx, dg out */
    return glu_setup(ctx, s, dtype, op, 3.0, 8.0);
}

static mcl_status swiglu_create(mcl_context *ctx, const size_t *shape, mcl_dtype dtype, bench_op *op)
{
    glu_state *s = calloc(1, sizeof *s);
    if (!s) return MCL_ERR_OUT_OF_MEMORY;
    s->swiglu = 1;
    s->n_out = shape[0] * shape[1];
    s->n_in = 2 * s->n_out;
    s->swi = (mcl_swiglu_desc){shape[0], shape[1], dtype, MCL_SWIGLU_SILU_FIRST};
    /* forward: x (2 y) in, y out; backward: x, dy in, dx (2 y) out */
    return glu_setup(ctx, s, dtype, op, 3.0, 8.0);
}

/* The unfused path on the same problem and checks, its two intermediates counted as results. */
static mcl_status create_unfused(mcl_context *ctx, const size_t *shape, mcl_dtype dtype, bench_op *op,
                                 mcl_status (*create)(mcl_context *, const size_t *, mcl_dtype, bench_op *))
{
    CLI_TRY(bench_unfused_dtype(dtype));
    CLI_TRY(create(ctx, shape, dtype, op));
    glu_state *s = op->state;
    s->act_mem = host_upload(ctx, MCL_F32, NULL, s->n_out);
    s->tmp_mem = host_upload(ctx, MCL_F32, NULL, s->n_out);
    if (!s->act_mem || !s->tmp_mem) return MCL_ERR_OUT_OF_MEMORY;
    if (!(s->eltwise = bench_eltwise_program(ctx))) return MCL_ERR_BUILD;
    op->result_bytes += (uint64_t)2 * s->n_out * sizeof(float);
    return MCL_OK;
}

static mcl_status gating_create_unfused(mcl_context *ctx, const size_t *shape, mcl_dtype dtype, bench_op *op)
{
    return create_unfused(ctx, shape, dtype, op, gating_create);
}

static mcl_status swiglu_create_unfused(mcl_context *ctx, const size_t *shape, mcl_dtype dtype, bench_op *op)
{
    return create_unfused(ctx, shape, dtype, op, swiglu_create);
}

static const bench_impl gating_impls[] = {{"megacl", NULL, NULL}, {"unfused", NULL, gating_create_unfused}};
static const bench_impl swiglu_impls[] = {{"megacl", NULL, NULL}, {"unfused", NULL, swiglu_create_unfused}};
static const char *const gating_case_names[] = {"pair M=147456 c=128", "single M=768 c=384"};
static const size_t gating_case_shapes[][5] = {{147456, 128}, {768, 384}};
static const char *const swiglu_case_names[] = {"transition M=147456 F=512", "transition M=768 F=1536"};
static const size_t swiglu_case_shapes[][5] = {{147456, 512}, {768, 1536}};

const bench_workload bench_gating = {
    .name = "gating",
    .family = "glu",
    .impls = gating_impls,
    .impl_count = 2,
    .case_names = gating_case_names,
    .case_shapes = gating_case_shapes,
    .case_count = 2,
    .shape_rank = 2,
    .create = gating_create,
    .tolerance = host_tolerance,
};

const bench_workload bench_swiglu = {
    .name = "swiglu",
    .family = "glu",
    .impls = swiglu_impls,
    .impl_count = 2,
    .case_names = swiglu_case_names,
    .case_shapes = swiglu_case_shapes,
    .case_count = 2,
    .shape_rank = 2,
    .create = swiglu_create,
    .tolerance = host_tolerance,
};
