/* The swiglu workload: y [rows, F] = silu(a) * b for x [rows, 2F] = [a, b] (or [b, a] with
 * silu_second) and its backward dx [rows, 2F]. The benchmark runs it as in AF3's Transition
 * (F = 4c, SiLU on the first half) next to the unfused path: silu(a) stored, then one multiply
 * a kernel. */
#include "unfused.h"

#include "ref/glu_ref.h"

enum { X, DY, Y, DX, COUNT };
enum { OPT_SILU_SECOND = 1, OPT_SATURATE = 2 };

static const wl_tensor_decl tensors[COUNT] = {
    [X] = {"x", WL_INPUT, 0, -4.0f, 4.0f},
    [DY] = {"dy", WL_INPUT, 0, -1.0f, 1.0f},
    [Y] = {"y", WL_FORWARD, 0, 0, 0},
    [DX] = {"dx", WL_GRADIENT, 0, 0, 0},
};
static const char *const options[] = {"silu_second", "saturate", NULL};

static size_t rows_of(const wl_case *c) { return c->shape[0]; }
static size_t features_of(const wl_case *c) { return c->shape[1]; }

static void sizes(const wl_case *c, size_t *n)
{
    n[DY] = n[Y] = rows_of(c) * features_of(c);
    n[X] = n[DX] = 2 * n[Y];
}

static mcl_swiglu_half half_of(const wl_case *c)
{
    return c->options & OPT_SILU_SECOND ? MCL_SWIGLU_SILU_SECOND : MCL_SWIGLU_SILU_FIRST;
}

/* The first column of a row's SiLU half (a) and of its other half (b). */
static size_t silu_column(const wl_case *c) { return half_of(c) == MCL_SWIGLU_SILU_SECOND ? features_of(c) : 0; }
static size_t other_column(const wl_case *c) { return features_of(c) - silu_column(c); }

/* saturate: every 5th SiLU input (counted over the a half alone) in sigmoid's tails */
static void draw(wl_problem *p, host_rng *rng)
{
    size_t f = features_of(&p->c), a = silu_column(&p->c);
    wl_tensor *x = &p->t[X];
    for (size_t i = 0; p->c.options & OPT_SATURATE && i < x->count / 2; i += 5)
        x->values[i / f * 2 * f + a + i % f] = wl_sigmoid_tail(rng, x->dtype);
}

static mcl_swiglu_desc desc_of(const wl_problem *p)
{
    return (mcl_swiglu_desc){rows_of(&p->c), features_of(&p->c), p->c.dtype, half_of(&p->c)};
}

static mcl_swiglu_fwd_tensors fwd_tensors(const wl_problem *p)
{
    return (mcl_swiglu_fwd_tensors){wl_at(p, X), wl_at(p, Y)};
}

static mcl_swiglu_bwd_tensors bwd_tensors(const wl_problem *p)
{
    return (mcl_swiglu_bwd_tensors){wl_at(p, X), wl_at(p, DY), wl_at(p, DX)};
}

WL_OP_PASSES(swiglu)

/* every element held to its own bound (relative above 1, absolute below): an error in one
 * half, one row's remainder or one saturated input is not averaged away */
static int reference(wl_problem *p)
{
    wl_tensor *t = p->t;
    size_t rows = rows_of(&p->c), f = features_of(&p->c);
    ref_swiglu_forward(t[X].values, rows, f, half_of(&p->c), t[Y].ref);
    if (wl_has(p, DX)) ref_swiglu_backward(t[X].values, t[DY].values, rows, f, half_of(&p->c), t[DX].ref);
    t[Y].check = t[DX].check = WL_ELEMENTWISE;
    return 0;
}



/* in units of y's bytes: x and dx are twice y */
static wl_counts counts(const wl_case *c)
{
    double n = (double)rows_of(c) * features_of(c), y = n * mcl_dtype_size(c->dtype);
    wl_counts k;
    k.fwd_bytes = (2 + 1) * y;                      /* x in, y out */
    k.fwdbwd_bytes = k.fwd_bytes + (2 + 1 + 2) * y; /* x, dy in; dx out */
    k.fwd_flops = 6.0 * n;
    k.fwdbwd_flops = k.fwd_flops + 12.0 * n;
    return k;
}

/* ---- the unfused path ------------------------------------------------------------------- */

enum { SILU, DY_B, SCRATCH }; /* silu(a), saved by the forward; dy b */

static mcl_status unfused_setup(wl_problem *p)
{
    size_t n = p->t[Y].count;
    const size_t scratch[SCRATCH] = {n, n};
    return wl_unfused_setup(p, scratch, SCRATCH);
}

/* The a or b columns of x or dx. */
static wl_view a_of(const wl_problem *p, int tensor)
{
    return wl_block(wl_at(p, tensor), 2 * features_of(&p->c), silu_column(&p->c), features_of(&p->c));
}
static wl_view b_of(const wl_problem *p, int tensor)
{
    return wl_block(wl_at(p, tensor), 2 * features_of(&p->c), other_column(&p->c), features_of(&p->c));
}

/* s = silu(a), y = s b */
static mcl_status unfused_forward(wl_problem *p)
{
    size_t n = p->t[Y].count;
    const wl_view silu[] = {a_of(p, X), wl_flat(wl_scratch(p, SILU))};
    const wl_view product[] = {b_of(p, X), wl_flat(wl_scratch(p, SILU)), wl_flat(wl_at(p, Y))};
    WL_TRY(wl_eltwise(p, "k_silu", n, silu, 2));
    return wl_eltwise(p, "k_mul", n, product, 3);
}

/* db = dy s, t = dy b, da = silu'(a) t */
static mcl_status unfused_backward(wl_problem *p)
{
    size_t n = p->t[Y].count;
    const wl_view db[] = {wl_flat(wl_at(p, DY)), wl_flat(wl_scratch(p, SILU)), b_of(p, DX)};
    const wl_view dy_b[] = {wl_flat(wl_at(p, DY)), b_of(p, X), wl_flat(wl_scratch(p, DY_B))};
    const wl_view da[] = {wl_flat(wl_scratch(p, DY_B)), a_of(p, X), a_of(p, DX)};
    WL_TRY(wl_eltwise(p, "k_mul", n, db, 3));
    WL_TRY(wl_eltwise(p, "k_mul", n, dy_b, 3));
    return wl_eltwise(p, "k_silu_backward", n, da, 3);
}

static const wl_baseline baselines[] = {
    {"unfused", NULL, unfused_setup, wl_unfused_teardown, unfused_forward, unfused_backward},
};

#define AF3(name, m, f) {name, {{m, f}, MCL_F32, 0, WL_ALL, 0}}
static const wl_named_case cases[] = {
    AF3("transition M=147456 F=512", 147456, 512),
    AF3("transition M=768 F=1536", 768, 1536),
};
static const wl_named_case cpu_cases[] = {
    AF3("transition M=4096 F=512", 4096, 512),
    AF3("transition M=64 F=1536", 64, 1536),
};

const wl_workload wl_swiglu = WL_WORKLOAD("swiglu", "glu", "rows,F", 2, .draw = draw);
