/* The workload engine: problems, placement, poison, fetch and comparison (see workload.h). */
#include "workload.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local char last_error[1024];

const char *wl_last_error(void) { return last_error; }

mcl_status wl_fail(mcl_status status, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, args);
    va_end(args);
    return status;
}

mcl_status wl_op(mcl_status status)
{
    if (status != MCL_OK) snprintf(last_error, sizeof last_error, "%s: %s", mcl_status_name(status), mcl_last_error());
    return status;
}

const wl_named_case *wl_default_cases(const wl_workload *w, const mcl_device_info *device, size_t *count)
{
    *count = device->is_gpu ? w->case_count : w->cpu_case_count;
    return device->is_gpu ? w->cases : w->cpu_cases;
}

uint64_t wl_case_seed(const wl_case *c)
{
    uint64_t seed = 1469598103934665603ull; /* FNV-1a over the shape and dtype */
    for (int i = 0; i < WL_MAX_RANK; i++) seed = (seed ^ c->shape[i]) * 1099511628211ull;
    return seed ^ (uint64_t)c->dtype;
}

const char *const wl_offset_names[WL_OFF_MODES] = {"0", "8k", "odd", "mixed"};

/* Element offset of a problem's i-th tensor: 0, multiples of 8, odd, or the two kinds mixed. */
static size_t offset_of(int mode, int i)
{
    size_t k = (size_t)i;
    switch (mode) {
    case WL_OFF_VEC: return 8 * (k + 1);
    case WL_OFF_ODD: return 2 * k + 1;
    case WL_OFF_MIXED: return k % 2 ? 2 * k + 1 : 8 * (k + 1);
    }
    return 0;
}

/* The index among the workload's gradients of tensor i (its bit in a case's want). */
static int gradient_index(const wl_workload *w, int i)
{
    int g = 0;
    for (int j = 0; j < i; j++) g += w->tensors[j].role == WL_GRADIENT;
    return g;
}

void wl_case_counts(const wl_workload *w, const wl_case *c, size_t *counts)
{
    memset(counts, 0, WL_MAX_TENSORS * sizeof *counts);
    w->sizes(c, counts);
    for (int i = 0; i < (int)w->tensor_count; i++)
        if (w->tensors[i].role == WL_GRADIENT && !(c->want >> gradient_index(w, i) & 1u)) counts[i] = 0;
}

mcl_status wl_create(const wl_workload *w, mcl_context *ctx, const wl_case *c, host_rng *rng, wl_problem **out)
{
    wl_problem *p = calloc(1, sizeof *p);
    if (!p) return wl_fail(MCL_ERR_OUT_OF_MEMORY, "%s: no memory for a problem", w->name);
    *p = (wl_problem){.w = w, .c = *c, .ctx = ctx};
    size_t counts[WL_MAX_TENSORS];
    wl_case_counts(w, c, counts);
    for (int i = 0; i < (int)w->tensor_count; i++) {
        const wl_tensor_decl *d = &w->tensors[i];
        wl_tensor *t = &p->t[i];
        t->alias = -1;
        t->dtype = d->fp32 ? MCL_F32 : c->dtype;
        t->count = counts[i];
        if (!t->count || d->role != WL_INPUT) continue;
        if (!(t->values = host_random(rng, t->dtype, t->count, d->lo, d->hi))) {
            wl_destroy(p);
            return wl_fail(MCL_ERR_OUT_OF_MEMORY, "%s: no memory for %s", w->name, d->name);
        }
    }
    if (w->draw) w->draw(p, rng);
    mcl_status status = w->prepare ? w->prepare(p) : MCL_OK;
    if (status != MCL_OK) {
        wl_destroy(p);
        return status;
    }
    *out = p;
    return MCL_OK;
}

static mcl_status write_values(mcl_context *ctx, const wl_tensor *t)
{
    size_t es = mcl_dtype_size(t->dtype);
    void *staging = malloc(t->count * es);
    if (!staging) return wl_fail(MCL_ERR_OUT_OF_MEMORY, "no staging memory");
    host_to_storage(t->dtype, t->values, staging, t->count);
    cl_int err = clEnqueueWriteBuffer(mcl_context_queue(ctx), t->at.mem, CL_TRUE, t->at.offset, t->count * es,
                                      staging, 0, NULL, NULL);
    free(staging);
    return err == CL_SUCCESS ? MCL_OK : wl_fail(MCL_ERR_OPENCL, "writing an input failed (%d)", err);
}

