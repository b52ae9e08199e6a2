/* The transition workload: AF3's transition block, y [rows, c] = SwiGLU(LN(x) W1) W2 with W1
 * [c, 2F] and W2 [F, c], forward and backward (dx, dln_weight, dln_bias, dw1, dw2); the
 * LayerNorm's weight and bias optional, SiLU on either half, and the backward's rows per chunk
 * the case's arg (0: the op's choice). The benchmark runs AF3's pair and single shapes (F = 4c,
 * SiLU on the first half) next to the unfused path: megacl's LayerNorm and SwiGLU and CLBlast's
 * SGEMM as separate kernels with LN(x), SwiGLU(h), dS, dh and dLN(x) stored. */
#include "unfused.h"

#include "ref/layernorm_ref.h"
#include "ref/transition_ref.h"

#include <math.h>
#include <stdlib.h>

enum { X, LN_WEIGHT, LN_BIAS, W1, W2, DY, Y, MEAN, RSTD, H, DX, DLN_WEIGHT, DLN_BIAS, DW1, DW2, COUNT };
enum { OPT_SILU_SECOND = 1, OPT_LN_WEIGHT = 2, OPT_LN_BIAS = 4 };

static const wl_tensor_decl tensors[COUNT] = {
    [X] = {"x", WL_INPUT, 0, -2.0f, 3.0f},
    [LN_WEIGHT] = {"ln_weight", WL_INPUT, 0, 0.5f, 1.5f},
    [LN_BIAS] = {"ln_bias", WL_INPUT, 0, -0.5f, 0.5f},
    [W1] = {"w1", WL_INPUT, 0, 0, 0}, /* drawn by `draw`: the range depends on the case */
    [W2] = {"w2", WL_INPUT, 0, 0, 0},
    [DY] = {"dy", WL_INPUT, 0, -1.0f, 1.0f},
    [Y] = {"y", WL_FORWARD, 0, 0, 0},
    [MEAN] = {"mean", WL_FORWARD, 1, 0, 0},
    [RSTD] = {"rstd", WL_FORWARD, 1, 0, 0},
    [H] = {"h", WL_FORWARD, 0, 0, 0},
    [DX] = {"dx", WL_GRADIENT, 0, 0, 0},
    [DLN_WEIGHT] = {"dln_weight", WL_GRADIENT, 0, 0, 0},
    [DLN_BIAS] = {"dln_bias", WL_GRADIENT, 0, 0, 0},
    [DW1] = {"dw1", WL_GRADIENT, 0, 0, 0},
    [DW2] = {"dw2", WL_GRADIENT, 0, 0, 0},
};
static const char *const options[] = {"silu_second", "ln_weight", "ln_bias", NULL};

static void sizes(const wl_case *c, size_t *n)
{
    size_t rows = c->shape[0], ch = c->shape[1], f = c->shape[2];
    n[X] = n[DY] = n[Y] = n[DX] = rows * ch;
    n[LN_WEIGHT] = c->options & OPT_LN_WEIGHT ? ch : 0;
    n[LN_BIAS] = c->options & OPT_LN_BIAS ? ch : 0;
    n[W1] = n[DW1] = ch * 2 * f;
    n[W2] = n[DW2] = f * ch;
    n[MEAN] = n[RSTD] = rows;
    n[H] = rows * 2 * f;
    n[DLN_WEIGHT] = n[DLN_BIAS] = ch;
}

/* The weights uniform in +-2 / sqrt(fan-in), so that h and y stay of the size of x whatever
 * c and F. */
static void draw(wl_problem *p, host_rng *rng)
{
    const size_t fan_in[2] = {p->c.shape[1], p->c.shape[2]};
    for (int i = W1; i <= W2; i++) {
        wl_tensor *t = &p->t[i];
        float range = 2.0f / sqrtf((float)fan_in[i - W1]);
        host_fill_uniform(rng, t->values, t->count, -range, range);
        host_quantize(t->dtype, t->values, t->count);
    }
}

static mcl_swiglu_half half_of(const wl_case *c)
{
    return c->options & OPT_SILU_SECOND ? MCL_SWIGLU_SILU_SECOND : MCL_SWIGLU_SILU_FIRST;
}

static mcl_transition_desc desc_of(const wl_problem *p)
{
    return (mcl_transition_desc){p->c.shape[0], p->c.shape[1], p->c.shape[2], p->c.dtype, 1e-5f,
                                 half_of(&p->c), (size_t)p->c.arg};
}

