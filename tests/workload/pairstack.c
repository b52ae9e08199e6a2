/* The pair stack's block: its sizes and parameters, its inputs, a path's run and its results (see
 * pairstack.h). */
#include "pairstack_path.h"

#include "unfused.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const ps_subblock_names[PS_SUBBLOCKS] = {
    "triangle multiplication outgoing", "triangle multiplication incoming", "triangle attention starting node",
    "triangle attention ending node", "pair transition",
};

ps_config ps_af3(size_t n, mcl_dtype dtype) { return (ps_config){n, 128, 4, 32, 128, 4 * 128, dtype}; }

/* ---- parameters ------------------------------------------------------------------------- */

/* Every parameter starts on a multiple of 16 elements, so that the ops' vector paths hold. */
#define PARAM_ALIGN 16

static int is_trimul(int sub) { return sub == PS_TRIMUL_OUT || sub == PS_TRIMUL_IN; }
static int is_attention(int sub) { return sub == PS_ATTN_START || sub == PS_ATTN_END; }

/* The shapes of sub-block sub's parameters, offsets left 0. */
static size_t shapes_of(const ps_config *c, int sub, ps_param *p)
{
    size_t ch = c->channels, h = c->trimul_hidden, hd = c->heads * c->head_dim, f = c->transition_hidden;
    if (is_trimul(sub)) {
        const ps_param tm[] = {{"ln_in_weight", 1, ch, 0},  {"ln_in_bias", 1, ch, 0}, {"w_in", ch, 4 * h + ch, 0},
                               {"ln_out_weight", 1, h, 0}, {"ln_out_bias", 1, h, 0}, {"w_out", h, ch, 0}};
        memcpy(p, tm, sizeof tm);
        return WL_COUNT(tm);
    }
    if (is_attention(sub)) {
        const ps_param at[] = {{"ln_weight", 1, ch, 0}, {"ln_bias", 1, ch, 0}, {"w_q", ch, hd, 0},
                               {"w_k", ch, hd, 0},      {"w_v", ch, hd, 0},    {"w_g", ch, hd, 0},
                               {"w_b", ch, c->heads, 0}, {"w_o", hd, ch, 0}};
        memcpy(p, at, sizeof at);
        return WL_COUNT(at);
    }
    const ps_param tr[] = {{"ln_weight", 1, ch, 0}, {"ln_bias", 1, ch, 0}, {"w1", ch, 2 * f, 0}, {"w2", f, ch, 0}};
    memcpy(p, tr, sizeof tr);
    return WL_COUNT(tr);
}

/* The parameters of sub-blocks [0, last] laid out one after another; the count of sub-block
 * last's, in out. */
static size_t layout(const ps_config *c, int last, ps_param *out, size_t *end)
{
    size_t at = 0, count = 0;
    for (int sub = 0; sub <= last; sub++) {
        count = shapes_of(c, sub, out);
        for (size_t k = 0; k < count; k++) {
            out[k].offset = at;
            at += (out[k].rows * out[k].cols + PARAM_ALIGN - 1) / PARAM_ALIGN * PARAM_ALIGN;
        }
    }
    *end = at;
    return count;
}

size_t ps_params_of(const ps_config *c, int sub, ps_param out[PS_MAX_PARAMS])
{
    size_t end;
    return layout(c, sub, out, &end);
}

size_t ps_params_elements(const ps_config *c)
{
    ps_param p[PS_MAX_PARAMS];
    size_t end;
    layout(c, PS_SUBBLOCKS - 1, p, &end);
    return end;
}

/* ---- the block's inputs ----------------------------------------------------------------- */

static size_t pairs_of(const ps_config *c) { return c->n * c->n; }

/* LayerNorm weights near 1 and biases near 0; matrices uniform in +-1 / sqrt(fan-in), so that
 * every projection stays of the size of its input. */
