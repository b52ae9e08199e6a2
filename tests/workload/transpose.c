/* The transpose workload: y [B, C, R, W] from x [B, R, C, W] with i and j swapped, and the
 * backward back. The benchmark runs the pair stack's layout changes: a pair tensor's i and j
 * swapped (around triangle attention's ending node) and a pair-bias projection into its heads,
 * next to the unfused path, a plain copy kernel of one element a work-item. */
#include "unfused.h"

#include "ref/layout_ref.h"

enum { X, DY, Y, DX, COUNT };

static const wl_tensor_decl tensors[COUNT] = {
    [X] = {"x", WL_INPUT, 0, -3.0f, 3.0f},
    [DY] = {"dy", WL_INPUT, 0, -1.0f, 1.0f},
    [Y] = {"y", WL_FORWARD, 0, 0, 0},
    [DX] = {"dx", WL_GRADIENT, 0, 0, 0},
};
static const char *const options[] = {NULL};

static size_t count_of(const wl_case *c) { return c->shape[0] * c->shape[1] * c->shape[2] * c->shape[3]; }

static void sizes(const wl_case *c, size_t *n)
{
    for (int i = 0; i < COUNT; i++) n[i] = count_of(c);
}

static mcl_transpose_desc desc_of(const wl_problem *p)
{
    const size_t *s = p->c.shape;
    return (mcl_transpose_desc){s[0], s[1], s[2], s[3], p->c.dtype};
}

static mcl_transpose_fwd_tensors fwd_tensors(const wl_problem *p)
{
    return (mcl_transpose_fwd_tensors){wl_at(p, X), wl_at(p, Y)};
}

static mcl_transpose_bwd_tensors bwd_tensors(const wl_problem *p)
{
    return (mcl_transpose_bwd_tensors){wl_at(p, DY), wl_at(p, DX)};
}

WL_OP_PASSES(transpose)

/* copies: every element exactly */
static int reference(wl_problem *p)
{
    wl_tensor *t = p->t;
    const size_t *s = p->c.shape;
    ref_transpose(t[X].values, s[0], s[1], s[2], s[3], t[Y].ref);
    ref_transpose(t[DY].values, s[0], s[2], s[1], s[3], t[DX].ref);
    for (int i = Y; i < COUNT; i++) t[i].check = WL_ELEMENTWISE;
    return 0;
}

static double tolerance(const wl_case *c, int tensor)
{
    (void)c, (void)tensor;
    return 0.0;
}

static wl_counts counts(const wl_case *c)
{
    double tensor = (double)count_of(c) * mcl_dtype_size(c->dtype);
    wl_counts k;
    k.fwd_bytes = 2 * tensor;                  /* x in, y out */
    k.fwdbwd_bytes = k.fwd_bytes + 2 * tensor; /* dy in, dx out */
    k.fwd_flops = k.fwdbwd_flops = 0.0;
    return k;
}

/* ---- the unfused path ------------------------------------------------------------------- */

static mcl_status unfused_setup(wl_problem *p) { return wl_unfused_setup(p, NULL, 0); }

static mcl_status unfused_forward(wl_problem *p)
{
    const size_t *s = p->c.shape;
    return wl_unfused_transpose(p, s[0], s[1], s[2], s[3], wl_at(p, X), wl_at(p, Y));
}

static mcl_status unfused_backward(wl_problem *p)
{
    const size_t *s = p->c.shape;
    return wl_unfused_transpose(p, s[0], s[2], s[1], s[3], wl_at(p, DY), wl_at(p, DX));
}

static const wl_baseline baselines[] = {
    {"unfused", NULL, unfused_setup, wl_unfused_teardown, unfused_forward, unfused_backward},
};

#define AF3(name, b, r, c, w) {name, {{b, r, c, w}, MCL_F32, 0, WL_ALL, 0}}
static const wl_named_case cases[] = {
    AF3("swap i,j N=384 c=128", 1, 384, 384, 128),
    AF3("heads N^2=147456 H=4", 1, 147456, 4, 1),
};
static const wl_named_case cpu_cases[] = {
    AF3("swap i,j N=64 c=128", 1, 64, 64, 128),
    AF3("heads N^2=4096 H=4", 1, 4096, 4, 1),
};

const wl_workload wl_transpose = WL_WORKLOAD("transpose", "layout", "B,R,C,W", 4, .tolerance = tolerance);
