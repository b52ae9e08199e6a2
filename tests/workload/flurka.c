/* The flurka workload: FLuRKA (each feature map), Linformer and Performer forward (O and the
 * normaliser) and backward (dq, dk, dv, dE, dF) over [B, H, N, D], and full softmax attention
 * (the EvoAttention kernel without biases, [B, N = H, S = N, 1, D]) on the same tensors, so that
 * one run times all of them. A case's shape is B, H, N, D, k (the rank; unused without a
 * projection), its arg m (the features of FAVOR+ and ReLU), its options the map and the
 * projection. W is drawn by mcl_flurka_draw_features; E and F are uniform in [-1, 1) / sqrt(N),
 * so that K~ keeps the scale of K. */
#include "workload.h"

#include "ref/flurka_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { Q, K, V, E, F, W, DOUT, OUT, DEN, LSE, DQ, DK, DV, DE, DF, COUNT };
/* options: the map in bits 0-1 (mcl_flurka_map), the projection in bits 2-3
 * (mcl_flurka_projection), full attention through mcl_evoattn, W's rows of norm sqrt(D) */
enum { OPT_MAP = 3, OPT_PROJECTION_SHIFT = 2, OPT_SHARED = 4, OPT_PER_HEAD = 8, OPT_FULL = 16, OPT_SQRT_NORMS = 32 };
#define MAP(c) ((mcl_flurka_map)((c)->options & OPT_MAP))
#define PROJECTION(c) ((mcl_flurka_projection)(((c)->options >> OPT_PROJECTION_SHIFT) & 3))
#define FULL(c) (((c)->options & OPT_FULL) != 0)

static const wl_tensor_decl tensors[COUNT] = {
    [Q] = {"q", WL_INPUT, 0, -1.0f, 1.0f},
    [K] = {"k", WL_INPUT, 0, -1.0f, 1.0f},
    [V] = {"v", WL_INPUT, 0, -1.0f, 1.0f},
    [E] = {"e", WL_INPUT, 0, -1.0f, 1.0f},
    [F] = {"f", WL_INPUT, 0, -1.0f, 1.0f},
    [W] = {"w", WL_INPUT, 1, -1.0f, 1.0f},
    [DOUT] = {"dout", WL_INPUT, 0, -1.0f, 1.0f},
    [OUT] = {"out", WL_FORWARD, 0, 0, 0},
    [DEN] = {"normalizer", WL_FORWARD, 1, 0, 0},
    [LSE] = {"lse", WL_FORWARD, 1, 0, 0},
    [DQ] = {"dq", WL_GRADIENT, 0, 0, 0},
    [DK] = {"dk", WL_GRADIENT, 0, 0, 0},
    [DV] = {"dv", WL_GRADIENT, 0, 0, 0},
    [DE] = {"de", WL_GRADIENT, 0, 0, 0},
    [DF] = {"df", WL_GRADIENT, 0, 0, 0},
};
static const char *const options[] = {"map.1", "map.2", "shared", "per_head", "full", "sqrt_d_norms", NULL};

static int reads_w(const wl_case *c) { return !FULL(c) && (MAP(c) == MCL_FLURKA_FAVOR || MAP(c) == MCL_FLURKA_RELU); }
static size_t features(const wl_case *c) { return reads_w(c) ? (size_t)c->arg : 0; }

static void sizes(const wl_case *c, size_t *n)
{
    size_t B = c->shape[0], H = c->shape[1], N = c->shape[2], D = c->shape[3], k = c->shape[4];
    size_t t = B * H * N * D, proj = FULL(c) || PROJECTION(c) == MCL_FLURKA_NO_PROJECTION ? 0 : 1;
    size_t projection = proj ? (PROJECTION(c) == MCL_FLURKA_PER_HEAD ? H : 1) * k * N : 0;
    n[Q] = n[K] = n[V] = n[DOUT] = n[OUT] = n[DQ] = n[DK] = n[DV] = t;
    n[E] = n[F] = n[DE] = n[DF] = projection;
    n[W] = features(c) * D;
    n[DEN] = FULL(c) ? 0 : B * H * N;
    n[LSE] = FULL(c) ? B * H * N : 0;
}

static mcl_flurka_desc desc_of(const wl_problem *p)
{
    const wl_case *c = &p->c;
    int proj = PROJECTION(c) != MCL_FLURKA_NO_PROJECTION;
    return (mcl_flurka_desc){c->shape[0], c->shape[1], c->shape[2], c->shape[3], proj ? c->shape[4] : 0, features(c),
                             MAP(c), PROJECTION(c), c->dtype};
}

