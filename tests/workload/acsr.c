/* The acsr workload: ACSR sparse attention forward (O, lse) and backward (dq, dk, dv) over
 * [B, H, N, D] with a mask of SPLAT's patterns, each sized by the case's reach r (arg):
 *   window |i - j| <= r, causal window, dilated |i - j| <= 2r with i - j even, strided by r / 4,
 *   blocked (blocks of r, one block each side), block-diagonal (blocks of r), r / 16 global
 *   tokens, and a random mask (a quarter of the entries, an empty row and a one-column row),
 *   which goes through the CSR fallback.
 * The benchmark runs the SPLAT shapes of the issue (B = 1, H = 16, D = 64, r = 256) next to
 * SPLAT's unfused pipeline and dense attention (EvoAttention with the mask as a pair bias of
 * -1e9, which computes the same outputs). */
#include "workload.h"

#include "ref/acsr_ref.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { Q, K, V, DOUT, OUT, LSE, DQ, DK, DV, COUNT };
#define WANT(t) (1u << ((t) - DQ))
enum {
    OPT_WINDOW = 1, OPT_CAUSAL = 2, OPT_DILATED = 4, OPT_STRIDED = 8, OPT_BLOCKED = 16, OPT_BLOCK_DIAGONAL = 32,
    OPT_GLOBAL = 64, OPT_RANDOM = 128,
};
static const char *const options[] = {"window", "causal", "dilated", "strided", "blocked",
                                      "block_diagonal", "global", "random", NULL};

static const wl_tensor_decl tensors[COUNT] = {
    [Q] = {"q", WL_INPUT, 0, -1.0f, 1.0f},    [K] = {"k", WL_INPUT, 0, -1.0f, 1.0f},
    [V] = {"v", WL_INPUT, 0, -1.0f, 1.0f},    [DOUT] = {"dout", WL_INPUT, 0, -1.0f, 1.0f},
    [OUT] = {"out", WL_FORWARD, 0, 0, 0},     [LSE] = {"lse", WL_FORWARD, 1, 0, 0},
    [DQ] = {"dq", WL_GRADIENT, 0, 0, 0},      [DK] = {"dk", WL_GRADIENT, 0, 0, 0},
    [DV] = {"dv", WL_GRADIENT, 0, 0, 0},
};

static void sizes(const wl_case *c, size_t *n)
{
    size_t t = c->shape[0] * c->shape[1] * c->shape[2] * c->shape[3];
    n[Q] = n[K] = n[V] = n[DOUT] = n[OUT] = n[DQ] = n[DK] = n[DV] = t;
    n[LSE] = c->shape[0] * c->shape[1] * c->shape[2];
}

/* ---- the mask ------------------------------------------------------------------------------ */

typedef struct acsr_state {
    mcl_acsr_pattern patterns[8];
    size_t pattern_count;
    unsigned char *dense; /* the random mask, [N, N] */
    ref_acsr_mask ref;
    mcl_acsr_mask *mask;
} acsr_state;

static size_t at_least_one(size_t x) { return x ? x : 1; }

/* The patterns of the case's option bits, sized by its reach. */
static size_t patterns_of(const wl_case *c, mcl_acsr_pattern *out)
{
    size_t r = at_least_one((size_t)c->arg), n = 0, seq = c->shape[2];
    size_t reach = r < seq ? r : seq - 1, step = r / 4 < seq ? at_least_one(r / 4) : seq;
    unsigned o = c->options;
    if (o & OPT_WINDOW) out[n++] = (mcl_acsr_pattern){.kind = MCL_ACSR_WINDOW, .width = reach};
    if (o & OPT_CAUSAL) out[n++] = (mcl_acsr_pattern){.kind = MCL_ACSR_CAUSAL_WINDOW, .width = reach};
    if (o & OPT_DILATED)
        out[n++] = (mcl_acsr_pattern){.kind = MCL_ACSR_DILATED, .width = 2 * r < seq ? 2 * r : seq - 1,
                                      .step = seq > 1 ? 2 : 1};
    if (o & OPT_STRIDED) out[n++] = (mcl_acsr_pattern){.kind = MCL_ACSR_STRIDED, .step = step};
    if (o & OPT_BLOCKED) out[n++] = (mcl_acsr_pattern){.kind = MCL_ACSR_BLOCKED, .width = 1, .block = r < seq ? r : seq};
    if (o & OPT_BLOCK_DIAGONAL) out[n++] = (mcl_acsr_pattern){.kind = MCL_ACSR_BLOCK_DIAGONAL, .block = r < seq ? r : seq};
    if (o & OPT_GLOBAL)
        out[n++] = (mcl_acsr_pattern){.kind = MCL_ACSR_GLOBAL, .count = r / 16 < seq ? at_least_one(r / 16) : seq};
    return n;
}

