/* The trimul workload: AF3's triangle multiplicative update over z [N, N, c] with hidden width
 * h, forward and backward (dz, both LayerNorms' weights and biases, dw_in, dw_out); outgoing or
 * incoming, the pair mask and each LayerNorm's weight and bias optional. The benchmark runs
 * AF3's outgoing update with a mask next to the unfused path (unfused_trimul.c): megacl's
 * LayerNorm, CLBlast's GEMMs, batched GEMM and transposes, and one elementwise operation per
 * kernel, every intermediate stored, as a framework runs the block. */
#include "unfused.h"

#include "ref/layernorm_ref.h"
#include "ref/trimul_ref.h"

#include <math.h>
#include <stdlib.h>

enum { Z, MASK, LN_IN_WEIGHT, LN_IN_BIAS, W_IN, LN_OUT_WEIGHT, LN_OUT_BIAS, W_OUT, DOUT,
       OUT, T, MEAN_IN, RSTD_IN, MEAN_OUT, RSTD_OUT,
       DZ, DLN_IN_WEIGHT, DLN_IN_BIAS, DW_IN, DLN_OUT_WEIGHT, DLN_OUT_BIAS, DW_OUT, COUNT };
/* LN_IN, LN_OUT: that LayerNorm's weight and bias given */
enum { OPT_INCOMING = 1, OPT_MASK = 2, OPT_LN_IN = 4, OPT_LN_OUT = 8 };

static const wl_tensor_decl tensors[COUNT] = {
    [Z] = {"z", WL_INPUT, 0, -2.0f, 3.0f},
    [MASK] = {"mask", WL_INPUT, 0, 0.0f, 1.0f}, /* made 0 or 1 by `draw` */
    [LN_IN_WEIGHT] = {"ln_in_weight", WL_INPUT, 0, 0.5f, 1.5f},
    [LN_IN_BIAS] = {"ln_in_bias", WL_INPUT, 0, -0.5f, 0.5f},
    [W_IN] = {"w_in", WL_INPUT, 0, 0, 0}, /* drawn by `draw`: the range depends on the case */
    [LN_OUT_WEIGHT] = {"ln_out_weight", WL_INPUT, 0, 0.5f, 1.5f},
    [LN_OUT_BIAS] = {"ln_out_bias", WL_INPUT, 0, -0.5f, 0.5f},
    [W_OUT] = {"w_out", WL_INPUT, 0, 0, 0},
    [DOUT] = {"dout", WL_INPUT, 0, -1.0f, 1.0f},
    [OUT] = {"out", WL_FORWARD, 0, 0, 0},
    [T] = {"t", WL_FORWARD, 0, 0, 0},
    [MEAN_IN] = {"mean_in", WL_FORWARD, 1, 0, 0},
    [RSTD_IN] = {"rstd_in", WL_FORWARD, 1, 0, 0},
    [MEAN_OUT] = {"mean_out", WL_FORWARD, 1, 0, 0},
    [RSTD_OUT] = {"rstd_out", WL_FORWARD, 1, 0, 0},
    [DZ] = {"dz", WL_GRADIENT, 0, 0, 0},
    [DLN_IN_WEIGHT] = {"dln_in_weight", WL_GRADIENT, 0, 0, 0},
    [DLN_IN_BIAS] = {"dln_in_bias", WL_GRADIENT, 0, 0, 0},
    [DW_IN] = {"dw_in", WL_GRADIENT, 0, 0, 0},
    [DLN_OUT_WEIGHT] = {"dln_out_weight", WL_GRADIENT, 0, 0, 0},
    [DLN_OUT_BIAS] = {"dln_out_bias", WL_GRADIENT, 0, 0, 0},
    [DW_OUT] = {"dw_out", WL_GRADIENT, 0, 0, 0},
};
static const char *const options[] = {"incoming", "mask", "ln_in", "ln_out", NULL};

/* W_in's width: a_proj, a_gate, b_proj, b_gate (h each) and the output gate g (c) */
static size_t width_of(const wl_case *c) { return 4 * c->shape[2] + c->shape[1]; }