static mcl_status place_one(wl_problem *p, int i, int offsets)
{
    wl_tensor *t = &p->t[i];
    size_t es = mcl_dtype_size(t->dtype), off = offset_of(offsets, i);
    t->buffer_bytes = (off + t->count + WL_GUARD) * es;
    cl_int err;
    t->buffer = clCreateBuffer(mcl_context_cl_context(p->ctx), CL_MEM_READ_WRITE, t->buffer_bytes, NULL, &err);
    if (err != CL_SUCCESS) {
        t->buffer = NULL;
        return wl_fail(MCL_ERR_OUT_OF_MEMORY, "%s: a buffer of %zu bytes for %s (%d)", p->w->name, t->buffer_bytes,
                       p->w->tensors[i].name, err);
    }
    unsigned char poison = WL_POISON;
    err = clEnqueueFillBuffer(mcl_context_queue(p->ctx), t->buffer, &poison, 1, 0, t->buffer_bytes, 0, NULL, NULL);
    if (err != CL_SUCCESS) return wl_fail(MCL_ERR_OPENCL, "filling a buffer failed (%d)", err);
    t->at = (mcl_tensor){t->buffer, off * es};
    return t->values ? write_values(p->ctx, t) : MCL_OK;
}

mcl_status wl_place(wl_problem *p, int offsets)
{
    p->offsets = offsets;
    for (int i = 0; i < (int)p->w->tensor_count; i++)
        if (wl_has(p, i) && p->t[i].alias < 0) WL_TRY(place_one(p, i, offsets));
    for (int i = 0; i < (int)p->w->tensor_count; i++)
        if (wl_has(p, i) && p->t[i].alias >= 0) p->t[i].at = p->t[p->t[i].alias].at;
    return clFinish(mcl_context_queue(p->ctx)) == CL_SUCCESS ? MCL_OK : wl_fail(MCL_ERR_OPENCL, "clFinish failed");
}

mcl_status wl_setup_baseline(wl_problem *p, const wl_baseline *b)
{
    p->baseline_path = b;
    return b && b->setup ? b->setup(p) : MCL_OK;
}

void wl_destroy(wl_problem *p)
{
    if (!p) return;
    if (p->baseline_path && p->baseline_path->teardown) p->baseline_path->teardown(p);
    if (p->state && p->w->release) p->w->release(p);
    for (int i = 0; i < WL_MAX_TENSORS; i++) {
        if (p->t[i].buffer) clReleaseMemObject(p->t[i].buffer);
        free(p->t[i].values), free(p->t[i].ref), free(p->t[i].floor);
    }
    free(p);
}

mcl_status wl_poison(wl_problem *p)
{
    for (int i = 0; i < (int)p->w->tensor_count; i++) {
        const wl_tensor *t = &p->t[i];
        if (!wl_has(p, i) || wl_is_input(p, i) || t->alias >= 0) continue;
        float nan_value = NAN;
        unsigned char pattern[4];
        host_to_storage(t->dtype, &nan_value, pattern, 1);
        size_t es = mcl_dtype_size(t->dtype);
        cl_int err = clEnqueueFillBuffer(mcl_context_queue(p->ctx), t->at.mem, pattern, es, t->at.offset,
                                         t->count * es, 0, NULL, NULL);
        if (err != CL_SUCCESS) return wl_fail(MCL_ERR_OPENCL, "poisoning %s failed (%d)", p->w->tensors[i].name, err);
    }
    return MCL_OK;
}

mcl_status wl_forward(wl_problem *p, const wl_baseline *b)
{
    return wl_op(b && b->forward ? b->forward(p) : p->w->forward(p));
}

mcl_status wl_backward(wl_problem *p, const wl_baseline *b)
{
    return wl_op(b && b->backward ? b->backward(p) : p->w->backward(p));
}

/* ---- fetch ------------------------------------------------------------------------------ */

static int aliased(const wl_problem *p, int i)
{
    for (int j = 0; j < (int)p->w->tensor_count; j++)
        if (wl_has(p, j) && p->t[j].alias == i) return 1;
    return 0;
}