/* A quarter of the entries, row 0 empty and row 1 with one column (when N > 2), OR the
 * case's patterns. */
static unsigned char *random_mask(const wl_case *c, const ref_acsr_mask *patterns)
{
    size_t n = c->shape[2];
    unsigned char *m = malloc(n * n);
    if (!m) return NULL;
    host_rng rng = host_rng_seeded(wl_case_seed(c) ^ 0x5eed);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++)
            m[i * n + j] = host_uniform(&rng, 0.0f, 1.0f) < 0.25f || (patterns->count && ref_acsr_has(patterns, i, j));
    if (n > 2 && !patterns->count) {
        memset(m, 0, 2 * n);
        m[n + n / 2] = 1;
    }
    return m;
}

static mcl_status prepare(wl_problem *p)
{
    acsr_state *s = calloc(1, sizeof *s);
    if (!s) return wl_fail(MCL_ERR_OUT_OF_MEMORY, "acsr: no memory for the mask");
    p->state = s;
    size_t n = p->c.shape[2];
    s->pattern_count = patterns_of(&p->c, s->patterns);
    s->ref = (ref_acsr_mask){n, s->patterns, s->pattern_count, NULL};
    if (p->c.options & OPT_RANDOM) {
        if (!(s->dense = random_mask(&p->c, &s->ref))) return wl_fail(MCL_ERR_OUT_OF_MEMORY, "acsr: no memory");
        s->ref = (ref_acsr_mask){n, NULL, 0, s->dense};
        return wl_op(mcl_acsr_mask_from_dense(p->ctx, n, s->dense, &s->mask));
    }
    return wl_op(mcl_acsr_mask_from_patterns(p->ctx, n, s->patterns, s->pattern_count, &s->mask));
}

static void release(wl_problem *p)
{
    acsr_state *s = p->state;
    mcl_acsr_mask_release(s->mask);
    free(s->dense);
    free(s);
}

/* ---- the op -------------------------------------------------------------------------------- */

static mcl_acsr_desc desc_in(const wl_problem *p, mcl_acsr_mode mode)
{
    const size_t *s = p->c.shape;
    return (mcl_acsr_desc){s[0], s[1], s[2], s[3], p->c.dtype, 0.0f, ((acsr_state *)p->state)->mask, mode};
}

static mcl_acsr_desc desc_of(const wl_problem *p) { return desc_in(p, MCL_ACSR_FUSED); }

static mcl_acsr_fwd_tensors fwd_tensors(const wl_problem *p)
{
    return (mcl_acsr_fwd_tensors){wl_at(p, Q), wl_at(p, K), wl_at(p, V), wl_at(p, OUT), wl_at(p, LSE)};
}

static mcl_acsr_bwd_tensors bwd_tensors(const wl_problem *p)
{
    return (mcl_acsr_bwd_tensors){wl_at(p, Q),  wl_at(p, K),  wl_at(p, V),  wl_at(p, OUT), wl_at(p, LSE),
                                  wl_at(p, DOUT), wl_at(p, DQ), wl_at(p, DK), wl_at(p, DV)};
}

WL_OP_PASSES(acsr)

static mcl_status workspace(wl_problem *p, size_t *fwd, size_t *bwd, int *backward_exact)
{
    mcl_acsr_desc d = desc_of(p);
    *backward_exact = 1;
    return mcl_acsr_workspace_size(p->ctx, &d, fwd, bwd);
}

/* ---- reference and tolerances -------------------------------------------------------------- */

