/* The evoattn workload: EvoAttention forward (O, the gated Y, lse) and backward (dq, dk, dv,
 * dgate, dmask, dpair) over [B, N, S, H, D], the mask bias, pair bias and gate optional. The
 * benchmark runs AF3's shapes (triangle attention: N = S, H = 4, D = 32; single attention with
 * pair bias: N = 1, H = 16, D = 64; MSA row attention: N > S, H = 8, D = 8) with a mask and a
 * pair bias and no gate, next to the naive kernels. */
#include "workload.h"

#include "ref/evoattn_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { Q, K, V, MASK, PAIR, GATE, DOUT, OUT, GATED, LSE, DQ, DK, DV, DGATE, DMASK, DPAIR, COUNT };
#define WANT(t) (1u << ((t) - DQ)) /* a gradient's bit in a case's want */
/* masked_rows: every key of the first (b, n) removed with -1e9, of the last one with -inf */
enum { OPT_MASK = 1, OPT_PAIR = 2, OPT_GATE = 4, OPT_MASKED_ROWS = 8 };

/* the gate spans sigmoid's bend; a kept key's mask bias lies in [-1, 0) (see draw) */
static const wl_tensor_decl tensors[COUNT] = {
    [Q] = {"q", WL_INPUT, 0, -1.0f, 1.0f},
    [K] = {"k", WL_INPUT, 0, -1.0f, 1.0f},
    [V] = {"v", WL_INPUT, 0, -1.0f, 1.0f},
    [MASK] = {"mask", WL_INPUT, 0, -1.0f, 0.0f},
    [PAIR] = {"pair", WL_INPUT, 0, -1.0f, 1.0f},
    [GATE] = {"gate", WL_INPUT, 0, -3.0f, 3.0f},
    [DOUT] = {"dout", WL_INPUT, 0, -1.0f, 1.0f},
    [OUT] = {"out", WL_FORWARD, 0, 0, 0},
    [GATED] = {"gated", WL_FORWARD, 0, 0, 0},
    [LSE] = {"lse", WL_FORWARD, 1, 0, 0},
    [DQ] = {"dq", WL_GRADIENT, 0, 0, 0},
    [DK] = {"dk", WL_GRADIENT, 0, 0, 0},
    [DV] = {"dv", WL_GRADIENT, 0, 0, 0},
    [DGATE] = {"dgate", WL_GRADIENT, 0, 0, 0},
    [DMASK] = {"dmask", WL_GRADIENT, 0, 0, 0},
    [DPAIR] = {"dpair", WL_GRADIENT, 0, 0, 0},
};
static const char *const options[] = {"mask", "pair", "gate", "masked_rows", NULL};

static void sizes(const wl_case *c, size_t *n)
{
    size_t B = c->shape[0], N = c->shape[1], S = c->shape[2], H = c->shape[3], D = c->shape[4];
    size_t t = B * N * S * H * D, mask = c->options & OPT_MASK ? B * N * S : 0;
    size_t pair = c->options & OPT_PAIR ? B * H * S * S : 0, gate = c->options & OPT_GATE ? t : 0;
    n[Q] = n[K] = n[V] = n[DOUT] = n[OUT] = n[DQ] = n[DK] = n[DV] = t;
    n[MASK] = n[DMASK] = mask;
    n[PAIR] = n[DPAIR] = pair;
    n[GATE] = n[GATED] = n[DGATE] = gate;
    n[LSE] = B * N * H * S;
}

/* About 15% of the keys removed, with -1e9, -inf or exactly MCL_EVOATTN_MASKED, and with
 * masked_rows whole (b, n) rows of keys; -1e9 then becomes what the dtype holds (bf16: about
 * -1e9, f16: -inf). */
static void draw(wl_problem *p, host_rng *rng)
{
    wl_tensor *m = &p->t[MASK];
    if (!wl_has(p, MASK)) return;
    for (size_t i = 0; i < m->count; i++) {
        float u = host_uniform(rng, 0.0f, 1.0f);
        if (u < 0.07f) m->values[i] = -1e9f;
        else if (u < 0.12f) m->values[i] = -INFINITY;
        else if (u < 0.15f) m->values[i] = MCL_EVOATTN_MASKED;
    }
    size_t S = p->c.shape[2], rows = m->count / S;
    if (p->c.options & OPT_MASKED_ROWS && rows >= 3)
        for (size_t j = 0; j < S; j++) m->values[j] = -1e9f, m->values[(rows - 1) * S + j] = -INFINITY;
    host_quantize(m->dtype, m->values, m->count);
}