/* The bytes of tensor i's buffer (its alias's for an output in place), guards checked. */
static mcl_status read_buffer(wl_problem *p, int i, unsigned char **bytes, wl_fetch_report *r)
{
    const wl_tensor *t = &p->t[i], *owner = t->alias >= 0 ? &p->t[t->alias] : t;
    *bytes = malloc(owner->buffer_bytes);
    if (!*bytes) return wl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory to read %s", p->w->tensors[i].name);
    cl_int err = clEnqueueReadBuffer(mcl_context_queue(p->ctx), owner->buffer, CL_TRUE, 0, owner->buffer_bytes,
                                     *bytes, 0, NULL, NULL);
    if (err != CL_SUCCESS) return wl_fail(MCL_ERR_OPENCL, "reading %s failed (%d)", p->w->tensors[i].name, err);
    size_t lo = owner->at.offset, hi = lo + owner->count * mcl_dtype_size(owner->dtype), stray = 0;
    for (size_t j = 0; j < owner->buffer_bytes; j++) stray += (j < lo || j >= hi) && (*bytes)[j] != WL_POISON;
    if (stray > r->stray_bytes) r->stray_bytes = stray, r->stray_tensor = i;
    return MCL_OK;
}

mcl_status wl_fetch(wl_problem *p, int check_inputs, wl_fetch_report *r)
{
    *r = (wl_fetch_report){0, -1, -1};
    for (int i = 0; i < (int)p->w->tensor_count; i++) {
        wl_tensor *t = &p->t[i];
        int input = wl_is_input(p, i);
        if (!wl_has(p, i) || (input && (!check_inputs || aliased(p, i)))) continue;
        unsigned char *bytes = NULL;
        mcl_status status = read_buffer(p, i, &bytes, r);
        float *values = status == MCL_OK ? malloc(t->count * sizeof *values) : NULL;
        if (status == MCL_OK && !values) status = wl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory to fetch");
        if (status == MCL_OK) host_from_storage(t->dtype, bytes + t->at.offset, values, t->count);
        free(bytes);
        if (status != MCL_OK) return status;
        if (input) {
            if (memcmp(values, t->values, t->count * sizeof *values) != 0 && r->changed_input < 0) r->changed_input = i;
            free(values);
        } else {
            free(t->values);
            t->values = values;
        }
    }
    return MCL_OK;
}

/* ---- reference and comparison ----------------------------------------------------------- */

/* an f32 output where the context lets GEMMs round their operands to tf32 (10-bit mantissas,
 * as f16's) is held to f16's tolerance */
#define WL_TF32_TOLERANCE 3e-3

double wl_tolerance(const wl_problem *p, int i)
{
    double tol = p->w->tolerance ? p->w->tolerance(&p->c, i) : host_tolerance(p->t[i].dtype);
    int tf32 = p->c.dtype == MCL_F32 && mcl_context_tf32_allowed(p->ctx);
    return tf32 && tol < WL_TF32_TOLERANCE ? WL_TF32_TOLERANCE : tol;
}

int wl_full_reference(const wl_problem *p)
{
    return !p->sample_only && (!p->w->full_reference || p->w->full_reference(&p->c));
}

mcl_status wl_reference(wl_problem *p)
{
    for (int i = 0; i < (int)p->w->tensor_count; i++) {
        wl_tensor *t = &p->t[i];
        if (!wl_has(p, i) || wl_is_input(p, i)) continue;
        free(t->ref), free(t->floor);
        t->floor = NULL;
        t->check = WL_NORM;
        t->tol = wl_tolerance(p, i);
        if (!(t->ref = calloc(t->count, sizeof *t->ref))) return wl_fail(MCL_ERR_OUT_OF_MEMORY, "no memory for references");
    }
    return p->w->reference(p) == 0 ? MCL_OK : wl_fail(MCL_ERR_OUT_OF_MEMORY, "%s: reference out of memory", p->w->name);
}

wl_error wl_compare(const wl_problem *p, int i)
{
    const wl_tensor *t = &p->t[i];
    wl_error e = {0};
    double diff = 0.0, norm = 0.0, scale = 0.0;
    int missed = 0;
    for (size_t k = 0; k < t->count; k++) {
        double out = t->values[k], ref = t->ref[k], floor = t->floor ? t->floor[k] : 1.0;
        scale += t->floor ? floor * floor : 0.0;
        if (isinf(ref) && ref < 0) { /* a -inf reference (a fully masked row's lse) must be matched */
            missed |= !(isinf(out) && out < 0);
            continue;
        }
        double off = fabs(out - ref), bound = t->tol * (fabs(ref) + floor);
        diff += off * off;
        norm += ref * ref;
        int within = off <= bound; /* NaN never is */
        double ratio = within ? (bound > 0.0 ? off / bound : 0.0) : bound > 0.0 && !isnan(off) ? off / bound : INFINITY;
        if (t->check == WL_ELEMENTWISE && !within) e.bad++;
        if (ratio > e.worst_ratio) e.worst_ratio = ratio, e.worst = k;
    }
    double denominator = sqrt(norm > scale ? norm : scale);
    e.err = missed || isnan(diff) ? INFINITY : denominator > 0.0 ? sqrt(diff) / denominator : sqrt(diff);
    if (t->check == WL_NORM) e.bad = !(e.err <= t->tol);
    return e;
}