static ref_acsr_problem ref_problem(const wl_problem *p)
{
    const size_t *s = p->c.shape;
    const wl_tensor *t = p->t;
    return (ref_acsr_problem){s[0], s[1], s[2], s[3], 1.0 / sqrt((double)(float)s[3]), &((acsr_state *)p->state)->ref,
                              t[Q].values, t[K].values, t[V].values, t[DOUT].values};
}

static int reference(wl_problem *p)
{
    ref_acsr_problem rp = ref_problem(p);
    wl_tensor *t = p->t;
    ref_acsr_forward_rows(&rp, NULL, 0, t[OUT].ref, t[LSE].ref);
    if (wl_has(p, DQ)) ref_acsr_dq_rows(&rp, NULL, 0, t[DQ].ref);
    if (!wl_has(p, DK) && !wl_has(p, DV)) return 0;
    return ref_acsr_dkdv(&rp, wl_has(p, DK) ? t[DK].ref : NULL, wl_has(p, DV) ? t[DV].ref : NULL);
}

/* fp32: O, a softmax-weighted sum, to 1e-5; lse and the gradients, longer reductions, to 2e-5.
 * 16-bit dtypes: the storage rounding. */
static double tolerance(const wl_case *c, int tensor)
{
    if (c->dtype != MCL_F32) return host_tolerance(c->dtype);
    return tensor == OUT ? 1e-5 : 2e-5;
}

static double dense_work(const wl_case *c)
{
    const size_t *s = c->shape;
    return (double)s[0] * s[1] * s[2] * s[2] * s[3];
}

static int full_reference(const wl_case *c) { return dense_work(c) <= 1 << 26; }

/* Large cases: O, lse and dQ of the first, middle and last row of every head (dK and dV, which
 * need every query of a key, are checked by the tests at smaller N). */
static int sample(wl_problem *p, double *errors)
{
    ref_acsr_problem rp = ref_problem(p);
    size_t n = rp.seq, d = rp.head_dim, heads = rp.batch * rp.heads;
    const size_t rows[3] = {0, n / 2, n - 1};
    double *out = malloc(heads * n * d * sizeof *out), *lse = malloc(heads * n * sizeof *lse),
           *dq = wl_has(p, DQ) ? malloc(heads * n * d * sizeof *dq) : NULL;
    int ok = out && lse && (dq || !wl_has(p, DQ));
    wl_err err[COUNT] = {{0}};
    if (ok) {
        ref_acsr_forward_rows(&rp, rows, 3, out, lse);
        if (dq) ref_acsr_dq_rows(&rp, rows, 3, dq);
        for (size_t h = 0; h < heads; h++)
            for (size_t r = 0; r < 3; r++) {
                size_t row = h * n + rows[r];
                wl_err_add(&err[LSE], p->t[LSE].values[row], lse[row]);
                for (size_t e = 0; e < d; e++) {
                    wl_err_add(&err[OUT], p->t[OUT].values[row * d + e], out[row * d + e]);
                    if (dq) wl_err_add(&err[DQ], p->t[DQ].values[row * d + e], dq[row * d + e]);
                }
            }
    }
    for (int i = 0; i < COUNT; i++)
        errors[i] = ok && (i == OUT || i == LSE || (i == DQ && dq)) ? wl_err_value(&err[i]) : -1.0;
    free(out);
    free(lse);
    free(dq);
    return ok ? 0 : -1;
}

/* ---- costs --------------------------------------------------------------------------------- */

static size_t clamp_count(long long lo, long long hi, long long n)
{
    if (lo < 0) lo = 0;
    if (hi > n - 1) hi = n - 1;
    return hi >= lo ? (size_t)(hi - lo + 1) : 0;
}

/* Row i's columns under one pattern (closed forms of the definitions). */
static size_t pattern_row_count(const mcl_acsr_pattern *p, long long i, long long n)
{
    long long w = (long long)p->width;
    switch (p->kind) {
    case MCL_ACSR_WINDOW: return clamp_count(i - w, i + w, n);
    case MCL_ACSR_CAUSAL_WINDOW: return clamp_count(i - w, i, n);
    case MCL_ACSR_DILATED: {
        long long s = (long long)p->step, left = (i < w ? i : w) / s, right = ((n - 1 - i) < w ? n - 1 - i : w) / s;
        return (size_t)(left + right + 1);
    }
    case MCL_ACSR_STRIDED: return (size_t)((n - 1 - i % (long long)p->step) / (long long)p->step + 1);
    case MCL_ACSR_BLOCKED: {
        long long b = (long long)p->block, at = i / b;
        return clamp_count((at - w) * b, (at + w + 1) * b - 1, n);
    }
    case MCL_ACSR_BLOCK_DIAGONAL: return clamp_count(i / (long long)p->block * (long long)p->block,
                                                     (i / (long long)p->block + 1) * (long long)p->block - 1, n);
    case MCL_ACSR_GLOBAL: return i < (long long)p->count ? (size_t)n : p->count;
    }
    return 0;
}