/* full attention: every (b, h) a row of EvoAttention's N, one head */
static mcl_evoattn_desc full_desc_of(const wl_problem *p)
{
    const size_t *s = p->c.shape;
    return (mcl_evoattn_desc){s[0], s[1], s[2], 1, s[3], p->c.dtype, 0.0f};
}

static mcl_status forward(wl_problem *p)
{
    if (FULL(&p->c)) {
        mcl_evoattn_desc d = full_desc_of(p);
        mcl_evoattn_fwd_tensors t = {.q = wl_at(p, Q), .k = wl_at(p, K), .v = wl_at(p, V), .out = wl_at(p, OUT),
                                     .lse = wl_at(p, LSE)};
        return mcl_evoattn_forward(p->ctx, &d, &t, NULL);
    }
    mcl_flurka_desc d = desc_of(p);
    mcl_flurka_fwd_tensors t = {wl_at(p, Q), wl_at(p, K), wl_at(p, V), wl_at(p, E), wl_at(p, F), wl_at(p, W),
                                wl_at(p, OUT), wl_at(p, DEN)};
    return mcl_flurka_forward(p->ctx, &d, &t, NULL);
}

static mcl_flurka_bwd_tensors bwd_tensors(const wl_problem *p)
{
    return (mcl_flurka_bwd_tensors){wl_at(p, Q),  wl_at(p, K),  wl_at(p, V),  wl_at(p, E),  wl_at(p, F),
                                    wl_at(p, W),  wl_at(p, DOUT), wl_at(p, DQ), wl_at(p, DK), wl_at(p, DV),
                                    wl_at(p, DE), wl_at(p, DF)};
}

static mcl_evoattn_bwd_tensors full_bwd_tensors(const wl_problem *p)
{
    return (mcl_evoattn_bwd_tensors){.q = wl_at(p, Q), .k = wl_at(p, K), .v = wl_at(p, V), .out = wl_at(p, OUT),
                                     .lse = wl_at(p, LSE), .dout = wl_at(p, DOUT), .dq = wl_at(p, DQ),
                                     .dk = wl_at(p, DK), .dv = wl_at(p, DV)};
}

static mcl_status backward(wl_problem *p)
{
    if (FULL(&p->c)) {
        mcl_evoattn_desc d = full_desc_of(p);
        mcl_evoattn_bwd_tensors t = full_bwd_tensors(p);
        return mcl_evoattn_backward(p->ctx, &d, &t, NULL);
    }
    mcl_flurka_desc d = desc_of(p);
    mcl_flurka_bwd_tensors t = bwd_tensors(p);
    return mcl_flurka_backward(p->ctx, &d, &t, NULL);
}

/* The forward and a backward of every gradient take exactly what the size function reports; one
 * without dE or dF skips their sums over the heads and may take less. */
static mcl_status workspace(wl_problem *p, size_t *fwd, size_t *bwd, int *backward_exact)
{
    int projected = wl_has(p, E);
    *backward_exact = wl_has(p, DQ) && wl_has(p, DK) && wl_has(p, DV) && (!projected || (wl_has(p, DE) && wl_has(p, DF)));
    if (FULL(&p->c)) {
        mcl_evoattn_desc d = full_desc_of(p);
        mcl_evoattn_bwd_tensors t = full_bwd_tensors(p);
        *fwd = WL_UNSIZED;
        return mcl_evoattn_backward_workspace_size(p->ctx, &d, &t, bwd);
    }
    mcl_flurka_desc d = desc_of(p);
    return mcl_flurka_workspace_size(p->ctx, &d, fwd, bwd);
}

static ref_flurka_problem ref_problem(const wl_problem *p)
{
    const wl_case *c = &p->c;
    const wl_tensor *t = p->t;
    mcl_flurka_desc d = desc_of(p);
    if (FULL(c)) d.map = MCL_FLURKA_SOFTMAX, d.projection = MCL_FLURKA_NO_PROJECTION;
    return (ref_flurka_problem){d.batch, d.heads, d.seq, d.head_dim, d.rank, d.features, d.map, d.projection,
                                t[Q].values, t[K].values, t[V].values, t[E].values, t[F].values, t[W].values,
                                t[DOUT].values};
}

/* dq, dk and dE are sums whose terms cancel (with one key, O = v~ whatever q and k are, and the
 * three vanish): their norm errors are taken against at least 1% of dV's rms, the size of their
 * terms, not against the rounding left of the cancellation. */
