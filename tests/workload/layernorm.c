/* The layernorm workload: LayerNorm forward and backward (dx, dweight, dbias) over [rows, cols],
 * the weight and bias optional; at AF3 pair shapes in the benchmark, next to the naive
 * reference kernels (a work-item per row). */
#include "workload.h"

#include "ref/layernorm_ref.h"

enum { X, WEIGHT, BIAS, DY, Y, MEAN, RSTD, DX, DWEIGHT, DBIAS, COUNT };
enum { OPT_WEIGHT = 1, OPT_BIAS = 2 };

static const wl_tensor_decl tensors[COUNT] = {
    [X] = {"x", WL_INPUT, 0, -2.0f, 3.0f},
    [WEIGHT] = {"weight", WL_INPUT, 0, 0.5f, 1.5f},
    [BIAS] = {"bias", WL_INPUT, 0, -0.5f, 0.5f},
    [DY] = {"dy", WL_INPUT, 0, -1.0f, 1.0f},
    [Y] = {"y", WL_FORWARD, 0, 0, 0},
    [MEAN] = {"mean", WL_FORWARD, 1, 0, 0},
    [RSTD] = {"rstd", WL_FORWARD, 1, 0, 0},
    [DX] = {"dx", WL_GRADIENT, 0, 0, 0},
    [DWEIGHT] = {"dweight", WL_GRADIENT, 0, 0, 0},
    [DBIAS] = {"dbias", WL_GRADIENT, 0, 0, 0},
};
static const char *const options[] = {"weight", "bias", NULL};

static void sizes(const wl_case *c, size_t *n)
{
    size_t rows = c->shape[0], cols = c->shape[1];
    n[X] = n[DY] = n[Y] = n[DX] = rows * cols;
    n[WEIGHT] = c->options & OPT_WEIGHT ? cols : 0;
    n[BIAS] = c->options & OPT_BIAS ? cols : 0;
    n[MEAN] = n[RSTD] = rows;
    n[DWEIGHT] = n[DBIAS] = cols;
}

static mcl_layernorm_desc desc_of(const wl_problem *p)
{
    return (mcl_layernorm_desc){p->c.shape[0], p->c.shape[1], p->c.dtype, 1e-5f};
}

static mcl_layernorm_fwd_tensors fwd_tensors(const wl_problem *p)
{
    return (mcl_layernorm_fwd_tensors){wl_at(p, X), wl_at(p, WEIGHT), wl_at(p, BIAS), wl_at(p, Y), wl_at(p, MEAN),
                                       wl_at(p, RSTD)};
}

static mcl_layernorm_bwd_tensors bwd_tensors(const wl_problem *p)
{
    return (mcl_layernorm_bwd_tensors){wl_at(p, X), wl_at(p, WEIGHT), wl_at(p, MEAN), wl_at(p, RSTD), wl_at(p, DY),
                                       wl_at(p, DX), wl_at(p, DWEIGHT), wl_at(p, DBIAS)};
}

WL_OP_PASSES(layernorm)

static mcl_status workspace(wl_problem *p, size_t *fwd, size_t *bwd, int *backward_exact)
{
    mcl_layernorm_desc d = desc_of(p);
    *fwd = 0;
    *backward_exact = 1;
    return mcl_layernorm_backward_workspace_size(p->ctx, &d, bwd);
}

static int reference(wl_problem *p)
{
    const wl_tensor *t = p->t;
    size_t rows = p->c.shape[0], cols = p->c.shape[1];
    ref_layernorm_forward(t[X].values, t[WEIGHT].values, t[BIAS].values, rows, cols, 1e-5, t[Y].ref, t[MEAN].ref,
                          t[RSTD].ref);
    ref_layernorm_backward(t[X].values, t[WEIGHT].values, t[DY].values, rows, cols, 1e-5, t[DX].ref, t[DWEIGHT].ref,
                           t[DBIAS].ref);
    return 0;
}

/* fp32 statistics; the rest reduce over long rows or over every row (long reductions in fp32) */
static double tolerance(const wl_case *c, int tensor)
{
    if (tensor == MEAN || tensor == RSTD) return 1e-5;
    return c->dtype == MCL_F32 ? 2e-5 : host_tolerance(c->dtype);
}


static wl_counts counts(const wl_case *c)
{
    size_t rows = c->shape[0], cols = c->shape[1], n = rows * cols, es = mcl_dtype_size(c->dtype);
    double tensor = (double)n * es, stats = 2.0 * rows * sizeof(float), params = 2.0 * cols * es;
    wl_counts k;
    k.fwd_bytes = 2 * tensor + stats + params;                /* x in, y out, stats out */
    k.fwdbwd_bytes = k.fwd_bytes + 3 * tensor + stats + 3 * params; /* x, dy in; dx out */
    k.fwd_flops = 8.0 * n;
    k.fwdbwd_flops = k.fwd_flops + 14.0 * n;
    return k;
}

static const wl_baseline baselines[] = {{"naive", "VARIANT=0", NULL, NULL, NULL, NULL}};

#define AF3(name, rows, cols) {name, {{rows, cols}, MCL_F32, OPT_WEIGHT | OPT_BIAS, WL_ALL, 0}}
static const wl_named_case cases[] = {
    AF3("pair M=147456 K=128", 147456, 128), AF3("single M=768 K=384", 768, 384), AF3("wide M=4096 K=4096", 4096, 4096),
};
static const wl_named_case cpu_cases[] = {
    AF3("pair M=4096 K=128", 4096, 128), AF3("single M=64 K=384", 64, 384), AF3("wide M=256 K=4096", 256, 4096),
};

const wl_workload wl_layernorm = WL_WORKLOAD("layernorm", "layernorm", "rows,cols", 2, .workspace = workspace,
                                             .tolerance = tolerance);