/* The mask's nonzeros: exact for one pattern and for window + global tokens (their overlap
 * subtracted), a quarter of the entries for a random mask. */
static double nonzeros(const wl_case *c)
{
    mcl_acsr_pattern pats[8];
    size_t count = patterns_of(c, pats);
    long long n = (long long)c->shape[2];
    if (c->options & OPT_RANDOM) return 0.25 * (double)n * (double)n;
    double total = 0.0;
    for (long long i = 0; i < n; i++) {
        size_t row = 0;
        for (size_t k = 0; k < count; k++) row += pattern_row_count(&pats[k], i, n);
        if (count == 2 && pats[0].kind == MCL_ACSR_WINDOW && pats[1].kind == MCL_ACSR_GLOBAL) {
            long long g = (long long)pats[1].count, w = (long long)pats[0].width;
            row = i < g ? (size_t)n : row - clamp_count(i - w, (i + w < g - 1 ? i + w : g - 1), n);
        }
        total += (double)row;
    }
    return total;
}

static wl_counts counts(const wl_case *c)
{
    const size_t *s = c->shape;
    const double es = (double)mcl_dtype_size(c->dtype), tensor = (double)s[0] * s[1] * s[2] * s[3] * es,
                 lse = (double)s[0] * s[1] * s[2] * 4, work = (double)s[0] * s[1] * nonzeros(c) * (double)s[3];
    wl_counts k;
    k.fwd_bytes = 3 * tensor + tensor + lse;
    k.fwdbwd_bytes = k.fwd_bytes + 5 * tensor + lse + 3 * tensor;
    k.fwd_flops = 4.0 * work;     /* Q K^T and P V on the nonzeros */
    k.fwdbwd_flops = 14.0 * work; /* + Q K^T again, dP, dV, dQ, dK */
    return k;
}

/* ---- baselines ------------------------------------------------------------------------------ */

/* SPLAT's pipeline for the forward; its backward is megacl's (SPLAT has none). */
static mcl_status unfused_forward(wl_problem *p)
{
    mcl_acsr_desc d = desc_in(p, MCL_ACSR_UNFUSED);
    mcl_acsr_fwd_tensors t = fwd_tensors(p);
    return mcl_acsr_forward(p->ctx, &d, &t, NULL);
}

/* Dense attention: EvoAttention over [B, H, N, 1, D] (the same memory as [B, H, N, D]) with
 * the mask as a pair bias of 0 and -1e9 [B, 1, N, N]. */
static mcl_status dense_setup(wl_problem *p)
{
    acsr_state *s = p->state;
    mcl_acsr_mask_info info;
    WL_TRY(wl_op(mcl_acsr_mask_get_info(s->mask, &info)));
    if (info.empty_rows)
        return wl_fail(MCL_ERR_UNSUPPORTED, "dense attention has no empty row: a row of -1e9 biases averages every value");
    size_t n = p->c.shape[2], b = p->c.shape[0];
    float *bias = malloc(n * n * sizeof *bias);
    if (!bias) return wl_fail(MCL_ERR_OUT_OF_MEMORY, "acsr dense: no host memory for an N x N bias");
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) bias[i * n + j] = ref_acsr_has(&s->ref, i, j) ? 0.0f : -1e9f;
    size_t es = mcl_dtype_size(p->c.dtype), bytes = b * n * n * es;
    unsigned char *storage = malloc(bytes);
    cl_int err = CL_OUT_OF_HOST_MEMORY;
    cl_mem pair = NULL;
    if (storage) {
        for (size_t k = 0; k < b; k++) host_to_storage(p->c.dtype, bias, storage + k * n * n * es, n * n);
        pair = clCreateBuffer(mcl_context_cl_context(p->ctx), CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, bytes, storage,
                              &err);
    }
    free(bias);
    free(storage);
    if (err != CL_SUCCESS) return wl_fail(MCL_ERR_OUT_OF_MEMORY, "acsr dense: no memory for the pair bias (%d)", err);
    p->baseline = pair;
    p->baseline_bytes = (double)bytes;
    return MCL_OK;
}