static void draw_params(const ps_config *c, float *values, host_rng *rng)
{
    for (int sub = 0; sub < PS_SUBBLOCKS; sub++) {
        ps_param p[PS_MAX_PARAMS];
        size_t count = ps_params_of(c, sub, p);
        for (size_t k = 0; k < count; k++) {
            float *v = values + p[k].offset, range = 1.0f / sqrtf((float)p[k].rows);
            int weight = strstr(p[k].name, "weight") != NULL, vector = p[k].rows == 1;
            float lo = vector ? (weight ? 0.8f : -0.2f) : -range, hi = vector ? (weight ? 1.2f : 0.2f) : range;
            host_fill_uniform(rng, v, p[k].rows * p[k].cols, lo, hi);
        }
    }
}

/* A fifth of the pairs masked out, never a residue's pair with itself: every row keeps a key. */
static void draw_mask(const ps_config *c, float *mask, host_rng *rng)
{
    for (size_t i = 0; i < c->n; i++)
        for (size_t j = 0; j < c->n; j++) mask[i * c->n + j] = i == j || host_uniform(rng, 0.0f, 1.0f) >= 0.2f;
}

void ps_block_destroy(ps_block *b)
{
    if (!b) return;
    free(b->z), free(b->mask), free(b->params), free(b->dz_out);
    free(b);
}

mcl_status ps_block_create(const ps_config *c, uint64_t seed, ps_block **out)
{
    size_t np = pairs_of(c), params = ps_params_elements(c);
    host_rng rng = host_rng_seeded(seed);
    ps_block *b = calloc(1, sizeof *b);
    if (!b) return wl_fail(MCL_ERR_OUT_OF_MEMORY, "no host memory for the pair stack's inputs");
    b->config = *c;
    b->z = host_random(&rng, c->dtype, np * c->channels, -2.0f, 2.0f);
    b->dz_out = host_random(&rng, c->dtype, np * c->channels, -1.0f, 1.0f);
    b->mask = malloc(np * sizeof *b->mask);
    b->params = calloc(params, sizeof *b->params);
    if (!b->z || !b->dz_out || !b->mask || !b->params) {
        ps_block_destroy(b);
        return wl_fail(MCL_ERR_OUT_OF_MEMORY, "no host memory for the pair stack's inputs (N = %zu)", c->n);
    }
    draw_mask(c, b->mask, &rng);
    draw_params(c, b->params, &rng);
    host_quantize(c->dtype, b->params, params);
    *out = b;
    return MCL_OK;
}

/* ---- a path's run ----------------------------------------------------------------------- */

const char *ps_path_name(const ps_path *path) { return path->name; }
mcl_dtype ps_path_dtype(const ps_path *path, mcl_dtype dtype) { return path->fp32_only ? MCL_F32 : dtype; }

mcl_tensor ps_buffer_at(const ps_run *r, int i) { return r->buffers[i]; }
mcl_tensor ps_input(const ps_run *r, int i) { return (mcl_tensor){r->inputs[i], 0}; }

static mcl_tensor param_in(const ps_run *r, cl_mem mem, int sub, int k)
{
    ps_param p[PS_MAX_PARAMS];
    ps_params_of(&r->config, sub, p);
    return (mcl_tensor){mem, p[k].offset * mcl_dtype_size(r->config.dtype)};
}

mcl_tensor ps_param_at(const ps_run *r, int sub, int k) { return param_in(r, r->inputs[PS_IN_PARAMS], sub, k); }
mcl_tensor ps_dparam_at(const ps_run *r, int sub, int k) { return param_in(r, r->buffers[PS_DPARAMS].mem, sub, k); }

mcl_tensor ps_z_in(const ps_run *r, int sub) { return sub ? ps_buffer_at(r, PS_Z1 + sub - 1) : ps_input(r, PS_IN_Z); }

mcl_tensor ps_z_out(const ps_run *r, int sub)
{
    return ps_buffer_at(r, sub == PS_SUBBLOCKS - 1 ? PS_Z_OUT : PS_Z1 + sub);
}