static void sizes(const wl_case *c, size_t *n)
{
    size_t np = c->shape[0] * c->shape[0], ch = c->shape[1], h = c->shape[2], w = width_of(c);
    n[Z] = n[DOUT] = n[OUT] = n[DZ] = np * ch;
    n[MASK] = c->options & OPT_MASK ? np : 0;
    n[LN_IN_WEIGHT] = n[LN_IN_BIAS] = c->options & OPT_LN_IN ? ch : 0;
    n[W_IN] = n[DW_IN] = ch * w;
    n[LN_OUT_WEIGHT] = n[LN_OUT_BIAS] = c->options & OPT_LN_OUT ? h : 0;
    n[W_OUT] = n[DW_OUT] = h * ch;
    n[T] = np * h;
    n[MEAN_IN] = n[RSTD_IN] = n[MEAN_OUT] = n[RSTD_OUT] = np;
    n[DLN_IN_WEIGHT] = n[DLN_IN_BIAS] = ch;
    n[DLN_OUT_WEIGHT] = n[DLN_OUT_BIAS] = h;
}

/* n values uniform in [lo, hi), rounded to the dtype */
static void fill(float *v, size_t n, mcl_dtype dtype, host_rng *rng, float lo, float hi)
{
    host_fill_uniform(rng, v, n, lo, hi);
    host_quantize(dtype, v, n);
}

/* Redraws the rows of z [rows, c] whose standard deviation is below 0.25: fp32 LayerNorm loses
 * digits of (z - mean) in a row of nearly equal values that rstd then amplifies, and the
 * reference's double does not; that says nothing of the op. */
static void spread_rows(wl_tensor *z, size_t c, host_rng *rng)
{
    for (size_t r = 0; c > 1 && r < z->count / c; r++)
        for (float *row = z->values + r * c;;) {
            double sum = 0.0, sq = 0.0;
            for (size_t k = 0; k < c; k++) sum += row[k], sq += (double)row[k] * row[k];
            if (sq / (double)c - (sum / (double)c) * (sum / (double)c) >= 0.0625) break;
            fill(row, c, z->dtype, rng, tensors[Z].lo, tensors[Z].hi);
        }
}

/* A quarter of the pairs masked out; z's rows spread; the weights uniform in +-2 / sqrt(fan-in),
 * so that p and out stay of the size of z whatever c and h. */
static void draw(wl_problem *p, host_rng *rng)
{
    wl_tensor *t = p->t;
    for (size_t e = 0; e < t[MASK].count; e++) t[MASK].values[e] = t[MASK].values[e] < 0.25f ? 0.0f : 1.0f;
    spread_rows(&t[Z], p->c.shape[1], rng);
    const size_t fan_in[2] = {p->c.shape[1], p->c.shape[2]};
    for (int k = 0; k < 2; k++) {
        wl_tensor *wt = &t[k ? W_OUT : W_IN];
        float range = 2.0f / sqrtf((float)fan_in[k]);
        fill(wt->values, wt->count, wt->dtype, rng, -range, range);
    }
}

static mcl_trimul_desc desc_of(const wl_problem *p)
{
    return (mcl_trimul_desc){p->c.shape[0], p->c.shape[1], p->c.shape[2], p->c.dtype, 1e-5f,
                             p->c.options & OPT_INCOMING ? MCL_TRIMUL_INCOMING : MCL_TRIMUL_OUTGOING};
}

/* The tensors both passes take as given, and what the forward saves for the backward, in the
 * order of the ops' tensors structs. */
#define GIVEN(p)                                                                                 \
    wl_at(p, Z), wl_at(p, MASK), wl_at(p, LN_IN_WEIGHT), wl_at(p, LN_IN_BIAS), wl_at(p, W_IN),   \
        wl_at(p, LN_OUT_WEIGHT), wl_at(p, LN_OUT_BIAS), wl_at(p, W_OUT)
#define SAVED(p)                                                                                 \
    wl_at(p, T), wl_at(p, MEAN_IN), wl_at(p, RSTD_IN), wl_at(p, MEAN_OUT), wl_at(p, RSTD_OUT)

static mcl_trimul_fwd_tensors fwd_tensors(const wl_problem *p)
{
    return (mcl_trimul_fwd_tensors){GIVEN(p), wl_at(p, OUT), SAVED(p)};
}

static mcl_trimul_bwd_tensors bwd_tensors(const wl_problem *p)
{
    return (mcl_trimul_bwd_tensors){GIVEN(p),         SAVED(p),           wl_at(p, DOUT),
                                    wl_at(p, DZ),     wl_at(p, DLN_IN_WEIGHT),  wl_at(p, DLN_IN_BIAS),
                                    wl_at(p, DW_IN),  wl_at(p, DLN_OUT_WEIGHT), wl_at(p, DLN_OUT_BIAS),
                                    wl_at(p, DW_OUT)};
}