static mcl_transition_bwd_tensors bwd_tensors(const wl_problem *p)
{
    return (mcl_transition_bwd_tensors){wl_at(p, X),   wl_at(p, LN_WEIGHT), wl_at(p, LN_BIAS),    wl_at(p, W1),
                                        wl_at(p, W2),  wl_at(p, MEAN),      wl_at(p, RSTD),       wl_at(p, H),
                                        wl_at(p, DY),  wl_at(p, DX),        wl_at(p, DLN_WEIGHT), wl_at(p, DLN_BIAS),
                                        wl_at(p, DW1), wl_at(p, DW2)};
}

static mcl_transition_fwd_tensors fwd_tensors(const wl_problem *p)
{
    return (mcl_transition_fwd_tensors){wl_at(p, X), wl_at(p, LN_WEIGHT), wl_at(p, LN_BIAS), wl_at(p, W1),
                                        wl_at(p, W2), wl_at(p, Y), wl_at(p, MEAN), wl_at(p, RSTD), wl_at(p, H)};
}

WL_OP_PASSES(transition)
/* The forward has no workspace; the backward takes exactly what its size function reports. */
WL_SIZED_BACKWARD(transition)

/* ---- reference and tolerances ----------------------------------------------------------- */

/* The reference problem of rows [first, first + count): y and the backward continue from the
 * h the device saved, as the op does. */
static ref_transition_problem ref_rows(const wl_problem *p, size_t first, size_t count)
{
    const wl_tensor *t = p->t;
    size_t c = p->c.shape[1], f = p->c.shape[2];
    return (ref_transition_problem){count, c, f, 1e-5, half_of(&p->c), t[X].values + first * c, t[W1].values,
                                    t[W2].values, t[LN_WEIGHT].values, t[LN_BIAS].values,
                                    t[H].values + first * 2 * f, t[DY].values + first * c};
}

static double rms(const double *v, size_t n)
{
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) ss += v[i] * v[i];
    return sqrt(ss / (double)n);
}

/* The elements an output's floor is shared by: a row of y, dx or h; the whole of mean and
 * rstd; each element alone of the sums over rows (the parameters' gradients). */
static size_t group_of(const wl_problem *p, int i)
{
    switch (i) {
    case Y:
    case DX: return p->c.shape[1];
    case H: return 2 * p->c.shape[2];
    case MEAN:
    case RSTD: return p->t[i].count;
    }
    return 1;
}

/* Element by element, with the floor of each element the size of its errors: the largest of
 * the rms of ref over the whole tensor, and of ref and of the scale t->floor holds on entry
 * (ref_transition_error_scale: the size of the rounding errors of what it is built from; NULL:
 * none) over its group of `cols`. An element whose value cancels is held to the error its
 * terms' rounding leaves, never to a relative one. */
static int set_floors(wl_tensor *t, size_t cols)
{
    int scaled = t->floor != NULL;
    if (!scaled && !(t->floor = malloc(t->count * sizeof *t->floor))) return -1;
    double whole = rms(t->ref, t->count);
    for (size_t g = 0; g < t->count; g += cols) {
        double floor = fmax(whole, fmax(rms(t->ref + g, cols), scaled ? rms(t->floor + g, cols) : 0.0));
        for (size_t i = g; i < g + cols; i++) t->floor[i] = floor;
    }
    t->check = WL_ELEMENTWISE;
    return 0;
}

static int reference(wl_problem *p)
{
    wl_tensor *t = p->t;
    ref_transition_problem rp = ref_rows(p, 0, p->c.shape[0]);
    ref_transition_forward(&rp, t[Y].ref, t[MEAN].ref, t[RSTD].ref, t[H].ref);
    ref_transition_backward(&rp, t[DX].ref, t[DLN_WEIGHT].ref, t[DLN_BIAS].ref, t[DW1].ref, t[DW2].ref);
    for (int i = DX; i < COUNT; i++)
        if (wl_has(p, i) && !(t[i].floor = malloc(t[i].count * sizeof(double)))) return -1;
    ref_transition_error_scale(&rp, t[DX].floor, t[DLN_WEIGHT].floor, t[DLN_BIAS].floor, t[DW1].floor, t[DW2].floor);
    for (int i = Y; i < COUNT; i++)
        if (wl_has(p, i) && set_floors(&t[i], group_of(p, i)) != 0) return -1;
    return 0;
}

/* The storage dtype's (fp32's for mean and rstd): each output is its own rounding and fp32
 * sums away from the reference; the roundings of dh and dLN(x) are in the floors. */
static double tolerance(const wl_case *c, int tensor)
{
    return host_tolerance(tensor == MEAN || tensor == RSTD ? MCL_F32 : c->dtype);
}

static int full_reference(const wl_case *c) { return (double)c->shape[0] * c->shape[1] * c->shape[2] <= 1 << 24; }

/* ---- the benchmark's check of large problems -------------------------------------------- */