mcl_tensor ps_dz_in(const ps_run *r, int sub)
{
    return sub == PS_SUBBLOCKS - 1 ? ps_input(r, PS_IN_DZ_OUT) : ps_buffer_at(r, PS_DZ);
}

mcl_trimul_desc ps_trimul_desc(const ps_config *c, int sub)
{
    mcl_trimul_direction direction = sub == PS_TRIMUL_IN ? MCL_TRIMUL_INCOMING : MCL_TRIMUL_OUTGOING;
    return (mcl_trimul_desc){c->n, c->channels, c->trimul_hidden, c->dtype, 1e-5f, direction};
}

mcl_transition_desc ps_transition_desc(const ps_config *c)
{
    return (mcl_transition_desc){pairs_of(c), c->channels, c->transition_hidden, c->dtype, 1e-5f,
                                 MCL_SWIGLU_SILU_FIRST, 0};
}

/* A device buffer of `count` values of `dtype` holding src (NULL: NaN, so that an element no
 * path writes shows). */
static mcl_status upload(mcl_context *ctx, mcl_dtype dtype, const float *src, size_t count, cl_mem *out)
{
    size_t bytes = count * mcl_dtype_size(dtype);
    cl_int err;
    *out = clCreateBuffer(mcl_context_cl_context(ctx), CL_MEM_READ_WRITE, bytes, NULL, &err);
    if (err != CL_SUCCESS) {
        *out = NULL;
        return wl_fail(MCL_ERR_OUT_OF_MEMORY, "the device has no room for a buffer of %zu bytes (%d)", bytes, err);
    }
    float nan_value = NAN;
    unsigned char pattern[4];
    host_to_storage(dtype, &nan_value, pattern, 1);
    void *staging = src ? malloc(bytes) : NULL;
    if (src && !staging) return wl_fail(MCL_ERR_OUT_OF_MEMORY, "no host memory to stage %zu bytes", bytes);
    if (src) host_to_storage(dtype, src, staging, count);
    err = src ? clEnqueueWriteBuffer(mcl_context_queue(ctx), *out, CL_TRUE, 0, bytes, staging, 0, NULL, NULL)
              : clEnqueueFillBuffer(mcl_context_queue(ctx), *out, pattern, mcl_dtype_size(dtype), 0, bytes, 0, NULL,
                                    NULL);
    free(staging);
    return err == CL_SUCCESS ? MCL_OK : wl_fail(MCL_ERR_OPENCL, "writing a buffer of %zu bytes failed (%d)", bytes, err);
}

/* The additive biases of the two attentions' keys: 0 kept, -1e9 masked; the ending node's rows
 * are the mask's columns. */
static mcl_status upload_mask_biases(ps_run *r, const ps_block *b)
{
    size_t n = b->config.n;
    float *bias = malloc(2 * n * n * sizeof *bias);
    if (!bias) return wl_fail(MCL_ERR_OUT_OF_MEMORY, "no host memory for the mask biases");
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j++) {
            bias[i * n + j] = b->mask[i * n + j] != 0.0f ? 0.0f : -1e9f;
            bias[n * n + j * n + i] = bias[i * n + j];
        }
    mcl_dtype dtype = r->config.dtype;
    mcl_status status = upload(r->ctx, dtype, bias, n * n, &r->inputs[PS_IN_MASK_BIAS_START]);
    if (status == MCL_OK) status = upload(r->ctx, dtype, bias + n * n, n * n, &r->inputs[PS_IN_MASK_BIAS_END]);
    free(bias);
    return status;
}