WL_OP_PASSES(trimul)

static int every_gradient(const wl_problem *p)
{
    for (int i = DZ; i < COUNT; i++)
        if (!wl_has(p, i)) return 0;
    return 1;
}

/* One size function for both steps: the forward and a backward of every gradient take exactly
 * what it reports; a backward of fewer may take less. */
static mcl_status workspace(wl_problem *p, size_t *fwd, size_t *bwd, int *backward_exact)
{
    mcl_trimul_desc d = desc_of(p);
    *backward_exact = every_gradient(p);
    return mcl_trimul_workspace_size(p->ctx, &d, fwd, bwd);
}

/* ---- reference and tolerances ----------------------------------------------------------- */

/* t against the reference from z; out and the backward from the device's t */
static ref_trimul_problem ref_problem(const wl_problem *p)
{
    const wl_tensor *t = p->t;
    return (ref_trimul_problem){p->c.shape[0], p->c.shape[1], p->c.shape[2], 1e-5, desc_of(p).direction,
                                t[Z].values, t[W_IN].values, t[W_OUT].values, t[MASK].values,
                                t[LN_IN_WEIGHT].values, t[LN_IN_BIAS].values, t[LN_OUT_WEIGHT].values,
                                t[LN_OUT_BIAS].values, NULL, t[T].values, t[DOUT].values};
}

static ref_trimul_grads grads_of(double *const *g)
{
    return (ref_trimul_grads){g[DZ], g[DLN_IN_WEIGHT], g[DLN_IN_BIAS], g[DW_IN], g[DLN_OUT_WEIGHT], g[DLN_OUT_BIAS],
                              g[DW_OUT]};
}

/* The rms of each row of x [rows, cols]: the size of the terms a row's mean adds. */
static void row_rms(const float *x, size_t rows, size_t cols, double *rms)
{
    for (size_t r = 0; r < rows; r++) {
        double ss = 0.0;
        for (size_t k = 0; k < cols; k++) ss += (double)x[r * cols + k] * x[r * cols + k];
        rms[r] = sqrt(ss / (double)cols);
    }
}

/* The outputs given a scale of their own: the size of the terms each element sums, or of the
 * error that rounding its inputs leaves. */
static int scaled(int i) { return i == OUT || i == MEAN_IN || i == MEAN_OUT || i >= DZ; }

/* Element by element, with the floor of each element the rms of ref or, where larger, of the
 * scale t->floor holds on entry (NULL: none), or the element's own scale where larger still: an
 * element whose sum cancels is held to the error its terms' rounding leaves, not to a relative
 * one. */
static int set_floors(wl_tensor *t)
{
    int has_scale = t->floor != NULL;
    if (!has_scale && !(t->floor = malloc(t->count * sizeof *t->floor))) return -1;
    double ss = 0.0, sc = 0.0;
    for (size_t i = 0; i < t->count; i++) {
        ss += t->ref[i] * t->ref[i];
        sc += has_scale ? t->floor[i] * t->floor[i] : 0.0;
    }
    double floor = sqrt((ss > sc ? ss : sc) / (double)t->count);
    for (size_t i = 0; i < t->count; i++) t->floor[i] = has_scale && t->floor[i] > floor ? t->floor[i] : floor;
    t->check = WL_ELEMENTWISE;
    return 0;
}

static int reference(wl_problem *p)
{
    wl_tensor *t = p->t;
    size_t np = p->c.shape[0] * p->c.shape[0];
    ref_trimul_problem rp = ref_problem(p);
    double *refs[COUNT], *scales[COUNT];
    for (int i = 0; i < COUNT; i++) {
        if (wl_has(p, i) && scaled(i) && !(t[i].floor = malloc(t[i].count * sizeof(double)))) return -1;
        refs[i] = t[i].ref, scales[i] = t[i].floor;
    }
    ref_trimul_forward(&rp, t[OUT].ref, NULL, t[T].ref, t[MEAN_IN].ref, t[RSTD_IN].ref, t[MEAN_OUT].ref,
                       t[RSTD_OUT].ref);
    ref_trimul_grads grads = grads_of(refs), grad_scales = grads_of(scales);
    ref_trimul_backward(&rp, &grads);
    ref_trimul_grad_scale(&rp, &grad_scales);
    ref_trimul_out_scale(&rp, t[OUT].floor);
    row_rms(t[Z].values, np, p->c.shape[1], t[MEAN_IN].floor);
    row_rms(t[T].values, np, p->c.shape[2], t[MEAN_OUT].floor);
    for (int i = OUT; i < COUNT; i++)
        if (wl_has(p, i) && set_floors(&t[i]) != 0) return -1;
    return 0;
}