static int set_cancellation_floors(wl_problem *p)
{
    const wl_tensor *dv = &p->t[DV];
    if (!wl_has(p, DV)) return 0;
    double sum = 0.0;
    for (size_t i = 0; i < dv->count; i++) sum += dv->ref[i] * dv->ref[i];
    /* With one key (rank 1, or N = 1 without a projection) the output does not depend on Q, K, E
     * at all: their gradients are rounding noise, amplified by phi'(x) / phi(x) where a feature
     * is small (up to |W| / eps for ReLU's), so only their size is checked there, against dV's
     * rms itself (with a floor of 0.1 of it, seed 4769133120537912208 put ReLU's dq at 1.7x the
     * tolerance). */
    size_t keys = PROJECTION(&p->c) == MCL_FLURKA_NO_PROJECTION ? p->c.shape[2] : p->c.shape[4];
    double floor = (keys == 1 ? 1.0 : 0.01) * sqrt(sum / (double)dv->count);
    const int cancelling[] = {DQ, DK, DE};
    for (size_t c = 0; c < WL_COUNT(cancelling); c++) {
        wl_tensor *t = &p->t[cancelling[c]];
        if (!wl_has(p, cancelling[c])) continue;
        if (!(t->floor = malloc(t->count * sizeof *t->floor))) return -1;
        for (size_t i = 0; i < t->count; i++) t->floor[i] = floor;
    }
    return 0;
}

static int reference(wl_problem *p)
{
    ref_flurka_problem rp = ref_problem(p);
    wl_tensor *t = p->t;
    if (ref_flurka_forward(&rp, t[OUT].ref, t[DEN].ref, t[LSE].ref) != 0) return -1;
    if (ref_flurka_backward(&rp, t[DQ].ref, t[DK].ref, t[DV].ref, t[DE].ref, t[DF].ref) != 0) return -1;
    return set_cancellation_floors(p);
}

/* fp32: the features' exponentials and sums over rows, heads and keys; 16-bit: the storage of
 * the inputs and outputs around fp32 arithmetic */
static double tolerance(const wl_case *c, int tensor)
{
    (void)tensor;
    return c->dtype == MCL_F32 ? 1e-4 : 2 * host_tolerance(c->dtype);
}

/* double-precision work of the reference: the projections, the query rows against the keys or
 * features */
static double reference_work(const wl_case *c)
{
    double bh = (double)c->shape[0] * c->shape[1], n = (double)c->shape[2], d = (double)c->shape[3];
    double keys = FULL(c) ? n : (double)c->shape[4], len = MAP(c) == MCL_FLURKA_SOFTMAX || FULL(c) ? keys : c->arg;
    return bh * d * (n * keys + n * len);
}

static int full_reference(const wl_case *c) { return reference_work(c) <= 1 << 27; }

/* ReLU's features of a query or key are 0 below w_r . x = 0 and w_r . x above: where a dot lies
 * within fp32's rounding of 0, the kernels and the reference may take opposite sides and their
 * gradients differ by a whole feature's term. Well clear of that, the two must agree. */
#define RELU_KINK_MARGIN 1e-5
#define RELU_DRAWS 64

static void draw_w(wl_problem *p, host_rng *rng)
{
    const wl_case *c = &p->c;
    mcl_flurka_norms norms = c->options & OPT_SQRT_NORMS ? MCL_FLURKA_SQRT_D_NORMS : MCL_FLURKA_CHI_NORMS;
    int checked = MAP(c) == MCL_FLURKA_RELU && full_reference(c);
    uint64_t seed = rng->state; /* a fresh W for every problem drawn */
    for (int attempt = 0; attempt < RELU_DRAWS; attempt++) {
        mcl_flurka_draw_features(seed + (uint64_t)attempt, features(c), c->shape[3], norms, p->t[W].values);
        if (!checked) return;
        ref_flurka_problem rp = ref_problem(p);
        if (ref_flurka_nearest_relu_kink(&rp) >= RELU_KINK_MARGIN) return;
    }
}

/* E and F scaled by 1 / sqrt(N); W from the library's own draw (for ReLU, clear of the kink
 * where the reference checks every output) */
static void draw(wl_problem *p, host_rng *rng)
{
    float scale = 1.0f / sqrtf((float)p->c.shape[2]);
    for (int t = E; t <= F; t++) {
        for (size_t i = 0; i < p->t[t].count; i++) p->t[t].values[i] *= scale;
        host_quantize(p->t[t].dtype, p->t[t].values, p->t[t].count);
    }
    if (wl_has(p, W)) draw_w(p, rng);
}

