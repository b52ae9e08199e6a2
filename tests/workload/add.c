/* The add workload: y = a + b and its backward (da = db = dy) over M x C elements, the pair
 * stack's residual connections. The benchmark runs the pair representation next to the unfused
 * path, a plain kernel of one element a work-item. */
#include "unfused.h"

#include "ref/glu_ref.h"

#include <string.h>

enum { A, B, DY, Y, DA, DB, COUNT };

static const wl_tensor_decl tensors[COUNT] = {
    [A] = {"a", WL_INPUT, 0, -3.0f, 3.0f},
    [B] = {"b", WL_INPUT, 0, -3.0f, 3.0f},
    [DY] = {"dy", WL_INPUT, 0, -1.0f, 1.0f},
    [Y] = {"y", WL_FORWARD, 0, 0, 0},
    [DA] = {"da", WL_GRADIENT, 0, 0, 0},
    [DB] = {"db", WL_GRADIENT, 0, 0, 0},
};
static const char *const options[] = {NULL};

static size_t count_of(const wl_case *c) { return c->shape[0] * c->shape[1]; }

static void sizes(const wl_case *c, size_t *n)
{
    for (int i = 0; i < COUNT; i++) n[i] = count_of(c);
}

static mcl_add_desc desc_of(const wl_problem *p) { return (mcl_add_desc){count_of(&p->c), p->c.dtype}; }

static mcl_add_fwd_tensors fwd_tensors(const wl_problem *p)
{
    return (mcl_add_fwd_tensors){wl_at(p, A), wl_at(p, B), wl_at(p, Y)};
}

static mcl_add_bwd_tensors bwd_tensors(const wl_problem *p)
{
    return (mcl_add_bwd_tensors){wl_at(p, DY), wl_at(p, DA), wl_at(p, DB)};
}

WL_OP_PASSES(add)

/* every element held to its own bound: the sum is one rounding, the gradients are copies */
static int reference(wl_problem *p)
{
    wl_tensor *t = p->t;
    size_t n = t[A].count;
    ref_add_forward(t[A].values, t[B].values, n, t[Y].ref);
    for (int i = DA; i <= DB; i++)
        for (size_t e = 0; e < t[i].count; e++) t[i].ref[e] = t[DY].values[e];
    for (int i = Y; i < COUNT; i++) t[i].check = WL_ELEMENTWISE;
    return 0;
}

static wl_counts counts(const wl_case *c)
{
    double n = (double)count_of(c), tensor = n * mcl_dtype_size(c->dtype);
    wl_counts k;
    k.fwd_bytes = 3 * tensor;                  /* a, b in; y out */
    k.fwdbwd_bytes = k.fwd_bytes + 3 * tensor; /* dy in; da, db out */
    k.fwd_flops = n;
    k.fwdbwd_flops = n;
    return k;
}

/* ---- the unfused path ------------------------------------------------------------------- */

static mcl_status unfused_setup(wl_problem *p) { return wl_unfused_setup(p, NULL, 0); }

static mcl_status unfused_forward(wl_problem *p)
{
    const wl_view views[] = {wl_flat(wl_at(p, A)), wl_flat(wl_at(p, B)), wl_flat(wl_at(p, Y))};
    return wl_eltwise(p, "k_add", count_of(&p->c), views, 3);
}

/* each gradient a copy of dy, as a framework passes it to both inputs */
static mcl_status unfused_backward(wl_problem *p)
{
    for (int i = DA; i <= DB; i++) {
        if (!wl_has(p, i)) continue;
        cl_event event = NULL;
        size_t bytes = count_of(&p->c) * sizeof(float);
        cl_int err = clEnqueueCopyBuffer(mcl_context_queue(p->ctx), p->t[DY].at.mem, p->t[i].at.mem,
                                         p->t[DY].at.offset, p->t[i].at.offset, bytes, 0, NULL, &event);
        if (err != CL_SUCCESS) return wl_fail(MCL_ERR_OPENCL, "copying dy failed (%d)", err);
        mcl_status status = wl_op(mcl_profile_add_named_event(p->ctx, event, "copy dy"));
        clReleaseEvent(event);
        WL_TRY(status);
    }
    return MCL_OK;
}

static const wl_baseline baselines[] = {
    {"unfused", NULL, unfused_setup, wl_unfused_teardown, unfused_forward, unfused_backward},
};

#define AF3(name, m, c) {name, {{m, c}, MCL_F32, 0, WL_ALL, 0}}
static const wl_named_case cases[] = {AF3("pair M=147456 c=128", 147456, 128)};
static const wl_named_case cpu_cases[] = {AF3("pair M=4096 c=128", 4096, 128)};

const wl_workload wl_add = WL_WORKLOAD("add", "glu", "M,C", 2);
