/* bench layernorm: LayerNorm forward and backward (dx, dweight, dbias) at AF3 pair shapes. */
#include "bench.h"

#include "ref/host.h"
#include "ref/layernorm_ref.h"

#include <math.h>
#include <stdlib.h>

typedef struct ln_state {
    mcl_layernorm_desc desc;
    float *x, *w, *b, *dy; /* host inputs, quantized to the dtype */
    cl_mem x_mem, w_mem, b_mem, y_mem, mean_mem, rstd_mem, dy_mem, dx_mem, dw_mem, db_mem;
} ln_state;

static mcl_status ln_forward(void *opaque, mcl_context *ctx)
{
    ln_state *s = opaque;
    mcl_layernorm_fwd_tensors t = {.x = {s->x_mem, 0}, .weight = {s->w_mem, 0},
                                   .bias = {s->b_mem, 0}, .y = {s->y_mem, 0},
                                   .mean = {s->mean_mem, 0}, .rstd = {s->rstd_mem, 0}};
    return mcl_layernorm_forward(ctx, &s->desc, &t, NULL);
}

static mcl_status ln_backward(void *opaque, mcl_context *ctx)
{
    ln_state *s = opaque;
    mcl_layernorm_bwd_tensors t = {.x = {s->x_mem, 0}, .weight = {s->w_mem, 0},
                                   .mean = {s->mean_mem, 0}, .rstd = {s->rstd_mem, 0},
                                   .dy = {s->dy_mem, 0}, .dx = {s->dx_mem, 0},
                                   .dweight = {s->dw_mem, 0}, .dbias = {s->db_mem, 0}};
    return mcl_layernorm_backward(ctx, &s->desc, &t, NULL);
}

static mcl_status ln_verify(void *opaque, mcl_context *ctx, double *fwd_err, double *bwd_err)
{
    ln_state *s = opaque;
    size_t rows = s->desc.rows, cols = s->desc.cols, n = rows * cols;
    mcl_dtype dt = s->desc.dtype;
    double *y = malloc(n * sizeof *y), *dx = malloc(n * sizeof *dx);
    double *mean = malloc(rows * sizeof *mean), *rstd = malloc(rows * sizeof *rstd);
    double *dw = malloc(cols * sizeof *dw), *db = malloc(cols * sizeof *db);
    mcl_status status = y && dx && mean && rstd && dw && db ? MCL_OK : MCL_ERR_OUT_OF_MEMORY;
    if (status == MCL_OK) {
        host_poison(ctx, s->y_mem, dt, n);
        host_poison(ctx, s->dx_mem, dt, n);
        host_poison(ctx, s->mean_mem, MCL_F32, rows);
        host_poison(ctx, s->rstd_mem, MCL_F32, rows);
        host_poison(ctx, s->dw_mem, dt, cols);
        host_poison(ctx, s->db_mem, dt, cols);
        status = ln_forward(s, ctx);
    }
    if (status == MCL_OK) status = ln_backward(s, ctx);
    if (status == MCL_OK) {
        double eps = s->desc.eps;
        ref_layernorm_forward(s->x, s->w, s->b, rows, cols, eps, y, mean, rstd);
        ref_layernorm_backward(s->x, s->w, s->dy, rows, cols, eps, dx, dw, db);
        *fwd_err = fmax(bench_compare(ctx, s->y_mem, dt, y, n),
                        fmax(bench_compare(ctx, s->mean_mem, MCL_F32, mean, rows),
                             bench_compare(ctx, s->rstd_mem, MCL_F32, rstd, rows)));
        *bwd_err = fmax(bench_compare(ctx, s->dx_mem, dt, dx, n),
                        fmax(bench_compare(ctx, s->dw_mem, dt, dw, cols), bench_compare(ctx, s->db_mem, dt, db, cols)));
    }
    free(y), free(dx), free(mean), free(rstd), free(dw), free(db);
    return status;
}