static mcl_status upload_inputs(ps_run *r, const ps_block *b)
{
    const ps_config *c = &r->config;
    size_t np = pairs_of(c);
    WL_TRY(upload(r->ctx, c->dtype, b->z, np * c->channels, &r->inputs[PS_IN_Z]));
    WL_TRY(upload(r->ctx, c->dtype, b->mask, np, &r->inputs[PS_IN_MASK]));
    WL_TRY(upload_mask_biases(r, b));
    WL_TRY(upload(r->ctx, c->dtype, b->params, ps_params_elements(c), &r->inputs[PS_IN_PARAMS]));
    return upload(r->ctx, c->dtype, b->dz_out, np * c->channels, &r->inputs[PS_IN_DZ_OUT]);
}

/* A device buffer of `bytes`, NaN in `dtype`, released with the run. */
static mcl_status own(ps_run *r, mcl_dtype dtype, size_t bytes, cl_mem *out)
{
    WL_TRY(upload(r->ctx, dtype, NULL, bytes / mcl_dtype_size(dtype), out));
    r->owned[r->owned_count++] = *out;
    return MCL_OK;
}

static mcl_status allocate_buffers(ps_run *r)
{
    ps_layout *l = malloc(sizeof *l);
    if (!l) return wl_fail(MCL_ERR_OUT_OF_MEMORY, "no host memory");
    ps_layout_of(r->path, &r->config, l);
    cl_mem region = NULL, held;
    mcl_status status = l->region_bytes ? own(r, MCL_F32, l->region_bytes, &region) : MCL_OK;
    for (size_t i = 0; i < r->path->buffer_count && status == MCL_OK; i++) {
        const ps_buffer *b = &l->buffers[i];
        if (b->temporary_of) {
            r->buffers[i] = (mcl_tensor){region, l->offsets[i]};
            continue;
        }
        status = own(r, b->fp32 ? MCL_F32 : r->config.dtype, l->bytes[i], &held);
        r->buffers[i] = (mcl_tensor){held, 0};
    }
    r->buffer_bytes = l->total;
    free(l);
    return status;
}

void ps_run_destroy(ps_run *r)
{
    if (!r) return;
    for (int i = 0; i < PS_INPUTS; i++)
        if (r->inputs[i]) clReleaseMemObject(r->inputs[i]);
    for (size_t i = 0; i < r->owned_count; i++) clReleaseMemObject(r->owned[i]);
    wl_destroy(r->kernels);
    free(r);
}

static mcl_status setup_kernels(wl_problem *p) { return wl_unfused_setup(p, NULL, 0); }

/* The unfused path's elementwise kernels live in a problem of no workload, as the baseline the
 * unfused building blocks (unfused.h) run on, torn down with it. */
static mcl_status kernels_of(ps_run *r)
{
    static const wl_baseline kernels = {"unfused", NULL, setup_kernels, wl_unfused_teardown, NULL, NULL};
    if (!(r->kernels = calloc(1, sizeof *r->kernels))) return wl_fail(MCL_ERR_OUT_OF_MEMORY, "no host memory");
    r->kernels->ctx = r->ctx;
    r->kernels->c.dtype = r->config.dtype;
    return wl_setup_baseline(r->kernels, &kernels);
}

mcl_status ps_run_create(mcl_context *ctx, const ps_block *b, const ps_path *path, ps_run **out)
{
    ps_run *r = calloc(1, sizeof *r);
    if (!r) return wl_fail(MCL_ERR_OUT_OF_MEMORY, "no host memory for a run");
    *r = (ps_run){.path = path, .config = b->config, .ctx = ctx};
    r->config.dtype = ps_path_dtype(path, b->config.dtype);
    mcl_status status = path->buffer_count <= PS_MAX_BUFFERS ? MCL_OK
                                                               : wl_fail(MCL_ERR_INVALID_ARGUMENT, "too many buffers");
    if (status == MCL_OK) status = upload_inputs(r, b);
    if (status == MCL_OK) status = allocate_buffers(r);
    if (status == MCL_OK && path->fp32_only) status = kernels_of(r);
    if (status == MCL_OK) status = wl_op(mcl_finish(ctx));
    if (status != MCL_OK) {
        ps_run_destroy(r);
        return status;
    }
    *out = r;
    return MCL_OK;
}