/* ---- the benchmark's check of large problems -------------------------------------------- */

/* Row i of softmax attention over one head's q, k, v [N, D] into o[D], s N doubles of scratch. */
static void exact_attention_row(const float *q, const float *k, const float *v, size_t N, size_t D, size_t i,
                                double *s, double *o)
{
    double c = -INFINITY, sum = 0.0, scale = 1.0 / sqrt((double)D);
    for (size_t j = 0; j < N; j++) {
        double dot = 0.0;
        for (size_t d = 0; d < D; d++) dot += (double)q[i * D + d] * k[j * D + d];
        s[j] = scale * dot, c = fmax(c, s[j]);
    }
    for (size_t j = 0; j < N; j++) s[j] = exp(s[j] - c), sum += s[j];
    for (size_t d = 0; d < D; d++) {
        double acc = 0.0;
        for (size_t j = 0; j < N; j++) acc += s[j] * v[j * D + d];
        o[d] = acc / sum;
    }
}

/* Full attention: out of 8 query rows of the first head, each against every key. */
static void sample_full_attention(const wl_problem *p, wl_err *err)
{
    size_t N = p->c.shape[2], D = p->c.shape[3];
    double *s = malloc(N * sizeof *s), *o = malloc(D * sizeof *o);
    for (size_t i = 0; i < N && s && o; i += (N + 7) / 8) {
        exact_attention_row(p->t[Q].values, p->t[K].values, p->t[V].values, N, D, i, s, o);
        for (size_t d = 0; d < D; d++) wl_err_add(&err[OUT], p->t[OUT].values[i * D + d], o[d]);
    }
    free(s), free(o);
}

/* ||O - O_exact|| / ||O_exact|| over 8 query rows of every head, O_exact softmax attention of
 * the case's own Q, K, V (without the projection). */
static double approximation_error(const wl_problem *p)
{
    if (FULL(&p->c)) return -1.0;
    size_t heads = p->c.shape[0] * p->c.shape[1], N = p->c.shape[2], D = p->c.shape[3], t = N * D;
    double *s = malloc(N * sizeof *s), *o = malloc(D * sizeof *o), diff = 0.0, norm = 0.0;
    for (size_t h = 0; h < heads && s && o; h++)
        for (size_t i = 0; i < N; i += (N + 7) / 8) {
            exact_attention_row(p->t[Q].values + h * t, p->t[K].values + h * t, p->t[V].values + h * t, N, D, i, s, o);
            for (size_t d = 0; d < D; d++) {
                double got = p->t[OUT].values[h * t + i * D + d];
                diff += (got - o[d]) * (got - o[d]), norm += o[d] * o[d];
            }
        }
    int ok = s && o;
    free(s), free(o);
    return ok && norm > 0.0 ? sqrt(diff / norm) : -1.0;
}

/* The last head in full, as a problem of one head (its own E and F where they are per head):
 * out, the normaliser, dq, dk and dv; dE and dF sum over every head and are checked only where the
 * whole reference is affordable. */
static int sample_last_head(const wl_problem *p, wl_err *err)
{
    ref_flurka_problem rp = ref_problem(p);
    size_t bh = rp.batch * rp.heads - 1, N = rp.seq, D = rp.dim, t = N * D;
    if (rp.projection == MCL_FLURKA_PER_HEAD) {
        size_t step = (bh % rp.heads) * rp.rank * N;
        rp.e += step, rp.f += step, rp.projection = MCL_FLURKA_SHARED;
    }
    rp.q += bh * t, rp.k += bh * t, rp.v += bh * t, rp.dout += bh * t;
    rp.batch = rp.heads = 1;
    double *out = malloc(t * sizeof *out), *den = malloc(N * sizeof *den), *dq = malloc(t * sizeof *dq),
           *dk = malloc(t * sizeof *dk), *dv = malloc(t * sizeof *dv);
    int ok = out && den && dq && dk && dv && ref_flurka_forward(&rp, out, den, NULL) == 0 &&
             ref_flurka_backward(&rp, wl_has(p, DQ) ? dq : NULL, dk, dv, NULL, NULL) == 0;
    const int outputs[] = {OUT, DQ, DK, DV};
    double *refs[] = {out, dq, dk, dv};
    for (size_t o = 0; o < 4 && ok; o++)
        for (size_t i = 0; i < t && wl_has(p, outputs[o]); i++) wl_err_add(&err[outputs[o]], p->t[outputs[o]].values[bh * t + i], refs[o][i]);
    for (size_t i = 0; i < N && ok && wl_has(p, DEN); i++) wl_err_add(&err[DEN], p->t[DEN].values[bh * N + i], den[i]);
    free(out), free(den), free(dq), free(dk), free(dv);
    return ok ? 0 : -1;
}