static void dense_teardown(wl_problem *p)
{
    if (p->baseline) clReleaseMemObject(p->baseline);
}

static mcl_evoattn_desc dense_desc(const wl_problem *p)
{
    const size_t *s = p->c.shape;
    return (mcl_evoattn_desc){s[0], s[1], s[2], 1, s[3], p->c.dtype, 0.0f};
}

static mcl_status dense_forward(wl_problem *p)
{
    mcl_evoattn_desc d = dense_desc(p);
    mcl_evoattn_fwd_tensors t = {.q = wl_at(p, Q), .k = wl_at(p, K), .v = wl_at(p, V),
                                 .pair = {p->baseline, 0}, .out = wl_at(p, OUT), .lse = wl_at(p, LSE)};
    return mcl_evoattn_forward(p->ctx, &d, &t, NULL);
}

static mcl_status dense_backward(wl_problem *p)
{
    mcl_evoattn_desc d = dense_desc(p);
    mcl_evoattn_bwd_tensors t = {.q = wl_at(p, Q), .k = wl_at(p, K), .v = wl_at(p, V), .pair = {p->baseline, 0},
                                 .out = wl_at(p, OUT), .lse = wl_at(p, LSE), .dout = wl_at(p, DOUT),
                                 .dq = wl_at(p, DQ), .dk = wl_at(p, DK), .dv = wl_at(p, DV)};
    return mcl_evoattn_backward(p->ctx, &d, &t, NULL);
}

static const wl_baseline baselines[] = {
    {"unfused", NULL, NULL, NULL, unfused_forward, NULL},
    {"dense", NULL, dense_setup, dense_teardown, dense_forward, dense_backward},
};

/* ---- cases ---------------------------------------------------------------------------------- */

enum { ALL = WANT(DQ) | WANT(DK) | WANT(DV) };
#define SPLAT(name, n, opts) {name, {{1, 16, n, 64}, MCL_F32, opts, ALL, 256}}
#define SPLAT_PATTERNS(n)                                                                           \
    SPLAT("window N=" #n, n, OPT_WINDOW), SPLAT("dilated N=" #n, n, OPT_DILATED),                   \
    SPLAT("strided N=" #n, n, OPT_STRIDED), SPLAT("blocked N=" #n, n, OPT_BLOCKED),                 \
    SPLAT("window+global N=" #n, n, OPT_WINDOW | OPT_GLOBAL)
/* windows of 1% to 50% of the N x N scores, for time against the nonzeros */
#define DENSITY(share, reach) {"window " share " N=4096", {{1, 16, 4096, 64}, MCL_F32, OPT_WINDOW, ALL, reach}}
static const wl_named_case cases[] = {
    SPLAT_PATTERNS(4096), SPLAT_PATTERNS(16384), SPLAT_PATTERNS(65536), DENSITY("1%", 20),  DENSITY("5%", 102),
    DENSITY("10%", 210),  DENSITY("25%", 548),   DENSITY("50%", 1200),
};
/* the same patterns at N = 512 (reach 32), and a random mask, for CPUs */
#define SMALL(name, opts) {name, {{1, 2, 512, 64}, MCL_F32, opts, ALL, 32}}
static const wl_named_case cpu_cases[] = {
    SMALL("window", OPT_WINDOW), SMALL("dilated", OPT_DILATED), SMALL("strided", OPT_STRIDED),
    SMALL("blocked", OPT_BLOCKED), SMALL("window+global", OPT_WINDOW | OPT_GLOBAL), SMALL("random", OPT_RANDOM),
};

const wl_workload wl_acsr = WL_WORKLOAD("acsr", "acsr", "B,H,N,D", 4, .prepare = prepare, .release = release,
                                        .workspace = workspace, .tolerance = tolerance,
                                        .full_reference = full_reference, .sample = sample);