static void ln_destroy(void *opaque)
{
    ln_state *s = opaque;
    if (!s) return;
    cl_mem mems[] = {s->x_mem, s->w_mem,  s->b_mem,  s->y_mem,  s->mean_mem,
                     s->rstd_mem, s->dy_mem, s->dx_mem, s->dw_mem, s->db_mem};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i]) clReleaseMemObject(mems[i]);
    free(s->x), free(s->w), free(s->b), free(s->dy);
    free(s);
}

static mcl_status ln_create(mcl_context *ctx, const size_t *shape, mcl_dtype dtype, bench_op *op)
{
    ln_state *s = calloc(1, sizeof *s);
    if (!s) return MCL_ERR_OUT_OF_MEMORY;
    size_t rows = shape[0], cols = shape[1], n = rows * cols, es = mcl_dtype_size(dtype);
    s->desc = (mcl_layernorm_desc){rows, cols, dtype, 1e-5f};
    host_rng rng = host_rng_seeded(rows * 31 + cols);
    s->x = host_random(&rng, dtype, n, -2.0f, 3.0f);
    s->w = host_random(&rng, dtype, cols, 0.5f, 1.5f);
    s->b = host_random(&rng, dtype, cols, -0.5f, 0.5f);
    s->dy = host_random(&rng, dtype, n, -1.0f, 1.0f);
    *op = (bench_op){.state = s, .forward = ln_forward, .backward = ln_backward,
                     .verify = ln_verify, .destroy = ln_destroy};
    if (!s->x || !s->w || !s->b || !s->dy) return MCL_ERR_OUT_OF_MEMORY;
    s->x_mem = host_upload(ctx, dtype, s->x, n);
    s->w_mem = host_upload(ctx, dtype, s->w, cols);
    s->b_mem = host_upload(ctx, dtype, s->b, cols);
    s->dy_mem = host_upload(ctx, dtype, s->dy, n);
    s->y_mem = host_upload(ctx, dtype, NULL, n);
    s->dx_mem = host_upload(ctx, dtype, NULL, n);
    s->mean_mem = host_upload(ctx, MCL_F32, NULL, rows);
    s->rstd_mem = host_upload(ctx, MCL_F32, NULL, rows);
    s->dw_mem = host_upload(ctx, dtype, NULL, cols);
    s->db_mem = host_upload(ctx, dtype, NULL, cols);
    if (!s->x_mem || !s->w_mem || !s->b_mem || !s->dy_mem || !s->y_mem || !s->dx_mem ||
        !s->mean_mem || !s->rstd_mem || !s->dw_mem || !s->db_mem)
        return MCL_ERR_OUT_OF_MEMORY;
    double tensor = (double)n * es, stats = 2.0 * rows * sizeof(float), params = 2.0 * cols * es;
    op->fwd_bytes = 2 * tensor + stats + params;          /* x in, y out, stats out */
    op->fwdbwd_bytes = op->fwd_bytes + 3 * tensor + stats + 3 * params; /* x, dy in; dx out */
    op->fwd_flops = 8.0 * n;
    op->fwdbwd_flops = op->fwd_flops + 14.0 * n;
    op->result_bytes = (uint64_t)(2 * tensor + stats + params); /* y, mean, rstd, dx, dw, db */
    return MCL_OK;
}

static double ln_tolerance(mcl_dtype dtype)
{
    /* fp32: rows reduce over up to 4096 columns and dweight over all rows (long reductions) */
    return dtype == MCL_F32 ? 2e-5 : host_tolerance(dtype);
}

static const bench_impl ln_impls[] = {{"megacl", NULL, NULL}, {"naive", "VARIANT=0", NULL}};
static const char *const ln_case_names[] = {"pair M=147456 K=128", "single M=768 K=384",
                                            "wide M=4096 K=4096"};
static const size_t ln_case_shapes[][5] = {{147456, 128}, {768, 384}, {4096, 4096}};

const bench_workload bench_layernorm = {
    .name = "layernorm",
    .family = "layernorm",
    .impls = ln_impls,
    .impl_count = 2,
    .case_names = ln_case_names,
    .case_shapes = ln_case_shapes,
    .case_count = 3,
    .shape_rank = 2,
    .create = ln_create,
    .tolerance = ln_tolerance,
};