static int is_stat(int t) { return t >= MEAN_IN && t <= RSTD_OUT; }

/* Relative to |ref| + the floor (above). fp32: 2e-5. 16-bit storage: out starts from the
 * device's saved t and carries its own rounding, o's and g's: 1.5x; t carries the rounding of
 * the projections p and of a and b: 2x; the output side's gradients dO's and dLN(t)'s: 1.5x;
 * dz, dw_in and dln_in_* follow dO, dt, dA, dB, dp and the recomputed p, each stored in 16 bits:
 * 3x. Over 30 seeds the worst element came to 0.6 of these; a dropped
 * k-term, an ignored mask or LayerNorm bias, a gate's missing derivative or a transposed
 * operand exceed them tenfold. c = 1 with N > 1 (f32 only, see the tests' shapes): LN_in(z) is
 * its bias alone, so every row of p, and with it of a, b, t and o, is the same; every row
 * rounds alike, and a value that cancels in one row cancels in all, out of the floors' reach:
 * 10x. */
static double tolerance(const wl_case *c, int tensor)
{
    double degenerate = c->shape[1] == 1 && c->shape[0] > 1 ? 10.0 : 1.0;
    if (is_stat(tensor)) return 1e-5 * degenerate;
    if (c->dtype == MCL_F32) return 2e-5 * degenerate;
    double stored = tensor >= DZ && tensor <= DW_IN ? 3.0 : tensor == T ? 2.0 : 1.5;
    return host_tolerance(c->dtype) * stored;
}

/* The reference's k-sums (N^3 h) and projections (N^2 c w), each formed a few times */
static int full_reference(const wl_case *c)
{
    double n = (double)c->shape[0];
    return n * n * (n * c->shape[2] + (double)c->shape[1] * width_of(c)) <= (double)(1 << 29);
}

/* ---- the benchmark's check of large problems -------------------------------------------- */

static double sigmoid(double v) { return 1.0 / (1.0 + exp(-v)); }

/* Pair entry of operand element (i, k): a[i, k] outgoing, a[k, i] incoming. */
static size_t slot(const wl_case *c, size_t i, size_t k)
{
    size_t n = c->shape[0];
    return c->options & OPT_INCOMING ? k * n + i : i * n + k;
}

/* LN_in(z) W_in's columns first .. first + count - 1 at pair entry r, from z; buf holds c values */
static void projections(const wl_problem *p, size_t r, size_t first, size_t count, double *buf, double *out)
{
    const wl_tensor *t = p->t;
    size_t c = p->c.shape[1], w = width_of(&p->c);
    ref_layernorm_forward(t[Z].values + r * c, t[LN_IN_WEIGHT].values, t[LN_IN_BIAS].values, 1, c, 1e-5, buf, NULL,
                          NULL);
    for (size_t col = 0; col < count; col++) {
        double sum = 0.0;
        for (size_t k = 0; k < c; k++) sum += buf[k] * t[W_IN].values[k * w + first + col];
        out[col] = sum;
    }
}

/* The operand rows of side 0 (a) or 1 (b) at operand row i: x[k * h + q] = sigmoid(gate) proj
 * mask at pair entry slot(i, k), from z; buf holds c + 4h values. */
static void operand_row(const wl_problem *p, int side, size_t i, double *buf, double *x)
{
    size_t n = p->c.shape[0], c = p->c.shape[1], h = p->c.shape[2];
    double *proj = buf + c;
    for (size_t k = 0; k < n; k++) {
        size_t r = slot(&p->c, i, k);
        projections(p, r, 2 * (size_t)side * h, 2 * h, buf, proj);
        double m = wl_has(p, MASK) ? p->t[MASK].values[r] : 1.0;
        for (size_t q = 0; q < h; q++) x[k * h + q] = sigmoid(proj[h + q]) * proj[q] * m;
    }
}

static void add_all(wl_err *e, const float *out, const double *ref, size_t n)
{
    for (size_t i = 0; i < n; i++) wl_err_add(e, out[i], ref[i]);
}

/* t at the pairs of 8 rows i and 8 columns j spread over all of them, from z; out there from the
 * saved t. */