int ps_kind_of(int sub)
{
    return is_trimul(sub) ? PS_KIND_TRIMUL : is_attention(sub) ? PS_KIND_ATTENTION : PS_KIND_TRANSITION;
}

mcl_status ps_run_forward(ps_run *r, int sub) { return r->path->forward[ps_kind_of(sub)](r, sub); }
mcl_status ps_run_backward(ps_run *r, int sub) { return r->path->backward[ps_kind_of(sub)](r, sub); }
double ps_run_buffer_bytes(const ps_run *r) { return r->buffer_bytes; }

/* ---- results ---------------------------------------------------------------------------- */

void ps_results_free(ps_results *results)
{
    for (size_t i = 0; i < results->count; i++) free(results->values[i]);
    results->count = 0;
}

/* Appends `count` values of `all` from element `first`. */
static mcl_status add_result(ps_results *out, const char *name, const float *all, size_t first, size_t count)
{
    size_t i = out->count;
    if (!(out->values[i] = malloc(count * sizeof(float)))) return wl_fail(MCL_ERR_OUT_OF_MEMORY, "no host memory");
    memcpy(out->values[i], all + first, count * sizeof(float));
    snprintf(out->names[i], sizeof out->names[i], "%s", name);
    out->sizes[i] = count;
    out->count++;
    return MCL_OK;
}

/* Every element of a buffer of `count` values of dtype, as floats (malloc'd, NULL without memory). */
static float *read_back(const ps_run *r, cl_mem mem, mcl_dtype dtype, size_t count)
{
    float *values = malloc(count * sizeof *values);
    if (values) host_download(r->ctx, mem, dtype, values, count);
    return values;
}

static mcl_status add_param_gradients(const ps_run *r, const float *dparams, ps_results *out)
{
    for (int sub = 0; sub < PS_SUBBLOCKS; sub++) {
        ps_param p[PS_MAX_PARAMS];
        size_t count = ps_params_of(&r->config, sub, p);
        for (size_t k = 0; k < count; k++) {
            char name[80];
            snprintf(name, sizeof name, "%s: d%s", ps_subblock_names[sub], p[k].name);
            WL_TRY(add_result(out, name, dparams, p[k].offset, p[k].rows * p[k].cols));
        }
    }
    return MCL_OK;
}

mcl_status ps_run_fetch(ps_run *r, ps_results *out)
{
    *out = (ps_results){0};
    size_t np = pairs_of(&r->config) * r->config.channels, params = ps_params_elements(&r->config);
    mcl_dtype dtype = r->config.dtype;
    float *z = read_back(r, r->buffers[PS_Z_OUT].mem, dtype, np), *dz = read_back(r, r->buffers[PS_DZ].mem, dtype, np);
    float *dparams = read_back(r, r->buffers[PS_DPARAMS].mem, dtype, params);
    mcl_status status = z && dz && dparams ? MCL_OK : wl_fail(MCL_ERR_OUT_OF_MEMORY, "no host memory for the results");
    if (status == MCL_OK) status = add_result(out, "z_out", z, 0, np);
    if (status == MCL_OK) status = add_result(out, "dz", dz, 0, np);
    if (status == MCL_OK) status = add_param_gradients(r, dparams, out);
    free(z), free(dz), free(dparams);
    if (status != MCL_OK) ps_results_free(out);
    return status;
}

double ps_difference(const float *a, const float *b, size_t n)
{
    double diff = 0.0, norm = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) return INFINITY;
        double d = (double)a[i] - b[i];
        diff += d * d;
        norm += (double)b[i] * b[i];
    }
    return norm > 0.0 ? sqrt(diff / norm) : sqrt(diff);
}

double ps_tolerance(mcl_dtype dtype) { return dtype == MCL_F32 ? 2e-5 : host_tolerance(dtype); }