/* a case's arg is desc.scale (0: 1 / sqrt(D)) */
static mcl_evoattn_desc desc_of(const wl_problem *p)
{
    const size_t *s = p->c.shape;
    return (mcl_evoattn_desc){s[0], s[1], s[2], s[3], s[4], p->c.dtype, (float)p->c.arg};
}

static mcl_evoattn_bwd_tensors bwd_tensors(const wl_problem *p)
{
    return (mcl_evoattn_bwd_tensors){wl_at(p, Q),    wl_at(p, K),   wl_at(p, V),    wl_at(p, MASK),  wl_at(p, PAIR),
                                     wl_at(p, GATE), wl_at(p, OUT), wl_at(p, LSE),  wl_at(p, DOUT),  wl_at(p, DQ),
                                     wl_at(p, DK),   wl_at(p, DV),  wl_at(p, DGATE), wl_at(p, DMASK), wl_at(p, DPAIR)};
}

static mcl_evoattn_fwd_tensors fwd_tensors(const wl_problem *p)
{
    return (mcl_evoattn_fwd_tensors){wl_at(p, Q), wl_at(p, K), wl_at(p, V), wl_at(p, MASK), wl_at(p, PAIR),
                                     wl_at(p, GATE), wl_at(p, OUT), wl_at(p, GATED), wl_at(p, LSE)};
}

WL_OP_PASSES(evoattn)
/* The forward has no workspace; the backward takes exactly what its size function reports. */
WL_SIZED_BACKWARD(evoattn)

/* ---- reference and tolerances ----------------------------------------------------------- */

static ref_evoattn_problem ref_problem(const wl_problem *p)
{
    const size_t *s = p->c.shape;
    const wl_tensor *t = p->t;
    return (ref_evoattn_problem){s[0], s[1], s[2], s[3], s[4], ref_evoattn_scale(s[4], (float)p->c.arg),
                                 t[Q].values, t[K].values, t[V].values, t[MASK].values, t[PAIR].values,
                                 t[GATE].values, t[DOUT].values};
}

/* Every output from the inputs alone (the backward's from a reference forward of its own). */
static int reference(wl_problem *p)
{
    ref_evoattn_problem rp = ref_problem(p);
    wl_tensor *t = p->t;
    if (ref_evoattn_forward(&rp, t[OUT].ref, t[GATED].ref, t[LSE].ref) != 0) return -1;
    return ref_evoattn_backward(&rp, t[DQ].ref, t[DK].ref, t[DV].ref, t[DGATE].ref, t[DMASK].ref, t[DPAIR].ref);
}

/* fp32: O and Y, one softmax-weighted sum over S keys, to 1e-5; lse (as the tests have always
 * held it) and the gradients, longer reductions (the backward over S keys, dmask over H*S,
 * dpair over N), to 2e-5. 16-bit dtypes: the storage rounding. */
static double tolerance(const wl_case *c, int tensor)
{
    if (c->dtype != MCL_F32) return host_tolerance(c->dtype);
    return tensor == OUT || tensor == GATED ? 1e-5 : 2e-5;
}

static double attention_work(const wl_case *c)
{
    const size_t *s = c->shape;
    return (double)s[0] * s[1] * s[3] * s[2] * s[2] * s[4]; /* B N H S^2 D */
}

static int full_reference(const wl_case *c) { return attention_work(c) <= 1 << 26; }

/* ---- the benchmark's check of large problems -------------------------------------------- */

/* The [S, D] outputs one slice (b, n, h) determines alone (lse, [S], besides). */
static const int sliced[] = {OUT, GATED, DQ, DK, DV, DGATE};

/* Compares slice (b, n, h) of lse and of every output in `sliced` with the reference; adds the
 * slice's dS column sums to dmask_row when it is given. */