static int check_pairs(const wl_problem *p, wl_err *err)
{
    const wl_tensor *t = p->t;
    size_t n = p->c.shape[0], c = p->c.shape[1], h = p->c.shape[2], step = (n + 7) / 8;
    double *buf = malloc((c + 4 * h) * sizeof *buf), *a = malloc(n * h * sizeof *a), *b = malloc(n * h * sizeof *b);
    double *g = malloc(c * sizeof *g);
    int ok = buf && a && b && g;
    for (size_t i = 0; ok && i < n; i += step) {
        operand_row(p, 0, i, buf, a);
        for (size_t j = (i / step) % step; j < n; j += step) {
            operand_row(p, 1, j, buf, b);
            size_t ij = i * n + j;
            for (size_t q = 0; q < h; q++) {
                double sum = 0.0;
                for (size_t k = 0; k < n; k++) sum += a[k * h + q] * b[k * h + q];
                wl_err_add(&err[T], t[T].values[ij * h + q], sum);
            }
            projections(p, ij, 4 * h, c, buf, g);
            ref_layernorm_forward(t[T].values + ij * h, t[LN_OUT_WEIGHT].values, t[LN_OUT_BIAS].values, 1, h, 1e-5,
                                  buf, NULL, NULL);
            for (size_t col = 0; col < c; col++) {
                double o = 0.0;
                for (size_t q = 0; q < h; q++) o += buf[q] * t[W_OUT].values[q * c + col];
                wl_err_add(&err[OUT], t[OUT].values[ij * c + col], sigmoid(g[col]) * o);
            }
        }
    }
    free(buf), free(a), free(b), free(g);
    return ok ? 0 : -1;
}

/* Both LayerNorms' statistics at every pair entry (of z, and of the saved t), and with dw_out
 * its terms LN_out(t)^T (dout sigmoid(g)) from the saved t and g from z; buf holds
 * max(c, h) + c values. */
static void check_rows(const wl_problem *p, double *buf, double *dw_out, wl_err *err)
{
    const wl_tensor *t = p->t;
    size_t np = p->c.shape[0] * p->c.shape[0], c = p->c.shape[1], h = p->c.shape[2];
    double *g = buf + (c > h ? c : h);
    for (size_t r = 0; r < np; r++) {
        double mean, rstd;
        ref_layernorm_forward(t[Z].values + r * c, t[LN_IN_WEIGHT].values, t[LN_IN_BIAS].values, 1, c, 1e-5, buf,
                              &mean, &rstd);
        wl_err_add(&err[MEAN_IN], t[MEAN_IN].values[r], mean);
        wl_err_add(&err[RSTD_IN], t[RSTD_IN].values[r], rstd);
        if (dw_out) projections(p, r, 4 * h, c, buf, g);
        ref_layernorm_forward(t[T].values + r * h, t[LN_OUT_WEIGHT].values, t[LN_OUT_BIAS].values, 1, h, 1e-5, buf,
                              &mean, &rstd);
        wl_err_add(&err[MEAN_OUT], t[MEAN_OUT].values[r], mean);
        wl_err_add(&err[RSTD_OUT], t[RSTD_OUT].values[r], rstd);
        for (size_t col = 0; col < c && dw_out; col++) {
            double d = t[DOUT].values[r * c + col] * sigmoid(g[col]);
            for (size_t q = 0; q < h; q++) dw_out[q * c + col] += buf[q] * d;
        }
    }
}

/* Every gradient against the reference continued from the saved t (the tests' check) */
static int check_gradients(const wl_problem *p, wl_err *err)
{
    ref_trimul_problem rp = ref_problem(p);
    double *g[COUNT] = {0};
    int ok = 1;
    for (int i = DZ; i < COUNT; i++)
        if (wl_has(p, i)) ok &= (g[i] = malloc(p->t[i].count * sizeof(double))) != NULL;
    ref_trimul_grads grads = grads_of(g);
    if (ok) ref_trimul_backward(&rp, &grads);
    for (int i = DZ; i < COUNT; i++) {
        if (ok && g[i]) add_all(&err[i], p->t[i].values, g[i], p->t[i].count);
        free(g[i]);
    }
    return ok ? 0 : -1;
}

/* Both LayerNorms' statistics at every pair entry; t and out at 64 pair entries spread over all
 * of them; on problems of up to 2^28 k-sum terms (N^3 h) every gradient against the reference,
 * on larger ones dw_out alone, in full from the saved t (which checks the backward's last GEMM
 * on its own inputs). */