mcl_status wl_verify(wl_problem *p, const wl_baseline *b, double *err, double *tol, int *ok)
{
    WL_TRY(wl_poison(p));
    WL_TRY(wl_forward(p, b));
    WL_TRY(wl_backward(p, b));
    wl_fetch_report report;
    WL_TRY(wl_fetch(p, 0, &report));
    const wl_workload *w = p->w;
    int full = wl_full_reference(p) || !w->sample;
    for (int i = 0; i < (int)w->tensor_count; i++) err[i] = -1.0;
    if (full) WL_TRY(wl_reference(p));
    else if (w->sample(p, err) != 0) return wl_fail(MCL_ERR_OUT_OF_MEMORY, "%s: no memory for the check", w->name);
    *ok = report.stray_bytes == 0;
    for (int i = 0; i < (int)w->tensor_count; i++) {
        if (!wl_has(p, i) || wl_is_input(p, i)) {
            err[i] = -1.0;
            continue;
        }
        tol[i] = wl_tolerance(p, i);
        int bad = err[i] >= 0.0 && !(err[i] <= tol[i]);
        if (full) {
            wl_error e = wl_compare(p, i);
            err[i] = e.err;
            bad = e.bad > 0;
        }
        *ok &= !bad;
    }
    return MCL_OK;
}

float wl_sigmoid_tail(host_rng *rng, mcl_dtype dtype)
{
    static const float magnitudes[] = {8.0f, 20.0f, 40.0f, 100.0f, 1e4f};
    float v = magnitudes[(size_t)host_uniform(rng, 0.0f, 4.999f)] * (host_uniform(rng, -1, 1) < 0 ? -1 : 1);
    host_quantize(dtype, &v, 1);
    return v;
}

void wl_err_add(wl_err *e, float out, double ref)
{
    if (isinf(ref) && ref < 0) {
        e->bad |= !(isinf(out) && out < 0);
        return;
    }
    if (!isfinite(out)) {
        e->bad = 1;
        return;
    }
    double d = (double)out - ref;
    e->diff += d * d;
    e->norm += ref * ref;
}

double wl_err_value(const wl_err *e)
{
    if (e->bad) return INFINITY;
    return e->norm > 0.0 ? sqrt(e->diff / e->norm) : sqrt(e->diff);
}

void wl_describe_case(const wl_workload *w, const wl_case *c, char *out, size_t cap)
{
    size_t used = (size_t)snprintf(out, cap, "%s %s %s=", w->name, mcl_dtype_name(c->dtype), w->shape_names);
    for (size_t i = 0; i < w->rank && used < cap; i++)
        used += (size_t)snprintf(out + used, cap - used, "%s%zu", i ? "," : "", c->shape[i]);
    for (int b = 0; w->option_names && w->option_names[b] && used < cap; b++)
        if (c->options >> b & 1u) used += (size_t)snprintf(out + used, cap - used, " %s", w->option_names[b]);
    if (used < cap && c->want != WL_ALL) used += (size_t)snprintf(out + used, cap - used, " want=%#x", c->want);
    if (used < cap && c->arg != 0.0) snprintf(out + used, cap - used, " arg=%g", c->arg);
}

void wl_describe(const wl_problem *p, char *out, size_t cap) { wl_describe_case(p->w, &p->c, out, cap); }

double wl_result_bytes(const wl_problem *p)
{
    double bytes = p->baseline_bytes;
    for (int i = 0; i < (int)p->w->tensor_count; i++)
        if (wl_has(p, i) && !wl_is_input(p, i) && p->t[i].alias < 0)
            bytes += (double)p->t[i].count * mcl_dtype_size(p->t[i].dtype);
    return bytes;
}