static double sigmoid(double v) { return 1.0 / (1.0 + exp(-v)); }

/* Where hidden unit i's SiLU input a and its linear input b lie in a row of h. */
static size_t silu_at(const wl_case *c, size_t i) { return c->options & OPT_SILU_SECOND ? c->shape[2] + i : i; }
static size_t linear_at(const wl_case *c, size_t i) { return c->options & OPT_SILU_SECOND ? i : c->shape[2] + i; }

/* SwiGLU(h)[row, i] of the saved h */
static double swiglu_at(const wl_problem *p, size_t row, size_t i)
{
    const float *h = p->t[H].values + row * 2 * p->c.shape[2];
    double a = h[silu_at(&p->c, i)];
    return a * sigmoid(a) * h[linear_at(&p->c, i)];
}

/* dh[row, j] from the saved h: SwiGLU's backward of dS[row, i] = (dy W2^T)[row, i], i j's unit */
static double dh_at(const wl_problem *p, size_t row, size_t j)
{
    size_t c = p->c.shape[1], f = p->c.shape[2], i = j % f;
    const float *h = p->t[H].values + row * 2 * f, *dy = p->t[DY].values + row * c, *w2 = p->t[W2].values + i * c;
    double ds = 0.0;
    for (size_t n = 0; n < c; n++) ds += (double)dy[n] * w2[n];
    double a = h[silu_at(&p->c, i)], b = h[linear_at(&p->c, i)], s = sigmoid(a);
    return j == silu_at(&p->c, i) ? ds * b * s * (1.0 + a * (1.0 - s)) : ds * a * s;
}

static void add_all(wl_err *e, const float *out, const double *ref, size_t n)
{
    for (size_t i = 0; i < n; i++) wl_err_add(e, out[i], ref[i]);
}

/* y, h and dx of one row against the reference of that row alone (the LayerNorm's backward is
 * row by row); buf holds 2c + 2F values. */
static void check_row(const wl_problem *p, size_t row, double *buf, wl_err *err)
{
    size_t c = p->c.shape[1], f = p->c.shape[2];
    double *y = buf, *h = y + c, *dx = h + 2 * f;
    ref_transition_problem rp = ref_rows(p, row, 1);
    ref_transition_forward(&rp, y, NULL, NULL, h);
    add_all(&err[Y], p->t[Y].values + row * c, y, c);
    add_all(&err[H], p->t[H].values + row * 2 * f, h, 2 * f);
    if (!wl_has(p, DX)) return;
    ref_transition_backward(&rp, dx, NULL, NULL, NULL, NULL);
    add_all(&err[DX], p->t[DX].values + row * c, dx, c);
}

/* Row r's terms of four columns of dw1 (LN(x)^T dh) and four rows of dw2 (SwiGLU(h)^T dy). */
static void add_weight_terms(const wl_problem *p, size_t row, const double *xn, double *dw1, double *dw2)
{
    size_t c = p->c.shape[1], f = p->c.shape[2];
    for (size_t j = 0; j < 2 * f && wl_has(p, DW1); j += (2 * f + 3) / 4) {
        double d = dh_at(p, row, j);
        for (size_t k = 0; k < c; k++) dw1[k * 2 * f + j] += xn[k] * d;
    }
    for (size_t i = 0; i < f && wl_has(p, DW2); i += (f + 3) / 4) {
        double s = swiglu_at(p, row, i);
        for (size_t n = 0; n < c; n++) dw2[i * c + n] += s * p->t[DY].values[row * c + n];
    }
}

/* Those columns of dw1 and rows of dw2, each a sum over every row. */
static void check_weights(const wl_problem *p, const double *dw1, const double *dw2, wl_err *err)
{
    size_t c = p->c.shape[1], f = p->c.shape[2];
    for (size_t k = 0; k < c && wl_has(p, DW1); k++)
        for (size_t j = 0; j < 2 * f; j += (2 * f + 3) / 4)
            wl_err_add(&err[DW1], p->t[DW1].values[k * 2 * f + j], dw1[k * 2 * f + j]);
    for (size_t i = 0; i < f && wl_has(p, DW2); i += (f + 3) / 4)
        add_all(&err[DW2], p->t[DW2].values + i * c, dw2 + i * c, c);
}

/* From the saved h, as the reference: mean and rstd of every row; y, h and dx of 64 rows spread
 * over all of them; four columns of dw1 and four rows of dw2, each a sum over every row.
 * dln_weight and dln_bias, which need dLN(x) of every row, are left to the tests. */