static int check_slice(const wl_problem *p, const ref_evoattn_problem *rp, const size_t *bnh, double *dmask_row,
                       wl_err *err)
{
    const size_t b = bnh[0], n = bnh[1], h = bnh[2], N = rp->rows, S = rp->seq, H = rp->heads, D = rp->head_dim;
    double *ref[COUNT] = {0};
    int ok = (ref[LSE] = malloc(S * sizeof(double))) != NULL;
    for (size_t k = 0; k < WL_COUNT(sliced); k++)
        if (wl_has(p, sliced[k])) ok &= (ref[sliced[k]] = malloc(S * D * sizeof(double))) != NULL;
    ref_evoattn_slice_out so = {D, ref[OUT], ref[GATED], ref[LSE], ref[DQ], ref[DK], ref[DV], ref[DGATE], dmask_row,
                                NULL};
    if (ok) ok = ref_evoattn_slice(rp, b, n, h, &so) == 0;
    for (size_t i = 0; i < S && ok; i++) {
        wl_err_add(&err[LSE], p->t[LSE].values[((b * N + n) * H + h) * S + i], ref[LSE][i]);
        const size_t base = (((b * N + n) * S + i) * H + h) * D;
        for (size_t k = 0; k < WL_COUNT(sliced); k++) {
            const int o = sliced[k];
            for (size_t d = 0; d < D && ref[o]; d++) wl_err_add(&err[o], p->t[o].values[base + d], ref[o][i * D + d]);
        }
    }
    for (int i = 0; i < COUNT; i++) free(ref[i]);
    return ok ? 0 : -1;
}

/* dpair[b, h, i, :], a sum over all N rows of dS, for four query rows (b, h, i) */
static int check_dpair_rows(const wl_problem *p, const ref_evoattn_problem *rp, wl_err *err)
{
    const size_t B = rp->batch, N = rp->rows, S = rp->seq, H = rp->heads;
    const size_t rows[4][3] = {{0, 0, 0}, {B - 1, H - 1, S - 1}, {B / 2, H / 2, S / 2}, {0, H - 1, S / 3}};
    ref_evoattn_row row;
    double *dpair_row = malloc(S * sizeof *dpair_row);
    if (!dpair_row || ref_evoattn_row_alloc(&row, S, rp->head_dim) != 0) {
        free(dpair_row);
        return -1;
    }
    for (size_t k = 0; k < 4; k++) {
        const size_t b = rows[k][0], h = rows[k][1], i = rows[k][2];
        for (size_t j = 0; j < S; j++) dpair_row[j] = 0.0;
        for (size_t n = 0; n < N; n++) {
            ref_evoattn_row_compute(rp, b, n, h, i, &row);
            for (size_t j = 0; j < S; j++) dpair_row[j] += row.ds[j];
        }
        const float *dev = p->t[DPAIR].values + ((b * H + h) * S + i) * S;
        for (size_t j = 0; j < S; j++) wl_err_add(&err[DPAIR], dev[j], dpair_row[j]);
    }
    ref_evoattn_row_free(&row);
    free(dpair_row);
    return 0;
}

/* Every head of (b, n) = (0, 0), and dmask[0, 0, :]: their dS summed over heads and queries. */
static int check_dmask_row(const wl_problem *p, const ref_evoattn_problem *rp, wl_err *err)
{
    double *dmask_row = calloc(rp->seq, sizeof *dmask_row);
    int ok = dmask_row != NULL;
    for (size_t h = 0; h < rp->heads && ok; h++)
        ok = check_slice(p, rp, (const size_t[]){0, 0, h}, dmask_row, err) == 0;
    for (size_t j = 0; j < rp->seq && ok; j++) wl_err_add(&err[DMASK], p->t[DMASK].values[j], dmask_row[j]);
    free(dmask_row);
    return ok ? 0 : -1;
}

/* Shapes too large for a full double-precision reference are checked on a sample:
 *  - lse and the sliced outputs of a few (b, n, h) slices: the first, the last and a middle one;
 *    when H*S*S*D <= 2^30 every head of (b, n) = (0, 0) instead of only the first, so that
 *  - dmask[0, 0, :] (a sum over all heads and queries of that (b, n)) is checked too;
 *  - dpair[b, h, i, :] for four query rows (check_dpair_rows).
 * Each error is the relative error over the sampled elements. */