static int sample(wl_problem *p, double *errors)
{
    wl_err err[COUNT] = {{0}};
    int status = 0;
    if (FULL(&p->c)) sample_full_attention(p, err);
    else status = sample_last_head(p, err);
    int checked[COUNT] = {[OUT] = 1, [DEN] = !FULL(&p->c), [DQ] = !FULL(&p->c), [DK] = !FULL(&p->c), [DV] = !FULL(&p->c)};
    for (int i = 0; i < COUNT; i++) errors[i] = checked[i] && wl_has(p, i) ? wl_err_value(&err[i]) : -1.0;
    return status;
}

static wl_counts counts(const wl_case *c)
{
    double bh = (double)c->shape[0] * c->shape[1], n = (double)c->shape[2], d = (double)c->shape[3];
    double es = (double)mcl_dtype_size(c->dtype), tensor = bh * n * d * es;
    int proj = !FULL(c) && PROJECTION(c) != MCL_FLURKA_NO_PROJECTION;
    double keys = proj ? (double)c->shape[4] : n;
    double len = FULL(c) || MAP(c) == MCL_FLURKA_SOFTMAX ? keys : MAP(c) == MCL_FLURKA_ELU ? d : c->arg;
    size_t sizes_[COUNT];
    sizes(c, sizes_);
    double pbytes = (double)sizes_[E] * es;
    wl_counts k;
    k.fwd_bytes = 4 * tensor + 2 * pbytes;                      /* q, k, v, E, F in; out */
    k.fwdbwd_bytes = k.fwd_bytes + 4 * tensor + 4 * pbytes;      /* dout, dq, dk, dv; dE, dF */
    double project = proj ? 2 * 2 * bh * keys * n * d : 0;       /* E K, F V */
    double key_side = FULL(c) || MAP(c) == MCL_FLURKA_SOFTMAX ? 0 : 2 * 2 * bh * keys * len * d; /* phi(K~), S */
    double rows = 2 * 2 * bh * n * len * d;                      /* phi(Q) (or Q K~^T), then against S (or V~) */
    k.fwd_flops = project + key_side + rows;
    k.fwdbwd_flops = 3 * k.fwd_flops;
    return k;
}

/* B = 1, H = 16, D = 64, k = m = 256 */
#define CASE(name, n, options) {name, {{1, 16, n, 64, 256}, MCL_F32, options, WL_ALL, 256}}
#define CPU_CASE(name, options) {name, {{1, 2, 512, 64, 64}, MCL_F32, options, WL_ALL, 64}}
#define VARIANTS(prefix, n, make)                                                              \
    make(prefix " flurka-favor", n, MCL_FLURKA_FAVOR | OPT_SHARED),                            \
    make(prefix " flurka-relu", n, MCL_FLURKA_RELU | OPT_SHARED),                              \
    make(prefix " flurka-elu", n, MCL_FLURKA_ELU | OPT_SHARED),                                \
    make(prefix " linformer", n, MCL_FLURKA_SOFTMAX | OPT_SHARED),                             \
    make(prefix " performer", n, MCL_FLURKA_FAVOR),                                            \
    make(prefix " full", n, OPT_FULL)
#define CPU_VARIANT(name, n, options) CPU_CASE(name, options)
static const wl_named_case cases[] = {
    VARIANTS("N=4096", 4096, CASE), VARIANTS("N=16384", 16384, CASE), VARIANTS("N=65536", 65536, CASE),
};
static const wl_named_case cpu_cases[] = {VARIANTS("N=512", 512, CPU_VARIANT)};

const wl_workload wl_flurka = {.name = "flurka", .family = "flurka", .shape_names = "B,H,N,D,k", .rank = 5,
                               .option_names = options, .tensors = tensors, .tensor_count = COUNT, .cases = cases,
                               .case_count = WL_COUNT(cases), .cpu_cases = cpu_cases,
                               .cpu_case_count = WL_COUNT(cpu_cases), .sizes = sizes, .draw = draw,
                               .forward = forward, .backward = backward, .workspace = workspace,
                               .reference = reference, .tolerance = tolerance, .full_reference = full_reference,
                               .sample = sample, .approximation_error = approximation_error, .counts = counts};
