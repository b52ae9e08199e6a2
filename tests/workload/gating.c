/* The gating workload: sigmoid gating y = x * sigmoid(g) and its backward (dx, dg) over M x C
 * elements, AF3's output gates. The benchmark runs its pair and single representations next to
 * the unfused path: sigmoid(g) stored, then one multiply a kernel. */
#include "unfused.h"

#include "ref/glu_ref.h"

enum { X, G, DY, Y, DX, DG, COUNT };
enum { OPT_SATURATE = 1 };

/* g spans sigmoid's bend and well into both tails; x and dy are plain values */
static const wl_tensor_decl tensors[COUNT] = {
    [X] = {"x", WL_INPUT, 0, -3.0f, 3.0f},
    [G] = {"g", WL_INPUT, 0, -6.0f, 6.0f},
    [DY] = {"dy", WL_INPUT, 0, -1.0f, 1.0f},
    [Y] = {"y", WL_FORWARD, 0, 0, 0},
    [DX] = {"dx", WL_GRADIENT, 0, 0, 0},
    [DG] = {"dg", WL_GRADIENT, 0, 0, 0},
};
static const char *const options[] = {"saturate", NULL};

static size_t count_of(const wl_case *c) { return c->shape[0] * c->shape[1]; }

static void sizes(const wl_case *c, size_t *n)
{
    for (int i = 0; i < COUNT; i++) n[i] = count_of(c);
}

/* saturate: every 5th gate in the tails */
static void draw(wl_problem *p, host_rng *rng)
{
    wl_tensor *g = &p->t[G];
    for (size_t i = 0; p->c.options & OPT_SATURATE && i < g->count; i += 5)
        g->values[i] = wl_sigmoid_tail(rng, g->dtype);
}

static mcl_gating_desc desc_of(const wl_problem *p) { return (mcl_gating_desc){count_of(&p->c), p->c.dtype}; }

static mcl_gating_fwd_tensors fwd_tensors(const wl_problem *p)
{
    return (mcl_gating_fwd_tensors){wl_at(p, X), wl_at(p, G), wl_at(p, Y)};
}

static mcl_gating_bwd_tensors bwd_tensors(const wl_problem *p)
{
    return (mcl_gating_bwd_tensors){wl_at(p, X), wl_at(p, G), wl_at(p, DY), wl_at(p, DX), wl_at(p, DG)};
}

WL_OP_PASSES(gating)

/* every element held to its own bound (relative above 1, absolute below), so that an error in a
 * few elements (a vector's remainder, a saturated gate) is not averaged away */
static int reference(wl_problem *p)
{
    wl_tensor *t = p->t;
    size_t n = t[X].count;
    ref_gating_forward(t[X].values, t[G].values, n, t[Y].ref);
    ref_gating_backward(t[X].values, t[G].values, t[DY].values, n, t[DX].ref, t[DG].ref);
    for (int i = Y; i < COUNT; i++) t[i].check = WL_ELEMENTWISE;
    return 0;
}



static wl_counts counts(const wl_case *c)
{
    double n = (double)count_of(c), tensor = n * mcl_dtype_size(c->dtype);
    wl_counts k;
    k.fwd_bytes = 3 * tensor;                  /* x, g in; y out */
    k.fwdbwd_bytes = k.fwd_bytes + 5 * tensor; /* x, g, dy in; dx, dg out */
    k.fwd_flops = 6.0 * n;
    k.fwdbwd_flops = k.fwd_flops + 12.0 * n;
    return k;
}

/* ---- the unfused path ------------------------------------------------------------------- */

enum { SIGMOID, DY_X, SCRATCH }; /* s = sigmoid(g), saved by the forward; dy x */

static mcl_status unfused_setup(wl_problem *p)
{
    size_t n = count_of(&p->c);
    const size_t scratch[SCRATCH] = {n, n};
    return wl_unfused_setup(p, scratch, SCRATCH);
}

static wl_view flat(const wl_problem *p, int tensor) { return wl_flat(wl_at(p, tensor)); }
static wl_view saved(const wl_problem *p, int i) { return wl_flat(wl_scratch(p, i)); }

/* s = sigmoid(g), y = x s */
static mcl_status unfused_forward(wl_problem *p)
{
    size_t n = count_of(&p->c);
    const wl_view sigmoid[] = {flat(p, G), saved(p, SIGMOID)};
    const wl_view product[] = {flat(p, X), saved(p, SIGMOID), flat(p, Y)};
    WL_TRY(wl_eltwise(p, "k_sigmoid", n, sigmoid, 2));
    return wl_eltwise(p, "k_mul", n, product, 3);
}

/* dx = dy s, t = dy x, dg = t s (1 - s): each gradient only where the case asks for it */
static mcl_status unfused_backward(wl_problem *p)
{
    size_t n = count_of(&p->c);
    const wl_view dx[] = {flat(p, DY), saved(p, SIGMOID), flat(p, DX)};
    const wl_view dy_x[] = {flat(p, DY), flat(p, X), saved(p, DY_X)};
    const wl_view dg[] = {saved(p, DY_X), saved(p, SIGMOID), flat(p, DG)};
    if (wl_has(p, DX)) WL_TRY(wl_eltwise(p, "k_mul", n, dx, 3));
    if (!wl_has(p, DG)) return MCL_OK;
    WL_TRY(wl_eltwise(p, "k_mul", n, dy_x, 3));
    return wl_eltwise(p, "k_sigmoid_backward", n, dg, 3);
}

static const wl_baseline baselines[] = {
    {"unfused", NULL, unfused_setup, wl_unfused_teardown, unfused_forward, unfused_backward},
};

#define AF3(name, m, c) {name, {{m, c}, MCL_F32, 0, WL_ALL, 0}}
static const wl_named_case cases[] = {AF3("pair M=147456 c=128", 147456, 128), AF3("single M=768 c=384", 768, 384)};
static const wl_named_case cpu_cases[] = {AF3("pair M=4096 c=128", 4096, 128), AF3("single M=64 c=384", 64, 384)};

const wl_workload wl_gating = WL_WORKLOAD("gating", "glu", "M,C", 2, .draw = draw);