static int sample(wl_problem *p, double *errors)
{
    const ref_evoattn_problem rp = ref_problem(p);
    const size_t B = rp.batch, N = rp.rows, H = rp.heads;
    const int dmask = (double)H * rp.seq * rp.seq * rp.head_dim <= 1073741824.0 && wl_has(p, DMASK);
    const size_t slices[3][3] = {{0, 0, 0}, {B - 1, N - 1, H - 1}, {B / 2, N / 2, H / 2}};
    wl_err err[COUNT] = {{0}};
    int ok = !dmask || check_dmask_row(p, &rp, err) == 0;
    for (size_t i = 0; i < 3 && ok; i++) {
        const size_t *sl = slices[i];
        int seen = dmask && sl[0] == 0 && sl[1] == 0;
        for (size_t j = 0; j < i; j++) seen |= memcmp(slices[j], sl, sizeof slices[j]) == 0;
        if (!seen) ok = check_slice(p, &rp, sl, NULL, err) == 0;
    }
    if (ok && wl_has(p, DPAIR)) ok = check_dpair_rows(p, &rp, err) == 0;
    for (int i = 0; i < COUNT; i++) {
        int checked = wl_has(p, i) && !wl_is_input(p, i) && (i != DMASK || dmask);
        errors[i] = ok && checked ? wl_err_value(&err[i]) : -1.0;
    }
    return ok ? 0 : -1;
}

/* With the mask and pair bias the benchmark's cases give, and no gate. */
static wl_counts counts(const wl_case *c)
{
    const size_t *s = c->shape;
    size_t B = s[0], N = s[1], S = s[2], H = s[3], D = s[4];
    const double es = (double)mcl_dtype_size(c->dtype), tensor = (double)B * N * S * H * D * es;
    const double mask = (double)B * N * S * es, pair = (double)B * H * S * S * es, lse = (double)B * N * H * S * 4;
    wl_counts k;
    k.fwd_bytes = 3 * tensor + mask + pair + tensor + lse; /* q, k, v, mask, pair in; O, lse out */
    /* q, k, v, O, dO, mask, pair, lse in; dq, dk, dv, dmask, dpair out */
    k.fwdbwd_bytes = k.fwd_bytes + 5 * tensor + mask + pair + lse + 3 * tensor + mask + pair;
    k.fwd_flops = 4.0 * attention_work(c);     /* QK^T and PV */
    k.fwdbwd_flops = 14.0 * attention_work(c); /* + QK^T again, dP, dV, dQ, dK */
    return k;
}

static const wl_baseline baselines[] = {{"naive", "VARIANT=0", NULL, NULL, NULL, NULL}};

/* every gradient but dgate: AF3's attention here has no gate */
enum { AF3_WANT = WANT(DQ) | WANT(DK) | WANT(DV) | WANT(DMASK) | WANT(DPAIR) };
#define AF3(name, B, N, S, H, D) {name, {{B, N, S, H, D}, MCL_F32, OPT_MASK | OPT_PAIR, AF3_WANT, 0}}
static const wl_named_case cases[] = {
    AF3("triangle S=384", 1, 384, 384, 4, 32), AF3("triangle S=768", 1, 768, 768, 4, 32),
    AF3("single S=768", 1, 1, 768, 16, 64),    AF3("single S=2048", 1, 1, 2048, 16, 64),
    AF3("msa-row N=512 S=384", 1, 512, 384, 8, 8),
};
/* the same shapes at N_res = 64, for CPUs */
static const wl_named_case cpu_cases[] = {
    AF3("triangle S=64", 1, 64, 64, 4, 32), AF3("single S=256", 1, 1, 256, 16, 64),
    AF3("msa-row N=32 S=64", 1, 32, 64, 8, 8),
};

const wl_workload wl_evoattn = WL_WORKLOAD("evoattn", "evoattn", "B,N,S,H,D", 5, .draw = draw, .workspace = workspace,
                                           .tolerance = tolerance, .full_reference = full_reference,
                                           .sample = sample);