static int sample(wl_problem *p, double *errors)
{
    size_t n = p->c.shape[0], np = n * n, c = p->c.shape[1], h = p->c.shape[2];
    int all = (double)np * n * h <= (double)(1 << 28), direct = !all && wl_has(p, DW_OUT);
    size_t buf_count = (c > h ? c : h) + c;
    double *buf = malloc(buf_count * sizeof *buf), *dw_out = direct ? calloc(h * c, sizeof *dw_out) : NULL;
    int ok = buf && (!direct || dw_out);
    wl_err err[COUNT] = {{0}};
    if (ok) check_rows(p, buf, dw_out, err);
    if (ok) ok = check_pairs(p, err) == 0;
    if (ok && direct) add_all(&err[DW_OUT], p->t[DW_OUT].values, dw_out, h * c);
    if (ok && all) ok = check_gradients(p, err) == 0;
    for (int i = 0; i < COUNT; i++)
        errors[i] = ok && wl_has(p, i) && !wl_is_input(p, i) && (i < DZ || all || i == DW_OUT) ? wl_err_value(&err[i])
                                                                                              : -1.0;
    free(buf), free(dw_out);
    return ok ? 0 : -1;
}

static wl_counts counts(const wl_case *c)
{
    size_t n = c->shape[0], np = n * n, ch = c->shape[1], h = c->shape[2], w = width_of(c);
    size_t es = mcl_dtype_size(c->dtype);
    double zb = (double)np * ch * es, tb = (double)np * h * es, st = 16.0 * np;
    wl_counts k;
    k.fwd_bytes = zb + tb + zb + st;                   /* z in; t, out, stats out */
    k.fwdbwd_bytes = k.fwd_bytes + 2 * zb + tb + zb;   /* z, dout, t in; dz out */
    k.fwd_flops = 2.0 * np * ch * w + 2.0 * np * n * h + 2.0 * np * h * ch;
    k.fwdbwd_flops = 3.0 * k.fwd_flops;
    return k;
}

/* ---- the unfused path ------------------------------------------------------------------- */

/* The op's tensors, then the intermediates: the saved ones first, then the backward's. */
static mcl_status unfused_setup(wl_problem *p)
{
    if (!wl_has(p, MASK) || !every_gradient(p))
        return wl_fail(MCL_ERR_UNSUPPORTED, "the unfused path takes a mask and computes every gradient");
    mcl_trimul_desc d = desc_of(p);
    size_t counts_[WL_TM_SAVED + WL_TM_TEMPS];
    wl_unfused_trimul_sizes(&d, counts_, counts_ + WL_TM_SAVED);
    return wl_unfused_setup(p, counts_, WL_COUNT(counts_));
}

static wl_unfused_trimul unfused_of(const wl_problem *p)
{
    wl_unfused_trimul u = {desc_of(p), fwd_tensors(p), bwd_tensors(p), {{0}}, {{0}}};
    wl_scratch_parts(p, u.saved, WL_TM_SAVED, u.temp, WL_TM_TEMPS);
    return u;
}

static mcl_status unfused_forward(wl_problem *p)
{
    wl_unfused_trimul u = unfused_of(p);
    return wl_unfused_trimul_forward(p, &u);
}

static mcl_status unfused_backward(wl_problem *p)
{
    wl_unfused_trimul u = unfused_of(p);
    return wl_unfused_trimul_backward(p, &u);
}

static const wl_baseline baselines[] = {
    {"unfused", NULL, unfused_setup, wl_unfused_teardown, unfused_forward, unfused_backward},
};

/* AF3's outgoing update: a pair mask, both LayerNorms' weights and biases, every gradient */
#define AF3(name, n, c, h) {name, {{n, c, h}, MCL_F32, OPT_MASK | OPT_LN_IN | OPT_LN_OUT, WL_ALL, 0}}
static const wl_named_case cases[] = {
    AF3("outgoing N=384 c=h=128", 384, 128, 128),
    AF3("outgoing N=128 c=h=64", 128, 64, 64),
};
static const wl_named_case cpu_cases[] = {
    AF3("outgoing N=64 c=h=128", 64, 128, 128),
    AF3("outgoing N=32 c=h=64", 32, 64, 64),
};

const wl_workload wl_trimul = WL_WORKLOAD("trimul", "gemm", "N,c,h", 3, .draw = draw, .workspace = workspace,
                                           .tolerance = tolerance, .full_reference = full_reference,
                                           .sample = sample);