static int sample(wl_problem *p, double *errors)
{
    size_t rows = p->c.shape[0], c = p->c.shape[1], f = p->c.shape[2];
    const wl_tensor *t = p->t;
    double *xn = malloc(c * sizeof *xn), *buf = malloc((2 * c + 2 * f) * sizeof *buf);
    double *dw1 = calloc(c * 2 * f, sizeof *dw1), *dw2 = calloc(f * c, sizeof *dw2);
    int ok = xn && buf && dw1 && dw2;
    wl_err err[COUNT] = {{0}};
    for (size_t r = 0; r < rows && ok; r++) {
        double mean, rstd;
        ref_layernorm_forward(t[X].values + r * c, t[LN_WEIGHT].values, t[LN_BIAS].values, 1, c, 1e-5, xn, &mean,
                              &rstd);
        wl_err_add(&err[MEAN], t[MEAN].values[r], mean);
        wl_err_add(&err[RSTD], t[RSTD].values[r], rstd);
        add_weight_terms(p, r, xn, dw1, dw2);
        if (r % ((rows + 63) / 64) == 0) check_row(p, r, buf, err);
    }
    if (ok) check_weights(p, dw1, dw2, err);
    for (int i = 0; i < COUNT; i++)
        errors[i] = ok && wl_has(p, i) && !wl_is_input(p, i) && i != DLN_WEIGHT && i != DLN_BIAS
                        ? wl_err_value(&err[i])
                        : -1.0;
    free(xn), free(buf), free(dw1), free(dw2);
    return ok ? 0 : -1;
}

static wl_counts counts(const wl_case *c)
{
    size_t rows = c->shape[0], ch = c->shape[1], f = c->shape[2], es = mcl_dtype_size(c->dtype);
    double xb = (double)rows * ch * es, hb = 2.0 * rows * f * es, wb = 3.0 * ch * f * es, stats = 8.0 * rows;
    wl_counts k;
    k.fwd_bytes = xb + wb + hb + xb + stats;              /* x, W in; h, y, stats out */
    k.fwdbwd_bytes = k.fwd_bytes + 3 * xb + hb + 2 * wb; /* x, h, dy, W in; dx, dW out */
    k.fwd_flops = 6.0 * rows * ch * f + 8.0 * rows * ch;
    k.fwdbwd_flops = 3.0 * k.fwd_flops;
    return k;
}

/* ---- the unfused path ------------------------------------------------------------------- */

/* The op's tensors, then the intermediates: the saved ones first, then the backward's. */
static mcl_status unfused_setup(wl_problem *p)
{
    for (int i = DX; i < COUNT; i++)
        if (!wl_has(p, i)) return wl_fail(MCL_ERR_UNSUPPORTED, "the unfused path computes every gradient");
    mcl_transition_desc d = desc_of(p);
    size_t counts_[WL_TR_SAVED + WL_TR_TEMPS];
    wl_unfused_transition_sizes(&d, counts_, counts_ + WL_TR_SAVED);
    return wl_unfused_setup(p, counts_, WL_COUNT(counts_));
}

static wl_unfused_transition unfused_of(const wl_problem *p)
{
    wl_unfused_transition u = {desc_of(p), fwd_tensors(p), bwd_tensors(p), {{0}}, {{0}}};
    wl_scratch_parts(p, u.saved, WL_TR_SAVED, u.temp, WL_TR_TEMPS);
    return u;
}

static mcl_status unfused_forward(wl_problem *p)
{
    wl_unfused_transition u = unfused_of(p);
    return wl_unfused_transition_forward(p, &u);
}

static mcl_status unfused_backward(wl_problem *p)
{
    wl_unfused_transition u = unfused_of(p);
    return wl_unfused_transition_backward(p, &u);
}

static const wl_baseline baselines[] = {
    {"unfused", NULL, unfused_setup, wl_unfused_teardown, unfused_forward, unfused_backward},
};

/* AF3's block: F = 4c, the LayerNorm's weight and bias, SiLU on the first half */
#define AF3(name, rows, c, f) {name, {{rows, c, f}, MCL_F32, OPT_LN_WEIGHT | OPT_LN_BIAS, WL_ALL, 0}}
static const wl_named_case cases[] = {
    AF3("pair M=147456 c=128 F=512", 147456, 128, 512),
    AF3("single M=768 c=384 F=1536", 768, 384, 1536),
};
static const wl_named_case cpu_cases[] = {
    AF3("pair M=4096 c=128 F=512", 4096, 128, 512),
    AF3("single M=64 c=384 F=1536", 64, 384, 1536),
};

const wl_workload wl_transition = WL_WORKLOAD("transition", "gemm", "rows,c,F", 3, .draw = draw,
                                               .workspace = workspace, .tolerance = tolerance,
                                               .full_reference = full_reference, .sample = sample);
